//! The Redis publisher: every signal and candle update broadcast on Redis pub/sub.
//!
//! Runs on: its own thread, pinned to the publisher core when the layout pins (a plain
//! thread: the socket is blocking, with timeouts). Owns: one connection to Redis, the
//! pipeline buffer and the pending live candles. In: envelopes from every shard's ring.
//! Out: `PUBLISH` commands, one pipeline per drained batch, on the channels of docs/api.md
//! `{prefix}:signals`, `{prefix}:signals:{SYMBOL}:{TF}`, `{prefix}:candles:{SYMBOL}:{TF}`
//! and `{prefix}:trades:{SYMBOL}` (trades and aggregate trades: every one, or with
//! `REDIS_TRADES_CONFLATE_MS` each symbol's latest of each kind per window; they never
//! wait for this sink: dropped at the shard, and counted, when its ring is full).
//!
//! Loss classes: signals and closed candles are published in order, every one, while
//! Redis is up. Live candle updates are conflated per (symbol, timeframe): the latest
//! wins, held until the rings are idle or [`LIVE_FLUSH_MS`] passes. Pub/sub is
//! at-most-once, so while Redis is down, restarting or hung the publisher keeps
//! draining the rings (the shards never wait for Redis), drops what it cannot send and
//! counts every dropped `PUBLISH` exactly, and reconnects with capped, jittered backoff.
//!
//! With a bridge key (`ALPHAPULSE_BRIDGE_KEY`) every payload is signed ([`sign`]);
//! without one, payloads are the plain records. `rediss://` and Redis users
//! (`redis://user:password@host`) work for the publisher and the bridge alike.
//!
//! The [`bridge`] runs beside it when other instances own some of the symbols: it
//! subscribes to their records.

pub mod bridge;
pub mod resp;
pub mod sign;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backoff::Backoff;
use crate::clock::mono_ns;
use crate::config::Config;
use crate::latency::{Recorder, Stage};
use crate::market::{Candle, Interval, Symbol};
use crate::message::rest::TradeKind;
use crate::message::{Envelope, Record, RecordKinds};
use crate::metrics::Counter;
use crate::record;
use crate::ring::Producer;
use crate::sinks::SinkStatus;
use crate::sinks::{SinkIo, SinkRole};
use crate::store::RecentStore;
use crate::topology::Layout;
use bridge::Universe;
use resp::{Conn, RespError, Target};
use sign::BridgeKey;

/// Records taken from each ring per batch: one pipeline carries at most this many per
/// shard, which bounds the pipeline buffer and the time between replies.
pub const DRAIN_BATCH: usize = 4096;
/// Longest a live candle update waits to be conflated with newer ones while the rings
/// are busy; when they are idle it goes out at once.
pub const LIVE_FLUSH_MS: u64 = 20;
/// Pipeline bytes after which the buffer is sent mid-batch: bounds memory and keeps a
/// write well inside the socket buffers Redis drains.
const MAX_PIPELINE_BYTES: usize = 4 << 20;
/// How often an idle publisher updates its rate window (acknowledged publishes per
/// whole second) and allocation count. A reconnect has a deadline of its own, and a
/// connection that died while idle is found by the next send: nothing else is due.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// How the publisher reaches Redis. Timeouts are settings so that tests can use short
/// ones; [`RedisSettings::from_config`] gives the production values.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    /// A local Redis accepts in microseconds; a remote one within a round trip or two.
    pub connect_timeout: Duration,
    /// A write or reply that stalls this long means Redis is hung: the connection is
    /// dropped and rebuilt. Long enough for a Redis busy with a slow command.
    pub io_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How often the bridge asks an otherwise quiet subscription for a `PING`: a Redis
    /// that stops answering is found within this plus `io_timeout`.
    pub ping_every: Duration,
    /// Signs every payload (publisher) and requires the signature (bridge).
    pub key: Option<BridgeKey>,
    /// Extra certificate authorities for `rediss://`.
    pub tls_ca_file: Option<PathBuf>,
    /// What the bridge may take (the default: nothing).
    pub universe: Universe,
    /// Conflation window of the trade channels; `None`: every trade is published.
    pub trades_conflate: Option<Duration>,
}

