//! The fault suite: the engine as a separate process against a private PostgreSQL,
//! redis-server and the built-in simulator, under one fault per scenario (and several
//! at once in the last). Every scenario ends with the same proof ([`faults::Rig::prove`]):
//! completeness 100% in `/api/status`, every closed candle stored once and equal to the
//! simulator's REST klines, the signals equal to a fault-free run's, the engine alive and
//! without a panic. Scenarios run one at a time (the rig holds the `serial()` guard).
//! tests/README.md ("Fault suite") describes each scenario.

#[path = "support/faults.rs"]
mod faults;
#[path = "support/postgres.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/engine.rs"]
mod support;

use std::time::Duration;

use faults::{sim_config, Rig};

/// Reconnects 1.2 to 2.4 s after a drop (backoff with equal jitter), so that every
/// outage spans at least one 1m candle close: the live stream has gaps to fill.
const RECONNECT_SLOWLY: &[faults::Setting] = &[
    ("feed", "backoff_initial_ms", "2400"),
    ("feed", "backoff_max_ms", "2400"),
];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn baseline_without_faults() {
    let mut rig = Rig::start("baseline", sim_config(), &[]);
    rig.run_for(secs(12));
    rig.prove();
}

#[test]
fn connections_dropped_repeatedly() {
    let sim = alphapulse::simulator::SimConfig {
        drop_every: Some(secs(3)),
        ..sim_config()
    };
    let mut rig = Rig::start("drops", sim, RECONNECT_SLOWLY);
    rig.run_for(secs(15));
    let drops = rig.sim.stats().drops_injected;
    assert!(
        drops >= 3,
        "the simulator dropped the connections {drops} times"
    );
    assert!(rig.shard_total("reconnects") >= 3, "the engine reconnected");
    // Candles the live stream missed: found by a later close (gap_candles) or fetched
    // at the reconnect before any close showed them (the catch-up's REST candles).
    let missed = rig.shard_total("gap_candles") + rig.backfilled_candles();
    assert!(
        missed >= 2,
        "the outages cost the live stream {missed} candles"
    );
    rig.prove();
}

#[test]
fn stalled_stream_trips_the_liveness_timeout() {
    // Output stops for 3 s every 6 s: no data and no pings, so only the engine's own
    // watchdog (feed.silence_timeout_s = 1.5) can notice.
    let sim = alphapulse::simulator::SimConfig {
        stall_every: Some(secs(6)),
        stall_for: secs(3),
        ..sim_config()
    };
    let mut rig = Rig::start("stall", sim, &[]);
    rig.run_for(secs(15));
    assert!(rig.sim.stats().stalls_injected >= 2, "stalls happened");
    let silent = rig.shard_total("silent_drops");
    assert!(
        silent >= 2,
        "the watchdog dropped silent connections {silent} times"
    );
    rig.prove();
}

#[test]
fn pongs_ignored_by_the_exchange() {
    // The simulator treats every pong as lost and disconnects after 2 s without one.
    let sim = alphapulse::simulator::SimConfig {
        ignore_pongs: true,
        pong_check: true,
        ping_interval: Duration::from_millis(500),
        pong_timeout: secs(2),
        ..sim_config()
    };
    let mut rig = Rig::start("pongs", sim, &[]);
    rig.run_for(secs(15));
    let cut = rig.sim.stats().pong_timeout_disconnects;
    assert!(
        cut >= 3,
        "the simulator cut {cut} connections for missing pongs"
    );
    rig.prove();
}

#[test]
fn server_shutdown_at_max_connection_age() {
    // Every connection gets `serverShutdown` at 4 s of age and is closed 1 s later.
    let sim = alphapulse::simulator::SimConfig {
        max_connection_age: secs(4),
        shutdown_grace: secs(1),
        ..sim_config()
    };
    let mut rig = Rig::start("server-shutdown", sim, &[]);
    rig.run_for(secs(15));
    let sent = rig.sim.stats().server_shutdowns_sent;
    assert!(sent >= 3, "the simulator announced {sent} shutdowns");
    assert!(
        rig.shard_total("server_shutdowns") >= 3,
        "the engine saw them"
    );
    rig.prove();
}

