//! The exchange simulator over real sockets on 127.0.0.1: a synchronous tungstenite
//! client (and, where a client must misbehave, a hand-rolled one) for the WebSocket
//! side, a tiny HTTP/1.1 GET for REST. Every loop is bounded by a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use alphapulse::simulator::{self, SimConfig, SimHandle};
use common::fixtures_dir;
use serde_json::Value;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type Ws = WebSocket<TcpStream>;

fn config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SimConfig::default()
    }
}

fn start(config: SimConfig) -> SimHandle {
    simulator::start(config).expect("simulator starts")
}

fn connect(sim: &SimHandle, path: &str) -> Ws {
    let stream = TcpStream::connect(sim.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let url = format!("{}{}", sim.ws_url(), path);
    let (ws, response) = tungstenite::client(url.as_str(), stream).expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// What one read produced.
enum Got {
    Text(String),
    Ping,
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Gone,
    /// Nothing within the read timeout.
    Idle,
}

fn read(ws: &mut Ws) -> Got {
    match ws.read() {
        Ok(Message::Text(t)) => Got::Text(t.as_str().to_string()),
        Ok(Message::Ping(_)) => Got::Ping,
        Ok(Message::Close(frame)) => Got::Close(frame.map(|f| u16::from(f.code))),
        Ok(_) => Got::Idle,
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Got::Idle
        }
        Err(_) => Got::Gone,
    }
}

/// Next text frame as JSON (skipping pings and idle reads) within `within`.
fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match read(ws) {
            Got::Text(t) => {
                return Some(serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")))
            }
            Got::Ping | Got::Idle => {}
            Got::Close(_) | Got::Gone => return None,
        }
    }
    None
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

/// Sends a control request and returns the first reply (a frame with `id`, `result` or
/// `error`), skipping market data.
fn request(ws: &mut Ws, text: &str) -> Value {
    send(ws, text);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(v) = next_json(ws, Duration::from_secs(1)) {
            if v.get("result").is_some() || v.get("error").is_some() {
                return v;
            }
        }
    }
    panic!("no reply to {text}");
}

struct HttpReply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl HttpReply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    http_get_with(addr, path, "")
}

