//! One WebSocket connection to Binance's combined-stream endpoint: connect (TCP, TLS,
//! handshake), subscribe in paced batches, then read, parse and hand every event to the
//! shard until the connection ends.
//!
//! Reads go into one large buffer per connection that is never zero-filled again after
//! it is allocated ([`super::frames::FrameReader`]); frames are decoded and parsed in
//! place in it (simd-json rewrites the text where it lies), so one socket read carries
//! as many frames as arrived, and no frame is copied.
//!
//! Runs on: a shard core's glommio executor, as one task per connection. Owns: its socket,
//! its read buffer and its parser. In: frames from the exchange. Out: events applied to
//! the shard's [`ShardState`] on the same thread, and a [`SessionEnd`] that tells the pool
//! why it stopped. The pool ([`super::pool`]) watches [`ConnHandle`] to rotate and
//! reconnect.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::rustls;
use glommio::net::TcpStream;

use super::frames::{self, Frame, FrameError, FrameReader};
use super::protocol::{Answer, SendWindow, Subscriptions};
use crate::backoff::Backoff;
use crate::clock::mono_ns;
use crate::config::FeedConfig;
use crate::consumer::LocalEvent;
use crate::shard::ShardState;
use crate::wire::{Event, Message, ParseError, Parser, ReplyResult, RequestId, TimeUnit};

/// How long a TCP connect, TLS and WebSocket handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A SUBSCRIBE not acknowledged within this is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Resending a SUBSCRIBE this many times without an answer ends the connection.
/// (A request the exchange answers with an error is retried without limit: it is
/// answering, and the refused streams are named in `/readyz` meanwhile.)
pub const MAX_SUBSCRIBE_RETRIES: u32 = 3;
/// Bytes one socket read may bring: a burst of a thousand kline frames (~330 bytes
/// each) in one read. Allocated once per connection and never zero-filled again.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;
/// The longest a quiet connection sleeps: a backstop only. It wakes for every deadline
/// it watches (a paced or retried request, an overdue answer, the silence watchdog, the
/// age limit), and its supervisor wakes it to close; a quiet feed should not cost a
/// wake-up every few milliseconds.
const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// Messages handled back to back before the task looks at its timers again; bounds the
/// time a busy connection can go without checking its watchdog or yielding.
const READ_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("bad BINANCE_WS_URL {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("cannot use the CA file {path} (feed.tls_ca_file): {why}")]
    CaFile { path: String, why: String },
    #[error("the engine is stopping")]
    Stopped,
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The request URL, `ws(s)://host:port/stream[?timeUnit=MICROSECOND]`.
    pub url: String,
    pub time_unit: TimeUnit,
}

impl Endpoint {
    /// Builds the combined-stream endpoint from `BINANCE_WS_URL` (a base such as
    /// `wss://stream.binance.com:9443`, or one that already ends in `/stream`).
    pub fn new(base: &str, microseconds: bool) -> Result<Endpoint, FeedError> {
        let bad = |why| FeedError::BadUrl {
            url: base.to_string(),
            why,
        };
        let (tls, rest) = if let Some(r) = base.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = base.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        let path = if path.is_empty() { "/stream" } else { path };
        let mut url = format!("{}://{}{}", if tls { "wss" } else { "ws" }, authority, path);
        if microseconds {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("timeUnit=MICROSECOND");
        }
        Ok(Endpoint {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            url,
            time_unit: if microseconds {
                TimeUnit::Microsecond
            } else {
                TimeUnit::Millisecond
            },
        })
    }
}

