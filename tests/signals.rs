//! Indicators against TA-Lib reference values, edge cases, each signal rule on
//! constructed series, determinism, and (end to end with the simulator) warm start and
//! signals reaching the API.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/engine.rs"]
mod support;

use std::path::PathBuf;

use alphapulse::market::{Decimal, Interval};
use alphapulse::signals::params::SignalParams;
use alphapulse::signals::rules::{Bar, Fired, SignalEngine, Snapshot};
use alphapulse::signals::{Direction, SignalKind};
use std::time::Duration;

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
                book: None,
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
        book: None,
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
    assert!(
        snaps[33].macd.is_some(),
        "12/26/9: the signal line at candle 34"
    );
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
    let gapped: Vec<Bar> = (0..30)
        .map(|i| bar(i * 3, 10.0, 10.0 + i as f64, 1.0))
        .collect();
    for b in &gapped {
        assert!(e.update(b, |_| {}));
    }
    let contiguous = {
        let mut c = SignalEngine::new(&p);
        for (i, b) in gapped.iter().enumerate() {
            c.update(
                &Bar {
                    open_time_ms: i as i64 * 60_000,
                    ..*b
                },
                |_| {},
            );
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
    let f = fired
        .iter()
        .find(|(_, f)| f.kind == SignalKind::EmaCross)
        .unwrap()
        .1;
    assert!(f.indicators.get("ema_fast").unwrap() > f.indicators.get("ema_slow").unwrap());
    assert!((0.5..=1.0).contains(&f.confidence));
    // Then falling again: one sell.
    closes.extend((0..40).map(|i| 240.0 - 3.0 * f64::from(i)));
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    let crosses = kinds(&fired, SignalKind::EmaCross);
    assert_eq!(
        crosses.iter().map(|c| c.1).collect::<Vec<_>>(),
        [Direction::Buy, Direction::Sell]
    );

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
    let f = fired
        .iter()
        .find(|(_, f)| f.kind == SignalKind::Rsi)
        .unwrap()
        .1;
    // The fall had no gains: RSI reached 0, the deepest excursion, full confidence.
    assert_eq!(f.indicators.get("rsi_extreme"), Some(0.0));
    assert_eq!(f.confidence, 1.0);

    // A rise then a fall: one sell.
    let mut closes: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i)).collect();
    closes.extend((0..10).map(|i| 128.0 - 3.0 * f64::from(i)));
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(
        kinds(&fired, SignalKind::Rsi)
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        [Direction::Sell]
    );

    // Staying oversold fires nothing.
    let fall: Vec<f64> = (0..60).map(|i| 100.0 - f64::from(i)).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&fall));
    assert!(kinds(&fired, SignalKind::Rsi).is_empty());
}

#[test]
fn macd_cross_fires_on_crossings_only() {
    // An accelerating fall keeps the line below its signal (a straight fall would hold
    // them level), then a rise crosses it once.
    let mut closes: Vec<f64> = (0..50)
        .map(|i| 200.0 - f64::from(i) - 0.02 * f64::from(i * i))
        .collect();
    closes.extend((0..30).map(|i| 102.0 + 2.0 * f64::from(i)));
    let (snaps, fired) = run(&SignalParams::default(), &series(&closes));
    let crosses = kinds(&fired, SignalKind::MacdCross);
    assert_eq!(crosses.len(), 1, "{crosses:?}");
    let (i, dir) = crosses[0];
    assert_eq!(dir, Direction::Buy);
    assert!(snaps[i - 1].macd.unwrap().histogram < 0.0 && snaps[i].macd.unwrap().histogram > 0.0);
    let f = fired
        .iter()
        .find(|(_, f)| f.kind == SignalKind::MacdCross)
        .unwrap()
        .1;
    assert_eq!(
        f.indicators.get("macd_hist"),
        Some(snaps[i].macd.unwrap().histogram)
    );

    let trend: Vec<f64> = (0..100).map(|i| 100.0 + 0.5 * f64::from(i)).collect();
    let (_, fired) = run(&SignalParams::default(), &series(&trend));
    assert!(kinds(&fired, SignalKind::MacdCross).is_empty());
}

