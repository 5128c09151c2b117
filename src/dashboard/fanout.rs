//! Fan-out: one broadcast, serialized once, queued for every subscriber.
//!
//! Runs on: the dashboard core's executor (single-threaded: `Rc`/`RefCell`, no locks).
//! Owns: the registry of WebSocket clients and each client's bounded outbox. In:
//! records drained from the shards' dashboard rings and the periodic status. Out:
//! shared, whole WebSocket frames ([`Frame`]: header and payload, reference-counted, so a
//! broadcast to 10,000 clients is one serialization, one framing and 10,000 pointer
//! copies), written to each client as fast as it reads and never faster
//! ([`super::send`]).
//!
//! A client that does not keep up is never waited for: latest-value data (live candles,
//! status) conflates in its outbox (only the newest update per key waits), and when its
//! backlog passes the bound it is disconnected with close 1008 and a reason saying why.
//!
//! The records of one drain turn are broadcast inside a [`Hub::batch`]: each client's
//! frames are queued, and when the batch ends every client reached is written there and
//! then, through its [`Writer`], one vectored write each. Its connection task is woken
//! only when that write cannot finish (the socket is full: the task waits for room) or
//! cannot start (the task is busy with the socket, or has frames of its own pending).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::protocol::{Filter, Topic};
pub use super::send::Frame;
use super::send::Written;
use crate::market::{Interval, Symbol};
use crate::metrics::Counter;

/// The dashboard's counters (read by `/api/status`, `/api/performance`, `/metrics`).
#[derive(Default, Debug)]
pub struct DashboardStats {
    /// WebSocket clients connected now.
    pub active_clients: Counter,
    /// HTTP and WebSocket connections open now.
    pub open_connections: Counter,
    pub clients_total: Counter,
    /// Messages handed to client sockets.
    pub messages_sent: Counter,
    /// Queued updates replaced by a newer one (conflation) or dropped with a slow client.
    pub dropped: Counter,
    pub disconnected_slow: Counter,
    /// Clients that stopped answering pings.
    pub disconnected_idle: Counter,
    pub rate_limited: Counter,
    pub oversized: Counter,
    /// Upgrades refused: too many clients, too many connections from one address.
    pub refused_full: Counter,
    pub refused_per_ip: Counter,
    pub unauthorized: Counter,
    pub forbidden_origin: Counter,
    /// Requests refused for a `Host` a dashboard without a token does not answer to.
    pub forbidden_host: Counter,
    /// Requests cut off for a head that was too large or too slow.
    pub heads_refused: Counter,
    /// WebSocket upgrades refused for a malformed handshake (426, 400).
    pub bad_upgrades: Counter,
    /// WebSocket messages answered with an error: malformed or unknown commands, binary
    /// messages. The connection stays open.
    pub commands_rejected: Counter,
    /// WebSocket connections closed for a protocol violation (1002) or invalid UTF-8 in
    /// a text message (1007).
    pub protocol_errors: Counter,
    pub broadcasts: Counter,
    pub records_in: Counter,
}

impl DashboardStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "active_clients": self.active_clients.get(),
            "open_connections": self.open_connections.get(),
            "clients_total": self.clients_total.get(),
            "messages_sent": self.messages_sent.get(),
            "dropped": self.dropped.get(),
            "disconnected_slow": self.disconnected_slow.get(),
            "disconnected_idle": self.disconnected_idle.get(),
            "rate_limited": self.rate_limited.get(),
            "oversized": self.oversized.get(),
            "refused_full": self.refused_full.get(),
            "refused_per_ip": self.refused_per_ip.get(),
            "unauthorized": self.unauthorized.get(),
            "forbidden_origin": self.forbidden_origin.get(),
            "forbidden_host": self.forbidden_host.get(),
            "heads_refused": self.heads_refused.get(),
            "bad_upgrades": self.bad_upgrades.get(),
            "commands_rejected": self.commands_rejected.get(),
            "protocol_errors": self.protocol_errors.get(),
            "broadcasts": self.broadcasts.get(),
            "records_in": self.records_in.get(),
        })
    }
}

/// What conflates: only the newest value per key is worth sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Live(Symbol, Interval),
    Status,
    /// A book's published view, and its top between views.
    Book(Symbol),
    BookTop(Symbol),
}

enum Slot {
    /// A message and the receive time (monotonic ns) of the record it carries, 0 for
    /// replies and status pushes.
    Frame(Frame, u64),
    Latest(Key),
}

