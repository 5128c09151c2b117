//! The DESIGN.md JSON records, written straight into a reused buffer and read back.
//!
//! Pure. The writers produce byte for byte what `serde_json` makes of
//! [`CandleRecord`](crate::record::CandleRecord) and
//! [`SignalRecord`](crate::record::SignalRecord) (tests hold them to it) without
//! building those structs, whose strings would cost an allocation per field per event.
//! The parser turns a record received from another instance back into a [`Candle`] or
//! [`Signal`].

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::str::FromStr;

use serde::Deserialize;

use crate::digits::{push_i64, push_u64};
use crate::market::{Candle, Decimal, Interval, Symbol};
use crate::signals::{Direction, IndicatorValues, Signal, SignalKind, MAX_SIGNAL_INDICATORS};

/// Appends the candle record of `c`.
pub fn write_candle(out: &mut Vec<u8>, c: &Candle) {
    // Symbols are ASCII letters and digits, timeframes and decimals need no escaping.
    out.extend_from_slice(b"{\"type\":\"candle\",\"symbol\":\"");
    out.extend_from_slice(c.symbol.as_str().as_bytes());
    out.extend_from_slice(b"\",\"timeframe\":\"");
    out.extend_from_slice(c.interval.as_str().as_bytes());
    out.extend_from_slice(b"\",\"open_time\":");
    push_i64(out, c.open_time_ms);
    out.extend_from_slice(b",\"close_time\":");
    push_i64(out, c.close_time_ms);
    for (name, d) in [
        (&b",\"open\":\""[..], &c.open),
        (b"\",\"high\":\"", &c.high),
        (b"\",\"low\":\"", &c.low),
        (b"\",\"close\":\"", &c.close),
        (b"\",\"volume\":\"", &c.volume),
        (b"\",\"quote_volume\":\"", &c.quote_volume),
        (b"\",\"taker_buy_base\":\"", &c.taker_buy_base),
        (b"\",\"taker_buy_quote\":\"", &c.taker_buy_quote),
    ] {
        out.extend_from_slice(name);
        write_decimal(out, d);
    }
    out.extend_from_slice(b"\",\"trades\":");
    push_u64(out, c.trades);
    out.extend_from_slice(if c.closed {
        b",\"closed\":true,\"event_time\":"
    } else {
        b",\"closed\":false,\"event_time\":"
    });
    push_i64(out, c.event_time_us / 1000);
    out.push(b'}');
}

/// Appends `d` exactly as its `Display` writes it (scale kept: `42000.10` stays so).
/// `Display` went through a formatter and a temporary string per field and was most of
/// the publisher's time (measured with `bench redis`).
pub fn write_decimal(out: &mut Vec<u8>, d: &Decimal) {
    let mantissa = d.mantissa();
    let scale = d.scale() as usize;
    if mantissa < 0 {
        out.push(b'-');
    }
    // A 96-bit mantissa has at most 29 digits.
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut m = mantissa.unsigned_abs();
    // u128 division is a library call: only the top part of a big mantissa takes it.
    while m > u128::from(u64::MAX) {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    let mut small = m as u64;
    loop {
        i -= 1;
        digits[i] = b'0' + (small % 10) as u8;
        small /= 10;
        if small == 0 {
            break;
        }
    }
    let digits = &digits[i..];
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

/// Appends the signal record of `s`.
pub fn write_signal(out: &mut Vec<u8>, s: &Signal) {
    let _ = write!(
        out,
        "{{\"type\":\"signal\",\"timestamp\":{},\"symbol\":\"{}\",\"timeframe\":\"{}\",\
         \"kind\":\"{}\",\"direction\":\"{}\",\"confidence\":",
        s.timestamp_ms,
        s.symbol.as_str(),
        s.interval.as_str(),
        s.kind.as_str(),
        s.direction.as_str(),
    );
    write_number(out, s.confidence);
    out.extend_from_slice(b",\"price\":\"");
    write_decimal(out, &s.price);
    out.extend_from_slice(b"\",\"indicators\":{");
    // serde_json's map is ordered by key, and a repeated name keeps its last value:
    // the same here, on a stack array (at most MAX_SIGNAL_INDICATORS entries).
    let mut items = [("", 0.0); MAX_SIGNAL_INDICATORS];
    let mut n = 0;
    for (name, v) in s.indicators.iter().filter(|(_, v)| v.is_finite()) {
        match items[..n].iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = v,
            None => {
                items[n] = (name, v);
                n += 1;
            }
        }
    }
    items[..n].sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, v)) in items[..n].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        write_number(out, *v);
    }
    let _ = write!(out, "}},\"event_time\":{}}}", s.event_time_us / 1000);
}

/// A number as serde_json writes an f64 (`null` when not finite).
fn write_number(out: &mut Vec<u8>, v: f64) {
    let _ = serde_json::to_writer(&mut *out, &v);
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad {field}: {value:?}")]
    Field { field: &'static str, value: String },
}

/// A record received from another instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Remote {
    Candle(Candle),
    Signal(Signal),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Candle(CandleIn),
    Signal(SignalIn),
}

