//! Property tests of the pure state machines the feed relies on: the candle and gap
//! tracker, the subscription planner and the reconnect backoff. Each property runs on a
//! few hundred generated cases; together they take a few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use alphapulse::backoff::{AttemptLimiter, Backoff, BINANCE_ATTEMPT_WINDOW};
use alphapulse::candle::{CandleTrack, KlineOutcome, MAX_OPEN_GAPS};
use alphapulse::config::StreamKinds;
use alphapulse::feed::protocol::{
    assign_streams, streams_for, subscribe_batches, BINANCE_MAX_REQUEST_BYTES,
    BINANCE_MAX_STREAMS_PER_CONNECTION,
};
use alphapulse::market::{Candle, Decimal, Interval, Symbol};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Candles and gaps.

/// Intervals of fixed and calendar length.
const INTERVALS: [Interval; 5] = [
    Interval::M1,
    Interval::M15,
    Interval::H4,
    Interval::W1,
    Interval::Mo1,
];

/// Open time of candle number `i` of a series starting at the grid point `start`.
fn open_of(interval: Interval, start: i64, i: usize) -> i64 {
    (0..i).fold(start, |t, _| interval.next_open(t))
}

fn candle(interval: Interval, open_ms: i64, closed: bool, event_us: i64) -> Candle {
    let one = Decimal::new(1, 0);
    Candle {
        symbol: Symbol::new("BTCUSDT").expect("symbol"),
        interval,
        open_time_ms: open_ms,
        close_time_ms: interval.close_time(open_ms),
        open: one,
        high: one,
        low: one,
        close: one,
        volume: one,
        quote_volume: one,
        taker_buy_base: one,
        taker_buy_quote: one,
        trades: 1,
        first_trade_id: 1,
        last_trade_id: 1,
        closed,
        event_time_us: event_us,
    }
}

/// One update of a series: candle number `index`, live (with an event-time step) or
/// its close.
#[derive(Clone, Copy, Debug)]
struct Update {
    index: usize,
    closed: bool,
    step: i64,
}

/// A series of up to `n` candles: which closes are delivered at all, some live updates
/// per candle, every update possibly repeated (overlapping connections), all in any
/// order (connections racing).
fn updates(n: usize) -> impl Strategy<Value = (Interval, Vec<bool>, Vec<Update>)> {
    (
        prop::sample::select(INTERVALS.to_vec()),
        prop::collection::vec(any::<bool>(), 1..=n),
    )
        .prop_flat_map(|(interval, delivered)| {
            let n = delivered.len();
            let base: Vec<(usize, bool)> = (0..n)
                .flat_map(|i| {
                    let close = delivered[i].then_some((i, true));
                    [(i, false), (i, false)].into_iter().chain(close)
                })
                .collect();
            let len = base.len();
            (
                Just(interval),
                Just(delivered),
                Just(base),
                prop::collection::vec((1..4usize, 0..50i64), len),
            )
        })
        .prop_flat_map(|(interval, delivered, base, extra)| {
            let mut list = Vec::new();
            for ((index, closed), (copies, step)) in base.into_iter().zip(extra) {
                for _ in 0..copies {
                    list.push(Update {
                        index,
                        closed,
                        step,
                    });
                }
            }
            (Just(interval), Just(delivered), Just(list).prop_shuffle())
        })
}

/// What applying a list of updates did.
struct Applied {
    /// Open time → how many times it was emitted as closed.
    emitted: BTreeMap<i64, usize>,
    /// Gaps as reported, with the opens emitted before each report.
    gaps: Vec<((i64, i64), BTreeSet<i64>)>,
    first_close: Option<i64>,
}

