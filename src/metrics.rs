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

/// How a figure is exported on `/metrics`: a counter only goes up while the process
/// runs (its name ends in `_total`); a gauge is a state or a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
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

/// Why a feed connection was reset (ended by anything but our own request), in the
/// order of [`ShardStats::resets`]. The protocol violations are those RFC 6455 says
/// must fail the connection; see `feed::connection::ResetReason`.
pub const RESET_REASONS: [&str; 14] = [
    "oversized_frame",
    "reserved_opcode",
    "reserved_bits",
    "masked_frame",
    "bad_control_frame",
    "bad_fragmentation",
    "bad_close_frame",
    "protocol_other",
    "bad_utf8",
    "server_close",
    "end_of_stream",
    "silence_timeout",
    "subscribe_failed",
    "io_error",
];

/// A shard's backfill of holes in one kind of trade ids.
#[derive(Debug, Default)]
pub struct TradeBackfillStats {
    /// Holes asked of the REST thread, and holes dropped for a full queue (their ids
    /// stay missing).
    pub requests: Counter,
    pub requests_dropped: Counter,
    /// Backfilled trades sent on, and backfills that failed for good.
    pub backfilled: Counter,
    pub failures: Counter,
}

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
    /// Holes in a symbol's trade ids (`@trade`) and the trade ids they skipped.
    pub trade_gaps: Counter,
    pub trade_gap_ids: Counter,
    /// Holes in a symbol's aggregate trade ids (`@aggTrade`) and the ids they skipped.
    pub agg_trade_gaps: Counter,
    pub agg_trade_gap_ids: Counter,
    /// The backfill of holes in aggregate trade ids, and in raw trade ids.
    pub agg_trade_backfill: TradeBackfillStats,
    pub trade_backfill: TradeBackfillStats,
    /// Klines whose times are inconsistent (see `candle::plausible`), dropped.
    pub implausible_klines: Counter,
    /// Events dropped for an event time too far from our clock, per
    /// [`crate::clock::Skew`] (future, past); see `feed.max_clock_skew_ms`.
    pub clock_skew_drops: [Counter; crate::clock::Skew::ALL.len()],
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
    /// Connection resets per reason, in the order of [`RESET_REASONS`].
    pub resets: [Counter; RESET_REASONS.len()],
    /// Streams the exchange rejected (each stream of a rejected request once), and
    /// the SUBSCRIBE requests sent again after a rejection (split or retried).
    pub streams_rejected: Counter,
    pub rejection_retries: Counter,
    pub pings_answered: Counter,
    pub subscribe_requests: Counter,
    pub subscribe_acks: Counter,
    pub subscribe_errors: Counter,
    pub subscribe_retries: Counter,
    pub streams_subscribed: Counter,
    pub live_conflated: Counter,
    /// Records a sink takes at most once (trades to Redis) dropped for its full ring.
    pub lossy_dropped: Counter,
    pub overflow_depth: Counter,
    pub backpressure_pauses: Counter,
    /// Heap allocations made by the shard thread since it started (counted only when
    /// the binary's counting allocator is installed).
    pub allocations: Counter,
    /// Exchange event time of the latest message, µs.
    pub last_event_time_us: Gauge,
    /// Signals made, per kind, in the order of `SignalKind::ALL`.
    pub signals: [Counter; crate::signals::SignalKind::ALL.len()],
    /// Series whose indicators all have values (applied at least their warm-up
    /// candles): the ones that can make signals.
    pub signal_series_ready: Gauge,
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
    /// Local order books of the shard's symbols.
    pub books: BookStats,
    /// Completeness per (symbol, timeframe), set once when the shard starts.
    pub series: std::sync::OnceLock<Box<[SeriesStats]>>,
    /// Every stream this shard's connections subscribe, set once when the shard starts.
    pub streams: std::sync::OnceLock<Box<[StreamStats]>>,
}