#[test]
fn engine_rotates_at_its_own_max_age() {
    // The shortest age the configuration allows (60 s) minus 55 s: the engine starts a
    // replacement every 5 s, make-before-break with 1 s of overlap.
    let mut rig = Rig::start(
        "max-age-rotation",
        sim_config(),
        &[
            ("feed", "max_connection_age_s", "60.0"),
            ("feed", "rotate_before_s", "55.0"),
            ("feed", "rotation_overlap_s", "1.0"),
        ],
    );
    rig.run_for(secs(15));
    let rotations = rig.shard_total("rotations");
    assert!(rotations >= 2, "the engine rotated {rotations} times");
    rig.prove();
}

#[test]
fn postgres_stopped_and_restarted() {
    let mut rig = Rig::start("postgres-restart", sim_config(), &[]);
    rig.run_for(secs(4));
    rig.pg.stop_immediate();
    println!("[postgres-restart] PostgreSQL stopped");
    assert!(
        rig.wait_status(secs(10), |s| s["sinks"]["database"]["connected"] == false
            && s["sinks"]["spool"]["rows"].as_u64().unwrap_or(0) > 0),
        "the engine noticed the outage and spools"
    );
    rig.run_for(secs(5));
    rig.pg.start();
    println!("[postgres-restart] PostgreSQL started again");
    rig.run_for(secs(6));
    rig.prove();
}

/// The spool's disk fills during a database outage, then is freed. The spool is on a
/// 1 MiB tmpfs, filled but for two pages before the outage: the first spooled batches
/// fit, then the disk refuses (ENOSPC), each refused append is cut back and counted and
/// its batch held in memory. Freed, the held batches go to disk in order; the database
/// back, everything is replayed, and the proof finds every candle once, equal to the
/// simulator's klines.
#[test]
fn the_spool_disk_fills_during_an_outage_and_is_freed() {
    let mut rig = Rig::start_with_small_spool("spool-disk-full", sim_config(), &[], 1 << 20);
    let filler = rig.fill_spool_disk(8192);
    println!("[spool-disk-full] the spool's disk filled but for 8 KiB ({filler} bytes of filler)");
    rig.run_for(secs(3));
    rig.pg.stop_immediate();
    println!("[spool-disk-full] PostgreSQL stopped");
    let spool = |s: &serde_json::Value, key: &str| s["sinks"]["spool"][key].as_u64().unwrap_or(0);
    let mut seen = serde_json::Value::Null;
    assert!(
        rig.wait_status(secs(40), |s| {
            seen = s["sinks"]["spool"].clone();
            spool(s, "append_failures") > 0 && spool(s, "held_rows") > 0
        }),
        "the disk never refused an append: {seen}"
    );
    let now = rig.status().expect("status");
    assert!(
        spool(&now, "rows") > spool(&now, "held_rows"),
        "batches spooled to disk before it filled: {}",
        now["sinks"]["spool"]
    );
    println!("[spool-disk-full] the disk refuses appends; batches held in memory: {seen}");
    rig.run_for(secs(3));
    rig.free_spool_disk();
    println!("[spool-disk-full] the spool's disk freed");
    assert!(
        rig.wait_status(secs(15), |s| {
            seen = s["sinks"]["spool"].clone();
            spool(s, "held_rows") == 0 && spool(s, "rows") > 0
        }),
        "the held batches were not written to the freed disk: {seen}"
    );
    rig.run_for(secs(2));
    rig.pg.start();
    println!("[spool-disk-full] PostgreSQL started again");
    rig.run_for(secs(6));
    rig.prove();
}