/// TLS client settings: the built-in (webpki) root certificates, plus the certificates
/// of `extra_ca_file` (PEM) when given. Reads the file, so call it off the executors.
pub fn tls_config(
    extra_ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, FeedError> {
    let roots = crate::tls::client_roots(extra_ca_file).map_err(|e| FeedError::CaFile {
        path: e.path.display().to_string(),
        why: e.why,
    })?;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FeedError::Tls {
            host: String::new(),
            source: std::io::Error::other(e),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The byte stream under the WebSocket: plain TCP or TLS over TCP.
pub enum FeedStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for FeedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            FeedStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            FeedStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for FeedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            FeedStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            FeedStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FeedStream::Plain(s) => Pin::new(s).poll_flush(cx),
            FeedStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FeedStream::Plain(s) => Pin::new(s).poll_close(cx),
            FeedStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A connected exchange WebSocket: the stream, the frame reader over its read buffer,
/// and the bytes of outgoing frames (masked, as a client's must be).
pub struct FeedSocket {
    stream: FeedStream,
    reader: FrameReader,
    out: Vec<u8>,
}

impl FeedSocket {
    /// Sends one text frame (a SUBSCRIBE request).
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        frames::text(&mut self.out, text);
        self.write_out().await
    }

    /// Sends a close frame (best effort: the caller bounds the wait).
    pub async fn close(&mut self, code: u16) -> std::io::Result<()> {
        frames::close(&mut self.out, code, "");
        self.write_out().await
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        let result = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        }
        .await;
        self.out.clear();
        result
    }

    /// Reads what the socket has into the frame buffer; Ok(0) at the end of the stream.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let n = self.stream.read(self.reader.spare()).await?;
        self.reader.filled(n);
        Ok(n)
    }
}

/// Opens the socket and completes TLS and the WebSocket handshake, within [`CONNECT_TIMEOUT`].
pub async fn connect(
    ep: &Endpoint,
    feed: &FeedConfig,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<FeedSocket, FeedError> {
    let attempt = async {
        let addr = resolve(&ep.host, ep.port).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| FeedError::Connect {
                addr,
                source: e.into(),
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = if ep.tls {
            let name = rustls::pki_types::ServerName::try_from(ep.host.clone()).map_err(|_| {
                FeedError::BadUrl {
                    url: ep.url.clone(),
                    why: "the host is not a valid TLS server name",
                }
            })?;
            let tls = futures_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|source| FeedError::Tls {
                    host: ep.host.clone(),
                    source,
                })?;
            FeedStream::Tls(Box::new(tls))
        } else {
            FeedStream::Plain(tcp)
        };
        handshake(ep, stream, feed).await
    };
    let timeout = async {
        glommio::timer::sleep(CONNECT_TIMEOUT).await;
        Err(FeedError::Timeout(CONNECT_TIMEOUT))
    };
    future::or(attempt, timeout).await
}

/// The frame reader of a feed connection: a frame or message over
/// `feed.max_frame_bytes` fails the read (a capacity error), which ends the session;
/// the pool reconnects with backoff.
pub fn frame_reader(feed: &FeedConfig) -> FrameReader {
    FrameReader::new(
        READ_BUFFER_BYTES,
        feed.max_frame_bytes,
        feed.max_frame_bytes,
    )
}

/// The client's opening handshake (RFC 6455 §4.1) on a connected stream; the bytes
/// after the server's response head are the first frames and stay in the reader.
async fn handshake(
    ep: &Endpoint,
    mut stream: FeedStream,
    feed: &FeedConfig,
) -> Result<FeedSocket, FeedError> {
    let bad = |why: String| FeedError::Handshake(why);
    let authority = if (ep.tls && ep.port == 443) || (!ep.tls && ep.port == 80) {
        ep.host.clone()
    } else if ep.host.contains(':') {
        format!("[{}]:{}", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.host, ep.port)
    };
    let path = ep
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let key = frames::new_key();
    let request = frames::client_handshake_request(&authority, path, &key);
    stream
        .write_all(&request)
        .await
        .map_err(|e| bad(e.to_string()))?;
    stream.flush().await.map_err(|e| bad(e.to_string()))?;
    let mut reader = frame_reader(feed);
    loop {
        match frames::parse_handshake_response(reader.pending(), &key) {
            Ok(Some(head)) => {
                reader.discard(head);
                break;
            }
            Ok(None) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        let n = stream
            .read(reader.spare())
            .await
            .map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            return Err(bad("the server closed the connection".into()));
        }
        reader.filled(n);
    }
    Ok(FeedSocket {
        stream,
        reader,
        out: Vec::with_capacity(4096),
    })
}

/// Resolves a host name off the executor: DNS lookups block, so they run on glommio's
/// blocking-thread pool. IP literals skip the lookup.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, FeedError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let name = host.to_string();
    let lookup = glommio::executor()
        .spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|mut a| a.next())
        })
        .await;
    match lookup {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(FeedError::Resolve {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }),
        Err(source) => Err(FeedError::Resolve {
            host: host.to_string(),
            source,
        }),
    }
}