/// Figures of a shard's local order books ([`crate::book`]), single writer.
#[derive(Debug, Default)]
pub struct BookStats {
    /// Books kept, and those valid now.
    pub books: Gauge,
    pub valid: Gauge,
    /// Diff events applied, and repeats skipped (a rotation's overlap).
    pub diffs_applied: Counter,
    pub diffs_repeated: Counter,
    /// Resyncs begun, per cause, in the order of [`crate::book::Resync::ALL`].
    pub resyncs: [Counter; crate::book::Resync::ALL.len()],
    /// Snapshots asked for, applied, refused as older than the buffered events, and
    /// failed (asked again after [`crate::shard::BOOK_RETRY_NS`]) or never answered
    /// (asked again after [`crate::shard::BOOK_ANSWER_TIMEOUT_NS`]).
    pub snapshots_asked: Counter,
    pub snapshots_applied: Counter,
    pub snapshots_too_old: Counter,
    pub snapshot_failures: Counter,
    /// Snapshot requests the REST queue had no room for (asked again later).
    pub snapshot_requests_dropped: Counter,
    /// Time books were invalid, summed over resyncs that ended (ns).
    pub invalid_ns: Counter,
    /// Buffered events dropped for room while a snapshot was awaited.
    pub buffer_drops: Counter,
    /// Views published (to the board, the dashboard and Redis).
    pub published: Counter,
}

/// Where a configured stream stands, as the control plane reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Acknowledged on at least one connection, and (for a kline stream) data within
    /// the silence bound.
    Live,
    /// Acknowledged, but a kline stream that sent nothing for longer than the bound.
    Silent,
    /// The exchange's latest answer for it was an error; it is retried with backoff.
    Rejected,
    /// Not acknowledged on any connection yet (connecting, subscribing, reconnecting).
    Pending,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Live => "live",
            StreamState::Silent => "silent",
            StreamState::Rejected => "rejected",
            StreamState::Pending => "pending",
        }
    }
}

/// One stream of a shard, written by the shard core's connections (single writer),
/// read by the control plane.
#[derive(Debug)]
pub struct StreamStats {
    pub name: String,
    /// The series of a kline stream (index into [`ShardStats::series`]): its updates
    /// mark the stream alive. Other streams may be quiet legitimately (no trades).
    pub series: Option<usize>,
    /// Connections on which the stream is acknowledged now (two during a rotation).
    pub live_on: Counter,
    /// When it last became acknowledged (mono ns; 0 never).
    pub live_since_ns: Counter,
    /// Times the exchange rejected it.
    pub rejections: Counter,
    /// Set while the latest answer was an error, cleared by an acknowledgement.
    pub rejected: std::sync::atomic::AtomicBool,
    /// The exchange's latest error for it (`code: msg`): control path only, rare.
    pub last_error: std::sync::Mutex<String>,
}

impl StreamStats {
    /// The table for `streams`; a kline stream (`<symbol>@kline_<tf>`) is tied to its
    /// series by `series_of`.
    pub fn table(
        streams: &[String],
        series_of: impl Fn(&str) -> Option<usize>,
    ) -> Box<[StreamStats]> {
        streams
            .iter()
            .map(|name| StreamStats {
                name: name.clone(),
                series: series_of(name),
                live_on: Counter::default(),
                live_since_ns: Counter::default(),
                rejections: Counter::default(),
                rejected: Default::default(),
                last_error: Default::default(),
            })
            .collect()
    }

    /// The stream's state at `now_ns`; `last_data_ns` is the latest update of its
    /// series (0: none), `silence_ns` the bound past which a live kline stream is
    /// silent.
    pub fn state(&self, now_ns: u64, last_data_ns: u64, silence_ns: u64) -> StreamState {
        use std::sync::atomic::Ordering::Relaxed;
        if self.live_on.get() == 0 {
            return if self.rejected.load(Relaxed) {
                StreamState::Rejected
            } else {
                StreamState::Pending
            };
        }
        if self.series.is_some() {
            let since = last_data_ns.max(self.live_since_ns.get());
            if now_ns.saturating_sub(since) > silence_ns {
                return StreamState::Silent;
            }
        }
        StreamState::Live
    }