/// Defaults of [`RedisSettings`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Reconnects are cheap for Redis; a short cap brings publishing back soon after a
/// restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A `PING` a second costs Redis nothing and finds a hung server within two seconds.
pub const PING_EVERY: Duration = Duration::from_secs(1);

impl RedisSettings {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            prefix: prefix.into(),
            connect_timeout: CONNECT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
            backoff_initial: BACKOFF_INITIAL,
            backoff_max: BACKOFF_MAX,
            ping_every: PING_EVERY,
            key: None,
            tls_ca_file: None,
            universe: Universe::default(),
            trades_conflate: None,
        }
    }

    /// `None` without `REDIS_URL`: nothing is published.
    pub fn from_config(config: &Config) -> Option<RedisSettings> {
        let url = config.redis_url.as_ref()?;
        let mut settings = RedisSettings::new(url.clone(), config.redis_channel_prefix.clone());
        settings.key = config
            .redis_bridge_key
            .as_ref()
            .map(|k| BridgeKey::new(k.as_bytes()));
        settings.tls_ca_file = config.redis_tls_ca_file.clone();
        settings.universe = Universe::from_config(config);
        settings.trades_conflate = (config.redis_trades_conflate_ms > 0)
            .then(|| Duration::from_millis(config.redis_trades_conflate_ms));
        Some(settings)
    }

    fn backoff(&self) -> Backoff {
        // A connection that stayed up a minute was a real recovery, not a flap.
        Backoff::new(
            self.backoff_initial,
            self.backoff_max,
            Duration::from_secs(60),
        )
    }
}

/// The publisher's figures (single writer: the publisher thread). Counts are of
/// `PUBLISH` commands: a signal is two (the all-signals channel and its own).
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// 1 while a connection is up.
    pub connected: Counter,
    /// Acknowledged by Redis.
    pub published: Counter,
    /// Not sent because Redis was down, or lost with a failed connection.
    pub dropped: Counter,
    /// Refused by Redis with an error reply.
    pub refused: Counter,
    /// Live candle updates superseded before they were sent.
    pub conflated: Counter,
    /// Trades superseded by a newer one of their symbol and kind in a conflation
    /// window (`REDIS_TRADES_CONFLATE_MS`), not published.
    pub trades_conflated: Counter,
    /// Connections made after the first.
    pub reconnects: Counter,
    pub connect_failures: Counter,
    /// Connections dropped because a write or reply stalled past the timeout.
    pub timeouts: Counter,
    /// Pipelines sent.
    pub pipelines: Counter,
    /// Acknowledged publishes per second, over the last whole second.
    pub published_per_s: Counter,
    /// Heap allocations made by the publisher thread so far (counted when the binary's
    /// counting allocator is installed): flat while publishing, once warm.
    pub allocations: Counter,
    last_error: Mutex<String>,
}

impl PublisherStats {
    fn set_error(&self, e: &RespError) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *last = e.to_string();
    }
}

/// The `sinks.redis` section of `/api/status`.
pub struct RedisStatus {
    pub prefix: String,
    pub publisher: Arc<PublisherStats>,
    pub bridge: Option<Arc<bridge::BridgeStats>>,
}

impl SinkStatus for RedisStatus {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn metrics(&self, out: &mut Vec<crate::sinks::metrics::Sample>) {
        use crate::sinks::metrics::{read, read_bridge, REDIS};
        read(&REDIS, &*self.publisher, out);
        if let Some(b) = &self.bridge {
            read_bridge(b, out);
        }
    }