/// One client's bounded queue of messages waiting to be written.
pub struct Outbox {
    slots: VecDeque<Slot>,
    latest: crate::market::FastMap<Key, (Frame, u64)>,
    bound: usize,
}

/// The outbox is past its bound: the client cannot keep up.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Replaced an older update of the same key (which is counted as dropped).
    Conflated,
}

impl Outbox {
    pub fn new(bound: usize) -> Outbox {
        Outbox {
            slots: VecDeque::new(),
            latest: Default::default(),
            bound,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Queues a message; `key` makes it conflate with an update of the same key still
    /// waiting.
    pub fn push(&mut self, msg: Frame, key: Option<Key>) -> Result<Pushed, Overflow> {
        self.push_timed(msg, key, 0)
    }

    /// [`Outbox::push`] of a record received at `recv_ns`, for the send-latency stage.
    pub fn push_timed(
        &mut self,
        msg: Frame,
        key: Option<Key>,
        recv_ns: u64,
    ) -> Result<Pushed, Overflow> {
        if let Some(key) = key {
            if let Some(old) = self.latest.get_mut(&key) {
                *old = (msg, recv_ns);
                return Ok(Pushed::Conflated);
            }
        }
        if self.slots.len() >= self.bound {
            return Err(Overflow);
        }
        match key {
            Some(key) => {
                self.latest.insert(key, (msg, recv_ns));
                self.slots.push_back(Slot::Latest(key));
            }
            None => self.slots.push_back(Slot::Frame(msg, recv_ns)),
        }
        Ok(Pushed::Queued)
    }

    /// Drops a waiting update of `key` (a closed candle supersedes its live updates, and
    /// must not be overtaken by them). True if one was waiting.
    pub fn supersede(&mut self, key: Key) -> bool {
        if self.latest.remove(&key).is_some() {
            self.slots
                .retain(|s| !matches!(s, Slot::Latest(k) if *k == key));
            true
        } else {
            false
        }
    }

    pub fn pop(&mut self) -> Option<Frame> {
        self.pop_timed().map(|(m, _)| m)
    }

    /// The next message and the receive time of its record (0: none).
    pub fn pop_timed(&mut self) -> Option<(Frame, u64)> {
        loop {
            match self.slots.pop_front()? {
                Slot::Frame(m, t) => return Some((m, t)),
                Slot::Latest(k) => {
                    if let Some(m) = self.latest.remove(&k) {
                        return Some(m);
                    }
                }
            }
        }
    }
}

/// Why the server ends a client's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kick {
    pub code: u16,
    pub reason: &'static str,
}

/// Close 1008: the client's backlog passed its bound.
pub const KICK_SLOW: Kick = Kick {
    code: 1008,
    reason: "too slow: send queue overflow",
};

/// Close 1001: the server is stopping.
pub const KICK_SHUTDOWN: Kick = Kick {
    code: 1001,
    reason: "server shutting down",
};

/// A client's socket writer, as the fan-out reaches it at the end of a batch.
pub trait Writer {
    /// Nothing pending: no frame half written, no control frame waiting.
    fn is_idle(&self) -> bool;
    /// Moves the outbox's frames behind what is pending and writes them, as far as the
    /// socket takes them, noting each frame written with `hub`. Ready(Ok) when the
    /// outbox is empty and everything went out; Pending when the socket is full (`cx`'s
    /// waker is woken when it has room).
    fn write_out(
        &mut self,
        outbox: &RefCell<Outbox>,
        cx: &mut Context<'_>,
        hub: &Hub,
    ) -> Poll<io::Result<()>>;
}

/// A client's writer, shared by its connection task and the fan-out (one thread: the
/// two never hold it at once).
pub type SharedWriter = Rc<RefCell<dyn Writer>>;

/// One WebSocket client as the fan-out sees it.
pub struct Client {
    pub outbox: RefCell<Outbox>,
    /// Changed only through the [`Hub`] that holds the client, which counts them.
    subs: RefCell<Vec<Filter>>,
    waker: RefCell<Option<Waker>>,
    kicked: Cell<Option<Kick>>,
    writer: RefCell<Option<SharedWriter>>,
    /// Reached by the batch under way (and listed in the hub's `touched`).
    touched: Cell<bool>,
}

impl Client {
    pub fn new(queue_bound: usize, subs: Vec<Filter>) -> Client {
        Client {
            outbox: RefCell::new(Outbox::new(queue_bound)),
            subs: RefCell::new(subs),
            waker: RefCell::new(None),
            kicked: Cell::new(None),
            writer: RefCell::new(None),
            touched: Cell::new(false),
        }
    }

