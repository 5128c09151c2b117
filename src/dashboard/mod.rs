//! The dashboard server: HTTP/1.1 with keep-alive and WebSockets on the dashboard core.
//!
//! Runs on: the dashboard core's glommio executor. Owns: the listening socket, one task
//! per connection, the fan-out hub ([`fanout`]) and the task that drains the shards'
//! dashboard rings. In: requests and WebSocket commands; records from every shard's
//! dashboard ring (and from other instances, `shard == REMOTE_SHARD`); read-only views
//! of every role's counters and the recent store. Out: JSON responses, Prometheus text,
//! WebSocket pushes. [`serve`] takes its listener, rings and stop flag as arguments, so
//! tests and the fan-out benchmark pass their own.

pub mod fanout;
pub mod http;
pub mod metrics;
pub mod page;
pub mod protocol;
pub mod security;
pub mod send;
pub mod status;
mod ws;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls;
use glommio::net::TcpListener;
use serde_json::{json, Value};
use tungstenite::protocol::{Role, WebSocketConfig};

use self::fanout::{DashboardStats, Hub, Key};
use self::http::{HeadError, Request, Response};
use self::protocol::{Filter, Topic};
pub use self::security::check_exposure;
pub use self::status::StatusContext;
use crate::config::Config;
use crate::market::{Interval, Symbol};
use crate::message::{Envelope, Record, REMOTE_SHARD};
use crate::record::{self, CandleRecord};
use crate::ring::Consumer;
use crate::store::ListQuery;

/// A request head must arrive within this (slowloris protection).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent connections; more are refused with 503 until some close. Above the
/// largest `WEBSOCKET_MAX_CLIENTS`, so that setting is what limits WebSocket clients.
pub const MAX_HTTP_CONNECTIONS: usize = 120_000;
/// Default and largest `limit` of list endpoints (DESIGN.md).
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// How long a stopping server waits for its clients' close frames to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// How long a refused connection is read from before it is closed (see [`refuse`]).
const REFUSAL_LINGER: Duration = Duration::from_millis(200);
/// How often the accept loop checks the stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);
/// Records taken from one ring per drain turn, so one busy shard cannot starve the
/// others, and the client tasks write the first records of a burst while the later ones
/// are still waiting to be serialized.
const DRAIN_BATCH: usize = 64;
/// WebSocket clients are pinged this often; any frame from them counts as alive.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(20);
/// A client heard from (not even a pong) for this long is disconnected.
pub const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The socket read buffer of one WebSocket client: commands are small, and 10,000
/// clients times tungstenite's 128 KiB default would be over a gigabyte.
const WS_READ_BUFFER_BYTES: usize = 4096;
/// tungstenite's write buffer: it writes only control frames (pongs, closes) and the
/// echo endpoint's replies; broadcasts go through [`send::Sender`].
const WS_WRITE_BUFFER_BYTES: usize = 8192;
/// Limits of the conformance echo endpoint: the suite sends messages of up to 16 MiB.
const ECHO_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("dashboard TLS: cannot read {path}: {why}")]
    TlsFile { path: String, why: String },
    #[error("dashboard TLS: {0}")]
    Tls(String),
}

/// Everything the server needs besides its sockets, taken from [`Config`] (tests and
/// benchmarks adjust the timeouts).
#[derive(Clone)]
pub struct Options {
    /// Where the dashboard core registers its stage-latency recorder (the engine's).
    pub latency: Option<Arc<crate::latency::Registry>>,
    pub token: Option<String>,
    pub allowed_origins: Vec<String>,
    pub max_clients: usize,
    pub update_interval: Duration,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub client_queue_messages: usize,
    pub max_connections_per_ip: usize,
    pub max_inbound_msgs_per_s: u32,
    pub conformance_echo: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub head_deadline: Duration,
    pub idle_timeout: Duration,
    pub ws_ping_interval: Duration,
    pub ws_idle_timeout: Duration,
    /// Spin on the rings instead of parking (`engine.busy_poll`: isolated cores only).
    pub busy_poll: bool,
    /// The symbols this dashboard serves, listed as `symbols` in `/api/status` (the
    /// page's symbol list): with Redis, every symbol of the deployment (its own from
    /// its shards, the other instances' through the bridge); without, its own slice.
    pub symbols: Vec<Symbol>,
    /// This instance's slice (`INSTANCE_INDEX`, `INSTANCE_COUNT`), shown in the status.
    pub instance: (u32, u32),
}