    fn status(&self) -> Value {
        let p = &*self.publisher;
        let connected = p.connected.get() == 1;
        let last_error = p
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        json!({
            "state": if connected { "connected" } else { "disconnected" },
            "connected": connected,
            "channel_prefix": self.prefix,
            "published": p.published.get(),
            "published_per_s": p.published_per_s.get(),
            "dropped": p.dropped.get(),
            "refused": p.refused.get(),
            "conflated": p.conflated.get(),
            "trades_conflated": p.trades_conflated.get(),
            "reconnects": p.reconnects.get(),
            "connect_failures": p.connect_failures.get(),
            "timeouts": p.timeouts.get(),
            "pipelines": p.pipelines.get(),
            "allocations": p.allocations.get(),
            "last_error": if last_error.is_empty() { Value::Null } else { Value::from(last_error) },
            "bridge": self.bridge.as_ref().map(|b| b.status()),
        })
    }
}

/// The publisher role for the engine, with the bridge beside it: the bridge inserts
/// other instances' records (those `settings.universe` allows) into `store` and
/// forwards them to `dashboard` (when the dashboard core takes them).
pub fn role(
    settings: RedisSettings,
    layout: &Layout,
    store: Arc<Mutex<RecentStore>>,
    dashboard: Option<Producer<Envelope>>,
    books: Arc<crate::book::board::Board>,
) -> SinkRole {
    let stats = Arc::new(PublisherStats::default());
    // One instance owns every symbol: its bridge would only read its own publishes
    // back (as much traffic again from Redis, and a thread parsing it to refuse it).
    let bridge = settings
        .universe
        .takes_any()
        .then(|| bridge::Bridge::new(settings.clone(), store, dashboard));
    // Without a bridge its figures stay at zero, `active` included.
    let bridge_stats = bridge.as_ref().map_or_else(Default::default, |b| b.stats());
    let status = RedisStatus {
        prefix: settings.prefix.clone(),
        publisher: stats.clone(),
        bridge: Some(bridge_stats),
    };
    let core = layout.publisher_core.filter(|_| layout.pinned);
    SinkRole {
        name: "redis",
        core,
        run: Box::new(move |io: SinkIo| {
            let bridge_stop = Arc::new(AtomicBool::new(false));
            let handle = bridge.and_then(|bridge| {
                let stop = bridge_stop.clone();
                let spawned = std::thread::Builder::new()
                    .name("redis-bridge".into())
                    .spawn(move || {
                        if let Some(id) = core {
                            core_affinity::set_for_current(core_affinity::CoreId { id });
                        }
                        bridge.run(stop);
                    });
                if let Err(e) = &spawned {
                    tracing::error!(error = %e, "cannot start the Redis bridge thread: other instances' symbols will not show");
                }
                spawned.ok()
            });
            run_with_books(io, settings, stats, books);
            bridge_stop.store(true, Ordering::Relaxed);
            if let Some(h) = handle {
                let _ = h.join();
            }
        }),
        status: Some(Arc::new(status)),
        // Candles, signals, trades and books have channels; gaps, outages and absences
        // do not. Trades are never held for Redis: when its ring is full they are dropped.
        kinds: RecordKinds::MARKET
            .with(RecordKinds::TRADES)
            .with(RecordKinds::BOOK),
        lossy: RecordKinds::TRADES,
    }
}

/// Drains the rings and publishes until the stop is requested and the rings are empty.
pub fn run(io: SinkIo, settings: RedisSettings, stats: Arc<PublisherStats>) {
    run_with_books(io, settings, stats, Default::default());
}

/// [`run`], publishing the views of `books` too.
pub fn run_with_books(
    io: SinkIo,
    settings: RedisSettings,
    stats: Arc<PublisherStats>,
    books: Arc<crate::book::board::Board>,
) {
    let (rings, stop) = io.into_rings(DRAIN_BATCH);
    let mut publisher = Publisher::new(settings, stats).with_books(books);
    crate::consumer::run_thread(rings, &stop, &mut publisher);
}