    /// Records an acknowledgement on one more connection at `now_ns`.
    pub fn acknowledged(&self, now_ns: u64) {
        if self.live_on.get() == 0 {
            self.live_since_ns.set(now_ns);
        }
        self.live_on.inc();
        self.rejected
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records a rejection with the exchange's code and message.
    pub fn rejected_with(&self, code: i64, msg: &str) {
        self.rejections.inc();
        self.rejected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.clear();
        use std::fmt::Write as _;
        let _ = write!(
            last,
            "{code}: {}",
            msg.chars().take(200).collect::<String>()
        );
    }
}

/// The signal directions, in the order of [`SeriesStats::signals`].
pub const DIRECTIONS: [crate::signals::Direction; 2] = [
    crate::signals::Direction::Buy,
    crate::signals::Direction::Sell,
];

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
    /// When the latest kline update of the series arrived (mono ns; 0 none).
    pub last_update_ns: Counter,
    /// Signals the series made, per kind (in the order of `SignalKind::ALL`) and
    /// direction (in the order of [`DIRECTIONS`]), counted by the shard as it makes them.
    pub signals: [[Counter; 2]; crate::signals::SignalKind::ALL.len()],
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
            last_update_ns: Counter::default(),
            signals: Default::default(),
        }
    }

    /// Counts one signal of `kind` and `direction`.
    pub fn count_signal(
        &self,
        kind: crate::signals::SignalKind,
        direction: crate::signals::Direction,
    ) {
        let d = DIRECTIONS.iter().position(|x| *x == direction).unwrap_or(0);
        self.signals[kind as usize][d].inc();
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

    /// Counts a connection reset for `reason` (one of [`RESET_REASONS`]).
    pub fn reset(&self, reason: &str) {
        if let Some(i) = RESET_REASONS.iter().position(|r| *r == reason) {
            self.resets[i].inc();
        }
    }

    pub fn clock_skew_drops_total(&self) -> u64 {
        self.clock_skew_drops.iter().map(Counter::get).sum()
    }

    pub fn parse_errors_total(&self) -> u64 {
        self.parse_errors.iter().map(Counter::get).sum()
    }

    pub fn signals_total(&self) -> u64 {
        self.signals.iter().map(Counter::get).sum()
    }
}

/// The process's figures and CPU time per role thread, read from `/proc` by the control
/// plane (the latency collector samples it every second). Linux only, like the engine;
/// a figure that cannot be read is `None` and not exported.
#[derive(Clone, Debug, Default)]
pub struct ProcessSample {
    pub rss_bytes: Option<u64>,
    /// From `/proc/self/stat`.
    pub stat: Option<ProcessStat>,
    /// Entries of `/proc/self/fd`, and the soft `RLIMIT_NOFILE` (`None`: unlimited).
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// (thread role name, user s, system s), sorted by name.
    pub threads: Vec<(String, f64, f64)>,
}

/// The whole process's figures of `/proc/self/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStat {
    /// User and system CPU time of every thread, those that ended included.
    pub cpu_seconds: f64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Unix time the process started, in seconds.
    pub start_time_seconds: f64,
}

impl ProcessSample {
    /// Reads `/proc/self` (blocking file reads: call it off the glommio executors). A
    /// caller that samples again and again keeps a [`ProcReader`] instead.
    pub fn read() -> ProcessSample {
        ProcReader::default().sample()
    }
}

/// Takes [`ProcessSample`]s with the `/proc` files kept open from one sample to the
/// next: each sample reads them again from their start, and only a thread that is new
/// since the last sample costs an open. (The collector samples every second; opening
/// and closing a `stat` file per thread each time, a path walk in procfs per file, was
/// most of what a sample cost.) Blocking file reads: use it off the glommio executors.
#[derive(Default)]
pub struct ProcReader {
    stat: Option<std::fs::File>,
    statm: Option<std::fs::File>,
    /// Each thread's `stat`, by thread id.
    tasks: Vec<(u64, std::fs::File)>,
    buf: Vec<u8>,
}

impl ProcReader {
    pub fn sample(&mut self) -> ProcessSample {
        let rss_bytes =
            reread(&mut self.statm, "/proc/self/statm", &mut self.buf).and_then(parse_statm);
        let stat = match (
            reread(&mut self.stat, "/proc/self/stat", &mut self.buf),
            boot_time(),
        ) {
            (Some(text), Some(boot)) => parse_process_stat(text, boot, clock_ticks()),
            _ => None,
        };
        ProcessSample {
            rss_bytes,
            stat,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            // The soft "Max open files" of `/proc/self/limits`, without having the
            // kernel write out every limit as text.
            max_fds: soft_limit(libc::RLIMIT_NOFILE),
            threads: self.thread_cpu_seconds(),
        }
    }

