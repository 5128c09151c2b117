//! The Redis publisher and bridge against a real, private `redis-server`: every signal
//! and closed candle on the right channels in order with the records' payloads,
//! conflation of live updates, exact drop counts across a Redis restart and a hung
//! Redis, and two engine processes that see each other's symbols through the bridge.

#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/engine.rs"]
mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alphapulse::consumer::Stop;
use alphapulse::harness::redis::{sample_candle, sample_signal};
use alphapulse::market::{Interval, Symbol};
use alphapulse::record::{CandleRecord, SignalRecord};
use alphapulse::ring::{ring, Consumer, Producer};
use alphapulse::shard::{Envelope, Record};
use alphapulse::signals::SignalKind;
use alphapulse::sinks::redis::{PublisherStats, RedisSettings};
use redis_support::{Message, RedisServer, Subscriber};
use serde_json::Value;
use support::wait_until;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn env(record: Record) -> Envelope {
    Envelope::untimed(0, record)
}

/// Short timeouts and backoff, so fault tests take seconds.
fn settings(redis: &RedisServer, prefix: &str) -> RedisSettings {
    let mut s = RedisSettings::new(redis.url(), prefix);
    s.connect_timeout = Duration::from_millis(300);
    s.io_timeout = Duration::from_millis(300);
    s.backoff_initial = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s
}

