//! The dashboard server over loopback with real clients: the WebSocket protocol, the
//! fan-out under a client that never reads, the limits and the access checks. Most tests
//! run the server alone on its own executor with a ring they inject records into (as
//! the shards do); one runs the whole engine against the simulator. Each is bounded to
//! a few seconds.

#[path = "support/engine.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use alphapulse::config::{Config, Switch};
use alphapulse::consumer::Stop;
use alphapulse::dashboard::fanout::DashboardStats;
use alphapulse::dashboard::status::StatusContext;
use alphapulse::dashboard::Options;
use alphapulse::harness::fanout::{synthetic_candle, synthetic_signal};
use alphapulse::market::{Interval, Symbol};
use alphapulse::ring::{self, Producer};
use alphapulse::shard::{Envelope, Record, REMOTE_SHARD};
use alphapulse::store::RecentStore;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use support::{http_get, wait_until};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

const TOKEN: &str = "test-token-0123456789";

/// The dashboard server alone, fed through rings the test pushes into.
struct Dash {
    addr: SocketAddr,
    local: Producer<Envelope>,
    remote: Producer<Envelope>,
    stats: Arc<DashboardStats>,
    store: Arc<Mutex<RecentStore>>,
    stop: Stop,
    handle: Option<ExecutorJoinHandle<()>>,
}

impl Drop for Dash {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn start(tweak: impl FnOnce(&mut Options)) -> Dash {
    let mut opts = Options::from_config(&Config::default()).unwrap();
    opts.update_interval = Duration::from_millis(300);
    tweak(&mut opts);
    let store = Arc::new(Mutex::new(RecentStore::new(100)));
    let ctx = Arc::new(StatusContext::detached(store.clone(), vec![Interval::M1]));
    let (local, local_rx) = ring::ring::<Envelope>("test->dashboard", 1 << 17);
    let (remote, remote_rx) = ring::ring::<Envelope>("remote->dashboard", 1024);
    let stats = Arc::new(DashboardStats::default());
    let stop = Stop::new();
    let (tx, rx) = mpsc::channel();
    let handle = {
        let (stats, stop) = (stats.clone(), stop.clone());
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("dashboard-test")
            .io_memory(1 << 20)
            .spawn(move || async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let feeds = vec![local_rx, remote_rx];
                alphapulse::dashboard::serve(l, ctx, feeds, opts, stats, stop).await;
            })
            .unwrap()
    };
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Dash {
        addr,
        local,
        remote,
        stats,
        store,
        stop,
        handle: Some(handle),
    }
}

fn env(record: Record) -> Envelope {
    Envelope::untimed(0, record)
}

fn signal_of(symbol: &str, seq: u64) -> Record {
    let mut s = synthetic_signal(seq, 1_000_000 + seq as i64);
    s.symbol = Symbol::new(symbol).unwrap();
    Record::Signal(s)
}

fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            tungstenite::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match tungstenite::client(req, MaybeTlsStream::Plain(stream)) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn connect(addr: SocketAddr, path: &str) -> Ws {
    connect_with(addr, path, &[]).expect("upgrade accepted")
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next text message as JSON (pings are answered by tungstenite as it reads).
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

/// Reads until the server closes; returns the close code.
fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(f)) => return f.map(|f| f.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn a_trades_subscription_gets_the_trades_of_its_symbol_as_records() {
    let d = start(|_| {});
    let mut ws = connect(d.addr, "/ws");
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "trades", "symbol": "ETHUSDT"}),
    );
    let ack = next_json(&mut ws);
    assert_eq!(
        (ack["type"].as_str(), ack["subscription"].as_str()),
        (Some("subscribed"), Some("trades"))
    );
    let trade = |symbol: &str, id: u64| alphapulse::market::Trade {
        symbol: alphapulse::market::Symbol::new(symbol).unwrap(),
        trade_id: id,
        price: "2034.10000000".parse().unwrap(),
        quantity: "0.00150000".parse().unwrap(),
        trade_time_ms: 1_700_000_000_000,
        buyer_is_maker: true,
        event_time_us: 1_700_000_000_000_123,
    };
    d.local
        .push(env(Record::Trade(trade("BTCUSDT", 1))))
        .unwrap();
    d.local
        .push(env(Record::Trade(trade("ETHUSDT", 2))))
        .unwrap();
    let agg = alphapulse::market::AggTrade {
        symbol: alphapulse::market::Symbol::new("ETHUSDT").unwrap(),
        agg_trade_id: 9,
        price: "2034.10000000".parse().unwrap(),
        quantity: "0.00300000".parse().unwrap(),
        first_trade_id: 2,
        last_trade_id: 3,
        trade_time_ms: 1_700_000_000_001,
        buyer_is_maker: false,
        event_time_us: 1_700_000_000_001_000,
    };
    d.local.push(env(Record::AggTrade(agg))).unwrap();
    let t = next_json(&mut ws);
    assert_eq!(
        t,
        json!({"type": "trade", "symbol": "ETHUSDT", "trade_id": 2, "price": "2034.10000000",
               "quantity": "0.00150000", "trade_time": 1_700_000_000_000i64,
               "buyer_is_maker": true, "event_time": 1_700_000_000_000i64})
    );
    let a = next_json(&mut ws);
    assert_eq!(
        (
            a["type"].as_str(),
            a["agg_trade_id"].as_u64(),
            a["last_trade_id"].as_u64()
        ),
        (Some("agg_trade"), Some(9), Some(3))
    );
}

