//! Per-stage latency histograms (HdrHistogram), recorded without locks on the hot path.
//!
//! Runs on: every role thread records into its own [`Recorder`] (plain histograms it
//! owns: no locks, no atomics, no allocation per value). Every [`HANDOFF_INTERVAL`] the
//! owner hands its filled histograms to the control plane through a lock-free queue and
//! takes cleared ones back from a second queue, so the hot path never allocates. The
//! [`Collector`] (a control-plane thread) merges them at a fixed interval into cumulative
//! histograms (since start) and a sliding window of the last [`WINDOW_SECONDS`] seconds,
//! per stage and per recorder, and publishes a [`Snapshot`] that the dashboard reads.
//!
//! Values are nanoseconds, kept to [`SIGNIFICANT_DIGITS`] significant digits between 1 ns
//! and [`MAX_TRACKED_NS`]; reports print microseconds.

pub mod report;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;

/// One stage of an event's journey (docs/api.md, `/api/performance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Exchange event time to our socket read (wall clocks of both sides: meaningful with
    /// `timeUnit=MICROSECOND` and synchronized clocks; always against the simulator).
    ExchangeToRecv,
    /// Socket read to the typed event (parse, candle update).
    RecvToParsed,
    /// Typed event to the signals computed on a closed candle.
    ParsedToSignal,
    /// Enqueued on a shard's ring to dequeued by the sink (per sink recorder).
    RingHop,
    /// Socket read to the database commit that made the row durable.
    RecvToDbCommit,
    /// Socket read to the Redis pipeline flush that published it.
    RecvToRedisPublish,
    /// Socket read to the write of the frame to a dashboard client.
    RecvToDashboardSend,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::ExchangeToRecv,
        Stage::RecvToParsed,
        Stage::ParsedToSignal,
        Stage::RingHop,
        Stage::RecvToDbCommit,
        Stage::RecvToRedisPublish,
        Stage::RecvToDashboardSend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ExchangeToRecv => "exchange_to_recv",
            Stage::RecvToParsed => "recv_to_parsed",
            Stage::ParsedToSignal => "parsed_to_signal",
            Stage::RingHop => "ring_hop",
            Stage::RecvToDbCommit => "recv_to_db_commit",
            Stage::RecvToRedisPublish => "recv_to_redis_publish",
            Stage::RecvToDashboardSend => "recv_to_dashboard_send",
        }
    }
}

const STAGES: usize = Stage::ALL.len();

/// 2 significant digits (1% resolution) keeps a histogram at about 32 KiB, so every role
/// thread can own one per stage in cache; 3 digits would cost 200 KiB each.
pub const SIGNIFICANT_DIGITS: u8 = 2;
/// Values above this (100 s) are recorded as this: a stalled stage stays visible as the
/// max instead of being dropped.
pub const MAX_TRACKED_NS: u64 = 100_000_000_000;
/// How often recorders hand their histograms to the collector.
pub const HANDOFF_INTERVAL: Duration = Duration::from_millis(500);
/// The collector's merge interval.
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(1);
/// The "recent" window of `/api/performance`, in collector intervals (seconds).
pub const WINDOW_SECONDS: usize = 10;
/// Filled histogram sets that may wait for the collector per recorder; when full, the
/// recorder keeps accumulating into its current set (nothing is lost, only merged later).
const HANDOFF_SLOTS: usize = 4;
/// How often a settle's waiter looks again at the recorders' answers and the collector's.
const SETTLE_POLL: Duration = Duration::from_micros(200);