/// A publisher thread on `rings`, stopped (after draining) on drop.
struct Publisher {
    stats: Arc<PublisherStats>,
    stop: Stop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(settings: RedisSettings, rings: Vec<Consumer<Envelope>>) -> Publisher {
        let stats = Arc::new(PublisherStats::default());
        let stop = Stop::new();
        let thread = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                let io = alphapulse::engine::SinkIo {
                    rings,
                    stop,
                    latency: alphapulse::latency::Registry::new().recorder("redis"),
                    busy_poll: false,
                };
                alphapulse::sinks::redis::run(io, settings, stats)
            })
        };
        Publisher {
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// Publishes acknowledged, dropped or refused: every command accounted for.
    fn settled(&self) -> u64 {
        self.stats.published.get() + self.stats.dropped.get() + self.stats.refused.get()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Trade `id` of `symbol`, with a quantity that names it.
fn trade(symbol: &str, id: u64) -> alphapulse::market::Trade {
    alphapulse::market::Trade {
        symbol: sym(symbol),
        trade_id: id,
        price: "43251.12000000".parse().unwrap(),
        quantity: format!("0.{id:08}").parse().unwrap(),
        trade_time_ms: 1_700_000_000_000 + id as i64,
        buyer_is_maker: id % 2 == 0,
        event_time_us: (1_700_000_000_000 + id as i64) * 1000 + 5,
    }
}

/// BTCUSDT's aggregate trade `agg_id`: its trade `agg_id × 10` and the nine before it.
fn agg_trade(agg_id: u64) -> alphapulse::market::AggTrade {
    let last = trade("BTCUSDT", agg_id * 10);
    alphapulse::market::AggTrade {
        symbol: last.symbol,
        agg_trade_id: agg_id,
        price: last.price,
        quantity: last.quantity,
        first_trade_id: agg_id * 10 - 9,
        last_trade_id: agg_id * 10,
        trade_time_ms: last.trade_time_ms,
        buyer_is_maker: false,
        event_time_us: last.event_time_us,
    }
}

fn on(messages: &[Message], channel: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m.channel == channel)
        .map(|m| serde_json::from_str(&m.payload).expect("payload is JSON"))
        .collect()
}

#[test]
fn a_subscriber_gets_every_closed_candle_the_engine_made_in_order_with_its_record() {
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "e2e:*");
    let names = ["BTCUSDT", "ETHUSDT"];
    let mut run = support::start(
        support::sim_config(&names),
        |c| {
            c.redis_url = Some(redis.url());
            c.redis_channel_prefix = "e2e".into();
        },
        &names,
        &[Interval::M1],
    );
    let closed_on = |s: &str| {
        let ch = format!("e2e:candles:{s}:1m");
        sub.count(|m| m.channel == ch && m.payload.contains("\"closed\":true"))
    };
    assert!(
        wait_until(Duration::from_secs(30), || names
            .iter()
            .all(|s| closed_on(s) >= 3)),
        "closed candles on Redis: {:?}",
        names.map(closed_on)
    );
    let addr = run.engine.dashboard_addr();
    // /metrics: the publisher's counters are counters, its connection a gauge.
    let metrics = support::http_get(addr, "/metrics").1;
    for (name, kind) in [
        ("alphapulse_redis_published_total", "counter"),
        ("alphapulse_redis_pipelines_total", "counter"),
        ("alphapulse_redis_bridge_received_total", "counter"),
        ("alphapulse_redis_connected", "gauge"),
    ] {
        assert_eq!(support::metric_type(&metrics, name), Some(kind), "{name}");
    }
    let one = |name: &str| support::samples(&metrics, name)[0].value;
    assert!(one("alphapulse_redis_published_total") >= 6.0, "{metrics}");
    assert_eq!(one("alphapulse_redis_connected"), 1.0);
    assert_eq!(one("alphapulse_redis_dropped_total"), 0.0);
    assert!(!metrics.contains("alphapulse_sink_figure"));
    support::check_metrics_text(&metrics);
    // One instance owns every symbol: its bridge has nothing to take and subscribes to
    // nothing, so Redis sends each record only to this test's subscriber.
    assert_eq!(one("alphapulse_redis_bridge_active"), 0.0);
    assert_eq!(redis.pattern_subscriptions(), vec![1]);
    let api: HashMap<&str, Vec<Value>> = names
        .iter()
        .map(|s| {
            let body = support::http_json(
                addr,
                &format!("/api/candles?symbol={s}&timeframe=1m&limit=1000"),
            );
            (*s, body["candles"].as_array().unwrap().clone())
        })
        .collect();
    run.engine.shutdown();
    let produced: u64 = run
        .engine
        .status()
        .shards
        .iter()
        .map(|s| s.stats.candles_closed.get())
        .sum();
    let total_closed = || names.iter().map(|s| closed_on(s) as u64).sum::<u64>();
    wait_until(Duration::from_secs(5), || total_closed() >= produced);
    assert_eq!(total_closed(), produced, "every closed candle, once");

    let messages = sub.snapshot();
    for s in names {
        let got = on(&messages, &format!("e2e:candles:{s}:1m"));
        let closed: Vec<&Value> = got.iter().filter(|v| v["closed"] == true).collect();
        // In order: open times strictly increase on the channel.
        let opens: Vec<i64> = closed
            .iter()
            .map(|v| v["open_time"].as_i64().unwrap())
            .collect();
        assert!(opens.windows(2).all(|w| w[0] < w[1]), "{s}: {opens:?}");
        assert!(got
            .iter()
            .all(|v| v["symbol"] == s && v["timeframe"] == "1m"));
        // Every record the API served is on Redis with the same payload.
        assert!(!api[s].is_empty());
        for record in &api[s] {
            assert!(closed.contains(&record), "{s}: {record} not published");
        }
    }
    let status = run.engine.status().snapshot();
    let r = &status["sinks"]["redis"];
    assert_eq!(r["dropped"], 0, "{r}");
    assert!(r["published"].as_u64().unwrap() >= produced, "{r}");
    assert_eq!(r["channel_prefix"], "e2e");
}

#[test]
fn signals_go_to_both_channels_in_order_with_their_records() {
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "sig:*");
    let (tx, rx) = ring("shard0->redis", 4096);
    let publisher = Publisher::start(settings(&redis, "sig"), vec![rx]);
    let symbols = [sym("BTCUSDT"), sym("ETHUSDT")];
    let tfs = [Interval::M1, Interval::M5];
    let mut sent = Vec::new();
    let mut candles = 0;
    for i in 0..200usize {
        let s = sample_signal(
            symbols[i % 2],
            tfs[(i / 2) % 2],
            i as i64 * 60_000,
            SignalKind::ALL[i % SignalKind::ALL.len()],
        );
        tx.push(env(Record::Signal(s))).unwrap();
        sent.push(s);
        if i % 10 == 0 {
            let c = sample_candle(symbols[0], Interval::M1, i as i64 * 60_000, true, i as u64);
            tx.push(env(Record::ClosedCandle(c))).unwrap();
            candles += 1;
        }
    }
    let expect = sent.len() * 2 + candles;
    assert!(
        wait_until(Duration::from_secs(10), || sub.count(|_| true) >= expect),
        "received {} of {expect}",
        sub.count(|_| true)
    );
    let messages = sub.snapshot();
    let record =
        |s: &alphapulse::signals::Signal| serde_json::to_value(SignalRecord::from(s)).unwrap();
    assert_eq!(
        on(&messages, "sig:signals"),
        sent.iter().map(record).collect::<Vec<_>>()
    );
    for s in symbols {
        for tf in tfs {
            let ch = format!("sig:signals:{}:{}", s.as_str(), tf.as_str());
            let want: Vec<Value> = sent
                .iter()
                .filter(|x| x.symbol == s && x.interval == tf)
                .map(record)
                .collect();
            assert_eq!(on(&messages, &ch), want, "{ch}");
        }
    }
    assert_eq!(on(&messages, "sig:candles:BTCUSDT:1m").len(), candles);
    assert_eq!(publisher.stats.published.get(), expect as u64);
    assert_eq!(publisher.stats.dropped.get(), 0);
}