#[test]
fn commands_errors_and_filters() {
    let d = start(|_| {});
    let mut ws = connect(d.addr, "/ws");
    send(&mut ws, json!({"type": "ping", "id": 7}));
    let pong = next_json(&mut ws);
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(7))
    );

    // Malformed and unknown commands get an error; the connection stays open.
    ws.send(Message::text("{not json")).unwrap();
    let e = next_json(&mut ws);
    assert_eq!(e["type"], "error");
    assert!(e["error"].as_str().unwrap().contains("malformed"), "{e}");
    send(&mut ws, json!({"type": "dance"}));
    assert!(next_json(&mut ws)["error"]
        .as_str()
        .unwrap()
        .contains("unknown command"));
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "orders"}),
    );
    assert!(next_json(&mut ws)["error"]
        .as_str()
        .unwrap()
        .contains("unknown subscription"));
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(next_json(&mut ws)["type"], "error");

    // Signals of ETHUSDT only.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "signals", "symbol": "ETHUSDT"}),
    );
    let ack = next_json(&mut ws);
    assert_eq!(
        (ack["type"].as_str(), ack["symbol"].as_str()),
        (Some("subscribed"), Some("ETHUSDT"))
    );
    d.local.push(env(signal_of("BTCUSDT", 1))).unwrap();
    d.local.push(env(signal_of("ETHUSDT", 2))).unwrap();
    let s = next_json(&mut ws);
    assert_eq!(
        (s["type"].as_str(), s["symbol"].as_str()),
        (Some("signal"), Some("ETHUSDT"))
    );

    // Candles of 1m: live and closed; records from another instance count too.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "candles", "timeframe": "1m"}),
    );
    assert_eq!(next_json(&mut ws)["type"], "subscribed");
    d.local
        .push(env(Record::LiveCandle(synthetic_candle(
            3, 1_000_000, false,
        ))))
        .unwrap();
    let c = next_json(&mut ws);
    assert_eq!(
        (c["type"].as_str(), c["closed"].as_bool()),
        (Some("candle"), Some(false))
    );
    let mut remote = env(Record::ClosedCandle(synthetic_candle(4, 2_000_000, true)));
    remote.shard = REMOTE_SHARD;
    d.remote.push(remote).unwrap();
    let c = next_json(&mut ws);
    assert_eq!(
        (c["type"].as_str(), c["closed"].as_bool()),
        (Some("candle"), Some(true))
    );

    // Unsubscribed: nothing more of that topic (the ping reply comes first).
    send(
        &mut ws,
        json!({"type": "unsubscribe", "subscription": "candles"}),
    );
    let u = next_json(&mut ws);
    assert_eq!(
        (u["type"].as_str(), u["removed"].as_u64()),
        (Some("unsubscribed"), Some(1))
    );
    d.local
        .push(env(Record::LiveCandle(synthetic_candle(
            5, 3_000_000, false,
        ))))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    send(&mut ws, json!({"type": "ping"}));
    assert_eq!(next_json(&mut ws)["type"], "pong");

    // get_signals from the store, filtered and limited.
    {
        let mut store = d.store.lock().unwrap();
        for (i, sym) in ["BTCUSDT", "ETHUSDT", "BTCUSDT"].iter().enumerate() {
            if let Record::Signal(s) = signal_of(sym, 10 + i as u64) {
                store.insert_signal(&s);
            }
        }
    }
    send(
        &mut ws,
        json!({"type": "get_signals", "symbol": "BTCUSDT", "timeframe": "1m", "limit": 1}),
    );
    let r = next_json(&mut ws);
    assert_eq!(r["type"], "signals");
    let data = r["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{r}");
    assert_eq!(data[0]["symbol"], "BTCUSDT");
    send(&mut ws, json!({"type": "get_signals", "limit": 5000}));
    assert!(next_json(&mut ws)["error"]
        .as_str()
        .unwrap()
        .contains("limit"));
}

