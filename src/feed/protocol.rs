//! The Binance subscription protocol, as pure functions and small state machines.
//!
//! Runs on: shard cores (called by the connection task); no sockets, clocks or threads
//! here: time comes in as arguments so every rule is tested directly.
//! - [`streams_for`]: the stream names a set of symbols needs.
//! - [`assign_streams`]: spreads streams over connections under the per-connection cap.
//! - [`subscribe_batches`]: SUBSCRIBE requests, each under Binance's 4 KB limit.
//! - [`SendWindow`]: keeps every connection under Binance's 5 incoming msgs/s.
//! - [`PendingRequests`]: request ids awaiting acknowledgement.
//! - [`Subscriptions`]: one connection's SUBSCRIBE requests from first send to
//!   acknowledgement, resent on timeout, split and retried with backoff on rejection.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

use crate::config::StreamKinds;
use crate::market::{Interval, Symbol};

/// Binance's hard cap on streams per connection.
pub const BINANCE_MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// Binance's hard cap on a control message's size.
pub const BINANCE_MAX_REQUEST_BYTES: usize = 4096;
/// Binance's hard cap on messages a client may send per second per connection.
pub const BINANCE_MAX_OUTGOING_PER_S: u32 = 5;

/// Every stream name the given symbols need, in a stable order (symbol, then kind).
pub fn streams_for(
    symbols: &[Symbol],
    timeframes: &[Interval],
    kinds: &StreamKinds,
) -> Vec<String> {
    let mut out = Vec::new();
    for symbol in symbols {
        let s = symbol.lower();
        if kinds.kline {
            for tf in timeframes {
                out.push(format!("{s}@kline_{tf}"));
            }
        }
        if kinds.trade {
            out.push(format!("{s}@trade"));
        }
        if kinds.agg_trade {
            out.push(format!("{s}@aggTrade"));
        }
        if kinds.book_ticker {
            out.push(format!("{s}@bookTicker"));
        }
        match kinds.diff_depth_ms {
            Some(100) => out.push(format!("{s}@depth@100ms")),
            Some(_) => out.push(format!("{s}@depth")),
            None => {}
        }
        if let Some(levels) = kinds.partial_depth_levels {
            out.push(format!("{s}@depth{levels}"));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{streams} streams do not fit in {connections} connections of {per_connection} streams; \
     raise BINANCE_MAX_CONNECTIONS or feed.max_streams_per_connection (at most 1024), \
     or use fewer symbols per shard"
)]
pub struct CapacityError {
    pub streams: usize,
    pub connections: usize,
    pub per_connection: usize,
}

/// Splits `streams` into as few connections as the per-connection cap allows, keeping
/// each symbol's streams together where possible (they are adjacent in the input), and
/// balancing the load: connection sizes differ by at most one.
pub fn assign_streams(
    streams: &[String],
    per_connection: usize,
    max_connections: usize,
) -> Result<Vec<Vec<String>>, CapacityError> {
    let per_connection = per_connection.clamp(1, BINANCE_MAX_STREAMS_PER_CONNECTION);
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let needed = streams.len().div_ceil(per_connection);
    if needed > max_connections {
        return Err(CapacityError {
            streams: streams.len(),
            connections: max_connections,
            per_connection,
        });
    }
    let base = streams.len() / needed;
    let extra = streams.len() % needed;
    let mut out = Vec::with_capacity(needed);
    let mut rest = streams;
    for i in 0..needed {
        let take = base + usize::from(i < extra);
        let (head, tail) = rest.split_at(take);
        out.push(head.to_vec());
        rest = tail;
    }
    Ok(out)
}

/// One SUBSCRIBE (or UNSUBSCRIBE) request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub text: String,
    pub streams: Vec<String>,
}