    /// The writer a batch's end writes this client's frames with (none: the task
    /// writes them).
    pub fn set_writer(&self, writer: Option<SharedWriter>) {
        *self.writer.borrow_mut() = writer;
    }

    /// Writes the outbox now, with the connection task's waker for when the socket is
    /// full; wakes the task instead when the write cannot be made here.
    fn write_now(&self, hub: &Hub) {
        if self.kicked().is_none() && self.try_write(hub) {
            return;
        }
        self.wake();
    }

    /// True when the outbox went out or the socket's room will wake the task.
    fn try_write(&self, hub: &Hub) -> bool {
        let writer = self.writer.borrow();
        let waker = self.waker.borrow();
        let (Some(writer), Some(waker)) = (writer.as_ref(), waker.as_ref()) else {
            return false;
        };
        let Ok(mut writer) = writer.try_borrow_mut() else {
            return false;
        };
        if !writer.is_idle() {
            return false;
        }
        let mut cx = Context::from_waker(waker);
        // An error is the task's to find at its next write.
        !matches!(
            writer.write_out(&self.outbox, &mut cx, hub),
            Poll::Ready(Err(_))
        )
    }

    /// The connection task parks here between writes.
    pub fn register(&self, waker: &Waker) {
        let mut w = self.waker.borrow_mut();
        if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    pub fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    pub fn kicked(&self) -> Option<Kick> {
        self.kicked.get()
    }

    pub fn kick(&self, why: Kick) {
        if self.kicked.get().is_none() {
            self.kicked.set(Some(why));
            self.wake();
        }
    }

    fn wants(&self, topic: Topic, symbol: Option<Symbol>, interval: Option<Interval>) -> bool {
        self.subs
            .borrow()
            .iter()
            .any(|f| f.matches(topic, symbol, interval))
    }

    /// Queues a reply to this client alone (it counts toward the same bound).
    pub fn reply(&self, msg: Frame, stats: &DashboardStats) {
        if self.outbox.borrow_mut().push(msg, None).is_err() {
            self.kick_slow(stats);
        }
        self.wake();
    }

    /// Cuts the client off as too slow (close 1008), counted once.
    pub fn kick_slow(&self, stats: &DashboardStats) {
        if self.kicked.get().is_none() {
            stats.disconnected_slow.inc();
            stats.dropped.add(self.outbox.borrow().len() as u64);
            self.kick(KICK_SLOW);
        }
    }
}

/// Every connected client, by id.
pub struct Hub {
    clients: RefCell<HashMap<u64, Rc<Client>>>,
    /// Batches under way (a batch inside another ends with it): broadcasts queue, and
    /// the outermost end writes ([`Hub::batch`]).
    batching: Cell<u32>,
    /// The clients the batch under way reached.
    touched: RefCell<Vec<Rc<Client>>>,
    next_id: Cell<u64>,
    /// Subscriptions per topic over every client held (by [`Topic::index`]), so a record
    /// of a topic nobody follows costs one look, not a scan of every client.
    topic_subs: [Cell<usize>; Topic::COUNT],
    pub stats: std::sync::Arc<DashboardStats>,
    /// The dashboard core's stage latencies (`ring_hop`, `recv_to_dashboard_send`).
    pub latency: RefCell<Option<crate::latency::Recorder>>,
}

/// A subscription refused: the client holds its limit already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySubscriptions;

impl Hub {
    pub fn new(stats: std::sync::Arc<DashboardStats>) -> Hub {
        Hub {
            clients: RefCell::new(HashMap::new()),
            batching: Cell::new(0),
            touched: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            topic_subs: Default::default(),
            stats,
            latency: RefCell::new(None),
        }
    }

    pub fn len(&self) -> usize {
        self.clients.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.borrow().is_empty()
    }

    pub fn add(&self, client: Rc<Client>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        for f in client.subs.borrow().iter() {
            self.count(f.topic, 1);
        }
        self.clients.borrow_mut().insert(id, client);
        self.stats.active_clients.set(self.len() as u64);
        self.stats.clients_total.inc();
        id
    }

