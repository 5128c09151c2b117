//! Counters the simulator keeps for tests and benchmarks: written by the simulator core
//! (relaxed atomics, batched per socket write on the hot path), read from any thread
//! through [`SimStats`] snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::latency::{new_histogram, MAX_TRACKED_NS};

/// The live counters, shared between the simulator thread and its handle.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub http_requests: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs_received: AtomicU64,
    pub drops_injected: AtomicU64,
    pub malformed_injected: AtomicU64,
    pub stalls_injected: AtomicU64,
    pub control_requests: AtomicU64,
    pub subscribe_requests: AtomicU64,
    pub subscribes_refused: AtomicU64,
    pub rate_limit_disconnects: AtomicU64,
    pub pong_timeout_disconnects: AtomicU64,
    pub server_shutdowns_sent: AtomicU64,
    pub slow_client_disconnects: AtomicU64,
    pub rest_rejected: AtomicU64,
    pub trades_generated: AtomicU64,
    /// Market frames' event time → the return of the socket write that carried them,
    /// ns, one value per write (see [`SendLate`]).
    pub send_late: SendLate,
}

/// How late the simulator's own sending is: for each socket write that carries market
/// events, the time from the event time of the oldest of them to the write's return.
/// It is the exchange's share of every latency measured against the simulator (its
/// pacing, its rendering, the write, and on loopback the receiver's TCP input, which the
/// kernel runs inside the sender's call). Recorded by the simulator thread a few hundred
/// times a second at most (one value per write, not per frame).
#[derive(Debug)]
pub struct SendLate(Mutex<Histogram<u64>>);

impl Default for SendLate {
    fn default() -> Self {
        // The engine's stage range and precision, so the rows compare.
        SendLate(Mutex::new(new_histogram()))
    }
}

impl SendLate {
    pub fn record(&self, ns: u64) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    /// The values so far (cumulative: subtract an earlier snapshot for a window).
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// WebSocket connections that completed the handshake.
    pub connections_accepted: u64,
    /// WebSocket connections open now.
    pub connections_active: u64,
    /// REST requests answered (including refused ones).
    pub http_requests: u64,
    /// Data frames (market events, replayed frames) written to sockets.
    pub frames_sent: u64,
    /// Bytes written to WebSocket connections (frames of every kind).
    pub bytes_sent: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    /// Connections closed abruptly by `--drop-every`.
    pub drops_injected: u64,
    /// Data frames damaged by `--malformed-rate`.
    pub malformed_injected: u64,
    /// Output stalls started by `--stall-every`.
    pub stalls_injected: u64,
    /// Control messages received (valid or not).
    pub control_requests: u64,
    /// SUBSCRIBE requests received.
    pub subscribe_requests: u64,
    /// SUBSCRIBE requests refused by `--reject-streams`.
    pub subscribes_refused: u64,
    /// Connections closed for exceeding `--max-incoming-rate`.
    pub rate_limit_disconnects: u64,
    /// Connections closed for not answering pings within `--pong-timeout`.
    pub pong_timeout_disconnects: u64,
    /// `serverShutdown` events sent (`--max-connection-age`).
    pub server_shutdowns_sent: u64,
    /// Connections dropped because their unsent output exceeded the outbox limit.
    pub slow_client_disconnects: u64,
    /// REST requests refused with 429 for exceeding `--weight-limit`.
    pub rest_rejected: u64,
    /// Trades the synthetic market has generated.
    pub trades_generated: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            connections_accepted: get(&self.connections_accepted),
            connections_active: get(&self.connections_active),
            http_requests: get(&self.http_requests),
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            pings_sent: get(&self.pings_sent),
            pongs_received: get(&self.pongs_received),
            drops_injected: get(&self.drops_injected),
            malformed_injected: get(&self.malformed_injected),
            stalls_injected: get(&self.stalls_injected),
            control_requests: get(&self.control_requests),
            subscribe_requests: get(&self.subscribe_requests),
            subscribes_refused: get(&self.subscribes_refused),
            rate_limit_disconnects: get(&self.rate_limit_disconnects),
            pong_timeout_disconnects: get(&self.pong_timeout_disconnects),
            server_shutdowns_sent: get(&self.server_shutdowns_sent),
            slow_client_disconnects: get(&self.slow_client_disconnects),
            rest_rejected: get(&self.rest_rejected),
            trades_generated: get(&self.trades_generated),
        }
    }
}
