//! The hypertable path, on a real TimescaleDB: PGlite (PostgreSQL 17 in WASM) with the
//! TimescaleDB 2.23 extension, served on loopback by `tests/common/pglite.rs`.
//!
//! - `alphapulse migrate` from empty and again: hypertables with the migration's chunk
//!   intervals, compression segmented by symbol and timeframe, and the compression and
//!   retention policies the configuration asks for.
//! - The compression policy's job compresses old chunks; the retention policy's job
//!   drops them.
//! - The writer's `unnest` upserts into a compressed chunk: a late correction lands
//!   once, an older duplicate changes nothing, a replayed signal is not doubled.
//! - The query worker's reads, the documented `psql` query and `time_bucket`.
//! - The engine end to end with `database.write_method = "unnest"`: stored candles
//!   equal the simulator's klines.
//!
//! PGlite serves one connection at a time, so each test holds at most one of its own at
//! once. This build's `COPY … FROM STDIN` kills the server, so nothing here uses the
//! `copy` method against it.

#[path = "support/engine.rs"]
mod support;

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use alphapulse::config::{Config, WriteMethod};
use alphapulse::harness::db::synthetic;
use alphapulse::market::{Decimal, Interval, Symbol};
use alphapulse::signals::{Direction, SignalKind};
use alphapulse::sinks::db::query::QueryClient;
use alphapulse::sinks::db::rows::{Batch, SignalRow};
use alphapulse::sinks::db::upsert::BatchConn;
use alphapulse::sinks::db::{schema, DbSettings};
use alphapulse::store::{ListQuery, RecordSource};
use common::pglite::PgLite;

/// A PGlite server, or the test returns (loudly skipped) where Node is missing.
macro_rules! pglite_or_skip {
    () => {
        match PgLite::start() {
            Some(db) => db,
            None => return,
        }
    };
}

fn settings(url: &str, compress_after_days: u32, retention_days: u32) -> DbSettings {
    let mut c = Config {
        database_url: Some(url.to_owned()),
        ..Config::default()
    };
    c.database.compress_after_days = compress_after_days;
    c.database.retention_days = retention_days;
    c.database.write_method = WriteMethod::Unnest;
    DbSettings::from_config(&c).expect("a database URL")
}