impl Options {
    /// The options of `config`; reads the TLS files if configured (call on the control
    /// plane: file reads never run on the dashboard's executor).
    pub fn from_config(config: &Config) -> Result<Options, DashboardError> {
        let d = &config.dashboard;
        let tls = match (&d.tls_cert_file, &d.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        Ok(Options {
            latency: None,
            token: config.dashboard_token.clone(),
            allowed_origins: config.dashboard_allowed_origins.clone(),
            max_clients: config.websocket_max_clients,
            update_interval: Duration::from_secs_f64(config.websocket_update_interval_s),
            max_message_bytes: d.max_message_bytes,
            max_frame_bytes: d.max_frame_bytes,
            client_queue_messages: d.client_queue_messages,
            max_connections_per_ip: d.max_connections_per_ip,
            max_inbound_msgs_per_s: d.max_inbound_msgs_per_s,
            conformance_echo: d.conformance_echo,
            tls,
            head_deadline: HEAD_DEADLINE,
            idle_timeout: IDLE_TIMEOUT,
            ws_ping_interval: WS_PING_INTERVAL,
            ws_idle_timeout: WS_IDLE_TIMEOUT,
            busy_poll: config.engine.busy_poll,
            symbols: if config.redis_url.is_some() {
                config.symbols.clone()
            } else {
                config.instance_symbols()
            },
            instance: (config.engine.instance_index, config.engine.instance_count),
        })
    }

    /// The server side of a WebSocket over `io`, whose first bytes (`rest`) were read
    /// with the upgrade request.
    async fn websocket<T>(&self, io: T, rest: Vec<u8>, echo: bool) -> WebSocketStream<T>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        WebSocketStream::from_partially_read(io, rest, Role::Server, Some(self.ws_config(echo)))
            .await
    }

    fn ws_config(&self, echo: bool) -> WebSocketConfig {
        let (message, frame) = if echo {
            (ECHO_MAX_MESSAGE_BYTES, ECHO_MAX_MESSAGE_BYTES)
        } else {
            (self.max_message_bytes, self.max_frame_bytes)
        };
        WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER_BYTES)
            .write_buffer_size(WS_WRITE_BUFFER_BYTES)
            .max_message_size(Some(message))
            .max_frame_size(Some(frame))
    }
}

/// The rustls server configuration from PEM files.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, DashboardError> {
    let bad = |e: crate::tls::PemError| DashboardError::TlsFile {
        path: e.path.display().to_string(),
        why: e.why,
    };
    let certs = crate::tls::certificates(cert).map_err(bad)?;
    let key = crate::tls::private_key(key).map_err(bad)?;
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DashboardError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| DashboardError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Throughput over the last second, sampled by the rates task.
#[derive(Clone, Copy, Default)]
struct Rates {
    received_per_s: f64,
    sent_per_s: f64,
}

/// The server's state on the dashboard core.
pub(crate) struct Server {
    ctx: Arc<StatusContext>,
    hub: Hub,
    opts: Options,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    rates: Cell<Rates>,
}

impl Server {
    /// The `/api/status` document with the dashboard's own figures filled in.
    fn status_json(&self) -> Value {
        let mut v = self.ctx.snapshot();
        let stats = &self.hub.stats;
        v["active_clients"] = json!(stats.active_clients.get());
        v["dashboard"] = stats.to_json();
        let symbols: Vec<&str> = self.opts.symbols.iter().map(Symbol::as_str).collect();
        v["symbols"] = json!(symbols);
        let (index, count) = self.opts.instance;
        v["instance"] = json!({ "index": index, "count": count });
        v
    }