/// Packs `streams` into `method` requests whose JSON text is at most `max_bytes`,
/// numbering them from `first_id`. A single stream name too long for any request is
/// impossible with Binance's names (< 64 bytes) and `max_bytes` ≥ 256 (validated config).
pub fn subscribe_batches(
    method: &str,
    streams: &[String],
    max_bytes: usize,
    first_id: u64,
) -> Vec<Request> {
    let max_bytes = max_bytes.min(BINANCE_MAX_REQUEST_BYTES - 1);
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut id = first_id;
    for stream in streams {
        current.push(stream.clone());
        if render_request(method, &current, id).len() > max_bytes && current.len() > 1 {
            current.pop();
            out.push(finish(method, std::mem::take(&mut current), id));
            id += 1;
            current.push(stream.clone());
        }
    }
    if !current.is_empty() {
        out.push(finish(method, current, id));
    }
    out
}

fn finish(method: &str, streams: Vec<String>, id: u64) -> Request {
    Request {
        id,
        text: render_request(method, &streams, id),
        streams,
    }
}

fn render_request(method: &str, streams: &[String], id: u64) -> String {
    let mut text = String::with_capacity(64 + streams.len() * 24);
    let _ = write!(text, "{{\"method\":\"{method}\",\"params\":[");
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Stream names are ASCII letters, digits, '@' and '_': nothing to escape.
        let _ = write!(text, "\"{s}\"");
    }
    let _ = write!(text, "],\"id\":{id}}}");
    text
}

/// A sliding one-second window over the messages this client sent on one connection.
/// Binance counts subscribes and pongs alike and disconnects above 5 per second.
/// Requests may use `limit - 1` slots so that a pong can always go out at once.
#[derive(Debug, Clone)]
pub struct SendWindow {
    limit: usize,
    sent: [Option<Instant>; BINANCE_MAX_OUTGOING_PER_S as usize],
    next: usize,
}

/// The window over which Binance counts incoming messages.
const SEND_WINDOW: Duration = Duration::from_secs(1);

impl SendWindow {
    /// `limit` is clamped to 2..=5: one slot is always kept for pongs.
    pub fn new(limit: u32) -> SendWindow {
        SendWindow {
            limit: limit.clamp(2, BINANCE_MAX_OUTGOING_PER_S) as usize,
            sent: [None; BINANCE_MAX_OUTGOING_PER_S as usize],
            next: 0,
        }
    }

    fn in_window(&self, now: Instant) -> usize {
        self.sent
            .iter()
            .flatten()
            .filter(|t| now.saturating_duration_since(**t) < SEND_WINDOW)
            .count()
    }

    /// How long a request must wait before it may be sent (zero: send now).
    pub fn request_delay(&self, now: Instant) -> Duration {
        if self.in_window(now) < self.limit - 1 {
            return Duration::ZERO;
        }
        // Wait until the oldest send inside the window leaves it.
        self.sent
            .iter()
            .flatten()
            .filter(|t| now.saturating_duration_since(**t) < SEND_WINDOW)
            .map(|t| SEND_WINDOW - now.saturating_duration_since(*t))
            .min()
            .unwrap_or(Duration::ZERO)
    }

    /// Records a message sent at `now` (requests after `request_delay` said zero; pongs always).
    pub fn record(&mut self, now: Instant) {
        self.sent[self.next] = Some(now);
        self.next = (self.next + 1) % self.sent.len();
    }
}

/// Requests sent and not yet acknowledged, bounded: a connection never has more in
/// flight than its subscribe batches (a few) plus the occasional LIST_SUBSCRIPTIONS.
#[derive(Debug, Default)]
pub struct PendingRequests {
    pending: Vec<(u64, Instant, Vec<String>)>,
}

/// More requests in flight than this means acknowledgements stopped arriving.
pub const MAX_PENDING_REQUESTS: usize = 64;

