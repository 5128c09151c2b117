//! Indicators against TA-Lib reference values, edge cases, each signal rule on
//! constructed series, determinism, and (end to end with the simulator) warm start and
//! signals reaching the API.

#[path = "support/engine.rs"]
mod support;

use std::path::PathBuf;

use alphapulse::market::Decimal;
use alphapulse::signals::params::SignalParams;
use alphapulse::signals::rules::{Bar, Fired, SignalEngine, Snapshot};
use alphapulse::signals::{Direction, SignalKind};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The committed candle series, parsed as the engine parses prices (exact decimals).
fn reference_bars() -> Vec<Bar> {
    let text = std::fs::read_to_string(data("candles.csv")).expect("tests/data/candles.csv");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let d = |i: usize| {
                alphapulse::signals::rules::decimal_to_f64(f[i].parse::<Decimal>().unwrap())
            };
            Bar {
                open_time_ms: f[0].parse().unwrap(),
                open: d(1),
                high: d(2),
                low: d(3),
                close: d(4),
                volume: d(5),
            }
        })
        .collect()
}

fn run(params: &SignalParams, bars: &[Bar]) -> (Vec<Snapshot>, Vec<(usize, Fired)>) {
    let mut e = SignalEngine::new(params);
    let mut snaps = Vec::new();
    let mut fired = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        assert!(e.update(b, |f| fired.push((i, f))));
        snaps.push(e.snapshot());
    }
    (snaps, fired)
}

const TOLERANCE: f64 = 1e-9;

fn close_enough(ours: f64, reference: f64) -> bool {
    (ours - reference).abs() <= TOLERANCE * reference.abs()
}

#[test]
fn indicators_match_talib_reference_values() {
    let bars = reference_bars();
    assert!(bars.len() >= 300);
    let (snaps, _) = run(&SignalParams::default(), &bars);
    let text = std::fs::read_to_string(data("indicators_reference.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut compared = 0;
    for (i, line) in lines.enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols[0].parse::<i64>().unwrap(), bars[i].open_time_ms);
        let s = &snaps[i];
        for (name, text) in header.iter().zip(&cols).skip(1) {
            let ours = match *name {
                "sma20" => s.sma,
                "ema9" => s.ema_fast,
                "ema21" => s.ema_slow,
                "rsi14" => s.rsi,
                "macd" => s.macd_line,
                "macd_signal" => s.macd.map(|m| m.signal),
                "macd_hist" => s.macd.map(|m| m.histogram),
                "bb_upper" => s.bollinger.map(|b| b.upper),
                "bb_middle" => s.bollinger.map(|b| b.middle),
                "bb_lower" => s.bollinger.map(|b| b.lower),
                "atr14" => s.atr,
                "volume_sma20" => s.volume_sma,
                other => panic!("unknown reference column {other}"),
            };
            if text.is_empty() {
                assert_eq!(ours, None, "{name} at candle {i} must not be warm yet");
                continue;
            }
            let reference: f64 = text.parse().unwrap();
            let ours = ours.unwrap_or_else(|| panic!("{name} at candle {i} must be warm"));
            assert!(
                close_enough(ours, reference),
                "{name} at candle {i}: ours {ours}, TA-Lib {reference}, relative error {}",
                ((ours - reference) / reference).abs()
            );
            compared += 1;
        }
    }
    // Every column has values over most of the series.
    assert!(compared > 12 * 450, "compared only {compared} values");
}

fn bar(i: i64, open: f64, close: f64, volume: f64) -> Bar {
    Bar {
        open_time_ms: i * 60_000,
        open,
        high: open.max(close) + 0.5,
        low: open.min(close) - 0.5,
        close,
        volume,
    }
}

/// Candles whose closes follow `closes`, each opening at the previous close.
fn series(closes: &[f64]) -> Vec<Bar> {
    let mut prev = closes[0];
    closes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let b = bar(i as i64, prev, c, 100.0);
            prev = c;
            b
        })
        .collect()
}

fn kinds(fired: &[(usize, Fired)], kind: SignalKind) -> Vec<(usize, Direction)> {
    fired
        .iter()
        .filter(|(_, f)| f.kind == kind)
        .map(|(i, f)| (*i, f.direction))
        .collect()
}

#[test]
fn flat_prices_give_neutral_rsi_zero_deviation_and_no_signals() {
    let bars: Vec<Bar> = (0..100).map(|i| bar(i, 10.0, 10.0, 0.0)).collect();
    let (snaps, fired) = run(&SignalParams::default(), &bars);
    let last = snaps.last().unwrap();
    assert_eq!(last.rsi, Some(50.0), "no gains and no losses: neutral");
    assert_eq!(last.bollinger.unwrap().std_dev, 0.0);
    assert_eq!(last.sma, Some(10.0));
    assert_eq!(last.volume_sma, Some(0.0));
    assert_eq!(last.macd.unwrap().line, 0.0);
    // The candles have a 1.0 range: ATR is that, not zero.
    assert_eq!(last.atr, Some(1.0));
    assert!(fired.is_empty(), "{fired:?}");
}

