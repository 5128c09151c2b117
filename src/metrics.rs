//! Counters each role publishes for the control plane.
//!
//! Every counter has exactly one writer (the core that owns the role) and is read by the
//! dashboard with relaxed loads: no locks, no contention on the hot path. Cache padding
//! keeps one shard's counters off another core's cache lines.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// A relaxed counter with a single writer: the owning core updates it with a plain
/// load and store (no locked read-modify-write on the hot path); other cores only read.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Decrements, saturating at zero (for gauges such as active connections).
    #[inline]
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A relaxed signed gauge (timestamps, ages).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Parse-error reasons, in the order of [`crate::wire::ParseError::reason`] labels.
pub const PARSE_ERROR_REASONS: [&str; 6] = [
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "too_large",
];

/// Figures of one shard core.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub messages: CachePadded<Counter>,
    pub bytes: Counter,
    pub parse_errors: [Counter; PARSE_ERROR_REASONS.len()],
    pub unknown_events: Counter,
    pub unknown_fields: Counter,
    pub binary_frames: Counter,
    pub klines: Counter,
    pub trades: Counter,
    pub agg_trades: Counter,
    pub book_tickers: Counter,
    pub depth_updates: Counter,
    pub partial_depths: Counter,
    pub duplicates: Counter,
    /// Klines whose times are inconsistent (see `candle::plausible`), dropped.
    pub implausible_klines: Counter,
    pub stale: Counter,
    pub candles_closed: Counter,
    pub gaps: Counter,
    pub gap_candles: Counter,
    pub server_shutdowns: Counter,
    pub connections_active: Counter,
    /// Connections whose subscriptions are all acknowledged.
    pub connections_live: Counter,
    pub connection_attempts: Counter,
    pub connect_failures: Counter,
    pub reconnects: Counter,
    pub rotations: Counter,
    pub silent_drops: Counter,
    pub pings_answered: Counter,
    pub subscribe_requests: Counter,
    pub subscribe_acks: Counter,
    pub subscribe_errors: Counter,
    pub subscribe_retries: Counter,
    pub streams_subscribed: Counter,
    pub live_conflated: Counter,
    pub overflow_depth: Counter,
    pub backpressure_pauses: Counter,
    /// Heap allocations made by the shard thread since it started (counted only when
    /// the binary's counting allocator is installed).
    pub allocations: Counter,
    /// Exchange event time of the latest message, µs.
    pub last_event_time_us: Gauge,
    /// Signals made, per kind, in the order of `SignalKind::ALL`.
    pub signals: [Counter; crate::signals::SignalKind::ALL.len()],
    /// Series warmed from REST klines, and the candles that warmed them.
    pub signal_warm_series: Counter,
    pub signal_warm_candles: Counter,
    /// Series reset after a gap longer than `signals.rewarm_after_candles`.
    pub signal_rewarms: Counter,
    /// Warm batches that did not meet the live candles, fetched again.
    pub signal_warm_holes: Counter,
    /// Re-warm requests dropped because the warm thread's queue was full.
    pub signal_warm_requests_dropped: Counter,
    /// Closed candles whose signals waited for a gap before them to be backfilled, and
    /// holes the signals were computed across (the gap could not be filled in time).
    pub signal_held: Counter,
    pub signal_holes_bridged: Counter,
    /// Backfill: requests made, requests dropped (queue full), batches applied, closed
    /// candles it stored, and requests that failed for good.
    pub backfill_requests: Counter,
    pub backfill_requests_dropped: Counter,
    pub backfill_batches: Counter,
    pub backfill_candles: Counter,
    pub backfill_failures: Counter,
    /// Completeness per (symbol, timeframe), set once when the shard starts.
    pub series: std::sync::OnceLock<Box<[SeriesStats]>>,
}

/// Completeness of one (symbol, timeframe), written by its shard after every change.
#[derive(Debug)]
pub struct SeriesStats {
    pub symbol: crate::market::Symbol,
    pub interval: crate::market::Interval,
    pub expected: Counter,
    pub missing: Counter,
    pub open_gaps: Counter,
    pub confirmed_absent: Counter,
    pub gaps_detected: Counter,
    pub gaps_filled: Counter,
    pub candles_filled: Counter,
    pub candles_backfilled: Counter,
    /// Open times (ms) of the first and newest closed candle; close time of the newest.
    pub first_open_ms: Gauge,
    pub last_open_ms: Gauge,
    pub last_close_ms: Gauge,
}

