//! The hub's connections and their fan-out: the [`Sink`] the market emits into.
//!
//! Runs on: the simulator's core, inside [`super::Hub`]. Owns: every connection's state,
//! subscriptions and output buffer, the render scratch. In: market events and replayed
//! frames. Out: WebSocket frames appended to the subscribed connections' buffers (a
//! connection past the outbox limit is dropped and counted), writer wake-ups.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::simulator::faults::FaultPlan;
use crate::simulator::market::{Event, Sink, StreamId};
use crate::simulator::render::render_event;
use crate::simulator::stats::Counters;
use crate::simulator::ws;
use crate::wire::TimeUnit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    Open,
    /// `serverShutdown` was sent; the close frame follows at `close_at`.
    ShutdownSent {
        close_at: Instant,
    },
    /// A close frame is queued; the writer flushes it and ends the connection.
    Closing,
    /// Dropped abruptly: the tasks end without writing anything more.
    Killed,
}

/// One WebSocket connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// Accept order, for the seeded malformed-frame schedule.
    pub(super) seq: u64,
    pub(super) out: Vec<u8>,
    /// Data frames in `out`, counted when written.
    pub(super) frames_pending: u64,
    /// The wall-clock time of the oldest market instant whose frames wait in `out`:
    /// the writer measures its write against it ([`crate::simulator::stats::SendLate`]).
    pub(super) due: Option<Instant>,
    /// Frames of events rendered ahead of their time, held until it comes
    /// ([`Dispatcher::release_held`]), and how many data frames they are.
    pub(super) held: Vec<u8>,
    pub(super) held_frames: u64,
    pub(super) writer: Option<Waker>,
    pub(super) killer: Option<Waker>,
    pub(super) state: ConnState,
    pub(super) combined: bool,
    pub(super) unit: TimeUnit,
    /// Subscriptions in the order they were made (LIST_SUBSCRIPTIONS order).
    pub(super) streams: Vec<StreamId>,
    pub(super) connected: Instant,
    pub(super) last_pong: Instant,
    pub(super) next_ping: Instant,
    /// Arrival times of the last `max_incoming_rate` messages.
    pub(super) incoming: VecDeque<Instant>,
    pub(super) data_frames: u64,
}

/// Connections, subscriptions and rendering: the [`Sink`] the market emits into.
#[derive(Debug)]
pub(super) struct Dispatcher {
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) free: Vec<usize>,
    /// Subscribed connection ids per stream id.
    pub(super) subs: Vec<Vec<u32>>,
    /// Canonical stream name per stream id.
    pub(super) names: Vec<String>,
    /// Stream ids by canonical name (replay mode allocates ids on demand).
    pub(super) ids: HashMap<String, StreamId>,
    /// Upper-case symbol per symbol index.
    pub(super) symbols: Vec<String>,
    /// The current event rendered once per (combined, unit) variant.
    pub(super) scratch: [Vec<u8>; 4],
    pub(super) rendered: [bool; 4],
    pub(super) damaged: Vec<u8>,
    pub(super) faults: FaultPlan,
    pub(super) max_outbox_bytes: usize,
    pub(super) stats: Arc<Counters>,
    /// The market instant (simulated ns, and its wall-clock time) rendered ahead and
    /// held until then: while it is set, the market's data frames go to the
    /// connections' `held` buffers instead of their output.
    pub(super) held_until: Option<(i64, Instant)>,
}

impl Dispatcher {
    pub(super) fn conn_mut(&mut self, id: usize) -> Option<&mut Conn> {
        self.conns.get_mut(id).and_then(Option::as_mut)
    }

    /// Appends one data frame for a connection (to its held frames while the
    /// dispatcher holds an instant); returns false if the connection is gone, closing, or was
    /// just dropped for a full outbox.
    fn push_data(conn: &mut Conn, payload: &[u8], d: DataCtx<'_>) -> bool {
        if !matches!(conn.state, ConnState::Open | ConnState::ShutdownSent { .. }) {
            return false;
        }
        if conn.out.len() + conn.held.len() + payload.len() > d.max_outbox_bytes {
            conn.state = ConnState::Killed;
            wake(&mut conn.killer);
            wake(&mut conn.writer);
            Counters::add(&d.stats.slow_client_disconnects, 1);
            return false;
        }
        let frame_no = conn.data_frames;
        conn.data_frames += 1;
        let buf = if d.hold {
            conn.held_frames += 1;
            &mut conn.held
        } else {
            conn.frames_pending += 1;
            &mut conn.out
        };
        match d.faults.malformed(conn.seq, frame_no) {
            Some(damage) => {
                d.damaged.clear();
                damage.apply(payload, d.damaged);
                ws::push_frame(buf, ws::OP_TEXT, d.damaged);
                Counters::add(&d.stats.malformed_injected, 1);
            }
            None => ws::push_frame(buf, ws::OP_TEXT, payload),
        }
        if !d.hold {
            wake(&mut conn.writer);
        }
        true
    }

