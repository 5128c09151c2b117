//! The dashboard server: HTTP/1.1 with keep-alive and WebSockets on the dashboard core.
//!
//! Runs on: the dashboard core's glommio executor. Owns: the listening socket, one task
//! per connection, the fan-out hub ([`fanout`]) and the task that drains the shards'
//! dashboard rings. In: requests and WebSocket commands; records from every shard's
//! dashboard ring (and from other instances, `shard == REMOTE_SHARD`); read-only views
//! of every role's counters and the recent store. Out: JSON responses, Prometheus text,
//! WebSocket pushes. [`serve`] takes its listener, rings and stop flag as arguments, so
//! tests and the fan-out benchmark pass their own.
//!
//! Files: this one is the server (accept, a connection's requests and upgrades);
//! `routes.rs` maps requests to responses; `drain.rs` consumes the rings and runs the
//! periodic tasks; `options.rs` holds the options and the TLS set-up; `http` parses and
//! frames, `ws` speaks the WebSocket protocol, `fanout` and `send` deliver to clients.

mod drain;
pub mod fanout;
pub mod http;
pub mod metrics;
mod options;
pub mod page;
pub mod protocol;
mod routes;
pub mod security;
pub mod send;
pub mod status;
mod ws;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde_json::{json, Value};

use self::drain::{drain, push_status, sample_rates};
use self::fanout::{DashboardStats, Hub};
use self::http::{HeadError, Request, Response};
pub use self::options::{DashboardError, Options};
use self::protocol::{Filter, Topic};
use self::routes::authorized;
pub(crate) use self::routes::route;
pub use self::routes::{list_params, list_query};
pub use self::security::check_exposure;
pub use self::status::StatusContext;
use crate::consumer::Stop;
use crate::market::Symbol;
use crate::message::Envelope;
use crate::ring::Consumer;

