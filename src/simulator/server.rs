//! The simulator's I/O: one glommio listener serving HTTP/1.1 REST and WebSocket
//! upgrades on the same port, the task that drives the market clock, and the
//! housekeeping task (pings, timeouts, faults, stop).
//!
//! Runs on: the simulator's own glommio `LocalExecutor` thread (unpinned). Owns: the
//! listener and every client socket. In: TCP connections. Out: bytes on those sockets;
//! all state lives in the [`Hub`], which the tasks borrow only between `.await`s.
//!
//! Each WebSocket connection runs three futures raced in one task: a reader (client
//! messages into the hub), a writer (the hub's output buffer onto the socket, one
//! `send` per batch of frames) and a watcher that ends the connection when the hub
//! drops it.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::{or, poll_fn, yield_now};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::sleep;

use super::clock::SimClock;
use super::http::{parse_head, write_upgrade, HttpError, RequestHead, Response, MAX_BODY_BYTES};
use super::hub::{parse_ws_target, Hub, Output, Settings};
use super::market::Market;
use super::replay::Playback;
use super::stats::Counters;
use super::ws::{Decoder, MAX_INCOMING_MESSAGE_BYTES};

/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Initial size of a connection's write buffer.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// A write buffer that grew past this during a burst is released afterwards, so an idle
/// connection does not keep a burst's memory.
const SHRINK_ABOVE_BYTES: usize = 8 * 1024 * 1024;
/// How often pings, pong timeouts, connection ages, faults and the stop flag are checked.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(10);
/// Aggregate trades and timer instants generated per slice before other tasks run, so a
/// backlog (after a stall of the process, or at extreme rates) is sent in bursts without
/// holding the core.
const MARKET_SLICE_STEPS: usize = 20_000;
/// The market task sleeps at most this long, so a new replay subscriber or a stop is
/// noticed promptly.
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(50);
/// The market task renders the events of an instant this long before it and holds them
/// until it comes (`Hub::advance_market`), so a burst leaves at its time in one write
/// per connection instead of one rendering after the other.
const RENDER_AHEAD: Duration = Duration::from_millis(1);
/// The market task sleeps on a timer until this long before held events are due (or a
/// replayed frame), then yields until they are: a timer wake-up comes tens to hundreds
/// of microseconds late on a busy or virtualised host, and every system measured
/// against the simulator would see that lateness as its own latency. Bounded: at most
/// this much spinning per due time.
const SPIN_BEFORE_DUE: Duration = Duration::from_micros(200);
/// An HTTP keep-alive connection idle this long is closed.
const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// After sending a close frame, how long to wait for the client to close its side.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How long `stop` waits for connection tasks to unwind.
const STOP_GRACE: Duration = Duration::from_millis(20);

/// What the executor thread needs to start.
pub struct Startup {
    pub listen: SocketAddr,
    pub settings: Settings,
    pub clock: SimClock,
    pub market: Option<Market>,
    pub playback: Option<Playback>,
    pub weight_limit: u32,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    pub ready: mpsc::Sender<Result<SocketAddr, String>>,
}

/// The executor's main future: listens until the stop flag is set.
pub async fn run(startup: Startup) {
    let listener = match TcpListener::bind(startup.listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = startup.ready.send(Err(e.to_string()));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = startup.ready.send(Err(e.to_string()));
            return;
        }
    };
    let hub = Rc::new(RefCell::new(Hub::new(
        startup.settings,
        startup.clock,
        startup.market,
        startup.playback,
        startup.weight_limit,
        startup.counters.clone(),
    )));
    glommio::spawn_local(drive_market(hub.clone())).detach();
    glommio::spawn_local(housekeeping(hub.clone(), startup.stop)).detach();
    // Report readiness only once the tasks exist, so the first client is served at once.
    let _ = startup.ready.send(Ok(addr));
    loop {
        let accepted = or(async { Some(listener.accept().await) }, async {
            poll_fn(|cx| hub.borrow_mut().poll_stop(cx)).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(serve(hub.clone(), stream, startup.counters.clone())).detach();
            }
            Some(Err(e)) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "simulator accept failed");
                sleep(Duration::from_millis(10)).await;
            }
        }
    }
    sleep(STOP_GRACE).await;
}

