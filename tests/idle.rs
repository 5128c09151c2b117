//! An idle engine sleeps: with the feed connected and no traffic, its threads wait on
//! doorbells and long timers instead of polling, so it costs next to nothing.
//!
//! A behaviour check with a generous bound, not a speed measurement: the engine before
//! the doorbells (consumers sleeping 0.2–1 ms between polls, a 1 ms dashboard drain
//! timer, a 2 ms shard flusher) spent about a tenth of a core doing nothing.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/engine.rs"]
mod support;

use std::time::Duration;

use alphapulse::harness::cpu;
use alphapulse::market::Interval;
use support::*;

const SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
/// How long the idle engine is watched.
const WINDOW: Duration = Duration::from_secs(3);
/// The bound: 5 % of one core (the target is under 1 % in a release build; this debug
/// build measured 1.9 %, and a shared machine gets room).
const MAX_IDLE_SHARE: f64 = 0.05;
/// The bound on the shard executor's wake-ups per second (it measured 2.3 in a release
/// build; 5.3 with its housekeeping due four times a second whatever it had to do, and
/// the polling before the doorbells woke 25 times a second).
const MAX_SHARD_WAKES_PER_S: u64 = 4;

#[test]
fn an_idle_engine_with_its_feed_connected_sleeps() {
    let run = start(quiet_sim(), |_| {}, &SYMS, &[Interval::M1]);
    assert!(
        wait_until(Duration::from_secs(30), || run.engine.status().ready()),
        "the engine subscribed"
    );
    // Let the warm start's REST answers and the first hand-offs settle.
    std::thread::sleep(Duration::from_secs(1));
    let collector_before = wakes_of("latency-collect");
    let rest_before = wakes_of("rest");
    // glommio adds its executor id to the executor's thread name.
    let shard_before = wakes_of("shard-0");
    let before = cpu::snapshot();
    std::thread::sleep(WINDOW);
    let after = cpu::snapshot();
    let collector_woke = wakes_of("latency-collect") - collector_before;
    let rest_woke = wakes_of("rest") - rest_before;
    let shard_woke = wakes_of("shard-0") - shard_before;
    let roles = cpu::by_role(&before, &after);
    // The dashboard has a thread of its own unless the layout put it on the shard's
    // executor (the default on a small machine), where its time counts as the shard's.
    assert!(roles.contains_key("shard"), "{roles:?}");
    assert_eq!(
        roles.contains_key("dashboard"),
        !run.layout.dashboard_on_shard,
        "{}: {roles:?}",
        run.layout
    );
    let share = roles.values().sum::<f64>() / WINDOW.as_secs_f64();
    eprintln!(
        "idle engine: {:.3} % of a core, the shard woke {shard_woke} times: {roles:?}",
        share * 100.0
    );
    // Once per collection interval (1 s), not several times a second to look for stop.
    assert!(
        collector_woke <= WINDOW.as_secs() + 2,
        "the latency collector woke {collector_woke} times in {WINDOW:?}"
    );
    // With nothing to fetch, at most once a second (its longest sleep); a request or the
    // stop would unpark it.
    assert!(
        rest_woke <= WINDOW.as_secs() + 2,
        "the REST thread woke {rest_woke} times in {WINDOW:?}"
    );
    // The shard's executor (with the dashboard on it, unless it has its own core) wakes
    // for its housekeeping (once a second with no hold, retry or book to time), the
    // dashboard's rate sample (1) and status push (1 in 3 s): its connection, their
    // supervisor, the dashboard's accept loop and its drain wait for events and the stop
    // instead of polling (25 a second before).
    assert!(
        shard_woke <= MAX_SHARD_WAKES_PER_S * WINDOW.as_secs(),
        "the shard's executor woke {shard_woke} times in {WINDOW:?}"
    );
    assert!(
        share < MAX_IDLE_SHARE,
        "an idle engine used {:.2} % of a core: {roles:?}",
        share * 100.0
    );
}

