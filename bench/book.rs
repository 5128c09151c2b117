//! One local order book kept from the simulator's diff depth stream:
//! `cargo bench --bench book`. Target: ≤ 100 ns per level change, no allocation.
//!
//! The events are the simulator's `@depth@100ms` diffs of one symbol (its book under a
//! trade tape of 100 trades a second for 20 simulated minutes), parsed into
//! the `Level`s the wire parser makes. Each timed run applies all of them, in order, to
//! a book synchronised from the simulator's snapshot at their start (the set-up, not
//! timed); the figure is per level change. Before timing, a counting allocator checks
//! that applying them allocates nothing.
//!
//! Baselines, in the same run: the exact price conversion alone (every book pays it),
//! and the same events applied to a plain `BTreeMap` per side (price units to quantity,
//! the same conversion, no depth bound, chain check or top tracking): the book a feed
//! handler writes first.

use std::collections::BTreeMap;
use std::hint::black_box;

use alphapulse::alloc::{thread_allocations, Counting};
use alphapulse::book::{price_units, BookLevel, LocalBook, Snapshot};
use alphapulse::market::{Decimal, Level, Symbol};
use alphapulse::simulator::market::{Event, Market, MarketConfig, Sink, StreamId};
use alphapulse::simulator::stream::StreamKind;
use alphapulse::simulator::KlinePhase;
use criterion::{BatchSize, Criterion, Throughput};

#[global_allocator]
static ALLOC: Counting<std::alloc::System> = Counting(std::alloc::System);

struct Diff {
    first: u64,
    last: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Collects symbol 0's fast diff events, as the parser would hand them over.
struct Diffs {
    stream: StreamId,
    out: Vec<Diff>,
}

impl Sink for Diffs {
    fn wants(&self, stream: StreamId) -> bool {
        stream == self.stream
    }
    fn emit(&mut self, stream: StreamId, event: &Event<'_>) {
        let Event::DepthDiff(d) = event else { return };
        if stream != self.stream {
            return;
        }
        let level = |l: &alphapulse::simulator::book::BookLevel| Level {
            price: Decimal::new(l.price, 8),
            quantity: Decimal::new(l.qty, 8),
        };
        self.out.push(Diff {
            first: d.first_update_id,
            last: d.last_update_id,
            bids: d.bids.iter().map(level).collect(),
            asks: d.asks.iter().map(level).collect(),
        });
    }
}

/// `cargo bench` passes `--bench` and gets the timed run. `cargo test --all-targets`
/// runs this binary too, with libtest's flags that criterion rejects: then it only
/// checks, over two simulated minutes, that the book stays in sync and allocates
/// nothing, as a test.
fn main() {
    let timed = std::env::args().any(|a| a == "--bench");
    let minutes = if timed { 20 } else { 2 };
    let symbol = Symbol::new("BTCUSDT").unwrap();
    let mut market = Market::new(&MarketConfig {
        symbols: vec![symbol],
        seed: 42,
        trade_rate: 100.0,
        start_time_ms: 1_700_000_000_000,
        kline_push_ms: 2_000,
        kline_phase: KlinePhase::Aligned,
        history_limit: 10,
        history_candles: 0,
    });
    let book = market.symbols()[0].book();
    let level = |l: &alphapulse::simulator::book::BookLevel| BookLevel {
        price: l.price,
        qty: Decimal::new(l.qty, 8),
    };
    let snapshot = Snapshot {
        symbol,
        last_update_id: book.update_id(),
        bids: book.bids().map(level).collect(),
        asks: book.asks().map(level).collect(),
        limit: 1000,
    };
    let mut diffs = Diffs {
        stream: StreamId::new(0, StreamKind::Depth { fast: true }),
        out: Vec::new(),
    };
    market.advance_to(
        (1_700_000_000_000 + minutes * 60_000) * 1_000_000,
        &mut diffs,
    );
    let events = diffs.out;
    let changes: usize = events.iter().map(|d| d.bids.len() + d.asks.len()).sum();

    let synced = || {
        let mut b = LocalBook::new(symbol, 1000, 20, 0);
        let first = &events[0];
        b.on_diff(first.first, first.last, 0, &first.bids, &first.asks, 0);
        b.snapshot_asked();
        b.on_snapshot(&snapshot, 0);
        assert!(b.is_valid());
        b
    };
    let apply = |b: &mut LocalBook| {
        for d in &events[1..] {
            black_box(b.on_diff(d.first, d.last, 0, &d.bids, &d.asks, 0));
        }
    };
    let mut b = synced();
    let before = thread_allocations();
    apply(&mut b);
    let allocations = thread_allocations() - before;
    assert!(b.is_valid(), "the book stayed in sync over every event");
    println!(
        "{} diff events, {changes} level changes ({:.1} per event), {allocations} allocations, \
         {} bids / {} asks at the end",
        events.len(),
        changes as f64 / events.len() as f64,
        b.bids().len(),
        b.asks().len()
    );
    assert_eq!(allocations, 0, "applying diffs allocates nothing");
    if !timed {
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(changes as u64));
    group.bench_function("apply_diff_events", |bench| {
        bench.iter_batched_ref(synced, apply, BatchSize::LargeInput)
    });
    type MapBook = (BTreeMap<i64, Decimal>, BTreeMap<i64, Decimal>);
    let map_synced = || -> MapBook {
        let side = |levels: &[BookLevel]| levels.iter().map(|l| (l.price, l.qty)).collect();
        (side(&snapshot.bids), side(&snapshot.asks))
    };
    let map_apply = |(bids, asks): &mut MapBook| {
        for d in &events[1..] {
            for (side, levels) in [(&mut *bids, &d.bids), (&mut *asks, &d.asks)] {
                for l in levels.iter() {
                    let price = price_units(l.price).expect("8 decimals");
                    if l.quantity.is_zero() {
                        side.remove(&price);
                    } else {
                        side.insert(price, l.quantity);
                    }
                }
            }
            black_box((bids.last_key_value(), asks.first_key_value()));
        }
    };
    group.bench_function("price_conversion_only", |bench| {
        bench.iter(|| {
            let mut sum = 0i64;
            for d in &events[1..] {
                for l in d.bids.iter().chain(&d.asks) {
                    sum = sum.wrapping_add(price_units(black_box(l.price)).unwrap_or(0));
                }
            }
            black_box(sum)
        })
    });
    group.bench_function("baseline_btreemap", |bench| {
        bench.iter_batched_ref(map_synced, map_apply, BatchSize::LargeInput)
    });
    group.finish();
    c.final_summary();
}
