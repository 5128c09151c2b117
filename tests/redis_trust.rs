//! The Redis bridge as a trust boundary, against real private `redis-server`s: forged
//! records (outside the universe, of this instance's own symbols, malformed, a flood of
//! new series, badly signed) published into a running engine's Redis are refused and
//! counted by reason, and its API stays right; AUTH with a password and with an ACL
//! user, and `rediss://`, carry records from a publisher to a bridge; a SIGSTOPped
//! Redis is noticed by the bridge's PING and the bridge reconnects.

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/engine.rs"]
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alphapulse::config::instance_of;
use alphapulse::harness::redis::sample_candle;
use alphapulse::market::{Candle, Interval, Symbol};
use alphapulse::record;
use alphapulse::ring::ring;
use alphapulse::shard::{Envelope, Record};
use alphapulse::sinks::redis::bridge::{Bridge, BridgeStats, Universe};
use alphapulse::sinks::redis::resp::{self, Conn, Target};
use alphapulse::sinks::redis::sign::BridgeKey;
use alphapulse::sinks::redis::{PublisherStats, RedisSettings};
use alphapulse::store::RecentStore;
use redis_support::{RedisServer, Security, Subscriber};
use serde_json::Value;
use support::wait_until;

const KEY: &str = "a-bridge-key-of-more-than-32-characters";

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn candle_payload(c: &Candle, key: Option<&BridgeKey>) -> Vec<u8> {
    let mut payload = Vec::new();
    record::write_candle(&mut payload, c);
    if let Some(k) = key {
        k.sign(&mut payload);
    }
    payload
}

/// One `PUBLISH` from an outsider that can reach Redis; returns the receivers.
fn publish(conn: &mut Conn, channel: &str, payload: &[u8]) -> i64 {
    let mut cmd = Vec::new();
    resp::command(&mut cmd, &[b"PUBLISH", channel.as_bytes(), payload]);
    conn.write_all(&cmd).unwrap();
    conn.next(|v| match v {
        resp::Value::Int(n) => n,
        other => panic!("PUBLISH answered {other:?}"),
    })
    .unwrap()
    .expect("PUBLISH answered in time")
}

fn connect(url: &str, ca: Option<&std::path::Path>) -> Conn {
    let target = Target::parse_with_ca(url, ca).unwrap();
    Conn::connect(&target, Duration::from_secs(2), Duration::from_secs(2)).expect("connects")
}

/// Short timeouts so fault tests take seconds.
fn quick(mut s: RedisSettings) -> RedisSettings {
    s.connect_timeout = Duration::from_millis(500);
    s.io_timeout = Duration::from_millis(500);
    s.backoff_initial = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s.ping_every = Duration::from_millis(100);
    s
}

/// A bridge on its own thread, stopped on drop.
struct BridgeThread {
    stats: Arc<BridgeStats>,
    store: Arc<Mutex<RecentStore>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BridgeThread {
    fn start(settings: RedisSettings) -> BridgeThread {
        let store = Arc::new(Mutex::new(RecentStore::new(100)));
        let bridge = Bridge::new(settings, store.clone(), None);
        let stats = bridge.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || bridge.run(stop))
        };
        BridgeThread {
            stats,
            store,
            stop,
            thread: Some(thread),
        }
    }

    fn closed(&self, symbol: &str) -> Vec<Candle> {
        let store = self.store.lock().unwrap();
        store.closed(Some(sym(symbol)), None, 100)
    }
}

impl Drop for BridgeThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Two symbols on different instances of a two-instance split: (ours, theirs) from
/// instance 0's point of view.
fn split() -> (&'static str, &'static str) {
    let candidates = [
        "BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT",
    ];
    let ours = candidates
        .iter()
        .find(|s| instance_of(sym(s), 2) == 0)
        .unwrap();
    let theirs = candidates
        .iter()
        .find(|s| instance_of(sym(s), 2) == 1)
        .unwrap();
    (ours, theirs)
}