#[test]
fn trades_go_to_their_symbol_channel_in_order_with_their_records() {
    use alphapulse::record::{AggTradeRecord, TradeRecord};
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "tr:*");
    let (tx, rx) = ring("shard0->redis", 4096);
    let publisher = Publisher::start(settings(&redis, "tr"), vec![rx]);
    let mut trades = Vec::new();
    let mut aggs = Vec::new();
    for id in 1..=300u64 {
        let t = trade(if id % 3 == 0 { "ETHUSDT" } else { "BTCUSDT" }, id);
        tx.push(env(Record::Trade(t))).unwrap();
        trades.push(t);
        if id % 10 == 0 {
            let a = agg_trade(id);
            tx.push(env(Record::AggTrade(a))).unwrap();
            aggs.push(a);
        }
    }
    let expect = trades.len() + aggs.len();
    assert!(
        wait_until(Duration::from_secs(10), || sub.count(|_| true) >= expect),
        "received {} of {expect}",
        sub.count(|_| true)
    );
    let messages = sub.snapshot();
    let eth: Vec<Value> = trades
        .iter()
        .filter(|t| t.symbol == sym("ETHUSDT"))
        .map(|t| serde_json::to_value(TradeRecord::from(t)).unwrap())
        .collect();
    assert_eq!(on(&messages, "tr:trades:ETHUSDT"), eth);
    // BTCUSDT: trades and aggregate trades interleaved in the order sent.
    let btc = on(&messages, "tr:trades:BTCUSDT");
    let want_aggs: Vec<Value> = aggs
        .iter()
        .map(|a| serde_json::to_value(AggTradeRecord::from(a)).unwrap())
        .collect();
    let got_aggs: Vec<Value> = btc
        .iter()
        .filter(|v| v["type"] == "agg_trade")
        .cloned()
        .collect();
    assert_eq!(got_aggs, want_aggs);
    let ids: Vec<u64> = btc
        .iter()
        .filter(|v| v["type"] == "trade")
        .map(|v| v["trade_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=300).filter(|i| i % 3 != 0).collect::<Vec<u64>>());
    assert_eq!(publisher.stats.published.get(), expect as u64);
    assert_eq!(publisher.stats.dropped.get(), 0);
}

#[test]
fn with_a_conflation_window_each_symbols_latest_trade_of_each_kind_is_published() {
    use alphapulse::record::{AggTradeRecord, TradeRecord};
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "cf:*");
    let (tx, rx) = ring("shard0->redis", 4096);
    let mut cfg = settings(&redis, "cf");
    cfg.trades_conflate = Some(Duration::from_millis(200));
    let agg = agg_trade;
    let push_burst = |base: u64| {
        for id in base + 1..=base + 300 {
            let t = trade(if id % 3 == 0 { "ETHUSDT" } else { "BTCUSDT" }, id);
            tx.push(env(Record::Trade(t))).unwrap();
            if id % 10 == 0 {
                tx.push(env(Record::AggTrade(agg(id / 10)))).unwrap();
            }
        }
    };
    // The first burst waits in the ring before the publisher starts: one window, so
    // exactly one message per (symbol, kind), its latest, sent when the window ends
    // (no later traffic is needed to send it).
    push_burst(0);
    let publisher = Publisher::start(cfg, vec![rx]);
    let latest = |messages: &[Message], channel: &str, kind: &str| {
        on(messages, channel)
            .into_iter()
            .rev()
            .find(|v| v["type"] == kind)
    };
    let expect = |base: u64| {
        // The burst's newest id of each symbol (every third is ETHUSDT's).
        let newest = |eth: bool| {
            (base + 1..=base + 300)
                .rev()
                .find(|id| (id % 3 == 0) == eth)
                .unwrap()
        };
        [
            (
                "cf:trades:BTCUSDT",
                "trade",
                serde_json::to_value(TradeRecord::from(&trade("BTCUSDT", newest(false)))).unwrap(),
            ),
            (
                "cf:trades:ETHUSDT",
                "trade",
                serde_json::to_value(TradeRecord::from(&trade("ETHUSDT", newest(true)))).unwrap(),
            ),
            (
                "cf:trades:BTCUSDT",
                "agg_trade",
                serde_json::to_value(AggTradeRecord::from(&agg((base + 300) / 10))).unwrap(),
            ),
        ]
    };
    let all_latest = |base: u64| {
        let messages = sub.snapshot();
        expect(base)
            .iter()
            .all(|(channel, kind, want)| latest(&messages, channel, kind).as_ref() == Some(want))
    };
    assert!(
        wait_until(Duration::from_secs(10), || all_latest(0)),
        "{:?}",
        sub.snapshot()
    );
    assert_eq!(sub.count(|_| true), 3, "one message per symbol and kind");
    // A second burst while it runs: conflated too, and the latest wins again.
    push_burst(1000);
    assert!(
        wait_until(Duration::from_secs(10), || all_latest(1000)),
        "{:?}",
        sub.snapshot()
    );
    let stats = &publisher.stats;
    let total = 2 * (300 + 30);
    assert!(wait_until(Duration::from_secs(5), || stats.published.get()
        + stats.trades_conflated.get()
        == total));
    let sent = sub.count(|_| true) as u64;
    assert_eq!(sent, stats.published.get());
    assert!(
        sent <= 3 + 3 * 5,
        "{sent} of {total} trades sent: not conflated"
    );
    assert_eq!(stats.dropped.get(), 0);
    drop(tx);
}