/// Advances the market (or the replay) to the present, then sleeps until the next
/// event is due. The schedule is open-loop: event times come from the market, never
/// from how fast clients read.
async fn drive_market(hub: Rc<RefCell<Hub>>) {
    loop {
        let (caught_up, next_due) = {
            let mut h = hub.borrow_mut();
            if h.stopping() {
                return;
            }
            let now = Instant::now();
            let caught_up = h.advance_market(now, RENDER_AHEAD, MARKET_SLICE_STEPS);
            // A replayed frame is due when it is sent: on time.
            let replay_due = h.advance_replay(now).map(|at| (at, true));
            let market_due = h.next_market_due(RENDER_AHEAD);
            let next = match (replay_due, market_due) {
                (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                (a, b) => a.or(b),
            };
            (caught_up, next)
        };
        if !caught_up {
            yield_now().await;
            continue;
        }
        let now = Instant::now();
        let (due, on_time) = next_due.unwrap_or((now + MAX_IDLE_SLEEP, false));
        let wait = due.saturating_duration_since(now);
        let early = if on_time {
            SPIN_BEFORE_DUE
        } else {
            Duration::ZERO
        };
        if wait > early {
            sleep((wait - early).min(MAX_IDLE_SLEEP)).await;
        } else {
            yield_now().await;
        }
    }
}

async fn housekeeping(hub: Rc<RefCell<Hub>>, stop: Arc<AtomicBool>) {
    loop {
        sleep(HOUSEKEEPING_PERIOD).await;
        let mut h = hub.borrow_mut();
        if stop.load(Ordering::Acquire) {
            h.stop();
            return;
        }
        h.housekeep(Instant::now());
    }
}

/// A socket shared by a connection's reader and writer futures. Each poll borrows the
/// stream only for the duration of that poll; glommio keeps separate read and write
/// readiness sources, so a pending read and a pending write coexist.
#[derive(Clone)]
struct SharedStream(Rc<RefCell<TcpStream>>);

fn busy() -> io::Error {
    io::Error::other("socket already in use by another poll")
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut s) => Pin::new(&mut *s).poll_read(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.try_borrow_mut() {
            Ok(mut s) => Pin::new(&mut *s).poll_write(cx, buf),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut s) => Pin::new(&mut *s).poll_flush(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }

    /// Shuts down the write side (FIN), keeping the read side open.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.try_borrow_mut() {
            Ok(mut s) => Pin::new(&mut *s).poll_close(cx),
            Err(_) => Poll::Ready(Err(busy())),
        }
    }
}

/// Reads up to `chunk.len()` bytes, or `None` on EOF, error or idle timeout.
async fn read_some(
    io: &mut SharedStream,
    chunk: &mut [u8],
    timeout: Option<Duration>,
) -> Option<usize> {
    let read = async {
        match io.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    };
    match timeout {
        None => read.await,
        Some(t) => {
            or(read, async {
                sleep(t).await;
                None
            })
            .await
        }
    }
}

/// Reads one request head (and skips its body). `Ok(None)`: the client went away.
async fn read_request(
    io: &mut SharedStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<Option<RequestHead>, HttpError> {
    loop {
        if let Some((head, len)) = parse_head(buf)? {
            buf.drain(..len);
            if head.content_length > MAX_BODY_BYTES {
                return Err(HttpError::Malformed("request body too large".into()));
            }
            while buf.len() < head.content_length {
                match read_some(io, chunk, Some(HTTP_IDLE_TIMEOUT)).await {
                    Some(n) => buf.extend_from_slice(&chunk[..n]),
                    None => return Ok(None),
                }
            }
            buf.drain(..head.content_length);
            return Ok(Some(head));
        }
        match read_some(io, chunk, Some(HTTP_IDLE_TIMEOUT)).await {
            Some(n) => buf.extend_from_slice(&chunk[..n]),
            None => return Ok(None),
        }
    }
}

/// Serves one TCP connection: REST requests (keep-alive) until a WebSocket upgrade.
async fn serve(hub: Rc<RefCell<Hub>>, stream: TcpStream, counters: Arc<Counters>) {
    let ip = stream
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    // Small frames must leave at once; batching happens in the write buffer instead.
    let _ = stream.set_nodelay(true);
    let mut io = SharedStream(Rc::new(RefCell::new(stream)));
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_request(&mut io, &mut buf, &mut chunk).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let status = if e == HttpError::TooLarge { 431 } else { 400 };
                out.clear();
                Response::error(status, -1000, &e.to_string()).write_to(&mut out, true);
                let _ = io.write_all(&out).await;
                return;
            }
        };
        if head.wants_websocket {
            websocket(hub, io, head, buf, counters).await;
            return;
        }
        let response = hub.borrow_mut().rest(&head, ip);
        out.clear();
        response.write_to(&mut out, head.close);
        if io.write_all(&out).await.is_err() || head.close {
            return;
        }
    }
}