impl crate::consumer::Consume<Envelope> for Publisher {
    fn turn(&mut self, turn: crate::consumer::Turn<'_, Envelope>) -> crate::consumer::Next {
        self.record_acks = turn.latency.is_some();
        if turn.batch.is_empty() {
            // Idle: what waits for conflation goes out now; trades wait for the end of
            // their window.
            self.flush_live();
            self.flush_trades_due();
            self.tick();
        } else {
            self.publish_batch(turn.batch);
        }
        self.record_acked(turn.latency);
        // Reconnects and the rate window want a look now and then.
        let mut next = crate::consumer::Next::At(Instant::now() + HOUSEKEEPING_EVERY);
        if let Some(due) = self.trades_due() {
            next = next.min(crate::consumer::Next::At(due));
        }
        if let Link::Down { retry_at } = self.link {
            next = next.min(crate::consumer::Next::At(retry_at));
        }
        next
    }

    /// At stop: what waits for conflation (live candles, held trades) goes out.
    fn finish(&mut self) {
        if !self.held_trades.is_empty() {
            self.queue_held_trades();
        }
        self.flush_live();
        self.send();
    }
}

enum Link {
    Up { conn: Conn, since: Instant },
    Down { retry_at: Instant },
}

/// Parts of a channel name after its prefix (`:candles:`, symbol, `:`, timeframe).
const MAX_CHANNEL_PARTS: usize = 4;

/// The publishing state: connection, pipeline, pending live candles. Public so the
/// benchmark drives exactly this path.
pub struct Publisher {
    settings: RedisSettings,
    target: Result<Target, String>,
    stats: Arc<PublisherStats>,
    link: Link,
    ever_connected: bool,
    backoff: Backoff,
    /// The pipeline being built.
    out: Vec<u8>,
    /// Commands in `out`.
    queued: usize,
    /// One payload, serialized once and written to each of its channels.
    payload: Vec<u8>,
    /// Latest live candle per series (with its receive time), waiting to be sent.
    live: crate::market::FastMap<(Symbol, Interval), (Candle, u64)>,
    /// Receive times (monotonic ns) of the records in the pipeline being built.
    pending_recv_ns: Vec<u64>,
    /// (receive, acknowledged) times of published records not yet recorded as
    /// `recv_to_redis_publish`; kept only while `record_acks` (the engine's publisher,
    /// not the bench), and emptied every turn.
    acked: Vec<(u64, u64)>,
    record_acks: bool,
    live_since: Option<Instant>,
    rate_window: (Instant, u64),
    /// Where published book views are read (`{prefix}:book:{SYM}`).
    books: Arc<crate::book::board::Board>,
    /// With a trade conflation window: the latest trade of each (symbol, kind) in the
    /// window (with its receive time), and when the window began.
    held_trades: crate::market::FastMap<(Symbol, TradeKind), (Record, u64)>,
    trades_since: Option<Instant>,
}

impl Publisher {
    /// Publishes the views of `books` as their shards publish them.
    pub fn with_books(mut self, books: Arc<crate::book::board::Board>) -> Publisher {
        self.books = books;
        self
    }

    pub fn new(settings: RedisSettings, stats: Arc<PublisherStats>) -> Publisher {
        let target = Target::parse_with_ca(&settings.url, settings.tls_ca_file.as_deref())
            .map_err(|e| e.to_string());
        if let Err(e) = &target {
            tracing::error!(error = %e, "the Redis publisher cannot connect: nothing will be published");
        }
        let backoff = settings.backoff();
        Publisher {
            settings,
            target,
            stats,
            link: Link::Down {
                retry_at: Instant::now(),
            },
            ever_connected: false,
            backoff,
            out: Vec::with_capacity(1 << 20),
            queued: 0,
            payload: Vec::with_capacity(1024),
            live: Default::default(),
            pending_recv_ns: Vec::with_capacity(4096),
            acked: Vec::with_capacity(4096),
            record_acks: false,
            live_since: None,
            rate_window: (Instant::now(), 0),
            books: Default::default(),
            held_trades: Default::default(),
            trades_since: None,
        }
    }

    /// Publishes one drained batch as one pipeline (live candles held for conflation).
    pub fn publish(&mut self, batch: &[Envelope]) {
        self.publish_batch(batch);
    }

