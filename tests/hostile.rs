//! Hostile input, end to end over loopback: the engine against an exchange that sends
//! broken frames, and a dashboard client that sends broken requests and commands. Every
//! case must be counted where `/api/status` shows it, and survived: the engine keeps
//! running and later good data is still processed. Whether the connection is kept or
//! reset follows the policy in `tests/README.md` ("Hostile input policy"), which these
//! tests check case by case.
//!
//! The hostile exchange is a small WebSocket server written here on raw sockets, so it
//! can send what no well-behaved library would: invalid UTF-8 in text frames, masked or
//! oversized frames, reserved opcodes. Every wait is bounded.

#[path = "support/engine.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alphapulse::config::Config;
use alphapulse::engine::Engine;
use alphapulse::market::{Interval, Symbol};
use serde_json::Value;
use support::{http_get, http_json, wait_until};

/// How long any one expected effect may take to show.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A fixed minute for the hand-made klines (2023-11-14T22:14:00Z).
const T0_MS: i64 = 1_700_000_040_000;
const MINUTE_MS: i64 = 60_000;

// ---------------------------------------------------------------------------------------
// WebSocket frames by hand (RFC 6455 §5.2).

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One frame: `first` is the first byte (FIN, RSV bits, opcode); masked with `mask` when
/// given (clients must mask, servers must not).
fn raw_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A final, unmasked frame (what a server sends).
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload, None)
}

fn text(payload: impl AsRef<[u8]>) -> Vec<u8> {
    server_frame(OP_TEXT, payload.as_ref())
}

/// A final, masked frame (what a client sends).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A frame read off the wire, unmasked.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

/// Takes one whole frame off the front of `buf`, if one is there.
fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let key = if masked {
        let key: [u8; 4] = buf.get(at..at + 4)?.try_into().expect("4 bytes");
        at += 4;
        Some(key)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(key) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    buf.drain(..at + len);
    Some(Frame { opcode, payload })
}

/// Reads the HTTP head at the start of a stream (bounded); returns it and any bytes
/// read past it.
fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && buf.len() < 64 * 1024 {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    None
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------------------------------
// Kline frames.

/// A 1m kline of `symbol` on the combined stream, shaped as Binance sends it.
fn kline(symbol: &str, open_ms: i64, closed: bool) -> String {
    let event_ms = if closed {
        open_ms + MINUTE_MS
    } else {
        open_ms + 1_000
    };
    kline_with(symbol, open_ms, closed, event_ms, "")
}

/// A kline with `extra` spliced into the event object (after `"e":"kline",`).
fn kline_with(symbol: &str, open_ms: i64, closed: bool, event_ms: i64, extra: &str) -> String {
    format!(
        r#"{{"stream":"{lower}@kline_1m","data":{{"e":"kline",{extra}"E":{event_ms},"s":"{symbol}","k":{{"t":{open_ms},"T":{close_ms},"s":"{symbol}","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":{closed},"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}}}}"#,
        lower = symbol.to_lowercase(),
        close_ms = open_ms + MINUTE_MS - 1,
    )
}

// ---------------------------------------------------------------------------------------
// The hostile exchange.

/// What the test asks the exchange to send.
enum Out {
    /// Bytes for the current connection (once it is subscribed).
    Bytes(Vec<u8>),
    /// Bytes after which the engine is expected to drop the connection: nothing more is
    /// sent on it, and the next items go to the next connection.
    Fatal(Vec<u8>),
}

/// One connection as the exchange saw it.
#[derive(Clone, Debug)]
struct ConnLog {
    accepted_at: Instant,
    /// When the SUBSCRIBE was answered.
    subscribed_at: Option<Instant>,
    ended_at: Option<Instant>,
    /// The engine closed or reset it (rather than the exchange at the end of the test).
    ended_by_engine: bool,
    /// Payloads of the pongs the engine sent.
    pongs: Vec<Vec<u8>>,
}

/// A WebSocket server on loopback serving `/stream`, one connection at a time.
struct Exchange {
    addr: SocketAddr,
    tx: mpsc::Sender<Out>,
    log: Arc<Mutex<Vec<ConnLog>>>,
    /// The next this many connections get a garbage answer instead of the handshake.
    bad_handshakes: Arc<AtomicUsize>,
    /// The next this many connections get an error reply to their SUBSCRIBE.
    reject_subscriptions: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    rx: mpsc::Receiver<Out>,
    log: Arc<Mutex<Vec<ConnLog>>>,
    bad_handshakes: Arc<AtomicUsize>,
    reject_subscriptions: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Exchange {
    fn start() -> Exchange {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exchange");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("exchange address");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let bad_handshakes = Arc::new(AtomicUsize::new(0));
        let reject_subscriptions = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            rx,
            log: log.clone(),
            bad_handshakes: bad_handshakes.clone(),
            reject_subscriptions: reject_subscriptions.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, &shared),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Exchange {
            addr,
            tx,
            log,
            bad_handshakes,
            reject_subscriptions,
            stop,
            thread: Some(thread),
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn send(&self, bytes: Vec<u8>) {
        self.tx
            .send(Out::Bytes(bytes))
            .expect("exchange thread alive");
    }

    fn send_fatal(&self, bytes: Vec<u8>) {
        self.tx
            .send(Out::Fatal(bytes))
            .expect("exchange thread alive");
    }

    fn log(&self) -> Vec<ConnLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn subscribed_connections(&self) -> usize {
        self.log()
            .iter()
            .filter(|c| c.subscribed_at.is_some())
            .count()
    }
}

/// This connection's entry in the exchange's log.
struct Entry<'a> {
    log: &'a Mutex<Vec<ConnLog>>,
    index: usize,
}

impl Entry<'_> {
    fn update(&self, f: impl FnOnce(&mut ConnLog)) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut log[self.index]);
    }
}