/// Writes an HTTP error and ends the connection (a refused upgrade).
async fn refuse(io: &mut SharedStream, response: Response) {
    let mut out = Vec::with_capacity(256);
    response.write_to(&mut out, true);
    let _ = io.write_all(&out).await;
}

async fn websocket(
    hub: Rc<RefCell<Hub>>,
    mut io: SharedStream,
    head: RequestHead,
    buf: Vec<u8>,
    counters: Arc<Counters>,
) {
    let Some(target) = parse_ws_target(&head.path, &head.query) else {
        return refuse(
            &mut io,
            Response::error(404, -1000, "Unknown WebSocket path."),
        )
        .await;
    };
    let Some(key) = head
        .websocket_key
        .as_deref()
        .filter(|_| head.method == "GET")
    else {
        return refuse(
            &mut io,
            Response::error(400, -1000, "Bad WebSocket handshake."),
        )
        .await;
    };
    if head.websocket_version.as_deref() != Some("13") {
        let mut r = Response::error(426, -1000, "Unsupported WebSocket version.");
        r.headers.push(("Sec-WebSocket-Version", "13".into()));
        return refuse(&mut io, r).await;
    }
    let (resolved, max_streams) = {
        let mut h = hub.borrow_mut();
        let resolved = if target.combined {
            h.resolve_all(&target.streams)
        } else {
            Ok(h.resolve_known(&target.streams))
        };
        (resolved, h.max_streams())
    };
    let streams = match resolved {
        Ok(s) if s.len() <= max_streams => s,
        Ok(s) => {
            let msg = format!(
                "{} streams requested; at most {max_streams} per connection.",
                s.len()
            );
            return refuse(&mut io, Response::error(400, -1000, &msg)).await;
        }
        Err(name) => {
            let msg = format!("Invalid stream name: {name}");
            return refuse(&mut io, Response::error(400, -1000, &msg)).await;
        }
    };
    let mut out = Vec::with_capacity(256);
    write_upgrade(&mut out, key);
    if io.write_all(&out).await.is_err() {
        return;
    }
    let id = hub.borrow_mut().register(&target, streams, Instant::now());
    let reader = reader_loop(hub.clone(), id, io.clone(), buf);
    let writer = writer_loop(hub.clone(), id, io, counters);
    let killed = poll_fn(|cx| hub.borrow_mut().poll_killed(id, cx));
    or(writer, or(reader, killed)).await;
    hub.borrow_mut().unregister(id);
}

/// Client messages into the hub. Returns when the client closes its side (or breaks the
/// protocol); after the hub starts closing, further input is read and discarded.
async fn reader_loop(hub: Rc<RefCell<Hub>>, id: usize, mut io: SharedStream, mut buf: Vec<u8>) {
    let mut decoder = Decoder::default();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut draining = false;
    loop {
        while !draining {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    let mut h = hub.borrow_mut();
                    h.on_message(id, message, Instant::now());
                    draining = !h.accepts_input(id);
                }
                Ok(None) => break,
                Err(e) => {
                    hub.borrow_mut().on_protocol_error(id, &e);
                    draining = true;
                }
            }
        }
        if draining {
            buf.clear();
        }
        let Some(n) = read_some(&mut io, &mut chunk, None).await else {
            return;
        };
        if !draining && buf.len() + n <= 2 * MAX_INCOMING_MESSAGE_BYTES + READ_CHUNK_BYTES {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The hub's output onto the socket: swap the pending buffer out, write it whole.
async fn writer_loop(
    hub: Rc<RefCell<Hub>>,
    id: usize,
    mut io: SharedStream,
    counters: Arc<Counters>,
) {
    let mut spare: Vec<u8> = Vec::with_capacity(WRITE_BUFFER_BYTES);
    loop {
        let step = poll_fn(|cx| hub.borrow_mut().take_output(id, &mut spare, cx)).await;
        match step {
            Output::Write { frames, due } => {
                if io.write_all(&spare).await.is_err() {
                    return;
                }
                if let Some(due) = due {
                    let late = Instant::now().saturating_duration_since(due);
                    counters.send_late.record(late.as_nanos() as u64);
                }
                Counters::add(&counters.frames_sent, frames);
                Counters::add(&counters.bytes_sent, spare.len() as u64);
                spare.clear();
                if spare.capacity() > SHRINK_ABOVE_BYTES {
                    spare = Vec::with_capacity(WRITE_BUFFER_BYTES);
                }
            }
            Output::Finished => {
                let _ = io.close().await;
                sleep(CLOSE_LINGER).await;
                return;
            }
            Output::Killed => return,
        }
    }
}