/// The `le` bounds of the histograms `/metrics` exports, as (label in seconds,
/// nanoseconds): 1 µs to 10 s on a 1-2-5 ladder. Fixed, so every core and every instance
/// has the same buckets and `histogram_quantile` may sum them.
pub const BUCKETS: [(&str, u64); 22] = [
    ("0.000001", 1_000),
    ("0.000002", 2_000),
    ("0.000005", 5_000),
    ("0.00001", 10_000),
    ("0.00002", 20_000),
    ("0.00005", 50_000),
    ("0.0001", 100_000),
    ("0.0002", 200_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.002", 2_000_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.02", 20_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.2", 200_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2", 2_000_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// The cumulative count of `h` at each of [`BUCKETS`]: the values at or below the bound,
/// a value counting by the lowest value of its HDR bucket (so within the histogram's 1%
/// resolution). Values above the last bound are only in `h.len()` (the `+Inf` bucket).
pub fn cumulative_buckets(h: &Histogram<u64>) -> [u64; BUCKETS.len()] {
    let mut counts = [0u64; BUCKETS.len()];
    for v in h.iter_recorded() {
        let low = h.lowest_equivalent(v.value_iterated_to());
        if let Some(i) = BUCKETS.iter().position(|(_, bound)| low <= *bound) {
            counts[i] += v.count_at_value();
        }
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    counts
}

/// A histogram with this module's range and precision.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits, so this cannot fail; a
    // failure would be a programming error caught by the unit tests.
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_DIGITS)
        .expect("histogram bounds are valid constants")
}

/// One histogram per stage.
pub struct StageSet {
    hists: [Histogram<u64>; STAGES],
}

impl StageSet {
    pub fn new() -> StageSet {
        StageSet {
            hists: std::array::from_fn(|_| new_histogram()),
        }
    }

    pub fn get(&self, stage: Stage) -> &Histogram<u64> {
        &self.hists[stage as usize]
    }

    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        self.hists[stage as usize].saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    pub fn add(&mut self, other: &StageSet) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            // Same bounds on both sides, so adding cannot fail.
            let _ = a.add(b);
        }
    }

    /// Takes `other`'s values out of this set, which must hold them (a sliding window
    /// dropping its oldest interval); false when a histogram did not hold them.
    pub fn subtract(&mut self, other: &StageSet) -> bool {
        let mut held = true;
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            held &= a.subtract(b).is_ok();
        }
        held
    }

    pub fn reset(&mut self) {
        for h in &mut self.hists {
            h.reset();
        }
    }

    fn is_empty(&self) -> bool {
        self.hists.iter().all(|h| h.is_empty())
    }
}

impl Default for StageSet {
    fn default() -> Self {
        StageSet::new()
    }
}

struct Link {
    label: String,
    full: ArrayQueue<Box<StageSet>>,
    spare: ArrayQueue<Box<StageSet>>,
    /// The recorder holds values it has not handed over (its `dirty`, for readers).
    holding: AtomicBool,
    /// The last [`Registry::settle`] request the recorder has answered.
    answered: AtomicU64,
}

/// A role thread's recorder. Not `Sync`: one owner records.
pub struct Recorder {
    current: Box<StageSet>,
    dirty: bool,
    last_handoff_ns: u64,
    link: Arc<Link>,
    /// The registry's settle requests, and the last one this recorder saw.
    requests: Arc<AtomicU64>,
    seen: u64,
}

impl Recorder {
    /// Records `ns` for `stage`: a few array operations, no lock, no allocation.
    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        self.current.record(stage, ns);
        if !self.dirty {
            self.dirty = true;
            self.link.holding.store(true, Ordering::Release);
        }
    }

    /// Records `to_ns - from_ns` (0 when the clock reads are out of order).
    #[inline]
    pub fn record_span(&mut self, stage: Stage, from_ns: u64, to_ns: u64) {
        self.record(stage, to_ns.saturating_sub(from_ns));
    }

    /// Whether values recorded since the last hand-off wait for the next one.
    pub fn pending(&self) -> bool {
        self.dirty
    }

    /// Hands the filled histograms over when [`HANDOFF_INTERVAL`] has passed, or at once
    /// when a measurement asked ([`Registry::settle`]); call it from the role's periodic
    /// work with the time it already read.
    pub fn maybe_handoff(&mut self, now_ns: u64) {
        let asked = self.requests.load(Ordering::Acquire);
        if asked != self.seen {
            if self.dirty {
                self.handoff(now_ns);
            }
            // Answered only once nothing is held: with the collector behind, the next
            // check tries again.
            if !self.dirty {
                self.seen = asked;
                self.link.answered.store(asked, Ordering::Release);
            }
            return;
        }
        if !self.dirty
            || now_ns.saturating_sub(self.last_handoff_ns) < HANDOFF_INTERVAL.as_nanos() as u64
        {
            return;
        }
        self.handoff(now_ns);
    }

    /// Hands the filled histograms over now (also on drop, so a stopping role's last
    /// figures are kept).
    pub fn handoff(&mut self, now_ns: u64) {
        // A spare comes back cleared from the collector; only before the first return
        // (or if the collector fell behind) is one allocated, off the per-value path.
        let Some(spare) = self.link.spare.pop() else {
            if self.link.full.is_full() {
                return;
            }
            let filled = std::mem::replace(&mut self.current, Box::new(StageSet::new()));
            let _ = self.link.full.push(filled);
            self.after_handoff(now_ns);
            return;
        };
        let filled = std::mem::replace(&mut self.current, spare);
        if let Err(filled) = self.link.full.push(filled) {
            // The collector is behind: keep accumulating into the filled set.
            let spare = std::mem::replace(&mut self.current, filled);
            let _ = self.link.spare.push(spare);
            return;
        }
        self.after_handoff(now_ns);
    }

    fn after_handoff(&mut self, now_ns: u64) {
        self.dirty = false;
        self.link.holding.store(false, Ordering::Release);
        self.last_handoff_ns = now_ns;
    }

    pub fn label(&self) -> &str {
        &self.link.label
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.dirty {
            self.handoff(u64::MAX);
        }
        // Whatever a full queue kept back goes with the recorder: nothing to wait for.
        self.link.holding.store(false, Ordering::Release);
    }
}