#[derive(Deserialize)]
struct CandleIn {
    symbol: String,
    timeframe: String,
    open_time: i64,
    close_time: i64,
    open: String,
    high: String,
    low: String,
    close: String,
    volume: String,
    quote_volume: String,
    taker_buy_base: String,
    taker_buy_quote: String,
    trades: u64,
    closed: bool,
    event_time: i64,
}

#[derive(Deserialize)]
struct SignalIn {
    timestamp: i64,
    symbol: String,
    timeframe: String,
    kind: String,
    direction: String,
    confidence: f64,
    price: String,
    indicators: BTreeMap<String, f64>,
    event_time: i64,
}

/// Most distinct indicator names kept from other instances. Signal values name their
/// indicators with `&'static str`, so names read off the wire are interned for the life
/// of the process; the rules name a handful, and this bound keeps a misbehaving
/// publisher from growing memory without end (names past it are left out).
pub const MAX_INTERNED_NAMES: usize = 256;

/// Interned indicator names (owned by the bridge thread).
#[derive(Default)]
pub struct Names(HashSet<&'static str>);

impl Names {
    fn get(&mut self, name: &str) -> Option<&'static str> {
        if let Some(n) = self.0.get(name) {
            return Some(n);
        }
        if self.0.len() >= MAX_INTERNED_NAMES {
            return None;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        self.0.insert(leaked);
        Some(leaked)
    }
}

fn field<T>(field: &'static str, value: &str, r: Option<T>) -> Result<T, RecordError> {
    r.ok_or_else(|| RecordError::Field {
        field,
        value: value.chars().take(64).collect(),
    })
}

fn symbol(s: &str) -> Result<Symbol, RecordError> {
    field("symbol", s, Symbol::new(s).ok())
}

fn interval(s: &str) -> Result<Interval, RecordError> {
    field("timeframe", s, Interval::parse(s).ok())
}

fn decimal(name: &'static str, s: &str) -> Result<Decimal, RecordError> {
    // Exact parsing keeps the scale, so the record re-serializes as received.
    field(
        name,
        s,
        Decimal::from_str_exact(s)
            .or_else(|_| Decimal::from_str(s))
            .ok(),
    )
}

/// Parses a candle or signal record (as published by [`write_candle`] /
/// [`write_signal`]). Event times come back at the record's millisecond precision.
pub fn parse(payload: &[u8], names: &mut Names) -> Result<Remote, RecordError> {
    match serde_json::from_slice::<Incoming>(payload)? {
        Incoming::Candle(c) => Ok(Remote::Candle(Candle {
            symbol: symbol(&c.symbol)?,
            interval: interval(&c.timeframe)?,
            open_time_ms: c.open_time,
            close_time_ms: c.close_time,
            open: decimal("open", &c.open)?,
            high: decimal("high", &c.high)?,
            low: decimal("low", &c.low)?,
            close: decimal("close", &c.close)?,
            volume: decimal("volume", &c.volume)?,
            quote_volume: decimal("quote_volume", &c.quote_volume)?,
            taker_buy_base: decimal("taker_buy_base", &c.taker_buy_base)?,
            taker_buy_quote: decimal("taker_buy_quote", &c.taker_buy_quote)?,
            trades: c.trades,
            // Trade ids are not part of the record.
            first_trade_id: 0,
            last_trade_id: 0,
            closed: c.closed,
            event_time_us: c.event_time.saturating_mul(1000),
        })),
        Incoming::Signal(s) => {
            let mut indicators = IndicatorValues::new();
            for (name, v) in &s.indicators {
                if let Some(name) = names.get(name) {
                    indicators.push(name, *v);
                }
            }
            Ok(Remote::Signal(Signal {
                symbol: symbol(&s.symbol)?,
                interval: interval(&s.timeframe)?,
                kind: field("kind", &s.kind, SignalKind::parse(&s.kind))?,
                direction: field("direction", &s.direction, Direction::parse(&s.direction))?,
                confidence: s.confidence,
                price: decimal("price", &s.price)?,
                timestamp_ms: s.timestamp,
                event_time_us: s.event_time.saturating_mul(1000),
                indicators,
            }))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{CandleRecord, SignalRecord};

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
        ]
        .iter()
        .map(|t| Decimal::from_str_exact(t).unwrap())
        .collect();
        for _ in 0..20_000 {
            let m = i128::from(rng.i64(..)) * i128::from(rng.u32(..4)) * i128::from(rng.u16(..));
            cases.push(Decimal::from_i128_with_scale(m, rng.u32(..=28)));
        }
        for d in cases {
            let mut out = Vec::new();
            write_decimal(&mut out, &d);
            assert_eq!(std::str::from_utf8(&out).unwrap(), d.to_string());
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
}
