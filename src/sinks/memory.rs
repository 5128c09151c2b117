//! The memory sink: drains every shard's ring into the [`RecentStore`].
//!
//! Runs on: its own thread, pinned to the writer core when the layout pins (a plain
//! thread, not a glommio executor: it takes a short lock on the store that the dashboard
//! also reads). In: envelopes from all shards. Out: the store, updated once per drained
//! batch under one lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::clock::mono_ns;
use crate::engine::SinkIo;
use crate::latency::Stage;
use crate::shard::{Envelope, Record};
use crate::sinks::idle::Idle;
use crate::store::RecentStore;

/// Messages taken from the rings per batch; bounds the time the store lock is held.
pub const DRAIN_BATCH: usize = 4096;

/// Drains the rings into `store` until the stop flag is set, then drains what is left.
pub fn run(io: SinkIo, store: Arc<Mutex<RecentStore>>) {
    let SinkIo {
        rings,
        stop,
        mut latency,
    } = io;
    let mut batch = Vec::with_capacity(DRAIN_BATCH);
    let mut idle = Idle::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        batch.clear();
        for ring in &rings {
            ring.drain_into(&mut batch, DRAIN_BATCH);
        }
        let now = mono_ns();
        for env in &batch {
            latency.record_span(Stage::RingHop, env.parsed_ns, now);
        }
        latency.maybe_handoff(now);
        if !batch.is_empty() {
            idle.worked();
            apply(&store, &batch);
        } else if stopping {
            return;
        } else {
            idle.wait();
        }
    }
}

fn apply(store: &Mutex<RecentStore>, batch: &[Envelope]) {
    // A poisoned lock means a reader panicked mid-read; the data is still consistent
    // (readers never write), so keep going.
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    for env in batch {
        match &env.record {
            Record::ClosedCandle(c) => store.insert_closed(c),
            Record::LiveCandle(c) => store.update_live(c),
            Record::Signal(x) => store.insert_signal(x),
            Record::Gap(g) => store.record_gap(g),
            Record::Outage(o) => store.record_outage(o),
            Record::Absent(g) => store.record_absent(g),
        }
    }
}