    pub fn remove(&self, id: u64) {
        if let Some(client) = self.clients.borrow_mut().remove(&id) {
            for f in client.subs.borrow().iter() {
                self.count(f.topic, -1);
            }
        }
        self.stats.active_clients.set(self.len() as u64);
    }

    /// Adds `filter` to a client this hub holds (already there: nothing changes), unless
    /// it has `max` subscriptions.
    pub fn subscribe(
        &self,
        client: &Client,
        filter: Filter,
        max: usize,
    ) -> Result<(), TooManySubscriptions> {
        let mut subs = client.subs.borrow_mut();
        if subs.contains(&filter) {
            return Ok(());
        }
        if subs.len() >= max {
            return Err(TooManySubscriptions);
        }
        subs.push(filter);
        self.count(filter.topic, 1);
        Ok(())
    }

    /// Removes every subscription of a client this hub holds that `filter` covers (its
    /// topic, and its symbol and timeframe where it names them); returns how many.
    pub fn unsubscribe(&self, client: &Client, filter: Filter) -> usize {
        let mut subs = client.subs.borrow_mut();
        let before = subs.len();
        subs.retain(|s| {
            !(s.topic == filter.topic
                && (filter.symbol.is_none() || s.symbol == filter.symbol)
                && (filter.interval.is_none() || s.interval == filter.interval))
        });
        let removed = before - subs.len();
        self.count(filter.topic, -(removed as isize));
        removed
    }

    fn count(&self, topic: Topic, by: isize) {
        let n = &self.topic_subs[topic.index()];
        n.set(n.get().saturating_add_signed(by));
    }

    /// Asks every client to close (their tasks send the close frame).
    pub fn kick_all(&self, why: Kick) {
        for c in self.clients.borrow().values() {
            c.kick(why);
        }
    }

    /// Broadcasts until the returned guard drops are one batch: each client reached is
    /// written once, when it ends, with everything the batch queued for it.
    pub fn batch(&self) -> Batch<'_> {
        self.batching.set(self.batching.get() + 1);
        Batch { hub: self }
    }

    /// A client's new frame: written at the batch's end, or by its task now.
    fn queued(&self, client: &Rc<Client>) {
        if self.batching.get() == 0 {
            client.wake();
        } else if !client.touched.replace(true) {
            self.touched.borrow_mut().push(client.clone());
        }
    }

    fn end_batch(&self) {
        let depth = self.batching.get().saturating_sub(1);
        self.batching.set(depth);
        if depth > 0 {
            return;
        }
        let mut touched = std::mem::take(&mut *self.touched.borrow_mut());
        // Unwinding from a panic in the batch: no socket is written, the tasks write.
        let unwinding = std::thread::panicking();
        for client in touched.drain(..) {
            client.touched.set(false);
            if unwinding {
                client.wake();
            } else {
                client.write_now(self);
            }
        }
        // The list keeps its room for the next batch.
        *self.touched.borrow_mut() = touched;
    }

    /// Counts the frames a write completed and records their records' send latency.
    pub fn note_written(&self, written: &Written) {
        if written.count == 0 {
            return;
        }
        self.stats.messages_sent.add(written.count as u64);
        if let Some(rec) = self.latency.borrow_mut().as_mut() {
            let mut now = 0;
            for &recv_ns in written.times() {
                if recv_ns != 0 {
                    if now == 0 {
                        now = crate::clock::mono_ns();
                    }
                    rec.record_span(crate::latency::Stage::RecvToDashboardSend, recv_ns, now);
                }
            }
        }
    }

    /// Is anyone subscribed to `topic` (so the broadcast is worth serializing)?
    pub fn any_subscriber(&self, topic: Topic) -> bool {
        self.topic_subs[topic.index()].get() > 0
    }

    /// Queues `msg` for every client subscribed to it. `key` conflates; `supersedes`
    /// drops a waiting update that this message replaces. Returns the clients reached.
    pub fn broadcast(
        &self,
        topic: Topic,
        symbol: Option<Symbol>,
        interval: Option<Interval>,
        msg: &Frame,
        key: Option<Key>,
        supersedes: Option<Key>,
    ) -> usize {
        self.broadcast_timed(topic, (symbol, interval), msg, (key, supersedes), 0)
    }