fn rejected(status: &Value, reason: &str) -> u64 {
    status["sinks"]["redis"]["bridge"]["rejected"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn forged_bridge_messages_are_refused_counted_and_the_engine_api_stays_right() {
    let redis = RedisServer::start();
    let (ours, theirs) = split();
    // The universe: our symbol, theirs, and three more of theirs for the flood.
    let mut names = vec![ours, theirs];
    let more: Vec<String> = (0..40)
        .map(|i| format!("F{i}USDT"))
        .filter(|s| instance_of(sym(s), 2) == 1)
        .take(3)
        .collect();
    names.extend(more.iter().map(String::as_str));
    let run = support::start(
        support::sim_config(&names),
        |c| {
            c.redis_url = Some(redis.url());
            c.redis_channel_prefix = "trust".into();
            c.engine.instance_count = 2;
            c.engine.instance_index = 0;
            // Our one series, and room for two of theirs.
            c.engine.max_series = 3;
            c.redis_bridge_key = Some(KEY.into());
        },
        &names,
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let status = || support::http_json(addr, "/api/status");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = status();
            s["sinks"]["redis"]["bridge"]["connected"] == true
                && s["candles"]["closed_total"].as_u64().unwrap_or(0) >= 2
        }),
        "engine and bridge up: {}",
        status()
    );
    let key = BridgeKey::new(KEY.as_bytes());
    let mut forger = connect(&redis.url(), None);
    let far = 4_000_000_000_000i64; // far ahead of the simulator's candles
    let forged = |s: &str, open: i64| sample_candle(sym(s), Interval::M1, open, true, 7);
    // Signed, but outside the universe; of our own symbol; on the wrong channel; not
    // a record; unsigned; signed with another key.
    publish(
        &mut forger,
        "trust:candles:EVILUSDT:1m",
        &candle_payload(&forged("EVILUSDT", far), Some(&key)),
    );
    publish(
        &mut forger,
        &format!("trust:candles:{ours}:1m"),
        &candle_payload(&forged(ours, far), Some(&key)),
    );
    publish(
        &mut forger,
        &format!("trust:candles:{ours}:1m"),
        &candle_payload(&forged(theirs, far), Some(&key)),
    );
    let mut junk = b"{\"type\":\"candle\",\"symbol\":1}".to_vec();
    key.sign(&mut junk);
    publish(&mut forger, &format!("trust:candles:{theirs}:1m"), &junk);
    publish(
        &mut forger,
        &format!("trust:candles:{theirs}:1m"),
        &candle_payload(&forged(theirs, far), None),
    );
    let other = BridgeKey::new(b"somebody-else's-key-somebody-else's");
    publish(
        &mut forger,
        &format!("trust:candles:{theirs}:1m"),
        &candle_payload(&forged(theirs, far), Some(&other)),
    );
    // A flood of new series: two fit under the bound, the third is refused.
    for s in &more {
        publish(
            &mut forger,
            &format!("trust:candles:{s}:1m"),
            &candle_payload(&forged(s, far), Some(&key)),
        );
    }
    let counted = wait_until(Duration::from_secs(10), || {
        let s = status();
        rejected(&s, "unknown_symbol") == 1
            && rejected(&s, "malformed") == 2
            && rejected(&s, "bad_signature") >= 2
            && rejected(&s, "over_bound") == 1
            && s["sinks"]["redis"]["bridge"]["applied"].as_u64() == Some(2)
    });
    let s = status();
    assert!(counted, "{}", s["sinks"]["redis"]);
    // Our own publishes come back signed and are skipped like the forged one.
    assert!(rejected(&s, "own_symbol") >= 1);
    // The engine signs what it publishes: no unsigned record of ours is refused as
    // badly signed beyond the two forged ones.
    assert_eq!(rejected(&s, "bad_signature"), 2, "{}", s["sinks"]["redis"]);
    assert_eq!(s["sinks"]["redis"]["bridge"]["signed"], true);
    // The API: nothing of the forgeries but the two records that passed every check.
    let candles = |q: &str| -> Vec<Value> {
        support::http_json(addr, &format!("/api/candles?{q}&limit=1000"))["candles"]
            .as_array()
            .unwrap()
            .clone()
    };
    // A symbol outside the universe is not served at all, and none of its forged
    // candles is among everything the API lists.
    assert_eq!(
        support::http_get(addr, "/api/candles?symbol=EVILUSDT").0,
        404
    );
    let all = support::http_json(addr, "/api/candles?limit=1000")["candles"]
        .as_array()
        .unwrap()
        .clone();
    assert!(all.iter().all(|c| c["symbol"] != "EVILUSDT"), "{all:?}");
    let ours_far = candles(&format!("symbol={ours}"))
        .iter()
        .filter(|c| c["open_time"].as_i64() == Some(far))
        .count();
    assert_eq!(ours_far, 0, "a forged candle of our own symbol was kept");
    assert!(candles(&format!("symbol={theirs}")).is_empty());
    let flood: Vec<usize> = more
        .iter()
        .map(|s| candles(&format!("symbol={s}")).len())
        .collect();
    assert_eq!(
        flood,
        vec![1, 1, 0],
        "two new series fit, the third is refused"
    );
    // Our own series still grows past the bound.
    let before = candles(&format!("symbol={ours}")).len();
    assert!(
        wait_until(Duration::from_secs(10), || candles(&format!(
            "symbol={ours}"
        ))
        .len()
            > before),
        "our own series stopped updating"
    );
    // /metrics carries the reasons.
    let (code, metrics) = support::http_get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("alphapulse_redis_bridge_rejected_total{reason=\"unknown_symbol\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("alphapulse_redis_bridge_rejected_total{reason=\"over_bound\"} 1"));
    assert!(metrics.contains("# TYPE alphapulse_redis_bridge_rejected_total counter"));
    drop(run);
}