#[test]
fn rsi_of_a_series_without_losses_is_100_and_values_are_absent_before_warm() {
    let closes: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i)).collect();
    let (snaps, _) = run(&SignalParams::default(), &series(&closes));
    // RSI(14) needs 14 changes: absent for the first 14 candles, 100 from the 15th.
    assert!(snaps[..14].iter().all(|s| s.rsi.is_none()));
    assert_eq!(snaps[14].rsi, Some(100.0));
    assert_eq!(snaps[39].rsi, Some(100.0));
    assert!(snaps[..8].iter().all(|s| s.ema_fast.is_none()));
    assert!(snaps[8].ema_fast.is_some());
    assert!(snaps[..32].iter().all(|s| s.macd.is_none()));
    assert!(snaps[33].macd.is_some(), "12/26/9: the signal line at candle 34");
    assert!(snaps[..19].iter().all(|s| s.bollinger.is_none()));
}

#[test]
fn zero_volume_never_spikes_and_a_gap_is_bridged_not_invented() {
    let p = SignalParams::default();
    // Zero volume throughout, then volume: no baseline, no spike.
    let mut bars: Vec<Bar> = (0..30).map(|i| bar(i, 10.0, 10.0, 0.0)).collect();
    bars.push(bar(30, 10.0, 11.0, 1000.0));
    let (_, fired) = run(&p, &bars);
    assert!(kinds(&fired, SignalKind::VolumeSpike).is_empty());

    // A gap of missing candles: the next candle is the next value, and late or repeated
    // candles are skipped.
    let mut e = SignalEngine::new(&p);
    let gapped: Vec<Bar> = (0..30).map(|i| bar(i * 3, 10.0, 10.0 + i as f64, 1.0)).collect();
    for b in &gapped {
        assert!(e.update(b, |_| {}));
    }
    let contiguous = {
        let mut c = SignalEngine::new(&p);
        for (i, b) in gapped.iter().enumerate() {
            c.update(&Bar { open_time_ms: i as i64 * 60_000, ..*b }, |_| {});
        }
        c.snapshot()
    };
    assert_eq!(e.snapshot(), contiguous);
    let before = e.snapshot();
    assert!(!e.update(&gapped[10], |_| panic!("a late candle fires nothing")));
    assert!(!e.update(&gapped[29], |_| panic!("a repeat fires nothing")));
    assert_eq!(e.snapshot(), before);
    assert_eq!(e.applied(), 30);
}

#[test]
fn ema_cross_fires_on_crossings_only() {
    // Falling, then rising: the fast EMA crosses above the slow one once.
    let mut closes: Vec<f64> = (0..40).map(|i| 200.0 - f64::from(i)).collect();
    closes.extend((0..40).map(|i| 161.0 + 2.0 * f64::from(i)));
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    let crosses = kinds(&fired, SignalKind::EmaCross);
    assert_eq!(crosses.len(), 1, "{crosses:?}");
    assert_eq!(crosses[0].1, Direction::Buy);
    assert!(crosses[0].0 > 40);
    let f = fired.iter().find(|(_, f)| f.kind == SignalKind::EmaCross).unwrap().1;
    assert!(f.indicators.get("ema_fast").unwrap() > f.indicators.get("ema_slow").unwrap());
    assert!((0.5..=1.0).contains(&f.confidence));
    // Then falling again: one sell.
    closes.extend((0..40).map(|i| 240.0 - 3.0 * f64::from(i)));
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    let crosses = kinds(&fired, SignalKind::EmaCross);
    assert_eq!(crosses.iter().map(|c| c.1).collect::<Vec<_>>(), [Direction::Buy, Direction::Sell]);

    // A steady trend never crosses.
    let trend: Vec<f64> = (0..100).map(|i| 100.0 + f64::from(i)).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&trend));
    assert!(kinds(&fired, SignalKind::EmaCross).is_empty());
}

#[test]
fn rsi_fires_when_leaving_oversold_and_overbought() {
    // A long fall drives RSI below 30; a recovery brings it back above: one buy.
    let mut closes: Vec<f64> = (0..30).map(|i| 100.0 - f64::from(i)).collect();
    closes.extend((0..10).map(|i| 71.0 + 3.0 * f64::from(i)));
    let (snaps, fired) = run(&SignalParams::default(), &series(&closes));
    let rsi = kinds(&fired, SignalKind::Rsi);
    assert_eq!(rsi.len(), 1, "{rsi:?}");
    let (i, dir) = rsi[0];
    assert_eq!(dir, Direction::Buy);
    assert!(snaps[i - 1].rsi.unwrap() < 30.0 && snaps[i].rsi.unwrap() >= 30.0);
    let f = fired.iter().find(|(_, f)| f.kind == SignalKind::Rsi).unwrap().1;
    // The fall had no gains: RSI reached 0, the deepest excursion, full confidence.
    assert_eq!(f.indicators.get("rsi_extreme"), Some(0.0));
    assert_eq!(f.confidence, 1.0);

    // A rise then a fall: one sell.
    let mut closes: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i)).collect();
    closes.extend((0..10).map(|i| 128.0 - 3.0 * f64::from(i)));
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(kinds(&fired, SignalKind::Rsi).iter().map(|r| r.1).collect::<Vec<_>>(), [Direction::Sell]);

    // Staying oversold fires nothing.
    let fall: Vec<f64> = (0..60).map(|i| 100.0 - f64::from(i)).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&fall));
    assert!(kinds(&fired, SignalKind::Rsi).is_empty());
}