    /// Records the acknowledged publishes' `recv_to_redis_publish` into `latency`.
    fn record_acked(&mut self, latency: Option<&mut Recorder>) {
        if let Some(rec) = latency {
            for (recv, acked) in self.acked.drain(..) {
                rec.record_span(Stage::RecvToRedisPublish, recv, acked);
            }
        }
        self.acked.clear();
    }

    fn publish_batch(&mut self, batch: &[Envelope]) {
        for env in batch {
            match &env.record {
                Record::ClosedCandle(c) => {
                    // A pending live update of this candle (or an older one) is
                    // superseded by its close.
                    let key = (c.symbol, c.interval);
                    if self
                        .live
                        .get(&key)
                        .is_some_and(|(l, _)| l.open_time_ms <= c.open_time_ms)
                    {
                        self.live.remove(&key);
                        self.stats.conflated.inc();
                    }
                    self.queue_candle(c);
                    self.pending_recv_ns.push(env.recv_ns);
                }
                Record::LiveCandle(c) => {
                    if self
                        .live
                        .insert((c.symbol, c.interval), (*c, env.recv_ns))
                        .is_some()
                    {
                        self.stats.conflated.inc();
                    }
                    self.live_since.get_or_insert_with(Instant::now);
                }
                Record::Signal(s) => {
                    self.payload.clear();
                    record::write_signal(&mut self.payload, s);
                    self.sign_payload();
                    self.publish_signed(&[b":signals"]);
                    self.publish_signed(&[
                        b":signals:",
                        s.symbol.as_bytes(),
                        b":",
                        s.interval.as_str().as_bytes(),
                    ]);
                    self.pending_recv_ns.push(env.recv_ns);
                }
                // A book's view, as its shard published it; tops in between stay on
                // the dashboard.
                Record::Book(top) if top.published => {
                    if let Some(view) = self.books.latest(top.symbol) {
                        self.payload.clear();
                        view.write_json(&mut self.payload, usize::MAX);
                        self.sign_payload();
                        self.publish_signed(&[b":book:", top.symbol.as_bytes()]);
                        self.pending_recv_ns.push(env.recv_ns);
                    }
                }
                Record::Trade(_) | Record::AggTrade(_) => match self.settings.trades_conflate {
                    None => self.queue_trade(&env.record, env.recv_ns),
                    Some(_) => self.hold_trade(&env.record, env.recv_ns),
                },
                // Gaps, outages and absences have no channel: status owns them.
                Record::Book(_) | Record::Gap(_) | Record::Outage(_) | Record::Absent(_) => {}
            }
            if self.out.len() >= MAX_PIPELINE_BYTES {
                self.send();
            }
        }
        if self
            .live_since
            .is_some_and(|t| t.elapsed() >= Duration::from_millis(LIVE_FLUSH_MS))
        {
            self.queue_live();
        }
        if self.trades_due().is_some_and(|due| Instant::now() >= due) {
            self.queue_held_trades();
        }
        self.send();
        self.tick();
    }

    /// Keeps `record` (a trade) as its symbol's latest of its kind in this window.
    fn hold_trade(&mut self, record: &Record, recv_ns: u64) {
        let key = match record {
            Record::Trade(t) => (t.symbol, TradeKind::Raw),
            Record::AggTrade(t) => (t.symbol, TradeKind::Aggregate),
            _ => return,
        };
        if self.held_trades.insert(key, (*record, recv_ns)).is_some() {
            self.stats.trades_conflated.inc();
        }
        self.trades_since.get_or_insert_with(Instant::now);
    }

    /// When the held trades' window ends, if any are held.
    fn trades_due(&self) -> Option<Instant> {
        Some(self.trades_since? + self.settings.trades_conflate?)
    }

    /// Sends the held trades if their window has ended.
    fn flush_trades_due(&mut self) {
        if self.trades_due().is_some_and(|due| Instant::now() >= due) {
            self.queue_held_trades();
            self.send();
        }
    }

    fn queue_held_trades(&mut self) {
        let mut held = std::mem::take(&mut self.held_trades);
        for (record, recv_ns) in held.values() {
            self.queue_trade(record, *recv_ns);
        }
        // Keep the map's capacity: the same symbols come back.
        held.clear();
        self.held_trades = held;
        self.trades_since = None;
    }