/// A self-signed certificate for 127.0.0.1 (and localhost), written to a temp dir.
fn certificate(dir: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("alphapulse-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c, k)
}

/// A publisher (as instance 1 of 2) and a bridge (instance 0) on `url`: five closed
/// candles of instance 1's symbol go through, every one.
fn publisher_to_bridge(url: &str, ca: Option<PathBuf>, key: Option<&str>) {
    let (ours, theirs) = split();
    let universe = Universe::new(&[sym(ours), sym(theirs)], &[Interval::M1], 0, 2);
    let mut settings = quick(RedisSettings::new(url, "sec"));
    settings.tls_ca_file = ca.clone();
    settings.key = key.map(|k| BridgeKey::new(k.as_bytes()));
    settings.universe = universe;
    let bridge = BridgeThread::start(settings.clone());
    assert!(wait_until(Duration::from_secs(10), || bridge
        .stats
        .connected
        .get()
        == 1));
    let (tx, rx) = ring::<Envelope>("shard->redis", 1024);
    let stats = Arc::new(PublisherStats::default());
    let stop = alphapulse::consumer::Stop::new();
    let publisher = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::spawn(move || {
            let io = alphapulse::engine::SinkIo {
                rings: vec![rx],
                stop,
                latency: alphapulse::latency::Registry::new().recorder("redis"),
                busy_poll: false,
            };
            alphapulse::sinks::redis::run(io, settings, stats)
        })
    };
    for i in 0..5 {
        let c = sample_candle(sym(theirs), Interval::M1, i * 60_000, true, i as u64);
        tx.push(Envelope::untimed(0, Record::ClosedCandle(c)))
            .unwrap();
    }
    let through = wait_until(Duration::from_secs(10), || bridge.closed(theirs).len() == 5);
    stop.request();
    publisher.join().unwrap();
    assert!(
        through,
        "bridge got {} of 5; publisher: published {} dropped {} connect failures {}",
        bridge.closed(theirs).len(),
        stats.published.get(),
        stats.dropped.get(),
        stats.connect_failures.get()
    );
    assert_eq!(stats.published.get(), 5);
    assert_eq!(bridge.stats.applied.get(), 5);
}