fn apply_all(track: &mut CandleTrack, interval: Interval, list: &[Update]) -> Applied {
    const START: i64 = 1_700_000_000_000;
    let start = interval.open_time(START);
    let mut out = Applied {
        emitted: BTreeMap::new(),
        gaps: Vec::new(),
        first_close: None,
    };
    for u in list {
        let open = open_of(interval, start, u.index);
        let event_us = if u.closed {
            interval.close_time(open) * 1000
        } else {
            open * 1000 + u.step * 1000
        };
        let outcome = track.apply(&candle(interval, open, u.closed, event_us));
        if u.closed && out.first_close.is_none() {
            out.first_close = Some(open);
        }
        if let KlineOutcome::Closed { gap } = outcome {
            assert!(u.closed, "only a close is emitted as closed");
            if let Some(g) = gap {
                let before: BTreeSet<i64> = out.emitted.keys().copied().collect();
                out.gaps.push(((g.from_open_ms, g.to_open_ms), before));
            }
            *out.emitted.entry(open).or_insert(0) += 1;
        }
        // The live candle is always newer than the newest close.
        if let (Some(live), Some(last)) = (track.live(), track.last_closed_open_ms()) {
            assert!(
                live.open_time_ms > last,
                "live {live:?} not after close {last}"
            );
        }
    }
    out
}

/// The grid opens in `[from, to)`.
fn opens_between(interval: Interval, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        out.push(t);
        t = interval.next_open(t);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the interleaving, duplication or reordering: each close is emitted at
    /// most once; every delivered close is emitted (one older than the first extends
    /// the series back, as REST history does); gaps
    /// name exactly the opens missing when they were reported, and together with the
    /// emitted closes they tile the series without overlap.
    #[test]
    fn candle_track_emits_each_close_once_and_gaps_cover_the_missing(
        (interval, delivered, list) in updates(20)
    ) {
        let mut track = CandleTrack::default();
        let applied = apply_all(&mut track, interval, &list);
        for (open, times) in &applied.emitted {
            prop_assert_eq!(*times, 1, "close of {} emitted {} times", open, times);
        }
        let Some(first) = applied.first_close else {
            prop_assert!(applied.emitted.is_empty());
            return Ok(());
        };
        let start = interval.open_time(1_700_000_000_000);
        let delivered_opens: BTreeSet<i64> = (0..delivered.len())
            .filter(|&i| delivered[i])
            .map(|i| open_of(interval, start, i))
            .collect();
        let emitted: BTreeSet<i64> = applied.emitted.keys().copied().collect();
        // Fewer than MAX_OPEN_GAPS gaps here, so no late close is left to the backfill.
        prop_assert_eq!(&emitted, &delivered_opens);

        let newest = *emitted.last().expect("first close emitted");
        let mut covered = BTreeSet::new();
        for ((from, to), emitted_before) in &applied.gaps {
            let missing = opens_between(interval, *from, *to);
            prop_assert!(!missing.is_empty(), "empty gap [{}, {})", from, to);
            let last_before = *emitted_before.last().expect("a gap follows a close");
            // The gap starts right after the newest close before it …
            prop_assert_eq!(*from, interval.next_open(last_before));
            for t in missing {
                // … and holds nothing already emitted, nor anything reported before.
                prop_assert!(!emitted_before.contains(&t));
                prop_assert!(covered.insert(t), "{} in two gaps", t);
            }
        }
        for t in opens_between(interval, first, interval.next_open(newest)) {
            prop_assert!(
                emitted.contains(&t) || covered.contains(&t),
                "{} neither emitted nor reported missing", t
            );
        }
        // From the first close on, what stays open is exactly what was reported and
        // never filled (before it, the holes between history closes are open too).
        let still_open: BTreeSet<i64> = track
            .open_gaps()
            .iter()
            .flat_map(|g| opens_between(interval, g.from, g.to))
            .filter(|t| *t >= first)
            .collect();
        let unfilled: BTreeSet<i64> = covered.difference(&emitted).copied().collect();
        prop_assert_eq!(still_open, unfilled);
    }

    /// Closes delivered in order with holes, then the missing closes late, duplicated
    /// and shuffled: each late close fills its place exactly once, and no gap is left.
    #[test]
    fn late_closes_fill_gaps_exactly_once(
        interval in prop::sample::select(INTERVALS.to_vec()),
        present in prop::collection::vec(any::<bool>(), 2..30),
        seed in any::<u64>(),
    ) {
        let mut present = present;
        let last = present.len() - 1;
        present[0] = true;
        present[last] = true;
        let n = present.len();
        let mut track = CandleTrack::default();
        let start = interval.open_time(1_700_000_000_000);
        let close = |i: usize| {
            let open = open_of(interval, start, i);
            candle(interval, open, true, interval.close_time(open) * 1000)
        };
        let mut gaps = 0;
        for i in (0..n).filter(|&i| present[i]) {
            match track.apply(&close(i)) {
                KlineOutcome::Closed { gap } => gaps += usize::from(gap.is_some()),
                other => prop_assert!(false, "in-order close {} was {:?}", i, other),
            }
        }
        prop_assume!(gaps <= MAX_OPEN_GAPS);
        let mut late: Vec<usize> = (0..n).filter(|&i| !present[i]).flat_map(|i| [i, i]).collect();
        let mut rng = seed;
        for k in (1..late.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            late.swap(k, (rng >> 33) as usize % (k + 1));
        }
        let mut filled = BTreeSet::new();
        for i in late {
            match track.apply(&close(i)) {
                KlineOutcome::Closed { gap: None } => prop_assert!(filled.insert(i), "{} twice", i),
                KlineOutcome::Duplicate => prop_assert!(filled.contains(&i), "{} refused", i),
                other => prop_assert!(false, "late close {} was {:?}", i, other),
            }
        }
        prop_assert_eq!(filled.len(), present.iter().filter(|p| !**p).count());
        prop_assert!(track.open_gaps().is_empty(), "{:?}", track.open_gaps());
    }

    /// Many holes, more than `MAX_OPEN_GAPS`: still nothing is emitted twice.
    #[test]
    fn with_many_gaps_nothing_doubles(
        (interval, _delivered, list) in updates(120)
    ) {
        let mut track = CandleTrack::default();
        let applied = apply_all(&mut track, interval, &list);
        prop_assert!(applied.emitted.values().all(|&times| times == 1));
    }

    /// The open gaps stay within `MAX_OPEN_GAPS`, as `candle.rs` promises.
    #[test]
    fn open_gaps_stay_bounded(
        (interval, _delivered, list) in updates(120)
    ) {
        let mut track = CandleTrack::default();
        for u in &list {
            let start = interval.open_time(1_700_000_000_000);
            let open = open_of(interval, start, u.index);
            track.apply(&candle(interval, open, u.closed, interval.close_time(open) * 1000));
            prop_assert!(track.open_gaps().len() <= MAX_OPEN_GAPS);
        }
    }
}