impl PendingRequests {
    pub fn sent(&mut self, id: u64, at: Instant, streams: Vec<String>) -> bool {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return false;
        }
        self.pending.push((id, at, streams));
        true
    }

    /// Marks `id` acknowledged; returns the streams it covered, or `None` if unknown.
    pub fn ack(&mut self, id: u64) -> Option<Vec<String>> {
        let pos = self.pending.iter().position(|(i, _, _)| *i == id)?;
        Some(self.pending.swap_remove(pos).2)
    }

    /// Requests older than `timeout` at `now`, removed from the pending set.
    pub fn expired(&mut self, now: Instant, timeout: Duration) -> Vec<(u64, Vec<String>)> {
        let mut out = Vec::new();
        self.pending.retain(|(id, at, streams)| {
            if now.saturating_duration_since(*at) >= timeout {
                out.push((*id, streams.clone()));
                false
            } else {
                true
            }
        });
        out
    }

    /// When the oldest request in flight was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.pending.iter().map(|(_, at, _)| *at).min()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What an answer to a request meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not a request of this connection (or answered already).
    Unknown,
    /// These streams are subscribed.
    Acked(Vec<String>),
    /// The exchange refused the request as a whole. A request of several streams is
    /// split in two and both halves are sent again at once, so the streams the exchange
    /// accepts are not held back by the one it refuses; a single stream is sent again
    /// after `retry_in` (capped, jittered, growing backoff).
    Rejected {
        streams: Vec<String>,
        retry_in: Option<Duration>,
    },
}

/// One connection's subscriptions: requests to send (paced by the caller), requests in
/// flight, and rejected streams waiting for their retry. Pure: time, randomness and
/// request ids come in as arguments.
#[derive(Debug)]
pub struct Subscriptions {
    queue: VecDeque<Request>,
    pending: PendingRequests,
    /// Single rejected streams and when to ask for them again.
    retry: Vec<(Instant, String)>,
    backoff: Backoff,
    batch_bytes: usize,
    /// Requests resent after no answer came within the timeout.
    pub timeouts: u32,
}

impl Subscriptions {
    /// Plans the SUBSCRIBE batches for `streams`, numbered from `ids` (shared by the
    /// shard's connections, so ids stay unique across them).
    pub fn new(
        streams: &[String],
        batch_bytes: usize,
        ids: &Cell<u64>,
        backoff: Backoff,
    ) -> Subscriptions {
        let mut s = Subscriptions {
            queue: VecDeque::new(),
            pending: PendingRequests::default(),
            retry: Vec::new(),
            backoff,
            batch_bytes,
            timeouts: 0,
        };
        s.enqueue(streams, ids);
        s
    }

    fn enqueue(&mut self, streams: &[String], ids: &Cell<u64>) -> usize {
        if streams.is_empty() {
            return 0;
        }
        let first = ids.get();
        let batches = subscribe_batches("SUBSCRIBE", streams, self.batch_bytes, first);
        ids.set(first + batches.len() as u64);
        let n = batches.len();
        self.queue.extend(batches);
        n
    }

    /// The next request to send, if any.
    pub fn next(&self) -> Option<&Request> {
        self.queue.front()
    }

    /// The front request went out at `now`; false when too many are in flight
    /// (acknowledgements stopped coming).
    pub fn sent(&mut self, now: Instant) -> bool {
        match self.queue.pop_front() {
            Some(req) => self.pending.sent(req.id, now, req.streams),
            None => true,
        }
    }

    /// An acknowledgement (`{"result":null,"id":…}`).
    pub fn ack(&mut self, id: u64) -> Answer {
        match self.pending.ack(id) {
            Some(streams) => Answer::Acked(streams),
            None => Answer::Unknown,
        }
    }

    /// An error answer to request `id`; `unit` is a random number in [0, 1) for the
    /// backoff's jitter.
    pub fn reject(&mut self, id: u64, now: Instant, unit: f64, ids: &Cell<u64>) -> Answer {
        let Some(streams) = self.pending.ack(id) else {
            return Answer::Unknown;
        };
        if streams.len() > 1 {
            let (a, b) = streams.split_at(streams.len() / 2);
            self.enqueue(a, ids);
            self.enqueue(b, ids);
            return Answer::Rejected {
                streams,
                retry_in: None,
            };
        }
        let delay = self.backoff.next_delay(unit);
        for s in &streams {
            self.retry.push((now + delay, s.clone()));
        }
        Answer::Rejected {
            streams,
            retry_in: Some(delay),
        }
    }