#[test]
fn auth_with_a_password_carries_records_and_a_wrong_one_is_refused() {
    let redis = RedisServer::start_secured(Security {
        password: Some("s3cret-pass".into()),
        ..Security::default()
    });
    publisher_to_bridge(&redis.url(), None, None);
    // Without the password Redis refuses every command; with a wrong one, the
    // connection.
    let mut anonymous = connect(&format!("redis://127.0.0.1:{}", redis.port), None);
    let mut cmd = Vec::new();
    resp::command(&mut cmd, &[b"PUBLISH", b"sec:x", b"y"]);
    anonymous.write_all(&cmd).unwrap();
    let refused =
        anonymous.next(|v| matches!(v, resp::Value::Error(e) if e.starts_with(b"NOAUTH")));
    assert_eq!(refused.unwrap(), Some(true));
    let wrong = Target::parse(&redis.url_as("", "wrong")).unwrap();
    let e = Conn::connect(&wrong, Duration::from_secs(1), Duration::from_secs(1))
        .err()
        .expect("a wrong password is refused");
    assert!(e.to_string().contains("WRONGPASS"), "{e}");
}

#[test]
fn a_user_allowed_only_the_prefix_pattern_still_bridges_through_it() {
    let redis = RedisServer::start();
    // Redis compares a PSUBSCRIBE pattern with the user's channel rules as text: this
    // user may subscribe to `sec:*` and to nothing narrower, so the bridge's
    // per-series patterns are refused and it falls back to the prefix's.
    let mut admin = connect(&redis.url(), None);
    let mut cmd = Vec::new();
    resp::command(
        &mut cmd,
        &[
            b"ACL",
            b"SETUSER",
            b"bridge",
            b"on",
            b">bridge-pass",
            b"resetchannels",
            b"&sec:*",
            b"~*",
            b"+@all",
        ],
    );
    admin.write_all(&cmd).unwrap();
    let ok = admin.next(|v| matches!(v, resp::Value::Simple(b"OK")));
    assert_eq!(ok.unwrap(), Some(true), "ACL SETUSER");
    // The premise: as this user, the per-series patterns are refused.
    let mut user = connect(&redis.url_as("bridge", "bridge-pass"), None);
    cmd.clear();
    resp::command(&mut cmd, &[b"PSUBSCRIBE", b"sec:candles:*"]);
    user.write_all(&cmd).unwrap();
    let refused = user.next(|v| matches!(v, resp::Value::Error(e) if e.starts_with(b"NOPERM")));
    assert_eq!(
        refused.unwrap(),
        Some(true),
        "a narrower pattern is refused"
    );
    publisher_to_bridge(&redis.url_as("bridge", "bridge-pass"), None, None);
}

#[test]
fn rediss_with_an_acl_user_carries_signed_records_end_to_end() {
    let (cert, key) = certificate("redis-tls");
    let redis = RedisServer::start_secured(Security {
        password: Some("admin-pass".into()),
        user: Some(("alice".into(), "alice-pass".into())),
        tls: Some((cert.clone(), key)),
    });
    let url = redis.url_as("alice", "alice-pass");
    assert!(url.starts_with("rediss://alice:alice-pass@127.0.0.1:"));
    // A plain subscriber over TLS sees the signed records as JSON with "sig" last.
    let sub = Subscriber::start_with_ca(&redis.url(), Some(&cert), "sec:*");
    publisher_to_bridge(&url, Some(cert.clone()), Some(KEY));
    assert!(wait_until(Duration::from_secs(5), || sub.count(|_| true) >= 5));
    for m in sub.snapshot() {
        let v: Value = serde_json::from_str(&m.payload).expect("still JSON");
        assert_eq!(v["type"], "candle");
        assert_eq!(v["sig"].as_str().map(str::len), Some(64));
        assert!(m.payload.ends_with("\"}"));
    }
    // The ACL user with a wrong password, and a client that does not trust the
    // certificate, are refused with errors that say so.
    let wrong = Target::parse_with_ca(&redis.url_as("alice", "nope"), Some(&cert)).unwrap();
    let e = Conn::connect(&wrong, Duration::from_secs(1), Duration::from_secs(1))
        .err()
        .expect("wrong password refused");
    assert!(e.to_string().contains("WRONGPASS"), "{e}");
    let untrusted = Target::parse(&url).unwrap();
    let e = Conn::connect(&untrusted, Duration::from_secs(1), Duration::from_secs(1))
        .err()
        .expect("an unknown authority is refused");
    assert!(e.to_string().contains("TLS"), "{e}");
    // Plain TCP to the TLS port gets nowhere either.
    let plain = Target::parse(&format!(
        "redis://alice:alice-pass@127.0.0.1:{}",
        redis.port
    ))
    .unwrap();
    assert!(Conn::connect(
        &plain,
        Duration::from_millis(500),
        Duration::from_millis(500)
    )
    .is_err());
}