/// A CHECK constraint that refuses every SOLUSDT 1m candle while the engine runs: the
/// batches that hold one are split, everything else is stored, and each refused row is
/// in the dead-letter file (one JSON line with its SQLSTATE) and counted in
/// `/api/status` and `/metrics`. Put back from that file, the rows make the store
/// complete: the proof then holds, so nothing else was lost on the way.
#[test]
fn a_refused_row_is_quarantined_and_its_batch_stored() {
    let mut rig = Rig::start("dead-letter", sim_config(), &[]);
    rig.run_for(secs(3));
    let mut db = rig.pg.client();
    db.batch_execute(
        "ALTER TABLE candles ADD CONSTRAINT no_sol_1m \
         CHECK (NOT (symbol = 'SOLUSDT' AND timeframe = '1m')) NOT VALID",
    )
    .expect("add the constraint");
    println!("[dead-letter] SOLUSDT 1m candles refused from now");
    rig.run_for(secs(6));
    let refused = |s: &serde_json::Value| s["sinks"]["dead_letter"]["rows"].as_u64().unwrap_or(0);
    assert!(
        rig.wait_status(secs(10), |s| refused(s) >= 4),
        "refused rows are counted: {:?}",
        rig.status().map(|s| s["sinks"].clone())
    );
    let status = rig.status().expect("status");
    let sinks = &status["sinks"];
    assert_eq!(sinks["database"]["refusing"], false, "{sinks}");
    assert_eq!(sinks["dead_letter"]["left_out_rows"], 0, "{sinks}");
    assert!(
        sinks["database"]["split_writes"].as_u64().unwrap_or(0) > 0,
        "{sinks}"
    );
    let (_, metrics) = support::http_get(rig.addr(), "/metrics");
    let kept = support::samples(&metrics, "alphapulse_dead_letter_rows_total");
    assert!(
        kept.len() == 1 && kept[0].value >= 4.0,
        "the dead letters are in /metrics: {kept:?}"
    );
    assert_eq!(
        support::metric_type(&metrics, "alphapulse_dead_letter_rows_total"),
        Some("counter")
    );
    assert_eq!(
        support::samples(&metrics, "alphapulse_database_connected")[0].value,
        1.0
    );
    support::check_metrics_text(&metrics);
    db.batch_execute("ALTER TABLE candles DROP CONSTRAINT no_sol_1m")
        .expect("drop the constraint");
    // Wait for the writer to have flushed what it refused before the constraint went.
    rig.run_for(secs(1));
    let text = std::fs::read_to_string(rig.spool_dir().join("dead-letter.jsonl"))
        .expect("the dead-letter file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        lines.len() as u64 >= refused(&status),
        "every counted row is in the file"
    );
    let mut open_times = std::collections::BTreeSet::new();
    for line in &lines {
        assert_eq!(line["sqlstate"], "23514", "{line}");
        assert_eq!(line["table"], "candles", "{line}");
        assert!(
            line["reason"].as_str().unwrap_or("").contains("no_sol_1m"),
            "{line}"
        );
        let row = &line["row"];
        assert_eq!(
            (row["symbol"].as_str(), row["timeframe"].as_str()),
            (Some("SOLUSDT"), Some("1m")),
            "only the bad rows: {line}"
        );
        assert_eq!(row["closed"], true, "{line}");
        open_times.insert(row["open_time"].as_i64().expect("open_time"));
        // As an operator would: put the row back once the cause is mended.
        db.execute(
            "INSERT INTO candles (symbol, timeframe, open_time, close_time, open, high, low, \
             close, volume, quote_volume, taker_buy_base, taker_buy_quote, trades, closed, \
             event_time) \
             SELECT r->>'symbol', r->>'timeframe', \
             to_timestamp((r->>'open_time')::bigint / 1000.0), \
             to_timestamp((r->>'close_time')::bigint / 1000.0), \
             (r->>'open')::numeric, (r->>'high')::numeric, (r->>'low')::numeric, \
             (r->>'close')::numeric, (r->>'volume')::numeric, (r->>'quote_volume')::numeric, \
             (r->>'taker_buy_base')::numeric, (r->>'taker_buy_quote')::numeric, \
             (r->>'trades')::bigint, (r->>'closed')::boolean, \
             to_timestamp((r->>'event_time')::bigint / 1000.0) \
             FROM (SELECT $1::text::jsonb AS r) x ON CONFLICT DO NOTHING",
            &[&row.to_string()],
        )
        .expect("put a dead letter back");
    }
    assert!(
        open_times.len() >= 4,
        "several candles were refused: {open_times:?}"
    );
    println!(
        "[dead-letter] {} rows quarantined, put back",
        open_times.len()
    );
    rig.prove();
}

