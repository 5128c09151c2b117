//! Criterion: JSON serialization of the records of docs/api.md (what the publisher and the
//! dashboard do once per event), from the in-memory candle and signal: serde_json of the
//! record structs (the baseline) and the allocation-light writers the sinks use.
//!
//! `cargo bench --bench records`

#[path = "common.rs"]
mod common;

use criterion::{Criterion, Throughput};
use std::hint::black_box;

use alphapulse::market::{Candle, Interval, Symbol};
use alphapulse::record::{write_candle, write_signal, CandleRecord, SignalRecord};
use alphapulse::signals::{Direction, IndicatorValues, Signal, SignalKind};

fn candle() -> Candle {
    let d = |s: &str| s.parse().expect("a valid decimal");
    Candle {
        symbol: Symbol::new("BTCUSDT").expect("a valid symbol"),
        interval: Interval::M1,
        open_time_ms: 1_672_515_780_000,
        close_time_ms: 1_672_515_839_999,
        open: d("16541.77000000"),
        high: d("16542.01000000"),
        low: d("16540.12000000"),
        close: d("16541.35000000"),
        volume: d("12.34567000"),
        quote_volume: d("204213.96423900"),
        taker_buy_base: d("6.10000000"),
        taker_buy_quote: d("100905.43000000"),
        trades: 431,
        first_trade_id: 2_436_580_213,
        last_trade_id: 2_436_580_643,
        closed: true,
        event_time_us: 1_672_515_840_001_000,
    }
}

fn signal() -> Signal {
    let mut indicators = IndicatorValues::new();
    indicators.push("ema_fast", 16_540.112_345);
    indicators.push("ema_slow", 16_538.998_1);
    Signal {
        symbol: Symbol::new("BTCUSDT").expect("a valid symbol"),
        interval: Interval::M1,
        kind: SignalKind::EmaCross,
        direction: Direction::Buy,
        confidence: 0.62,
        price: "16541.35000000".parse().expect("a valid decimal"),
        timestamp_ms: 1_672_515_839_999,
        event_time_us: 1_672_515_840_001_000,
        indicators,
    }
}

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("records");
    g.throughput(Throughput::Elements(1));
    let k = candle();
    let s = signal();
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("candle_json", |b| {
        b.iter(|| {
            buf.clear();
            let _ = serde_json::to_writer(&mut buf, &CandleRecord::from(black_box(&k)));
            black_box(&buf);
        })
    });
    g.bench_function("signal_json", |b| {
        b.iter(|| {
            buf.clear();
            let _ = serde_json::to_writer(&mut buf, &SignalRecord::from(black_box(&s)));
            black_box(&buf);
        })
    });
    // The same bytes through the allocation-light writers that the publisher and the
    // dashboard use.
    g.bench_function("candle_writer", |b| {
        b.iter(|| {
            buf.clear();
            write_candle(&mut buf, black_box(&k));
            black_box(&buf);
        })
    });
    g.bench_function("signal_writer", |b| {
        b.iter(|| {
            buf.clear();
            write_signal(&mut buf, black_box(&s));
            black_box(&buf);
        })
    });
    g.finish();
}

fn main() {
    let mut c = common::criterion();
    records(&mut c);
    c.final_summary();
}
