//! `alphapulse bench fanout`: how the dashboard core fans out to many WebSocket clients.
//!
//! This process runs the dashboard server ([`crate::dashboard::serve`]) on one glommio
//! executor, exactly as the engine does, with a synthetic feed: a thread injects records
//! into the dashboard's ring at a fixed rate, alternating a signal and a closed candle,
//! each carrying its injection time (wall clock, µs: the signal in its `sent_us`
//! indicator, the candle in its `trades` field). The clients run in a second process
//! (this binary again, `bench fanout-clients`), spread over a few threads, each one
//! readiness loop holding thousands of connections and reading them with the engine's
//! own WebSocket client code; they subscribe to signals and candles and record, per
//! message, receive time minus injection time (same host clock). So the
//! latency includes the ring hop (a doorbell wake-up of the dashboard core), the
//! serialization and framing (once per broadcast), the fan-out, one vectored write per
//! client per wake-up, and both kernels' TCP paths.
//!
//! Printed JSON: delivered messages/s, delivery latency p50/p99/p99.9/max in µs, the
//! server thread's and the client process's CPU per message, the server's RSS per
//! connected client, and the fan-out counters.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use rust_decimal::Decimal;
use serde_json::json;

use crate::clock::wall_us;
use crate::config::Config;
use crate::dashboard::fanout::DashboardStats;
use crate::dashboard::status::StatusContext;
use crate::dashboard::Options;
use crate::harness::ingest::thread_cpu_split;
use crate::market::{Candle, Interval, Symbol};
use crate::message::{Envelope, Record};
use crate::metrics::process_cpu_split;
use crate::ring;
use crate::signals::{Direction, IndicatorValues, Signal, SignalKind};
use crate::store::RecentStore;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// WebSocket clients to connect.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Broadcasts per second (each goes to every client).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured seconds of broadcasting.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Client threads in the client process.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Pin the dashboard executor to this core (default: unpinned).
    #[arg(long)]
    pub core: Option<usize>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address (host:port).
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub clients: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout_s: f64,
}

/// The longest latency the histograms hold (µs); anything slower is clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Records injected per ring push burst cannot exceed the ring; ample for 100/s.
const BENCH_RING: usize = 65_536;

/// A synthetic signal carrying its injection time (`sent_us` indicator).
pub fn synthetic_signal(seq: u64, sent_us: i64) -> Signal {
    let mut indicators = IndicatorValues::new();
    indicators.push("sent_us", sent_us as f64);
    Signal {
        symbol: bench_symbol(),
        interval: Interval::M1,
        kind: SignalKind::EmaCross,
        direction: if seq % 2 == 0 {
            Direction::Buy
        } else {
            Direction::Sell
        },
        confidence: 0.5,
        price: Decimal::new(4_200_000 + (seq % 1000) as i64, 2),
        timestamp_ms: sent_us / 1000,
        event_time_us: sent_us,
        indicators,
    }
}

/// A synthetic candle; its `trades` field carries the injection time (µs).
pub fn synthetic_candle(seq: u64, sent_us: i64, closed: bool) -> Candle {
    let p = Decimal::new(4_200_000 + (seq % 1000) as i64, 2);
    let open_ms = (sent_us / 1000 / 60_000) * 60_000;
    Candle {
        symbol: bench_symbol(),
        interval: Interval::M1,
        open_time_ms: open_ms,
        close_time_ms: open_ms + 59_999,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::ONE,
        quote_volume: p,
        taker_buy_base: Decimal::ONE,
        taker_buy_quote: p,
        trades: sent_us as u64,
        first_trade_id: seq as i64,
        last_trade_id: seq as i64,
        closed,
        event_time_us: sent_us,
    }
}

fn bench_symbol() -> Symbol {
    Symbol::new("BTCUSDT").unwrap_or_else(|_| unreachable!("a valid literal symbol"))
}

/// The injection time (µs) a bench message carries, read without parsing the JSON.
pub fn sent_us_of(text: &str) -> Option<i64> {
    let key = if text.contains("\"type\":\"signal\"") {
        "\"sent_us\":"
    } else {
        "\"trades\":"
    };
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(digits.len());
    digits[..end].parse::<f64>().ok().map(|v| v as i64)
}