#[test]
fn an_idle_engine_publishing_to_redis_sleeps_too() {
    let redis = redis_support::RedisServer::start();
    let woke = idle_sink_wakes(|c| c.redis_url = Some(redis.url()), "redis", "redis-sink");
    // The publisher's housekeeping is due once a second: no more (it was due 10 times a
    // second, and the consumer loop polled the stop flag 4 times a second). Records or
    // the stop would wake it.
    assert!(
        woke <= housekeeping_wakes(),
        "the Redis publisher woke {woke} times in {WINDOW:?}"
    );
    // One instance: no bridge thread reading its own publishes back.
    let threads: Vec<String> = cpu::snapshot().into_iter().map(|t| t.name).collect();
    assert!(
        !threads.iter().any(|name| name.starts_with("redis-bridge")),
        "{threads:?}"
    );
}

#[test]
fn an_idle_engine_writing_to_the_database_sleeps_too() {
    let pg = pg::Postgres::start_new();
    let spool = std::env::temp_dir().join(format!("alphapulse-idle-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let woke = idle_sink_wakes(
        |c| {
            c.database_url = Some(pg.url());
            c.database.spool_dir = spool.clone();
        },
        "database",
        "database-sink",
    );
    // As the publisher: its housekeeping once a second (it was due 10 times a second, and
    // the stop poll 4). A partial batch, a reconnect or a replay has its own deadline.
    assert!(
        woke <= housekeeping_wakes(),
        "the database writer woke {woke} times in {WINDOW:?}"
    );
    let _ = std::fs::remove_dir_all(&spool);
}

/// Wall-clock time, almost no trades and no kline pushes within a window: the
/// connection is up and quiet (pings every 20 s, a candle close once a minute).
fn quiet_sim() -> alphapulse::simulator::SimConfig {
    let mut sim = sim_config(&SYMS);
    sim.speed = 1.0;
    sim.trade_rate = 0.01;
    sim.kline_push_ms = 3_600_000;
    sim
}

/// The most an idle sink thread may wake in [`WINDOW`]: its housekeeping, once a
/// second, and two for a window's edges and a stray record.
fn housekeeping_wakes() -> u64 {
    WINDOW.as_secs() + 2
}

/// Runs a quiet engine with a sink `configure` sets up, waits until `/api/status` says
/// the sink (`sinks.<sink>`) is connected and a second more for the warm start's
/// records, and returns how often the sink's thread (`thread`) woke in a [`WINDOW`] in
/// which the engine received nothing. A quiet feed still closes every candle once a
/// minute and trades now and then: a window that received a message, and so gave the
/// sink records, is measured again (a minute's close falls in one window of three at
/// most).
fn idle_sink_wakes(
    configure: impl FnOnce(&mut alphapulse::config::Config),
    sink: &str,
    thread: &str,
) -> u64 {
    let run = start(quiet_sim(), configure, &SYMS, &[Interval::M1]);
    let connected = || {
        let (code, body) = http_get(run.engine.dashboard_addr(), "/api/status");
        code == 200
            && serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|s| s["sinks"][sink]["connected"] == true)
    };
    assert!(
        wait_until(Duration::from_secs(30), || run.engine.status().ready()
            && connected()),
        "the engine subscribed and the {sink} sink connected"
    );
    std::thread::sleep(Duration::from_secs(1));
    let received = || -> u64 {
        run.engine
            .status()
            .shards
            .iter()
            .map(|s| s.stats.messages.get())
            .sum()
    };
    let mut woke = 0;
    for _ in 0..3 {
        let (before, messages) = (wakes_of(thread), received());
        std::thread::sleep(WINDOW);
        woke = wakes_of(thread) - before;
        if received() == messages {
            return woke;
        }
    }
    eprintln!("every window received messages: the last one is reported");
    woke
}

/// Voluntary context switches so far of this process's threads whose name starts with
/// `name` (the kernel keeps the first 15 bytes of a thread's name).
fn wakes_of(name: &str) -> u64 {
    let mut total = 0;
    let mut found = false;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("a task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with(name) {
            continue;
        }
        total += voluntary_switches(&dir).unwrap_or(0);
        found = true;
    }
    assert!(found, "no thread named {name}…");
    total
}