    /// Sends the pending live candles now.
    pub fn flush_live(&mut self) {
        if !self.live.is_empty() {
            self.queue_live();
            self.send();
        }
    }

    fn queue_live(&mut self) {
        let mut live = std::mem::take(&mut self.live);
        for (c, recv_ns) in live.values() {
            self.queue_candle(c);
            self.pending_recv_ns.push(*recv_ns);
        }
        // Keep the map's capacity: the same series come back.
        live.clear();
        self.live = live;
        self.live_since = None;
    }

    /// Publishes a trade or aggregate trade on `{prefix}:trades:{SYMBOL}`.
    fn queue_trade(&mut self, trade: &Record, recv_ns: u64) {
        self.payload.clear();
        let symbol = match trade {
            Record::Trade(t) => {
                record::write_trade(&mut self.payload, t);
                t.symbol
            }
            Record::AggTrade(t) => {
                record::write_agg_trade(&mut self.payload, t);
                t.symbol
            }
            _ => return,
        };
        self.sign_payload();
        self.publish_signed(&[b":trades:", symbol.as_bytes()]);
        self.pending_recv_ns.push(recv_ns);
    }

    fn queue_candle(&mut self, c: &Candle) {
        self.payload.clear();
        record::write_candle(&mut self.payload, c);
        self.sign_payload();
        self.publish_signed(&[
            b":candles:",
            c.symbol.as_bytes(),
            b":",
            c.interval.as_str().as_bytes(),
        ]);
    }

    /// With a bridge key, appends the payload's signature.
    fn sign_payload(&mut self) {
        if let Some(key) = &self.settings.key {
            key.sign(&mut self.payload);
        }
    }

    /// Queues the (signed) payload on the channel `{prefix}` followed by `parts` (at
    /// most [`MAX_CHANNEL_PARTS`]).
    fn publish_signed(&mut self, parts: &[&[u8]]) {
        let mut channel: [&[u8]; MAX_CHANNEL_PARTS + 1] = [b""; MAX_CHANNEL_PARTS + 1];
        channel[0] = self.settings.prefix.as_bytes();
        debug_assert!(
            parts.len() <= MAX_CHANNEL_PARTS,
            "a channel of {} parts",
            parts.len()
        );
        let n = parts.len().min(MAX_CHANNEL_PARTS);
        channel[1..=n].copy_from_slice(&parts[..n]);
        resp::publish(&mut self.out, &channel[..=n], &self.payload);
        self.queued += 1;
    }

    /// Sends the pipeline and reads its replies; without a connection (or when it
    /// fails) the commands are dropped and counted.
    fn send(&mut self) {
        if self.queued == 0 {
            return;
        }
        let n = self.queued;
        self.queued = 0;
        self.ensure_connected();
        let result = match &mut self.link {
            Link::Up { conn, .. } => conn.write_all(&self.out).and_then(|()| conn.replies(n)),
            Link::Down { .. } => {
                self.stats.dropped.add(n as u64);
                self.out.clear();
                self.pending_recv_ns.clear();
                return;
            }
        };
        self.out.clear();
        if result.is_ok() && self.record_acks {
            let now = mono_ns();
            self.acked
                .extend(self.pending_recv_ns.iter().map(|r| (*r, now)));
        }
        self.pending_recv_ns.clear();
        match result {
            Ok(refused) => {
                self.stats.pipelines.inc();
                self.stats.published.add((n - refused) as u64);
                self.stats.refused.add(refused as u64);
            }
            Err(e) => {
                // Whatever was not acknowledged is counted as dropped: pub/sub is
                // at-most-once, and a reply that never came cannot be told from a
                // publish that never happened.
                self.stats.dropped.add(n as u64);
                self.lost(e);
            }
        }
    }