fn migrate_cli(db: &PgLite, config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alphapulse"))
        .args(["migrate", "-c"])
        .arg(config)
        .env("DATABASE_URL", db.url())
        .env("ALPHAPULSE_LOG", "warn")
        .output()
        .expect("run alphapulse migrate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn migrate_from_empty_and_again_makes_hypertables_with_the_configured_policies() {
    let db = pglite_or_skip!();
    let dir = std::env::temp_dir().join(format!("alphapulse-ts-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("alphapulse.toml");
    std::fs::write(
        &config,
        "[database]\ncompress_after_days = 3\nretention_days = 90\n",
    )
    .unwrap();

    let (ok, text) = migrate_cli(&db, &config);
    assert!(ok, "{text}");
    for m in [
        "applied V1__candles_and_signals",
        "applied V2__timescaledb",
        "applied V3__candle_absences",
        "applied V4__trades",
        "timescaledb: on",
    ] {
        assert!(text.contains(m), "{m:?} missing from: {text}");
    }
    let (ok, text) = migrate_cli(&db, &config);
    assert!(ok, "{text}");
    assert!(text.contains("database schema is current"), "{text}");
    assert!(!text.contains("applied V"), "{text}");

    let mut c = db.client();
    let hypertables: Vec<(String, i64)> = c
        .query(
            "SELECT hypertable_name::text, \
                    (extract(epoch FROM d.time_interval) / 86400)::int8 \
             FROM timescaledb_information.hypertables h \
             JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name) \
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        hypertables,
        [
            ("agg_trades".to_owned(), 1),
            ("candles".to_owned(), 7),
            ("signals".to_owned(), 30),
            ("trades".to_owned(), 1)
        ]
    );
    let dimension_columns: Vec<String> = c
        .query(
            "SELECT column_name::text FROM timescaledb_information.dimensions \
             ORDER BY hypertable_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        dimension_columns,
        ["trade_time", "open_time", "timestamp", "trade_time"]
    );
    for table in ["candles", "signals", "trades", "agg_trades"] {
        let segment_by: Vec<String> = c
            .query(
                "SELECT attname::text FROM timescaledb_information.compression_settings \
                 WHERE hypertable_name = $1 AND segmentby_column_index IS NOT NULL \
                 ORDER BY segmentby_column_index",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let want: &[&str] = if table.ends_with("trades") {
            &["symbol"]
        } else {
            &["symbol", "timeframe"]
        };
        assert_eq!(segment_by, want, "{table}");
        let policies: Vec<(String, String)> = c
            .query(
                "SELECT proc_name::text, config::text FROM timescaledb_information.jobs \
                 WHERE hypertable_name = $1 ORDER BY proc_name",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(policies.len(), 2, "{table}: {policies:?}");
        assert_eq!(policies[0].0, "policy_compression", "{table}");
        assert!(
            policies[0].1.contains("\"3 days\""),
            "{table}: {policies:?}"
        );
        assert_eq!(policies[1].0, "policy_retention", "{table}");
        assert!(
            policies[1].1.contains("\"90 days\""),
            "{table}: {policies:?}"
        );
    }
    drop(c);

    // A changed setting replaces the policy: no compression, no retention.
    std::fs::write(
        &config,
        "[database]\ncompress_after_days = 0\nretention_days = 0\n",
    )
    .unwrap();
    let (ok, text) = migrate_cli(&db, &config);
    assert!(ok, "{text}");
    let mut c = db.client();
    let jobs: i64 = c
        .query_one(
            "SELECT count(*) FROM timescaledb_information.jobs \
             WHERE hypertable_name IN ('candles', 'signals', 'trades', 'agg_trades')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn signal(timestamp_ms: i64, confidence: f64) -> SignalRow {
    SignalRow {
        symbol: Symbol::new("B000USDT").unwrap(),
        interval: Interval::M1,
        kind: SignalKind::Rsi,
        direction: Direction::Sell,
        confidence,
        price: "43251.12".parse().unwrap(),
        timestamp_ms,
        event_time_us: timestamp_ms * 1000 + 7,
        indicators_json: r#"{"rsi":71.5}"#.to_owned(),
    }
}

fn write(conn: &mut BatchConn, candles: &[alphapulse::market::Candle], signals: &[SignalRow]) {
    let mut batch = Batch::new();
    for c in candles {
        batch.push_candle(*c);
    }
    for s in signals {
        batch.push_signal(s.clone());
    }
    conn.write(&batch).expect("batch written");
}

#[test]
fn unnest_upserts_correct_a_compressed_chunk_once() {
    let db = pglite_or_skip!();
    let s = settings(&db.url(), 7, 0);
    let mut client = db.client();
    let report = schema::migrate(&mut client, &s).expect("migrations");
    assert!(report.timescaledb);
    let mut conn = BatchConn::new(client, WriteMethod::Unnest).expect("statements prepare");

    // Three symbols, 20 minutes each, and two signals.
    let original = synthetic('B', 0, 60, 0);
    let ts = original[0].close_time_ms + 1;
    write(
        &mut conn,
        &original,
        &[signal(ts, 0.5), signal(ts + 60_000, 0.5)],
    );
    let c = conn.client().expect("held");
    let chunks = c
        .query(
            "SELECT compress_chunk(ch)::text FROM show_chunks('candles') ch \
             UNION ALL SELECT compress_chunk(ch)::text FROM show_chunks('signals') ch",
            &[],
        )
        .expect("compress_chunk");
    assert!(!chunks.is_empty());
    let uncompressed: i64 = c
        .query_one(
            "SELECT count(*) FROM timescaledb_information.chunks \
             WHERE hypertable_name IN ('candles', 'signals') AND NOT is_compressed",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        uncompressed, 0,
        "every chunk is compressed before the late writes"
    );

    // A late correction of one candle (later exchange event, another close), then the
    // original again (a replay: older, must not win), and the signals again.
    let target = original[7];
    let mut corrected = synthetic('B', 7, 1, 5)[0];
    corrected.close = Decimal::new(4_400_000_000_000, 8);
    assert_eq!(
        (corrected.symbol, corrected.open_time_ms),
        (target.symbol, target.open_time_ms)
    );
    write(&mut conn, &[corrected], &[]);
    write(
        &mut conn,
        &original,
        &[signal(ts, 0.9), signal(ts + 60_000, 0.9)],
    );

    let c = conn.client().expect("held");
    let rows = c
        .query(
            "SELECT close::text, (extract(epoch FROM event_time) * 1000000)::int8 FROM candles \
             WHERE symbol = $1 AND timeframe = '1m' \
               AND open_time = to_timestamp($2::float8 / 1000)",
            &[&target.symbol.as_str(), &(target.open_time_ms as f64)],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "the corrected candle is stored once");
    assert_eq!(rows[0].get::<_, String>(0), "44000.00000000");
    assert_eq!(rows[0].get::<_, i64>(1), corrected.event_time_us);
    let (candles, distinct): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(DISTINCT (symbol, timeframe, open_time)) FROM candles",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((candles, distinct), (60, 60));
    let unchanged: i64 = c
        .query_one(
            "SELECT count(*) FROM candles WHERE close = $1::text::numeric",
            &[&original[0].close.to_string()],
        )
        .unwrap()
        .get(0);
    assert!(unchanged > 0);
    let signals: Vec<f64> = c
        .query("SELECT confidence FROM signals ORDER BY \"timestamp\"", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        signals,
        [0.5, 0.5],
        "signals are inserted once, replays ignored"
    );
}

#[test]
fn the_compression_policy_compresses_old_chunks_when_run() {
    let db = pglite_or_skip!();
    let s = settings(&db.url(), 7, 0);
    let mut client = db.client();
    schema::migrate(&mut client, &s).expect("migrations");
    let mut conn = BatchConn::new(client, WriteMethod::Unnest).unwrap();
    // Candles of November 2023: far older than the policy's 7 days.
    let candles = synthetic('B', 0, 200, 0);
    write(&mut conn, &candles, &[]);
    let c = conn.client().expect("held");
    let compressed = |c: &mut postgres::Client| -> (i64, i64) {
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) \
                 FROM timescaledb_information.chunks WHERE hypertable_name = 'candles'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let (done, chunks) = compressed(c);
    assert!(chunks > 0);
    assert_eq!(done, 0);
    // The policy's job, run now rather than on the scheduler's timetable.
    let job: i32 = c
        .query_one(
            "SELECT job_id FROM timescaledb_information.jobs \
             WHERE hypertable_name = 'candles' AND proc_name = 'policy_compression'",
            &[],
        )
        .unwrap()
        .get(0);
    c.batch_execute(&format!("CALL run_job({job})"))
        .expect("the policy runs");
    assert_eq!(
        compressed(c),
        (chunks, chunks),
        "every old chunk compressed"
    );
    let rows: i64 = c
        .query_one("SELECT count(*) FROM candles", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 200, "compressed rows are still read");
}

#[test]
fn the_retention_policy_drops_old_chunks_when_run() {
    let db = pglite_or_skip!();
    let s = settings(&db.url(), 0, 30);
    let mut client = db.client();
    schema::migrate(&mut client, &s).expect("migrations");
    let mut conn = BatchConn::new(client, WriteMethod::Unnest).unwrap();
    // 100 candles of November 2023 and one of the current minute.
    let mut candles = synthetic('B', 0, 100, 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut recent = candles[0];
    recent.open_time_ms = now_ms / 60_000 * 60_000;
    recent.close_time_ms = Interval::M1.close_time(recent.open_time_ms);
    candles.push(recent);
    write(&mut conn, &candles, &[]);
    let c = conn.client().expect("held");
    let job: i32 = c
        .query_one(
            "SELECT job_id FROM timescaledb_information.jobs \
             WHERE hypertable_name = 'candles' AND proc_name = 'policy_retention'",
            &[],
        )
        .unwrap()
        .get(0);
    c.batch_execute(&format!("CALL run_job({job})"))
        .expect("the policy runs");
    let kept: Vec<i64> = c
        .query(
            "SELECT (extract(epoch FROM open_time) * 1000)::int8 FROM candles",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kept,
        [recent.open_time_ms],
        "only the recent candle is kept"
    );
}

#[test]
fn the_query_workers_reads_and_the_documented_queries_work() {
    let db = pglite_or_skip!();
    let s = settings(&db.url(), 7, 0);
    let mut client = db.client();
    schema::migrate(&mut client, &s).expect("migrations");
    let mut conn = BatchConn::new(client, WriteMethod::Unnest).unwrap();
    let candles = synthetic('B', 0, 300, 0);
    let ts = candles[0].close_time_ms + 1;
    write(&mut conn, &candles, &[signal(ts, 0.7)]);
    {
        let c = conn.client().expect("held");
        // docs/scale-out.md: rows per symbol.
        let per_symbol: Vec<(String, i64)> = c
            .query(
                "SELECT symbol, count(*) FROM candles GROUP BY 1 ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(per_symbol.len(), 100);
        assert!(per_symbol.iter().all(|(_, n)| *n == 3), "{per_symbol:?}");
        // time_bucket: 5-minute volume per symbol from 1m candles.
        let buckets: i64 = c
            .query_one(
                "SELECT count(*) FROM (SELECT time_bucket('5 minutes', open_time) b, symbol, \
                 sum(volume) FROM candles GROUP BY 1, 2) t",
                &[],
            )
            .unwrap()
            .get(0);
        assert!((100..=200).contains(&buckets), "{buckets} buckets");
    }
    // The writer's connection closes before the query worker's opens: PGlite serves
    // one at a time.
    drop(conn);
    let worker = QueryClient::spawn(db.url(), None).expect("query worker");
    let q = ListQuery {
        symbol: Some(Symbol::new("B007USDT").unwrap()),
        interval: Some(Interval::M1),
        limit: 2,
        from_ms: None,
        to_ms: None,
    };
    let got = futures_lite::future::block_on(worker.candles(q)).expect("candles read");
    let want: Vec<i64> = {
        let mut t: Vec<i64> = candles
            .iter()
            .filter(|c| c.symbol.as_str() == "B007USDT")
            .map(|c| c.open_time_ms)
            .collect();
        t.sort_unstable_by(|a, b| b.cmp(a));
        t.truncate(2);
        t
    };
    assert_eq!(
        got.iter().map(|r| r.open_time).collect::<Vec<_>>(),
        want,
        "newest first"
    );
    assert_eq!(got[0].open, candles[207].open.to_string());
    let q = ListQuery {
        symbol: Some(Symbol::new("B000USDT").unwrap()),
        interval: None,
        limit: 10,
        from_ms: None,
        to_ms: None,
    };
    let signals = futures_lite::future::block_on(worker.signals(q)).expect("signals read");
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].timestamp, ts);
}

/// Starts the simulator and the engine writing to `db` with `write_method = "unnest"`,
/// and waits until at least 5 closed candles are committed.
fn engine_on(db: &PgLite, spool: &std::path::Path, hold_connections: bool) -> support::Running {
    let _ = std::fs::remove_dir_all(spool);
    let url = db.url();
    let run = support::start(
        support::sim_config(&["BTCUSDT"]),
        |c| {
            c.database_url = Some(url.clone());
            c.database.spool_dir = spool.to_owned();
            c.database.write_method = WriteMethod::Unnest;
            c.database.hold_connections = hold_connections;
            c.batch_timeout_s = 0.05;
        },
        &["BTCUSDT"],
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let committed = || {
        support::http_json(addr, "/api/status")["sinks"]["database"]["candles_written"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        support::wait_until(Duration::from_secs(40), || committed() >= 5),
        "closed candles reach PGlite: {}",
        support::http_json(addr, "/api/status")["sinks"]
    );
    let status = support::http_json(addr, "/api/status");
    assert_eq!(status["sinks"]["database"]["timescaledb"], true);
    assert_eq!(status["sinks"]["database"]["errors"], 0, "{status}");
    run
}

/// The engine's closed BTCUSDT 1m candles, oldest first open time and newest.
fn closed_span(run: &support::Running) -> (i64, i64, usize) {
    let store = run.engine.status().store.clone();
    let closed = store.lock().unwrap().closed(
        Some(Symbol::new("BTCUSDT").unwrap()),
        Some(Interval::M1),
        1000,
    );
    (
        closed.last().unwrap().open_time_ms,
        closed.first().unwrap().open_time_ms,
        closed.len(),
    )
}

/// Checks that PGlite holds exactly the simulator's klines with open times in
/// `[first, last]`, `expected` of them, field by field.
fn assert_stored_equal_klines(db: &PgLite, sim_rest: &str, first: i64, last: i64, expected: usize) {
    let mut c = db.client();
    let stored = c
        .query(
            "SELECT (extract(epoch FROM open_time) * 1000)::int8, open::text, high::text, \
             low::text, close::text, volume::text, trades, closed FROM candles \
             WHERE symbol = 'BTCUSDT' AND timeframe = '1m' \
               AND open_time BETWEEN to_timestamp($1::float8 / 1000) AND to_timestamp($2::float8 / 1000) \
             ORDER BY open_time",
            &[&(first as f64), &(last as f64)],
        )
        .unwrap();
    let url = format!(
        "{sim_rest}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={first}&endTime={last}&limit=1000"
    );
    let body = ureq::get(&url)
        .call()
        .expect("klines")
        .body_mut()
        .read_to_string()
        .unwrap();
    let klines: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(stored.len(), expected, "every closed candle stored once");
    assert_eq!(stored.len(), klines.len());
    assert!(stored.len() >= 5);
    for (row, k) in stored.iter().zip(&klines) {
        let s = |i: usize| k[i].as_str().unwrap().to_owned();
        assert_eq!(row.get::<_, i64>(0), k[0].as_i64().unwrap());
        assert_eq!(
            (
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3),
                row.get::<_, String>(4),
                row.get::<_, String>(5)
            ),
            (s(1), s(2), s(3), s(4), s(5)),
            "candle at {}",
            k[0]
        );
        assert_eq!(row.get::<_, i64>(6), k[8].as_i64().unwrap());
        assert!(row.get::<_, bool>(7));
    }
}

#[test]
fn the_engine_writes_through_pglite_with_unnest_and_matches_the_simulator() {
    let db = pglite_or_skip!();
    let spool = std::env::temp_dir().join(format!("alphapulse-ts-spool-{}", std::process::id()));
    let run = engine_on(&db, &spool, true);
    let addr = run.engine.dashboard_addr();
    // The writer holds PGlite's one connection: a read through the query worker waits
    // in the server's queue and is answered with an error when that times out; the
    // dashboard is not held up meanwhile.
    let t = Instant::now();
    let (code, body) = support::http_get(addr, "/api/candles?symbol=BTCUSDT&timeframe=1m&limit=5");
    let waited = t.elapsed();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("database unavailable"), "{body}");
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    let (health, _) = support::http_get(addr, "/healthz");
    assert_eq!(health, 200);

    let (first, last, n) = closed_span(&run);
    let sim_rest = run.sim.rest_url();
    // Stopping the engine writes what is left and closes the writer's connection.
    drop(run.engine);
    assert_stored_equal_klines(&db, &sim_rest, first, last, n);
    drop(run.sim);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn without_held_connections_the_writer_and_the_api_reads_share_pglite() {
    let db = pglite_or_skip!();
    let spool =
        std::env::temp_dir().join(format!("alphapulse-ts-spool-shared-{}", std::process::id()));
    let run = engine_on(&db, &spool, false);
    let addr = run.engine.dashboard_addr();
    // Reads are served between batches: through the query worker while the engine
    // runs, and from the test's own connection.
    for _ in 0..3 {
        let t = Instant::now();
        let api = support::http_json(addr, "/api/candles?symbol=BTCUSDT&timeframe=1m&limit=5");
        assert_eq!(api["candles"].as_array().map(Vec::len), Some(5), "{api}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    let (first, last, n) = closed_span(&run);
    // The newest closed candle may still be in the writer's batch: wait for it.
    assert!(support::wait_until(Duration::from_secs(10), || {
        let mut c = db.client();
        c.query_one(
            "SELECT count(*) FROM candles WHERE open_time = to_timestamp($1::float8 / 1000)",
            &[&(last as f64)],
        )
        .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    }));
    assert_stored_equal_klines(&db, &run.sim.rest_url(), first, last, n);
    let status = support::http_json(addr, "/api/status");
    assert_eq!(status["sinks"]["database"]["errors"], 0, "{status}");
    drop(run);
    let _ = std::fs::remove_dir_all(&spool);
}

/// Trades on TimescaleDB: `trades` and `agg_trades` are hypertables whose keys hold the
/// trade time; the writer's insert still stores each id once, a replay changes nothing,
/// and the values read back exactly.
#[test]
fn trades_land_once_in_their_hypertables() {
    let db = pglite_or_skip!();
    let s = settings(&db.url(), 7, 0);
    let mut client = db.client();
    assert!(
        schema::migrate(&mut client, &s)
            .expect("migrations")
            .timescaledb
    );
    let mut conn = BatchConn::new(client, WriteMethod::Unnest).expect("statements prepare");
    let trades = alphapulse::harness::db::synthetic_trades('T', 0, 300);
    let mut batch = Batch::new();
    for t in &trades {
        batch.push_trade(*t);
    }
    batch.push_agg_trade(alphapulse::market::AggTrade {
        symbol: Symbol::new("T000USDT").unwrap(),
        agg_trade_id: 9,
        price: "43251.12000000".parse().unwrap(),
        quantity: "0.00150000".parse().unwrap(),
        first_trade_id: 1,
        last_trade_id: 3,
        trade_time_ms: trades[0].trade_time_ms,
        buyer_is_maker: false,
        event_time_us: trades[0].event_time_us,
    });
    let done = conn.write(&batch).expect("written");
    assert_eq!((done.trades, done.agg_trades), (300, 1));
    let again = conn.write(&batch).expect("written again");
    assert_eq!(
        (again.trades, again.agg_trades),
        (0, 0),
        "a replay stores nothing"
    );
    let c = conn.client().expect("held");
    let (rows, distinct): (i64, i64) = c
        .query_one(
            "SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM trades",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((rows, distinct), (300, 300));
    let price: String = c
        .query_one(
            "SELECT price::text FROM agg_trades WHERE agg_trade_id = 9",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(price, "43251.12000000");
}