    /// A `{"type":"status",…}` push, framed.
    fn status_message(&self) -> fanout::Frame {
        let mut v = self.status_json();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("type".into(), json!("status"));
        }
        send::text_frame(&v.to_string())
    }

    fn performance_json(&self) -> Value {
        let stats = &self.hub.stats;
        let rates = self.rates.get();
        let mut p = self
            .ctx
            .performance(stats.active_clients.get(), stats.messages_sent.get());
        p["throughput"]["messages_received_per_s"] = json!(rates.received_per_s);
        p["throughput"]["messages_sent_per_s"] = json!(rates.sent_per_s);
        p["dashboard"] = stats.to_json();
        p
    }
}

/// Serves until `stop` is set: connections on `listener`, records from `feeds`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<StatusContext>,
    feeds: Vec<Consumer<Envelope>>,
    opts: Options,
    stats: Arc<DashboardStats>,
    stop: Arc<AtomicBool>,
) {
    let tls = opts.tls.clone().map(futures_rustls::TlsAcceptor::from);
    let hub = Hub::new(stats);
    *hub.latency.borrow_mut() = opts.latency.as_ref().map(|r| r.recorder("dashboard"));
    let server = Rc::new(Server {
        ctx,
        hub,
        opts,
        per_ip: RefCell::new(HashMap::new()),
        rates: Cell::new(Rates::default()),
    });
    let drainer = glommio::spawn_local(drain(server.clone(), feeds, stop.clone()));
    let pusher = glommio::spawn_local(push_status(server.clone(), stop.clone()));
    let sampler = glommio::spawn_local(sample_rates(server.clone(), stop.clone()));
    while !stop.load(Ordering::Relaxed) {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            glommio::timer::sleep(STOP_POLL).await;
            None
        })
        .await;
        let stream = match accepted {
            None => continue,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        glommio::spawn_local(async move {
            let ip = stream.peer_addr().map(|a| a.ip()).ok();
            let stats = server.hub.stats.clone();
            let mut stream = stream;
            if stats.open_connections.get() as usize >= MAX_HTTP_CONNECTIONS {
                refuse(&mut stream, Response::error(503, "too many connections")).await;
                return;
            }
            let admitted = ip.is_none_or(|ip| {
                let mut per_ip = server.per_ip.borrow_mut();
                let n = per_ip.entry(ip).or_insert(0);
                let ok = *n < server.opts.max_connections_per_ip;
                *n += usize::from(ok);
                ok
            });
            if !admitted {
                stats.refused_per_ip.inc();
                let why = Response::error(429, "too many connections from this address");
                refuse(&mut stream, why).await;
                return;
            }
            stats.open_connections.inc();
            match tls {
                None => handle_connection(stream, &server, &stop).await,
                Some(acceptor) => {
                    let handshake =
                        future::or(async { Some(acceptor.accept(stream).await) }, async {
                            glommio::timer::sleep(server.opts.head_deadline).await;
                            None
                        })
                        .await;
                    if let Some(Ok(tls_stream)) = handshake {
                        handle_connection(tls_stream, &server, &stop).await;
                    }
                }
            }
            stats.open_connections.dec();
            if let Some(ip) = ip {
                let mut per_ip = server.per_ip.borrow_mut();
                if let Some(n) = per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        per_ip.remove(&ip);
                    }
                }
            }
        })
        .detach();
    }
    let _ = drainer.await;
    let _ = pusher.await;
    let _ = sampler.await;
    // Tell the clients (close 1001) so they reconnect elsewhere or later, and give their
    // tasks a bounded time to send it.
    server.hub.kick_all(fanout::KICK_SHUTDOWN);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !server.hub.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers a connection refused at accept, then reads (briefly, bounded) what the
/// client sends: closing with its request unread would reset the connection and could
/// destroy the answer before the client reads it.
async fn refuse(stream: &mut glommio::net::TcpStream, response: Response) {
    if stream.write_all(&response.to_bytes(false)).await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let _ = future::or(
        async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        },
        glommio::timer::sleep(REFUSAL_LINGER),
    )
    .await;
}

/// The dashboard core's consumer: keeps the recent store and broadcasts every record.
struct Drain {
    server: Rc<Server>,
}

