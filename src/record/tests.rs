use super::*;
use crate::digits::push_i64;
use crate::market::{Decimal, Interval, Symbol};
use crate::signals::{Direction, IndicatorValues, Signal, SignalKind};

pub(crate) fn signal(symbol: &str, ts: i64, kind: SignalKind) -> Signal {
    let mut indicators = IndicatorValues::new();
    indicators.push("rsi", 71.25);
    indicators.push("ema_fast", 1.0e-7);
    indicators.push("bad", f64::NAN);
    indicators.push("ema_fast", 3.5);
    Signal {
        symbol: Symbol::new(symbol).unwrap(),
        interval: Interval::M1,
        kind,
        direction: Direction::Sell,
        confidence: 0.8125,
        price: Decimal::from_str_exact("42000.10").unwrap(),
        timestamp_ms: ts,
        event_time_us: ts * 1000 + 1234,
        indicators,
    }
}

#[test]
fn decimals_are_written_as_display_writes_them() {
    let mut rng = fastrand::Rng::with_seed(0xdec1);
    let mut cases: Vec<Decimal> = [
        "0",
        "0.00",
        "1",
        "-1",
        "0.005",
        "-0.005",
        "42000.10",
        "0.00000001",
        "79228162514264337593543950335",
        "-79228162514264337593543950335",
        "7.9228162514264337593543950335",
        "18446744073709551616",
        "100",
        // The edges of the in-place path: a u64 mantissa with up to 19 decimals.
        "18446744073709551615",
        "1.8446744073709551615",
        "-0.0000000000000000001",
        "0.00000000000000000001",
        "10000000000000000000",
        "0.0000000000000000000",
        "0.12",
        "1.2",
        "-42000.10",
    ]
    .iter()
    .map(|t| Decimal::from_str_exact(t).unwrap())
    .collect();
    // Negative zero keeps its sign, as `Display` writes it.
    cases.extend([-Decimal::ZERO, -Decimal::new(0, 8), -Decimal::new(0, 25)]);
    for _ in 0..20_000 {
        let m = i128::from(rng.i64(..)) * i128::from(rng.u32(..4)) * i128::from(rng.u16(..));
        cases.push(Decimal::from_i128_with_scale(m, rng.u32(..=28)));
        // Mantissas of every length within a u64 at every in-place scale.
        let m = i128::from(rng.u64(..) >> rng.u32(..64)) * if rng.bool() { 1 } else { -1 };
        cases.push(Decimal::from_i128_with_scale(m, rng.u32(..=19)));
    }
    for d in cases {
        // After other text, as in a record: only its own bytes are added.
        let mut out = b"\"x\":\"".to_vec();
        write_decimal(&mut out, &d);
        assert_eq!(std::str::from_utf8(&out[5..]).unwrap(), d.to_string());
    }
    let mut out = Vec::new();
    for v in [0, 1, -1, i64::MAX, i64::MIN, 1_700_000_000_000] {
        out.clear();
        push_i64(&mut out, v);
        assert_eq!(std::str::from_utf8(&out).unwrap(), v.to_string());
    }
}

#[test]
fn candle_bytes_match_the_serde_record() {
    for closed in [false, true] {
        let c = crate::market::testing::candle("BTCUSDT", 120_000, 125_000_777, closed);
        let mut out = Vec::new();
        write_candle(&mut out, &c);
        let expect = serde_json::to_string(&CandleRecord::from(&c)).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), expect);
    }
}

#[test]
fn signal_bytes_match_the_serde_record() {
    let mut s = signal("ETHUSDT", 60_000, SignalKind::Rsi);
    let mut out = Vec::new();
    write_signal(&mut out, &s);
    let expect = serde_json::to_string(&SignalRecord::from(&s)).unwrap();
    assert_eq!(std::str::from_utf8(&out).unwrap(), expect);
    // No indicators, a confidence of exactly 1.
    s.indicators = IndicatorValues::new();
    s.confidence = 1.0;
    out.clear();
    write_signal(&mut out, &s);
    let expect = serde_json::to_string(&SignalRecord::from(&s)).unwrap();
    assert_eq!(std::str::from_utf8(&out).unwrap(), expect);
}

#[test]
fn records_read_back_as_written() {
    let mut names = Names::default();
    let c = crate::market::testing::candle("BTCUSDT", 120_000, 125_000_000, true);
    let mut out = Vec::new();
    write_candle(&mut out, &c);
    let Remote::Candle(back) = parse(&out, &mut names).unwrap() else {
        panic!("not a candle");
    };
    let mut expect = c;
    expect.first_trade_id = 0;
    expect.last_trade_id = 0;
    assert_eq!(back, expect);
    let mut again = Vec::new();
    write_candle(&mut again, &back);
    assert_eq!(again, out);

    let s = signal("ETHUSDT", 60_000, SignalKind::MacdCross);
    out.clear();
    write_signal(&mut out, &s);
    let Remote::Signal(back) = parse(&out, &mut names).unwrap() else {
        panic!("not a signal");
    };
    assert_eq!(back.indicators.get("rsi"), Some(71.25));
    assert_eq!(back.indicators.get("ema_fast"), Some(3.5));
    assert_eq!(back.indicators.len(), 2);
    assert_eq!(back.event_time_us, 60_001_000);
    let mut again = Vec::new();
    write_signal(&mut again, &back);
    assert_eq!(again, out);
}

#[test]
fn bad_records_are_errors_not_panics() {
    let mut names = Names::default();
    for bad in [
        &b"not json"[..],
        br#"{"type":"trade"}"#,
        br#"{"type":"candle","symbol":"BTCUSDT"}"#,
    ] {
        assert!(parse(bad, &mut names).is_err());
    }
    let c = crate::market::testing::candle("BTCUSDT", 0, 1000, true);
    let mut out = Vec::new();
    write_candle(&mut out, &c);
    let text = String::from_utf8(out).unwrap();
    let bad_tf = text.replace("\"1m\"", "\"7q\"");
    assert!(matches!(
        parse(bad_tf.as_bytes(), &mut names),
        Err(RecordError::Field {
            field: "timeframe",
            ..
        })
    ));
    let bad_price = text.replacen("\"open\":\"", "\"open\":\"x", 1);
    assert!(parse(bad_price.as_bytes(), &mut names).is_err());
}

#[test]
fn interned_names_are_bounded() {
    let mut names = Names::default();
    for i in 0..MAX_INTERNED_NAMES {
        assert!(names.get(&format!("n{i}")).is_some());
    }
    assert!(names.get("n0").is_some());
    assert!(names.get("one_too_many").is_none());
}

#[test]
fn trade_bytes_match_the_serde_records() {
    for id in [7, 8] {
        let t = crate::market::testing::trade("BTCUSDT", id);
        let mut out = Vec::new();
        write_trade(&mut out, &t);
        let expect = serde_json::to_string(&TradeRecord::from(&t)).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), expect);
        let a = crate::market::testing::agg_trade("ETHUSDT", id);
        let mut out = Vec::new();
        write_agg_trade(&mut out, &a);
        let expect = serde_json::to_string(&AggTradeRecord::from(&a)).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), expect);
    }
    let mut out = Vec::new();
    write_trade(&mut out, &crate::market::testing::trade("BTCUSDT", 7));
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"type":"trade","symbol":"BTCUSDT","trade_id":7,"price":"100.5","quantity":"0.250","trade_time":7000,"buyer_is_maker":false,"event_time":7000}"#
    );
}