/// A GET with `headers` (each line ending in `\r\n`) added to the request.
fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn is_decimal8(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let Some((whole, frac)) = s.split_once('.') else {
        return false;
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 8
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn check_levels(levels: &Value) {
    for level in levels.as_array().unwrap() {
        let pair = level.as_array().unwrap();
        assert_eq!(pair.len(), 2);
        assert!(is_decimal8(&pair[0]) && is_decimal8(&pair[1]), "{level}");
    }
}

#[test]
fn every_stream_kind_arrives_with_binance_shapes() {
    let sim = start(SimConfig {
        trade_rate: 200.0,
        ..config()
    });
    let streams = [
        "btcusdt@trade",
        "btcusdt@aggTrade",
        "btcusdt@bookTicker",
        "btcusdt@kline_1s",
        "btcusdt@kline_1m",
        "btcusdt@depth",
        "btcusdt@depth@100ms",
        "btcusdt@depth5",
        "btcusdt@depth10@100ms",
        "btcusdt@depth20@100ms",
    ];
    let mut ws = connect(&sim, &format!("/stream?streams={}", streams.join("/")));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_u: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(8);
    while seen.len() < streams.len() && Instant::now() < deadline {
        let Some(frame) = next_json(&mut ws, Duration::from_secs(1)) else {
            continue;
        };
        assert_eq!(keys(&frame), set(&["stream", "data"]), "combined envelope");
        let stream = frame["stream"].as_str().unwrap().to_string();
        let d = &frame["data"];
        match stream.as_str() {
            "btcusdt@trade" => {
                assert_eq!(keys(d), set(&["e", "E", "s", "t", "p", "q", "T", "m", "M"]));
                assert_eq!(d["e"], "trade");
                assert_eq!(d["s"], "BTCUSDT");
                assert!(is_decimal8(&d["p"]) && is_decimal8(&d["q"]));
                assert!(d["E"].as_i64().unwrap() >= d["T"].as_i64().unwrap());
            }
            "btcusdt@aggTrade" => {
                assert_eq!(
                    keys(d),
                    set(&["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"])
                );
                assert!(d["l"].as_u64().unwrap() >= d["f"].as_u64().unwrap());
            }
            "btcusdt@bookTicker" => {
                assert_eq!(keys(d), set(&["u", "s", "b", "B", "a", "A"]));
                let (bid, ask): (f64, f64) = (
                    d["b"].as_str().unwrap().parse().unwrap(),
                    d["a"].as_str().unwrap().parse().unwrap(),
                );
                assert!(bid < ask, "{d}");
            }
            "btcusdt@kline_1s" | "btcusdt@kline_1m" => {
                assert_eq!(keys(d), set(&["e", "E", "s", "k"]));
                let k = &d["k"];
                assert_eq!(
                    keys(k),
                    set(&[
                        "t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V",
                        "Q", "B"
                    ])
                );
                for f in ["o", "c", "h", "l", "v", "q", "V", "Q"] {
                    assert!(is_decimal8(&k[f]), "{f}: {k}");
                }
                let interval = if stream.ends_with("1s") {
                    1_000
                } else {
                    60_000
                };
                assert_eq!(
                    k["T"].as_i64().unwrap(),
                    k["t"].as_i64().unwrap() + interval - 1
                );
                assert_eq!(k["i"], if interval == 1_000 { "1s" } else { "1m" });
            }
            "btcusdt@depth" | "btcusdt@depth@100ms" => {
                assert_eq!(keys(d), set(&["e", "E", "s", "U", "u", "b", "a"]));
                assert_eq!(d["e"], "depthUpdate");
                check_levels(&d["b"]);
                check_levels(&d["a"]);
                if stream == "btcusdt@depth@100ms" {
                    let (first, last) = (d["U"].as_u64().unwrap(), d["u"].as_u64().unwrap());
                    if let Some(prev) = last_u {
                        assert_eq!(first, prev + 1, "diff depth ids chain");
                    }
                    last_u = Some(last);
                }
            }
            s if s.starts_with("btcusdt@depth") => {
                assert_eq!(keys(d), set(&["lastUpdateId", "bids", "asks"]));
                let levels: usize = s["btcusdt@depth".len()..]
                    .split('@')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(d["bids"].as_array().unwrap().len(), levels);
                check_levels(&d["bids"]);
            }
            other => panic!("unexpected stream {other}"),
        }
        *seen.entry(stream).or_default() += 1;
    }
    assert_eq!(seen.len(), streams.len(), "streams seen: {seen:?}");

    // The same stream on a raw connection carries the bare event.
    let mut raw = connect(&sim, "/ws/btcusdt@trade");
    let event = next_json(&mut raw, Duration::from_secs(3)).expect("raw trade");
    assert_eq!(event["e"], "trade");
    assert!(event.get("stream").is_none());
    sim.stop();
}

#[test]
fn control_methods_and_error_replies() {
    let sim = start(SimConfig {
        max_incoming_rate: 1000,
        ..config()
    });
    let mut ws = connect(&sim, "/ws");
    let r = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ETHUSDT@kline_1m","btcusdt@depth"],"id":1}"#,
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": 1}));
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#);
    assert_eq!(
        r["result"],
        serde_json::json!(["btcusdt@aggTrade", "ethusdt@kline_1m", "btcusdt@depth"])
    );
    let r = request(
        &mut ws,
        r#"{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}"#,
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": 312}));
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":"list2"}"#);
    assert_eq!(
        r,
        serde_json::json!({"result": ["btcusdt@aggTrade", "ethusdt@kline_1m"], "id": "list2"})
    );
    let r = request(
        &mut ws,
        r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#,
    );
    assert_eq!(r, serde_json::json!({"result": false, "id": 2}));
    let r = request(
        &mut ws,
        r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#,
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": 5}));
    let r = request(
        &mut ws,
        r#"{"method":"GET_PROPERTY","params":["combined"],"id":6}"#,
    );
    assert_eq!(r, serde_json::json!({"result": true, "id": 6}));
    // Data now arrives in the combined envelope.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut enveloped = false;
    while !enveloped && Instant::now() < deadline {
        if let Some(v) = next_json(&mut ws, Duration::from_secs(1)) {
            enveloped = v.get("stream").is_some() && v.get("data").is_some();
        }
    }
    assert!(enveloped, "combined envelope after SET_PROPERTY");

    let errors = [
        ("{\"method\":", 3, None),
        (r#"{"method":"PING","id":7}"#, 2, None),
        (r#"{"params":[],"id":8}"#, 2, None),
        (
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"]}"#,
            2,
            None,
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":true}"#,
            2,
            None,
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["btcusdt@nope"],"id":9}"#,
            2,
            Some(9),
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["xyzusdt@trade"],"id":10}"#,
            2,
            Some(10),
        ),
        (
            r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":11}"#,
            1,
            Some(11),
        ),
        (
            r#"{"method":"GET_PROPERTY","params":["colour"],"id":12}"#,
            0,
            Some(12),
        ),
        (
            r#"{"method":"GET_PROPERTY","params":[1],"id":13}"#,
            2,
            Some(13),
        ),
        (
            r#"{"method":"LIST_SUBSCRIPTIONS","params":["x"],"id":14}"#,
            2,
            Some(14),
        ),
    ];
    for (text, code, id) in errors {
        let r = request(&mut ws, text);
        assert_eq!(r["error"]["code"], code, "{text} -> {r}");
        assert!(r["error"]["msg"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            r["id"],
            id.map_or(Value::Null, Value::from),
            "{text} -> {r}"
        );
    }
    let r = request(&mut ws, "{\"method\":");
    assert!(r["error"]["msg"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON: "));
    let r = request(&mut ws, r#"{"method":"PING","id":7}"#);
    assert!(r["error"]["msg"]
        .as_str()
        .unwrap()
        .starts_with("Invalid request: unknown variant `PING`"));
    // A failed SUBSCRIBE subscribes nothing; the connection stays usable.
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":15}"#);
    assert_eq!(
        r["result"],
        serde_json::json!(["btcusdt@aggTrade", "ethusdt@kline_1m"])
    );
    // A client ping is answered with the same payload; a client close is echoed.
    ws.send(Message::Ping(b"hello".to_vec().into())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no pong");
        match ws.read() {
            Ok(Message::Pong(payload)) => {
                assert_eq!(payload.as_ref(), b"hello");
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    ws.close(None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "close not echoed");
        match ws.read() {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sim.stats().control_requests >= 20);
    // Requests that fail to parse (no id, bad id) are not counted as SUBSCRIBEs.
    assert_eq!(sim.stats().subscribe_requests, 3);
    sim.stop();
}

/// The official SDKs send a UUID as the request id: Binance accepts it (and any 64-bit
/// signed integer) and echoes it unchanged, a string as a string.
#[test]
fn uuid_and_signed_request_ids_are_echoed() {
    let sim = start(SimConfig {
        trade_rate: 100.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws");
    let uuid = "3c0b5d2e-8f4a-4e1b-9a7c-2d6e0f1a4b58";
    let r = request(
        &mut ws,
        &format!(r#"{{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":"{uuid}"}}"#),
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": uuid}));
    let trade = next_json(&mut ws, Duration::from_secs(3)).expect("a trade");
    assert_eq!(trade["e"], "trade", "{trade}");
    let r = request(
        &mut ws,
        r#"{"method":"LIST_SUBSCRIPTIONS","id":-9223372036854775808}"#,
    );
    assert_eq!(r["id"], serde_json::json!(i64::MIN));
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":"007"}"#);
    assert_eq!(r["id"], "007");
    let r = request(
        &mut ws,
        r#"{"method":"LIST_SUBSCRIPTIONS","id":9223372036854775808}"#,
    );
    assert_eq!(r["error"]["code"], 2, "{r}");
    assert_eq!(r["id"], Value::Null);
    sim.stop();
}

#[test]
fn too_many_incoming_messages_disconnect_the_client() {
    let sim = start(config());
    let mut ws = connect(&sim, "/ws");
    for id in 0..8 {
        // Sends may fail once the server has closed.
        if ws
            .send(Message::text(format!(
                r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#
            )))
            .is_err()
        {
            break;
        }
    }
    let mut replies = 0;
    let mut close_code = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            Instant::now() < deadline,
            "still connected after 8 messages in a burst"
        );
        match read(&mut ws) {
            Got::Text(_) => replies += 1,
            Got::Close(code) => close_code = code,
            Got::Gone => break,
            Got::Ping | Got::Idle => {}
        }
    }
    assert_eq!(replies, 5, "the first five messages are answered");
    assert_eq!(close_code, Some(1008));
    assert_eq!(sim.stats().rate_limit_disconnects, 1);
    sim.stop();
}

#[test]
fn streams_over_the_limit_are_refused() {
    let sim = start(SimConfig {
        max_streams: 3,
        ..config()
    });
    let mut ws = connect(&sim, "/stream?streams=btcusdt@trade");
    let r = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth","btcusdt@kline_1m","btcusdt@kline_1h"],"id":1}"#,
    );
    assert_eq!(r["error"]["code"], 2, "{r}");
    assert_eq!(r["id"], 1);
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":2}"#);
    assert_eq!(
        r["result"],
        serde_json::json!(["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth"])
    );
    // A URL asking for more than the limit is refused at the handshake.
    let stream = TcpStream::connect(sim.local_addr()).unwrap();
    let url = format!(
        "{}/stream?streams=btcusdt@trade/ethusdt@trade/adausdt@trade/btcusdt@aggTrade",
        sim.ws_url()
    );
    assert!(tungstenite::client(url.as_str(), stream).is_err());
    // A combined-stream URL naming an invalid stream is refused at the handshake too.
    let stream = TcpStream::connect(sim.local_addr()).unwrap();
    let url = format!("{}/stream?streams=btcusdt@nonsense", sim.ws_url());
    assert!(
        tungstenite::client(url.as_str(), stream).is_err(),
        "invalid stream in the URL"
    );
    sim.stop();
}

/// Binance accepts `/ws/<anything>`: a path segment that is no stream name yields no
/// data, and the client subscribes afterwards (ccxt.pro opens `/ws/0`, then SUBSCRIBEs).
#[test]
fn ws_path_with_unknown_names_connects_and_subscribes() {
    let sim = start(SimConfig {
        trade_rate: 100.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws/0");
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);
    assert_eq!(r, serde_json::json!({"result": [], "id": 1}));
    let r = request(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":2}"#,
    );
    assert_eq!(r, serde_json::json!({"result": null, "id": 2}));
    let trade = next_json(&mut ws, Duration::from_secs(3)).expect("a trade after SUBSCRIBE");
    assert_eq!(trade["e"], "trade", "{trade}");
    // Known names in the path are served; unknown ones next to them are ignored.
    let mut ws = connect(&sim, "/ws/btcusdt@nonsense/btcusdt@trade/xyzusdt@trade");
    let r = request(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#);
    assert_eq!(r["result"], serde_json::json!(["btcusdt@trade"]));
    sim.stop();
}

#[test]
fn pings_arrive_at_the_interval_and_answered_ones_keep_the_connection() {
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(300),
        // Generous against a loaded machine descheduling this reader for a while.
        pong_timeout: Duration::from_millis(2_000),
        ..config()
    });
    let mut ws = connect(&sim, "/ws");
    let mut pings = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(2_200);
    while Instant::now() < deadline {
        match read(&mut ws) {
            Got::Ping => pings.push(Instant::now()),
            Got::Close(_) | Got::Gone => panic!("disconnected although pongs were sent"),
            _ => {}
        }
        // Reading flushes tungstenite's automatic pong.
    }
    assert!(
        (4..=9).contains(&pings.len()),
        "{} pings in 2.2 s",
        pings.len()
    );
    // Pings are scheduled every 300 ms: never much sooner (the schedule), and the
    // upper bound only allows for this reader being descheduled.
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(150) && gap < Duration::from_millis(1_200),
            "{gap:?}"
        );
    }
    assert!(sim.stats().pongs_received >= 4);
    sim.stop();
}

/// A WebSocket client that never answers anything: handshake by hand, then reads raw
/// frames. Returns the opcodes received until the server closes the connection.
fn silent_client(addr: SocketAddr, path: &str, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut opcodes = Vec::new();
    let mut head_done = false;
    while started.elapsed() < within {
        match s.read(&mut chunk) {
            Ok(0) => return (opcodes, started.elapsed()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return (opcodes, started.elapsed()),
        }
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(buf.starts_with(b"HTTP/1.1 101"));
            buf.drain(..end + 4);
            head_done = true;
        }
        // Server frames: unmasked, FIN set.
        while buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + len {
                break;
            }
            opcodes.push(buf[0] & 0x0f);
            buf.drain(..at + len);
        }
    }
    panic!("server did not close the connection within {within:?}; got opcodes {opcodes:?}");
}

#[test]
fn unanswered_pings_lead_to_a_disconnect() {
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(700),
        ..config()
    });
    let (opcodes, after) = silent_client(sim.local_addr(), "/ws", Duration::from_secs(5));
    let pings = opcodes.iter().filter(|&&o| o == 0x9).count();
    assert!((2..=5).contains(&pings), "{opcodes:?}");
    assert!(
        after >= Duration::from_millis(650) && after < Duration::from_millis(2_000),
        "{after:?}"
    );
    assert_eq!(sim.stats().pong_timeout_disconnects, 1);
    sim.stop();

    // With the check off the same client stays connected.
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(500),
        pong_check: false,
        ..config()
    });
    let mut s = TcpStream::connect(sim.local_addr()).unwrap();
    write!(s, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(sim.stats().connections_active, 1);
    assert_eq!(sim.stats().pong_timeout_disconnects, 0);
    sim.stop();
}

#[test]
fn ignored_pongs_disconnect_even_a_polite_client() {
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(300),
        pong_timeout: Duration::from_millis(900),
        ignore_pongs: true,
        ..config()
    });
    let started = Instant::now();
    let mut ws = connect(&sim, "/ws");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "not disconnected");
        match read(&mut ws) {
            Got::Close(_) | Got::Gone => break,
            _ => {}
        }
    }
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(850), "{after:?}");
    let stats = sim.stats();
    assert!(stats.pongs_received >= 1, "{stats:?}");
    assert_eq!(stats.pong_timeout_disconnects, 1);
    sim.stop();
}

#[test]
fn max_connection_age_sends_server_shutdown_then_closes() {
    let sim = start(SimConfig {
        max_connection_age: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(300),
        ..config()
    });
    for (path, combined) in [("/stream?streams=btcusdt@kline_1m", true), ("/ws", false)] {
        let started = Instant::now();
        let mut ws = connect(&sim, path);
        let mut shutdown_at = None;
        let mut close = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while close.is_none() && Instant::now() < deadline {
            match read(&mut ws) {
                Got::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    let event = if combined {
                        if v["stream"] != "!serverShutdown" {
                            continue;
                        }
                        assert_eq!(keys(&v), set(&["stream", "data"]));
                        v["data"].clone()
                    } else {
                        v
                    };
                    assert_eq!(event["e"], "serverShutdown", "{t}");
                    assert_eq!(keys(&event), set(&["e", "E"]));
                    shutdown_at = Some(started.elapsed());
                }
                Got::Close(code) => close = Some((code, started.elapsed())),
                Got::Gone => panic!("closed without a close frame"),
                Got::Ping | Got::Idle => {}
            }
        }
        let shutdown_at = shutdown_at.expect("serverShutdown");
        let (code, closed_at) = close.expect("close frame");
        assert!(shutdown_at >= Duration::from_millis(450), "{shutdown_at:?}");
        assert!(
            closed_at >= shutdown_at + Duration::from_millis(250),
            "{closed_at:?}"
        );
        assert_eq!(code, Some(1001));
    }
    assert_eq!(sim.stats().server_shutdowns_sent, 2);
    sim.stop();
}

