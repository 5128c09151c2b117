//! Local order books against the built-in simulator: every view the engine publishes
//! as valid equals the exchange's book at the same update id, level for level, through
//! dropped connections, stalls, malformed frames and a storm of reconnects; while a
//! book resynchronises it says so.
//!
//! The simulator's market is deterministic: a `Market` built from its settings makes
//! the same book updates with the same ids, so the test rebuilds the exchange's book at
//! whatever update id the engine reports and compares the two.

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/engine.rs"]
mod support;

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use alphapulse::market::{Interval, Symbol};
use alphapulse::simulator::SimConfig;
use rust_decimal::Decimal;
use serde_json::Value;
use support::*;

fn shard_books(status: &Value) -> Vec<Value> {
    status["shards"]
        .as_array()
        .map(|s| s.iter().map(|x| x["books"].clone()).collect())
        .unwrap_or_default()
}

fn total(status: &Value, f: impl Fn(&Value) -> u64) -> u64 {
    shard_books(status).iter().map(f).sum()
}

#[test]
fn every_valid_book_equals_the_exchange_through_faults() {
    let names = ["BTCUSDT", "ETHUSDT"];
    let sim = SimConfig {
        // A storm of reconnects, stalls long enough to lose diffs, and damaged frames.
        drop_every: Some(Duration::from_millis(2_500)),
        stall_every: Some(Duration::from_millis(3_700)),
        stall_for: Duration::from_millis(400),
        malformed_rate: 0.01,
        trade_rate: 20.0,
        ..sim_config(&names)
    };
    let run = start(
        sim,
        |c| {
            c.feed.streams.diff_depth_ms = Some(100);
            c.books.symbols = symbols(&names);
            c.books.max_levels = 1000;
            // The whole book is published, so the whole book is compared.
            c.books.top_levels = 1000;
            c.books.publish_ms = 10;
        },
        &names,
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let mut exchange = BookReference::new(run.sim.market_config().expect("a synthetic market"));
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut compared, mut invalid_seen) = (HashMap::new(), 0u32);
    let mut last_id: HashMap<Symbol, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.u64(20..300)));
        let name = names[rng.usize(..names.len())];
        let symbol = Symbol::new(name).unwrap();
        let (status, body) = http_get(addr, &format!("/api/book?symbol={name}"));
        if status == 503 {
            continue; // not published yet
        }
        assert_eq!(status, 200, "{body}");
        let view: Value = serde_json::from_str(&body).unwrap();
        if !view["valid"].as_bool().unwrap() {
            invalid_seen += 1;
            continue;
        }
        let id = view["last_update_id"].as_u64().unwrap();
        let previous = last_id.insert(symbol, id).unwrap_or(0);
        assert!(
            id >= previous,
            "{name}: a valid view went back from {previous} to {id}"
        );
        if let Err(why) = exchange.check_view(&view) {
            panic!("{why}");
        }
        *compared.entry(symbol).or_insert(0u32) += 1;
    }
    let status = http_json(addr, "/api/status");
    let resyncs = |cause: &'static str| total(&status, |b| b["resyncs"][cause].as_u64().unwrap());
    eprintln!(
        "compared {compared:?}, invalid views seen {invalid_seen}, resyncs: gap {} reconnect {} \
         crossed {} refill {}, snapshots {}, invalid {:.2} s in all",
        resyncs("gap"),
        resyncs("reconnect"),
        resyncs("crossed"),
        resyncs("refill"),
        total(&status, |b| b["snapshots_applied"].as_u64().unwrap()),
        shard_books(&status)
            .iter()
            .map(|b| b["invalid_s"].as_f64().unwrap())
            .sum::<f64>(),
    );
    for name in names {
        let n = compared
            .get(&Symbol::new(name).unwrap())
            .copied()
            .unwrap_or(0);
        assert!(n >= 10, "{name}: only {n} valid views compared");
    }
    // The faults did break the books, and they came back every time.
    assert!(resyncs("reconnect") >= 2, "{status}");
    assert!(total(&status, |b| b["snapshots_applied"].as_u64().unwrap()) >= 4);
    assert_eq!(resyncs("crossed"), 0, "a crossed book means a wrong one");
}