impl crate::consumer::Consume<Envelope> for Drain {
    fn turn(&mut self, turn: crate::consumer::Turn<'_, Envelope>) -> crate::consumer::Next {
        let batch = turn.batch;
        let server = &self.server;
        let now = crate::clock::mono_ns();
        if let Some(rec) = server.hub.latency.borrow_mut().as_mut() {
            for env in batch {
                let at = crate::consumer::Stamped::enqueued_ns(env);
                if at != 0 {
                    rec.record_span(crate::latency::Stage::RingHop, at, now);
                }
            }
            // Sends are recorded by the client tasks: hand them over even when no
            // record came.
            rec.maybe_handoff(now);
        }
        if batch.iter().any(|e| e.shard != REMOTE_SHARD) {
            // The recent view the API answers from: one short lock per batch. Records
            // of other instances were stored by the bridge that received them.
            let mut store = server.ctx.store.lock().unwrap_or_else(|p| p.into_inner());
            for env in batch.iter().filter(|e| e.shard != REMOTE_SHARD) {
                store.apply(&env.record);
            }
        }
        for env in batch {
            server.hub.stats.records_in.inc();
            // Records of other instances carry no receive time of ours.
            let recv_ns = if env.shard == REMOTE_SHARD {
                0
            } else {
                env.recv_ns
            };
            broadcast_record(&server.hub, &env.record, recv_ns);
        }
        // The latency hand-off and the stop flag want a look now and then even when idle.
        crate::consumer::Next::At(Instant::now() + crate::latency::HANDOFF_INTERVAL)
    }
}

/// Drains every feed as records arrive (woken by the producers' doorbells) and
/// broadcasts them; between batches the client tasks write.
async fn drain(server: Rc<Server>, feeds: Vec<Consumer<Envelope>>, stop: Arc<AtomicBool>) {
    // A burst (every symbol's candle closing at the top of the hour) is spread over
    // drain rounds: per round, all feeds together queue at most a quarter of a client's
    // outbox, and the client tasks write between rounds. So a client that reads keeps
    // up with any burst and only one that does not read reaches its bound; the records
    // wait in the rings meanwhile (the shards hold never-lost records when a ring fills).
    let per_feed =
        (server.opts.client_queue_messages / 4 / feeds.len().max(1)).clamp(1, DRAIN_BATCH);
    let rings = crate::consumer::Rings::new(feeds, per_feed, None, server.opts.busy_poll);
    let mut drain = Drain {
        server: server.clone(),
    };
    crate::consumer::run_local(rings, &stop, &mut drain).await;
}

/// One record to its subscribers: serialized once, shared by all of them.
fn broadcast_record(hub: &Hub, record: &Record, recv_ns: u64) {
    match record {
        Record::Signal(s) => {
            if hub.any_subscriber(Topic::Signals) {
                let msg = encode_with(|out| record::write_signal(out, s));
                hub.broadcast_timed(
                    Topic::Signals,
                    (Some(s.symbol), Some(s.interval)),
                    &msg,
                    (None, None),
                    recv_ns,
                );
            }
        }
        Record::LiveCandle(c) | Record::ClosedCandle(c) => {
            if hub.any_subscriber(Topic::Candles) {
                let msg = encode_with(|out| record::write_candle(out, c));
                let key = Key::Live(c.symbol, c.interval);
                let (key, supersedes) = if c.closed {
                    (None, Some(key))
                } else {
                    (Some(key), None)
                };
                hub.broadcast_timed(
                    Topic::Candles,
                    (Some(c.symbol), Some(c.interval)),
                    &msg,
                    (key, supersedes),
                    recv_ns,
                );
            }
        }
        Record::Gap(_) | Record::Outage(_) | Record::Absent(_) => {}
    }
}

/// A broadcast record written by the allocation-light record writers (the Redis
/// publisher's: the same bytes as `serde_json`, tested, at a fraction of the cost; see
/// `cargo bench --bench records`), framed once for every client. The writers emit JSON
/// text: valid UTF-8 by construction.
fn encode_with(write: impl FnOnce(&mut Vec<u8>)) -> fanout::Frame {
    send::text_frame_with(write)
}

/// Runs `tick` every `period` until `stop` is set (the flag is checked at least every
/// [`STOP_POLL`]).
async fn every(period: Duration, stop: &AtomicBool, mut tick: impl FnMut()) {
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(
            next.saturating_duration_since(Instant::now())
                .min(STOP_POLL),
        )
        .await;
        if Instant::now() < next {
            continue;
        }
        next += period;
        tick();
    }
}