/// Why a connection rotates (make-before-break).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateReason {
    ServerShutdown,
    MaxAge,
}

/// Lifecycle of a connection, as the pool sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Subscribing,
    /// Every subscription acknowledged.
    Live,
    Ended,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The pool asked it to close (rotation done, or shutdown).
    Requested,
    /// The server closed it: a close frame, or the end of the stream without one.
    ServerClosed { close_frame: bool },
    /// Nothing arrived for the watchdog's timeout.
    Silent,
    /// Subscriptions were never acknowledged.
    SubscribeFailed,
    /// A read or write failed (reset, oversized frame, protocol error); `reason` is its
    /// label in [`crate::metrics::RESET_REASONS`].
    Error {
        reason: &'static str,
        detail: String,
    },
}

impl SessionEnd {
    fn io(e: std::io::Error) -> SessionEnd {
        SessionEnd::Error {
            reason: "io_error",
            detail: e.to_string(),
        }
    }

    fn frame(e: FrameError) -> SessionEnd {
        SessionEnd::Error {
            reason: frame_error_reason(&e),
            detail: e.to_string(),
        }
    }

    /// The reset reason this end is counted under (none for our own request).
    pub fn reset_reason(&self) -> Option<&'static str> {
        match self {
            SessionEnd::Requested => None,
            SessionEnd::ServerClosed { close_frame: true } => Some("server_close"),
            SessionEnd::ServerClosed { close_frame: false } => Some("end_of_stream"),
            SessionEnd::Silent => Some("silence_timeout"),
            SessionEnd::SubscribeFailed => Some("subscribe_failed"),
            SessionEnd::Error { reason, .. } => Some(reason),
        }
    }
}

/// The reset reason (a label of [`crate::metrics::RESET_REASONS`]) of a frame the
/// reader refused.
pub fn frame_error_reason(e: &FrameError) -> &'static str {
    match e {
        FrameError::Capacity { .. } => "oversized_frame",
        FrameError::Utf8 => "bad_utf8",
        FrameError::Protocol(what) => {
            if *what == "reserved opcode" {
                "reserved_opcode"
            } else if what.starts_with("reserved bits") {
                "reserved_bits"
            } else if what.starts_with("masked frame") {
                "masked_frame"
            } else if what.contains("control frame") && !what.starts_with("close") {
                "bad_control_frame"
            } else if what.contains("fragmented") || what.contains("continuation") {
                "bad_fragmentation"
            } else if what.contains("close") {
                "bad_close_frame"
            } else {
                "protocol_other"
            }
        }
    }
}

/// Shared between a connection task and its pool supervisor (same thread).
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub phase: Cell<Phase>,
    pub rotate: Cell<Option<RotateReason>>,
    pub close: Cell<bool>,
    pub connected_at: Instant,
    /// The exchange announced `serverShutdown` on this connection: its end is a
    /// rotation the exchange started, not a failure.
    pub server_shutdown: Cell<bool>,
    /// Exchange time of the first and latest event on this connection, µs (0 = none yet).
    pub first_event_us: Cell<i64>,
    pub last_event_us: Cell<i64>,
    pub end: RefCell<Option<SessionEnd>>,
    /// Rung by the connection when its supervisor has something to look at: its phase
    /// changed, it asks for a rotation, its first event came.
    pub changed: LocalEvent,
    /// Rung by the supervisor when it closes the connection.
    wake: LocalEvent,
}