/// A test connection holds `LOCK TABLE candles IN ACCESS EXCLUSIVE MODE` for 30 s: the
/// writer's lock timeout turns each write into a spooled batch, the shards keep
/// reading their sockets throughout, and once the lock goes the spool replays and the
/// proof holds (nothing lost, nothing doubled).
#[test]
fn a_locked_candles_table_stalls_nothing() {
    let mut rig = Rig::start(
        "table-lock",
        sim_config(),
        // A small writer ring: a writer that stopped draining it would show within
        // seconds as records waiting on the shards (`overflow_depth`).
        &[
            ("database", "lock_timeout_ms", "500"),
            ("", "max_queue_size", "16"),
        ],
    );
    rig.run_for(secs(3));
    let mut db = rig.pg.client();
    let mut tx = db.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE candles IN ACCESS EXCLUSIVE MODE")
        .expect("lock the table");
    println!("[table-lock] candles locked");
    let locked_at = std::time::Instant::now();
    let mut received = rig.shard_total("messages");
    let mut samples = 0;
    let mut deepest = 0;
    while locked_at.elapsed() < secs(30) {
        rig.run_for(secs(3));
        let now = rig.shard_total("messages");
        assert!(
            now > received,
            "the shards keep reading while the table is locked ({received} -> {now})"
        );
        let depth = rig.shard_total("overflow_depth");
        println!(
            "[table-lock] {:.0} s: messages {now}, records waiting on the shards {depth}",
            locked_at.elapsed().as_secs_f64()
        );
        received = now;
        deepest = deepest.max(depth);
        samples += 1;
    }
    assert!(samples >= 7, "{samples} samples in 30 s");
    // 30 s of closed candles and signals is two hundred records and more: a writer
    // stuck behind the lock would leave most of them waiting on the shards. (A few
    // dozen may wait while a write waits out its 500 ms lock timeout on a busy host.)
    assert!(
        deepest < 64,
        "the writer kept draining its ring: {deepest} records waited on the shards"
    );
    let status = rig.status().expect("status");
    let db_status = &status["sinks"]["database"];
    assert!(
        db_status["transient_errors"].as_u64().unwrap_or(0) > 0,
        "lock timeouts were met: {db_status}"
    );
    assert_eq!(db_status["refusing"], false, "{db_status}");
    assert!(
        status["sinks"]["spool"]["spooled_rows"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "batches were spooled"
    );
    tx.rollback().expect("release the lock");
    println!(
        "[table-lock] lock released after {:.1} s",
        locked_at.elapsed().as_secs_f64()
    );
    assert!(
        rig.wait_status(secs(30), |s| s["sinks"]["spool"]["rows"] == 0),
        "the spool replays"
    );
    rig.run_for(secs(3));
    rig.prove();
}

#[test]
fn redis_stopped_and_restarted() {
    let mut rig = Rig::start("redis-restart", sim_config(), &[]);
    rig.run_for(secs(3));
    rig.redis.stop();
    println!("[redis-restart] redis-server stopped");
    assert!(
        rig.wait_status(secs(10), |s| s["sinks"]["redis"]["connected"] == false),
        "the engine noticed Redis is gone"
    );
    rig.run_for(secs(5));
    rig.redis.resume_from_stop();
    println!("[redis-restart] redis-server started again");
    assert!(
        rig.wait_status(secs(15), |s| s["sinks"]["redis"]["connected"] == true),
        "the publisher reconnects"
    );
    rig.run_for(secs(4));
    rig.prove();
}

#[test]
fn dashboard_client_that_stops_reading() {
    // Kline updates 8 times as often as Binance's (1440 a second over the 6 streams, as
    // for about 700 symbols × 4 timeframes), so the stuck client's socket buffers fill
    // within seconds and its outbox starts conflating.
    let sim = alphapulse::simulator::SimConfig {
        kline_push_ms: 250,
        ..sim_config()
    };
    let mut rig = Rig::start("slow-client", sim, &[]);
    let client = rig.slow_client();
    let mut dashboard = serde_json::Value::Null;
    let stuck = rig.wait_status(secs(30), |s| {
        dashboard = s["dashboard"].clone();
        dashboard["dropped"].as_u64().unwrap_or(0) >= 1000
    });
    assert!(stuck, "the client never fell behind: {dashboard}");
    println!("[slow-client] the client fell behind: {dashboard}");
    rig.run_for(secs(8));
    rig.prove();
    drop(client);
}

#[test]
fn engine_killed_and_restarted() {
    let mut rig = Rig::start("sigkill", sim_config(), &[]);
    rig.run_for(secs(6));
    rig.kill_engine();
    // Three 1m candles close while no engine runs.
    std::thread::sleep(secs(3));
    rig.restart_engine();
    rig.run_for(secs(8));
    rig.prove();
}

/// Issue: a catch-up's last page that is full (a multiple of 1000 rows) once ended with
/// the still-open candle, stored as closed and never corrected. Here more than 1,000 1m
/// candles close while no engine runs (the simulator at 3,000x: 50 a wall second), so
/// the restart's catch-up spans several full pages; the proof then finds every stored
/// candle equal to the simulator's klines (read in pages too), the one open at the
/// restart included.
#[test]
fn engine_restarted_after_more_than_a_thousand_missed_candles() {
    let sim = alphapulse::simulator::SimConfig {
        speed: 3000.0,
        ..sim_config()
    };
    let mut rig = Rig::start("long-outage", sim, &[]);
    rig.run_for(secs(3));
    rig.kill_engine();
    let killed_ms = rig.sim.sim_now_ms();
    // 1,150 1m candles at 50 a wall second.
    std::thread::sleep(secs(23));
    let missed = (rig.sim.sim_now_ms() - killed_ms) / 60_000;
    assert!(missed > 1000, "only {missed} candles closed while down");
    rig.restart_engine();
    rig.run_for(secs(6));
    assert!(
        rig.backfilled_candles() > 1000,
        "the catch-up fetched {} candles",
        rig.backfilled_candles()
    );
    rig.prove();
}

#[test]
fn several_faults_at_once() {
    let sim = alphapulse::simulator::SimConfig {
        drop_every: Some(secs(4)),
        ..sim_config()
    };
    let mut rig = Rig::start("several", sim, RECONNECT_SLOWLY);
    let client = rig.slow_client();
    rig.run_for(secs(3));
    rig.pg.stop_immediate();
    println!("[several] PostgreSQL stopped");
    rig.run_for(secs(5));
    rig.pg.start();
    println!("[several] PostgreSQL started again");
    rig.run_for(secs(7));
    assert!(rig.sim.stats().drops_injected >= 3, "drops happened");
    rig.prove();
    drop(client);
}

/// The proof itself can fail: after a clean run it notices a changed price, a changed
/// confidence, a missing candle and a missing signal.
#[test]
fn the_proof_notices_a_tampered_database() {
    use alphapulse::market::Interval;
    let mut rig = Rig::start("tamper", sim_config(), &[]);
    rig.run_for(secs(12));
    rig.prove();
    // Nothing may repair the rows behind the check's back.
    rig.kill_engine();
    let mut db = rig.pg.client();
    let (first, last) = rig.candle_window(Interval::M1);
    let (from, to) = rig.signal_window(Interval::M1);
    let epoch = |ms: i64| format!("('epoch'::timestamptz + {ms} * interval '1 millisecond')");
    let candle = format!(
        "symbol = 'BTCUSDT' AND timeframe = '1m' AND open_time = {}",
        epoch((first + last) / 2 / 60_000 * 60_000)
    );
    let changed = db
        .execute(
            &format!("UPDATE candles SET close = close + 0.00000001 WHERE {candle}"),
            &[],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let err = rig.recheck_store().expect_err("a changed close is noticed");
    assert!(
        err.contains("differing 1") || err.contains("stored"),
        "{err}"
    );
    db.execute(
        &format!("UPDATE candles SET close = close - 0.00000001 WHERE {candle}"),
        &[],
    )
    .unwrap();
    rig.recheck_store().expect("restored");

    let signal = db
        .query_one(
            &format!(
                "SELECT symbol, timeframe, kind, \"timestamp\", confidence FROM signals \
                 WHERE timeframe = '1m' AND \"timestamp\" > {} AND \"timestamp\" <= {} \
                 ORDER BY \"timestamp\" LIMIT 1",
                epoch(from),
                epoch(to)
            ),
            &[],
        )
        .expect("a compared 1m signal");
    let (symbol, kind, ts, confidence): (String, String, std::time::SystemTime, f64) =
        (signal.get(0), signal.get(2), signal.get(3), signal.get(4));
    let key = "symbol = $1 AND timeframe = '1m' AND kind = $2 AND \"timestamp\" = $3";
    db.execute(
        &format!("UPDATE signals SET confidence = $4 WHERE {key}"),
        &[&symbol, &kind, &ts, &(confidence * 0.999)],
    )
    .unwrap();
    let err = rig
        .recheck_store()
        .expect_err("a changed confidence is noticed");
    assert!(err.contains("signals"), "{err}");
    db.execute(
        &format!("UPDATE signals SET confidence = $4 WHERE {key}"),
        &[&symbol, &kind, &ts, &confidence],
    )
    .unwrap();
    rig.recheck_store().expect("restored");

    db.execute(
        &format!("DELETE FROM signals WHERE {key}"),
        &[&symbol, &kind, &ts],
    )
    .unwrap();
    let err = rig
        .recheck_store()
        .expect_err("a missing signal is noticed");
    assert!(
        err.contains("signals") && err.contains("missing 1"),
        "{err}"
    );
    db.execute(&format!("DELETE FROM candles WHERE {candle}"), &[])
        .unwrap();
    let err = rig
        .recheck_store()
        .expect_err("a missing candle is noticed");
    assert!(
        err.contains("candles") && err.contains("missing 1"),
        "{err}"
    );
}

/// Trades and aggregate trades stored (`database.store_trades`, on by default) with
/// both trade streams on, across a PostgreSQL outage and then an engine SIGKILL and
/// restart: [`faults::Rig::prove_trades`] finds every minute made of exactly the
/// simulator's raw trades and, apart, of its aggregate trades (count, volume, quote
/// volume, taker buy volume equal to its REST klines; the kill's trades of both kinds
/// fetched back over REST), the ids of both contiguous, nothing doubled. Then it shows
/// the trade proof can fail (a deleted trade is noticed), that holes cut into both
/// tables are fetched by the next start, and that a changed aggregate quantity is
/// noticed.
#[test]
fn trades_stored_across_a_database_outage_and_a_sigkill() {
    const TRADE_STREAMS: &[faults::Setting] = &[
        ("feed.streams", "trade", "true"),
        ("feed.streams", "agg_trade", "true"),
    ];
    let mut rig = Rig::start("trades", sim_config(), TRADE_STREAMS);
    rig.run_for(secs(4));
    rig.pg.stop_immediate();
    println!("[trades] PostgreSQL stopped");
    assert!(
        rig.wait_status(secs(10), |s| s["sinks"]["database"]["connected"] == false
            && s["sinks"]["spool"]["rows"].as_u64().unwrap_or(0) > 0),
        "the engine noticed the outage and spools"
    );
    rig.run_for(secs(4));
    rig.pg.start();
    println!("[trades] PostgreSQL started again");
    rig.run_for(secs(4));
    let status = rig.status().expect("status");
    let db = &status["sinks"]["database"];
    assert!(
        db["trades_written"].as_u64().unwrap_or(0) > 0
            && db["agg_trades_written"].as_u64().unwrap_or(0) > 0,
        "trades are written: {db}"
    );
    assert!(
        status["sinks"]["spool"]["replayed_rows"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    rig.kill_engine();
    std::thread::sleep(secs(2));
    rig.restart_engine();
    rig.run_for(secs(6));
    rig.prove();
    let (minutes, trades, aggs) = rig.prove_trades();
    // The restart fetched the aggregate trades no engine received over REST.
    let status = rig.status().expect("status");
    let rest = &status["completeness"]["backfill"];
    assert!(
        rest["agg_trade_requests"].as_u64().unwrap_or(0) > 0
            && rest["agg_trades"].as_u64().unwrap_or(0) > 0,
        "the restart caught up aggregate trades over REST: {rest}"
    );
    assert!(
        rest["trade_requests"].as_u64().unwrap_or(0) > 0
            && rest["trades"].as_u64().unwrap_or(0) > 0,
        "the restart caught up raw trades over REST (historicalTrades): {rest}"
    );
    assert!(minutes > 0 && trades > 0 && aggs > 0);

    // The trade proof is not vacuous. Nothing may repair the rows behind its back.
    rig.kill_engine();
    let mut db = rig.pg.client();
    // Rows two minutes (simulated) after the first stored: inside the compared window,
    // long before the outage and the kill.
    let middle = "SELECT trade_id FROM trades WHERE symbol = 'BTCUSDT' AND trade_time >= \
                  (SELECT min(trade_time) + interval '2 minutes' FROM trades WHERE symbol = 'BTCUSDT') \
                  ORDER BY trade_id LIMIT 1";
    let id: i64 = db.query_one(middle, &[]).expect("a stored trade").get(0);
    let row = db
        .query_one(
            "DELETE FROM trades WHERE symbol = 'BTCUSDT' AND trade_id = $1 \
             RETURNING symbol, trade_id, price, quantity, trade_time, buyer_is_maker",
            &[&id],
        )
        .expect("delete a trade");
    let err = rig
        .recheck_trades()
        .expect_err("a deleted trade is noticed");
    assert!(err.contains("not contiguous"), "{err}");
    let price: alphapulse::market::Decimal = row.get(2);
    let quantity: alphapulse::market::Decimal = row.get(3);
    let time: std::time::SystemTime = row.get(4);
    let maker: bool = row.get(5);
    db.execute(
        "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, buyer_is_maker) \
         VALUES ('BTCUSDT', $1, $2, $3, $4, $5)",
        &[&id, &price, &quantity, &time, &maker],
    )
    .expect("put the trade back");
    rig.recheck_trades().expect("restored");
    // Holes among stored ids (what a backfill cut short by a kill leaves): the next
    // start finds them and fetches them again, both kinds.
    for (table, id) in [("trades", "trade_id"), ("agg_trades", "agg_trade_id")] {
        let cut = db
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE symbol = 'BTCUSDT' AND {id} IN (SELECT {id} \
                     FROM {table} WHERE symbol = 'BTCUSDT' AND trade_time >= (SELECT \
                     min(trade_time) + interval '2 minutes' FROM {table} WHERE symbol = \
                     'BTCUSDT') ORDER BY {id} LIMIT 5)"
                ),
                &[],
            )
            .expect("cut a hole");
        assert_eq!(cut, 5, "{table}");
    }
    let err = rig.recheck_trades().expect_err("the holes are noticed");
    assert!(err.contains("not contiguous"), "{err}");
    rig.restart_engine();
    rig.run_for(secs(4));
    rig.prove();
    rig.prove_trades();
    rig.kill_engine();
    let agg = "symbol = 'ETHUSDT' AND agg_trade_id = (SELECT agg_trade_id FROM agg_trades \
               WHERE symbol = 'ETHUSDT' AND trade_time >= (SELECT min(trade_time) + \
               interval '2 minutes' FROM agg_trades WHERE symbol = 'ETHUSDT') \
               ORDER BY agg_trade_id LIMIT 1)";
    let changed = db
        .execute(
            &format!("UPDATE agg_trades SET quantity = quantity + 0.00000001 WHERE {agg}"),
            &[],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let err = rig
        .recheck_trades()
        .expect_err("a changed quantity is noticed");
    assert!(err.contains("agg_trades of the minute"), "{err}");
}