/// Raises the soft limit of open files to the hard limit (10,000 sockets need it).
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Kills the client process if the bench ends early.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server side: runs the dashboard, starts the clients, injects, reports.
pub fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let nofile = raise_nofile_limit();
    if (nofile as usize) < args.clients + 64 {
        return Err(anyhow!(
            "the open-file limit is {nofile}, too low for {} clients: raise `ulimit -Hn`",
            args.clients
        ));
    }
    let stop = crate::consumer::Stop::new();
    let stats = Arc::new(DashboardStats::default());
    let (tx, rx) = ring::ring::<Envelope>("bench->dashboard", BENCH_RING);
    let mut opts = Options::from_config(&Config::default())?;
    opts.max_clients = args.clients + 16;
    opts.max_connections_per_ip = args.clients + 16;
    let ctx = Arc::new(StatusContext::detached(
        Arc::new(Mutex::new(RecentStore::new(16))),
        vec![Interval::M1],
    ));
    let (addr_tx, addr_rx) = mpsc::channel();
    let placement = match args.core {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let server = {
        let (stop, stats) = (stop.clone(), stats.clone());
        LocalExecutorBuilder::new(placement)
            .name("dashboard")
            .io_memory(crate::topology::ENGINE_IO_MEMORY_BYTES)
            .spawn(move || async move {
                match glommio::net::TcpListener::bind("127.0.0.1:0") {
                    Ok(l) => {
                        let _ = addr_tx.send(l.local_addr().map_err(|e| e.to_string()));
                        crate::dashboard::serve(l, ctx, vec![rx], opts, stats, stop).await;
                    }
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| anyhow!("cannot start the dashboard executor: {e}"))?
    };
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|e| anyhow!("cannot listen: {e}"))?;
    let rss_idle = rss_bytes();

    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut child = ChildGuard(Some(
        Command::new(exe)
            .args(["bench", "fanout-clients", "--addr", &addr.to_string()])
            .args(["--clients", &args.clients.to_string()])
            .args(["--threads", &args.client_threads.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the client process")?,
    ));
    let stdout = child
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .ok_or_else(|| anyhow!("no client stdout"))?;
    let mut lines = BufReader::new(stdout).lines();

    // The client process says "connected N" once every client has subscribed.
    let connected: usize = match lines.next() {
        Some(Ok(line)) => line
            .strip_prefix("connected ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| anyhow!("client process: {line}"))?,
        _ => return Err(anyhow!("the client process ended before connecting")),
    };
    eprintln!("fanout: {connected} clients connected; broadcasting");
    std::thread::sleep(Duration::from_millis(500));
    let rss_connected = rss_bytes();

    let sent_before = stats.messages_sent.get();
    let cpu_before = thread_cpu_split("dashboard");
    let client_pid = child.0.as_ref().map(Child::id);
    let client_cpu_before = client_pid.and_then(process_cpu_split);
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let mut next = Instant::now();
    let mut seq = 0u64;
    let mut injected = 0u64;
    while started.elapsed().as_secs_f64() < args.seconds {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += period;
        let sent = wall_us();
        let record = if seq % 2 == 0 {
            Record::Signal(synthetic_signal(seq, sent))
        } else {
            Record::ClosedCandle(synthetic_candle(seq, sent, true))
        };
        seq += 1;
        let env = Envelope {
            shard: 0,
            recv_ns: 0,
            parsed_ns: 0,
            record,
        };
        if tx.push(env).is_ok() {
            injected += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last broadcasts arrive, then close the server: the clients then report.
    std::thread::sleep(Duration::from_millis(1000));
    let rss_busy = rss_bytes();
    let sent = stats.messages_sent.get() - sent_before;
    let (user_s, system_s) = match (cpu_before, thread_cpu_split("dashboard")) {
        (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
        _ => (f64::NAN, f64::NAN),
    };
    let cpu_s = user_s + system_s;
    let (client_user_s, client_system_s) =
        match (client_cpu_before, client_pid.and_then(process_cpu_split)) {
            (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
            _ => (f64::NAN, f64::NAN),
        };
    eprintln!("fanout: {injected} broadcasts injected; stopping the server");
    stop.request();
    let _ = server.join();
    eprintln!("fanout: server stopped; waiting for the client report");
    let report: serde_json::Value = match lines.next() {
        Some(Ok(line)) => serde_json::from_str(&line).context("client report")?,
        _ => return Err(anyhow!("the client process ended without a report")),
    };
    if let Some(mut c) = child.0.take() {
        let _ = c.wait();
    }
    let received = report["received"].as_u64().unwrap_or(0);
    let out = json!({
        "clients": args.clients,
        "connected": connected,
        "broadcasts_per_s": args.rate,
        "seconds": elapsed,
        "broadcasts": injected,
        "expected_msgs": injected * connected as u64,
        "server_sent_msgs": sent,
        "client_received_msgs": received,
        "delivered_msgs_per_s": received as f64 / elapsed,
        "latency_us": report["latency_us"],
        // The dashboard thread's own CPU time over the broadcast window: on a shared
        // machine this, not the wall clock, says what one dedicated core sustains.
        "server_cpu_s": cpu_s,
        "server_user_cpu_s": user_s,
        "server_system_cpu_s": system_s,
        "server_cpu_utilisation": cpu_s / elapsed,
        "server_cpu_ns_per_msg": cpu_s * 1e9 / sent.max(1) as f64,
        "msgs_per_server_cpu_s": sent as f64 / cpu_s,
        // The client process shares the host: what it spends is not the server's to use.
        "client_cpu_s": client_user_s + client_system_s,
        "client_user_cpu_s": client_user_s,
        "client_system_cpu_s": client_system_s,
        "client_cpu_ns_per_msg": (client_user_s + client_system_s) * 1e9 / sent.max(1) as f64,
        "load_average_1m": std::fs::read_to_string("/proc/loadavg").ok()
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok()),
        "server_rss_idle_bytes": rss_idle,
        "server_rss_connected_bytes": rss_connected,
        "server_rss_busy_bytes": rss_busy,
        "server_rss_per_client_bytes": rss_busy.saturating_sub(rss_idle) / connected.max(1) as u64,
        "dashboard": stats.to_json(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The client side: connects, subscribes, records latencies until the server closes.
pub fn run_clients(args: ClientArgs) -> anyhow::Result<()> {
    raise_nofile_limit();
    let threads = args.threads.max(1);
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for t in 0..threads {
        let n = args.clients / threads + usize::from(t < args.clients % threads);
        let (connected, failed) = (connected.clone(), failed.clone());
        let addr = args.addr;
        let deadline = Instant::now() + Duration::from_secs_f64(args.connect_timeout_s);
        let h = std::thread::Builder::new()
            .name(format!("fanout-client-{t}"))
            .spawn(move || client_thread(addr, n, deadline, &connected, &failed))
            .map_err(|e| anyhow!("cannot start a client thread: {e}"))?;
        handles.push(h);
    }
    let start = Instant::now();
    loop {
        let done = connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
        if done >= args.clients || start.elapsed().as_secs_f64() > args.connect_timeout_s {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("connected {}", connected.load(Ordering::Relaxed));
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut received = 0u64;
    for h in handles {
        if let Ok((r, hh)) = h.join() {
            received += r;
            let _ = hist.add(&hh);
        }
    }
    let q = |p: f64| hist.value_at_quantile(p);
    println!(
        "{}",
        json!({
            "received": received,
            "failed_connections": failed.load(Ordering::Relaxed),
            "latency_us": {
                "count": hist.len(),
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "max": hist.max(),
            }
        })
    );
    Ok(())
}

/// One client thread: connects its `n` clients one after another, then reads them all
/// from one readiness loop until the server has closed every connection.
fn client_thread(
    addr: SocketAddr,
    n: usize,
    deadline: Instant,
    connected: &std::sync::atomic::AtomicUsize,
    failed: &std::sync::atomic::AtomicUsize,
) -> (u64, Histogram<u64>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| unreachable!("valid bounds"));
    let mut received = 0u64;
    let Ok(mut poll) = mio::Poll::new() else {
        failed.fetch_add(n, Ordering::Relaxed);
        return (0, hist);
    };
    let mut clients: Vec<Option<BenchClient>> = Vec::with_capacity(n);
    for _ in 0..n {
        let client = loop {
            match BenchClient::connect(addr, deadline) {
                Ok(c) => break Some(c),
                Err(_) if Instant::now() < deadline => std::thread::sleep(CONNECT_RETRY),
                Err(_) => break None,
            }
        };
        let token = mio::Token(clients.len());
        let registered = client.and_then(|mut c| {
            let interest = mio::Interest::READABLE;
            poll.registry()
                .register(&mut c.stream, token, interest)
                .ok()
                .map(|()| c)
        });
        match registered {
            Some(c) => clients.push(Some(c)),
            None => {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut on_text = |acks: &mut u8, text: &str| {
        if *acks < 2 {
            if text.contains("\"subscribed\"") {
                *acks += 1;
                if *acks == 2 {
                    connected.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        if let Some(sent) = sent_us_of(text) {
            let latency = (wall_us() - sent).clamp(1, MAX_LATENCY_US as i64) as u64;
            let _ = hist.record(latency);
            received += 1;
        }
    };
    let mut open = clients.len();
    // Frames that came with the handshake's response, before the first readiness.
    for slot in clients.iter_mut() {
        if !pump_or_drop(slot, &mut on_text, failed, false) {
            open -= 1;
        }
    }
    let mut events = mio::Events::with_capacity(EVENTS_PER_POLL);
    while open > 0 {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Nothing more can be read: the clients still waiting for their
            // acknowledgements will never connect.
            let waiting = clients.iter().flatten().filter(|c| c.acks < 2).count();
            failed.fetch_add(waiting, Ordering::Relaxed);
            break;
        }
        for event in events.iter() {
            let Some(slot) = clients.get_mut(event.token().0) else {
                continue;
            };
            // The peer's end of stream may come with the last bytes in one event: then
            // read to the end, not only to a short read.
            let to_end = event.is_read_closed() || event.is_error();
            if slot.is_some() && !pump_or_drop(slot, &mut on_text, failed, to_end) {
                open -= 1;
            }
        }
    }
    (received, hist)
}

/// Pumps the client in `slot`: `false` if it is gone (closed, failed, or an empty slot),
/// in which case the slot is emptied, and a client that ended before both of its
/// subscriptions were acknowledged is counted as failed, so that the process does
/// not wait for it to connect.
fn pump_or_drop(
    slot: &mut Option<BenchClient>,
    on_text: &mut impl FnMut(&mut u8, &str),
    failed: &std::sync::atomic::AtomicUsize,
    to_end: bool,
) -> bool {
    let Some(c) = slot else {
        return false;
    };
    if matches!(c.pump(on_text, to_end), Ok(true)) {
        return true;
    }
    if c.acks < 2 {
        failed.fetch_add(1, Ordering::Relaxed);
    }
    *slot = None;
    false
}

/// One measuring client: the engine's own client side of the protocol
/// ([`crate::feed::frames`], what a shard reads the exchange with) on a non-blocking
/// socket, so the client process spends its CPU on receiving (a socket read, the
/// frame's header, the UTF-8 check every text message gets, the search for the send
/// time) rather than on a general-purpose library's per-message allocation and copy,
/// or on an executor's rounds. The benchmark measures the server, and on a shared host
/// what the clients spend is taken from it.
struct BenchClient {
    stream: mio::net::TcpStream,
    reader: crate::feed::frames::FrameReader,
    /// Pongs not yet written.
    out: Vec<u8>,
    /// Subscription acknowledgements seen (2: subscribed to both topics).
    acks: u8,
}

/// Wait before a client tries again to connect (the server's accept queue was full).
const CONNECT_RETRY: Duration = Duration::from_millis(50);
/// Readiness events one poll hands over; more wait for the next poll.
const EVENTS_PER_POLL: usize = 1024;
/// A client's read buffer: the frame reader's smallest (32 KiB of address space; the
/// pages a client never fills are never touched). It grows for a larger frame.
const CLIENT_BUFFER: usize = crate::feed::frames::MIN_BUFFER_BYTES;
/// Largest frame a bench client accepts (a broadcast is a few hundred bytes).
const CLIENT_MAX_FRAME: usize = 1 << 20;

impl BenchClient {
    /// Connects, upgrades to WebSocket on `/ws` and subscribes to signals and candles
    /// (blocking, bounded by `deadline`), then leaves the socket non-blocking.
    fn connect(addr: SocketAddr, deadline: Instant) -> anyhow::Result<BenchClient> {
        use crate::feed::frames;
        use std::io::{Read, Write};
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow!("out of time"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, left)?;
        stream.set_read_timeout(Some(left))?;
        let key = frames::new_key();
        let mut out = frames::client_handshake_request(&addr.to_string(), "/ws", &key);
        for topic in ["signals", "candles"] {
            let cmd = json!({"type": "subscribe", "subscription": topic}).to_string();
            frames::text(&mut out, &cmd);
        }
        stream.write_all(&out)?;
        out.clear();
        let mut reader =
            frames::FrameReader::new(CLIENT_BUFFER, CLIENT_MAX_FRAME, CLIENT_MAX_FRAME);
        loop {
            if let Some(head) = frames::parse_handshake_response(reader.pending(), &key)? {
                reader.discard(head);
                break;
            }
            let n = stream.read(reader.spare())?;
            if n == 0 {
                return Err(anyhow!("the server closed during the handshake"));
            }
            reader.filled(n);
        }
        stream.set_read_timeout(None)?;
        stream.set_nonblocking(true)?;
        Ok(BenchClient {
            stream: mio::net::TcpStream::from_std(stream),
            reader,
            out,
            acks: 0,
        })
    }

    /// Handles the frames buffered and reads what the socket holds: `Ok(true)` while the
    /// connection stays open. A read shorter than the room offered means the socket
    /// was empty (bytes arriving later raise a new readiness event), unless the peer
    /// has ended the stream (`to_end`, from the event), when a short read may have
    /// stopped at the end: then it reads on until the end or an empty socket.
    fn pump(
        &mut self,
        on_text: &mut impl FnMut(&mut u8, &str),
        to_end: bool,
    ) -> anyhow::Result<bool> {
        use std::io::{ErrorKind, Read};
        loop {
            if !self.handle_frames(on_text)? {
                return Ok(false);
            }
            let spare = self.reader.spare();
            let room = spare.len();
            match self.stream.read(spare) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.reader.filled(n);
                    if n < room && !to_end {
                        return self.handle_frames(on_text);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every whole frame buffered, then the pongs they called for: `Ok(false)` at a
    /// close.
    fn handle_frames(&mut self, on_text: &mut impl FnMut(&mut u8, &str)) -> anyhow::Result<bool> {
        use crate::feed::frames::{self, Frame};
        use std::io::{ErrorKind, Write};
        while let Some(frame) = self.reader.next()? {
            match frame {
                // The reader has checked that a text message is UTF-8.
                Frame::Text(text) => on_text(&mut self.acks, std::str::from_utf8(text)?),
                Frame::Ping(payload) => frames::pong(&mut self.out, payload),
                Frame::Close(_) => return Ok(false),
                Frame::Binary(_) | Frame::Pong(_) => {}
            }
        }
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(anyhow!("the socket took no bytes of a pong")),
                Ok(n) => drop(self.out.drain(..n)),
                // A pong is a few bytes; what is left goes at the next readiness.
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CandleRecord, SignalRecord};

    #[test]
    fn the_send_time_survives_the_records() {
        let t = 1_764_000_000_123_456;
        let s = serde_json::to_string(&SignalRecord::from(&synthetic_signal(1, t))).unwrap();
        assert_eq!(sent_us_of(&s), Some(t), "{s}");
        let c = serde_json::to_string(&CandleRecord::from(&synthetic_candle(2, t, true))).unwrap();
        assert_eq!(sent_us_of(&c), Some(t), "{c}");
    }
}