/// Pushes the status to its subscribers every `WEBSOCKET_UPDATE_INTERVAL`.
async fn push_status(server: Rc<Server>, stop: Arc<AtomicBool>) {
    every(server.opts.update_interval, &stop, || {
        if server.hub.any_subscriber(Topic::Status) {
            let msg = server.status_message();
            server
                .hub
                .broadcast(Topic::Status, None, None, &msg, Some(Key::Status), None);
        }
    })
    .await;
}

/// Samples the message rates once a second for `/api/performance`.
async fn sample_rates(server: Rc<Server>, stop: Arc<AtomicBool>) {
    let sample = |s: &Server| {
        let received: u64 = s.ctx.shards.iter().map(|x| x.stats.messages.get()).sum();
        (Instant::now(), received, s.hub.stats.messages_sent.get())
    };
    let mut last = sample(&server);
    every(Duration::from_secs(1), &stop, || {
        let now = sample(&server);
        let dt = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        server.rates.set(Rates {
            received_per_s: now.1.saturating_sub(last.1) as f64 / dt,
            sent_per_s: now.2.saturating_sub(last.2) as f64 / dt,
        });
        last = now;
    })
    .await;
}

async fn handle_connection<S>(mut stream: S, server: &Rc<Server>, stop: &AtomicBool)
where
    S: AsyncRead + AsyncWrite + send::VectoredWrite + Unpin,
{
    let opts = &server.opts;
    let stats = &server.hub.stats;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head: an idle keep-alive connection may wait idle_timeout for
        // its next request; once the first byte is in, the head must complete within
        // head_deadline of it (slowloris).
        let idle_since = Instant::now();
        let mut first_byte_at: Option<Instant> = (!buf.is_empty()).then(Instant::now);
        let req = loop {
            match http::parse_head(&buf) {
                Ok(Some(req)) => break req,
                Ok(None) => {}
                Err(HeadError::TooLarge) => {
                    stats.heads_refused.inc();
                    let _ = stream
                        .write_all(&Response::error(431, "request head too large").to_bytes(false))
                        .await;
                    return;
                }
                Err(HeadError::Malformed) => {
                    stats.heads_refused.inc();
                    let _ = stream
                        .write_all(&Response::error(400, "malformed request").to_bytes(false))
                        .await;
                    return;
                }
            }
            let left = match first_byte_at {
                None => opts.idle_timeout.saturating_sub(idle_since.elapsed()),
                Some(t) => opts.head_deadline.saturating_sub(t.elapsed()),
            };
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                if first_byte_at.is_some() {
                    stats.heads_refused.inc();
                    let _ = stream
                        .write_all(&Response::error(408, "request head too slow").to_bytes(false))
                        .await;
                }
                return;
            }
            let read = future::or(async { Some(stream.read(&mut chunk).await) }, async {
                glommio::timer::sleep(left.min(STOP_POLL * 10)).await;
                None
            })
            .await;
            match read {
                None => continue,
                Some(Ok(0)) | Some(Err(_)) => return,
                Some(Ok(n)) => {
                    first_byte_at.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        if req.content_length > 0 {
            // No route takes a body; refusing one (and closing) means no client can
            // hold a connection open by announcing a body it never sends.
            let _ = stream
                .write_all(&Response::error(413, "request bodies are not accepted").to_bytes(false))
                .await;
            return;
        }
        if let Some(endpoint) = ws_endpoint(&req.path, opts.conformance_echo) {
            match upgrade_refusal(&req, server) {
                Some(refusal) => {
                    let _ = stream.write_all(&refusal.to_bytes(false)).await;
                }
                None => {
                    let key = req.ws_key.as_deref().unwrap_or_default();
                    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                    let head = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let rest = buf.split_off(req.head_len.min(buf.len()));
                    match endpoint {
                        WsEndpoint::Echo => {
                            let ws = opts.websocket(stream, rest, true).await;
                            ws::run_echo(ws).await;
                        }
                        WsEndpoint::Api(subs) => {
                            // The sender writes the socket; tungstenite reads it and
                            // hands its control frames to the sender.
                            let (sender, tap) = send::Sender::new(stream);
                            let ws = opts.websocket(tap, rest, false).await;
                            ws::run_client(ws, sender, server.clone(), subs).await;
                        }
                    }
                }
            }
            return;
        }
        let response = route(&req, server).await;
        let bytes = if req.method == "HEAD" {
            response.head_bytes(req.keep_alive)
        } else {
            response.to_bytes(req.keep_alive)
        };
        if stream.write_all(&bytes).await.is_err() || !req.keep_alive {
            return;
        }
        buf.drain(..req.head_len.min(buf.len()));
    }
}

#[derive(Debug, PartialEq)]
enum WsEndpoint {
    /// `/ws`, `/ws/status`, `/ws/signals` with their initial subscriptions.
    Api(Vec<Filter>),
    Echo,
}

fn ws_endpoint(path: &str, echo_enabled: bool) -> Option<WsEndpoint> {
    match path {
        "/ws" => Some(WsEndpoint::Api(Vec::new())),
        "/ws/status" => Some(WsEndpoint::Api(vec![Filter::all(Topic::Status)])),
        "/ws/signals" => Some(WsEndpoint::Api(vec![Filter::all(Topic::Signals)])),
        "/ws/echo" if echo_enabled => Some(WsEndpoint::Echo),
        _ => None,
    }
}

/// Why an upgrade is refused (answered before any upgrade), or `None` to accept.
fn upgrade_refusal(req: &Request, server: &Server) -> Option<Response> {
    let opts = &server.opts;
    let stats = &server.hub.stats;
    if !req.websocket || req.method != "GET" {
        stats.bad_upgrades.inc();
        return Some(Response::error(
            426,
            "this endpoint needs a WebSocket upgrade",
        ));
    }
    if req.ws_version.as_deref() != Some("13") || req.ws_key.is_none() {
        stats.bad_upgrades.inc();
        return Some(Response::error(
            400,
            "a WebSocket upgrade needs Sec-WebSocket-Version: 13 and Sec-WebSocket-Key",
        ));
    }
    if !authorized(req, opts) {
        stats.unauthorized.inc();
        return Some(Response::error(401, "missing or wrong token"));
    }
    if !security::origin_ok(
        req.origin.as_deref(),
        req.host.as_deref(),
        &opts.allowed_origins,
    ) {
        stats.forbidden_origin.inc();
        return Some(Response::error(403, "origin not allowed"));
    }
    if server.hub.len() >= opts.max_clients {
        stats.refused_full.inc();
        return Some(Response::error(503, "too many WebSocket clients"));
    }
    None
}

fn authorized(req: &Request, opts: &Options) -> bool {
    let query_token = http::query_param(&req.query, "token");
    security::token_ok(
        opts.token.as_deref(),
        req.bearer.as_deref(),
        query_token.as_deref(),
    )
}

/// Maps a request to its response.
pub(crate) async fn route(req: &Request, server: &Server) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET is supported");
    }
    if let Some((content_type, body)) = page::asset(&req.path) {
        return Response {
            status: 200,
            content_type,
            body: body.to_vec(),
        };
    }
    let protected = req.path.starts_with("/api/") || req.path == "/metrics";
    if protected && !authorized(req, &server.opts) {
        server.hub.stats.unauthorized.inc();
        return Response::error(401, "missing or wrong token");
    }
    let ctx = &server.ctx;
    match req.path.as_str() {
        "/healthz" => Response::json(200, &serde_json::json!({ "status": "ok" })),
        "/readyz" => {
            if ctx.ready() {
                Response::json(200, &serde_json::json!({ "status": "ready" }))
            } else {
                Response::json(503, &serde_json::json!({ "status": "starting" }))
            }
        }
        "/api/status" => Response::json(200, &server.status_json()),
        "/api/performance" => Response::json(200, &server.performance_json()),
        "/metrics" => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(ctx, &server.hub.stats),
        ),
        "/api/candles" => match list_query(&req.query) {
            Ok(q) => match ctx.list_candles(q).await {
                Ok(candles) => {
                    let live: Vec<CandleRecord> = {
                        let store = ctx.store.lock().unwrap_or_else(|p| p.into_inner());
                        store
                            .live(q.symbol, q.interval)
                            .iter()
                            .map(CandleRecord::from)
                            .collect()
                    };
                    Response::json(200, &json!({ "candles": candles, "live": live }))
                }
                Err(e) => Response::error(503, &format!("candles unavailable: {e}")),
            },
            Err(resp) => resp,
        },
        "/api/signals" => match list_query(&req.query) {
            Ok(q) => match ctx.list_signals(q).await {
                Ok(signals) => Response::json(200, &json!({ "signals": signals })),
                Err(e) => Response::error(503, &format!("signals unavailable: {e}")),
            },
            Err(resp) => resp,
        },
        _ => Response::error(404, "not found"),
    }
}