impl ConnHandle {
    pub fn new(id: u64) -> ConnHandle {
        ConnHandle {
            id,
            phase: Cell::new(Phase::Subscribing),
            rotate: Cell::new(None),
            close: Cell::new(false),
            connected_at: Instant::now(),
            server_shutdown: Cell::new(false),
            first_event_us: Cell::new(0),
            last_event_us: Cell::new(0),
            end: RefCell::new(None),
            changed: LocalEvent::new(),
            wake: LocalEvent::new(),
        }
    }

    /// Asks the connection to close, and wakes it to do so.
    pub fn request_close(&self) {
        self.close.set(true);
        self.wake.notify();
    }

    /// The supervisor could not make a replacement live: the connection may ask for a
    /// rotation again, and is woken to watch its age limit again.
    pub fn rotation_failed(&self) {
        self.rotate.set(None);
        self.wake.notify();
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
        self.changed.notify();
    }

    fn ask_rotation(&self, reason: RotateReason) {
        self.rotate.set(Some(reason));
        self.changed.notify();
    }
}

/// Everything a session needs from its shard.
pub struct SessionCtx {
    pub shard: Rc<RefCell<ShardState>>,
    pub feed: FeedConfig,
    pub time_unit: TimeUnit,
    /// Request ids are unique per shard, across connections.
    pub next_request_id: Rc<Cell<u64>>,
}

/// Runs one connected socket until it ends; records the reason in `handle`.
pub async fn run_session(
    mut ws: FeedSocket,
    streams: Vec<String>,
    ctx: &SessionCtx,
    handle: &ConnHandle,
) -> SessionEnd {
    let mut acked = Vec::new();
    let end = session_loop(&mut ws, streams, ctx, handle, &mut acked).await;
    let stats = ctx.shard.borrow().stats().clone();
    if handle.phase.get() == Phase::Live {
        stats.connections_live.dec();
    }
    // The streams this connection carried are no longer live on it.
    if let Some(table) = stats.streams.get() {
        for i in acked {
            table[i].live_on.dec();
        }
    }
    // A close after `serverShutdown` is the exchange's announced rotation, not a reset.
    let announced = handle.server_shutdown.get() && matches!(end, SessionEnd::ServerClosed { .. });
    if let Some(reason) = end.reset_reason().filter(|_| !announced) {
        stats.reset(reason);
    }
    // Best effort: tell the server we are going, without waiting long for it.
    if matches!(
        end,
        SessionEnd::Requested | SessionEnd::Silent | SessionEnd::SubscribeFailed
    ) {
        let _ = future::or(
            async { ws.close(frames::CLOSE_NORMAL).await.map_err(|_| ()) },
            async {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                Err(())
            },
        )
        .await;
    }
    *handle.end.borrow_mut() = Some(end.clone());
    handle.set_phase(Phase::Ended);
    end
}

