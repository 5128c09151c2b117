//! One closed-candle update of every indicator and rule of one (symbol, timeframe):
//! `cargo bench --bench indicators`. Target: ≤ 200 ns, no allocation.
//!
//! The candles are the committed reference series (tests/data/candles.csv), replayed in
//! a loop with increasing open times so the engine never skips one. Before timing, the
//! bench checks with a counting allocator that a warm engine allocates nothing per
//! update (its windows resum in place).

use std::hint::black_box;

use alphapulse::alloc::{thread_allocations, Counting};
use alphapulse::market::{Candle, Decimal, Interval, Symbol};
use alphapulse::signals::params::SignalParams;
use alphapulse::signals::rules::{Bar, SignalEngine};
use criterion::Criterion;

#[global_allocator]
static ALLOC: Counting<std::alloc::System> = Counting(std::alloc::System);

fn candles() -> Vec<Candle> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/candles.csv");
    let text = std::fs::read_to_string(path).expect("tests/data/candles.csv");
    let tf = Interval::H1;
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let d = |i: usize| f[i].parse::<Decimal>().expect("decimal");
            let open_time_ms: i64 = f[0].parse().expect("time");
            Candle {
                symbol: Symbol::new("BTCUSDT").expect("symbol"),
                interval: tf,
                open_time_ms,
                close_time_ms: tf.close_time(open_time_ms),
                open: d(1),
                high: d(2),
                low: d(3),
                close: d(4),
                volume: d(5),
                quote_volume: Decimal::ZERO,
                taker_buy_base: Decimal::ZERO,
                taker_buy_quote: Decimal::ZERO,
                trades: 1,
                first_trade_id: 0,
                last_trade_id: 0,
                closed: true,
                event_time_us: 0,
            }
        })
        .collect()
}

/// Feeds `candle` as the `n`-th update: open times keep increasing across loops.
#[inline]
fn step(engine: &mut SignalEngine, candle: &Candle, n: i64, fired: &mut u64) {
    let mut bar = Bar::from_candle(candle);
    bar.open_time_ms = n * 3_600_000;
    engine.update(&bar, |f| {
        black_box(&f);
        *fired += 1;
    });
}

fn bench(c: Option<&mut Criterion>) {
    let series = candles();
    let mut engine = SignalEngine::new(&SignalParams::default());
    let mut n = 0i64;
    let mut fired = 0u64;
    // Warm, then prove a full pass over the series allocates nothing.
    for candle in &series {
        n += 1;
        step(&mut engine, candle, n, &mut fired);
    }
    let before = thread_allocations();
    for candle in &series {
        n += 1;
        step(&mut engine, candle, n, &mut fired);
    }
    let allocations = thread_allocations() - before;
    assert_eq!(allocations, 0, "a closed-candle update allocated");
    println!(
        "allocations per update: 0 (checked over {} updates, {fired} signals fired)",
        series.len()
    );

    let Some(c) = c else {
        return;
    };
    let mut i = 0usize;
    c.bench_function("closed_candle_update_all_indicators_and_rules", |b| {
        b.iter(|| {
            i = (i + 1) % series.len();
            n += 1;
            step(&mut engine, black_box(&series[i]), n, &mut fired);
        })
    });
    // Baseline in the same run: the decimal-to-f64 conversion of the candle alone, the
    // part of the update that is not indicator arithmetic.
    c.bench_function("candle_to_bar_only", |b| {
        b.iter(|| {
            i = (i + 1) % series.len();
            black_box(Bar::from_candle(black_box(&series[i])));
        })
    });
    black_box(fired);
}

/// `cargo bench` passes `--bench` and gets the timed run. `cargo test --all-targets`
/// runs this binary too, with libtest's flags (`--test-threads`) that criterion rejects:
/// then it only checks that a warm update allocates nothing, as a test.
fn main() {
    if std::env::args().any(|a| a == "--bench") {
        let mut c = Criterion::default().configure_from_args();
        bench(Some(&mut c));
        c.final_summary();
    } else {
        bench(None);
    }
}
