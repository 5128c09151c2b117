//! One local order book kept from the simulator's diff depth stream:
//! `cargo bench --bench book`. Target: ≤ 100 ns per level change, no allocation.
//!
//! The events are the simulator's `@depth@100ms` diffs of one symbol (its book under a
//! trade tape of 50 aggregate trades a second for 20 simulated minutes), parsed into
//! the `Level`s the wire parser makes. Each timed run applies all of them, in order, to
//! a book synchronised from the simulator's snapshot at their start (the set-up, not
//! timed); the figure is per level change. Before timing, a counting allocator checks
//! that applying them allocates nothing.

use std::hint::black_box;

use alphapulse::alloc::{thread_allocations, Counting};
use alphapulse::book::{BookLevel, LocalBook, Snapshot};
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

fn main() {
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
    market.advance_to((1_700_000_000_000 + 20 * 60_000) * 1_000_000, &mut diffs);
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

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(changes as u64));
    group.bench_function("apply_diff_events", |bench| {
        bench.iter_batched_ref(synced, apply, BatchSize::LargeInput)
    });
    group.finish();
    c.final_summary();
}