#[test]
fn status_is_pushed_at_the_configured_interval() {
    let d = start(|o| o.update_interval = Duration::from_millis(300));
    let mut ws = connect(d.addr, "/ws/status");
    let first = next_json(&mut ws);
    assert_eq!(first["type"], "status");
    assert_eq!(first["active_clients"], 1);
    assert!(first["dashboard"]["messages_sent"].is_u64(), "{first}");
    let t0 = Instant::now();
    let mut times = Vec::new();
    while times.len() < 4 {
        assert_eq!(next_json(&mut ws)["type"], "status");
        times.push(t0.elapsed());
    }
    let span = times[3] - times[0];
    // Three intervals of 300 ms, with scheduling slack on a busy machine.
    assert!(
        span >= Duration::from_millis(750) && span <= Duration::from_millis(1500),
        "{times:?}"
    );
}

#[test]
fn ws_signals_pushes_every_signal_in_order() {
    let d = start(|_| {});
    let mut ws = connect(d.addr, "/ws/signals");
    wait_until(Duration::from_secs(2), || d.stats.active_clients.get() == 1);
    for i in 0..200 {
        d.local.push(env(signal_of("BTCUSDT", i))).unwrap();
    }
    for i in 0..200i64 {
        let s = next_json(&mut ws);
        assert_eq!(s["type"], "signal");
        assert_eq!(
            s["event_time"].as_i64(),
            Some((1_000_000 + i) / 1000),
            "{s}"
        );
    }
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_others_stay_on_time() {
    let d = start(|o| o.client_queue_messages = 64);
    let stuck = TcpStream::connect(d.addr).unwrap();
    // A small receive buffer so the stuck client's kernel takes little of the backlog.
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            stuck.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let req = format!("ws://{}/ws/signals", d.addr)
        .into_client_request()
        .unwrap();
    let (stuck_ws, _) = tungstenite::client(req, MaybeTlsStream::Plain(stuck)).unwrap();
    let mut good = connect(d.addr, "/ws/signals");
    assert!(wait_until(Duration::from_secs(2), || d
        .stats
        .active_clients
        .get()
        == 2));

    // Broadcast until the stuck client is disconnected, reading on the good one.
    let mut sent = 0u64;
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.stats.disconnected_slow.get() == 0 && Instant::now() < deadline {
        // Bursts well under the bound, so only a client that does not read overflows.
        for _ in 0..16 {
            if d.local.push(env(signal_of("BTCUSDT", sent))).is_ok() {
                sent += 1;
            }
        }
        while received < sent {
            next_json(&mut good);
            received += 1;
        }
    }
    assert_eq!(d.stats.disconnected_slow.get(), 1, "sent {sent}");
    assert!(wait_until(Duration::from_secs(3), || d
        .stats
        .active_clients
        .get()
        == 1));
    // The good client still gets every signal, and a new one promptly.
    while received < sent {
        next_json(&mut good);
        received += 1;
    }
    let t = Instant::now();
    d.local.push(env(signal_of("BTCUSDT", 999_999))).unwrap();
    assert_eq!(next_json(&mut good)["type"], "signal");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // The backlog the server held for the stuck client stayed at its bound: it was
    // dropped, not grown.
    assert!(d.stats.dropped.get() <= 64 + 1, "{}", d.stats.dropped.get());
    drop(stuck_ws);
}

#[test]
fn max_clients_is_enforced_before_the_upgrade() {
    let d = start(|o| o.max_clients = 2);
    let _a = connect(d.addr, "/ws");
    let _b = connect(d.addr, "/ws");
    assert!(wait_until(Duration::from_secs(2), || d
        .stats
        .active_clients
        .get()
        == 2));
    assert_eq!(connect_with(d.addr, "/ws", &[]).err(), Some(503));
    drop(_a);
    assert!(wait_until(Duration::from_secs(3), || d
        .stats
        .active_clients
        .get()
        == 1));
    assert!(connect_with(d.addr, "/ws", &[]).is_ok());
}

#[test]
fn token_and_origin_are_checked() {
    let d = start(|o| {
        o.token = Some(TOKEN.into());
        o.allowed_origins = vec!["https://ok.example".into()];
    });
    assert_eq!(connect_with(d.addr, "/ws", &[]).err(), Some(401));
    assert_eq!(
        connect_with(
            d.addr,
            "/ws",
            &[("Authorization", "Bearer wrong-token-000000")]
        )
        .err(),
        Some(401)
    );
    let bearer = format!("Bearer {TOKEN}");
    assert!(connect_with(d.addr, "/ws", &[("Authorization", &bearer)]).is_ok());
    assert!(connect_with(d.addr, &format!("/ws?token={TOKEN}"), &[]).is_ok());
    let with_token = format!("/ws/status?token={TOKEN}");
    assert_eq!(
        connect_with(d.addr, &with_token, &[("Origin", "https://evil.example")]).err(),
        Some(403)
    );
    assert!(connect_with(d.addr, &with_token, &[("Origin", "https://ok.example")]).is_ok());
    let own = format!("http://{}", d.addr);
    assert!(connect_with(d.addr, &with_token, &[("Origin", &own)]).is_ok());

    assert_eq!(http_get(d.addr, "/api/status").0, 401);
    assert_eq!(http_get(d.addr, "/metrics").0, 401);
    assert_eq!(
        http_get(d.addr, &format!("/api/status?token={TOKEN}")).0,
        200
    );
    assert_eq!(http_get(d.addr, "/healthz").0, 200);
    assert!(d.stats.unauthorized.get() >= 4);
}

/// A GET with `headers`; the whole response (status line, headers, body).
fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The page's way in: the token, in a header, is traded for an HttpOnly, SameSite
/// cookie that stands for it on every request and upgrade; the cookie is not the token,
/// and a wrong one opens nothing.
#[test]
fn a_session_cookie_stands_for_the_token() {
    let d = start(|o| o.token = Some(TOKEN.into()));
    assert!(raw_get(d.addr, "/api/session", &[]).starts_with("HTTP/1.1 401"));
    let bearer = format!("Bearer {TOKEN}");
    let answer = raw_get(d.addr, "/api/session", &[("Authorization", &bearer)]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let set = answer
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap();
    let value = cookie
        .strip_prefix("alphapulse_session=")
        .expect("the session cookie");
    assert_eq!(value.len(), 64);
    assert!(!value.contains(TOKEN), "the cookie is not the token");

    let with = |c: &str| raw_get(d.addr, "/api/status", &[("Cookie", c)]);
    assert!(with(&format!("theme=dark; {cookie}")).starts_with("HTTP/1.1 200"));
    assert!(with(&format!("alphapulse_session={TOKEN}")).starts_with("HTTP/1.1 401"));
    assert!(with("alphapulse_session=00").starts_with("HTTP/1.1 401"));
    assert!(connect_with(d.addr, "/ws", &[("Cookie", cookie)]).is_ok());
    assert_eq!(
        connect_with(d.addr, "/ws", &[("Cookie", "alphapulse_session=x")]).err(),
        Some(401)
    );
}

#[test]
fn an_oversized_frame_closes_with_1009() {
    let d = start(|_| {});
    let mut ws = connect(d.addr, "/ws");
    ws.send(Message::text("x".repeat(20 * 1024))).unwrap();
    assert_eq!(close_code(&mut ws), Some(CloseCode::Size));
    assert_eq!(d.stats.oversized.get(), 1);
}

#[test]
fn flooding_commands_closes_with_1008() {
    let d = start(|o| o.max_inbound_msgs_per_s = 5);
    let mut ws = connect(d.addr, "/ws");
    for _ in 0..30 {
        if ws.send(Message::text(r#"{"type":"ping"}"#)).is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws), Some(CloseCode::Policy));
    assert_eq!(d.stats.rate_limited.get(), 1);
}

/// Pings cost from the same budget as commands (each is answered with a pong).
#[test]
fn flooding_pings_closes_with_1008() {
    let d = start(|o| o.max_inbound_msgs_per_s = 5);
    let mut ws = connect(d.addr, "/ws");
    for _ in 0..30 {
        if ws.send(Message::Ping(vec![1u8, 2, 3].into())).is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws), Some(CloseCode::Policy));
    assert_eq!(d.stats.rate_limited.get(), 1);
}

#[test]
fn a_client_that_stops_answering_pings_is_dropped() {
    let d = start(|o| {
        o.ws_ping_interval = Duration::from_millis(100);
        o.ws_idle_timeout = Duration::from_millis(600);
    });
    // Never reads, so tungstenite never answers the server's pings.
    let _silent = connect(d.addr, "/ws");
    // Reads (and so answers pings) all along.
    let mut alive = connect(d.addr, "/ws");
    if let MaybeTlsStream::Plain(s) = alive.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while d.stats.disconnected_idle.get() == 0 && Instant::now() < deadline {
        match alive.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the live client was dropped: {e}"),
        }
    }
    assert_eq!(d.stats.disconnected_idle.get(), 1);
    assert!(wait_until(Duration::from_secs(2), || d
        .stats
        .active_clients
        .get()
        == 1));
}

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn read_all(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn header_floods_and_slow_heads_are_cut_off() {
    let d = start(|o| o.head_deadline = Duration::from_millis(500));
    // Too many headers.
    let mut s = raw(d.addr);
    let mut head = String::from("GET /ws HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        head.push_str(&format!("X-Flood-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    assert!(read_all(s).starts_with("HTTP/1.1 431"));
    // Too many header bytes.
    let mut s = raw(d.addr);
    let _ = s.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(20_000)).as_bytes());
    assert!(read_all(s).starts_with("HTTP/1.1 431"));
    // A head that never completes (slowloris) is cut off at the deadline.
    let mut s = raw(d.addr);
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let text = read_all(s);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(d.stats.heads_refused.get(), 3);
}

/// DNS rebinding: a page served from attacker.example whose name then resolves to
/// 127.0.0.1 reaches the dashboard with `Host: attacker.example`. Without a token that
/// Host is refused on every route and upgrade; addresses, localhost and configured
/// names are answered; with a token the token decides.
#[test]
fn a_rebound_host_is_refused_without_a_token() {
    let request = |addr: SocketAddr, path: &str, host: &str, extra: &str| -> String {
        let mut s = raw(addr);
        if extra.contains("Upgrade") {
            // An accepted upgrade stays open: read its head only.
            let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            return String::from_utf8_lossy(&head).into_owned();
        }
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        );
        read_all(s)
    };
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let d = start(|o| o.allowed_hosts = vec!["engine".into()]);
    for path in ["/api/status", "/api/candles", "/metrics", "/"] {
        let answer = request(d.addr, path, "attacker.example:8000", "");
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(answer.contains("host not allowed"), "{path}: {answer}");
    }
    let answer = request(d.addr, "/ws", "attacker.example:8000", upgrade);
    assert!(answer.starts_with("HTTP/1.1 403"), "/ws: {answer}");
    for host in [
        d.addr.to_string(),
        "localhost:8000".into(),
        "engine:8000".into(),
    ] {
        let answer = request(d.addr, "/api/status", &host, "");
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let answer = request(d.addr, "/ws", &d.addr.to_string(), upgrade);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert_eq!(d.stats.forbidden_host.get(), 5);

    let token = "a-token-of-at-least-16-chars";
    let d = start(|o| o.token = Some(token.into()));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let answer = request(d.addr, "/api/status", "attacker.example", &bearer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request(d.addr, "/api/status", "attacker.example", "");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn connections_per_address_are_capped() {
    let d = start(|o| o.max_connections_per_ip = 3);
    let held: Vec<TcpStream> = (0..3).map(|_| raw(d.addr)).collect();
    assert!(wait_until(Duration::from_secs(2), || d
        .stats
        .open_connections
        .get()
        == 3));
    // The refusal is written at once, maybe before the request: read it regardless.
    let mut s = raw(d.addr);
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(read_all(s).starts_with("HTTP/1.1 429"));
    assert_eq!(d.stats.refused_per_ip.get(), 1);
    drop(held);
    assert!(wait_until(Duration::from_secs(3), || http_get(
        d.addr, "/healthz"
    )
    .0 == 200));
}

#[test]
fn http_routes_validate_and_report() {
    let d = start(|_| {});
    let (code, body) = http_get(d.addr, "/api/candles?limit=0");
    assert_eq!(code, 400);
    assert!(body.contains("limit"), "{body}");
    let (code, body) = http_get(d.addr, "/api/signals?from=yesterday");
    assert_eq!(code, 400);
    assert!(body.contains("from"), "{body}");
    let (code, body) = http_get(
        d.addr,
        "/api/candles?symbol=BTCUSDT&timeframe=1m&from=0&to=9",
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["candles"].is_array());
    // A well-formed symbol or timeframe the engine does not follow: 404 naming it.
    for path in [
        "/api/candles?symbol=FOOUSDT",
        "/api/signals?symbol=FOOUSDT&timeframe=1m",
        "/api/candles?symbol=BTCUSDT&timeframe=1d",
    ] {
        let (code, body) = http_get(d.addr, path);
        assert_eq!(code, 404, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("is not followed by this engine"),
            "{path}: {body}"
        );
    }

    let (code, body) = http_get(d.addr, "/api/performance");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    for key in support::PERFORMANCE_FIELDS {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    let (code, body) = http_get(d.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE alphapulse_dashboard_clients gauge"),
        "{body}"
    );
    assert!(
        body.contains("alphapulse_dashboard_messages_sent_total "),
        "{body}"
    );
    assert_eq!(http_get(d.addr, "/ws").0, 426);
    assert_eq!(http_get(d.addr, "/ws/echo").0, 404);
}

#[test]
fn the_echo_endpoint_echoes_when_enabled() {
    let d = start(|o| o.conformance_echo = true);
    let mut ws = connect(d.addr, "/ws/echo");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0u8; 100_000])).unwrap();
    assert_eq!(ws.read().unwrap().len(), 100_000);
}

/// Echo clients count against `max_clients` and are closed when idle, like dashboard
/// clients.
#[test]
fn echo_clients_are_bounded_and_closed_when_idle() {
    let d = start(|o| {
        o.conformance_echo = true;
        o.max_clients = 2;
        o.ws_idle_timeout = Duration::from_millis(800);
    });
    let mut a = connect(d.addr, "/ws/echo");
    let mut b = connect(d.addr, "/ws/echo");
    for ws in [&mut a, &mut b] {
        ws.send(Message::text("here")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("here"));
    }
    assert_eq!(connect_with(d.addr, "/ws/echo", &[]).err(), Some(503));
    assert_eq!(connect_with(d.addr, "/ws", &[]).err(), Some(503));
    // Silent past the idle timeout: closed as going away.
    assert_eq!(close_code(&mut a), Some(CloseCode::Away));
    assert_eq!(close_code(&mut b), Some(CloseCode::Away));
    assert!(wait_until(Duration::from_secs(3), || connect_with(
        d.addr,
        "/ws",
        &[]
    )
    .is_ok()));
}

#[test]
fn the_engine_feeds_the_dashboard_through_its_rings() {
    engine_feeds_the_dashboard(false);
}

/// `engine.dashboard_on_shard`: the dashboard runs on the shard's executor, with the
/// same answers, and the engine still stops cleanly.
#[test]
fn the_dashboard_can_run_on_the_shards_executor() {
    engine_feeds_the_dashboard(true);
}

fn engine_feeds_the_dashboard(on_shard: bool) {
    let run = support::start(
        support::sim_config(&["BTCUSDT"]),
        |c| c.engine.dashboard_on_shard = Switch::from_flag(on_shard),
        &["BTCUSDT"],
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let mut ws = connect(addr, "/ws");
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "candles", "symbol": "BTCUSDT"}),
    );
    assert_eq!(next_json(&mut ws)["type"], "subscribed");
    // At speed 60 a 1m candle closes every second; live updates come with every trade.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut live, mut closed) = (0, 0);
    while Instant::now() < deadline && (live == 0 || closed == 0) {
        let c = next_json(&mut ws);
        assert_eq!(c["type"], "candle");
        assert_eq!(c["symbol"], "BTCUSDT");
        if c["closed"].as_bool() == Some(true) {
            closed += 1;
        } else {
            live += 1;
        }
    }
    assert!(live > 0 && closed > 0, "live {live} closed {closed}");
    let (code, body) = http_get(addr, "/api/status");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["active_clients"], 1, "{body}");
    assert_eq!(run.engine.dashboard_stats().active_clients.get(), 1);
    // The recent store is kept by the dashboard's drain, wherever it runs.
    let candles = support::http_json(addr, "/api/candles?symbol=BTCUSDT&timeframe=1m&limit=1");
    assert_eq!(
        candles["candles"].as_array().map(Vec::len),
        Some(1),
        "{candles}"
    );
    drop(ws);
    let stopped = Instant::now();
    drop(run);
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the engine took {:?} to stop",
        stopped.elapsed()
    );
}