impl SeriesStats {
    pub fn new(symbol: crate::market::Symbol, interval: crate::market::Interval) -> SeriesStats {
        SeriesStats {
            symbol,
            interval,
            expected: Counter::default(),
            missing: Counter::default(),
            open_gaps: Counter::default(),
            confirmed_absent: Counter::default(),
            gaps_detected: Counter::default(),
            gaps_filled: Counter::default(),
            candles_filled: Counter::default(),
            candles_backfilled: Counter::default(),
            first_open_ms: Gauge::default(),
            last_open_ms: Gauge::default(),
            last_close_ms: Gauge::default(),
        }
    }

    /// Share of the expected candles present (1 when none is expected yet).
    pub fn ratio(&self) -> f64 {
        let expected = self.expected.get();
        if expected == 0 {
            return 1.0;
        }
        expected.saturating_sub(self.missing.get()) as f64 / expected as f64
    }

    /// Seconds since the newest closed candle closed, by the wall clock; 0 before the
    /// first close, and 0 when the exchange clock runs ahead of ours (as an accelerated
    /// simulation's does).
    pub fn last_closed_age_s(&self, now_ms: i64) -> f64 {
        let close = self.last_close_ms.get();
        if close <= 0 {
            return 0.0;
        }
        ((now_ms - close - 1).max(0)) as f64 / 1000.0
    }

    pub fn set(&self, c: &crate::candle::Completeness, first: Option<i64>, last: Option<i64>) {
        self.expected.set(c.expected);
        self.missing.set(c.missing);
        self.open_gaps.set(c.open_gaps);
        self.confirmed_absent.set(c.confirmed_absent);
        self.gaps_detected.set(c.gaps_detected);
        self.gaps_filled.set(c.gaps_filled);
        self.candles_filled.set(c.candles_filled);
        if let Some(f) = first {
            self.first_open_ms.set(f);
        }
        if let Some(l) = last {
            self.last_open_ms.set(l);
            self.last_close_ms.set(self.interval.close_time(l));
        }
    }
}

impl ShardStats {
    pub fn parse_error(&self, reason: &str) {
        if let Some(i) = PARSE_ERROR_REASONS.iter().position(|r| *r == reason) {
            self.parse_errors[i].inc();
        }
    }

    pub fn parse_errors_total(&self) -> u64 {
        self.parse_errors.iter().map(Counter::get).sum()
    }

    pub fn signals_total(&self) -> u64 {
        self.signals.iter().map(Counter::get).sum()
    }
}

/// The process's memory and CPU time per role thread, read from `/proc` by the control
/// plane (the latency collector samples it every second).
#[derive(Clone, Debug, Default)]
pub struct ProcessSample {
    pub rss_bytes: Option<u64>,
    /// (thread role name, user s, system s), sorted by name.
    pub threads: Vec<(String, f64, f64)>,
}

impl ProcessSample {
    /// Reads `/proc/self` (blocking file reads: call it off the glommio executors).
    pub fn read() -> ProcessSample {
        ProcessSample {
            rss_bytes: resident_bytes(),
            threads: thread_cpu_seconds(),
        }
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

/// (thread name, user s, system s) per thread; threads of one name (glommio adds a
/// numeric suffix) are summed.
fn thread_cpu_seconds() -> Vec<(String, f64, f64)> {
    let mut out: Vec<(String, f64, f64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let Some((user, system)) = task_cpu(&entry.path()) else {
            continue;
        };
        // glommio names an executor's thread `<name>-<executor id>`: the role is the name.
        let comm = comm.trim();
        let name = match comm.rsplit_once('-') {
            Some((role, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => role,
            _ => comm,
        }
        .to_string();
        match out.iter_mut().find(|(n, _, _)| *n == name) {
            Some(t) => {
                t.1 += user;
                t.2 += system;
            }
            None => out.push((name, user, system)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// User and system CPU seconds of one `/proc/<pid>/task/<tid>` directory.
pub fn task_cpu(task: &std::path::Path) -> Option<(f64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // The command name may contain spaces; fields start after the closing ')'.
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / ticks, stime / ticks))
}