type ListParams = (Option<Symbol>, Option<Interval>, usize);

/// Validates `symbol`, `timeframe` and `limit`; a bad one is a 400 naming it.
pub fn list_params(query: &str) -> Result<ListParams, Response> {
    let symbol = match http::query_param(query, "symbol") {
        Some(s) if !s.is_empty() => Some(
            Symbol::new(&s)
                .map_err(|e| Response::error(400, &format!("invalid parameter symbol: {e}")))?,
        ),
        _ => None,
    };
    let interval = match http::query_param(query, "timeframe") {
        Some(t) if !t.is_empty() => Some(
            Interval::parse(&t)
                .map_err(|e| Response::error(400, &format!("invalid parameter timeframe: {e}")))?,
        ),
        _ => None,
    };
    let limit = match http::query_param(query, "limit") {
        Some(l) if !l.is_empty() => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(Response::error(
                    400,
                    &format!(
                    "invalid parameter limit: expected a whole number from 1 to {MAX_LIST_LIMIT}"
                ),
                ))
            }
        },
        _ => DEFAULT_LIST_LIMIT,
    };
    Ok((symbol, interval, limit))
}

/// [`list_params`] plus the optional `from` / `to` times (ms); a bad one is a 400
/// naming it.
pub fn list_query(query: &str) -> Result<ListQuery, Response> {
    let (symbol, interval, limit) = list_params(query)?;
    let time = |name: &str| -> Result<Option<i64>, Response> {
        match http::query_param(query, name) {
            Some(t) if !t.is_empty() => t.parse::<i64>().map(Some).map_err(|_| {
                Response::error(
                    400,
                    &format!("invalid parameter {name}: expected a time in milliseconds"),
                )
            }),
            _ => Ok(None),
        }
    };
    Ok(ListQuery {
        symbol,
        interval,
        limit,
        from_ms: time("from")?,
        to_ms: time("to")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_reads_the_time_range() {
        let q = list_query("from=5&to=9").ok().unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.limit), (Some(5), Some(9), 100));
        for (q, name) in [("from=x", "from"), ("to=1.5", "to")] {
            let body = String::from_utf8(list_query(q).err().unwrap().body).unwrap();
            assert!(body.contains(name), "{body}");
        }
    }

    #[test]
    fn websocket_endpoints() {
        assert_eq!(ws_endpoint("/ws", false), Some(WsEndpoint::Api(vec![])));
        assert_eq!(
            ws_endpoint("/ws/signals", false),
            Some(WsEndpoint::Api(vec![Filter::all(Topic::Signals)]))
        );
        assert_eq!(ws_endpoint("/ws/echo", false), None);
        assert_eq!(ws_endpoint("/ws/echo", true), Some(WsEndpoint::Echo));
        assert_eq!(ws_endpoint("/api/status", true), None);
    }

    #[test]
    fn list_params_validate_and_name_the_parameter() {
        assert_eq!(list_params("").ok(), Some((None, None, 100)));
        let (s, i, l) = list_params("symbol=btcusdt&timeframe=1h&limit=1000")
            .ok()
            .unwrap();
        assert_eq!(s.unwrap().as_str(), "BTCUSDT");
        assert_eq!(i, Some(Interval::H1));
        assert_eq!(l, 1000);
        for (q, name) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("timeframe=7m", "timeframe"),
            ("symbol=a-b", "symbol"),
        ] {
            let r = list_params(q).err().unwrap();
            assert_eq!(r.status, 400);
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains(name), "{body}");
        }
    }
}