#[test]
fn tls_serves_https_and_wss_from_the_configured_files() {
    use futures_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("alphapulse-dash-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let mut config = Config::default();
    config.dashboard.tls_cert_file = Some(cert_path);
    config.dashboard.tls_key_file = Some(key_path);
    let tls = Options::from_config(&config).unwrap().tls;
    let _ = std::fs::remove_dir_all(&dir);
    let d = start(|o| o.tls = tls);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(key.cert.pem().as_bytes()).unwrap())
        .unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let tls_stream = || {
        let conn = rustls::ClientConnection::new(
            client.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        rustls::StreamOwned::new(conn, raw(d.addr))
    };
    let mut s = tls_stream();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    assert!(String::from_utf8_lossy(&text).starts_with("HTTP/1.1 200"));

    let req = "wss://localhost/ws".into_client_request().unwrap();
    let (mut ws, _) = tungstenite::client(req, tls_stream()).unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => assert!(t.as_str().contains("pong"), "{t}"),
        other => panic!("{other:?}"),
    }
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut s = raw(d.addr);
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!read_all(s).starts_with("HTTP/"));
}

#[test]
fn a_public_address_without_a_token_is_refused_at_startup() {
    let dir = std::env::temp_dir();
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_alphapulse"));
        cmd.args(["config", "check"])
            .current_dir(&dir)
            .env_clear()
            .env("DASHBOARD_ADDR", "0.0.0.0:8000")
            .env("ALPHAPULSE_PIN_CORES", "false");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DASHBOARD_TOKEN") && err.contains("DASHBOARD_ALLOW_PUBLIC"),
        "{err}"
    );
    assert_eq!(run(&[("DASHBOARD_TOKEN", TOKEN)]).status.code(), Some(0));
    assert_eq!(
        run(&[("DASHBOARD_ALLOW_PUBLIC", "true")]).status.code(),
        Some(0)
    );
}