#[test]
fn bollinger_fires_when_the_close_leaves_a_band() {
    // A quiet oscillation, then one close far below: a buy; the next candle still
    // outside fires nothing more; a jump far above: a sell.
    let mut closes: Vec<f64> = (0..30)
        .map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    closes.push(90.0);
    closes.push(89.0);
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(kinds(&fired, SignalKind::Bollinger), [(30, Direction::Buy)]);
    let f = fired
        .iter()
        .find(|(_, f)| f.kind == SignalKind::Bollinger)
        .unwrap()
        .1;
    assert!(90.0 < f.indicators.get("bb_lower").unwrap());

    let mut closes: Vec<f64> = (0..30)
        .map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    closes.push(110.0);
    let (_, fired) = run(&SignalParams::default(), &series(&closes));
    assert_eq!(
        kinds(&fired, SignalKind::Bollinger),
        [(30, Direction::Sell)]
    );

    // Inside the bands: nothing.
    let quiet: Vec<f64> = (0..60)
        .map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
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
    let f = fired
        .iter()
        .find(|(_, f)| f.kind == SignalKind::VolumeSpike)
        .unwrap()
        .1;
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
    // The reference candles, each closing with a book that leans one way, then the
    // other: every rule, `book_imbalance` included, has something to fire on.
    let bars: Vec<Bar> = reference_bars()
        .into_iter()
        .enumerate()
        .map(|(i, b)| Bar {
            book: Some(alphapulse::signals::rules::BookSignal {
                imbalance: (i as f64 * 0.7).sin(),
                spread: 0.01,
                mid: b.close,
                microprice: b.close,
            }),
            ..b
        })
        .collect();
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

// ---- The shard hook: warm batches, live candles, signals on the rings ----

use std::sync::Arc;

use alphapulse::backfill::{Request, RestBatch, ShardLink, Want};
use alphapulse::market::{Candle, Symbol};
use alphapulse::metrics::ShardStats;
use alphapulse::shard::{Record, ShardState};
use alphapulse::signals::params::SignalsConfig;
use alphapulse::wire::Event;

fn dec(x: f64) -> Decimal {
    Decimal::from_str_exact(&format!("{x:.2}")).unwrap()
}

/// A closed 1h BTCUSDT candle from a reference bar.
fn candle(b: &Bar) -> Candle {
    let tf = Interval::H1;
    Candle {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        interval: tf,
        open_time_ms: b.open_time_ms,
        close_time_ms: tf.close_time(b.open_time_ms),
        open: dec(b.open),
        high: dec(b.high),
        low: dec(b.low),
        close: dec(b.close),
        volume: Decimal::from_str_exact(&format!("{:.5}", b.volume)).unwrap(),
        quote_volume: Decimal::ZERO,
        taker_buy_base: Decimal::ZERO,
        taker_buy_quote: Decimal::ZERO,
        trades: 1,
        first_trade_id: 1,
        last_trade_id: 1,
        closed: true,
        event_time_us: tf.close_time(b.open_time_ms) * 1000,
    }
}

fn shard() -> (
    ShardState,
    alphapulse::ring::Consumer<alphapulse::shard::Envelope>,
) {
    let (tx, rx) = alphapulse::ring::ring("t", 1 << 16);
    let sym = [Symbol::new("BTCUSDT").unwrap()];
    let s = ShardState::new(
        0,
        &sym,
        &[Interval::H1],
        vec![tx],
        Arc::new(ShardStats::default()),
    )
    .with_signals(&SignalsConfig::default());
    (s, rx)
}

/// A shard connected to a REST link (which the test plays), and the link.
fn linked_shard() -> (
    ShardState,
    alphapulse::ring::Consumer<alphapulse::shard::Envelope>,
    ShardLink,
) {
    let (tx, rx) = alphapulse::ring::ring("t", 1 << 16);
    let link = ShardLink::default();
    let s = ShardState::new(
        0,
        &[Symbol::new("BTCUSDT").unwrap()],
        &[Interval::H1],
        vec![tx],
        Arc::new(ShardStats::default()),
    )
    .with_signals(&SignalsConfig::default())
    .with_rest(link.clone());
    (s, rx, link)
}

/// A REST answer for BTCUSDT 1h: `bars` as candles.
fn rest_batch(want: Want, bars: &[Bar], absent: Vec<(i64, i64)>) -> RestBatch {
    RestBatch {
        request: Request {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            interval: Interval::H1,
            want,
        },
        candles: bars.iter().map(candle).collect(),
        absent,
        failed: false,
        agg_trades: Vec::new(),
        trades: Vec::new(),
    }
}

fn warm_want() -> Want {
    Want::Warm {
        candles: 300,
        end_open_ms: None,
    }
}

fn signals_of(
    rx: &alphapulse::ring::Consumer<alphapulse::shard::Envelope>,
) -> Vec<alphapulse::signals::Signal> {
    std::iter::from_fn(|| rx.pop())
        .filter_map(|e| match e.record {
            Record::Signal(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn a_warm_started_shard_equals_one_fed_live_and_history_fires_nothing() {
    let bars = reference_bars();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let (mut live, live_rx) = shard();
    for b in &bars {
        live.on_event(&Event::Kline(candle(b)), 0);
    }
    let live_signals = signals_of(&live_rx);
    assert!(!live_signals.is_empty());
    assert_eq!(live.stats().signals_total() as usize, live_signals.len());

    // The second shard sees candles 0..300 as history (after two live candles that the
    // history also holds, as when the fetch lands a moment late), then 300.. live.
    let (mut warm, warm_rx, _link) = linked_shard();
    for b in &bars[298..300] {
        warm.on_event(&Event::Kline(candle(b)), 0);
    }
    warm.apply_rest(&rest_batch(warm_want(), &bars[..300], vec![]), 0);
    let before = signals_of(&warm_rx).len();
    for b in &bars[300..] {
        warm.on_event(&Event::Kline(candle(b)), 0);
    }
    let a = live.signal_engine(sym, Interval::H1).unwrap().snapshot();
    let b = warm.signal_engine(sym, Interval::H1).unwrap().snapshot();
    assert_eq!(a, b, "same candles, same indicators");
    // History made no signals; live candles made exactly the live shard's signals.
    let warm_signals = signals_of(&warm_rx);
    let cut = candle(&bars[299]).close_time_ms;
    let expected: Vec<_> = live_signals
        .iter()
        .filter(|s| s.timestamp_ms > cut)
        .copied()
        .collect();
    assert_eq!(warm_signals, expected);
    assert!(
        before <= 5,
        "only the two cold live candles could have fired, and did not"
    );
    assert_eq!(warm.stats().signal_warm_series.get(), 1);
    assert_eq!(warm.stats().signal_warm_candles.get(), 300);
}

/// Signals (kind, close time, direction) of a shard's ring after `after_ms`.
fn fired_after(
    rx: &alphapulse::ring::Consumer<alphapulse::shard::Envelope>,
    after_ms: i64,
) -> Vec<alphapulse::signals::Signal> {
    signals_of(rx)
        .into_iter()
        .filter(|s| s.timestamp_ms > after_ms)
        .collect()
}

#[test]
fn signals_wait_for_a_backfilled_gap_and_equal_a_run_without_it() {
    let bars = reference_bars();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let (mut live, live_rx) = shard();
    for b in &bars[..320] {
        live.on_event(&Event::Kline(candle(b)), 0);
    }
    let cut = candle(&bars[299]).close_time_ms;
    let expected = fired_after(&live_rx, cut);

    let (mut s, rx, link) = linked_shard();
    s.apply_rest(&rest_batch(warm_want(), &bars[..300], vec![]), 0);
    // Candles 300..303 are lost (a reconnect); 303 reveals the gap.
    for b in &bars[303..310] {
        s.on_event(&Event::Kline(candle(b)), 0);
    }
    let req = link.requests.pop().expect("the gap is asked for");
    assert_eq!(
        req.want,
        Want::Range {
            from_open_ms: bars[300].open_time_ms,
            to_open_ms: Some(bars[303].open_time_ms)
        }
    );
    assert!(link.requests.pop().is_none(), "asked once");
    // Nothing after the hole fired yet: the signals wait for the backfill.
    assert!(fired_after(&rx, cut).is_empty());
    assert_eq!(s.stats().signal_held.get(), 7);
    s.apply_rest(&rest_batch(req.want, &bars[300..303], vec![]), 0);
    for b in &bars[310..320] {
        s.on_event(&Event::Kline(candle(b)), 0);
    }
    assert_eq!(fired_after(&rx, cut), expected);
    assert_eq!(
        s.signal_engine(sym, Interval::H1).unwrap().snapshot(),
        live.signal_engine(sym, Interval::H1).unwrap().snapshot()
    );
    let t = s.track(sym, Interval::H1).unwrap();
    let c = t.completeness(Interval::H1);
    assert_eq!((c.missing, c.open_gaps, c.gaps_filled), (0, 0, 1));
    assert_eq!(c.expected, 320);
    assert_eq!(s.stats().signal_holes_bridged.get(), 0);
}

#[test]
fn a_gap_the_exchange_confirms_absent_is_closed_and_computed_across() {
    let bars = reference_bars();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let (mut s, rx, link) = linked_shard();
    s.apply_rest(&rest_batch(warm_want(), &bars[..300], vec![]), 0);
    for b in &bars[305..307] {
        s.on_event(&Event::Kline(candle(b)), 0);
    }
    let req = link.requests.pop().unwrap();
    // The exchange has 300 only; 301..305 do not exist.
    let absent = (bars[301].open_time_ms, bars[305].open_time_ms);
    s.apply_rest(&rest_batch(req.want, &bars[300..301], vec![absent]), 0);
    let e = s.signal_engine(sym, Interval::H1).unwrap();
    assert_eq!(e.last_open_ms(), Some(bars[306].open_time_ms));
    assert_eq!(s.stats().signal_holes_bridged.get(), 1);
    let c = s
        .track(sym, Interval::H1)
        .unwrap()
        .completeness(Interval::H1);
    assert_eq!((c.missing, c.open_gaps, c.confirmed_absent), (0, 0, 4));
    assert_eq!(c.expected, 307 - 4);
    let absences: Vec<_> = std::iter::from_fn(|| rx.pop())
        .filter_map(|e| match e.record {
            Record::Absent(g) => Some((g.from_open_ms, g.to_open_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(absences, vec![absent]);
}

#[test]
fn a_gap_the_backfill_cannot_fill_is_given_up_after_the_hold_time() {
    let bars = reference_bars();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let (mut s, _rx, link) = linked_shard();
    s.apply_rest(&rest_batch(warm_want(), &bars[..300], vec![]), 0);
    s.on_event(&Event::Kline(candle(&bars[302])), 0);
    assert!(link.requests.pop().is_some());
    s.flush(0);
    let e = s.signal_engine(sym, Interval::H1).unwrap();
    assert_eq!(
        e.last_open_ms(),
        Some(bars[299].open_time_ms),
        "still waiting"
    );
    s.set_hold(Duration::ZERO);
    s.flush(0);
    let e = s.signal_engine(sym, Interval::H1).unwrap();
    assert_eq!(e.last_open_ms(), Some(bars[302].open_time_ms));
    assert_eq!(s.stats().signal_holes_bridged.get(), 1);
    // The gap itself stays open (and counted) until filled.
    let c = s
        .track(sym, Interval::H1)
        .unwrap()
        .completeness(Interval::H1);
    assert_eq!((c.missing, c.open_gaps), (2, 1));
}

#[test]
fn a_long_gap_resets_the_series() {
    let bars = reference_bars();
    let sym = Symbol::new("BTCUSDT").unwrap();
    let (mut s, _rx) = shard();
    let warm_up = s
        .signal_engine(sym, Interval::H1)
        .unwrap()
        .params()
        .warm_up_candles() as usize;
    for (n, b) in bars[..100].iter().enumerate() {
        s.on_event(&Event::Kline(candle(b)), 0);
        let ready = i64::from(n + 1 >= warm_up);
        assert_eq!(
            s.stats().signal_series_ready.get(),
            ready,
            "after {} candles",
            n + 1
        );
    }
    assert!(s
        .signal_engine(sym, Interval::H1)
        .unwrap()
        .snapshot()
        .macd
        .is_some());
    // 40 candles missing (more than rewarm_after_candles = 30): start over.
    s.on_event(&Event::Kline(candle(&bars[141])), 0);
    assert_eq!(s.stats().signal_rewarms.get(), 1);
    let e = s.signal_engine(sym, Interval::H1).unwrap();
    assert_eq!(e.applied(), 1);
    assert_eq!(e.snapshot().ema_fast, None);
    assert_eq!(s.stats().signal_series_ready.get(), 0, "no longer ready");
    // A short gap (5 candles) is bridged.
    s.on_event(&Event::Kline(candle(&bars[147])), 0);
    assert_eq!(s.stats().signal_rewarms.get(), 1);
    assert_eq!(s.signal_engine(sym, Interval::H1).unwrap().applied(), 2);
}

// ---- End to end with the simulator ----

use support::*;

fn signals_in_store(engine: &alphapulse::engine::Engine) -> Vec<alphapulse::signals::Signal> {
    let store = engine.status().store.lock().unwrap();
    let mut v = store.signals(None, None, 100_000);
    v.reverse();
    v
}

fn shard_sum(engine: &alphapulse::engine::Engine, f: impl Fn(&ShardStats) -> u64) -> u64 {
    engine.status().shards.iter().map(|s| f(&s.stats)).sum()
}

const E2E_SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

#[test]
fn warm_start_from_rest_klines_matches_live_and_signals_reach_the_api() {
    let mut sim = sim_config(&E2E_SYMS);
    // Ten 1m candles a second: enough history in a few seconds.
    sim.speed = 600.0;
    sim.trade_rate = 1.0;
    let run = start(sim, |_| {}, &E2E_SYMS, &[Interval::M1]);
    let closed = |e: &alphapulse::engine::Engine| shard_sum(e, |s| s.candles_closed.get());
    assert!(
        wait_until(Duration::from_secs(30), || closed(&run.engine) >= 2 * 60),
        "{}",
        run.engine.status().snapshot()
    );

    // The REST klines, parsed as the warm start parses them, equal the live candles.
    let live: Vec<Candle> = {
        let store = run.engine.status().store.lock().unwrap();
        let mut v = store.closed(
            Some(Symbol::new("BTCUSDT").unwrap()),
            Some(Interval::M1),
            1000,
        );
        v.reverse();
        v
    };
    let path = format!(
        "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={}&limit=1000",
        live[0].open_time_ms
    );
    let (status, body) = http_get(rest_addr(&run.sim), &path);
    assert_eq!(status, 200);
    let mut rest: Vec<Bar> =
        alphapulse::backfill::klines::parse(&body, Symbol::new("BTCUSDT").unwrap(), Interval::M1)
            .unwrap()
            .iter()
            .map(Bar::from_candle)
            .collect();
    rest.pop(); // the open candle
    let live_bars: Vec<Bar> = live.iter().map(Bar::from_candle).collect();
    assert!(rest.len() >= live_bars.len());
    assert_eq!(rest[..live_bars.len()], live_bars[..]);

    // A second engine starts now: it warms from the simulator's REST klines (everything
    // since the simulator started, under warm_candles) and must then make exactly the
    // signals of the engine that saw every candle live.
    let mut config = engine_config(&run.sim, &E2E_SYMS, &[Interval::M1]);
    config.signals.warm_candles = 500;
    let layout = alphapulse::topology::plan(&config, None, &alphapulse::topology::allowed_cores())
        .expect("layout");
    let mut second = alphapulse::engine::Engine::start(&config, &layout).expect("engine starts");
    assert!(
        wait_until(Duration::from_secs(20), || shard_sum(&second, |s| s
            .signal_warm_series
            .get())
            >= 2),
        "{}",
        second.status().snapshot()
    );
    let warmed_at_ms = run.sim.sim_now_ms();
    let warm = &second.status().snapshot()["signals"]["warm"];
    assert_eq!(warm["failures"], 0, "{warm}");
    assert!(
        warm["candles_fetched"].as_u64().unwrap() >= 2 * 60,
        "{warm}"
    );

    // Forty more candles each, then compare the signals made after the warm start.
    let target = closed(&run.engine) + 2 * 40;
    assert!(wait_until(Duration::from_secs(30), || closed(&run.engine)
        >= target
        && closed(&second) >= 2 * 40));
    let end_ms = run.sim.sim_now_ms() - 5 * 60_000;
    let window = |v: Vec<alphapulse::signals::Signal>| -> Vec<_> {
        v.into_iter()
            // From ten candles after the warm start: time for a hole between history
            // and live candles to be fetched again (see the shard's `refetch_hole`).
            .filter(|s| s.timestamp_ms > warmed_at_ms + 10 * 60_000 && s.timestamp_ms < end_ms)
            .map(|s| {
                (
                    s.symbol,
                    s.timestamp_ms,
                    s.kind,
                    s.direction,
                    s.confidence,
                    s.price,
                    s.indicators,
                )
            })
            .collect::<Vec<_>>()
    };
    let mut a = window(signals_in_store(&run.engine));
    let mut b = window(signals_in_store(&second));
    a.sort_by_key(|x| (x.0, x.1, x.2));
    b.sort_by_key(|x| (x.0, x.1, x.2));
    assert!(!a.is_empty(), "no signal in the compared window");
    assert_eq!(
        a, b,
        "a warm-started engine makes the signals of one that saw every candle"
    );
    second.shutdown();

    // Signals reach /api/signals and are counted per kind in /api/status.
    let addr = run.engine.dashboard_addr();
    let api = http_json(addr, "/api/signals?limit=1000");
    let listed = api["signals"].as_array().unwrap();
    assert!(!listed.is_empty());
    let first = &listed[0];
    assert_eq!(first["type"], "signal");
    assert!(
        first["indicators"]
            .as_object()
            .is_some_and(|o| !o.is_empty()),
        "{first}"
    );
    assert!(SignalKind::parse(first["kind"].as_str().unwrap()).is_some());
    let status = http_json(addr, "/api/status");
    let made = status["signals"]["made"].as_u64().unwrap();
    let by_kind: u64 = status["signals"]["by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(made > 0);
    assert_eq!(by_kind, made);
    let per_shard: u64 = status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signals"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, made);

    // /metrics counts them per (symbol, timeframe, kind, direction), as the shards make
    // them: between the counts of /api/status before and after, with the API's signal.
    let metrics = http_get(addr, "/metrics").1;
    let made_after = http_json(addr, "/api/status")["signals"]["made"]
        .as_u64()
        .unwrap();
    assert_eq!(
        support::metric_type(&metrics, "alphapulse_signals_total"),
        Some("counter")
    );
    let counted = support::samples(&metrics, "alphapulse_signals_total");
    let sum: f64 = counted.iter().map(|s| s.value).sum();
    assert!(
        made as f64 <= sum && sum <= made_after as f64,
        "{made} <= {sum} <= {made_after}"
    );
    for s in &counted {
        assert!(E2E_SYMS.contains(&s.labels["symbol"].as_str()), "{s:?}");
        assert_eq!(s.labels["timeframe"], "1m");
        assert!(SignalKind::parse(&s.labels["kind"]).is_some(), "{s:?}");
        assert!(Direction::parse(&s.labels["direction"]).is_some(), "{s:?}");
        assert!(s.value >= 1.0, "only series that fired are listed: {s:?}");
    }
    let fired = |k: &str| first[k].as_str().unwrap().to_owned();
    assert!(
        counted.iter().any(|s| s.labels["symbol"] == fired("symbol")
            && s.labels["kind"] == fired("kind")
            && s.labels["direction"] == fired("direction")),
        "the API's signal {first} is counted: {counted:?}"
    );
    // The series' interval, for the alert on the age of its last closed candle.
    let interval = support::samples(&metrics, "alphapulse_candle_interval_seconds");
    assert_eq!(interval.len(), E2E_SYMS.len());
    assert!(interval.iter().all(|s| s.value == 60.0), "{interval:?}");
    support::check_metrics_text(&metrics);
}

#[test]
fn a_failed_warm_start_is_counted_and_the_engine_runs_on() {
    // REST points at a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let run = start(
        sim_config(&E2E_SYMS),
        |c| c.binance_rest_url = dead_url.clone(),
        &E2E_SYMS,
        &[Interval::M1],
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = run.engine.status().snapshot();
            s["signals"]["warm"]["failures"] == 2
                && shard_sum(&run.engine, |s| s.candles_closed.get()) >= 2
        }),
        "{}",
        run.engine.status().snapshot()
    );
    let s = run.engine.status().snapshot();
    assert!(s["signals"]["warm"]["last_error"].as_str().is_some(), "{s}");
}

#[test]
fn the_example_configuration_documents_the_signal_defaults_and_an_override() {
    use alphapulse::config::Config;
    let text = include_str!("../alphapulse.example.toml");
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.signals, SignalsConfig::default());
    let uncommented = text
        .replace(
            "# [signals.timeframes.\"1h\"]",
            "[signals.timeframes.\"1h\"]",
        )
        .replace("# rsi_oversold = 25.0", "rsi_oversold = 25.0")
        .replace("# rsi_overbought = 75.0", "rsi_overbought = 75.0");
    let c = Config::from_toml_str(&uncommented).unwrap();
    assert_eq!(c.signals.params(Interval::H1).rsi_oversold, 25.0);
    assert_eq!(c.signals.params(Interval::M1).rsi_oversold, 30.0);
    // The printed configuration reads back the same.
    assert_eq!(Config::from_toml_str(&c.to_toml_redacted()).unwrap(), c);
    // A bad value names its key.
    let bad = uncommented.replace("rsi_overbought = 75.0", "rsi_overbought = 20.0");
    let e = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("signals.timeframes.1h.rsi_overbought=20"),
        "{e}"
    );
}

// ---- The REST thread against a scripted REST server ----

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use alphapulse::backfill::{self, RestPlan, RestStats};

/// Serves `answers` in turn (status, extra headers, body), one per connection; keeps
/// each request's first line.
fn scripted_rest(answers: Vec<(u16, &'static str, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, headers, body) in answers {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]);
            log.lock()
                .unwrap()
                .push(text.lines().next().unwrap_or("").to_owned());
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn klines_body(opens: impl Iterator<Item = i64>) -> String {
    let rows: Vec<String> = opens
        .map(|i| {
            let t = i * 60_000;
            format!(
                "[{t},\"1.0\",\"2.0\",\"0.5\",\"1.5\",\"10\",{},\"0\",1,\"0\",\"0\",\"0\"]",
                t + 59_999
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

fn rest_plan(url: String, series: &[&str], warm: u32) -> (RestPlan, ShardLink) {
    let link = ShardLink::default();
    let series = series
        .iter()
        .map(|s| (Symbol::new(s).unwrap(), Interval::M1))
        .collect();
    (
        RestPlan {
            rest_url: url,
            warm_candles: warm,
            weight_share: 0.5,
            database: None,
            shards: vec![(series, link.clone())],
            clock: alphapulse::clock::ClockBound::OFF,
            trade_catch_up: Vec::new(),
        },
        link,
    )
}

struct RestThread {
    stats: Arc<RestStats>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RestThread {
    fn start(plan: RestPlan) -> RestThread {
        let stats = Arc::new(RestStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = backfill::spawn(
            plan,
            backfill::agent(None).unwrap(),
            stats.clone(),
            stop.clone(),
        )
        .unwrap();
        RestThread {
            stats,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for RestThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let started = std::time::Instant::now();
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the REST thread stops promptly, even while waiting"
        );
    }
}

#[test]
fn the_rest_thread_obeys_retry_after_and_a_ban_stops_every_request() {
    // A 429 asking for one second, then the klines.
    let (url, seen) = scripted_rest(vec![
        (
            429,
            "Retry-After: 1\r\nX-MBX-USED-WEIGHT-1M: 2000\r\n",
            "{}".into(),
        ),
        (200, "X-MBX-USED-WEIGHT-1M: 4\r\n", klines_body(0..3)),
    ]);
    let (plan, link) = rest_plan(url, &["BTCUSDT"], 10);
    let started = std::time::Instant::now();
    let t = RestThread::start(plan);
    assert!(
        wait_until(Duration::from_secs(10), || !link.deliveries.is_empty()),
        "{}",
        t.stats.status()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was not obeyed"
    );
    let batch = link.deliveries.pop().unwrap();
    assert!(batch.is_history());
    assert_eq!(batch.candles.len(), 2, "the open candle is left out");
    assert_eq!(t.stats.rate_limited.get(), 1);
    assert_eq!(t.stats.used_weight_1m.get(), 4);
    assert_eq!(t.stats.series_warmed.get(), 1);
    assert_eq!(seen.lock().unwrap().len(), 2);
    drop(t);

    // A 418 (IP ban) for an hour: nothing more is sent, for any series, and the thread
    // still stops at once.
    let (url, seen) = scripted_rest(vec![(418, "Retry-After: 3600\r\n", "{}".into())]);
    let (plan, _link) = rest_plan(url, &["BTCUSDT", "ETHUSDT"], 10);
    let t = RestThread::start(plan);
    assert!(wait_until(Duration::from_secs(10), || t
        .stats
        .rate_limited
        .get()
        == 1));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(t.stats.status()["blocked"], true);
    assert_eq!(t.stats.queued_normal.get(), 2, "both series wait");
}

#[test]
fn gap_backfill_goes_before_warm_starts_and_absent_spans_are_confirmed() {
    // Answers: the gap (candles 2 and 4 of [1, 6) exist), then two warm starts, then
    // the second looks at the three lacking spans, empty again.
    let (url, seen) = scripted_rest(vec![
        (
            200,
            "X-MBX-USED-WEIGHT-1M: 2\r\n",
            klines_body([2, 4].into_iter()),
        ),
        (200, "X-MBX-USED-WEIGHT-1M: 4\r\n", klines_body(0..3)),
        (200, "X-MBX-USED-WEIGHT-1M: 6\r\n", klines_body(0..3)),
        (200, "", "[]".into()),
        (200, "", "[]".into()),
        (200, "", "[]".into()),
    ]);
    let (plan, link) = rest_plan(url, &["BTCUSDT", "ETHUSDT"], 10);
    // The gap is asked before the thread starts: it finds two warm starts queued too.
    link.requests
        .push(Request {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            interval: Interval::M1,
            want: Want::Range {
                from_open_ms: 60_000,
                to_open_ms: Some(6 * 60_000),
            },
        })
        .unwrap();
    let t = RestThread::start(plan);
    assert!(wait_until(Duration::from_secs(15), || link
        .deliveries
        .len()
        == 6));
    let first = link.deliveries.pop().unwrap();
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines[0].contains("startTime=60000&endTime=359999"),
        "urgent first: {lines:?}"
    );
    assert!(!first.is_history());
    let opens: Vec<i64> = first.candles.iter().map(|c| c.open_time_ms).collect();
    assert_eq!(opens, [120_000, 240_000]);
    assert_eq!(first.absent, [], "one empty answer is not proof");
    assert!(link.deliveries.pop().unwrap().is_history());
    assert!(link.deliveries.pop().unwrap().is_history());
    let absent: Vec<(i64, i64)> = std::iter::from_fn(|| link.deliveries.pop())
        .flat_map(|b| b.absent)
        .collect();
    assert_eq!(
        absent,
        [(60_000, 120_000), (180_000, 240_000), (300_000, 360_000)]
    );
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines[3].contains("startTime=60000&endTime=119999"),
        "the second look asks for the span again: {lines:?}"
    );
    assert_eq!(t.stats.absent_ranges.get(), 3);
    assert_eq!(t.stats.absent_candles.get(), 3);
    assert_eq!(t.stats.unconfirmed_ranges.get(), 3);
}

#[test]
fn the_weight_share_holds_requests_until_the_next_minute() {
    // Another client of the IP has used 5,999 of the minute: past our share of 3,000.
    let (url, seen) = scripted_rest(vec![
        (200, "X-MBX-USED-WEIGHT-1M: 5999\r\n", klines_body(0..3)),
        (200, "X-MBX-USED-WEIGHT-1M: 2\r\n", klines_body(0..3)),
    ]);
    let (plan, _link) = rest_plan(url, &["BTCUSDT", "ETHUSDT"], 10);
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    };
    let m0 = minute();
    let t = RestThread::start(plan);
    assert!(wait_until(Duration::from_secs(10), || seen
        .lock()
        .unwrap()
        .len()
        == 1));
    std::thread::sleep(Duration::from_millis(1000));
    if minute() == m0 {
        assert_eq!(seen.lock().unwrap().len(), 1, "the second request waits");
        assert_eq!(t.stats.budget_waits.get(), 1);
    } else {
        eprintln!("a minute boundary passed during the test: the wait was not observable");
    }
}

#[test]
fn a_restart_resumes_after_the_newest_stored_candle_and_absences_are_delivered() {
    let pg = pg::Postgres::start_new();
    let config = alphapulse::config::Config {
        database_url: Some(pg.url()),
        ..Default::default()
    };
    let settings = alphapulse::sinks::db::DbSettings::from_config(&config).unwrap();
    alphapulse::sinks::db::migrate_now(&settings).unwrap();
    // The newest stored BTCUSDT 1m candle opened at minute 100.
    let m = 60_000i64;
    pg.client()
        .execute(
            "INSERT INTO candles VALUES ('BTCUSDT', '1m', to_timestamp(6000), \
             to_timestamp(6059.999), 1, 1, 1, 1, 1, 1, 1, 1, 1, true, to_timestamp(6060))",
            &[],
        )
        .unwrap();
    // Warm history ends two candles before it (their signals may not have been stored);
    // the catch-up from minute 98 finds 98, 99, 102 and the open 103: 100 and 101 are
    // gone from the exchange.
    // The second look at 100 and 101 finds them missing still.
    let (url, seen) = scripted_rest(vec![
        (200, "", klines_body(90..98)),
        (200, "", klines_body([98, 99, 102, 103].into_iter())),
        (200, "", "[]".into()),
    ]);
    let (mut plan, link) = rest_plan(url, &["BTCUSDT"], 10);
    plan.database = Some(Box::new(alphapulse::sinks::db::rest::RestDb::new(pg.url())));
    let t = RestThread::start(plan);
    assert!(
        wait_until(Duration::from_secs(15), || link.deliveries.len() == 3),
        "{}",
        t.stats.status()
    );
    assert_eq!(t.stats.resumed_series.get(), 1);
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines[0].contains(&format!("endTime={}", 97 * m)),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&format!("startTime={}", 98 * m)),
        "{lines:?}"
    );
    let warm = link.deliveries.pop().unwrap();
    assert!(warm.is_history());
    assert_eq!(
        warm.candles.len(),
        8,
        "a history ending at endTime has no open row"
    );
    let catch_up = link.deliveries.pop().unwrap();
    let opens: Vec<i64> = catch_up
        .candles
        .iter()
        .map(|c| c.open_time_ms / m)
        .collect();
    assert_eq!(opens, [98, 99, 102], "the open candle is left out");
    assert_eq!(catch_up.absent, []);
    let check = link.deliveries.pop().unwrap();
    assert_eq!(check.absent, [(100 * m, 102 * m)]);
    // The shard turns the span into a `Record::Absent` for the writer, which stores it
    // (tests/db.rs: confirmed_absences_are_spooled_then_stored_once_by_the_writer).
}