#[test]
fn macd_cross_fires_on_crossings_only() {
    // An accelerating fall keeps the line below its signal (a straight fall would hold
    // them level), then a rise crosses it once.
    let mut closes: Vec<f64> = (0..50).map(|i| 200.0 - f64::from(i) - 0.02 * f64::from(i * i)).collect();
    closes.extend((0..30).map(|i| 102.0 + 2.0 * f64::from(i)));
    let (snaps, fired) = run(&SignalParams::default(), &series(&closes));
    let crosses = kinds(&fired, SignalKind::MacdCross);
    assert_eq!(crosses.len(), 1, "{crosses:?}");
    let (i, dir) = crosses[0];
    assert_eq!(dir, Direction::Buy);
    assert!(snaps[i - 1].macd.unwrap().histogram < 0.0 && snaps[i].macd.unwrap().histogram > 0.0);
    let f = fired.iter().find(|(_, f)| f.kind == SignalKind::MacdCross).unwrap().1;
    assert_eq!(f.indicators.get("macd_hist"), Some(snaps[i].macd.unwrap().histogram));

    let trend: Vec<f64> = (0..100).map(|i| 100.0 + 0.5 * f64::from(i)).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&trend));
    assert!(kinds(&fired, SignalKind::MacdCross).is_empty());
}

#[test]
fn bollinger_fires_when_the_close_leaves_a_band() {
    // A quiet oscillation, then one close far below: a buy; the next candle still
    // outside fires nothing more; a jump far above: a sell.
    let mut closes: Vec<f64> = (0..30).map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    closes.push(90.0);
    closes.push(89.0);
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(kinds(&fired, SignalKind::Bollinger), [(30, Direction::Buy)]);
    let f = fired.iter().find(|(_, f)| f.kind == SignalKind::Bollinger).unwrap().1;
    assert!(90.0 < f.indicators.get("bb_lower").unwrap());

    let mut closes: Vec<f64> = (0..30).map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    closes.push(110.0);
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(kinds(&fired, SignalKind::Bollinger), [(30, Direction::Sell)]);

    // Inside the bands: nothing.
    let quiet: Vec<f64> = (0..60).map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&quiet));
    assert!(kinds(&fired, SignalKind::Bollinger).is_empty());
}

#[test]
fn volume_spike_needs_k_times_the_previous_average_and_a_direction() {
    let p = SignalParams::default();
    let mut bars: Vec<Bar> = (0..25).map(|i| bar(i, 10.0, 10.0, 100.0)).collect();
    bars.push(bar(25, 10.0, 10.5, 301.0)); // just over 3x: buy
    bars.push(bar(26, 10.5, 10.0, 250.0)); // 2.4x of the new average: nothing
    bars.push(bar(27, 10.0, 10.0, 2000.0)); // huge but no direction: nothing
    bars.push(bar(28, 10.0, 9.0, 2000.0)); // a down candle: sell
    let (_, fired) = run(&p, &bars);
    let spikes = kinds(&fired, SignalKind::VolumeSpike);
    assert_eq!(spikes, [(25, Direction::Buy), (28, Direction::Sell)]);
    let f = fired.iter().find(|(_, f)| f.kind == SignalKind::VolumeSpike).unwrap().1;
    assert_eq!(f.indicators.get("volume_sma"), Some(100.0));
    assert_eq!(f.indicators.get("volume"), Some(301.0));
    assert!((f.confidence - (0.5 + 0.5 * (3.01 - 3.0) / 3.0)).abs() < 1e-12);
    // Exactly 3x is not above 3x.
    let mut bars: Vec<Bar> = (0..25).map(|i| bar(i, 10.0, 10.0, 100.0)).collect();
    bars.push(bar(25, 10.0, 11.0, 300.0));
    let (_, fired) = run(&p, &bars);
    assert!(kinds(&fired, SignalKind::VolumeSpike).is_empty());
}

#[test]
fn every_signal_is_bounded_and_the_same_sequence_gives_the_same_signals() {
    let bars = reference_bars();
    let (_, first) = run(&SignalParams::default(), &bars);
    let (_, second) = run(&SignalParams::default(), &bars);
    assert_eq!(first, second);
    for kind in SignalKind::ALL {
        assert!(
            first.iter().any(|(_, f)| f.kind == kind),
            "the reference series triggers {kind:?}"
        );
    }
    for (_, f) in &first {
        assert!((0.0..=1.0).contains(&f.confidence), "{f:?}");
        assert!(!f.indicators.is_empty());
        assert!(f.indicators.iter().all(|(_, v)| v.is_finite()), "{f:?}");
    }
}