#[test]
fn trades_held_for_a_conflation_window_go_out_when_the_publisher_stops() {
    use alphapulse::record::TradeRecord;
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "st:*");
    let (tx, rx) = ring("shard0->redis", 64);
    let mut cfg = settings(&redis, "st");
    // A window far longer than the test: only the stop can send them.
    cfg.trades_conflate = Some(Duration::from_secs(60));
    let publisher = Publisher::start(cfg, vec![rx]);
    for id in 1..=3 {
        tx.push(env(Record::Trade(trade("BTCUSDT", id)))).unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || {
        publisher.stats.trades_conflated.get() == 2
    }));
    assert_eq!(sub.count(|_| true), 0, "held for the window");
    drop(publisher);
    assert!(wait_until(Duration::from_secs(5), || sub.count(|_| true) == 1));
    let want = serde_json::to_value(TradeRecord::from(&trade("BTCUSDT", 3))).unwrap();
    assert_eq!(on(&sub.snapshot(), "st:trades:BTCUSDT"), [want]);
}

#[test]
fn live_updates_conflate_under_a_burst_and_the_latest_wins() {
    let redis = RedisServer::start();
    let sub = Subscriber::start(&redis.url(), "live:*");
    let (tx, rx) = ring("shard0->redis", 40_000);
    let series = [
        sym("BTCUSDT"),
        sym("ETHUSDT"),
        sym("ADAUSDT"),
        sym("BNBUSDT"),
    ];
    let burst = 20_000usize;
    let mut last = HashMap::new();
    // The whole burst waits in the ring before the publisher starts.
    for i in 0..burst {
        let s = series[i % series.len()];
        let mut c = sample_candle(s, Interval::M1, 0, false, i as u64);
        c.event_time_us = 1_000 + i as i64 * 1000;
        tx.push(env(Record::LiveCandle(c))).unwrap();
        last.insert(s, c);
    }
    let publisher = Publisher::start(settings(&redis, "live"), vec![rx]);
    let accounted = || publisher.settled() + publisher.stats.conflated.get();
    assert!(wait_until(Duration::from_secs(10), || accounted() >= burst as u64));
    let published = publisher.stats.published.get();
    assert!(wait_until(Duration::from_secs(5), || sub.count(|_| true)
        as u64
        >= published));
    let messages = sub.snapshot();
    assert_eq!(messages.len() as u64, published);
    assert_eq!(published + publisher.stats.conflated.get(), burst as u64);
    assert_eq!(publisher.stats.dropped.get(), 0);
    assert!(
        published <= (burst / 100) as u64,
        "{published} of {burst} live updates sent: not conflated"
    );
    for s in series {
        let got = on(&messages, &format!("live:candles:{}:1m", s.as_str()));
        let want = serde_json::to_value(CandleRecord::from(&last[&s])).unwrap();
        assert_eq!(got.last(), Some(&want), "{}: latest wins", s.as_str());
    }
    drop(tx);
}