#[test]
fn drop_every_closes_connections_without_a_close_frame() {
    let sim = start(SimConfig {
        drop_every: Some(Duration::from_millis(600)),
        trade_rate: 100.0,
        ..config()
    });
    for _ in 0..2 {
        let mut ws = connect(&sim, "/ws/btcusdt@trade");
        let mut frames = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            assert!(Instant::now() < deadline, "connection not dropped");
            match read(&mut ws) {
                Got::Text(_) => frames += 1,
                Got::Close(code) => panic!("got a close frame {code:?}"),
                Got::Gone => break,
                Got::Ping | Got::Idle => {}
            }
        }
        assert!(frames > 0);
    }
    assert!(sim.stats().drops_injected >= 2);
    sim.stop();
}

#[test]
fn stalls_stop_all_output_then_resume_with_a_burst() {
    let sim = start(SimConfig {
        stall_every: Some(Duration::from_millis(1_000)),
        stall_for: Duration::from_millis(500),
        trade_rate: 200.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let mut last = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut after_gap = 0;
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_millis(2_300);
    while Instant::now() < deadline {
        if let Got::Text(_) = read(&mut ws) {
            let gap = last.elapsed();
            if gap > longest_gap {
                longest_gap = gap;
                after_gap = 0;
            }
            after_gap += 1;
            frames += 1;
            last = Instant::now();
        }
    }
    assert!(longest_gap >= Duration::from_millis(400), "{longest_gap:?}");
    assert!(
        frames > 200 && after_gap > 20,
        "{frames} frames, {after_gap} after the stall"
    );
    assert!(sim.stats().stalls_injected >= 1);
    sim.stop();
}

#[test]
fn malformed_rate_damages_about_that_fraction() {
    let sim = start(SimConfig {
        malformed_rate: 0.2,
        trade_rate: 2_000.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let (mut good, mut bad) = (0u32, 0u32);
    let deadline = Instant::now() + Duration::from_secs(10);
    while good + bad < 2_000 && Instant::now() < deadline {
        if let Got::Text(t) = read(&mut ws) {
            match serde_json::from_str::<Value>(&t) {
                Ok(v) if v["e"] == "trade" => good += 1,
                _ => bad += 1,
            }
        }
    }
    let total = f64::from(good + bad);
    assert!(total >= 2_000.0, "{total} frames");
    let rate = f64::from(bad) / total;
    assert!((0.15..0.25).contains(&rate), "malformed fraction {rate}");
    assert!(sim.stats().malformed_injected >= u64::from(bad));
    sim.stop();
}

fn kline_fields(k: &Value) -> Vec<Value> {
    ["t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q"]
        .iter()
        .map(|f| k[*f].clone())
        .collect()
}

#[test]
fn closed_klines_at_speed_60_equal_rest_klines() {
    let sim = start(SimConfig {
        speed: 60.0,
        trade_rate: 20.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws/btcusdt@kline_1m");
    let mut closed = Vec::new();
    let mut newest_open = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while closed.len() < 3 && Instant::now() < deadline {
        let Some(v) = next_json(&mut ws, Duration::from_secs(1)) else {
            continue;
        };
        let k = v["k"].clone();
        let open = k["t"].as_i64().unwrap();
        assert!(
            open >= newest_open,
            "an update of an older candle after a newer one"
        );
        newest_open = open;
        if k["x"] == true {
            assert!(
                closed.iter().all(|c: &Value| c["t"] != k["t"]),
                "final update sent twice"
            );
            closed.push(k);
        }
    }
    assert_eq!(
        closed.len(),
        3,
        "three 1m candles close in ~3 s at speed 60"
    );
    let first_open = closed[0]["t"].as_i64().unwrap();
    let rest = http_get(
        sim.local_addr(),
        &format!("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={first_open}&limit=3"),
    );
    assert_eq!(rest.status, 200, "{}", rest.body);
    let rows = rest.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, k) in rows.iter().zip(&closed) {
        let row = row.as_array().unwrap();
        let rest_fields: Vec<Value> = row[..11].to_vec();
        assert_eq!(
            rest_fields,
            kline_fields(k),
            "REST row vs streamed final kline"
        );
        assert_eq!(row[11], "0");
        assert!(k["n"].as_u64().unwrap() > 0);
    }
    sim.stop();
}

#[test]
fn same_seed_and_start_time_give_identical_klines() {
    let start_ms = 1_700_000_000_000;
    let make = |seed| {
        start(SimConfig {
            seed,
            speed: 600.0,
            trade_rate: 20.0,
            start_time_ms: Some(start_ms),
            ..config()
        })
    };
    let (a, b, c) = (make(7), make(7), make(8));
    // 10 simulated minutes pass in one wall second.
    let end = start_ms + 9 * 60_000;
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&a, &b, &c].iter().any(|s| s.sim_now_ms() < end + 60_000) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let path =
        format!("/api/v3/klines?symbol=ETHUSDT&interval=1m&startTime={start_ms}&endTime={end}");
    let (ka, kb, kc) = (
        http_get(a.local_addr(), &path),
        http_get(b.local_addr(), &path),
        http_get(c.local_addr(), &path),
    );
    assert_eq!(ka.status, 200);
    assert_eq!(ka.json().as_array().unwrap().len(), 9);
    assert_eq!(ka.body, kb.body, "same seed, same klines");
    assert_ne!(ka.body, kc.body, "another seed, another market");
    let path = format!(
        "/api/v3/klines?symbol=BTCUSDT&interval=5m&startTime={start_ms}&endTime={}",
        start_ms + 300_000
    );
    // Only closed candles above: the open one depends on when it is asked for.
    assert_eq!(
        http_get(a.local_addr(), &path).body,
        http_get(b.local_addr(), &path).body
    );
    a.stop();
    b.stop();
    c.stop();
}

#[test]
fn rest_weight_limit_answers_429_with_retry_after() {
    let sim = start(SimConfig {
        weight_limit: 10,
        ..config()
    });
    let mut refused = None;
    for _ in 0..20 {
        let r = http_get(
            sim.local_addr(),
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1",
        );
        let used: u32 = r.headers["x-mbx-used-weight-1m"].parse().unwrap();
        assert!(used <= 10);
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = refused.expect("a 429 within 20 requests of weight 2 against a limit of 10");
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.json()["code"], -1003);
    assert!(sim.stats().rest_rejected >= 1);
    sim.stop();
}

/// `X-MBX-TIME-UNIT: MICROSECOND` (either case) turns REST time fields into µs.
#[test]
fn rest_microsecond_time_unit_header() {
    let sim = start(config());
    let addr = sim.local_addr();
    let path = "/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=3";
    let ms = http_get(addr, path).json();
    for header in [
        "X-MBX-TIME-UNIT: MICROSECOND\r\n",
        "x-mbx-time-unit: microsecond\r\n",
    ] {
        let us = http_get_with(addr, path, header).json();
        let (ms, us) = (ms.as_array().unwrap(), us.as_array().unwrap());
        assert_eq!(ms.len(), us.len());
        let (first_ms, first_us) = (&ms[0], &us[0]);
        assert_eq!(
            first_us[0].as_i64().unwrap(),
            first_ms[0].as_i64().unwrap() * 1_000,
            "{header}"
        );
        assert_eq!(
            first_us[6].as_i64().unwrap(),
            first_ms[6].as_i64().unwrap() * 1_000 + 999
        );
        let t = http_get_with(addr, "/api/v3/time", header).json()["serverTime"]
            .as_i64()
            .unwrap();
        assert!((t - sim.sim_now_ms() * 1_000).abs() < 2_000_000, "{t}");
    }
    sim.stop();
}

/// `timeZone=8` interprets the day in UTC+8: the 1d candle opens at 16:00 UTC.
#[test]
fn rest_klines_time_zone() {
    let sim = start(SimConfig {
        start_time_ms: Some(1_700_000_000_000),
        ..config()
    });
    let addr = sim.local_addr();
    let day = 1_699_920_000_000i64;
    let utc = http_get(addr, "/api/v3/klines?symbol=BTCUSDT&interval=1d").json();
    assert_eq!(utc[0][0], day);
    let east = http_get(addr, "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=8").json();
    assert_eq!(east[0][0], day + 16 * 3_600_000);
    assert_eq!(east[0][6], day + 40 * 3_600_000 - 1);
    let r = http_get(
        addr,
        "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=15",
    );
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(-1130)));
    sim.stop();
}

#[test]
fn rest_endpoints_parameters_and_errors() {
    let sim = start(SimConfig {
        speed: 60.0,
        ..config()
    });
    let addr = sim.local_addr();
    let r = http_get(addr, "/api/v3/ping");
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    assert_eq!(r.headers["x-mbx-used-weight-1m"], "1");
    let t = http_get(addr, "/api/v3/time").json()["serverTime"]
        .as_i64()
        .unwrap();
    assert!((t - sim.sim_now_ms()).abs() < 2_000);
    let info = http_get(addr, "/api/v3/exchangeInfo").json();
    let names: Vec<&str> = info["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["BTCUSDT", "ETHUSDT", "ADAUSDT"]);
    assert_eq!(info["symbols"][2]["filters"][0]["tickSize"], "0.00010000");
    let depth = http_get(addr, "/api/v3/depth?symbol=ETHUSDT&limit=10").json();
    assert_eq!(depth["bids"].as_array().unwrap().len(), 10);
    assert_eq!(depth["asks"].as_array().unwrap().len(), 10);
    check_levels(&depth["bids"]);

    std::thread::sleep(Duration::from_millis(1_200));
    let all = http_get(addr, "/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000").json();
    let all = all.as_array().unwrap();
    assert!(all.len() >= 60, "{} candles", all.len());
    for pair in all.windows(2) {
        assert_eq!(
            pair[1][0].as_i64().unwrap(),
            pair[0][0].as_i64().unwrap() + 1_000,
            "contiguous"
        );
    }
    let default_limit = http_get(addr, "/api/v3/klines?symbol=BTCUSDT&interval=1s").json();
    let n = default_limit.as_array().unwrap().len();
    assert!(n >= all.len() && n <= 500, "{n}");
    let open = all[5][0].as_i64().unwrap();
    let window = http_get(
        addr,
        &format!(
            "/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={}&endTime={}",
            open,
            open + 2_000
        ),
    )
    .json();
    assert_eq!(window.as_array().unwrap().len(), 3);
    assert_eq!(window[0], all[5]);
    // The same window in microseconds (Binance takes either; 16 digits are µs).
    let window_us = http_get(
        addr,
        &format!(
            "/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={}&endTime={}",
            open * 1_000,
            (open + 2_000) * 1_000
        ),
    )
    .json();
    assert_eq!(window_us, window);
    for (query, status, code) in [
        ("symbol=BTCUSDT&interval=7m", 400, -1120),
        ("symbol=DOGEBTC&interval=1m", 400, -1121),
        ("symbol=btcusdt&interval=1m", 400, -1100),
        ("interval=1m", 400, -1102),
        ("symbol=BTCUSDT&interval=1m&limit=x", 400, -1100),
        (
            "symbol=BTCUSDT&interval=1m&startTime=10&endTime=5",
            400,
            -1023,
        ),
    ] {
        let r = http_get(addr, &format!("/api/v3/klines?{query}"));
        assert_eq!(
            (r.status, r.json()["code"].as_i64()),
            (status, Some(code)),
            "{query}: {}",
            r.body
        );
        assert!(r.headers.contains_key("x-mbx-used-weight-1m"));
    }
    assert_eq!(http_get(addr, "/api/v3/nothing").status, 404);

    // Keep-alive with two pipelined requests on one connection.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v3/time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    assert!(raw.contains("serverTime"));
    sim.stop();
}

#[test]
fn microsecond_time_unit() {
    let sim = start(SimConfig {
        trade_rate: 100.0,
        ..config()
    });
    let mut ws = connect(
        &sim,
        "/stream?streams=btcusdt@trade/btcusdt@kline_1s&timeUnit=MICROSECOND",
    );
    let (mut trade, mut kline) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (trade.is_none() || kline.is_none()) && Instant::now() < deadline {
        let Some(v) = next_json(&mut ws, Duration::from_secs(1)) else {
            continue;
        };
        if v["stream"] == "btcusdt@trade" {
            trade = Some(v["data"].clone());
        } else {
            kline = Some(v["data"].clone());
        }
    }
    let (trade, kline) = (trade.expect("trade"), kline.expect("kline"));
    let now_us = sim.sim_now_ms() * 1_000;
    for t in [
        trade["E"].as_i64().unwrap(),
        trade["T"].as_i64().unwrap(),
        kline["E"].as_i64().unwrap(),
    ] {
        assert!((now_us - t).abs() < 5_000_000, "{t} is not in microseconds");
    }
    let k = &kline["k"];
    let open = k["t"].as_i64().unwrap();
    assert_eq!(open % 1_000_000, 0);
    assert_eq!(k["T"].as_i64().unwrap(), open + 999_999);
    // The lower-case spelling works too, and milliseconds stay the default.
    let mut ws = connect(&sim, "/ws/btcusdt@trade?timeUnit=microsecond");
    let e = next_json(&mut ws, Duration::from_secs(3)).unwrap()["E"]
        .as_i64()
        .unwrap();
    assert!(e > 1_000_000_000_000_000);
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let e = next_json(&mut ws, Duration::from_secs(3)).unwrap()["E"]
        .as_i64()
        .unwrap();
    assert!(e < 10_000_000_000_000);
    sim.stop();
}

fn capture_path() -> PathBuf {
    fixtures_dir().join("captured/binance-spot-2021-10-12.ws.txt")
}

fn capture_frames() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(capture_path()).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let url = lines.next().unwrap().split(' ').next().unwrap().to_string();
    let frames = lines
        .map(|l| l.split_once(": ").unwrap().1.to_string())
        .collect();
    (url, frames)
}

#[test]
fn replay_of_the_real_capture_delivers_its_frames() {
    let (url, frames) = capture_frames();
    let streams = url.split("streams=").nth(1).unwrap();
    let sim = start(SimConfig {
        replay: Some(capture_path()),
        replay_speed: 0.0,
        ..config()
    });
    let mut ws = connect(&sim, &format!("/stream?streams={streams}"));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < frames.len() && Instant::now() < deadline {
        if let Got::Text(t) = read(&mut ws) {
            got.push(t);
        }
    }
    assert_eq!(got, frames, "every frame, in order, byte for byte");
    sim.stop();

    // Paced at 20x: the 30 s capture takes about 1.5 s; a raw client of one stream
    // receives only that stream's payloads.
    let sim = start(SimConfig {
        replay: Some(capture_path()),
        replay_speed: 20.0,
        ..config()
    });
    let expected: Vec<Value> = frames
        .iter()
        .map(|f| serde_json::from_str::<Value>(f).unwrap())
        .filter(|v| v["stream"] == "nknusdt@bookTicker")
        .map(|v| v["data"].clone())
        .collect();
    let mut ws = connect(&sim, "/ws/nknusdt@bookTicker");
    let started = Instant::now();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < expected.len() && Instant::now() < deadline {
        if let Got::Text(t) = read(&mut ws) {
            got.push(serde_json::from_str::<Value>(&t).unwrap());
        }
    }
    let took = started.elapsed();
    assert_eq!(got, expected);
    assert!(
        took > Duration::from_millis(1_000) && took < Duration::from_millis(3_500),
        "{took:?}"
    );
    sim.stop();
}

#[test]
fn stats_track_connections_and_stop_is_clean() {
    let sim = start(SimConfig {
        trade_rate: 500.0,
        ..config()
    });
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    assert!(next_json(&mut ws, Duration::from_secs(3)).is_some());
    // Counters are updated after each socket write returns, which can be just after
    // the client has read the frame.
    let deadline = Instant::now() + Duration::from_secs(3);
    while sim.stats().frames_sent == 0 {
        assert!(Instant::now() < deadline, "frames_sent stays 0");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = sim.stats();
    assert_eq!(
        (stats.connections_accepted, stats.connections_active),
        (1, 1)
    );
    assert!(stats.bytes_sent > 0 && stats.trades_generated > 0);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(3);
    while sim.stats().connections_active != 0 {
        assert!(Instant::now() < deadline, "closed connection still counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = sim.local_addr();
    let began = Instant::now();
    sim.stop();
    assert!(began.elapsed() < Duration::from_secs(2));
    assert!(
        TcpStream::connect(addr).is_err(),
        "listener closed after stop"
    );
    // A port in use is a clear error.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = simulator::start(SimConfig {
        listen: holder.local_addr().unwrap(),
        ..SimConfig::default()
    });
    assert!(matches!(err, Err(simulator::SimError::Bind { .. })));
}

/// Counts server frames in a byte stream without copying payloads: what a client that
/// only drains the socket costs.
struct FrameCounter {
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// A partial frame header carried over from the previous read.
    carry: Vec<u8>,
    frames: u64,
    lags_ms: Vec<i64>,
}

/// One frame in this many has its event time compared with the clock on arrival.
const LAG_SAMPLE_EVERY: u64 = 4096;

impl FrameCounter {
    /// Arrival time minus the frame's `E` (ms): how late the open-loop schedule runs.
    fn sample_lag(&mut self, payload: &[u8]) {
        let Some(at) = payload.windows(4).position(|w| w == b"\"E\":") else {
            return;
        };
        let digits: String = payload[at + 4..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        if let Ok(event_ms) = digits.parse::<i64>() {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.lags_ms.push(now_ms - event_ms);
        }
    }

    /// Payload length and header length of the frame header at the start of `h`, once
    /// `h` holds the whole header.
    fn header(h: &[u8]) -> Option<(usize, usize)> {
        if h.len() < 2 {
            return None;
        }
        let (len, at) = match h[1] & 0x7f {
            126 if h.len() >= 4 => (usize::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 if h.len() >= 10 => (u64::from_be_bytes(h[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        Some((len, at))
    }

    fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - i);
                self.skip -= n;
                i += n;
                continue;
            }
            if !self.carry.is_empty() || data.len() - i < 10 {
                // A header split across reads: assemble it byte by byte.
                self.carry.push(data[i]);
                i += 1;
                if let Some((len, at)) = Self::header(&self.carry) {
                    if self.carry.len() == at {
                        self.frames += u64::from(self.carry[0] & 0x0f == 0x1);
                        self.skip = len;
                        self.carry.clear();
                    }
                }
                continue;
            }
            if let Some((len, at)) = Self::header(&data[i..]) {
                self.frames += u64::from(data[i] & 0x0f == 0x1);
                if self.frames % LAG_SAMPLE_EVERY == 0 && i + at + len <= data.len() {
                    self.sample_lag(&data[i + at..i + at + len]);
                }
                i += at;
                self.skip = len;
            }
        }
    }
}

/// Frames per second the simulator sustains on one connection to a client that drains
/// as fast as it can. Run it optimised:
/// `cargo test --release --test simulator -- --ignored --nocapture throughput`
#[test]
#[ignore = "benchmark: run explicitly in release mode"]
fn throughput_one_connection() {
    let rate: f64 = std::env::var("SIM_BENCH_TRADE_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500_000.0);
    let seconds: u64 = std::env::var("SIM_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let sim = start(SimConfig {
        symbols: vec![alphapulse::market::Symbol::new("BTCUSDT").unwrap()],
        trade_rate: rate,
        ..config()
    });
    let addr = sim.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET /ws/btcusdt@trade HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut head = Vec::new();
    let mut counter = FrameCounter {
        skip: 0,
        carry: Vec::new(),
        frames: 0,
        lags_ms: Vec::new(),
    };
    // Handshake, then a sample frame to check what is being counted.
    loop {
        let n = s.read(&mut buf).unwrap();
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut rest = head.split_off(end + 4);
            while rest.len() < 128 {
                let n = s.read(&mut buf).unwrap();
                rest.extend_from_slice(&buf[..n]);
            }
            assert_eq!(rest[0], 0x81, "first frame is text");
            let len = usize::from(rest[1] & 0x7f);
            if len < 126 && rest.len() >= 2 + len {
                let sample: Value = serde_json::from_slice(&rest[2..2 + len]).unwrap();
                assert_eq!(sample["e"], "trade");
            }
            counter.feed(&rest);
            break;
        }
    }
    let warmup_end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warmup_end {
        let n = s.read(&mut buf).unwrap();
        counter.feed(&buf[..n]);
    }
    let (frames_before, sent_before) = (counter.frames, sim.stats().frames_sent);
    let began = Instant::now();
    let mut bytes = 0u64;
    while began.elapsed() < Duration::from_secs(seconds) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed: {:?}", sim.stats());
        bytes += n as u64;
        counter.feed(&buf[..n]);
    }
    let secs = began.elapsed().as_secs_f64();
    let lags = &mut counter.lags_ms;
    lags.sort_unstable();
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "arrival - E over {} sampled frames: p50 {} ms, p99 {} ms, max {} ms",
        lags.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let received = counter.frames - frames_before;
    let stats = sim.stats();
    println!(
        "trade rate {rate}/s: received {:.0} frames/s ({:.1} MB/s, {:.0} B/frame); server wrote {:.0} frames/s; slow-client drops {}",
        received as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / received.max(1) as f64,
        (stats.frames_sent - sent_before) as f64 / secs,
        stats.slow_client_disconnects,
    );
    sim.stop();
}