    /// [`Hub::broadcast`] of a record received at `recv_ns` (monotonic ns).
    pub fn broadcast_timed(
        &self,
        topic: Topic,
        (symbol, interval): (Option<Symbol>, Option<Interval>),
        msg: &Frame,
        (key, supersedes): (Option<Key>, Option<Key>),
        recv_ns: u64,
    ) -> usize {
        self.stats.broadcasts.inc();
        let mut reached = 0;
        for client in self.clients.borrow().values() {
            if client.kicked().is_some() || !client.wants(topic, symbol, interval) {
                continue;
            }
            let pushed = {
                let mut out = client.outbox.borrow_mut();
                if let Some(k) = supersedes {
                    if out.supersede(k) {
                        self.stats.dropped.inc();
                    }
                }
                out.push_timed(msg.clone(), key, recv_ns)
            };
            match pushed {
                Ok(Pushed::Queued) => self.queued(client),
                Ok(Pushed::Conflated) => self.stats.dropped.inc(),
                Err(Overflow) => client.kick_slow(&self.stats),
            }
            reached += 1;
        }
        reached
    }
}

/// A batch of broadcasts under way ([`Hub::batch`]); dropping it writes them.
pub struct Batch<'a> {
    hub: &'a Hub,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.hub.end_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Frame {
        super::super::send::text_frame(s)
    }

    fn drain(o: &mut Outbox) -> Vec<String> {
        // The payload of each frame: short test texts have a 2-byte header.
        std::iter::from_fn(|| o.pop())
            .map(|f| String::from_utf8(f[2..].to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn latest_values_conflate_in_place_and_frames_keep_order() {
        let sym = Symbol::new("BTCUSDT").unwrap();
        let live = Key::Live(sym, Interval::M1);
        let mut o = Outbox::new(10);
        assert_eq!(o.push(text("a"), None), Ok(Pushed::Queued));
        assert_eq!(o.push(text("live1"), Some(live)), Ok(Pushed::Queued));
        assert_eq!(o.push(text("b"), None), Ok(Pushed::Queued));
        assert_eq!(o.push(text("live2"), Some(live)), Ok(Pushed::Conflated));
        assert_eq!(o.push(text("s1"), Some(Key::Status)), Ok(Pushed::Queued));
        assert_eq!(drain(&mut o), ["a", "live2", "b", "s1"]);
        // A closed candle supersedes its live updates: nothing stale overtakes it.
        o.push(text("live3"), Some(live)).unwrap();
        assert!(o.supersede(live));
        o.push(text("closed"), None).unwrap();
        o.push(text("live4"), Some(live)).unwrap();
        assert_eq!(drain(&mut o), ["closed", "live4"]);
    }

    #[test]
    fn the_bound_holds_but_conflation_never_overflows() {
        let mut o = Outbox::new(2);
        o.push(text("1"), None).unwrap();
        o.push(text("2"), Some(Key::Status)).unwrap();
        assert_eq!(o.push(text("3"), None), Err(Overflow));
        assert_eq!(o.push(text("2b"), Some(Key::Status)), Ok(Pushed::Conflated));
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn the_hub_knows_which_topics_have_subscribers_as_clients_come_change_and_go() {
        let hub = Hub::new(std::sync::Arc::new(DashboardStats::default()));
        let btc = Symbol::new("BTCUSDT").unwrap();
        let btc_trades = Filter {
            topic: Topic::Trades,
            symbol: Some(btc),
            interval: None,
        };
        let a = Rc::new(Client::new(8, vec![Filter::all(Topic::Signals)]));
        let b = Rc::new(Client::new(8, vec![Filter::all(Topic::Signals)]));
        assert!(!hub.any_subscriber(Topic::Signals), "nobody connected yet");
        let a_id = hub.add(a.clone());
        let b_id = hub.add(b.clone());
        assert!(hub.any_subscriber(Topic::Signals));
        assert!(!hub.any_subscriber(Topic::Trades));
        // A repeated subscription is one subscription; the limit refuses a new one.
        assert_eq!(hub.subscribe(&a, btc_trades, 8), Ok(()));
        assert_eq!(hub.subscribe(&a, btc_trades, 8), Ok(()));
        assert_eq!(
            hub.subscribe(&b, Filter::all(Topic::Book), 1),
            Err(TooManySubscriptions)
        );
        assert!(hub.any_subscriber(Topic::Trades));
        assert!(!hub.any_subscriber(Topic::Book));
        assert_eq!(hub.unsubscribe(&a, Filter::all(Topic::Trades)), 1);
        assert_eq!(hub.unsubscribe(&a, Filter::all(Topic::Trades)), 0);
        assert!(!hub.any_subscriber(Topic::Trades));
        // The last subscriber leaving, by unsubscribing or by disconnecting.
        assert_eq!(hub.unsubscribe(&a, Filter::all(Topic::Signals)), 1);
        assert!(
            hub.any_subscriber(Topic::Signals),
            "b still follows signals"
        );
        hub.subscribe(&b, btc_trades, 8).unwrap();
        hub.remove(b_id);
        assert!(!hub.any_subscriber(Topic::Signals));
        assert!(!hub.any_subscriber(Topic::Trades));
        hub.remove(a_id);
        hub.remove(a_id);
        for topic in [
            Topic::Signals,
            Topic::Candles,
            Topic::Status,
            Topic::Book,
            Topic::Trades,
        ] {
            assert!(!hub.any_subscriber(topic), "{topic:?}");
        }
    }

    #[test]
    fn broadcast_reaches_matching_subscribers_and_kicks_the_slow() {
        let stats = std::sync::Arc::new(DashboardStats::default());
        let hub = Hub::new(stats.clone());
        let btc = Symbol::new("BTCUSDT").unwrap();
        let eth = Symbol::new("ETHUSDT").unwrap();
        let all = Rc::new(Client::new(2, vec![Filter::all(Topic::Signals)]));
        let only_eth = Rc::new(Client::new(
            100,
            vec![Filter {
                topic: Topic::Signals,
                symbol: Some(eth),
                interval: None,
            }],
        ));
        hub.add(all.clone());
        hub.add(only_eth.clone());
        let m = text("sig");
        assert_eq!(
            hub.broadcast(
                Topic::Signals,
                Some(btc),
                Some(Interval::M1),
                &m,
                None,
                None
            ),
            1
        );
        assert_eq!(
            hub.broadcast(
                Topic::Signals,
                Some(eth),
                Some(Interval::M1),
                &m,
                None,
                None
            ),
            2
        );
        assert_eq!(only_eth.outbox.borrow().len(), 1);
        assert_eq!(all.kicked(), None);
        hub.broadcast(Topic::Signals, Some(btc), None, &m, None, None);
        assert_eq!(all.kicked(), Some(KICK_SLOW));
        assert_eq!(stats.disconnected_slow.get(), 1);
        // A kicked client gets nothing more.
        assert_eq!(
            hub.broadcast(Topic::Signals, Some(eth), None, &m, None, None),
            1
        );
        assert_eq!(stats.active_clients.get(), 2);
    }

    /// A writer that takes every frame (or answers as told) and counts its calls.
    struct FakeWriter {
        answer: Poll<io::Result<()>>,
        idle: bool,
        calls: usize,
        taken: Vec<String>,
        /// The waker a full socket would wake.
        left: Option<Waker>,
    }

    impl FakeWriter {
        fn shared(answer: Poll<io::Result<()>>, idle: bool) -> Rc<RefCell<FakeWriter>> {
            Rc::new(RefCell::new(FakeWriter {
                answer,
                idle,
                calls: 0,
                taken: Vec::new(),
                left: None,
            }))
        }
    }

    impl Writer for FakeWriter {
        fn is_idle(&self) -> bool {
            self.idle
        }
        fn write_out(
            &mut self,
            outbox: &RefCell<Outbox>,
            cx: &mut Context<'_>,
            hub: &Hub,
        ) -> Poll<io::Result<()>> {
            self.calls += 1;
            if self.answer.is_pending() {
                self.left = Some(cx.waker().clone());
            }
            let mut written = Written::default();
            if let Poll::Ready(Ok(())) = self.answer {
                self.taken.extend(drain(&mut outbox.borrow_mut()));
                written.count = 1;
                hub.note_written(&written);
            }
            match &self.answer {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::new(e.kind(), "fake"))),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    /// A connection task's waker that counts its wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn client_with(
        hub: &Hub,
        writer: Option<Rc<RefCell<FakeWriter>>>,
    ) -> (Rc<Client>, std::sync::Arc<Wakes>) {
        let client = Rc::new(Client::new(100, vec![Filter::all(Topic::Signals)]));
        let wakes = std::sync::Arc::new(Wakes::default());
        client.register(&Waker::from(wakes.clone()));
        let task_waker = Waker::from(wakes.clone());
        assert!(
            client
                .waker
                .borrow()
                .as_ref()
                .is_some_and(|w| w.will_wake(&task_waker)),
            "the client keeps its task's waker"
        );
        if let Some(w) = writer {
            let shared: SharedWriter = w;
            client.set_writer(Some(shared));
        }
        hub.add(client.clone());
        (client, wakes)
    }

    fn signal(hub: &Hub, s: &str) {
        hub.broadcast(Topic::Signals, None, None, &text(s), None, None);
    }

    fn woken(w: &Wakes) -> usize {
        w.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn a_batch_writes_each_client_once_at_its_end_without_waking_its_task() {
        let stats = std::sync::Arc::new(DashboardStats::default());
        let hub = Hub::new(stats.clone());
        let (a_writer, b_writer) = (
            FakeWriter::shared(Poll::Ready(Ok(())), true),
            FakeWriter::shared(Poll::Pending, true),
        );
        let (_a, a_wakes) = client_with(&hub, Some(a_writer.clone()));
        let (b, b_wakes) = client_with(&hub, Some(b_writer.clone()));
        {
            let _batch = hub.batch();
            for s in ["1", "2", "3"] {
                signal(&hub, s);
            }
            assert_eq!(
                a_writer.borrow().calls,
                0,
                "nothing is written before the end"
            );
        }
        assert_eq!(a_writer.borrow().calls, 1, "one write for the whole batch");
        assert_eq!(a_writer.borrow().taken, ["1", "2", "3"]);
        assert_eq!(
            stats.messages_sent.get(),
            1,
            "the writer's frames are counted"
        );
        // A full socket keeps the rest, and will wake the task when it has room.
        assert_eq!(b_writer.borrow().calls, 1);
        assert_eq!(b.outbox.borrow().len(), 3);
        let left = b_writer
            .borrow_mut()
            .left
            .take()
            .expect("a waker for the room");
        left.wake();
        assert_eq!(woken(&b_wakes), 1, "the socket's room wakes b's own task");
        assert_eq!(woken(&a_wakes), 0);
        // Outside a batch a broadcast wakes the task, which writes.
        signal(&hub, "4");
        assert_eq!(a_writer.borrow().calls, 1);
        assert_eq!((woken(&a_wakes), woken(&b_wakes)), (1, 2));
        // The next batch reaches each client again; one inside it ends with it.
        {
            let _batch = hub.batch();
            {
                let _inner = hub.batch();
                signal(&hub, "5");
            }
            assert_eq!(a_writer.borrow().calls, 1, "the outer batch is still open");
            signal(&hub, "6");
        }
        assert_eq!(a_writer.borrow().calls, 2);
        assert_eq!(a_writer.borrow().taken, ["1", "2", "3", "4", "5", "6"]);
    }

    #[test]
    fn a_batch_wakes_the_task_where_it_cannot_write() {
        let hub = Hub::new(std::sync::Arc::new(DashboardStats::default()));
        let failing = FakeWriter::shared(Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())), true);
        let not_idle = FakeWriter::shared(Poll::Ready(Ok(())), false);
        let held = FakeWriter::shared(Poll::Ready(Ok(())), true);
        let (_f, f_wakes) = client_with(&hub, Some(failing.clone()));
        let (_n, n_wakes) = client_with(&hub, Some(not_idle.clone()));
        let (_h, h_wakes) = client_with(&hub, Some(held.clone()));
        let (none, none_wakes) = client_with(&hub, None);
        let (kicked, kicked_wakes) =
            client_with(&hub, Some(FakeWriter::shared(Poll::Ready(Ok(())), true)));
        {
            let _task_is_writing = held.borrow_mut();
            let _batch = hub.batch();
            signal(&hub, "x");
            // Kicked after its frame was queued: the close is the task's.
            kicked.kick(KICK_SHUTDOWN);
        }
        // The write failed: the task finds out at its own write.
        assert_eq!((failing.borrow().calls, woken(&f_wakes)), (1, 1));
        // Frames of the task's own are pending: it writes behind them.
        assert_eq!((not_idle.borrow().calls, woken(&n_wakes)), (0, 1));
        // The task holds its writer: woken, nothing written here.
        assert_eq!((held.borrow().calls, woken(&h_wakes)), (0, 1));
        // No writer (the task has not started writing): the task writes.
        assert_eq!((woken(&none_wakes), none.outbox.borrow().len()), (1, 1));
        // kick() woke it once, the batch's end once more; nothing was written.
        assert_eq!(woken(&kicked_wakes), 2);
        assert_eq!(kicked.outbox.borrow().len(), 1);
    }
}