/// Serves one accepted connection until the engine drops it, a fatal frame was sent and
/// the engine dropped it (or failed to within the timeout), or the test stops.
fn serve(mut s: TcpStream, sh: &Shared) {
    let index = {
        let mut log = sh.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(ConnLog {
            accepted_at: Instant::now(),
            subscribed_at: None,
            ended_at: None,
            ended_by_engine: false,
            pongs: Vec::new(),
        });
        log.len() - 1
    };
    let entry = Entry {
        log: &sh.log,
        index,
    };
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let by_engine = serve_inner(&mut s, sh, &entry);
    entry.update(|c| {
        c.ended_at = Some(Instant::now());
        c.ended_by_engine = by_engine;
    });
}

/// Returns true when the engine ended the connection.
fn serve_inner(s: &mut TcpStream, sh: &Shared, entry: &Entry<'_>) -> bool {
    let Some((head, mut buf)) = read_head(s) else {
        return true;
    };
    let take = |n: &AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    };
    if take(&sh.bad_handshakes) {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        return wait_for_engine_to_leave(s, &mut buf, sh);
    }
    assert!(
        head.starts_with("GET /stream"),
        "conn {}: {head}",
        entry.index
    );
    let key = header(&head, "sec-websocket-key").unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if s.write_all(answer.as_bytes()).is_err() {
        return true;
    }
    let reject = take(&sh.reject_subscriptions);
    let mut subscribed = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while !sh.stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
        while let Some(frame) = take_frame(&mut buf) {
            match frame.opcode {
                OP_TEXT => {
                    let v: Value = serde_json::from_slice(&frame.payload).unwrap_or_default();
                    if v["method"] == "SUBSCRIBE" {
                        let reply = if reject {
                            format!(
                                r#"{{"error":{{"code":2,"msg":"Invalid request"}},"id":{}}}"#,
                                v["id"]
                            )
                        } else {
                            format!(r#"{{"result":null,"id":{}}}"#, v["id"])
                        };
                        if s.write_all(&text(reply)).is_err() {
                            return true;
                        }
                        subscribed = !reject;
                        if subscribed {
                            entry.update(|c| c.subscribed_at = Some(Instant::now()));
                        }
                    }
                }
                OP_PONG => entry.update(|c| c.pongs.push(frame.payload)),
                OP_CLOSE => return true,
                _ => {}
            }
        }
        if !subscribed {
            continue;
        }
        while let Ok(out) = sh.rx.try_recv() {
            match out {
                Out::Bytes(bytes) => {
                    if s.write_all(&bytes).is_err() {
                        return true;
                    }
                }
                Out::Fatal(bytes) => {
                    // The engine may drop the connection before the frame is all written.
                    let _ = s.write_all(&bytes);
                    return wait_for_engine_to_leave(s, &mut buf, sh);
                }
            }
        }
    }
    false
}