/// The bound above in its plainest case: one long gap filled at every other place by
/// late closes would split into more than `MAX_OPEN_GAPS` gaps.
#[test]
fn open_gaps_stay_bounded_when_late_closes_split_a_gap() {
    let m = Interval::M1;
    let start = m.open_time(1_700_000_000_000);
    let close = |i: usize| {
        let open = open_of(m, start, i);
        candle(m, open, true, m.close_time(open) * 1000)
    };
    let mut track = CandleTrack::default();
    let end = 2 * MAX_OPEN_GAPS + 3;
    track.apply(&close(0));
    track.apply(&close(end));
    for i in (2..end).step_by(2) {
        assert_eq!(track.apply(&close(i)), KlineOutcome::Closed { gap: None });
    }
    assert!(
        track.open_gaps().len() <= MAX_OPEN_GAPS,
        "{} open gaps",
        track.open_gaps().len()
    );
}

// ---------------------------------------------------------------------------------------
// The subscription planner.

fn symbols() -> impl Strategy<Value = Vec<Symbol>> {
    prop::collection::btree_set("[A-Z0-9]{2,20}", 0..300).prop_map(|set| {
        set.iter()
            .map(|s| Symbol::new(s).expect("symbol"))
            .collect()
    })
}

fn kinds() -> impl Strategy<Value = StreamKinds> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![100u32, 1000])),
        prop::option::of(prop::sample::select(vec![5u32, 10, 20])),
    )
        .prop_map(
            |(kline, trade, agg_trade, book_ticker, diff_depth_ms, partial_depth_levels)| {
                StreamKinds {
                    kline,
                    trade,
                    agg_trade,
                    book_ticker,
                    diff_depth_ms,
                    partial_depth_levels,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Streams over connections: every stream on exactly one connection, in order, no
    /// connection over its limit (nor Binance's 1024), no more connections than allowed,
    /// loads balanced; a plan that cannot fit is refused, never truncated.
    #[test]
    fn every_stream_lands_on_exactly_one_connection(
        symbols in symbols(),
        tfs in prop::sample::subsequence(Interval::ALL.to_vec(), 0..=16),
        kinds in kinds(),
        per_connection in 0usize..2000,
        max_connections in 1usize..12,
    ) {
        let streams = streams_for(&symbols, &tfs, &kinds);
        let unique: BTreeSet<&String> = streams.iter().collect();
        prop_assert_eq!(unique.len(), streams.len(), "stream names are unique");
        let cap = per_connection.clamp(1, BINANCE_MAX_STREAMS_PER_CONNECTION);
        match assign_streams(&streams, per_connection, max_connections) {
            Ok(plan) => {
                prop_assert!(plan.len() <= max_connections);
                prop_assert!(plan.iter().all(|c| !c.is_empty() && c.len() <= cap));
                let flat: Vec<String> = plan.concat();
                prop_assert_eq!(&flat, &streams);
                if let (Some(min), Some(max)) = (
                    plan.iter().map(Vec::len).min(),
                    plan.iter().map(Vec::len).max(),
                ) {
                    prop_assert!(max - min <= 1, "unbalanced: {} vs {}", min, max);
                }
                prop_assert_eq!(plan.len(), streams.len().div_ceil(cap));
            }
            Err(e) => {
                prop_assert!(streams.len() > cap * max_connections, "{}", e);
                prop_assert_eq!(e.streams, streams.len());
            }
        }
    }

    /// SUBSCRIBE batches: every stream exactly once and in order, each request under
    /// the byte limit (and Binance's 4 KB), valid JSON naming its streams, ids
    /// consecutive.
    #[test]
    fn subscribe_batches_stay_under_the_byte_limit(
        symbols in symbols(),
        tfs in prop::sample::subsequence(Interval::ALL.to_vec(), 1..=16),
        kinds in kinds(),
        max_bytes in 256usize..8192,
        first_id in 0u64..(u64::MAX / 2),
    ) {
        let streams = streams_for(&symbols, &tfs, &kinds);
        let batches = subscribe_batches("SUBSCRIBE", &streams, max_bytes, first_id);
        let limit = max_bytes.min(BINANCE_MAX_REQUEST_BYTES - 1);
        let mut flat = Vec::new();
        for (k, req) in batches.iter().enumerate() {
            prop_assert!(req.text.len() <= limit, "{} bytes > {}", req.text.len(), limit);
            prop_assert_eq!(req.id, first_id + k as u64);
            let v: serde_json::Value = serde_json::from_str(&req.text).expect("JSON");
            prop_assert_eq!(&v["method"], "SUBSCRIBE");
            prop_assert_eq!(v["id"].as_u64(), Some(req.id));
            let params: Vec<String> = v["params"]
                .as_array()
                .expect("params")
                .iter()
                .map(|s| s.as_str().expect("a name").to_string())
                .collect();
            prop_assert_eq!(&params, &req.streams);
            prop_assert!(!req.streams.is_empty());
            flat.extend(req.streams.iter().cloned());
        }
        prop_assert_eq!(flat, streams);
    }
}

// ---------------------------------------------------------------------------------------
// Backoff and the attempt limit.

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every delay lies in `[ceiling/2, ceiling]` (equal jitter), where the ceiling
    /// doubles from the initial delay and is capped at the maximum; so every delay is
    /// within `[initial/2, max]`, and a stable connection starts the series over.
    #[test]
    fn backoff_delays_are_capped_and_jittered(
        initial_ms in 1u64..10_000,
        max_ms in 1u64..600_000,
        units in prop::collection::vec(prop_oneof![
            9 => 0.0f64..1.0,
            1 => prop::sample::select(vec![0.0, 1.0, -1.0, 2.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        ], 1..80),
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = Duration::from_millis(max_ms).max(initial);
        let stable = Duration::from_secs(60);
        let mut b = Backoff::new(initial, Duration::from_millis(max_ms), stable);
        let mut previous_ceiling = Duration::ZERO;
        for (k, unit) in units.iter().enumerate() {
            let ceiling = initial.saturating_mul(1u32 << (k as u32).min(16)).min(max);
            prop_assert!(ceiling >= previous_ceiling);
            previous_ceiling = ceiling;
            let d = b.next_delay(*unit);
            prop_assert!(d >= ceiling / 2 && d <= ceiling, "attempt {}: {:?} outside [{:?}/2, {:?}]", k, d, ceiling, ceiling);
            prop_assert!(d >= initial / 2 && d <= max);
        }
        prop_assert_eq!(b.attempts() as usize, units.len());
        let t0 = Instant::now();
        b.connection_ended(t0, t0 + stable);
        prop_assert_eq!(b.attempts(), 0);
        prop_assert!(b.next_delay(0.999) <= initial);
    }

    /// A client that attempts whenever the limiter allows, and otherwise waits what it
    /// is told, never makes more than `limit` attempts in any window; and Binance's 300
    /// per 5 minutes holds for every limit up to 300.
    #[test]
    fn the_attempt_limiter_holds_every_window(
        limit in 1usize..=300,
        gaps_ms in prop::collection::vec(0u64..5_000, 1..1500),
    ) {
        let window = BINANCE_ATTEMPT_WINDOW;
        let mut limiter = AttemptLimiter::new(window, limit);
        let t0 = Instant::now();
        let mut now = t0;
        let mut attempts: Vec<Instant> = Vec::new();
        for gap in gaps_ms {
            now += Duration::from_millis(gap);
            let wait = limiter.delay(now);
            if !wait.is_zero() {
                prop_assert!(wait <= window);
                now += wait;
                prop_assert_eq!(limiter.delay(now), Duration::ZERO, "the wait was enough");
            }
            limiter.record(now);
            attempts.push(now);
        }
        // Sliding window over the attempt times (sorted by construction).
        let mut lo = 0;
        for hi in 0..attempts.len() {
            while attempts[hi].duration_since(attempts[lo]) >= window {
                lo += 1;
            }
            let in_window = hi - lo + 1;
            prop_assert!(in_window <= limit, "{} attempts in one window, limit {}", in_window, limit);
            prop_assert!(in_window <= 300);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The REST scheduler.

use alphapulse::backfill::scheduler::{Next, Priority, Scheduler};

#[derive(Clone, Debug)]
enum RestStep {
    Push(bool),
    Advance(u64),
    Answer { status: u16, retry_after_s: u64 },
}

fn rest_steps() -> impl Strategy<Value = Vec<RestStep>> {
    prop::collection::vec(
        prop_oneof![
            any::<bool>().prop_map(RestStep::Push),
            (0u64..20_000).prop_map(RestStep::Advance),
            prop_oneof![Just(200u16), Just(200), Just(429), Just(418)]
                .prop_flat_map(|status| (Just(status), 0u64..120))
                .prop_map(|(status, retry_after_s)| RestStep::Answer {
                    status,
                    retry_after_s
                }),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the jobs and answers: the weight sent in any calendar minute stays in
    /// the share, nothing is sent while a Retry-After runs, and no normal job is sent
    /// while an urgent one waits.
    #[test]
    fn the_rest_scheduler_keeps_the_budget_the_bans_and_the_priorities(
        share in 0.001f64..1.0,
        steps in rest_steps(),
    ) {
        let mut s: Scheduler<(u64, Priority)> = Scheduler::new(share, 2);
        let limit = s.share_1m();
        let mut now = 1_700_000_000_000u64;
        let mut next_id = 0u64;
        let mut sent_in_minute: std::collections::HashMap<u64, u32> = Default::default();
        let mut blocked_until = 0u64;
        let mut waiting = [0usize; 2];
        for step in steps {
            match step {
                RestStep::Push(urgent) => {
                    let p = if urgent { Priority::Urgent } else { Priority::Normal };
                    prop_assert!(s.push((next_id, p), p));
                    next_id += 1;
                    waiting[p as usize] += 1;
                }
                RestStep::Advance(ms) => now += ms,
                RestStep::Answer { status, retry_after_s } => {
                    // The exchange counts only our requests here.
                    let used = sent_in_minute.get(&(now / 60_000)).copied().unwrap_or(0);
                    s.on_answer(now, now, status, Some(used), Some(retry_after_s));
                    if status != 200 {
                        blocked_until = blocked_until.max(now + retry_after_s * 1000);
                    }
                }
            }
            if let Next::Send((_, p)) = s.next(now, now) {
                prop_assert!(now >= blocked_until, "sent during a Retry-After");
                if p == Priority::Normal {
                    prop_assert_eq!(waiting[0], 0, "a normal job went before an urgent one");
                }
                waiting[p as usize] -= 1;
                let w = sent_in_minute.entry(now / 60_000).or_insert(0);
                *w += 2;
                prop_assert!(*w <= limit, "{} weight in one minute, share {}", w, limit);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// REST klines answers (the `rest_klines` fuzz target's checks, on generated answers).

/// One klines row: the open time is on the interval's grid or off it, anywhere from
/// the epoch to the end of `i64`; the close time is right or not; the cells are
/// well-formed or not.
fn klines_row(interval: Interval) -> impl Strategy<Value = String> {
    (
        prop_oneof![0i64..4_102_444_800_000, 0i64..i64::MAX, Just(i64::MAX), Just(-1)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just("\"1.5\"".to_string()), Just("1.5".to_string()), "\"[0-9.e-]{0,6}\""],
        prop_oneof![Just(3i64), Just(-3), Just(i64::MAX)],
    )
        .prop_map(move |(t, on_grid, right_close, price, trades)| {
            let open = if on_grid { interval.open_time(t.max(0)) } else { t };
            let close = if right_close && (0..4_102_444_800_000).contains(&open) {
                interval.close_time(open)
            } else {
                open.wrapping_add(59_999)
            };
            format!("[{open},{price},\"2\",\"1\",{price},\"10\",{close},\"12\",{trades},\"4\",\"5\",\"0\"]")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the answer: parsing never panics, and what it accepts is what the
    /// backfill relies on (closed candles on the grid, in order, and missing runs that
    /// hold none of them).
    #[test]
    fn rest_klines_answers_parse_without_panic(
        (interval, rows) in (0usize..16).prop_flat_map(|pick| {
            let interval = Interval::ALL[pick];
            (Just(interval), prop::collection::vec(klines_row(interval), 0..6))
        }),
        cut in any::<u16>(),
    ) {
        let body = format!("[{}]", rows.join(","));
        let symbol = Symbol::new("BTCUSDT").unwrap();
        // The whole answer, and the answer cut short anywhere.
        let cut = (cut as usize).min(body.len());
        for text in [&body[..], &body[..cut]] {
            let Ok(candles) = alphapulse::backfill::klines::parse(text, symbol, interval) else {
                continue;
            };
            for c in &candles {
                prop_assert!(c.closed);
                prop_assert_eq!(interval.open_time(c.open_time_ms), c.open_time_ms);
                prop_assert_eq!(interval.close_time(c.open_time_ms), c.close_time_ms);
            }
            prop_assert!(candles.windows(2).all(|w| w[0].open_time_ms < w[1].open_time_ms));
            if let (Some(first), Some(last)) = (candles.first(), candles.last()) {
                let to = interval.next_open(last.open_time_ms);
                let runs = alphapulse::backfill::klines::missing_runs(&candles, interval, first.open_time_ms, to);
                for &(a, b) in &runs {
                    prop_assert!(first.open_time_ms <= a && a < b && b <= to);
                    prop_assert!(!candles.iter().any(|c| c.open_time_ms >= a && c.open_time_ms < b));
                }
            }
        }
    }
}