/// A request head must arrive within this (slowloris protection).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent connections; more are refused with 503 until some close. Above the
/// largest `WEBSOCKET_MAX_CLIENTS`, so that setting is what limits WebSocket clients.
pub const MAX_HTTP_CONNECTIONS: usize = 120_000;
/// Default and largest `limit` of list endpoints (docs/api.md).
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// How long a stopping server waits for its clients' close frames to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// How long a refused connection is read from before it is closed (see [`refuse`]).
const REFUSAL_LINGER: Duration = Duration::from_millis(200);
/// How often a connection waiting for its request head looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(2500);
/// Records taken from one ring per drain turn, so one busy shard cannot starve the
/// others, and the first records of a burst are written while the later ones are still
/// waiting to be serialized.
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
/// Limits of the conformance echo endpoint: the suite sends messages of up to 16 MiB,
/// one connection at a time; at most [`ECHO_MAX_CLIENTS`] echo clients at once bound
/// the memory such messages can hold.
const ECHO_MAX_MESSAGE_BYTES: usize = 16 << 20;
const ECHO_MAX_CLIENTS: usize = 4;

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
    /// Clients of `/ws/echo` now (they count against `max_clients` too).
    echo_clients: Cell<usize>,
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
        // The server's own rate, so a page has a figure from its first status push.
        v["throughput"] = json!({ "messages_received_per_s": self.rates.get().received_per_s });
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
    stop: Stop,
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
        echo_clients: Cell::new(0),
    });
    let drainer = glommio::spawn_local(drain(server.clone(), feeds, stop.clone()));
    let pusher = glommio::spawn_local(push_status(server.clone(), stop.clone()));
    let sampler = glommio::spawn_local(sample_rates(server.clone(), stop.clone()));
    let mut incoming = Incoming::new(&listener);
    while !stop.requested() {
        let stream = match incoming.next(stop.wait()).await {
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
                None => handle_connection(stream, &server, stop.flag()).await,
                Some(acceptor) => {
                    let handshake =
                        future::or(async { Some(acceptor.accept(stream).await) }, async {
                            glommio::timer::sleep(server.opts.head_deadline).await;
                            None
                        })
                        .await;
                    if let Some(Ok(tls_stream)) = handshake {
                        handle_connection(tls_stream, &server, stop.flag()).await;
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

/// The listener's connections, one accept kept in flight across the waits that end
/// without one (the stop).
///
/// glommio accepts through io_uring: an accept dropped when another future wins is
/// cancelled, and one the kernel completed in that moment hands back a connection that
/// nobody owns. Its client would wait for an answer that never comes. So the accept
/// is dropped only with the loop, when the server stops.
struct Incoming<'a> {
    listener: &'a TcpListener,
    accept: std::pin::Pin<Box<dyn Future<Output = glommio::Result<TcpStream, ()>> + 'a>>,
}

impl<'a> Incoming<'a> {
    fn new(listener: &'a TcpListener) -> Incoming<'a> {
        Incoming {
            listener,
            accept: Box::pin(listener.accept()),
        }
    }

    /// The next connection, or `None` when `give_up` completed first (the accept stays).
    async fn next(
        &mut self,
        give_up: impl Future<Output = ()>,
    ) -> Option<glommio::Result<TcpStream, ()>> {
        let accepted = future::or(async { Some((&mut self.accept).await) }, async {
            give_up.await;
            None
        })
        .await?;
        self.accept = Box::pin(self.listener.accept());
        Some(accepted)
    }
}

/// Answers a connection refused at accept, then reads (briefly, bounded) what the
/// client sends: closing with its request unread would reset the connection and could
/// destroy the answer before the client reads it.
async fn refuse(stream: &mut TcpStream, response: Response) {
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

async fn handle_connection<S>(mut stream: S, server: &Rc<Server>, stop: &AtomicBool)
where
    S: AsyncRead + AsyncWrite + send::VectoredWrite + Unpin + 'static,
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
                glommio::timer::sleep(left.min(STOP_POLL)).await;
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
        if !security::host_ok(
            req.host.as_deref(),
            opts.token.is_some(),
            &opts.allowed_hosts,
            &opts.allowed_origins,
        ) {
            // Before any route or upgrade: a DNS-rebinding page gets nothing.
            server.hub.stats.forbidden_host.inc();
            let refusal = Response::error(
                403,
                "host not allowed: add it to DASHBOARD_ALLOWED_HOSTS or set DASHBOARD_TOKEN",
            );
            let _ = stream.write_all(&refusal.to_bytes(false)).await;
            return;
        }
        if let Some(endpoint) = ws_endpoint(&req.path, opts.conformance_echo) {
            let echo = endpoint == WsEndpoint::Echo;
            match upgrade_refusal(&req, server, echo) {
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
                            server.echo_clients.set(server.echo_clients.get() + 1);
                            let ws = opts.websocket(stream, rest, true).await;
                            ws::run_echo(ws, opts.ws_idle_timeout).await;
                            server.echo_clients.set(server.echo_clients.get() - 1);
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
fn upgrade_refusal(req: &Request, server: &Server, echo: bool) -> Option<Response> {
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
    let echoing = server.echo_clients.get();
    if server.hub.len() + echoing >= opts.max_clients || (echo && echoing >= ECHO_MAX_CLIENTS) {
        stats.refused_full.inc();
        return Some(Response::error(503, "too many WebSocket clients"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections arriving while waits without one keep ending are all answered: none
    /// is lost to an accept cancelled in the moment the kernel completed it. Each wait
    /// here gives up after 10 µs, so it wins against an in-flight accept thousands of
    /// times.
    #[test]
    fn no_connection_is_lost_to_a_wait_that_gives_up() {
        use std::io::Read;
        const CONNECTIONS: usize = 10_000;
        let (bound, addr) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let server_stop = stop.clone();
        let server = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                let mut incoming = Incoming::new(&listener);
                while !server_stop.load(Ordering::Relaxed) {
                    if let Some(Ok(mut stream)) = incoming
                        .next(glommio::timer::sleep(Duration::from_micros(10)))
                        .await
                    {
                        glommio::spawn_local(async move {
                            let _ = stream.write_all(b"ok").await;
                        })
                        .detach();
                    }
                }
            })
            .unwrap();
        let addr = addr.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lost = None;
        for n in 0..CONNECTIONS {
            if Instant::now() > deadline {
                break;
            }
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut got = [0u8; 2];
            if s.read_exact(&mut got).is_err() {
                lost = Some(n);
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert_eq!(
            lost, None,
            "connection {lost:?} of {CONNECTIONS} was never answered"
        );
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
}
