//! The REST weight budget end to end: the engine's REST client talks to the built-in
//! simulator through a proxy on loopback that rewrites `X-MBX-USED-WEIGHT-1M` to a
//! value past `u32::MAX`. A header that wrapped would read as a small weight and let
//! the engine keep sending; it must saturate, hold every request until the exchange's
//! minute turns, and leave the live series whole. Every wait is bounded in time.

#[path = "support/engine.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alphapulse::market::Interval;
use serde_json::Value;
use support::*;

const SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

/// 2^32 + 5: read into 32 bits by truncation it would be 5, a budget nearly unused.
const HUGE_WEIGHT: &str = "4294967301";

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One request the proxy forwarded: the wall ms it arrived and was answered.
#[derive(Clone, Copy, Debug)]
struct Forwarded {
    arrived_ms: u64,
    answered_ms: u64,
}

/// An HTTP/1.1 proxy for the simulator's REST API, one connection at a time, that
/// replaces the answer's `X-MBX-USED-WEIGHT-1M` with [`HUGE_WEIGHT`].
struct WeightProxy {
    addr: SocketAddr,
    upstream: Arc<OnceLock<SocketAddr>>,
    log: Arc<Mutex<Vec<Forwarded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WeightProxy {
    fn start() -> WeightProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let upstream = Arc::new(OnceLock::<SocketAddr>::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (upstream, log, stop) = (upstream.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let arrived_ms = wall_ms();
                            if let Some(up) = upstream.get() {
                                if forward(client, *up).is_ok() {
                                    log.lock().unwrap().push(Forwarded {
                                        arrived_ms,
                                        answered_ms: wall_ms(),
                                    });
                                }
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        WeightProxy {
            addr,
            upstream,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn log(&self) -> Vec<Forwarded> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for WeightProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head from `client` (the engine's GETs have no body), sends it
/// upstream with `Connection: close`, and writes the answer back with its weight header
/// replaced. Each connection carries one request (the answer says `Connection: close`).
fn forward(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = client.read(&mut byte[..1])?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "keep-alive" {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    up.set_read_timeout(Some(Duration::from_secs(10)))?;
    up.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ErrorKind::InvalidData)?;
    let (answer_head, body) = answer.split_at(split + 4);
    let mut out = String::new();
    for line in String::from_utf8_lossy(answer_head)
        .split("\r\n")
        .filter(|l| !l.is_empty())
    {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "x-mbx-used-weight-1m" && name != "x-mbx-used-weight" && name != "connection" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "x-mbx-used-weight: {HUGE_WEIGHT}\r\nx-mbx-used-weight-1m: {HUGE_WEIGHT}\r\nConnection: close\r\n\r\n"
    ));
    client.write_all(out.as_bytes())?;
    client.write_all(body)?;
    Ok(())
}

fn rest_status(run: &Running) -> Value {
    http_json(run.engine.dashboard_addr(), "/api/status")["completeness"]["backfill"].clone()
}

#[test]
fn a_weight_header_past_u32_saturates_and_holds_requests_to_the_next_minute() {
    let proxy = WeightProxy::start();
    let run = start(
        sim_config(&SYMS),
        |c| {
            let upstream: SocketAddr = c
                .binance_rest_url
                .trim_start_matches("http://")
                .parse()
                .expect("the simulator's REST address");
            proxy.upstream.set(upstream).expect("set once");
            c.binance_rest_url = format!("http://{}", proxy.addr);
        },
        &SYMS,
        &[Interval::M1],
    );
    // The first answer saturates the budget; the other series' warm start waits.
    let mut seen = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen = rest_status(&run);
            seen["used_weight_1m"].as_u64() == Some(u64::from(u32::MAX))
                && seen["budget_waits"].as_u64().unwrap_or(0) >= 1
        }),
        "the weight did not saturate at u32::MAX and hold the next request: {seen}"
    );
    // Live candles keep closing while the REST thread waits (speed 60: one a second).
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || SYMS.iter().all(|s| closed(
            &run,
            s,
            Interval::M1
        )
        .len()
            >= 6)),
        "candles did not close while REST waited: {}",
        run.engine.status().snapshot()
    );
    let log = proxy.log();
    assert!(!log.is_empty(), "no REST request reached the proxy");
    // No request is sent in a minute whose answer reported the budget spent.
    for pair in log.windows(2) {
        assert!(
            pair[1].arrived_ms / 60_000 > pair[0].answered_ms / 60_000,
            "a request was sent in the minute a saturated answer came: {log:?}"
        );
    }
    // At most one request per wall minute the test ran through.
    let minutes = started.elapsed().as_secs() / 60 + 2;
    assert!(
        (log.len() as u64) <= minutes + 1,
        "{} requests in about {minutes} minutes: {log:?}",
        log.len()
    );
    // The series stayed whole and equal to the exchange's klines.
    for s in SYMS {
        let candles = closed(&run, s, Interval::M1);
        assert_match_rest(&run, s, Interval::M1, &candles);
    }
    let metrics = http_get(run.engine.dashboard_addr(), "/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("alphapulse_rest_used_weight_1m") && l.ends_with(" 4294967295")),
        "the metric shows the saturated weight"
    );
}

/// An exchange that answers every REST request 429 (a weight limit of 1 per minute):
/// `/metrics` shows the REST thread blocked by the Retry-After and counts the answers,
/// the figures the REST alert reads.
#[test]
fn a_retry_after_shows_as_rest_blocked_in_metrics() {
    let mut sim = sim_config(&SYMS);
    sim.weight_limit = 1;
    let run = start(sim, |_| {}, &SYMS, &[Interval::M1]);
    let addr = run.engine.dashboard_addr();
    let one = |body: &str, name: &str| samples(body, name).first().map(|s| s.value);
    let mut metrics = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            metrics = http_get(addr, "/metrics").1;
            one(&metrics, "alphapulse_rest_blocked") == Some(1.0)
        }),
        "the REST thread never showed blocked: {metrics}"
    );
    assert_eq!(
        metric_type(&metrics, "alphapulse_rest_blocked"),
        Some("gauge")
    );
    assert!(one(&metrics, "alphapulse_rest_rate_limited_total").unwrap() >= 1.0);
}