    /// (thread name, user s, system s) per thread; threads of one name (glommio adds a
    /// numeric suffix) are summed. Threads that ended since the last sample have their
    /// files closed.
    fn thread_cpu_seconds(&mut self) -> Vec<(String, f64, f64)> {
        let mut out: Vec<(String, f64, f64)> = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        let tids: Vec<u64> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        self.tasks.retain(|(tid, _)| tids.contains(tid));
        let ticks = clock_ticks();
        for tid in tids {
            let open = || std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok();
            let at = match self.tasks.iter().position(|(t, _)| *t == tid) {
                Some(at) => at,
                None => match open() {
                    Some(f) => {
                        self.tasks.push((tid, f));
                        self.tasks.len() - 1
                    }
                    None => continue,
                },
            };
            let read = |file: &std::fs::File, buf: &mut Vec<u8>| {
                reread_file(file, buf).and_then(|t| parse_task_stat(t, ticks))
            };
            let mut parsed = read(&self.tasks[at].1, &mut self.buf);
            if parsed.is_none() {
                // A kept file reads nothing once its thread has ended: the id now names
                // another thread (ids are reused), or the thread ended since the listing.
                let Some(f) = open() else { continue };
                self.tasks[at].1 = f;
                parsed = read(&self.tasks[at].1, &mut self.buf);
            }
            if let Some((comm, user, system)) = parsed {
                add_thread(&mut out, &comm, user, system);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The resource argument of `getrlimit`: glibc's own type, a plain `int` elsewhere.
#[cfg(target_env = "gnu")]
pub type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub type RlimitResource = libc::c_int;

/// The soft limit of `resource` (`libc::RLIMIT_*`); `None` when unlimited or unreadable.
pub fn soft_limit(resource: RlimitResource) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The read buffer's first size: a `stat` or `statm` text is a few hundred bytes. A
/// longer text doubles the buffer until it fits (the kernel bounds these files).
const PROC_TEXT_BYTES: usize = 4096;

/// The whole text of a `/proc` file, read again from its start into `buf` (procfs
/// writes the text anew for a read at offset 0).
fn reread_file<'a>(file: &std::fs::File, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    use std::os::unix::fs::FileExt;
    if buf.len() < PROC_TEXT_BYTES {
        buf.resize(PROC_TEXT_BYTES, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// [`reread_file`] of the file kept in `file`, opened from `path` the first time; a file
/// that fails a read is closed and opened again next time.
fn reread<'a>(
    file: &mut Option<std::fs::File>,
    path: &str,
    buf: &'a mut Vec<u8>,
) -> Option<&'a str> {
    if file.is_none() {
        *file = std::fs::File::open(path).ok();
    }
    let text = reread_file(file.as_ref()?, buf);
    if text.is_none() {
        *file = None;
    }
    text
}

/// Resident bytes from the text of `/proc/self/statm` (its second field, in pages).
fn parse_statm(statm: &str) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    page.max(4096) as u64
}

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The fields of a `stat` file after the command name (which may contain spaces and
/// parentheses): index 0 is the state (field 3 of proc(5)).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// The boot time in Unix seconds (`btime` of `/proc/stat`), read until a read succeeds
/// and then kept: it does not change, and `/proc/stat`, every CPU's and every
/// interrupt's counters made into text, was the dearest of the collector's
/// once-a-second reads. A failed read (no file descriptor left, say) is tried again
/// next time.
fn boot_time() -> Option<f64> {
    static BOOT_TIME: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(&t) = BOOT_TIME.get() {
        return Some(t);
    }
    let t: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(*BOOT_TIME.get_or_init(|| t))
}

/// `/proc/self/stat` read with the boot time (`btime` of `/proc/stat`) and the clock
/// ticks per second.
fn parse_process_stat(stat: &str, boot_time: f64, ticks: f64) -> Option<ProcessStat> {
    let f = stat_fields(stat)?;
    let num = |i: usize| -> Option<f64> { f.get(i)?.parse().ok() };
    Some(ProcessStat {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        threads: num(17)? as u64,
        start_time_seconds: boot_time + num(19)? / ticks,
        virtual_bytes: num(20)? as u64,
    })
}

/// Adds one thread's CPU seconds to `out` under its role: glommio names an executor's
/// thread `<name>-<executor id>`, and the role is the name.
fn add_thread(out: &mut Vec<(String, f64, f64)>, comm: &str, user: f64, system: f64) {
    let name = match comm.rsplit_once('-') {
        Some((role, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => role,
        _ => comm,
    };
    match out.iter_mut().find(|(n, _, _)| n == name) {
        Some(t) => {
            t.1 += user;
            t.2 += system;
        }
        None => out.push((name.to_string(), user, system)),
    }
}

/// (role, user s, system s) of this process's threads, by role (see
/// [`ProcReader`]'s sample): for a one-off reading, such as a benchmark's before and
/// after. Blocking file reads: call it off the glommio executors.
pub fn thread_cpu_seconds() -> Vec<(String, f64, f64)> {
    ProcReader::default().thread_cpu_seconds()
}

/// The CPU time of thread `tid` of this process, in ns (user and kernel together).
pub fn thread_cpu_ns(tid: i32) -> Option<u64> {
    // The kernel's per-thread CPU clock id (what pthread_getcpuclockid builds):
    // the complemented tid shifted left by 3, with CPUCLOCK_SCHED (2) and the per-thread
    // flag (4).
    let clock = ((!tid) << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; an unknown clock only returns an error.
    let rc = unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// User and system CPU seconds of another process, such as a benchmark's client
/// process or a server it started (`/proc/<pid>/stat`, in the same format as a
/// thread's; clock ticks, fine for windows of seconds). Blocking file read.
pub fn process_cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_task_stat(&stat, clock_ticks()).map(|(_, user, system)| (user, system))
}

/// The name, user and system CPU seconds of one thread from the text of its `stat`
/// file: the name is its second field, in parentheses, what the `comm` file holds
/// before its newline (so that file is not read as well). It is trimmed, as the name a
/// thread set may begin or end with a space.
fn parse_task_stat(stat: &str, ticks: f64) -> Option<(String, f64, f64)> {
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.trim();
    let fields = stat_fields(stat)?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name.to_string(), utime / ticks, stime / ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_time_is_read_from_its_stat() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        let thread_ns = || thread_cpu_ns(me).expect("this thread's CPU clock");
        let pid = std::process::id();
        let (user0, system0) = process_cpu_split(pid).expect("this process's stat");
        // 100 ms of this thread's own CPU (bounded in wall time on a loaded host).
        let start = thread_ns();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while thread_ns() - start < 100_000_000 && t.elapsed() < std::time::Duration::from_secs(10)
        {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let (user, system) = process_cpu_split(pid).expect("this process's stat");
        let spent = user + system - user0 - system0;
        assert!(
            spent >= 0.05,
            "{spent} s counted after 100 ms of this thread's work"
        );
        assert_eq!(process_cpu_split(u32::MAX), None);
    }

    /// A kept reader sees a thread that started since its last sample and closes the
    /// file of one that ended; what it reads again matches a fresh read.
    #[test]
    fn a_kept_reader_follows_threads_that_start_and_end() {
        let mut reader = ProcReader::default();
        let first = reader.sample();
        assert!(first.stat.is_some() && first.rss_bytes.is_some());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<u64>();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::Builder::new()
            .name("kept-probe-3".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                ready_tx.send(unsafe { libc::gettid() } as u64).unwrap();
                let _ = end_rx.recv();
            })
            .unwrap();
        let tid = ready_rx.recv().unwrap();
        let during = reader.sample();
        assert!(
            during.threads.iter().any(|t| t.0 == "kept-probe"),
            "{:?}",
            during.threads
        );
        assert!(reader.tasks.iter().any(|(t, _)| *t == tid));
        drop(end_tx);
        probe.join().unwrap();
        // The kernel may list an ended thread a moment after its join returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let after = loop {
            let s = reader.sample();
            if !s.threads.iter().any(|t| t.0 == "kept-probe") {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", s.threads);
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(
            !reader.tasks.iter().any(|(t, _)| *t == tid),
            "its file is closed"
        );
        // The same figures as a fresh read (CPU only grows; the start time is fixed).
        let fresh = ProcessSample::read();
        let (kept, fresh) = (after.stat.unwrap(), fresh.stat.unwrap());
        assert_eq!(kept.start_time_seconds, fresh.start_time_seconds);
        assert!(kept.cpu_seconds <= fresh.cpu_seconds);
    }

    #[test]
    fn process_figures_parse_from_proc_text() {
        // proc(5): a command name with a space and a parenthesis; utime 250, stime 50
        // ticks, 7 threads, started 1000 ticks after boot, 8 MiB virtual.
        let stat = "42 ( a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 8388608 300 18446744073709551615";
        let s = parse_process_stat(stat, 1_700_000_000.0, 100.0).unwrap();
        // A thread's name is all between the first "(" and the last ")", trimmed.
        assert_eq!(
            parse_task_stat(stat, 100.0),
            Some(("a (b) c".to_string(), 2.5, 0.5))
        );
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 8_388_608);
        // This process, read for real.
        let me = ProcessSample::read();
        // The open-file limit is the soft "Max open files" of /proc/self/limits.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let soft = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        assert_eq!(me.max_fds, soft.parse().ok(), "{limits}");
        let stat = me.stat.expect("/proc/self/stat");
        assert!(stat.threads >= 1 && stat.virtual_bytes > 0 && stat.cpu_seconds >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stat.start_time_seconds > now - 86_400.0 && stat.start_time_seconds <= now + 1.0);
        assert!(me.open_fds.unwrap() >= 3, "stdin, stdout, stderr at least");
        // A named thread is counted under its name, an executor's `-<id>` suffix cut.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::Builder::new()
            .name("proc-probe-7".into())
            .spawn(move || {
                ready_tx.send(()).unwrap();
                let _ = end_rx.recv();
            })
            .unwrap();
        ready_rx.recv().unwrap();
        let names: Vec<String> = ProcessSample::read()
            .threads
            .into_iter()
            .map(|t| t.0)
            .collect();
        drop(end_tx);
        probe.join().unwrap();
        assert!(names.iter().any(|n| n == "proc-probe"), "{names:?}");
        assert!(me.rss_bytes.unwrap() > 0);
    }

    #[test]
    fn a_stream_moves_between_pending_live_silent_and_rejected() {
        let names = ["btcusdt@kline_1m".to_string(), "btcusdt@trade".to_string()];
        let table = StreamStats::table(&names, |n| (n == "btcusdt@kline_1m").then_some(0));
        let (kline, trade) = (&table[0], &table[1]);
        let bound = 10;
        assert_eq!(kline.state(5, 0, bound), StreamState::Pending);
        kline.rejected_with(2, "Invalid request: invalid stream");
        assert_eq!(kline.state(5, 0, bound), StreamState::Rejected);
        assert_eq!(
            *kline.last_error.lock().unwrap(),
            "2: Invalid request: invalid stream"
        );
        // Acknowledged at 100: live until the bound passes without an update.
        kline.acknowledged(100);
        assert_eq!(kline.state(110, 0, bound), StreamState::Live);
        assert_eq!(kline.state(111, 0, bound), StreamState::Silent);
        assert_eq!(kline.state(111, 105, bound), StreamState::Live);
        // A second connection (rotation) and the first going: still live.
        kline.acknowledged(200);
        kline.live_on.dec();
        assert_eq!(kline.state(205, 200, bound), StreamState::Live);
        assert_eq!(kline.live_since_ns.get(), 100, "live since the first ack");
        kline.live_on.dec();
        assert_eq!(
            kline.state(205, 200, bound),
            StreamState::Pending,
            "an acknowledgement clears the rejection"
        );
        // A trade stream may be quiet: never silent.
        trade.acknowledged(1);
        assert_eq!(trade.state(1_000_000, 0, bound), StreamState::Live);
    }
}