    /// Queues the rejected streams whose retry is due at `now` and the requests whose
    /// answer is overdue by `timeout`; returns (retried after rejection, resent after
    /// timeout) request counts.
    pub fn due(&mut self, now: Instant, timeout: Duration, ids: &Cell<u64>) -> (usize, usize) {
        let mut ready = Vec::new();
        self.retry.retain(|(at, s)| {
            if *at <= now {
                ready.push(s.clone());
                false
            } else {
                true
            }
        });
        let retried = self.enqueue(&ready, ids);
        let mut resent = 0;
        for (_, streams) in self.pending.expired(now, timeout) {
            self.timeouts += 1;
            resent += self.enqueue(&streams, ids);
        }
        (retried, resent)
    }

    /// Every request answered and none left to send (rejected streams may still wait
    /// for their retry).
    pub fn settled(&self) -> bool {
        self.queue.is_empty() && self.pending.is_empty()
    }

    /// Rejected streams waiting for their retry.
    pub fn waiting(&self) -> usize {
        self.retry.len()
    }

    /// When the earliest retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retry.iter().map(|(at, _)| *at).min()
    }

    /// When [`Subscriptions::due`] next has something to do: the earliest retry, or the
    /// oldest request in flight going unanswered for `timeout`.
    pub fn next_due(&self, timeout: Duration) -> Option<Instant> {
        let overdue = self.pending.oldest().map(|at| at + timeout);
        [self.next_retry(), overdue].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_all() -> StreamKinds {
        StreamKinds {
            kline: true,
            trade: true,
            agg_trade: true,
            book_ticker: true,
            diff_depth_ms: Some(100),
            partial_depth_levels: Some(20),
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sym{i:05}usdt@kline_1m")).collect()
    }

    #[test]
    fn streams_cover_every_kind_and_timeframe() {
        let syms = [Symbol::new("BTCUSDT").unwrap()];
        let s = streams_for(&syms, &[Interval::M1, Interval::H1], &kinds_all());
        assert_eq!(
            s,
            [
                "btcusdt@kline_1m",
                "btcusdt@kline_1h",
                "btcusdt@trade",
                "btcusdt@aggTrade",
                "btcusdt@bookTicker",
                "btcusdt@depth@100ms",
                "btcusdt@depth20"
            ]
        );
        let klines_only = StreamKinds::default();
        assert_eq!(
            streams_for(&syms, &[Interval::M5], &klines_only),
            ["btcusdt@kline_5m"]
        );
    }

    #[test]
    fn assignment_respects_cap_and_balances() {
        let s = names(2500);
        let conns = assign_streams(&s, 1024, 5).unwrap();
        assert_eq!(conns.len(), 3);
        assert!(conns.iter().all(|c| c.len() <= 1024));
        let sizes: Vec<_> = conns.iter().map(Vec::len).collect();
        assert_eq!(sizes, [834, 833, 833]);
        let flat: Vec<_> = conns.concat();
        assert_eq!(flat, s, "every stream exactly once, in order");
        // A cap above Binance's is clamped to 1024.
        assert_eq!(assign_streams(&s, 5000, 5).unwrap().len(), 3);
        let err = assign_streams(&s, 200, 5).unwrap_err();
        assert_eq!(err.connections, 5);
        assert!(assign_streams(&[], 10, 1).unwrap().is_empty());
    }

    #[test]
    fn subscribe_batches_stay_under_limit_and_cover_all() {
        let s = names(700);
        for max in [256, 1000, 3072, 4095, 9000] {
            let reqs = subscribe_batches("SUBSCRIBE", &s, max, 7);
            let limit = max.min(4095);
            for (i, r) in reqs.iter().enumerate() {
                assert!(r.text.len() <= limit, "{} > {limit}", r.text.len());
                assert_eq!(r.id, 7 + i as u64);
                let v: serde_json::Value = serde_json::from_str(&r.text).unwrap();
                assert_eq!(v["method"], "SUBSCRIBE");
                assert_eq!(v["id"], r.id);
                assert_eq!(v["params"].as_array().unwrap().len(), r.streams.len());
            }
            let flat: Vec<_> = reqs.iter().flat_map(|r| r.streams.clone()).collect();
            assert_eq!(flat, s);
        }
    }

    #[test]
    fn send_window_keeps_a_slot_for_pongs() {
        let t0 = Instant::now();
        let mut w = SendWindow::new(5);
        for i in 0..4 {
            let now = t0 + Duration::from_millis(i * 10);
            assert_eq!(w.request_delay(now), Duration::ZERO);
            w.record(now);
        }
        // Four requests inside the second: the fifth must wait for the first to age out.
        let now = t0 + Duration::from_millis(40);
        assert_eq!(w.request_delay(now), Duration::from_millis(960));
        // A pong still goes at once: five messages in the window, never six.
        w.record(now);
        assert_eq!(
            w.request_delay(t0 + Duration::from_millis(1000)),
            Duration::from_millis(10)
        );
        assert_eq!(
            w.request_delay(t0 + Duration::from_millis(1040)),
            Duration::ZERO
        );
    }

    #[test]
    fn send_window_never_exceeds_limit_in_any_second() {
        // Simulate a greedy sender for 10 s of virtual time, 1 ms steps, plus a pong
        // every 700 ms: no one-second window may ever hold more than 5 messages.
        let t0 = Instant::now();
        let mut w = SendWindow::new(5);
        let mut log = Vec::new();
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms % 700 == 0 {
                w.record(now);
                log.push(ms);
            }
            if w.request_delay(now).is_zero() {
                w.record(now);
                log.push(ms);
            }
        }
        for (i, &start) in log.iter().enumerate() {
            let n = log[i..].iter().take_while(|&&t| t < start + 1000).count();
            assert!(n <= 5, "{n} messages in the second from {start} ms");
        }
        assert!(
            log.len() > 35,
            "the pacer must not starve requests: {}",
            log.len()
        );
    }

    fn subs(streams: &[&str], ids: &Cell<u64>) -> Subscriptions {
        let streams: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
        let backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(800),
            Duration::from_secs(60),
        );
        Subscriptions::new(&streams, 3072, ids, backoff)
    }

    /// Sends everything queued at `now`; returns the ids sent.
    fn send_all(s: &mut Subscriptions, now: Instant) -> Vec<(u64, Vec<String>)> {
        let mut out = Vec::new();
        while let Some(r) = s.next() {
            out.push((r.id, r.streams.clone()));
            assert!(s.sent(now));
        }
        out
    }

    #[test]
    fn a_rejected_batch_is_split_until_the_refused_stream_is_alone() {
        let ids = Cell::new(1);
        let t0 = Instant::now();
        let mut s = subs(&["a", "b", "c", "d", "e"], &ids);
        let sent = send_all(&mut s, t0);
        assert_eq!(sent.len(), 1);
        // The exchange refuses any request holding "d"; acknowledges the rest.
        let mut acked = Vec::new();
        let mut rejected_alone = Vec::new();
        let mut round = sent;
        for _ in 0..10 {
            for (id, streams) in round {
                if streams.iter().any(|x| x == "d") {
                    match s.reject(id, t0, 0.5, &ids) {
                        Answer::Rejected { streams, retry_in } => {
                            if streams.len() == 1 {
                                assert!(retry_in.is_some());
                                rejected_alone.push(streams[0].clone());
                            } else {
                                assert_eq!(retry_in, None, "a batch is split at once");
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                } else {
                    match s.ack(id) {
                        Answer::Acked(v) => acked.extend(v),
                        other => panic!("{other:?}"),
                    }
                }
            }
            round = send_all(&mut s, t0);
            if round.is_empty() {
                break;
            }
        }
        acked.sort();
        assert_eq!(acked, ["a", "b", "c", "e"]);
        assert_eq!(rejected_alone, ["d"]);
        assert!(s.settled());
        assert_eq!(s.waiting(), 1);
        // Not due before its backoff (100 ms ceiling, jitter 0.5: 75 ms), due after.
        assert_eq!(s.due(t0 + Duration::from_millis(74), ACK, &ids), (0, 0));
        assert_eq!(s.due(t0 + Duration::from_millis(75), ACK, &ids), (1, 0));
        let again = send_all(&mut s, t0 + Duration::from_millis(75));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, ["d"]);
        // Rejected again: the backoff grows (ceiling 200 ms, jitter 0.5: 150 ms).
        let t1 = t0 + Duration::from_millis(75);
        assert_eq!(
            s.reject(again[0].0, t1, 0.5, &ids),
            Answer::Rejected {
                streams: vec!["d".into()],
                retry_in: Some(Duration::from_millis(150))
            }
        );
        assert_eq!(s.next_retry(), Some(t1 + Duration::from_millis(150)));
        // An answer to an unknown id changes nothing.
        assert_eq!(s.ack(999), Answer::Unknown);
        assert_eq!(s.reject(999, t1, 0.5, &ids), Answer::Unknown);
    }

    const ACK: Duration = Duration::from_secs(10);

    /// A connection sleeps until its subscriptions next need it: the oldest request's
    /// answer going overdue, or a rejected stream's retry, whichever is first; with
    /// neither, they never wake it.
    #[test]
    fn the_next_due_time_is_the_earliest_timeout_or_retry() {
        let ids = Cell::new(1);
        let t0 = Instant::now();
        let mut s = subs(&["a", "b"], &ids);
        assert_eq!(s.next_due(ACK), None, "nothing sent yet");
        let sent = send_all(&mut s, t0);
        assert_eq!(s.next_due(ACK), Some(t0 + ACK));
        // Refused as a whole: split, and both halves go again later.
        assert!(matches!(
            s.reject(sent[0].0, t0, 0.5, &ids),
            Answer::Rejected { retry_in: None, .. }
        ));
        let t1 = t0 + Duration::from_secs(1);
        let halves = send_all(&mut s, t1);
        assert_eq!(s.next_due(ACK), Some(t1 + ACK));
        // "a" is acknowledged; "b", refused alone, waits for its retry (75 ms, which is
        // sooner than any timeout).
        assert!(matches!(s.ack(halves[0].0), Answer::Acked(_)));
        let retry = match s.reject(halves[1].0, t1, 0.5, &ids) {
            Answer::Rejected { retry_in, .. } => retry_in.expect("a single stream waits"),
            other => panic!("{other:?}"),
        };
        assert_eq!(s.next_due(ACK), Some(t1 + retry));
        assert_eq!(s.due(t1 + retry, ACK, &ids), (1, 0));
        let again = send_all(&mut s, t1 + retry);
        assert_eq!(s.next_due(ACK), Some(t1 + retry + ACK));
        assert!(matches!(s.ack(again[0].0), Answer::Acked(_)));
        assert!(s.settled());
        assert_eq!(s.next_due(ACK), None, "settled: nothing to wait for");
    }

    #[test]
    fn an_unanswered_request_is_resent_after_the_timeout() {
        let ids = Cell::new(7);
        let t0 = Instant::now();
        let mut s = subs(&["a", "b"], &ids);
        let first = send_all(&mut s, t0);
        assert_eq!(first[0].0, 7);
        assert_eq!(
            s.due(t0 + ACK - Duration::from_millis(1), ACK, &ids),
            (0, 0)
        );
        assert_eq!(s.due(t0 + ACK, ACK, &ids), (0, 1));
        assert_eq!(s.timeouts, 1);
        let again = send_all(&mut s, t0 + ACK);
        assert_eq!(again, vec![(8, vec!["a".to_string(), "b".to_string()])]);
        assert_eq!(s.ack(8), Answer::Acked(vec!["a".into(), "b".into()]));
        assert!(s.settled());
        assert_eq!(ids.get(), 9);
    }

    #[test]
    fn pending_requests_ack_and_expire() {
        let t0 = Instant::now();
        let mut p = PendingRequests::default();
        assert!(p.sent(1, t0, vec!["a".into()]));
        assert!(p.sent(2, t0 + Duration::from_secs(5), vec!["b".into()]));
        assert_eq!(p.ack(1), Some(vec!["a".to_string()]));
        assert_eq!(p.ack(1), None);
        assert!(p
            .expired(t0 + Duration::from_secs(6), Duration::from_secs(10))
            .is_empty());
        let gone = p.expired(t0 + Duration::from_secs(15), Duration::from_secs(10));
        assert_eq!(gone, vec![(2, vec!["b".to_string()])]);
        assert!(p.is_empty());
        for i in 0..MAX_PENDING_REQUESTS as u64 {
            assert!(p.sent(i, t0, vec![]));
        }
        assert!(!p.sent(999, t0, vec![]), "bounded");
    }
}
