//! The simulator's state on its core: the market (or the replay), every WebSocket
//! connection's subscriptions and output buffer, the REST weight budget and the
//! protocol timers. Socket tasks in `server.rs` call into it; it never touches a socket.
//!
//! Runs on: the simulator's glommio executor, behind one `Rc<RefCell<Hub>>` (single
//! thread; no borrow is ever held across an `.await`). In: clock ticks, client
//! messages, REST requests. Out: WebSocket frames appended to per-connection buffers
//! (the writer tasks flush them), REST responses.
//!
//! Fan-out is open-loop: events are rendered just before they are due and leave when
//! they are due, whatever the state of a client's socket. Output waits in the
//! connection's buffer; a client whose unsent output exceeds the outbox limit is
//! disconnected (and counted), never waited for.
//! The connections and that fan-out (the market's [`Sink`](super::market::Sink)) are
//! in [`dispatch`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

mod dispatch;

use crate::wire::TimeUnit;

use super::clock::{wall_epoch_ms, SimClock};
use super::control::{self, ControlError, Request};
use super::faults::FaultPlan;
use super::http::{RequestHead, Response};
use super::market::{Market, StreamId};
use super::render::{render_server_shutdown, time_in};
use super::replay::{Next, Playback};
use super::rest::{self, WeightLimiter};
use super::stats::Counters;
use super::stream::{canonical_name, canonical_replay_name, parse_stream, StreamKind};
use super::ws::{self, Incoming, WsError};
use dispatch::{wake, Conn, ConnState, Dispatcher};

/// The next market instant is rendered ahead only when it is at least this far off.
/// Closer instants (a market whose events come microseconds apart) are emitted when
/// due, with whatever else is due by then: holding each would cost every writer a
/// wake-up per instant.
const MIN_RENDER_LEAD: Duration = Duration::from_micros(20);
/// Distinct stream names a replay will track. Clients may subscribe to names the capture
/// does not contain (they just receive nothing); past this many, new names are refused
/// so that subscribe/unsubscribe churn cannot grow the table without bound.
const MAX_REPLAY_STREAM_NAMES: usize = 65_536;
/// Replayed frames sent per scheduling slice, so that `--replay-speed 0` does not hold
/// the core for the whole file at once.
const REPLAY_BURST_FRAMES: usize = 10_000;
/// How soon to look again when a streamed replay's reader has not decoded the next
/// frame yet (it is behind only at `--replay-speed 0` or on a very slow disk).
const REPLAY_READER_POLL: Duration = Duration::from_millis(1);

/// Connection-level settings (from [`super::SimConfig`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub pong_check: bool,
    pub ignore_pongs: bool,
    pub max_connection_age: Duration,
    pub shutdown_grace: Duration,
    pub max_streams: usize,
    pub max_incoming_rate: u32,
    pub max_outbox_bytes: usize,
    pub faults: FaultPlan,
}

/// What a writer task should do next.
pub enum Output {
    /// Write the buffer swapped in; it holds `frames` data frames, the oldest market
    /// instant among them due at `due` (none: no market frame).
    Write { frames: u64, due: Option<Instant> },
    /// The close frame went out: shut the socket down.
    Finished,
    /// Dropped: end without writing.
    Killed,
}

/// How a WebSocket URL asked to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    pub combined: bool,
    pub unit: TimeUnit,
    pub streams: Vec<String>,
}

/// The simulator's state.
pub struct Hub {
    settings: Settings,
    clock: SimClock,
    started: Instant,
    market: Option<Market>,
    playback: Option<Playback>,
    replay_started: Option<Instant>,
    /// The replay's books, for its `/api/v3/depth` (empty without depth snapshots).
    replay_books: super::replay_books::ReplayBooks,
    disp: Dispatcher,
    limiter: WeightLimiter,
    stats: Arc<Counters>,
    stalled: bool,
    drops_done: u64,
    next_seq: u64,
    trades_reported: u64,
    stopping: bool,
    stop_wakers: Vec<Waker>,
}