/// Where recorders register (at startup, off the hot path) and the collector finds them.
#[derive(Default)]
pub struct Registry {
    links: Mutex<Vec<Arc<Link>>>,
    /// Settle requests made ([`Registry::settle`]); every recorder reads it at its
    /// hand-off check.
    settle_requests: Arc<AtomicU64>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// A recorder labelled `label` (e.g. `shard0`, `writer`, `dashboard`).
    pub fn recorder(&self, label: impl Into<String>) -> Recorder {
        let link = Arc::new(Link {
            label: label.into(),
            full: ArrayQueue::new(HANDOFF_SLOTS),
            spare: ArrayQueue::new(HANDOFF_SLOTS),
            holding: AtomicBool::new(false),
            answered: AtomicU64::new(0),
        });
        let _ = link.spare.push(Box::new(StageSet::new()));
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(link.clone());
        Recorder {
            current: Box::new(StageSet::new()),
            dirty: false,
            last_handoff_ns: 0,
            link,
            requests: self.settle_requests.clone(),
            seen: self.settle_requests.load(Ordering::Acquire),
        }
    }

    /// Asks every recorder to hand over what it holds at its next hand-off check, not
    /// at its next [`HANDOFF_INTERVAL`], and waits until each has or holds nothing: a
    /// measurement's window edge (`bench latency`). A recorder checks whenever its role
    /// works, so an active role answers within one of its wake-ups; false when one
    /// still held values at `timeout` (its role asleep with values recorded).
    pub fn settle(&self, timeout: Duration) -> bool {
        let asked = self.settle_requests.fetch_add(1, Ordering::AcqRel) + 1;
        let links = self.links();
        poll_until(timeout, || {
            links.iter().all(|l| {
                !l.holding.load(Ordering::Acquire) || l.answered.load(Ordering::Acquire) >= asked
            })
        })
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Latency figures of one stage, in microseconds (docs/api.md, `/api/performance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageFigures {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl StageFigures {
    pub fn of(h: &Histogram<u64>) -> StageFigures {
        if h.is_empty() {
            return StageFigures::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        StageFigures {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Merged histograms, as the control plane last saw them.
#[derive(Default)]
pub struct Snapshot {
    /// Since start, all recorders merged.
    pub cumulative: StageSet,
    /// The last [`WINDOW_SECONDS`] collector intervals, all recorders merged.
    pub window: StageSet,
    /// Since start, per recorder label.
    pub per_recorder: Vec<(String, StageSet)>,
    /// The process's memory and per-thread CPU, sampled with each merge.
    pub process: crate::metrics::ProcessSample,
}

/// Merges every recorder's hand-offs at [`COLLECT_INTERVAL`]; runs on a control-plane
/// thread (see [`Collector::spawn`]).
pub struct Collector {
    registry: Arc<Registry>,
    snapshot: Arc<Mutex<Snapshot>>,
    recent: VecDeque<StageSet>,
    /// An emptied set for the next interval (the window's oldest, or a merged extra).
    spare: Option<StageSet>,
    asked: Arc<Asked>,
}

/// Polls `done` every [`SETTLE_POLL`] until it holds (true) or `timeout` passes (false).
fn poll_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Merges asked of a running collector between its intervals ([`MergeAsker`]).
#[derive(Default)]
struct Asked {
    /// Merges asked for, and the last one a merge has served.
    made: AtomicU64,
    served: AtomicU64,
}

/// Asks the collector thread for a merge now and waits for it: with
/// [`Registry::settle`], a measurement's window edge lands in the snapshot at once
/// instead of up to a hand-off plus a merge interval later.
#[derive(Clone)]
pub struct MergeAsker {
    registry: Arc<Registry>,
    asked: Arc<Asked>,
    thread: std::thread::Thread,
}

impl MergeAsker {
    /// Settles every recorder of the collector's registry (waiting up to `timeout`),
    /// then has the collector merge what they handed over (waiting up to a
    /// [`COLLECT_INTERVAL`] more): true when every recorder answered and the merge ran.
    pub fn settle(&self, timeout: Duration) -> bool {
        let settled = self.registry.settle(timeout);
        let asked = self.asked.made.fetch_add(1, Ordering::AcqRel) + 1;
        self.thread.unpark();
        let merged = poll_until(COLLECT_INTERVAL, || {
            self.asked.served.load(Ordering::Acquire) >= asked
        });
        settled && merged
    }
}

impl Collector {
    pub fn new(registry: Arc<Registry>) -> Collector {
        Collector {
            registry,
            snapshot: Arc::new(Mutex::new(Snapshot::default())),
            recent: VecDeque::with_capacity(WINDOW_SECONDS + 1),
            spare: None,
            asked: Arc::new(Asked::default()),
        }
    }

    /// The published snapshot (locked briefly by readers; never by recorders).
    pub fn snapshot(&self) -> Arc<Mutex<Snapshot>> {
        self.snapshot.clone()
    }

    /// One merge: takes every hand-off waiting, returns the sets to their recorders
    /// cleared, and updates the snapshot.
    pub fn collect(&mut self) {
        self.collect_with(None, false);
    }

    /// [`Collector::collect`], publishing `process` in the same snapshot update. `extra`:
    /// a merge asked between intervals, whose values join the newest interval of the
    /// window instead of starting one, so the window keeps [`WINDOW_SECONDS`] intervals
    /// (the newest then spans up to two seconds until the next periodic merge).
    fn collect_with(&mut self, process: Option<crate::metrics::ProcessSample>, extra: bool) {
        // The interval's set is reused (one emptied set kept from the last merge): a new
        // set is a dozen histograms of fresh memory, and the kernel zeroing its pages was
        // most of what the collector cost.
        let mut interval = self.spare.take().unwrap_or_default();
        let mut handed: Vec<(usize, Box<StageSet>)> = Vec::new();
        let links = self.registry.links();
        for (i, link) in links.iter().enumerate() {
            while let Some(set) = link.full.pop() {
                if set.is_empty() {
                    let _ = link.spare.push(set);
                } else {
                    interval.add(&set);
                    handed.push((i, set));
                }
            }
        }
        let extra = extra && !self.recent.is_empty();
        let oldest = if !extra && self.recent.len() == WINDOW_SECONDS {
            self.recent.pop_front()
        } else {
            None
        };
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        snap.cumulative.add(&interval);
        if let Some(p) = process {
            snap.process = p;
        }
        for (i, set) in &handed {
            let label = &links[*i].label;
            match snap.per_recorder.iter_mut().find(|(l, _)| l == label) {
                Some((_, s)) => s.add(set),
                None => {
                    let mut s = StageSet::new();
                    s.add(set);
                    snap.per_recorder.push((label.clone(), s));
                }
            }
        }
        // The window slides: this interval in, the oldest out. Should the oldest not be
        // found in it (it always is), the window is summed again from the intervals.
        snap.window.add(&interval);
        if let Some(oldest) = &oldest {
            if !snap.window.subtract(oldest) {
                snap.window.reset();
                for s in &self.recent {
                    snap.window.add(s);
                }
                snap.window.add(&interval);
            }
        }
        drop(snap);
        for (i, mut set) in handed {
            set.reset();
            let _ = links[i].spare.push(set);
        }
        match self.recent.back_mut() {
            Some(newest) if extra => {
                newest.add(&interval);
                interval.reset();
                self.spare = Some(interval);
            }
            _ => self.recent.push_back(interval),
        }
        if let Some(mut oldest) = oldest {
            oldest.reset();
            self.spare = Some(oldest);
        }
    }

    /// Runs [`Collector::collect`] every [`COLLECT_INTERVAL`] until `stop`, then once more;
    /// each run also samples the process's memory and CPU from `/proc` (here, on the
    /// control plane, so `/metrics` reads no file on the dashboard's executor). The
    /// thread sleeps a whole interval: whoever sets `stop` unparks it. The
    /// [`MergeAsker`] returned has it merge between intervals.
    pub fn spawn(
        mut self,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(std::thread::JoinHandle<()>, MergeAsker)> {
        let (registry, asked) = (self.registry.clone(), self.asked.clone());
        let handle = std::thread::Builder::new()
            .name("latency-collector".into())
            .spawn(move || {
                let mut due = Instant::now() + COLLECT_INTERVAL;
                let mut proc_reader = crate::metrics::ProcReader::default();
                while !stop.load(Ordering::Acquire) {
                    // The periodic merge first, so that askers cannot starve it.
                    let asked = loop {
                        let now = Instant::now();
                        if now >= due || stop.load(Ordering::Acquire) {
                            break None;
                        }
                        let asked = self.asked.made.load(Ordering::Acquire);
                        if asked != self.asked.served.load(Ordering::Acquire) {
                            break Some(asked);
                        }
                        std::thread::park_timeout(due - now);
                    };
                    match asked {
                        // Asked between intervals: merge, skip the /proc sample (the
                        // asker is measuring this process's CPU).
                        Some(asked) => {
                            self.collect_with(None, true);
                            self.asked.served.store(asked, Ordering::Release);
                        }
                        None => {
                            self.collect_with(Some(proc_reader.sample()), false);
                            due = Instant::now() + COLLECT_INTERVAL;
                        }
                    }
                }
                self.collect();
            })?;
        let thread = handle.thread().clone();
        Ok((
            handle,
            MergeAsker {
                registry,
                asked,
                thread,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window slides by adding each interval and taking the oldest out: after many
    /// intervals of different values it holds exactly the last [`WINDOW_SECONDS`] (its
    /// counts, its minimum and maximum), and the interval sets are reused, not made anew.
    #[test]
    fn the_window_slides_exactly_and_reuses_the_interval_sets() {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let mut col = Collector::new(reg.clone());
        let rounds = 3 * WINDOW_SECONDS as u64;
        for round in 1..=rounds {
            // Round r records r values of r µs.
            for _ in 0..round {
                a.record(Stage::RingHop, round * 1_000);
            }
            a.handoff(round);
            col.collect();
            let first = round.saturating_sub(WINDOW_SECONDS as u64 - 1).max(1);
            let snap = col.snapshot();
            let snap = snap.lock().unwrap();
            let w = snap.window.get(Stage::RingHop);
            assert_eq!(w.len(), (first..=round).sum::<u64>(), "round {round}");
            assert!(
                w.equivalent(w.min(), first * 1_000),
                "round {round}: min {}",
                w.min()
            );
            assert!(
                w.equivalent(w.max(), round * 1_000),
                "round {round}: max {}",
                w.max()
            );
            let c = snap.cumulative.get(Stage::RingHop);
            assert_eq!(c.len(), (1..=round).sum::<u64>());
            drop(snap);
            if round > WINDOW_SECONDS as u64 {
                // The oldest interval, emptied, waits to be the next one.
                let spare = col.spare.as_ref().expect("a spare interval set");
                assert!(spare.is_empty());
            }
        }
        // Should the window ever not hold its oldest interval, the next merge sums it
        // anew from the intervals: emptied behind the collector's back, it is whole
        // again after one merge.
        col.snapshot().lock().unwrap().window.reset();
        a.record(Stage::RingHop, 1_000);
        a.handoff(rounds + 1);
        col.collect();
        let first = rounds + 2 - WINDOW_SECONDS as u64;
        let w = col
            .snapshot()
            .lock()
            .unwrap()
            .window
            .get(Stage::RingHop)
            .len();
        assert_eq!(w, (first..=rounds).sum::<u64>() + 1);
        // A set that does not hold another's values refuses to give them up.
        let mut small = StageSet::new();
        small.record(Stage::RingHop, 1_000);
        let mut big = StageSet::new();
        big.record(Stage::RingHop, 1_000);
        big.record(Stage::RingHop, 1_000);
        assert!(!small.subtract(&big));
        assert!(big.subtract(&small));
        assert_eq!(big.get(Stage::RingHop).len(), 1);
    }

    #[test]
    fn recorded_values_reach_the_snapshot_once() {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let mut b = reg.recorder("writer");
        let mut col = Collector::new(reg.clone());
        for v in 1..=1000u64 {
            a.record(Stage::RecvToParsed, v * 1000);
        }
        b.record(Stage::RingHop, 5_000);
        a.handoff(1);
        b.handoff(1);
        col.collect();
        // A second hand-off of nothing and a second collect add nothing.
        a.maybe_handoff(u64::MAX);
        col.collect();
        let snap = col.snapshot();
        let snap = snap.lock().unwrap();
        let f = StageFigures::of(snap.cumulative.get(Stage::RecvToParsed));
        assert_eq!(f.count, 1000);
        // 2 significant digits: within 1% of the exact percentile.
        assert!((f.p50 - 500.0).abs() <= 5.0, "{f:?}");
        assert!((f.p99 - 990.0).abs() <= 10.0, "{f:?}");
        assert!((f.max - 1000.0).abs() <= 10.0, "{f:?}");
        assert_eq!(snap.cumulative.get(Stage::RingHop).len(), 1);
        assert_eq!(snap.per_recorder.len(), 2);
        // The window holds the last intervals only.
        assert_eq!(snap.window.get(Stage::RecvToParsed).len(), 1000);
    }

    /// A recorder whose one ring hop a collector has merged, in an interval of its own.
    fn one_value_collected() -> (Recorder, Collector) {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let mut col = Collector::new(reg);
        a.record(Stage::RingHop, 100);
        a.handoff(1);
        col.collect();
        (a, col)
    }

    #[test]
    fn the_window_forgets_old_intervals_and_sets_are_recycled() {
        let (mut a, mut col) = one_value_collected();
        for _ in 0..WINDOW_SECONDS {
            col.collect();
        }
        let snap = col.snapshot();
        {
            let s = snap.lock().unwrap();
            assert_eq!(s.window.get(Stage::RingHop).len(), 0);
            assert_eq!(s.cumulative.get(Stage::RingHop).len(), 1);
        }
        // Many hand-offs without a collector: nothing recorded is lost.
        for i in 0..100u64 {
            a.record(Stage::RingHop, 100);
            a.handoff(i + 2);
        }
        col.collect();
        a.handoff(1000);
        col.collect();
        assert_eq!(
            snap.lock().unwrap().cumulative.get(Stage::RingHop).len(),
            101
        );
    }

    /// Runs `settle` on a thread while this one keeps doing a role's periodic work with
    /// `rec` (a hand-off check every 100 µs, bounded); returns what `settle` returned.
    fn settle_beside(rec: &mut Recorder, settle: impl FnOnce() -> bool + Send + 'static) -> bool {
        let helper = std::thread::spawn(settle);
        for _ in 0..50_000 {
            if helper.is_finished() {
                break;
            }
            // Long before the next hand-off is due on its own.
            rec.maybe_handoff(2);
            std::thread::sleep(Duration::from_micros(100));
        }
        helper.join().unwrap()
    }

    #[test]
    fn a_settle_hands_over_at_the_next_check_not_the_next_interval() {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let idle = reg.recorder("writer");
        let mut col = Collector::new(reg.clone());
        a.record(Stage::RecvToParsed, 1_000);
        a.handoff(1);
        for _ in 0..99 {
            a.record(Stage::RecvToParsed, 2_000);
        }
        // Not due: the interval since the last hand-off has not passed.
        a.maybe_handoff(2);
        col.collect();
        let snap = col.snapshot();
        let parsed = || {
            snap.lock()
                .unwrap()
                .cumulative
                .get(Stage::RecvToParsed)
                .len()
        };
        assert_eq!(parsed(), 1);
        // Asked: handed over at the next check. The idle recorder holds nothing, so it
        // is not waited for.
        let r = reg.clone();
        assert!(settle_beside(&mut a, move || r.settle(Duration::from_secs(5))));
        assert!(!a.pending());
        col.collect();
        assert_eq!(parsed(), 100);
        // A recorder that holds values and never checks is reported, not waited for
        // without end.
        a.record(Stage::RingHop, 5);
        assert!(!reg.settle(Duration::from_millis(20)));
        drop(idle);
    }

    #[test]
    fn a_recorder_the_collector_has_no_room_for_answers_only_once_it_handed_over() {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let mut col = Collector::new(reg.clone());
        // The collector falls behind: every hand-off slot is taken.
        for i in 0..=HANDOFF_SLOTS as u64 {
            a.record(Stage::RingHop, 1_000);
            a.handoff(i + 1);
        }
        assert!(a.pending(), "the last values wait in the recorder");
        let r = reg.clone();
        assert!(!settle_beside(&mut a, move || r.settle(Duration::from_millis(50))));
        assert!(a.pending());
        // The collector catches up: the next check hands over and answers.
        col.collect();
        let r = reg.clone();
        assert!(settle_beside(&mut a, move || r.settle(Duration::from_secs(5))));
        col.collect();
        let snap = col.snapshot();
        let hops = snap.lock().unwrap().cumulative.get(Stage::RingHop).len();
        assert_eq!(hops, HANDOFF_SLOTS as u64 + 1);
    }

    #[test]
    fn a_running_collector_merges_when_asked() {
        let reg = Registry::new();
        let mut a = reg.recorder("shard0");
        let col = Collector::new(reg.clone());
        let snap = col.snapshot();
        let stop = Arc::new(AtomicBool::new(false));
        let (thread, asker) = col.spawn(stop.clone()).unwrap();
        for round in 1..=3u64 {
            for _ in 0..10 {
                a.record(Stage::RingHop, 1_000);
            }
            let ask = asker.clone();
            // True only once the collector has served the request: its own merges at
            // intervals do not answer it.
            assert!(settle_beside(&mut a, move || ask.settle(Duration::from_secs(5))));
            let s = snap.lock().unwrap();
            assert_eq!(s.cumulative.get(Stage::RingHop).len(), 10 * round);
            assert_eq!(s.window.get(Stage::RingHop).len(), 10 * round);
        }
        stop.store(true, Ordering::Release);
        thread.thread().unpark();
        thread.join().unwrap();
    }

    #[test]
    fn asked_merges_join_the_newest_interval_so_the_window_keeps_its_length() {
        let (mut a, mut col) = one_value_collected();
        for i in 0..2 * WINDOW_SECONDS as u64 {
            a.record(Stage::RingHop, 1_000);
            a.handoff(i + 2);
            col.collect_with(None, true);
        }
        let snap = col.snapshot();
        let expect = 1 + 2 * WINDOW_SECONDS as u64;
        assert_eq!(
            snap.lock().unwrap().window.get(Stage::RingHop).len(),
            expect
        );
        // Intervals still age out of the window.
        for _ in 0..WINDOW_SECONDS {
            col.collect();
        }
        assert_eq!(snap.lock().unwrap().window.get(Stage::RingHop).len(), 0);
        assert_eq!(
            snap.lock().unwrap().cumulative.get(Stage::RingHop).len(),
            expect
        );
    }

    #[test]
    fn buckets_are_cumulative_on_the_ladder() {
        let mut s = StageSet::new();
        for ns in [500, 1_000, 1_500, 2_000, 7_000, 3_000_000, 20_000_000_000] {
            s.record(Stage::RingHop, ns);
        }
        let h = s.get(Stage::RingHop);
        let counts = cumulative_buckets(h);
        let at = |le: &str| counts[BUCKETS.iter().position(|(l, _)| *l == le).unwrap()];
        assert_eq!(BUCKETS[0], ("0.000001", 1_000));
        assert_eq!(BUCKETS[BUCKETS.len() - 1], ("10", 10_000_000_000));
        assert_eq!(at("0.000001"), 2, "500 ns and 1 µs (le is inclusive)");
        assert_eq!(at("0.000002"), 4);
        assert_eq!(at("0.000005"), 4);
        assert_eq!(at("0.00001"), 5);
        assert_eq!(at("0.005"), 6);
        assert_eq!(at("10"), 6, "20 s is only in +Inf");
        assert_eq!(h.len(), 7);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert!(BUCKETS.windows(2).all(|w| w[0].1 < w[1].1));
        for (label, ns) in BUCKETS {
            assert_eq!(label.parse::<f64>().unwrap(), ns as f64 / 1e9);
        }
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut s = StageSet::new();
        s.record(Stage::ExchangeToRecv, 0);
        s.record(Stage::ExchangeToRecv, u64::MAX);
        let h = s.get(Stage::ExchangeToRecv);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_TRACKED_NS / 100 * 99);
    }
}