    /// Keeps the connection state current while idle (reconnects on schedule).
    pub fn tick(&mut self) {
        self.ensure_connected();
        self.stats
            .allocations
            .set(crate::alloc::thread_allocations());
        let now = Instant::now();
        let elapsed = now.duration_since(self.rate_window.0);
        if elapsed >= Duration::from_secs(1) {
            let published = self.stats.published.get();
            let rate = (published - self.rate_window.1) as f64 / elapsed.as_secs_f64();
            self.stats.published_per_s.set(rate.round() as u64);
            self.rate_window = (now, published);
        }
    }

    fn ensure_connected(&mut self) {
        let Link::Down { retry_at } = self.link else {
            return;
        };
        let now = Instant::now();
        if now < retry_at {
            return;
        }
        let Ok(target) = &self.target else {
            // A bad URL never heals: stay down without retrying.
            self.link = Link::Down {
                retry_at: now + Duration::from_secs(3600),
            };
            return;
        };
        match Conn::connect(
            target,
            self.settings.connect_timeout,
            self.settings.io_timeout,
        ) {
            Ok(conn) => {
                if self.ever_connected {
                    self.stats.reconnects.inc();
                    tracing::info!("reconnected to Redis");
                } else {
                    tracing::info!("connected to Redis: publishing");
                }
                self.ever_connected = true;
                self.stats.connected.set(1);
                self.link = Link::Up {
                    conn,
                    since: Instant::now(),
                };
            }
            Err(e) => {
                self.stats.connect_failures.inc();
                self.stats.set_error(&e);
                let delay = self.backoff.next_delay(fastrand::f64());
                tracing::debug!(error = %e, ?delay, "Redis connect failed");
                self.link = Link::Down {
                    retry_at: Instant::now() + delay,
                };
            }
        }
    }

    fn lost(&mut self, e: RespError) {
        if matches!(e, RespError::Timeout(_)) {
            self.stats.timeouts.inc();
        }
        tracing::warn!(error = %e, "Redis connection lost: dropping publishes until it is back");
        self.stats.set_error(&e);
        self.stats.connected.set(0);
        let now = Instant::now();
        if let Link::Up { since, .. } = self.link {
            self.backoff.connection_ended(since, now);
        }
        let delay = self.backoff.next_delay(fastrand::f64());
        self.link = Link::Down {
            retry_at: now + delay,
        };
    }

    pub fn stats(&self) -> &Arc<PublisherStats> {
        &self.stats
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stats.connected.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::testing::candle;

    fn env(record: Record) -> Envelope {
        Envelope::untimed(0, record)
    }

    #[test]
    fn without_redis_every_publish_is_dropped_and_counted_and_live_updates_conflate() {
        // Port 1 on loopback refuses at once: the publisher is down throughout.
        let mut settings = RedisSettings::new("redis://127.0.0.1:1", "t");
        settings.backoff_initial = Duration::from_millis(1);
        let stats = Arc::new(PublisherStats::default());
        let mut p = Publisher::new(settings, stats.clone());
        let sig = record::tests::signal("ETHUSDT", 60_000, crate::signals::SignalKind::Rsi);
        let batch = [
            env(Record::LiveCandle(candle("BTCUSDT", 0, 1_000, false))),
            env(Record::LiveCandle(candle("BTCUSDT", 0, 2_000, false))),
            // The close supersedes the live update still waiting.
            env(Record::ClosedCandle(candle("BTCUSDT", 0, 3_000, true))),
            env(Record::LiveCandle(candle("BTCUSDT", 60_000, 61_000, false))),
            env(Record::Signal(sig)),
        ];
        p.publish(&batch);
        p.flush_live();
        assert_eq!(stats.connected.get(), 0);
        assert!(stats.connect_failures.get() >= 1);
        assert_eq!(stats.published.get(), 0);
        // One closed candle, a signal on two channels, one live update.
        assert_eq!(stats.dropped.get(), 4);
        assert_eq!(stats.conflated.get(), 2);
        let status = RedisStatus {
            prefix: "t".into(),
            publisher: stats,
            bridge: None,
        }
        .status();
        assert_eq!(status["connected"], false);
        assert_eq!(status["dropped"], 4);
        assert!(status["last_error"].is_string());
    }
}