impl Hub {
    pub fn new(
        settings: Settings,
        clock: SimClock,
        market: Option<Market>,
        playback: Option<Playback>,
        weight_limit: u32,
        stats: Arc<Counters>,
    ) -> Hub {
        let mut names = Vec::new();
        let mut ids = HashMap::new();
        let mut symbols = Vec::new();
        if let Some(m) = &market {
            for (i, s) in m.symbols().iter().enumerate() {
                symbols.push(s.spec.symbol.as_str().to_string());
                for k in 0..StreamKind::COUNT {
                    if let Some(kind) = StreamKind::from_index(k) {
                        let name = canonical_name(s.spec.symbol, kind);
                        ids.insert(name.clone(), StreamId::new(i, kind));
                        names.push(name);
                    }
                }
            }
        }
        if let Some(p) = &playback {
            for name in p.stream_names() {
                if !ids.contains_key(name) {
                    ids.insert(name.clone(), StreamId(names.len() as u32));
                    names.push(name.clone());
                }
            }
        }
        let disp = Dispatcher {
            conns: Vec::new(),
            free: Vec::new(),
            subs: vec![Vec::new(); names.len()],
            names,
            ids,
            symbols,
            scratch: Default::default(),
            rendered: [false; 4],
            damaged: Vec::new(),
            faults: settings.faults.clone(),
            max_outbox_bytes: settings.max_outbox_bytes,
            stats: stats.clone(),
            held_until: None,
        };
        Hub {
            settings,
            clock,
            started: Instant::now(),
            market,
            playback,
            replay_started: None,
            replay_books: Default::default(),
            disp,
            limiter: WeightLimiter::new(weight_limit),
            stats,
            stalled: false,
            drops_done: 0,
            next_seq: 0,
            trades_reported: 0,
            stopping: false,
            stop_wakers: Vec::new(),
        }
    }

    /// Resolves a client's stream name to its canonical name and id.
    fn resolve(&mut self, name: &str) -> Option<StreamId> {
        if self.playback.is_some() {
            let canonical = canonical_replay_name(name).ok()?;
            if let Some(&id) = self.disp.ids.get(&canonical) {
                return Some(id);
            }
            if self.disp.names.len() >= MAX_REPLAY_STREAM_NAMES {
                return None;
            }
            let id = StreamId(self.disp.names.len() as u32);
            self.disp.ids.insert(canonical.clone(), id);
            self.disp.names.push(canonical);
            self.disp.subs.push(Vec::new());
            return Some(id);
        }
        let (symbol, kind) = parse_stream(name).ok()?;
        self.disp.ids.get(&canonical_name(symbol, kind)).copied()
    }