/// Pushes one closed candle a millisecond for `run_for` while `faults` runs on another
/// thread; returns how many were pushed. The ring must never be full: the shards never
/// wait for Redis.
fn produce_during(
    tx: &Producer<Envelope>,
    run_for: Duration,
    faults: impl FnOnce() + Send + 'static,
) -> u64 {
    let faults = std::thread::spawn(faults);
    let started = Instant::now();
    let mut produced = 0u64;
    let symbols = [sym("BTCUSDT"), sym("ETHUSDT")];
    while started.elapsed() < run_for {
        let s = symbols[produced as usize % 2];
        let open = (produced / 2) as i64 * 60_000;
        let c = sample_candle(s, Interval::M1, open, true, produced);
        assert!(tx.push(env(Record::ClosedCandle(c))).is_ok(), "ring full");
        produced += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    faults.join().expect("fault schedule");
    produced
}

#[test]
fn redis_killed_and_restarted_mid_run_the_publisher_recovers_and_counts_drops_exactly() {
    let _serial = support::serial();
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let url = redis.lock().unwrap().url();
    let (tx, rx) = ring("shard0->redis", 10_000);
    let settings = settings(&redis.lock().unwrap(), "fault");
    let publisher = Publisher::start(settings, vec![rx]);
    assert!(wait_until(Duration::from_secs(5), || publisher
        .stats
        .connected
        .get()
        == 1));
    let late_sub: Arc<std::sync::Mutex<Option<Subscriber>>> = Arc::default();
    let produced = produce_during(&tx, Duration::from_millis(3000), {
        let redis = redis.clone();
        let late_sub = late_sub.clone();
        move || {
            std::thread::sleep(Duration::from_millis(700));
            redis.lock().unwrap().stop();
            std::thread::sleep(Duration::from_millis(800));
            redis.lock().unwrap().resume_from_stop();
            *late_sub.lock().unwrap() = Some(Subscriber::start(&url, "fault:*"));
        }
    });
    assert!(wait_until(Duration::from_secs(5), || publisher.settled() >= produced));
    let st = &publisher.stats;
    assert_eq!(
        st.published.get() + st.dropped.get(),
        produced,
        "published {} + dropped {} = produced",
        st.published.get(),
        st.dropped.get()
    );
    assert!(st.dropped.get() > 0, "nothing dropped while Redis was down");
    assert!(st.reconnects.get() >= 1);
    assert_eq!(st.connected.get(), 1, "connected again");
    assert_eq!(st.refused.get(), 0);
    // After the restart, publishing resumed: a new subscriber got candles, in order.
    let sub = late_sub.lock().unwrap().take().expect("subscriber started");
    let got = on(&sub.snapshot(), "fault:candles:BTCUSDT:1m");
    assert!(got.len() >= 100, "only {} after the restart", got.len());
    let opens: Vec<i64> = got
        .iter()
        .map(|v| v["open_time"].as_i64().unwrap())
        .collect();
    assert!(opens.windows(2).all(|w| w[0] < w[1]));
    assert!(tx.view().stats().full.load(Ordering::Relaxed) == 0);
}

#[test]
fn a_hung_redis_is_detected_by_the_timeout_and_publishing_resumes() {
    let _serial = support::serial();
    let redis = Arc::new(RedisServer::start());
    let (tx, rx) = ring("shard0->redis", 10_000);
    let publisher = Publisher::start(settings(&redis, "hung"), vec![rx]);
    assert!(wait_until(Duration::from_secs(5), || publisher
        .stats
        .connected
        .get()
        == 1));
    let published_at_resume = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let produced = produce_during(&tx, Duration::from_millis(2500), {
        let redis = redis.clone();
        let stats = publisher.stats.clone();
        let at_resume = published_at_resume.clone();
        move || {
            std::thread::sleep(Duration::from_millis(500));
            redis.pause();
            std::thread::sleep(Duration::from_millis(1000));
            redis.resume();
            at_resume.store(stats.published.get(), Ordering::Relaxed);
        }
    });
    assert!(wait_until(Duration::from_secs(5), || publisher.settled() >= produced));
    let st = &publisher.stats;
    assert!(st.timeouts.get() >= 1, "the hang was not detected");
    assert!(st.dropped.get() > 0);
    assert_eq!(st.published.get() + st.dropped.get(), produced);
    assert!(
        st.published.get() > published_at_resume.load(Ordering::Relaxed),
        "publishing did not resume"
    );
    assert_eq!(tx.view().stats().full.load(Ordering::Relaxed), 0);
}

#[test]
fn two_engine_processes_see_each_others_symbols_through_the_bridge() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    // Two symbols for each of the two instances, by the stable hash.
    let candidates = [
        "BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT", "DOTUSDT", "LTCUSDT",
    ];
    let slice = |k: u64| -> Vec<&str> {
        candidates
            .iter()
            .copied()
            .filter(|s| sym(s).stable_hash() % 2 == k)
            .take(2)
            .collect()
    };
    let (mine, theirs) = (slice(0), slice(1));
    assert_eq!((mine.len(), theirs.len()), (2, 2));
    let all: Vec<&str> = mine.iter().chain(&theirs).copied().collect();
    let sim = alphapulse::simulator::start(support::sim_config(&all)).expect("simulator");
    let dashboards: Vec<std::net::SocketAddr> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        })
        .collect();
    let _children: Vec<support::ChildGuard> = (0..2)
        .map(|k| {
            support::ChildGuard(
                Command::new(env!("CARGO_BIN_EXE_alphapulse"))
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("ALPHAPULSE_PIN_CORES", "false")
                    .env("ALPHAPULSE_LOG", "warn")
                    .env("BINANCE_WS_URL", sim.ws_url())
                    .envs(support::clock_env(&sim))
                    .env("BINANCE_REST_URL", sim.rest_url())
                    .env("SYMBOLS", all.join(","))
                    .env("TIMEFRAMES", "1m")
                    .env("DASHBOARD_ADDR", dashboards[k].to_string())
                    .env("REDIS_URL", redis.url())
                    .env("REDIS_CHANNEL_PREFIX", "scale")
                    .env("INSTANCE_INDEX", k.to_string())
                    .env("INSTANCE_COUNT", "2")
                    .current_dir(std::env::temp_dir())
                    .arg("run")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn alphapulse run"),
            )
        })
        .collect();
    // Each instance serves the other's symbols: in its status (through the bridge)
    // and with closed candles on /api/candles.
    for (k, others) in [(0usize, &theirs), (1, &mine)] {
        let addr = dashboards[k];
        let shows_others = wait_until(Duration::from_secs(40), || {
            let (code, body) = support::http_get(addr, "/api/status");
            if code != 200 {
                return false;
            }
            let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let remote = &status["sinks"]["redis"]["bridge"]["remote_symbols"];
            others.iter().all(|s| {
                remote.as_array().is_some_and(|a| a.iter().any(|x| x == s)) && {
                    let (code, body) =
                        support::http_get(addr, &format!("/api/candles?symbol={s}&timeframe=1m"));
                    code == 200 && body.contains("\"closed\":true")
                }
            })
        });
        let status = support::http_get(addr, "/api/status").1;
        assert!(
            shows_others,
            "instance {k} does not show {others:?}: {status}"
        );
        let status: Value = serde_json::from_str(&status).unwrap();
        // Its own symbols are its shards'; its own publishes come back and are skipped.
        let own: Vec<&str> = status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["symbols"].as_array().unwrap().iter())
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(own.iter().all(|s| !others.contains(s)), "{own:?}");
        let bridge = &status["sinks"]["redis"]["bridge"];
        assert!(bridge["skipped_local"].as_u64().unwrap() > 0, "{bridge}");
        assert_eq!(bridge["active"], true, "{bridge}");
        assert_eq!(status["sinks"]["redis"]["connected"], true);
    }
    // Each bridge holds the per-series candle and signal patterns, nothing wider.
    assert_eq!(redis.pattern_subscriptions(), vec![2, 2]);
}
