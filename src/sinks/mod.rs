//! Sink roles: the cores that drain the shards' rings.
//!
//! - [`db`]: the database writer (with `DATABASE_URL`) and the query worker.
//! - [`redis`]: the Redis publisher (pipelined pub/sub) and the cross-instance bridge
//!   (runs when `REDIS_URL` is set).
//!
//! Each waits for records in the one consumer loop ([`crate::consumer`]). The recent
//! in-memory view is kept by the dashboard core, which gets every record anyway.
//!
//! The sink contract lives here, below the engine that wires the roles and the
//! dashboard that shows them: what a role's body gets ([`SinkIo`]), how the engine
//! starts it ([`SinkRole`]), its section of `/api/status` ([`SinkStatus`]) and its
//! families of `/metrics` ([`metrics`]).

pub mod db;
pub mod metrics;
pub mod redis;

use std::sync::Arc;

use serde_json::Value;

use crate::consumer::{Rings, Stop};
use crate::latency::Recorder;
use crate::message::{Envelope, RecordKinds};
use crate::ring::Consumer;

/// A sink role's body (see [`SinkRole::run`]).
pub type SinkRun = Box<dyn FnOnce(SinkIo) + Send>;

/// A role that drains one ring from every shard.
pub struct SinkRole {
    /// Names the role's thread and its rings (`shard{i}->{name}`).
    pub name: &'static str,
    /// Its core, when the layout pins.
    pub core: Option<usize>,
    /// The role's body: drains the rings until the stop is requested and the rings are
    /// empty. It is requested only after every shard has handed its records over.
    pub run: SinkRun,
    /// Its section of `/api/status`, if it has one.
    pub status: Option<Arc<dyn SinkStatus>>,
    /// The record kinds it consumes: its rings carry only those.
    pub kinds: RecordKinds,
    /// Of those, the kinds it takes at most once: dropped (and counted) when its ring is
    /// full, where other sinks make them wait ([`RecordKinds::NONE`]: none).
    pub lossy: RecordKinds,
}

/// What a sink role's body gets from the engine.
pub struct SinkIo {
    /// One ring from every shard.
    pub rings: Vec<Consumer<Envelope>>,
    /// Requested once every shard has handed its records over: drain what is left,
    /// return. The request wakes the role wherever it waits.
    pub stop: Stop,
    /// The role's stage latencies (`ring_hop` at least), labelled with its name.
    pub latency: Recorder,
    /// Spin on the rings instead of parking (`engine.busy_poll`).
    pub busy_poll: bool,
}

impl SinkIo {
    /// The rings as the consumer loop takes them, `per_ring` records per ring per turn,
    /// recording every record's ring hop; and the stop.
    pub fn into_rings(self, per_ring: usize) -> (Rings<Envelope>, Stop) {
        let rings = Rings::new(self.rings, per_ring, Some(self.latency), self.busy_poll);
        (rings, self.stop)
    }
}

/// A sink role's section of `/api/status` (`sinks.<name>`), rendered on request from
/// its own relaxed counters.
pub trait SinkStatus: Send + Sync {
    /// The key under `sinks`, e.g. "database", "spool", "redis".
    fn name(&self) -> &'static str;
    fn status(&self) -> Value;
    /// Every section the role fills; a role with more than one (the database writer
    /// fills `database` and `spool`) overrides this.
    fn sections(&self) -> Vec<(&'static str, Value)> {
        vec![(self.name(), self.status())]
    }
    /// The role's samples of the sink families of `/metrics` ([`metrics::families`]).
    fn metrics(&self, out: &mut Vec<metrics::Sample>);
}