    /// Moves every connection's held frames to its output (one write for all of them),
    /// due at the held instant's time, and stops holding.
    pub(super) fn release_held(&mut self) {
        let Some((_, due)) = self.held_until.take() else {
            return;
        };
        for conn in self.conns.iter_mut().flatten() {
            if conn.held.is_empty() {
                continue;
            }
            if matches!(conn.state, ConnState::Open | ConnState::ShutdownSent { .. }) {
                if conn.out.is_empty() {
                    std::mem::swap(&mut conn.out, &mut conn.held);
                } else {
                    conn.out.extend_from_slice(&conn.held);
                }
                conn.frames_pending += conn.held_frames;
                conn.due.get_or_insert(due);
                wake(&mut conn.writer);
            }
            conn.held.clear();
            conn.held_frames = 0;
        }
    }

    /// Marks the connections that have data frames waiting and no due time yet with
    /// `due`: the market instant just rendered when it was due (not held ahead).
    pub(super) fn mark_due(&mut self, due: Instant) {
        for conn in self.conns.iter_mut().flatten() {
            if conn.frames_pending > 0 && conn.due.is_none() {
                conn.due = Some(due);
            }
        }
    }

    /// Sends a replayed frame to the connections subscribed to its stream.
    pub(super) fn send_replayed(&mut self, stream: StreamId, frame: &str, data: &str) {
        let Some(subs) = self.subs.get(stream.0 as usize) else {
            return;
        };
        for &cid in subs {
            let Some(conn) = self.conns.get_mut(cid as usize).and_then(Option::as_mut) else {
                continue;
            };
            let payload = if conn.combined { frame } else { data };
            let ctx = DataCtx {
                faults: &self.faults,
                damaged: &mut self.damaged,
                max_outbox_bytes: self.max_outbox_bytes,
                stats: &self.stats,
                // A replayed frame is sent when it is due: never held for a market
                // instant rendered ahead.
                hold: false,
            };
            Dispatcher::push_data(conn, payload.as_bytes(), ctx);
        }
    }
}

/// What `push_data` needs besides the connection (split borrows of the dispatcher).
struct DataCtx<'a> {
    faults: &'a FaultPlan,
    damaged: &'a mut Vec<u8>,
    max_outbox_bytes: usize,
    stats: &'a Counters,
    hold: bool,
}

impl Sink for Dispatcher {
    fn wants(&self, stream: StreamId) -> bool {
        self.subs
            .get(stream.0 as usize)
            .is_some_and(|s| !s.is_empty())
    }

    fn emit(&mut self, stream: StreamId, event: &Event<'_>) {
        let Some(subs) = self.subs.get(stream.0 as usize) else {
            return;
        };
        let symbol = self
            .symbols
            .get(event.symbol_index())
            .map_or("", String::as_str);
        let name = self.names.get(stream.0 as usize).map_or("", String::as_str);
        self.rendered = [false; 4];
        for &cid in subs {
            let Some(conn) = self.conns.get_mut(cid as usize).and_then(Option::as_mut) else {
                continue;
            };
            let micro = conn.unit == TimeUnit::Microsecond;
            let variant = usize::from(conn.combined) * 2 + usize::from(micro);
            let buf = &mut self.scratch[variant];
            if !self.rendered[variant] {
                buf.clear();
                render_event(buf, event, symbol, conn.combined.then_some(name), conn.unit);
                self.rendered[variant] = true;
            }
            let ctx = DataCtx {
                faults: &self.faults,
                damaged: &mut self.damaged,
                max_outbox_bytes: self.max_outbox_bytes,
                stats: &self.stats,
                hold: self.held_until.is_some(),
            };
            Dispatcher::push_data(conn, buf, ctx);
        }
    }
}

pub(super) fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}