#[test]
fn the_book_api_names_what_it_keeps_and_validates_its_parameters() {
    let names = ["BTCUSDT", "ETHUSDT"];
    let run = start(
        sim_config(&names),
        |c| {
            c.feed.streams.diff_depth_ms = Some(100);
            c.books.symbols = symbols(&["BTCUSDT"]);
            c.books.top_levels = 5;
        },
        &names,
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (status, body) = http_get(addr, "/api/book?symbol=BTCUSDT&depth=3");
            status == 200 && serde_json::from_str::<Value>(&body).unwrap()["valid"] == true
        }),
        "the book never became valid"
    );
    let view = http_json(addr, "/api/book?symbol=btcusdt&depth=3");
    assert_eq!(view["symbol"], "BTCUSDT");
    assert_eq!(view["bids"].as_array().unwrap().len(), 3);
    assert_eq!(view["asks"].as_array().unwrap().len(), 3);
    let bids = levels(&view["bids"]);
    let asks = levels(&view["asks"]);
    assert!(bids.windows(2).all(|w| w[0].0 > w[1].0));
    assert!(asks.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(bids[0].0 < asks[0].0);
    let mid: Decimal = view["mid"].as_str().unwrap().parse().unwrap();
    assert_eq!(mid, (bids[0].0 + asks[0].0) / Decimal::TWO);
    let imbalance = view["imbalance"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&imbalance));
    // Without depth: the published top (5).
    assert_eq!(
        http_json(addr, "/api/book?symbol=BTCUSDT")["bids"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let (status, body) = http_get(addr, "/api/book?symbol=ETHUSDT");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("books are kept for BTCUSDT"), "{body}");
    for (query, code, says) in [
        ("", 400, "missing parameter symbol"),
        ("symbol=a-b", 400, "invalid parameter symbol"),
        ("symbol=BTCUSDT&depth=0", 400, "invalid parameter depth"),
        ("symbol=BTCUSDT&depth=x", 400, "invalid parameter depth"),
    ] {
        let (status, body) = http_get(addr, &format!("/api/book?{query}"));
        assert_eq!(
            (status, body.contains(says)),
            (code, true),
            "{query}: {body}"
        );
    }
    let metrics = http_get(addr, "/metrics").1;
    check_metrics_text(&metrics);
    assert!(
        metrics.contains("alphapulse_books_valid{shard="),
        "{metrics}"
    );
    assert!(
        metrics.contains("alphapulse_book_resyncs_total{shard="),
        "{metrics}"
    );
}

/// The next text message of `ws` as JSON, or `None` when none came in time.
fn next_json(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn views_and_tops_reach_websocket_subscribers_and_redis() {
    let redis = redis_support::RedisServer::start();
    let sub = redis_support::Subscriber::start(&redis.url(), "bk:*");
    let names = ["BTCUSDT", "ETHUSDT"];
    let run = start(
        sim_config(&names),
        |c| {
            c.feed.streams.diff_depth_ms = Some(100);
            c.books.symbols = symbols(&names);
            c.books.top_levels = 4;
            c.redis_url = Some(redis.url());
            c.redis_channel_prefix = "bk".into();
        },
        &names,
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(
        format!("ws://{addr}/ws"),
        tungstenite::stream::MaybeTlsStream::Plain(stream),
    )
    .unwrap();
    ws.send(tungstenite::Message::text(
        r#"{"type":"subscribe","subscription":"book","symbol":"ETHUSDT"}"#,
    ))
    .unwrap();
    let (mut views, mut tops) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && (views.len() < 5 || tops < 5) {
        let Some(m) = next_json(&mut ws) else { break };
        match m["type"].as_str() {
            Some("subscribed") => assert_eq!(m["subscription"], "book"),
            Some("book") => views.push(m),
            Some("book_top") => {
                assert_eq!(m["symbol"], "ETHUSDT", "{m}");
                tops += 1;
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert!(
        views.len() >= 5 && tops >= 5,
        "{} views, {tops} tops",
        views.len()
    );
    let valid: Vec<&Value> = views.iter().filter(|v| v["valid"] == true).collect();
    assert!(!valid.is_empty(), "no valid view pushed");
    for v in &valid {
        assert_eq!(v["symbol"], "ETHUSDT", "only the symbol subscribed: {v}");
        assert_eq!(v["bids"].as_array().unwrap().len(), 4);
    }
    let ids: Vec<u64> = valid
        .iter()
        .map(|v| v["last_update_id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");

    // Redis: each book on its own channel, the same object as the API's.
    let on = |name: &str| {
        let channel = format!("bk:book:{name}");
        sub.snapshot()
            .into_iter()
            .filter(|m| m.channel == channel)
            .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(20), || names
            .iter()
            .all(|n| on(n).iter().any(|v| v["valid"] == true))),
        "valid views on Redis: {:?}",
        names.map(|n| on(n).len())
    );
    for name in names {
        let view = on(name)
            .into_iter()
            .rev()
            .find(|v| v["valid"] == true)
            .unwrap();
        assert_eq!(view["symbol"], name);
        assert_eq!(view["bids"].as_array().unwrap().len(), 4);
        assert!(view["microprice"].is_string());
    }
}