/// Reads and discards until the engine closes the connection (true) or a timeout (false).
fn wait_for_engine_to_leave(s: &mut TcpStream, buf: &mut Vec<u8>, sh: &Shared) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = vec![0u8; 64 * 1024];
    while Instant::now() < deadline && !sh.stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => buf.clear(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// The engine under test.

struct Run {
    // Field order is drop order: the engine stops before the exchange.
    engine: Engine,
    exchange: Exchange,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// The engine on BTCUSDT 1m pointed at a hostile exchange. Signals are off: they would
/// fetch REST klines, which this exchange does not serve.
fn start_against_exchange(tweak: impl FnOnce(&mut Config)) -> Run {
    let serial = support::serial();
    let exchange = Exchange::start();
    let mut config = Config {
        binance_ws_url: exchange.ws_url(),
        binance_rest_url: "http://127.0.0.1:9".into(),
        symbols: vec![Symbol::new("BTCUSDT").expect("symbol")],
        timeframes: vec![Interval::M1],
        dashboard_addr: "127.0.0.1:0".parse().expect("address"),
        ..Config::default()
    };
    config.engine.pin_cores = false;
    config.signals.enabled = false;
    config.feed.backoff_initial_ms = 50;
    config.feed.backoff_max_ms = 500;
    // The hand-made klines sit at a fixed minute of 2023 (`T0_MS`): the clock bound
    // is off here, and on in the tests of it, which stamp their frames from our clock.
    config.feed.max_clock_skew_ms = 0;
    tweak(&mut config);
    let layout = alphapulse::topology::plan(&config, None, &alphapulse::topology::allowed_cores())
        .expect("layout");
    let engine = Engine::start(&config, &layout).expect("engine starts");
    Run {
        engine,
        exchange,
        _serial: serial,
    }
}

impl Run {
    fn status(&self) -> Value {
        http_json(self.engine.dashboard_addr(), "/api/status")
    }

    /// A figure of shard 0 from `/api/status`, by JSON pointer (e.g. `/parse_errors`).
    fn shard(&self, pointer: &str) -> u64 {
        let status = self.status();
        status["shards"][0]
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no shards[0]{pointer} in {status}"))
    }

    /// Waits until the shard figure at `pointer` reaches `want`; panics naming `case`.
    fn expect_shard(&self, case: &str, pointer: &str, want: u64) {
        let ok = wait_until(EFFECT_TIMEOUT, || self.shard(pointer) >= want);
        assert!(
            ok,
            "{case}: shards[0]{pointer} never reached {want}: {}",
            self.status()
        );
        assert_eq!(self.shard(pointer), want, "{case}: counted once");
    }

    fn closed_opens(&self) -> Vec<i64> {
        let store = self.engine.status().store.lock().unwrap();
        let symbol = Symbol::new("BTCUSDT").expect("symbol");
        let mut opens: Vec<i64> = store
            .closed(Some(symbol), Some(Interval::M1), 1000)
            .iter()
            .map(|c| c.open_time_ms)
            .collect();
        opens.sort_unstable();
        opens
    }

    /// Sends a closed kline for `open_ms` and waits until the engine has it.
    fn good_close(&self, case: &str, open_ms: i64) {
        self.exchange.send(text(kline("BTCUSDT", open_ms, true)));
        assert!(
            wait_until(EFFECT_TIMEOUT, || self.closed_opens().contains(&open_ms)),
            "{case}: the good kline after it was not processed: {}",
            self.status()
        );
    }
}

/// Every parse-error reason, for checking that only the expected one moved.
const REASONS: [&str; 6] = [
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "too_large",
];

#[test]
fn malformed_frames_are_counted_and_the_connection_is_kept() {
    // The default limit, which is the parser's own: a frame the WebSocket layer lets
    // through is never too large for the parser.
    let run = start_against_exchange(|_| {});
    assert!(
        wait_until(EFFECT_TIMEOUT, || run.engine.status().ready()),
        "the engine never subscribed: {}",
        run.status()
    );
    run.good_close("first good kline", T0_MS);

    let good = kline("BTCUSDT", T0_MS + MINUTE_MS, false);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested_in_event = format!(
        r#"{{"stream":"btcusdt@kline_1m","data":{{"e":"kline","E":1,"z":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let e_ms = T0_MS + 1_000;
    // (case, frame, parse-error reason it must be counted under)
    let parse_errors: Vec<(&str, String, &str)> = vec![
        (
            "truncated JSON",
            good[..good.len() / 2].to_string(),
            "invalid_json",
        ),
        (
            "missing final brace",
            good[..good.len() - 1].to_string(),
            "invalid_json",
        ),
        ("empty text frame", String::new(), "invalid_json"),
        ("bad escape", r#"{"e":"\uZZZZ"}"#.into(), "invalid_json"),
        ("JSON nested 10,000 deep", nested, "invalid_json"),
        (
            "nested 10,000 deep inside an event",
            nested_in_event,
            "invalid_json",
        ),
        ("not an object", "[1,2,3]".into(), "not_object"),
        ("a bare string", r#""kline""#.into(), "not_object"),
        (
            "price 1e400",
            good.replace(r#""o":"0.0010""#, r#""o":"1e400""#),
            "wrong_type",
        ),
        (
            "price with 40 digits",
            good.replace(r#""o":"0.0010""#, &format!(r#""o":"{}""#, "9".repeat(40))),
            "out_of_range",
        ),
        (
            "price as a number 1e400",
            good.replace(r#""o":"0.0010""#, r#""o":1e400"#),
            "invalid_json",
        ),
        (
            "trade id beyond u64",
            good.replace(r#""f":100"#, r#""f":18446744073709551616"#),
            "invalid_json",
        ),
        (
            "negative trade count",
            good.replace(r#""n":100"#, r#""n":-1"#),
            "out_of_range",
        ),
        (
            "negative open price",
            good.replace(r#""o":"0.0010""#, r#""o":"-0.0010""#),
            "out_of_range",
        ),
        (
            "interval 7m",
            good.replace(r#""i":"1m""#, r#""i":"7m""#),
            "out_of_range",
        ),
        (
            "a 40-letter symbol",
            good.replace(
                r#""s":"BTCUSDT","k""#,
                &format!(r#""s":"{}","k""#, "S".repeat(40)),
            ),
            "out_of_range",
        ),
        (
            "negative event time",
            kline_with("BTCUSDT", T0_MS + MINUTE_MS, false, -5, ""),
            "out_of_range",
        ),
        (
            "negative open time",
            good.replace(&format!(r#""t":{}"#, T0_MS + MINUTE_MS), r#""t":-60000"#),
            "out_of_range",
        ),
        (
            "event time beyond i64 microseconds",
            kline_with("BTCUSDT", T0_MS + MINUTE_MS, false, i64::MAX, ""),
            "out_of_range",
        ),
        (
            "closed flag as a string",
            good.replace(r#""x":false"#, r#""x":"false""#),
            "wrong_type",
        ),
        (
            "symbol as a number",
            good.replace(r#""s":"BTCUSDT","k""#, r#""s":42,"k""#),
            "wrong_type",
        ),
        (
            "kline body as an array",
            format!(r#"{{"e":"kline","E":{e_ms},"s":"BTCUSDT","k":[1,2]}}"#),
            "wrong_type",
        ),
        (
            "kline without its body",
            format!(r#"{{"e":"kline","E":{e_ms},"s":"BTCUSDT"}}"#),
            "missing_field",
        ),
        (
            "event without a type",
            r#"{"E":1,"s":"BTCUSDT"}"#.into(),
            "missing_field",
        ),
    ];
    let malformed = parse_errors.len() as u64;
    for (case, frame, reason) in parse_errors {
        let before: Vec<u64> = REASONS
            .iter()
            .map(|r| run.shard(&format!("/parse_errors_by_reason/{r}")))
            .collect();
        run.exchange.send(text(frame));
        run.expect_shard(
            case,
            &format!("/parse_errors_by_reason/{reason}"),
            before[REASONS.iter().position(|r| *r == reason).expect("reason")] + 1,
        );
        for (r, b) in REASONS.iter().zip(&before) {
            if *r != reason {
                assert_eq!(
                    run.shard(&format!("/parse_errors_by_reason/{r}")),
                    *b,
                    "{case}: counted as {r}, not only {reason}"
                );
            }
        }
    }

    // Valid JSON the engine does not use: counted, not errors.
    let unknown = run.shard("/unknown_events");
    run.exchange.send(text(format!(
        r#"{{"stream":"btcusdt@balance","data":{{"e":"outboundAccountPosition","E":{e_ms},"u":1}}}}"#
    )));
    run.expect_shard("unknown event type", "/unknown_events", unknown + 1);
    run.exchange
        .send(text(kline("ETHUSDT", T0_MS + MINUTE_MS, false)));
    run.expect_shard(
        "kline of a symbol not subscribed",
        "/unknown_events",
        unknown + 2,
    );
    let fields = run.shard("/unknown_fields");
    let huge_field = format!(r#""zz":"{}","#, "B".repeat(900_000));
    run.exchange.send(text(kline_with(
        "BTCUSDT",
        T0_MS + MINUTE_MS,
        false,
        e_ms + MINUTE_MS,
        &huge_field,
    )));
    run.expect_shard("a 900 KB unknown field", "/unknown_fields", fields + 1);
    // A frame of exactly feed.max_frame_bytes (the default, the parser's limit): the
    // WebSocket layer and the parser both take it.
    let limit = alphapulse::wire::Parser::MAX_FRAME_BYTES;
    assert_eq!(Config::default().feed.max_frame_bytes, limit);
    let shell = kline_with(
        "BTCUSDT",
        T0_MS + MINUTE_MS,
        false,
        e_ms + MINUTE_MS,
        r#""zz":"","#,
    );
    let pad = format!(r#""zz":"{}","#, "D".repeat(limit - shell.len()));
    let at_limit = kline_with("BTCUSDT", T0_MS + MINUTE_MS, false, e_ms + MINUTE_MS, &pad);
    assert_eq!(at_limit.len(), limit);
    run.exchange.send(text(at_limit));
    run.expect_shard(
        "a frame of exactly the limit",
        "/unknown_fields",
        fields + 2,
    );
    let implausible = run.shard("/implausible_klines");
    run.exchange.send(text(good.replace(
        &format!(r#""t":{}"#, T0_MS + MINUTE_MS),
        &format!(r#""t":{}"#, T0_MS + MINUTE_MS + 1),
    )));
    run.expect_shard(
        "open time off the minute grid",
        "/implausible_klines",
        implausible + 1,
    );
    let errors = run.shard("/subscribe_errors");
    run.exchange.send(text(
        r#"{"error":{"code":3,"msg":"unsolicited"},"id":99999}"#,
    ));
    run.expect_shard("unsolicited error reply", "/subscribe_errors", errors + 1);

    // Frames that are not text.
    let binary = run.shard("/binary_frames");
    run.exchange
        .send(server_frame(OP_BINARY, &[0xff, 0x00, 0xfe, 0x7b]));
    run.expect_shard("binary frame", "/binary_frames", binary + 1);
    let pings = run.shard("/pings_answered");
    run.exchange.send(server_frame(OP_PING, b"are-you-there"));
    run.expect_shard("ping", "/pings_answered", pings + 1);
    assert!(wait_until(EFFECT_TIMEOUT, || run.exchange.log()[0]
        .pongs
        .contains(&b"are-you-there".to_vec())));
    run.exchange.send(server_frame(OP_PONG, b"unsolicited"));
    // A text message in three fragments, with a ping between them (allowed): reassembled.
    let whole = kline("BTCUSDT", T0_MS + MINUTE_MS, true);
    let (a, rest) = whole.split_at(40);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut fragmented = raw_frame(OP_TEXT, a.as_bytes(), None);
    fragmented.extend(server_frame(OP_PING, b"mid"));
    fragmented.extend(raw_frame(OP_CONTINUATION, b.as_bytes(), None));
    fragmented.extend(raw_frame(0x80 | OP_CONTINUATION, c.as_bytes(), None));
    run.exchange.send(fragmented);
    assert!(
        wait_until(EFFECT_TIMEOUT, || run
            .closed_opens()
            .contains(&(T0_MS + MINUTE_MS))),
        "a fragmented kline was not reassembled: {}",
        run.status()
    );

    // Survived: later good data is processed, on the same connection.
    for i in 2..5 {
        run.good_close(
            "good klines after the hostile frames",
            T0_MS + i * MINUTE_MS,
        );
    }
    assert_eq!(
        run.closed_opens(),
        (0..5).map(|i| T0_MS + i * MINUTE_MS).collect::<Vec<_>>()
    );
    let status = run.status();
    let shard = &status["shards"][0];
    assert_eq!(shard["reconnects"], 0, "{status}");
    assert_eq!(shard["connect_failures"], 0, "{status}");
    assert_eq!(shard["gaps"], 0, "{status}");
    assert_eq!(shard["candles_closed"], 5, "{status}");
    assert_eq!(shard["parse_errors"], malformed, "{status}");
    let log = run.exchange.log();
    assert_eq!(log.len(), 1, "one connection all along: {log:?}");
    assert!(log[0].ended_at.is_none(), "{log:?}");
    assert_eq!(http_get(run.engine.dashboard_addr(), "/healthz").0, 200);
    let (code, metrics) = http_get(run.engine.dashboard_addr(), "/metrics");
    assert_eq!(code, 200);
    let line = format!("alphapulse_parse_errors_total{{shard=\"0\"}} {malformed}");
    assert!(metrics.contains(&line), "{metrics}");
}

#[test]
fn klines_stamped_far_from_our_clock_are_counted_and_the_series_stays_whole() {
    // The default clock bound, and frames stamped from our own clock.
    let run = start_against_exchange(|c| {
        c.feed.max_clock_skew_ms = Config::default().feed.max_clock_skew_ms;
    });
    assert!(
        wait_until(EFFECT_TIMEOUT, || run.engine.status().ready()),
        "the engine never subscribed: {}",
        run.status()
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    // The last three whole minutes: their closes are stamped at or before now.
    let t0 = now_ms / MINUTE_MS * MINUTE_MS - 3 * MINUTE_MS;
    run.good_close("first good kline", t0);

    let y2100 = 4_102_444_800_000;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a close in 2100",
            kline("BTCUSDT", y2100, true),
            "/clock_skew_drops_by_reason/future",
        ),
        (
            "a live update in 2100",
            kline("BTCUSDT", y2100, false),
            "/clock_skew_drops_by_reason/future",
        ),
        (
            "a close in 1970",
            kline("BTCUSDT", 0, true),
            "/clock_skew_drops_by_reason/past",
        ),
        (
            "a 1970 candle in a frame stamped now",
            kline_with("BTCUSDT", 0, true, now_ms, ""),
            "/implausible_klines",
        ),
        (
            "a close a day ahead",
            kline("BTCUSDT", t0 + 24 * 60 * MINUTE_MS, true),
            "/clock_skew_drops_by_reason/future",
        ),
    ];
    for (case, frame, pointer) in cases {
        let before = run.shard(pointer);
        run.exchange.send(text(frame));
        run.expect_shard(case, pointer, before + 1);
    }
    for i in 1..3 {
        run.good_close("good klines after the skewed ones", t0 + i * MINUTE_MS);
    }
    // Exactly the good candles, none missing, no gap: the series was not poisoned.
    assert_eq!(
        run.closed_opens(),
        (0..3).map(|i| t0 + i * MINUTE_MS).collect::<Vec<_>>()
    );
    let status = run.status();
    let shard = &status["shards"][0];
    assert_eq!(shard["clock_skew_drops"], 4, "{status}");
    assert_eq!(shard["gaps"], 0, "{status}");
    assert_eq!(shard["stale"], 0, "{status}");
    assert_eq!(shard["candles_closed"], 3, "{status}");
    assert_eq!(shard["parse_errors"], 0, "{status}");
    assert_eq!(shard["reconnects"], 0, "{status}");
    assert_eq!(status["completeness"]["missing"], 0, "{status}");
    let (code, metrics) = http_get(run.engine.dashboard_addr(), "/metrics");
    assert_eq!(code, 200);
    for line in [
        "alphapulse_clock_skew_drops_total{shard=\"0\",reason=\"future\"} 3",
        "alphapulse_clock_skew_drops_total{shard=\"0\",reason=\"past\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

#[test]
fn protocol_violations_reset_the_connection_and_it_comes_back() {
    // The default limit: frames over 1 MiB are refused by the WebSocket layer.
    let run = start_against_exchange(|_| {});
    assert!(
        wait_until(EFFECT_TIMEOUT, || run.exchange.subscribed_connections()
            == 1),
        "the engine never subscribed: {}",
        run.status()
    );
    run.good_close("first good kline", T0_MS);

    let fragment = raw_frame(OP_TEXT, br#"{"e":"#, None);
    let mut interleaved = fragment.clone();
    interleaved.extend(text("{}"));
    // Each case, the reset reason it is counted under (`resets_by_reason`), its frame.
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 in a text frame",
            "bad_utf8",
            text(b"{\"e\":\"\xff\xfe\xfd\"}"),
        ),
        (
            "a 3 MB text frame (over feed.max_frame_bytes)",
            "oversized_frame",
            text("C".repeat(3_000_000)),
        ),
        (
            "a text frame one byte over feed.max_frame_bytes",
            "oversized_frame",
            text("C".repeat(alphapulse::wire::Parser::MAX_FRAME_BYTES + 1)),
        ),
        (
            "a masked frame from the server",
            "masked_frame",
            raw_frame(0x80 | OP_TEXT, b"{}", Some([1, 2, 3, 4])),
        ),
        (
            "reserved opcode 0x3",
            "reserved_opcode",
            server_frame(0x3, b"{}"),
        ),
        (
            "RSV1 set without an extension",
            "reserved_bits",
            raw_frame(0x80 | 0x40 | OP_TEXT, b"{}", None),
        ),
        (
            "a ping of 200 bytes (control frames stop at 125)",
            "bad_control_frame",
            server_frame(OP_PING, &[b'p'; 200]),
        ),
        (
            "a fragmented ping",
            "bad_control_frame",
            raw_frame(OP_PING, b"p", None),
        ),
        (
            "a continuation with nothing to continue",
            "bad_fragmentation",
            raw_frame(0x80 | OP_CONTINUATION, b"{}", None),
        ),
        (
            "a new text frame inside a fragmented one",
            "bad_fragmentation",
            interleaved,
        ),
        (
            "a close frame",
            "server_close",
            server_frame(OP_CLOSE, &1000u16.to_be_bytes()),
        ),
        (
            "a close frame with a 1-byte payload",
            "bad_close_frame",
            server_frame(OP_CLOSE, b"\x03"),
        ),
        (
            "a close frame with invalid UTF-8 in its reason",
            "bad_utf8",
            server_frame(OP_CLOSE, b"\x03\xe8\xff\xfe"),
        ),
    ];
    let count = cases.len();
    let mut by_reason: std::collections::HashMap<&str, u64> = Default::default();
    for (i, (case, reason, frame)) in cases.into_iter().enumerate() {
        run.exchange.send_fatal(frame);
        // The engine drops the connection, comes back with backoff and subscribes again.
        assert!(
            wait_until(EFFECT_TIMEOUT, || run.exchange.subscribed_connections()
                == i + 2),
            "{case}: no new connection: {:?} {}",
            run.exchange.log(),
            run.status()
        );
        let log = run.exchange.log();
        assert!(
            log[i].ended_by_engine,
            "{case}: the engine kept the connection: {log:?}"
        );
        run.expect_shard(case, "/reconnects", i as u64 + 1);
        // Counted once, under its own reason, and under no other.
        *by_reason.entry(reason).or_default() += 1;
        for (r, n) in &by_reason {
            run.expect_shard(case, &format!("/resets_by_reason/{r}"), *n);
        }
        run.expect_shard(case, "/resets", i as u64 + 1);
        run.good_close(case, T0_MS + (i as i64 + 1) * MINUTE_MS);
    }

    // The exchange's misbehaviour around a connection: a failed handshake and a
    // rejected subscription. Both are counted, and the pool tries again.
    run.exchange.bad_handshakes.store(1, Ordering::SeqCst);
    run.exchange.reject_subscriptions.store(1, Ordering::SeqCst);
    let failures = run.shard("/connect_failures");
    run.exchange.send_fatal(text(b"{\"e\":\"\xff\"}"));
    assert!(
        wait_until(EFFECT_TIMEOUT, || run.exchange.subscribed_connections()
            == count + 2),
        "no connection after a bad handshake and a rejected subscription: {:?} {}",
        run.exchange.log(),
        run.status()
    );
    run.expect_shard(
        "a garbage handshake answer",
        "/connect_failures",
        failures + 1,
    );
    run.expect_shard("a rejected subscription", "/subscribe_errors", 1);
    run.good_close(
        "after the handshake and subscription",
        T0_MS + (count as i64 + 1) * MINUTE_MS,
    );

    let log = run.exchange.log();
    // The connections: the first, one per case, then the fatal frame's successor went
    // through the bad handshake and the rejected subscription before the last.
    assert_eq!(log.len(), count + 4, "{log:?}");
    for pair in log.windows(2) {
        if let Some(ended) = pair[0].ended_at {
            let waited = pair[1].accepted_at.saturating_duration_since(ended);
            // Backoff: at least half the initial delay (equal jitter), never a hot loop.
            assert!(
                waited >= Duration::from_millis(15),
                "reconnected after {waited:?}: {log:?}"
            );
        }
    }
    let status = run.status();
    let shard = &status["shards"][0];
    assert_eq!(
        shard["parse_errors"], 0,
        "none of these reached the parser: {status}"
    );
    assert_eq!(shard["gaps"], 0, "{status}");
    assert_eq!(shard["candles_closed"], count as u64 + 2, "{status}");
    assert_eq!(http_get(run.engine.dashboard_addr(), "/healthz").0, 200);
}

#[test]
fn the_simulators_malformed_frames_are_each_counted_and_the_feed_goes_on() {
    let syms = ["BTCUSDT", "ETHUSDT"];
    let mut sim = support::sim_config(&syms);
    sim.malformed_rate = 0.2;
    sim.trade_rate = 20.0;
    let run = support::start(sim, |c| c.feed.streams.trade = true, &syms, &[Interval::M1]);
    let addr = run.engine.dashboard_addr();
    let parse_errors = || {
        http_json(addr, "/api/status")["shards"][0]["parse_errors"]
            .as_u64()
            .expect("parse_errors")
    };
    assert!(
        wait_until(Duration::from_secs(30), || parse_errors() >= 30),
        "{}",
        run.engine.status().snapshot()
    );
    // Every damaged frame sent by now must be counted, and nothing else: the engine's
    // count (read first) never exceeds what the simulator injected.
    let injected = run.sim.stats().malformed_injected;
    assert!(
        wait_until(Duration::from_secs(20), || parse_errors() >= injected),
        "{injected} damaged frames sent, {} counted",
        parse_errors()
    );
    for _ in 0..20 {
        let counted = parse_errors();
        let sent = run.sim.stats().malformed_injected;
        assert!(counted <= sent, "{counted} counted > {sent} injected");
    }
    let status = http_json(addr, "/api/status");
    let shard = &status["shards"][0];
    assert_eq!(
        shard["parse_errors_by_reason"]["invalid_json"], shard["parse_errors"],
        "every damage breaks the JSON: {status}"
    );
    assert_eq!(
        shard["reconnects"], 0,
        "a bad frame does not cost the connection"
    );
    // The feed goes on: candles keep closing for every symbol.
    let closed = shard["candles_closed"].as_u64().expect("candles_closed");
    assert!(
        wait_until(Duration::from_secs(20), || http_json(addr, "/api/status")
            ["shards"][0]["candles_closed"]
            .as_u64()
            .is_some_and(|n| n >= closed + 4)),
        "{}",
        run.engine.status().snapshot()
    );
}

// ---------------------------------------------------------------------------------------
// The dashboard.

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Writes `request` (ignoring a reset: the server may answer and close first) and
/// returns the status code of the answer, 0 for none.
fn http_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = raw(addr);
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A WebSocket on `/ws` opened by hand, for sending frames no client library would.
struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    fn open(addr: SocketAddr) -> RawWs {
        let mut s = raw(addr);
        write!(
            s,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("send the upgrade");
        let (head, buf) = read_head(&mut s).expect("an upgrade answer");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { s, buf }
    }

    fn send(&mut self, frame: &[u8]) {
        // The server may close before a large frame is all written.
        let _ = self.s.write_all(frame);
    }

    /// The next data or close frame (pings are skipped); `None` when the server closed.
    fn next(&mut self) -> Option<Frame> {
        let mut chunk = [0u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(f) = take_frame(&mut self.buf) {
                if f.opcode == OP_PING {
                    continue;
                }
                return Some(f);
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Sends a text command and returns the reply's JSON.
    fn command(&mut self, payload: &[u8]) -> Value {
        self.send(&client_frame(OP_TEXT, payload));
        self.reply()
    }

    fn reply(&mut self) -> Value {
        let f = self.next().expect("a reply, not a close");
        assert_eq!(f.opcode, OP_TEXT, "{f:?}");
        serde_json::from_slice(&f.payload).expect("a JSON reply")
    }

    /// The code of the close frame the server sends next.
    fn close_code(&mut self) -> Option<u16> {
        loop {
            let f = self.next()?;
            if f.opcode == OP_CLOSE {
                return f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    }
}

#[test]
fn the_dashboard_survives_hostile_requests_and_commands() {
    let syms = ["BTCUSDT"];
    let run = support::start(
        support::sim_config(&syms),
        |c| c.dashboard.max_inbound_msgs_per_s = 1000,
        &syms,
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let dash = |name: &str| {
        http_json(addr, "/api/status")["dashboard"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no dashboard.{name}"))
    };

    // Malformed HTTP: answered with a status, counted, connection closed.
    let heads: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "binary garbage",
            b"\x00\x01\x02\xff garbage\r\n\r\n".to_vec(),
            400,
        ),
        ("not HTTP/1.x", b"GET / HTTP/9.9\r\n\r\n".to_vec(), 400),
        (
            "a space in a header name",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a 20 KB request line",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            431,
        ),
        (
            "a flood of 200 headers",
            {
                let mut h = b"GET / HTTP/1.1\r\n".to_vec();
                for i in 0..200 {
                    h.extend_from_slice(format!("X-Flood-{i}: y\r\n").as_bytes());
                }
                h.extend_from_slice(b"\r\n");
                h
            },
            431,
        ),
        (
            "a 64 KB header value",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(64 << 10)).into_bytes(),
            431,
        ),
        (
            "a non-numeric Content-Length",
            b"GET / HTTP/1.1\r\nContent-Length: lots\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (i, (case, request, status)) in heads.iter().enumerate() {
        assert_eq!(http_status(addr, request), *status, "{case}");
        assert_eq!(dash("heads_refused"), i as u64 + 1, "{case}");
    }

    // Bad WebSocket handshakes: refused before any upgrade, counted.
    let upgrades: Vec<(&str, String, u16)> = vec![
        ("no Upgrade header", "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), 426),
        (
            "POST upgrade",
            "POST /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n".into(),
            426,
        ),
        (
            "no Sec-WebSocket-Key",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".into(),
            400,
        ),
        (
            "version 8",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 8\r\n\r\n".into(),
            400,
        ),
    ];
    for (i, (case, request, status)) in upgrades.iter().enumerate() {
        assert_eq!(http_status(addr, request.as_bytes()), *status, "{case}");
        assert_eq!(dash("bad_upgrades"), i as u64 + 1, "{case}");
    }

    // Bad commands: an error reply each, counted, and the connection stays open.
    let mut ws = RawWs::open(addr);
    // 16,000 bytes: just under dashboard.max_frame_bytes (16 KiB).
    let deep = format!("{}{}", "[".repeat(8_000), "]".repeat(8_000));
    let long_symbol = format!(
        r#"{{"type":"subscribe","subscription":"candles","symbol":"{}"}}"#,
        "X".repeat(15_000)
    );
    let commands: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"hello".to_vec()),
        ("truncated JSON", br#"{"type":"sub"#.to_vec()),
        ("empty", Vec::new()),
        ("JSON nested 8,000 deep", deep.into_bytes()),
        ("an array", b"[1,2]".to_vec()),
        ("unknown type", br#"{"type":"launch"}"#.to_vec()),
        ("type as a number", br#"{"type":7}"#.to_vec()),
        (
            "unknown subscription",
            br#"{"type":"subscribe","subscription":"orders"}"#.to_vec(),
        ),
        (
            "symbol as an object",
            br#"{"type":"subscribe","subscription":"candles","symbol":{}}"#.to_vec(),
        ),
        ("a 15 KB symbol", long_symbol.into_bytes()),
        (
            "limit beyond u64",
            br#"{"type":"get_signals","limit":18446744073709551616}"#.to_vec(),
        ),
        (
            "negative limit",
            br#"{"type":"get_signals","limit":-1}"#.to_vec(),
        ),
        (
            "from as 1e400",
            br#"{"type":"get_signals","from":1e400}"#.to_vec(),
        ),
    ];
    for (i, (case, payload)) in commands.iter().enumerate() {
        let reply = ws.command(payload);
        assert_eq!(reply["type"], "error", "{case}: {reply}");
        assert!(
            reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{case}"
        );
        assert_eq!(dash("commands_rejected"), i as u64 + 1, "{case}");
    }
    ws.send(&client_frame(OP_BINARY, &[0, 1, 2, 0xff]));
    let reply = ws.reply();
    assert_eq!(reply["type"], "error", "binary: {reply}");
    assert_eq!(dash("commands_rejected"), commands.len() as u64 + 1);
    let pong = ws.command(br#"{"type":"ping","id":"still-open"}"#);
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["id"], "still-open");

    // Frames that break the WebSocket protocol itself: closed with a code, counted.
    let closes: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a 20 KB frame (over dashboard.max_frame_bytes)",
            client_frame(OP_TEXT, &[b'x'; 20_000]),
            1009,
            "oversized",
        ),
        (
            "invalid UTF-8 in a text frame",
            client_frame(OP_TEXT, b"{\"type\":\"\xff\"}"),
            1007,
            "protocol_errors",
        ),
        (
            "an unmasked frame",
            raw_frame(0x80 | OP_TEXT, br#"{"type":"ping"}"#, None),
            1002,
            "protocol_errors",
        ),
        (
            "reserved opcode 0xB",
            client_frame(0xB, b""),
            1002,
            "protocol_errors",
        ),
    ];
    for (case, frame, code, counter) in closes {
        let before = dash(counter);
        let mut ws = RawWs::open(addr);
        ws.send(&frame);
        assert_eq!(ws.close_code(), Some(code), "{case}");
        assert!(
            wait_until(EFFECT_TIMEOUT, || dash(counter) == before + 1),
            "{case}: dashboard.{counter} stayed {before}"
        );
    }

    // Survived: the engine serves and the feed goes on.
    let klines = || run.engine.status().shards[0].stats.klines.get();
    let before = klines();
    assert!(wait_until(EFFECT_TIMEOUT, || klines() > before + 5));
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let mut ws = RawWs::open(addr);
    let pong = ws.command(br#"{"type":"ping"}"#);
    assert_eq!(pong["type"], "pong");
    let status = http_json(addr, "/api/status");
    assert_eq!(status["status"], "ok", "{status}");
}