    /// Checks the streams of a `/stream?streams=` URL or a request; `Err` names the first bad one.
    pub fn resolve_all(&mut self, names: &[String]) -> Result<Vec<StreamId>, String> {
        let mut ids: Vec<StreamId> = Vec::with_capacity(names.len());
        for n in names {
            let id = self.resolve(n).ok_or_else(|| n.clone())?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The streams of a `/ws/<s1>/<s2>` path. Binance accepts any path there: a segment
    /// that is no stream it serves yields no data, and the client may SUBSCRIBE later.
    pub fn resolve_known(&mut self, names: &[String]) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = Vec::with_capacity(names.len());
        for id in names.iter().filter_map(|n| self.resolve(n)) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    pub fn max_streams(&self) -> usize {
        self.settings.max_streams
    }

    /// Adds an accepted WebSocket connection; returns its id.
    pub fn register(&mut self, target: &WsTarget, streams: Vec<StreamId>, now: Instant) -> usize {
        let conn = Conn {
            seq: self.next_seq,
            out: Vec::with_capacity(4096),
            frames_pending: 0,
            due: None,
            held: Vec::new(),
            held_frames: 0,
            writer: None,
            killer: None,
            state: ConnState::Open,
            combined: target.combined,
            unit: target.unit,
            streams: Vec::new(),
            connected: now,
            last_pong: now,
            next_ping: now + self.settings.ping_interval,
            incoming: VecDeque::new(),
            data_frames: 0,
        };
        self.next_seq += 1;
        let id = match self.disp.free.pop() {
            Some(id) => {
                self.disp.conns[id] = Some(conn);
                id
            }
            None => {
                self.disp.conns.push(Some(conn));
                self.disp.conns.len() - 1
            }
        };
        for s in streams {
            self.subscribe_one(id, s);
        }
        Counters::add(&self.stats.connections_accepted, 1);
        Counters::add(&self.stats.connections_active, 1);
        id
    }

    /// Removes a connection and its subscriptions.
    pub fn unregister(&mut self, id: usize) {
        let Some(conn) = self.disp.conns.get_mut(id).and_then(Option::take) else {
            return;
        };
        for s in &conn.streams {
            if let Some(list) = self.disp.subs.get_mut(s.0 as usize) {
                list.retain(|&c| c as usize != id);
            }
        }
        self.disp.free.push(id);
        self.stats
            .connections_active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn subscribe_one(&mut self, id: usize, stream: StreamId) -> bool {
        let Some(conn) = self.disp.conn_mut(id) else {
            return false;
        };
        if conn.streams.contains(&stream) {
            return true;
        }
        if conn.streams.len() >= self.settings.max_streams {
            return false;
        }
        conn.streams.push(stream);
        if let Some(list) = self.disp.subs.get_mut(stream.0 as usize) {
            list.push(id as u32);
        }
        if self.playback.is_some() && self.replay_started.is_none() {
            self.replay_started = Some(Instant::now());
        }
        true
    }

    fn unsubscribe_one(&mut self, id: usize, stream: StreamId) {
        if let Some(conn) = self.disp.conn_mut(id) {
            conn.streams.retain(|&s| s != stream);
        }
        if let Some(list) = self.disp.subs.get_mut(stream.0 as usize) {
            list.retain(|&c| c as usize != id);
        }
    }

    /// Queues a text frame that is not market data (replies, serverShutdown).
    fn push_text(&mut self, id: usize, payload: &[u8]) {
        if let Some(conn) = self.disp.conn_mut(id) {
            if matches!(conn.state, ConnState::Open | ConnState::ShutdownSent { .. }) {
                ws::push_frame(&mut conn.out, ws::OP_TEXT, payload);
                wake(&mut conn.writer);
            }
        }
    }

    /// Queues a close frame; the writer ends the connection once it is sent.
    fn begin_close(&mut self, id: usize, code: u16, reason: &str) {
        if let Some(conn) = self.disp.conn_mut(id) {
            if matches!(conn.state, ConnState::Open | ConnState::ShutdownSent { .. }) {
                ws::push_close(&mut conn.out, code, reason);
                conn.state = ConnState::Closing;
                wake(&mut conn.writer);
            }
        }
    }

    fn kill(&mut self, id: usize) {
        if let Some(conn) = self.disp.conn_mut(id) {
            conn.state = ConnState::Killed;
            wake(&mut conn.killer);
            wake(&mut conn.writer);
        }
    }

    /// Whether a connection still accepts client messages (not closing or dropped).
    pub fn accepts_input(&self, id: usize) -> bool {
        self.disp
            .conns
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|c| matches!(c.state, ConnState::Open | ConnState::ShutdownSent { .. }))
    }

    /// Handles one client message.
    pub fn on_message(&mut self, id: usize, message: Incoming, now: Instant) {
        if let Incoming::Close(code, _) = message {
            // Echo the client's close (RFC 6455 §5.5.1); if we started the close, this
            // is the answer and the writer is already finishing.
            let code = code.unwrap_or(ws::CLOSE_NORMAL);
            self.begin_close(id, code, "");
            return;
        }
        if !self.accepts_input(id) {
            return;
        }
        if !self.note_incoming(id, now) {
            Counters::add(&self.stats.rate_limit_disconnects, 1);
            self.begin_close(id, ws::CLOSE_POLICY_VIOLATION, "Too many requests");
            return;
        }
        match message {
            Incoming::Ping(payload) => {
                if let Some(conn) = self.disp.conn_mut(id) {
                    ws::push_frame(&mut conn.out, ws::OP_PONG, &payload);
                    wake(&mut conn.writer);
                }
            }
            Incoming::Pong(_) => {
                Counters::add(&self.stats.pongs_received, 1);
                if !self.settings.ignore_pongs {
                    if let Some(conn) = self.disp.conn_mut(id) {
                        conn.last_pong = now;
                    }
                }
            }
            Incoming::Text(text) => self.on_control(id, &text),
            // Binance ignores binary frames on market streams.
            Incoming::Binary(_) | Incoming::Close(..) => {}
        }
    }

    /// A client broke the protocol: close with the matching code.
    pub fn on_protocol_error(&mut self, id: usize, error: &WsError) {
        self.begin_close(id, error.close_code(), &error.to_string());
    }

    /// Sliding one-second window over the last `max_incoming_rate` messages.
    fn note_incoming(&mut self, id: usize, now: Instant) -> bool {
        let limit = self.settings.max_incoming_rate as usize;
        let Some(conn) = self.disp.conn_mut(id) else {
            return false;
        };
        if limit == 0 {
            return true;
        }
        if conn.incoming.len() >= limit {
            if let Some(&oldest) = conn.incoming.front() {
                if now.duration_since(oldest) < Duration::from_secs(1) {
                    return false;
                }
            }
            conn.incoming.pop_front();
        }
        conn.incoming.push_back(now);
        true
    }

    fn on_control(&mut self, id: usize, text: &[u8]) {
        Counters::add(&self.stats.control_requests, 1);
        let mut reply = Vec::with_capacity(64);
        let text = String::from_utf8_lossy(text);
        match control::parse_request(&text) {
            Err(error) => control::reply_error(&mut reply, &error),
            Ok(Request::Subscribe { id: rid, streams }) => {
                Counters::add(&self.stats.subscribe_requests, 1);
                if self
                    .settings
                    .faults
                    .refuses(&streams, self.started.elapsed())
                {
                    Counters::add(&self.stats.subscribes_refused, 1);
                    control::reply_error(
                        &mut reply,
                        &ControlError::invalid_request(&rid, "invalid stream"),
                    );
                    self.push_text(id, &reply);
                    return;
                }
                let silent: Vec<bool> = streams
                    .iter()
                    .map(|s| self.settings.faults.silent(s))
                    .collect();
                let streams: Vec<String> = streams
                    .into_iter()
                    .zip(silent)
                    .filter_map(|(s, quiet)| (!quiet).then_some(s))
                    .collect();
                match self.resolve_all(&streams) {
                    Err(_) => control::reply_error(
                        &mut reply,
                        &ControlError::invalid_request(&rid, "invalid stream"),
                    ),
                    Ok(ids) => {
                        let refused = ids
                            .into_iter()
                            .filter(|&s| !self.subscribe_one(id, s))
                            .count();
                        if refused == 0 {
                            control::reply_null(&mut reply, &rid);
                        } else {
                            let what = format!(
                                "too many streams: at most {} per connection, {refused} refused",
                                self.settings.max_streams
                            );
                            control::reply_error(
                                &mut reply,
                                &ControlError::invalid_request(&rid, &what),
                            );
                        }
                    }
                }
            }
            Ok(Request::Unsubscribe { id: rid, streams }) => match self.resolve_all(&streams) {
                Err(_) => control::reply_error(
                    &mut reply,
                    &ControlError::invalid_request(&rid, "invalid stream"),
                ),
                Ok(ids) => {
                    for s in ids {
                        self.unsubscribe_one(id, s);
                    }
                    control::reply_null(&mut reply, &rid);
                }
            },
            Ok(Request::ListSubscriptions { id: rid }) => {
                let streams = self
                    .disp
                    .conn_mut(id)
                    .map(|c| c.streams.clone())
                    .unwrap_or_default();
                let names = &self.disp.names;
                control::reply_list(
                    &mut reply,
                    &rid,
                    streams
                        .iter()
                        .filter_map(|s| names.get(s.0 as usize).map(String::as_str)),
                );
            }
            Ok(Request::SetCombined { id: rid, combined }) => {
                if let Some(conn) = self.disp.conn_mut(id) {
                    conn.combined = combined;
                }
                control::reply_null(&mut reply, &rid);
            }
            Ok(Request::GetCombined { id: rid }) => {
                let combined = self.disp.conn_mut(id).is_some_and(|c| c.combined);
                control::reply_bool(&mut reply, &rid, combined);
            }
        }
        self.push_text(id, &reply);
    }

    /// Writer side: swaps the connection's pending output into `spare`.
    pub fn take_output(
        &mut self,
        id: usize,
        spare: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Output> {
        let stalled = self.stalled;
        let Some(conn) = self.disp.conn_mut(id) else {
            return Poll::Ready(Output::Killed);
        };
        if conn.state == ConnState::Killed {
            return Poll::Ready(Output::Killed);
        }
        if stalled || conn.out.is_empty() {
            if conn.out.is_empty() && conn.state == ConnState::Closing && !stalled {
                return Poll::Ready(Output::Finished);
            }
            conn.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        std::mem::swap(&mut conn.out, spare);
        let frames = std::mem::take(&mut conn.frames_pending);
        Poll::Ready(Output::Write {
            frames,
            due: conn.due.take(),
        })
    }

    /// Resolves when the connection is dropped (or gone).
    pub fn poll_killed(&mut self, id: usize, cx: &mut Context<'_>) -> Poll<()> {
        match self.disp.conn_mut(id) {
            None => Poll::Ready(()),
            Some(conn) if conn.state == ConnState::Killed => Poll::Ready(()),
            Some(conn) => {
                conn.killer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Emits the market events due by `now` (at most `max_steps` steps); returns
    /// whether it caught up.
    ///
    /// The events of the next market instant, when it is less than `ahead` away (and
    /// more than [`MIN_RENDER_LEAD`]), are rendered now and held until it comes: they
    /// then leave together, in one write per connection, at their event time. Rendered
    /// when due instead, a burst of events at one instant would leave one rendering (a
    /// few microseconds) after the other, and every system measured against the
    /// simulator would see that as its own latency.
    /// The caller calls again by [`Hub::next_market_due`] to release them.
    pub fn advance_market(&mut self, now: Instant, ahead: Duration, max_steps: usize) -> bool {
        let clock = self.clock;
        if self.disp.held_until.is_some_and(|(_, at)| at <= now) {
            self.disp.release_held();
        }
        let horizon = self.disp.held_until.map_or(clock.sim_at(now), |(ns, _)| ns);
        // Events rendered now because they are due (not held ahead: the task woke late,
        // or they were too close to hold) are measured from the oldest one's time.
        let late_from = self
            .next_market_event_ns()
            .filter(|ns| self.disp.held_until.is_none() && *ns <= horizon);
        let caught_up = self.advance_market_to(horizon, max_steps);
        if let Some(ns) = late_from {
            self.disp.mark_due(clock.wall_at(ns));
        }
        if !caught_up {
            return false;
        }
        if self.disp.held_until.is_some() {
            return true;
        }
        let Some(next_ns) = self.next_market_event_ns() else {
            return true;
        };
        let at = clock.wall_at(next_ns);
        let lead = at.saturating_duration_since(now);
        if lead < MIN_RENDER_LEAD || lead > ahead {
            return true;
        }
        self.disp.held_until = Some((next_ns, at));
        self.advance_market_to(next_ns, max_steps)
    }

    /// Emits everything due by simulated time `now_ns` (at most `max_steps` steps);
    /// returns whether it caught up.
    fn advance_market_to(&mut self, now_ns: i64, max_steps: usize) -> bool {
        let Some(market) = self.market.as_mut() else {
            return true;
        };
        let done = market.advance_bounded(now_ns, &mut self.disp, max_steps);
        let total: u64 = market.symbols().iter().map(|s| s.trades_total()).sum();
        Counters::add(&self.stats.trades_generated, total - self.trades_reported);
        self.trades_reported = total;
        done
    }

    /// When [`Hub::advance_market`] with this `ahead` has work next, and whether it must
    /// be on time: releasing held events must (`true`); rendering the next ones ahead of
    /// their time need not (waking late only shortens the lead).
    pub fn next_market_due(&self, ahead: Duration) -> Option<(Instant, bool)> {
        match self.disp.held_until {
            Some((_, at)) => Some((at, true)),
            None => self.next_market_event_ns().map(|ns| {
                let at = self.clock.wall_at(ns);
                (at.checked_sub(ahead).unwrap_or(at), false)
            }),
        }
    }

    /// Simulated time of the market's next event.
    fn next_market_event_ns(&self) -> Option<i64> {
        self.market.as_ref().map(Market::next_event_ns)
    }

    /// Sends the replayed frames due by `now`; returns when the next one is due
    /// (`None`: nothing left, or the replay has not started).
    pub fn advance_replay(&mut self, now: Instant) -> Option<Instant> {
        let started = self.replay_started?;
        let playback = self.playback.as_mut()?;
        let elapsed_us = now.saturating_duration_since(started).as_micros() as i64;
        let mut sent = 0;
        loop {
            let due = match playback.next_due() {
                Next::Due(due) => due,
                Next::Wait => return Some(now + REPLAY_READER_POLL),
                Next::Done => return None,
            };
            if due > elapsed_us {
                return Some(started + Duration::from_micros(due as u64));
            }
            if sent == REPLAY_BURST_FRAMES {
                return Some(now);
            }
            let frame = playback.take()?;
            if frame.stream.is_empty() {
                // A capture note (a depth snapshot): not sent, it starts a book.
                self.replay_books.on_note(&frame.frame);
                continue;
            }
            self.replay_books.on_frame(&frame.stream, frame.data());
            if let Some(&stream) = self.disp.ids.get(&frame.stream) {
                self.disp.send_replayed(stream, &frame.frame, frame.data());
            }
            sent += 1;
        }
    }

    /// Answers a REST request.
    pub fn rest(&mut self, head: &RequestHead, ip: IpAddr) -> Response {
        Counters::add(&self.stats.http_requests, 1);
        if head.path == "/ws" || head.path.starts_with("/ws/") || head.path.starts_with("/stream") {
            return Response::error(426, -1000, "WebSocket upgrade required.");
        }
        if head.method != "GET" {
            return Response::error(405, -1000, "Only GET is supported.");
        }
        let weight = rest::request_weight(&head.path, &head.query);
        let used_header = |used: u32| {
            vec![
                ("X-MBX-USED-WEIGHT-1M", used.to_string()),
                ("X-MBX-USED-WEIGHT", used.to_string()),
            ]
        };
        match self.limiter.charge(ip, weight, wall_epoch_ms()) {
            Err(over) => {
                Counters::add(&self.stats.rest_rejected, 1);
                let msg = format!(
                    "Too much request weight used; current limit is {} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                    self.limiter.limit()
                );
                let mut r = Response::error(429, -1003, &msg);
                r.headers = used_header(over.used);
                r.headers
                    .push(("Retry-After", over.retry_after_s.to_string()));
                r
            }
            Ok(used) if self.playback.is_some() && head.path == "/api/v3/depth" => {
                let mut r = self.replay_depth(&head.query);
                r.headers = used_header(used);
                r
            }
            Ok(used) => {
                // REST answers from the same state the streams are built from, brought
                // up to the present first. While an instant is held (rendered ahead,
                // not yet sent) the state already holds it: an answer can be up to
                // `RENDER_AHEAD` (1 ms) ahead of the streams, inside any exchange's race
                // between its REST and its streams.
                let now_ns = self.clock.sim_now_ns();
                self.advance_market_to(now_ns, usize::MAX);
                let mut r = rest::respond(
                    &head.path,
                    &head.query,
                    head.time_unit,
                    self.market.as_ref(),
                    now_ns,
                    self.limiter.limit(),
                );
                r.headers = used_header(used);
                r
            }
        }
    }

    /// `GET /api/v3/depth` of a replay, from the books its depth snapshots and sent
    /// diffs make; its parameters are checked as the live market's are.
    fn replay_depth(&self, query: &str) -> Response {
        let pairs = super::http::query_pairs(query);
        let asked = rest::mandatory(&pairs, "symbol").and_then(|text| {
            let limit =
                rest::limit_param(&pairs, rest::DEPTH_DEFAULT_LIMIT, rest::DEPTH_MAX_LIMIT)?;
            Ok((crate::market::Symbol::new(text).ok(), limit))
        });
        let (symbol, limit) = match asked {
            Ok(asked) => asked,
            Err(refused) => return refused,
        };
        match symbol.and_then(|s| self.replay_books.depth(s, limit)) {
            Some(Ok(body)) => Response::json(200, body),
            // Binance's answer when it cannot serve now: the client asks again.
            Some(Err(_)) => Response::error(503, -1008, "Service unavailable; try again."),
            None => Response::error(400, -1121, "Invalid symbol."),
        }
    }

    /// Protocol timers and faults; called every few milliseconds.
    pub fn housekeep(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        let faults = &self.settings.faults;
        let stalled = faults.stalled(elapsed);
        if stalled != self.stalled {
            self.stalled = stalled;
            if stalled {
                Counters::add(&self.stats.stalls_injected, 1);
            } else {
                for conn in self.disp.conns.iter_mut().flatten() {
                    wake(&mut conn.writer);
                }
            }
        }
        let drops_due = faults.drops_due(elapsed);
        if drops_due > self.drops_done {
            self.drops_done = drops_due;
            let ids: Vec<usize> = self.live_ids();
            Counters::add(&self.stats.drops_injected, ids.len() as u64);
            for id in ids {
                self.kill(id);
            }
        }
        let sim_now_ns = self.clock.sim_now_ns();
        for id in self.live_ids() {
            self.housekeep_conn(id, now, sim_now_ns);
        }
    }

    fn live_ids(&self) -> Vec<usize> {
        self.disp
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.state != ConnState::Killed))
            .map(|(i, _)| i)
            .collect()
    }

    fn housekeep_conn(&mut self, id: usize, now: Instant, sim_now_ns: i64) {
        let settings = &self.settings;
        let stalled = self.stalled;
        let Some(conn) = self.disp.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        if settings.pong_check
            && now.saturating_duration_since(conn.last_pong) > settings.pong_timeout
        {
            Counters::add(&self.stats.pong_timeout_disconnects, 1);
            self.kill(id);
            return;
        }
        if !stalled && now >= conn.next_ping {
            let mut payload = Vec::with_capacity(16);
            super::render::push_i64(&mut payload, sim_now_ns.div_euclid(1_000_000));
            ws::push_frame(&mut conn.out, ws::OP_PING, &payload);
            conn.next_ping = now + settings.ping_interval;
            wake(&mut conn.writer);
            Counters::add(&self.stats.pings_sent, 1);
        }
        match conn.state {
            ConnState::Open
                if now.saturating_duration_since(conn.connected) >= settings.max_connection_age =>
            {
                let mut payload = Vec::with_capacity(80);
                render_server_shutdown(&mut payload, conn.combined, time_in(conn.unit, sim_now_ns));
                ws::push_frame(&mut conn.out, ws::OP_TEXT, &payload);
                conn.state = ConnState::ShutdownSent {
                    close_at: now + settings.shutdown_grace,
                };
                wake(&mut conn.writer);
                Counters::add(&self.stats.server_shutdowns_sent, 1);
            }
            ConnState::ShutdownSent { close_at } if now >= close_at => {
                self.begin_close(id, ws::CLOSE_GOING_AWAY, "Connection age limit reached");
            }
            _ => {}
        }
    }

    /// Starts the stop sequence: every waiter on [`Hub::poll_stop`] wakes.
    pub fn stop(&mut self) {
        self.stopping = true;
        for w in self.stop_wakers.drain(..) {
            w.wake();
        }
        for id in self.live_ids() {
            self.kill(id);
        }
    }

    pub fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopping {
            Poll::Ready(())
        } else {
            self.stop_wakers.push(cx.waker().clone());
            Poll::Pending
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping
    }
}

/// Parses a WebSocket request path: `/ws`, `/ws/<s1>/<s2>`, `/stream`,
/// `/stream?streams=<s1>/<s2>`, each with an optional `timeUnit`.
pub fn parse_ws_target(path: &str, query: &str) -> Option<WsTarget> {
    let pairs = super::http::query_pairs(query);
    let unit = match super::http::query_get(&pairs, "timeUnit") {
        Some(u) if u.eq_ignore_ascii_case("MICROSECOND") => TimeUnit::Microsecond,
        _ => TimeUnit::Millisecond,
    };
    let split = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    if path == "/ws" || path == "/ws/" {
        return Some(WsTarget {
            combined: false,
            unit,
            streams: Vec::new(),
        });
    }
    if let Some(rest) = path.strip_prefix("/ws/") {
        return Some(WsTarget {
            combined: false,
            unit,
            streams: split(rest),
        });
    }
    if path == "/stream" || path == "/stream/" {
        let streams = super::http::query_get(&pairs, "streams")
            .map(split)
            .unwrap_or_default();
        return Some(WsTarget {
            combined: true,
            unit,
            streams,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Symbol;

    #[test]
    fn ws_targets() {
        let t = parse_ws_target(
            "/stream",
            "streams=btcusdt@trade/ethusdt@kline_1m&timeUnit=microsecond",
        )
        .unwrap();
        assert!(t.combined);
        assert_eq!(t.unit, TimeUnit::Microsecond);
        assert_eq!(t.streams, vec!["btcusdt@trade", "ethusdt@kline_1m"]);
        let t = parse_ws_target("/ws/btcusdt@trade/btcusdt@depth@100ms", "").unwrap();
        assert!(!t.combined);
        assert_eq!(t.streams, vec!["btcusdt@trade", "btcusdt@depth@100ms"]);
        assert_eq!(parse_ws_target("/ws", "").unwrap().streams.len(), 0);
        assert!(parse_ws_target("/api/v3/ping", "").is_none());
    }

    fn kline_hub(symbols: &[&str]) -> (Hub, usize) {
        use crate::simulator::market::MarketConfig;
        let start_ms = 1_700_000_000_000;
        let market = Market::new(&MarketConfig {
            symbols: symbols.iter().map(|s| Symbol::new(s).unwrap()).collect(),
            seed: 7,
            trade_rate: 50.0,
            start_time_ms: start_ms,
            kline_push_ms: 100,
            kline_phase: Default::default(),
            history_limit: 10,
            history_candles: 0,
        });
        let settings = Settings {
            ping_interval: Duration::from_secs(180),
            pong_timeout: Duration::from_secs(600),
            pong_check: false,
            ignore_pongs: false,
            max_connection_age: Duration::from_secs(86_400),
            shutdown_grace: Duration::from_secs(1),
            max_streams: 1024,
            max_incoming_rate: 5,
            max_outbox_bytes: 1 << 24,
            faults: FaultPlan {
                drop_every: None,
                stall_every: None,
                stall_for: Duration::ZERO,
                malformed_rate: 0.0,
                seed: 0,
                reject_streams: Vec::new(),
                reject_for: None,
                silent_streams: Vec::new(),
            },
        };
        let clock = SimClock::new(Some(start_ms), 1.0);
        let mut hub = Hub::new(settings, clock, Some(market), None, 6000, Arc::default());
        let names: Vec<String> = symbols
            .iter()
            .map(|s| format!("{}@kline_1m", s.to_lowercase()))
            .collect();
        let target = WsTarget {
            combined: true,
            unit: TimeUnit::Microsecond,
            streams: names.clone(),
        };
        let streams = hub.resolve_all(&names).unwrap();
        let id = hub.register(&target, streams, Instant::now());
        (hub, id)
    }

    /// (frames ready to write, frames held) for a connection.
    fn frames(hub: &mut Hub, id: usize) -> (u64, u64) {
        let conn = hub.disp.conn_mut(id).unwrap();
        (conn.frames_pending, conn.held_frames)
    }

    #[test]
    fn events_are_rendered_ahead_and_leave_together_at_their_time() {
        let (mut hub, id) = kline_hub(&["BTCUSDT", "ETHUSDT", "BNBUSDT"]);
        let ahead = Duration::from_micros(200);
        let mut pushes = 0;
        // Walk the market's instants (trades and kline pushes) by hand, as the market task
        // does: shortly before each, then at it. Bounded: a push comes every 100 ms.
        for _ in 0..10_000 {
            let (render_at, on_time) = hub.next_market_due(ahead).unwrap();
            assert!(!on_time, "rendering ahead need not be on time");
            let due = render_at + ahead;
            assert!(hub.advance_market(due - Duration::from_micros(150), ahead, usize::MAX));
            let (ready, held) = frames(&mut hub, id);
            assert_eq!(ready, 0, "nothing leaves before its time");
            assert_eq!(
                hub.next_market_due(ahead),
                Some((due, true)),
                "the release is what comes next"
            );
            assert!(hub.advance_market(due, ahead, usize::MAX));
            assert_eq!(
                frames(&mut hub, id),
                (held, 0),
                "the held frames leave at their time"
            );
            if held > 0 {
                // A kline push: one frame per symbol, rendered together.
                assert_eq!(held, 3);
                pushes += 1;
                if pushes == 3 {
                    break;
                }
            }
            hub.disp.conn_mut(id).unwrap().frames_pending = 0;
        }
        assert_eq!(pushes, 3);
        let conn = hub.disp.conn_mut(id).unwrap();
        let text = String::from_utf8_lossy(&conn.out);
        assert_eq!(text.matches("\"e\":\"kline\"").count(), 3 * 3, "{text}");
    }

    #[test]
    fn events_further_than_the_window_are_not_rendered_early() {
        let (mut hub, id) = kline_hub(&["BTCUSDT"]);
        let ahead = Duration::from_micros(200);
        let (render_at, _) = hub.next_market_due(ahead).unwrap();
        let due = render_at + ahead;
        let early = due - Duration::from_micros(500);
        assert!(hub.advance_market(early, ahead, usize::MAX));
        assert_eq!(frames(&mut hub, id), (0, 0));
        assert_eq!(hub.next_market_due(ahead), Some((render_at, false)));
        // Nor closer than the minimum lead: at high rates instants go out as they come.
        let close = due - MIN_RENDER_LEAD / 2;
        assert!(hub.advance_market(close, ahead, usize::MAX));
        assert_eq!(frames(&mut hub, id), (0, 0));
        assert_eq!(hub.next_market_due(ahead), Some((render_at, false)));
        // A window of zero renders nothing ahead: events go out when due.
        assert!(hub.advance_market(due - Duration::from_micros(1), Duration::ZERO, usize::MAX));
        assert_eq!(frames(&mut hub, id), (0, 0));
    }

    #[test]
    fn a_write_is_measured_from_its_oldest_market_instant_held_or_rendered_late() {
        let (mut hub, id) = kline_hub(&["BTCUSDT", "ETHUSDT"]);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut spare = Vec::new();
        let mut take = |hub: &mut Hub| match hub.take_output(id, &mut spare, &mut cx) {
            Poll::Ready(Output::Write { frames, due }) => Some((frames, due)),
            _ => None,
        };
        let ahead = Duration::from_micros(200);
        // Held ahead and released at its time: measured from that time.
        let mut held = None;
        for _ in 0..10_000 {
            let (render_at, _) = hub.next_market_due(ahead).unwrap();
            let due = render_at + ahead;
            assert!(hub.advance_market(due - Duration::from_micros(150), ahead, usize::MAX));
            assert!(hub.advance_market(due, ahead, usize::MAX));
            if let Some(write) = take(&mut hub) {
                held = Some((write, due));
                break;
            }
        }
        let ((frames, due), at) = held.expect("a kline push within the bound");
        assert_eq!(frames, 2);
        assert_eq!(due, Some(at));
        assert_eq!(take(&mut hub), None, "nothing more to write");
        // Rendered when the task woke 300 µs late (no window): measured from the
        // instant's own time, so the lateness shows.
        for _ in 0..10_000 {
            let (at, _) = hub.next_market_due(Duration::ZERO).unwrap();
            assert!(hub.advance_market(
                at + Duration::from_micros(300),
                Duration::ZERO,
                usize::MAX
            ));
            if let Some((frames, due)) = take(&mut hub) {
                assert!(frames > 0);
                assert_eq!(due, Some(at));
                return;
            }
        }
        panic!("no kline push rendered within the bound");
    }
}
