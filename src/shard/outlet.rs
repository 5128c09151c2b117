//! The shard's outlets: one ring per sink, with the never-lost records waiting for room
//! in it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Envelope, RecordKinds};
use crate::metrics::ShardStats;
use crate::ring::Producer;

/// Longest a record waits on the shard for its batch to end before the sinks are rung
/// anyway: bounds what a burst of many frames in one read adds to the first ones' hop,
/// while a burst handled within it still costs each sink one wake-up.
pub const RING_EVERY_NS: u64 = 20_000;

/// Never-lost records that may wait on the shard while a sink's ring is full. Past this
/// the shard stops reading its sockets (TCP backpressure) instead of growing memory.
pub const MAX_OVERFLOW: usize = 65_536;

/// One sink's ring, with the never-lost records waiting for room in it.
struct Outlet {
    ring: Producer<Envelope>,
    overflow: VecDeque<Envelope>,
    kinds: RecordKinds,
    /// Of `kinds`, those this sink takes at most once (Redis pub/sub): a record the
    /// others keep is dropped here, and counted, when the ring is full.
    lossy: RecordKinds,
}

impl Outlet {
    /// Sends a never-lost record, keeping order behind anything already waiting. The
    /// consumer is woken at the next [`super::ShardState::flush`], once per batch.
    fn send_kept(&mut self, env: Envelope) -> bool {
        if !self.kinds.has(&env.record) {
            return true;
        }
        if self.lossy.has(&env.record) {
            return self.send_latest(env);
        }
        if self.overflow.is_empty() {
            if let Err(env) = self.ring.push_deferred(env) {
                self.overflow.push_back(env);
            }
        } else {
            self.overflow.push_back(env);
        }
        true
    }

    /// Sends a conflated record; false when it was dropped (not when this sink does not
    /// take the kind).
    fn send_latest(&mut self, env: Envelope) -> bool {
        if !self.kinds.has(&env.record) {
            return true;
        }
        // Behind a queue of never-lost records, or with the ring full, a live update is
        // dropped: the next one supersedes it.
        self.overflow.is_empty() && self.ring.push_deferred(env).is_ok()
    }

    /// Moves waiting records into the ring and wakes its consumer if anything was
    /// pushed since the last flush.
    fn flush(&mut self) -> usize {
        while let Some(env) = self.overflow.pop_front() {
            if let Err(env) = self.ring.push_deferred(env) {
                self.overflow.push_front(env);
                break;
            }
        }
        self.ring.ring();
        self.overflow.len()
    }
}

/// The shard's outlets: one per sink, each record copied to every one that takes its
/// kind.
pub(super) struct Outlets {
    list: Vec<Outlet>,
    stats: Arc<ShardStats>,
    /// When the sinks were last rung in the middle of a batch (mono ns).
    rung_at_ns: u64,
}

impl Outlets {
    pub(super) fn new(
        outs: Vec<(Producer<Envelope>, RecordKinds)>,
        stats: Arc<ShardStats>,
    ) -> Outlets {
        Outlets {
            list: outs
                .into_iter()
                .map(|(ring, kinds)| Outlet {
                    ring,
                    overflow: VecDeque::new(),
                    kinds,
                    lossy: RecordKinds::NONE,
                })
                .collect(),
            stats,
            rung_at_ns: 0,
        }
    }

    /// True while never-lost records wait at their bound for some sink.
    pub(super) fn backpressured(&self) -> bool {
        self.list.iter().any(|o| o.overflow.len() >= MAX_OVERFLOW)
    }

    /// Never-lost records that may still wait on the shard before the deepest
    /// outlet reaches [`MAX_OVERFLOW`].
    pub(super) fn room(&self) -> usize {
        let deepest = self.list.iter().map(|o| o.overflow.len()).max();
        MAX_OVERFLOW.saturating_sub(deepest.unwrap_or(0))
    }

    /// The record kinds each sink, in outlet order, takes at most once.
    pub(super) fn set_lossy(&mut self, lossy: &[RecordKinds]) {
        for (o, kinds) in self.list.iter_mut().zip(lossy) {
            o.lossy = *kinds;
        }
    }

    /// Sends a never-lost record to every sink, keeping order behind anything waiting
    /// (to a sink that takes its kind at most once, as a latest value: a drop is
    /// counted in `lossy_dropped`).
    pub(super) fn send_kept(&mut self, env: Envelope) {
        for o in &mut self.list {
            if !o.send_kept(env) {
                self.stats.lossy_dropped.inc();
            }
        }
        self.note_overflow();
        self.ring_if_due(env.parsed_ns);
    }

    /// Sends a never-lost record only to the sinks that keep its kind, not to those
    /// that take it at most once (the live outlets: Redis, the dashboard): history,
    /// such as backfilled trades, is stored, not broadcast as if it were live.
    pub(super) fn send_stored(&mut self, env: Envelope) {
        for o in &mut self.list {
            if !o.lossy.has(&env.record) {
                o.send_kept(env);
            }
        }
        self.note_overflow();
        self.ring_if_due(env.parsed_ns);
    }

    /// Sends a latest-value record to every sink; each drop is counted.
    pub(super) fn send_latest(&mut self, env: Envelope) {
        for o in &mut self.list {
            if !o.send_latest(env) {
                self.stats.live_conflated.inc();
            }
        }
        self.ring_if_due(env.parsed_ns);
    }

    /// Within a long batch, rings the sinks every [`RING_EVERY_NS`] (by the records'
    /// own stamps: no clock read), so the first records of a big burst do not wait for
    /// the last to be parsed; a short batch still rings once, at its flush.
    #[inline]
    fn ring_if_due(&mut self, now_ns: u64) {
        if now_ns != 0 && now_ns.saturating_sub(self.rung_at_ns) >= RING_EVERY_NS {
            self.rung_at_ns = now_ns;
            self.ring();
        }
    }

    /// Wakes every sink that has records it was not told about yet.
    pub(super) fn ring(&self) {
        for o in &self.list {
            o.ring.ring();
        }
    }

    /// Moves waiting records into each ring while it has room and wakes the sinks;
    /// returns how many are still waiting.
    pub(super) fn flush(&mut self) -> usize {
        let left = self.list.iter_mut().map(Outlet::flush).sum();
        self.note_overflow();
        left
    }

    fn note_overflow(&self) {
        let deepest = self.list.iter().map(|o| o.overflow.len()).max();
        self.stats.overflow_depth.set(deepest.unwrap_or(0) as u64);
    }
}
