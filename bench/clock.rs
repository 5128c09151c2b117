//! Criterion: what one stage stamp costs with each clock the engine could use (issue:
//! "cheap stamps"). The engine stamps with `clock::mono_ns` (CLOCK_MONOTONIC through the
//! vDSO, relative to a process origin); the alternatives are the coarse monotonic clock
//! (the kernel's last tick, 1-4 ms resolution: too coarse for µs stages), the wall
//! clock, and the CPU's time-stamp counter (cheapest, but it needs a calibration to ns
//! and an invariant TSC synchronised across cores, which a VM may not give).
//!
//! `cargo bench --bench clock`

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use criterion::Criterion;

fn clock_gettime(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used are supported.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stamp");
    group.bench_function("clock::mono_ns (engine)", |b| {
        b.iter(|| black_box(alphapulse::clock::mono_ns()))
    });
    group.bench_function("Instant::now", |b| b.iter(|| black_box(Instant::now())));
    group.bench_function("CLOCK_MONOTONIC", |b| {
        b.iter(|| black_box(clock_gettime(libc::CLOCK_MONOTONIC)))
    });
    group.bench_function("CLOCK_MONOTONIC_COARSE", |b| {
        b.iter(|| black_box(clock_gettime(libc::CLOCK_MONOTONIC_COARSE)))
    });
    group.bench_function("SystemTime::now", |b| {
        b.iter(|| black_box(SystemTime::now()))
    });
    group.bench_function("clock::wall_us", |b| {
        b.iter(|| black_box(alphapulse::clock::wall_us()))
    });
    #[cfg(target_arch = "x86_64")]
    group.bench_function("rdtsc", |b| {
        // SAFETY: RDTSC exists on every x86_64 CPU and has no preconditions.
        b.iter(|| black_box(unsafe { core::arch::x86_64::_rdtsc() }))
    });
    group.finish();
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