#[test]
fn metrics_pass_promtool() {
    let d = start(|_| {});
    let _client = connect(d.addr, "/ws/signals");
    d.local.push(env(signal_of("BTCUSDT", 1))).unwrap();
    let (code, body) = http_get(d.addr, "/metrics");
    assert_eq!(code, 200);
    support::check_metrics_text(&body);
}

/// `bench fanout` end to end, small: its clients (the engine's own client side of the
/// protocol) connect, subscribe, receive the broadcasts, and the report accounts for
/// every message and for the client process's CPU.
#[test]
fn bench_fanout_delivers_every_broadcast_to_every_client() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_alphapulse"))
        .args(["bench", "fanout", "--clients", "40", "--rate", "50"])
        .args(["--seconds", "2", "--client-threads", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as i32;
    // Both pipes are read while it runs (wait_with_output), so neither can fill up.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(Duration::from_secs(60)) else {
        // SAFETY: a plain signal to the child this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("bench fanout did not finish in 60 s");
    };
    let output = output.expect("the bench's output");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(report["connected"], 40, "{report}");
    let broadcasts = report["broadcasts"].as_u64().unwrap();
    assert!(broadcasts >= 80, "{report}");
    let expected = report["expected_msgs"].as_u64().unwrap();
    assert_eq!(expected, broadcasts * 40);
    // Every message, unless the host stalled the server past the bench's 1 s grace
    // before its stop (frames still queued then are dropped with the connection).
    let received = report["client_received_msgs"].as_u64().unwrap();
    assert!(
        received <= expected && received * 100 >= expected * 99,
        "{report}"
    );
    assert_eq!(
        report["latency_us"]["count"].as_u64(),
        Some(received),
        "{report}"
    );
    // Read from the client process's `/proc` entry (null had it not been found); in
    // clock ticks, so a short window may round it to zero.
    let client_cpu = report["client_cpu_s"].as_f64().expect("client CPU");
    assert!(client_cpu >= 0.0, "{report}");
}
