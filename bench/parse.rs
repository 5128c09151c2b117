//! Criterion: the simd-json parser per Binance event type (combined-stream frames), with
//! the frame copy every real read pays included, next to that copy alone as the floor.
//!
//! `cargo bench --bench parse`

#[path = "common.rs"]
mod common;

use criterion::{BatchSize, Criterion, Throughput};
use std::hint::black_box;

use alphapulse::harness::parse::Case;
use alphapulse::wire::{Parser, TimeUnit};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for case in Case::ALL {
        let frame = case.frame();
        let mut parser = Parser::new(TimeUnit::Millisecond);
        let mut work = frame.clone();
        g.bench_function(case.name(), |b| {
            b.iter(|| {
                // The parser works in place, so each iteration parses a fresh copy, as
                // each socket read hands it fresh bytes.
                work.copy_from_slice(&frame);
                let _ = black_box(parser.parse(black_box(&mut work)));
            })
        });
        g.bench_function(format!("{}_copy_only", case.name()), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |w| {
                    w.copy_from_slice(&frame);
                    black_box(w);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn main() {
    let mut c = common::criterion();
    parse(&mut c);
    c.final_summary();
}