async fn session_loop(
    ws: &mut FeedSocket,
    streams: Vec<String>,
    ctx: &SessionCtx,
    handle: &ConnHandle,
    acked_streams: &mut Vec<usize>,
) -> SessionEnd {
    let feed = &ctx.feed;
    let stats = ctx.shard.borrow().stats().clone();
    let table = stats.streams.get();
    // Stream name → index in the shard's stream table (control path: acks, rejections).
    let index: std::collections::HashMap<&str, usize> = table
        .map(|t| {
            t.iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    let mut parser = Parser::new(ctx.time_unit);
    let mut subs = Subscriptions::new(
        &streams,
        feed.subscribe_batch_bytes,
        &ctx.next_request_id,
        Backoff::new(
            Duration::from_millis(feed.backoff_initial_ms),
            Duration::from_millis(feed.backoff_max_ms),
            Duration::from_secs_f64(feed.backoff_stable_s),
        ),
    );
    let mut window = SendWindow::new(feed.max_outgoing_msgs_per_s);
    let mut acked = 0usize;
    let silence = Duration::from_secs_f64(feed.silence_timeout_s);
    let rotate_at = rotate_age(feed.max_connection_age_s, feed.rotate_before_s);
    let mut last_rx = Instant::now();
    let mut tick = glommio::timer::Timer::new(LONGEST_WAIT);
    let mut tick_at = Instant::now() + LONGEST_WAIT;
    let mut unknown_fields_seen = 0u64;
    // When the latest socket read completed (mono ns): the receive time of every frame
    // it completed. One clock read per read, and frames waiting behind others in a big
    // read show that wait in `recv_to_parsed`, not in `exchange_to_recv`.
    let mut read_ns = mono_ns();

    loop {
        if handle.close.get() {
            return SessionEnd::Requested;
        }
        let now = Instant::now();

        // Send the next SUBSCRIBE batch when the pacing window allows it.
        if let Some(req) = subs.next() {
            if window.request_delay(now).is_zero() {
                if let Err(e) = ws.send_text(&req.text).await {
                    return SessionEnd::io(e);
                }
                window.record(Instant::now());
                stats.subscribe_requests.inc();
                if !subs.sent(Instant::now()) {
                    // More requests in flight than any subscription plan needs:
                    // acknowledgements have stopped coming.
                    return SessionEnd::SubscribeFailed;
                }
            }
        }
        let (retried, resent) = subs.due(now, ACK_TIMEOUT, &ctx.next_request_id);
        stats.rejection_retries.add(retried as u64);
        stats.subscribe_retries.add(resent as u64);
        if subs.timeouts > MAX_SUBSCRIBE_RETRIES {
            return SessionEnd::SubscribeFailed;
        }
        if now.saturating_duration_since(last_rx) >= silence {
            stats.silent_drops.inc();
            return SessionEnd::Silent;
        }
        if handle.rotate.get().is_none()
            && now.saturating_duration_since(handle.connected_at) >= rotate_at
        {
            handle.ask_rotation(RotateReason::MaxAge);
        }
        // Hands the records of the last batch to the sinks (one wake-up per sink per
        // batch), and pauses reading while never-lost records wait at their bound.
        if ctx.shard.borrow_mut().flush(mono_ns()) > 0 && ctx.shard.borrow().backpressured() {
            // Never-lost records are waiting at their bound: stop reading (TCP
            // backpressure) until the sink drains the ring.
            stats.backpressure_pauses.inc();
            // Not reading is our choice, not the exchange's silence.
            last_rx = Instant::now();
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        }

        // Handle what the last read brought, at most READ_BATCH messages before the
        // timers and the flush above get a look.
        let mut handled = 0;
        while handled < READ_BATCH && !handle.close.get() {
            let frame = match ws.reader.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return SessionEnd::frame(e),
            };
            handled += 1;
            if let Frame::Text(text) = &frame {
                stats.messages.inc();
                stats.bytes.add(text.len() as u64);
            }
            let recv_ns = read_ns;
            match receive(&mut parser, frame, &mut ws.out) {
                Received::Frame(parsed) => {
                    match parsed {
                        Ok(Message::Event { event, .. }) => {
                            on_event(ctx, handle, &event, recv_ns);
                        }
                        Ok(Message::Reply { id, result }) => {
                            if let (RequestId::Number(id), ReplyResult::Null) = (id, result) {
                                if let Answer::Acked(streams) = subs.ack(id) {
                                    stats.subscribe_acks.inc();
                                    stats.streams_subscribed.add(streams.len() as u64);
                                    acked += streams.len();
                                    for name in &streams {
                                        if let (Some(&i), Some(t)) =
                                            (index.get(name.as_str()), table)
                                        {
                                            t[i].acknowledged(recv_ns);
                                            acked_streams.push(i);
                                        }
                                    }
                                }
                            }
                        }
                        Ok(Message::Error { id, code, msg }) => {
                            // The exchange refused a request as a whole: split it, so
                            // the streams it accepts go live at once, and ask for a
                            // refused stream again after a backoff (see `Subscriptions`).
                            stats.subscribe_errors.inc();
                            let answer = match id {
                                Some(RequestId::Number(id)) => subs.reject(
                                    id,
                                    Instant::now(),
                                    fastrand::f64(),
                                    &ctx.next_request_id,
                                ),
                                _ => Answer::Unknown,
                            };
                            match answer {
                                Answer::Rejected { streams, retry_in } => {
                                    if retry_in.is_some() {
                                        stats.streams_rejected.add(streams.len() as u64);
                                        for name in &streams {
                                            if let (Some(&i), Some(t)) =
                                                (index.get(name.as_str()), table)
                                            {
                                                t[i].rejected_with(code, msg);
                                            }
                                        }
                                    } else {
                                        stats.rejection_retries.add(2);
                                    }
                                    tracing::warn!(
                                        code,
                                        msg,
                                        ?streams,
                                        ?retry_in,
                                        "exchange rejected a SUBSCRIBE"
                                    );
                                }
                                _ => tracing::warn!(code, msg, "exchange rejected a request"),
                            }
                        }
                        Err(e) => stats.parse_error(e.reason()),
                    }
                    if subs.settled() && handle.phase.get() == Phase::Subscribing {
                        if acked == 0 {
                            return SessionEnd::SubscribeFailed;
                        }
                        handle.set_phase(Phase::Live);
                        stats.connections_live.inc();
                    }
                    // Parser counters are cumulative per connection; publish the deltas.
                    let p = &parser.stats;
                    stats
                        .unknown_fields
                        .add(p.unknown_fields - unknown_fields_seen);
                    unknown_fields_seen = p.unknown_fields;
                }
                Received::Binary => stats.binary_frames.inc(),
                Received::Ping => {
                    // The pong (same payload) is queued in `ws.out`: send it now.
                    if let Err(e) = ws.write_out().await {
                        return SessionEnd::io(e);
                    }
                    window.record(Instant::now());
                    stats.pings_answered.inc();
                }
                Received::Ignored => {}
                Received::Close => return SessionEnd::ServerClosed { close_frame: true },
            }
        }
        if handled > 0 {
            // One clock read per batch feeds the watchdog (not one per message).
            last_rx = Instant::now();
            continue;
        }

        // Nothing buffered: wait for the socket, at most until the next deadline: a
        // paced request, a retry or an overdue answer, the silence watchdog, the age
        // limit. The supervisor's close request wakes it too.
        let now = Instant::now();
        let mut wait = if subs.next().is_none() {
            LONGEST_WAIT
        } else {
            window
                .request_delay(now)
                .clamp(Duration::from_millis(1), LONGEST_WAIT)
        };
        let rotation = handle
            .rotate
            .get()
            .is_none()
            .then_some(handle.connected_at + rotate_at);
        let deadlines = [
            subs.next_due(ACK_TIMEOUT),
            Some(last_rx + silence),
            rotation,
        ];
        for at in deadlines.into_iter().flatten() {
            wait = wait.min(
                at.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        // One timer lives across iterations and is re-armed only when it fires or must
        // fire sooner: creating and cancelling a timer per read cost more kernel time
        // (io_uring timeout re-arming) than parsing the messages.
        if tick_at <= now || tick_at > now + wait {
            tick_at = now + wait;
            tick.reset(wait);
        }
        let read = future::or(async { Some(ws.read_more().await) }, async {
            future::or(
                async {
                    (&mut tick).await;
                    tick_at = Instant::now();
                },
                handle.wake.wait(),
            )
            .await;
            None
        })
        .await;
        match read {
            None => {}
            Some(Ok(0)) => return SessionEnd::ServerClosed { close_frame: false },
            Some(Ok(_)) => {
                read_ns = mono_ns();
                last_rx = Instant::now();
            }
            Some(Err(e)) => return SessionEnd::io(e),
        }
    }
}

/// What one message from the exchange means to a session; see [`receive`].
// Most messages are text frames, so the large variant is the usual one; boxing it would
// allocate per message on the hot path. The value only lives for one call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Received<'a> {
    /// A text frame, decoded, or why it could not be (counted; the connection stays).
    Frame(Result<Message<'a>, ParseError>),
    /// A binary frame: Binance sends none. Counted and skipped; the connection stays.
    Binary,
    /// A ping: its pong (same payload) is queued in the session's output; send it now.
    Ping,
    /// The server's close frame: the session ends.
    Close,
    /// A pong: nothing to do.
    Ignored,
}

/// Decides what one received frame means, without touching the socket: a text frame is
/// parsed where it lies in the read buffer (the parser rewrites it in place); a ping's
/// pong is appended to `out`. Frames the reader refused (invalid UTF-8 in a text frame,
/// over the size limits, protocol violations) never get here: they end the read with an
/// error, and the session.
pub fn receive<'a>(parser: &'a mut Parser, frame: Frame<'a>, out: &mut Vec<u8>) -> Received<'a> {
    match frame {
        Frame::Text(text) => Received::Frame(parser.parse(text)),
        Frame::Binary(_) => Received::Binary,
        Frame::Ping(payload) => {
            frames::pong(out, payload);
            Received::Ping
        }
        Frame::Close(_) => Received::Close,
        Frame::Pong(_) => Received::Ignored,
    }
}

/// The age at which a connection starts its make-before-break rotation: `rotate_before_s`
/// ahead of the age limit (validated smaller than the limit), leaving time to connect,
/// subscribe and overlap before the exchange cuts the old connection.
pub fn rotate_age(max_age_s: f64, rotate_before_s: f64) -> Duration {
    Duration::from_secs_f64((max_age_s - rotate_before_s).max(0.5))
}

fn on_event(ctx: &SessionCtx, handle: &ConnHandle, event: &Event<'_>, recv_ns: u64) {
    let event_us = match event {
        Event::Kline(c) => c.event_time_us,
        Event::Trade(t) => t.event_time_us,
        Event::AggTrade(t) => t.event_time_us,
        Event::DepthUpdate(d) => d.event_time_us,
        Event::ServerShutdown { event_time_us } => {
            handle.server_shutdown.set(true);
            handle.ask_rotation(RotateReason::ServerShutdown);
            *event_time_us
        }
        _ => 0,
    };
    if event_us > 0 {
        if handle.first_event_us.get() == 0 {
            handle.first_event_us.set(event_us);
            handle.changed.notify();
        }
        handle.last_event_us.set(event_us);
    }
    ctx.shard.borrow_mut().on_event(event, recv_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_base_urls() {
        let e = Endpoint::new("wss://stream.binance.com:9443", false).unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("stream.binance.com", 9443));
        assert_eq!(e.url, "wss://stream.binance.com:9443/stream");
        let e = Endpoint::new("ws://127.0.0.1:9443/stream/", true).unwrap();
        assert!(!e.tls);
        assert_eq!(e.url, "ws://127.0.0.1:9443/stream?timeUnit=MICROSECOND");
        assert_eq!(e.time_unit, TimeUnit::Microsecond);
        let e = Endpoint::new("wss://example.org", false).unwrap();
        assert_eq!(e.port, 443);
        let e = Endpoint::new("ws://[::1]:9000", false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert!(Endpoint::new("http://x", false).is_err());
        assert!(Endpoint::new("ws://:12", false).is_err());
        assert!(Endpoint::new("ws://host:port", false).is_err());
    }
}
