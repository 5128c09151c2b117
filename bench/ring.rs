//! Criterion: one ring hop between two cores (a shard's ring to a sink), as a round trip
//! of an `Envelope`-sized message over two rings, pinned to two different cores when
//! the machine allows; the figure per iteration is two hops.
//!
//! `cargo bench --bench ring`

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use std::hint::black_box;

use alphapulse::market::{Candle, Interval, Symbol};
use alphapulse::ring::ring;
use alphapulse::shard::{Envelope, Record};

fn envelope() -> Envelope {
    let d = |s: &str| s.parse().expect("a valid decimal");
    Envelope {
        shard: 0,
        recv_ns: 1,
        parsed_ns: 2,
        record: Record::ClosedCandle(Candle {
            symbol: Symbol::new("BTCUSDT").expect("a valid symbol"),
            interval: Interval::M1,
            open_time_ms: 1_633_998_480_000,
            close_time_ms: 1_633_998_539_999,
            open: d("0.35270000"),
            high: d("0.35280000"),
            low: d("0.35220000"),
            close: d("0.35280000"),
            volume: d("25877.00000000"),
            quote_volume: d("9116.04600000"),
            taker_buy_base: d("58.00000000"),
            taker_buy_quote: d("20.46240000"),
            trades: 30,
            first_trade_id: 19_862_761,
            last_trade_id: 19_862_790,
            closed: true,
            event_time_us: 1_633_998_539_999_000,
        }),
    }
}

fn pin(index: usize) {
    if let Some(ids) = core_affinity::get_core_ids() {
        if let Some(id) = ids.get(index % ids.len()) {
            core_affinity::set_for_current(*id);
        }
    }
}

fn ring_hop(c: &mut Criterion) {
    let (to_echo, echo_in) = ring::<Envelope>("bench->echo", 1024);
    let (echo_out, back) = ring::<Envelope>("echo->bench", 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(1);
            while !stop.load(Ordering::Relaxed) {
                if let Some(e) = echo_in.pop() {
                    let mut e = e;
                    while let Err(x) = echo_out.push(e) {
                        e = x;
                        std::hint::spin_loop();
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    pin(0);
    let env = envelope();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(2));
    g.bench_function("round_trip_two_cores", |b| {
        b.iter(|| {
            let _ = to_echo.push(black_box(env));
            loop {
                if let Some(e) = back.pop() {
                    black_box(e);
                    break;
                }
                std::hint::spin_loop();
            }
        })
    });
    g.bench_function("push_pop_same_core", |b| {
        let (tx, rx) = ring::<Envelope>("local", 1024);
        b.iter(|| {
            let _ = tx.push(black_box(env));
            black_box(rx.pop());
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
}

fn main() {
    let mut c = common::criterion();
    ring_hop(&mut c);
    c.final_summary();
}