#[test]
fn a_sigstopped_redis_is_noticed_by_the_bridge_ping_and_the_bridge_reconnects() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let (ours, theirs) = split();
    let mut settings = quick(RedisSettings::new(redis.url(), "hang"));
    settings.universe = Universe::new(&[sym(ours), sym(theirs)], &[Interval::M1], 0, 2);
    let bridge = BridgeThread::start(settings);
    assert!(wait_until(Duration::from_secs(10), || bridge
        .stats
        .connected
        .get()
        == 1));
    assert!(wait_until(Duration::from_secs(5), || bridge
        .stats
        .pings
        .get()
        >= 3));
    assert_eq!(
        bridge.stats.timeouts.get(),
        0,
        "a live Redis answers every PING"
    );
    redis.pause();
    let noticed = wait_until(Duration::from_secs(10), || bridge.stats.timeouts.get() >= 1);
    redis.resume();
    assert!(noticed, "the hang was not noticed");
    assert!(
        wait_until(Duration::from_secs(10), || bridge.stats.reconnects.get()
            >= 1
            && bridge.stats.connected.get() == 1),
        "no reconnect"
    );
    // The new subscription works: a record published now arrives.
    let mut publisher = connect(&redis.url(), None);
    let c = sample_candle(sym(theirs), Interval::M1, 0, true, 1);
    assert!(wait_until(Duration::from_secs(10), || {
        publish(
            &mut publisher,
            &format!("hang:candles:{theirs}:1m"),
            &candle_payload(&c, None),
        );
        bridge.closed(theirs).len() == 1
    }));
}

#[test]
fn without_a_key_payloads_are_the_plain_records_byte_for_byte() {
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "plain:*");
    let (tx, rx) = ring::<Envelope>("shard->redis", 64);
    let stats = Arc::new(PublisherStats::default());
    let stop = alphapulse::consumer::Stop::new();
    let publisher = {
        let (stats, stop) = (stats.clone(), stop.clone());
        let settings = quick(RedisSettings::new(redis.url(), "plain"));
        std::thread::spawn(move || {
            let io = alphapulse::engine::SinkIo {
                rings: vec![rx],
                stop,
                latency: alphapulse::latency::Registry::new().recorder("redis"),
                busy_poll: false,
            };
            alphapulse::sinks::redis::run(io, settings, stats)
        })
    };
    let c = sample_candle(sym("BTCUSDT"), Interval::M1, 0, true, 3);
    tx.push(Envelope::untimed(0, Record::ClosedCandle(c)))
        .unwrap();
    let got = wait_until(Duration::from_secs(10), || sub.count(|_| true) == 1);
    stop.request();
    publisher.join().unwrap();
    assert!(got, "published {}", stats.published.get());
    let expected = String::from_utf8(candle_payload(&c, None)).unwrap();
    assert_eq!(sub.snapshot()[0].payload, expected);
    assert!(!expected.contains("\"sig\""));
}
