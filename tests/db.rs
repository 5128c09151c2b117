//! The database writer against a real, private PostgreSQL: migrations, values and
//! types, idempotent and newest-wins writes, the query worker, and outages (the server
//! stopped mid-run, the engine killed with rows in its spool).

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/engine.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alphapulse::market::{Candle, Decimal, Interval, Symbol};
use alphapulse::signals::{Direction, IndicatorValues, Signal, SignalKind};
use alphapulse::sinks::db::copy::{self, WriteConn};
use alphapulse::sinks::db::query::QueryClient;
use alphapulse::sinks::db::rows::{Batch, SignalRow};
use alphapulse::sinks::db::{migrate_now, DbSettings, CONNECT_TIMEOUT};
use alphapulse::store::{ListQuery, RecordSource};
use pg::Postgres;

fn settings(pg: &Postgres) -> DbSettings {
    let config = alphapulse::config::Config {
        database_url: Some(pg.url()),
        ..Default::default()
    };
    DbSettings::from_config(&config).unwrap()
}

fn conn(pg: &Postgres) -> WriteConn {
    migrate_now(&settings(pg)).expect("migrations");
    WriteConn::new(copy::connect(&pg.url(), CONNECT_TIMEOUT).unwrap()).unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn candle(open_ms: i64, event_us: i64, closed: bool, close: &str) -> Candle {
    Candle {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        interval: Interval::M1,
        open_time_ms: open_ms,
        close_time_ms: open_ms + 59_999,
        open: dec("0.01634790"),
        high: dec("0.01640000"),
        low: dec("0.01575800"),
        close: dec(close),
        volume: dec("148976.11427815"),
        quote_volume: dec("2434.19055334"),
        taker_buy_base: dec("1756.87402397"),
        taker_buy_quote: dec("28.46694368"),
        trades: 308,
        first_trade_id: 100,
        last_trade_id: 407,
        closed,
        event_time_us: event_us,
    }
}

fn signal(ts_ms: i64) -> SignalRow {
    let mut indicators = IndicatorValues::new();
    indicators.push("rsi", 27.25);
    indicators.push("ema_fast", 43_251.5);
    SignalRow::from(&Signal {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        interval: Interval::M1,
        kind: SignalKind::Rsi,
        direction: Direction::Buy,
        confidence: 0.8,
        price: dec("43251.12000000"),
        timestamp_ms: ts_ms,
        event_time_us: ts_ms * 1000 + 5,
        indicators,
    })
}

fn batch(candles: &[Candle], signals: &[SignalRow]) -> Batch {
    let mut b = Batch::new();
    for c in candles {
        b.push_candle(*c);
    }
    for s in signals {
        b.push_signal(s.clone());
    }
    b
}

/// Every candle row as text, in key order: a full picture of the table to compare.
fn candle_rows(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT c::text FROM candles c ORDER BY symbol, timeframe, open_time",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const T0: i64 = 1_700_000_040_000; // a minute boundary

#[test]
fn migrations_apply_from_empty_and_rerun_changes_nothing() {
    let pg = Postgres::start_new();
    let first = migrate_now(&settings(&pg)).expect("first run");
    assert_eq!(first.applied.len(), 4, "{first:?}");
    assert!(!first.timescaledb, "no TimescaleDB on this server");
    let again = migrate_now(&settings(&pg)).expect("second run");
    assert!(again.applied.is_empty(), "{again:?}");
    let mut c = pg.client();
    let types: Vec<(String, String, String)> = c
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name IN ('candles', 'signals') ORDER BY table_name, ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let ty = |t: &str, col: &str| {
        types
            .iter()
            .find(|(a, b, _)| a == t && b == col)
            .map(|x| x.2.clone())
            .unwrap_or_default()
    };
    assert_eq!(ty("candles", "open_time"), "timestamp with time zone");
    assert_eq!(ty("candles", "open"), "numeric");
    assert_eq!(ty("candles", "taker_buy_quote"), "numeric");
    assert_eq!(ty("signals", "timestamp"), "timestamp with time zone");
    assert_eq!(ty("signals", "indicators"), "jsonb");
    assert_eq!(ty("signals", "price"), "numeric");
    // The seed's troubleshooting query keeps working.
    let n: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM signals WHERE timestamp > NOW() - INTERVAL '1 hour';",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn candles_and_signals_land_exactly_and_read_back_through_the_query_worker() {
    let pg = Postgres::start_new();
    let mut w = conn(&pg);
    let done = w
        .write(&batch(
            &[candle(T0, T0 * 1000 + 60_000_000, true, "0.01577100")],
            &[signal(T0 + 59_999)],
        ))
        .unwrap();
    assert_eq!((done.candles, done.signals), (1, 1));
    let mut c = pg.client();
    let row = c
        .query_one(
            "SELECT open::text, close::text, volume::text, trades, closed, \
             extract(epoch from open_time)::float8, extract(epoch from close_time)::float8 FROM candles",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "0.01634790");
    assert_eq!(row.get::<_, String>(1), "0.01577100");
    assert_eq!(row.get::<_, String>(2), "148976.11427815");
    assert_eq!(row.get::<_, i64>(3), 308);
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, f64>(5), T0 as f64 / 1000.0);
    assert_eq!(row.get::<_, f64>(6), (T0 + 59_999) as f64 / 1000.0);
    let s = c
        .query_one(
            "SELECT kind, direction, confidence, price::text, indicators->>'rsi', \
             jsonb_typeof(indicators) FROM signals",
            &[],
        )
        .unwrap();
    assert_eq!(s.get::<_, String>(0), "rsi");
    assert_eq!(s.get::<_, String>(1), "buy");
    assert_eq!(s.get::<_, f64>(2), 0.8);
    assert_eq!(s.get::<_, String>(3), "43251.12000000");
    assert_eq!(s.get::<_, String>(4), "27.25");
    assert_eq!(s.get::<_, String>(5), "object");

    // The API's reads, through the query worker, give the JSON records back.
    let q = QueryClient::spawn(pg.url(), None).unwrap();
    let all = ListQuery {
        symbol: Some(Symbol::new("BTCUSDT").unwrap()),
        interval: Some(Interval::M1),
        limit: 10,
        from_ms: None,
        to_ms: None,
    };
    let candles = futures_lite::future::block_on(q.candles(all)).unwrap();
    assert_eq!(candles.len(), 1);
    assert_eq!(candles[0].open, "0.01634790");
    assert_eq!(candles[0].open_time, T0);
    assert_eq!(candles[0].event_time, T0 + 60_000);
    let signals = futures_lite::future::block_on(q.signals(all)).unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].timestamp, T0 + 59_999);
    assert_eq!(signals[0].indicators["ema_fast"], 43_251.5);
    let later = ListQuery {
        from_ms: Some(T0 + 1),
        ..all
    };
    assert!(futures_lite::future::block_on(q.candles(later))
        .unwrap()
        .is_empty());
}

#[test]
fn replays_out_of_order_updates_and_duplicate_keys_keep_the_newest_rows_once() {
    let pg = Postgres::start_new();
    let mut w = conn(&pg);
    let mut c = pg.client();
    // A stream of live updates then the closing update, for three candles, with signals.
    let stream: Vec<Batch> = (0..3)
        .map(|i| {
            let open = T0 + i * 60_000;
            batch(
                &[
                    candle(open, open * 1000 + 1_000_000, false, "1.0"),
                    candle(open, open * 1000 + 59_000_000, true, "2.0"),
                ],
                &[signal(open + 59_999)],
            )
        })
        .collect();
    for b in &stream {
        w.write(b).unwrap();
    }
    let once = candle_rows(&mut c);
    assert_eq!(once.len(), 3);
    for b in &stream {
        let done = w.write(b).unwrap();
        assert_eq!(
            (done.candles, done.signals),
            (0, 0),
            "a replay changes nothing"
        );
    }
    assert_eq!(candle_rows(&mut c), once);
    let signals: i64 = c
        .query_one("SELECT count(*) FROM signals", &[])
        .unwrap()
        .get(0);
    assert_eq!(signals, 3);

    // Out of order: an older live update and an older closed state arrive late.
    let open = T0 + 10 * 60_000;
    w.write(&batch(&[candle(open, 30, false, "3.0")], &[]))
        .unwrap();
    w.write(&batch(&[candle(open, 20, false, "2.0")], &[]))
        .unwrap();
    let close_of = |c: &mut postgres::Client| -> (String, bool) {
        let r = c
            .query_one(
                "SELECT close::text, closed FROM candles WHERE open_time = to_timestamp($1::float8 / 1000)",
                &[&(open as f64)],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        close_of(&mut c),
        ("3.0".into(), false),
        "older live update ignored"
    );
    w.write(&batch(&[candle(open, 40, true, "4.0")], &[]))
        .unwrap();
    w.write(&batch(&[candle(open, 50, false, "5.0")], &[]))
        .unwrap();
    w.write(&batch(&[candle(open, 35, true, "3.5")], &[]))
        .unwrap();
    assert_eq!(
        close_of(&mut c),
        ("4.0".into(), true),
        "closed beats live; newest closed wins"
    );

    // Duplicate keys inside one batch: merged first, so the upsert succeeds.
    let open = T0 + 20 * 60_000;
    let dup = batch(
        &[
            candle(open, 10, false, "1.0"),
            candle(open, 30, true, "3.0"),
            candle(open, 20, false, "2.0"),
        ],
        &[signal(open), signal(open)],
    );
    let done = w.write(&dup).unwrap();
    assert_eq!((done.candles, done.signals), (1, 1));
    let rows: i64 = c
        .query_one("SELECT count(*) FROM candles", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 5);
}

/// Open time, open, high, low, close, volume, trades, closed: what is compared.
type KlineRow = (i64, String, String, String, String, String, i64, bool);

/// The simulator's closed 1m klines of `symbol` in `[from_ms, to_ms]`, from REST.
fn sim_klines(sim_rest: &str, symbol: &str, from_ms: i64, to_ms: i64) -> Vec<serde_json::Value> {
    let url = format!(
        "{sim_rest}/api/v3/klines?symbol={symbol}&interval=1m&startTime={from_ms}&endTime={to_ms}&limit=1000"
    );
    let body = ureq::get(&url)
        .call()
        .expect("klines")
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
}

/// Checks that the database holds exactly the simulator's klines for `symbol` with open
/// times in `[from_ms, to_ms]`: every one, once, with the same values.
fn assert_matches_simulator(
    client: &mut postgres::Client,
    sim_rest: &str,
    symbol: &str,
    from_ms: i64,
    to_ms: i64,
) -> usize {
    let expected = sim_klines(sim_rest, symbol, from_ms, to_ms);
    let rows = client
        .query(
            "SELECT (extract(epoch from open_time) * 1000)::int8, open::text, high::text, low::text, \
             close::text, volume::text, trades, closed FROM candles \
             WHERE symbol = $1 AND timeframe = '1m' \
               AND open_time BETWEEN to_timestamp($2::float8 / 1000) AND to_timestamp($3::float8 / 1000) \
             ORDER BY open_time",
            &[&symbol, &(from_ms as f64), &(to_ms as f64)],
        )
        .unwrap();
    let got: Vec<KlineRow> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect();
    let want: Vec<KlineRow> = expected
        .iter()
        .filter(|k| k[0].as_i64().unwrap() <= to_ms)
        .map(|k| {
            let s = |i: usize| k[i].as_str().unwrap().to_owned();
            (
                k[0].as_i64().unwrap(),
                s(1),
                s(2),
                s(3),
                s(4),
                s(5),
                k[8].as_i64().unwrap(),
                true,
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "database vs simulator klines {from_ms}..={to_ms}"
    );
    let dupes: i64 = client
        .query_one(
            "SELECT count(*) - count(DISTINCT (symbol, timeframe, open_time)) FROM candles",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dupes, 0);
    want.len()
}

fn db_count(pg: &Postgres) -> i64 {
    postgres::Client::connect(&pg.url(), postgres::NoTls)
        .ok()
        .and_then(|mut c| {
            c.query_one("SELECT count(*) FROM candles WHERE closed", &[])
                .ok()
        })
        .map_or(0, |r| r.get(0))
}

fn temp_spool(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "alphapulse-test-spool-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_database_outage_mid_run_loses_and_doubles_nothing() {
    let mut pg = Postgres::start_new();
    let spool = temp_spool("outage");
    let url = pg.url();
    let run = support::start(
        support::sim_config(&["BTCUSDT"]),
        |c| {
            c.database_url = Some(url.clone());
            c.database.spool_dir = spool.clone();
            c.batch_timeout_s = 0.05;
            c.database.retry_initial_ms = 50;
            c.database.retry_max_ms = 200;
        },
        &["BTCUSDT"],
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    assert!(
        support::wait_until(Duration::from_secs(20), || db_count(&pg) >= 2),
        "closed candles reach the database"
    );
    pg.stop_immediate();
    // The engine keeps going: closed candles pile up in the spool.
    assert!(
        support::wait_until(Duration::from_secs(15), || {
            support::http_json(addr, "/api/status")["sinks"]["spool"]["rows"]
                .as_u64()
                .unwrap_or(0)
                >= 3
        }),
        "the spool holds rows while the database is down"
    );
    let status = support::http_json(addr, "/api/status");
    assert_eq!(status["sinks"]["database"]["connected"], false);
    pg.start();
    assert!(
        support::wait_until(Duration::from_secs(20), || {
            let s = support::http_json(addr, "/api/status");
            s["sinks"]["spool"]["rows"] == 0 && s["sinks"]["database"]["connected"] == true
        }),
        "the spool replays once the database is back"
    );
    // One more candle through the live path, then compare everything the engine closed.
    let closed_now = db_count(&pg);
    assert!(support::wait_until(Duration::from_secs(10), || db_count(
        &pg
    )
        > closed_now));
    let store = run.engine.status().store.clone();
    let closed = store.lock().unwrap().closed(
        Some(Symbol::new("BTCUSDT").unwrap()),
        Some(Interval::M1),
        1000,
    );
    let (first, last) = (
        closed.last().unwrap().open_time_ms,
        closed.first().unwrap().open_time_ms,
    );
    // Wait for the writer to commit the newest one the store has.
    let mut c = pg.client();
    assert!(support::wait_until(Duration::from_secs(5), || {
        c.query_one(
            "SELECT count(*) FROM candles WHERE open_time = to_timestamp($1::float8 / 1000)",
            &[&(last as f64)],
        )
        .map(|r| r.get::<_, i64>(0) == 1)
        .unwrap_or(false)
    }));
    let n = assert_matches_simulator(&mut c, &run.sim.rest_url(), "BTCUSDT", first, last);
    assert_eq!(n, closed.len(), "every candle the engine closed is stored");
    assert!(n >= 6, "the run spanned the outage ({n} candles)");
    let api = support::http_json(addr, "/api/candles?symbol=BTCUSDT&timeframe=1m&limit=5");
    assert_eq!(api["candles"].as_array().map(Vec::len), Some(5));
    drop(run);
    let _ = std::fs::remove_dir_all(&spool);
}

fn engine_child(
    sim: &alphapulse::simulator::SimHandle,
    pg: &Postgres,
    spool: &PathBuf,
    dashboard: std::net::SocketAddr,
) -> support::ChildGuard {
    support::ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_alphapulse"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ALPHAPULSE_PIN_CORES", "false")
            .env("ALPHAPULSE_LOG", "warn")
            .env("BINANCE_WS_URL", sim.ws_url())
            .envs(support::clock_env(sim))
            .env("BINANCE_REST_URL", sim.rest_url())
            .env("SYMBOLS", "BTCUSDT")
            .env("TIMEFRAMES", "1m")
            .env("DASHBOARD_ADDR", dashboard.to_string())
            .env("DATABASE_URL", pg.url())
            .env("DATABASE_SPOOL_DIR", spool)
            .env("BATCH_TIMEOUT", "0.05")
            .current_dir(std::env::temp_dir())
            .arg("run")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn alphapulse run"),
    )
}

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn a_killed_engine_replays_its_spool_at_the_next_start() {
    let _serial = support::serial();
    let mut pg = Postgres::start_new();
    let spool = temp_spool("kill");
    let sim = alphapulse::simulator::start(support::sim_config(&["BTCUSDT"])).expect("simulator");
    let dashboard = free_addr();
    let mut child = engine_child(&sim, &pg, &spool, dashboard);
    assert!(
        support::wait_until(Duration::from_secs(30), || db_count(&pg) >= 2),
        "closed candles reach the database"
    );
    let first: i64 = pg
        .client()
        .query_one(
            "SELECT (extract(epoch from min(open_time)) * 1000)::int8 FROM candles",
            &[],
        )
        .unwrap()
        .get(0);
    pg.stop_immediate();
    let spool_rows = || {
        let (code, body) = support::http_get(dashboard, "/api/status");
        if code != 200 {
            return (0, None);
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let last = v["candles"]["last_closed"][0]["open_time"].as_i64();
        (v["sinks"]["spool"]["rows"].as_u64().unwrap_or(0), last)
    };
    assert!(
        support::wait_until(Duration::from_secs(15), || spool_rows().0 >= 3),
        "the spool holds rows"
    );
    // The newest candle the engine has closed; give the writer a few batch timeouts to
    // spool it, then kill the engine without warning.
    let last = spool_rows().1.expect("a closed candle in the status");
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    let _ = child.0.wait();
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert!(left > 0, "the killed engine left its spool on disk");

    pg.start();
    let dashboard = free_addr();
    let _child = engine_child(&sim, &pg, &spool, dashboard);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = pg.client();
    let stored = |c: &mut postgres::Client, t: i64| {
        c.query_one(
            "SELECT count(*) FROM candles WHERE open_time = to_timestamp($1::float8 / 1000)",
            &[&(t as f64)],
        )
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
    };
    while stored(&mut c, last) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = assert_matches_simulator(&mut c, &sim.rest_url(), "BTCUSDT", first, last);
    assert!(n >= 4, "{n} candles spanned the outage");
    // And the restarted engine keeps writing new candles (those that closed while it
    // was dead are the backfill's business, not the writer's).
    let now = sim.sim_now_ms();
    assert!(
        support::wait_until(Duration::from_secs(15), || {
            c.query_one(
                "SELECT count(*) FROM candles WHERE open_time >= to_timestamp($1::float8 / 1000)",
                &[&(now as f64)],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
        }),
        "the restarted engine writes new candles"
    );
    assert!(
        std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0) == 0,
        "spool replayed and removed"
    );
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn migrate_command_applies_once_and_names_a_missing_url() {
    let pg = Postgres::start_new();
    let migrate = |url: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alphapulse"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ALPHAPULSE_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .arg("migrate");
        if let Some(url) = url {
            c.env("DATABASE_URL", url);
        }
        c.output().expect("run alphapulse migrate")
    };
    let first = migrate(Some(&pg.url()));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("applied V1__candles_and_signals"), "{out}");
    assert!(out.contains("timescaledb: off"), "{out}");
    let again = migrate(Some(&pg.url()));
    assert!(String::from_utf8_lossy(&again.stdout).contains("database schema is current"));
    let missing = migrate(None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("DATABASE_URL is not set"));
}

/// A writer on `pg` with a spool of its own (named `name`) and short batches, not
/// connected: its first batches spool. Returns it, its figures and the spool directory.
fn unconnected_writer(
    pg: &Postgres,
    name: &str,
) -> (
    alphapulse::sinks::db::writer::Writer,
    std::sync::Arc<alphapulse::sinks::db::DbStats>,
    PathBuf,
) {
    let spool = temp_spool(name);
    let mut s = settings(pg);
    s.spool_dir = spool.clone();
    s.batch_timeout = Duration::from_millis(20);
    let stats = std::sync::Arc::new(alphapulse::sinks::db::DbStats::default());
    let writer = alphapulse::sinks::db::writer::Writer::new(
        s.clone(),
        alphapulse::sinks::db::spool::Spool::open(&spool, s.spool_max_bytes).unwrap(),
        stats.clone(),
        false,
    );
    (writer, stats, spool)
}

/// The writer's figures, for a failed assertion's message.
fn writer_figures(s: &alphapulse::sinks::db::DbStats) -> String {
    format!(
        "spooled {} replayed {} offered {} spool {} batches {} absences {} trades {} agg_trades {}",
        s.spooled_rows.get(),
        s.replayed_rows.get(),
        s.rows_offered.get(),
        s.spool_rows.get(),
        s.batches.get(),
        s.absences_written.get(),
        s.trades_written.get(),
        s.agg_trades_written.get()
    )
}

/// Waits (20 s at most) until `done` holds of the writer's figures, then stops the
/// writer thread of [`spawn_writer`].
fn stop_writer_when(
    stats: &alphapulse::sinks::db::DbStats,
    stop: &alphapulse::consumer::Stop,
    thread: std::thread::JoinHandle<()>,
    done: impl Fn(&alphapulse::sinks::db::DbStats) -> bool,
) {
    assert!(
        support::wait_until(Duration::from_secs(20), || done(stats)),
        "{}",
        writer_figures(stats)
    );
    stop.request();
    thread.join().unwrap();
}

/// Runs `writer` on a thread draining one ring of `capacity`: the ring's producer, the
/// stop and the thread.
fn spawn_writer(
    writer: alphapulse::sinks::db::writer::Writer,
    capacity: usize,
) -> (
    alphapulse::ring::Producer<alphapulse::shard::Envelope>,
    alphapulse::consumer::Stop,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = alphapulse::ring::ring("test->database", capacity);
    let stop = alphapulse::consumer::Stop::new();
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            writer.run(alphapulse::engine::SinkIo {
                rings: vec![rx],
                stop,
                latency: alphapulse::latency::Registry::new().recorder("database"),
                busy_poll: false,
            })
        })
    };
    (tx, stop, thread)
}

fn envelope(record: alphapulse::shard::Record) -> alphapulse::shard::Envelope {
    alphapulse::shard::Envelope {
        shard: 0,
        recv_ns: 0,
        parsed_ns: 0,
        record,
    }
}

#[test]
fn the_writer_loop_drains_rings_and_conflates_live_candles_when_asked() {
    use alphapulse::shard::Record;
    use std::sync::Arc;
    let pg = Postgres::start_new();
    let spool = temp_spool("loop");
    let mut s = settings(&pg);
    s.spool_dir = spool.clone();
    s.live_candles = true;
    s.batch_timeout = Duration::from_millis(20);
    let stats = Arc::new(alphapulse::sinks::db::DbStats::default());
    let writer = alphapulse::sinks::db::writer::Writer::new(
        s.clone(),
        alphapulse::sinks::db::spool::Spool::open(&spool, s.spool_max_bytes).unwrap(),
        stats.clone(),
        false,
    );
    let (tx, stop, thread) = spawn_writer(writer, 4096);
    // 200 live updates of one candle, then 2000 closed candles of other minutes.
    for i in 0..200 {
        let c = candle(T0, T0 * 1000 + i, false, &format!("{i}.5"));
        tx.push(envelope(Record::LiveCandle(c))).unwrap();
    }
    for i in 1..=2000 {
        let open = T0 + i * 60_000;
        let c = candle(open, open * 1000 + 59_000_000, true, "7.0");
        while tx.push(envelope(Record::ClosedCandle(c))).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut c = pg.client();
    let rows = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT count(*) FROM candles", &[])
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    assert!(support::wait_until(Duration::from_secs(20), || rows(
        &mut c
    ) == 2001));
    stop.request();
    thread.join().unwrap();
    let live: (String, bool) = c
        .query_one(
            "SELECT close::text, closed FROM candles ORDER BY open_time LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        live,
        ("199.5".to_owned(), false),
        "the newest live state is kept"
    );
    assert_eq!(stats.rows_offered.get(), 2200);
    assert!(
        stats.max_batch_rows.get() > s.batch_size as u64,
        "batches grew under load (largest {})",
        stats.max_batch_rows.get()
    );
    assert_eq!(stats.spool_rows.get(), 0);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn confirmed_absences_are_spooled_then_stored_once_by_the_writer() {
    use alphapulse::candle::Gap;
    use alphapulse::shard::Record;
    let pg = Postgres::start_new();
    let (mut writer, stats, spool) = unconnected_writer(&pg, "absences");
    let gap = Gap {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        interval: Interval::M1,
        from_open_ms: T0 + 60_000,
        to_open_ms: T0 + 180_000,
    };
    // The writer takes `Record::Absent` like a candle, into the same batch; a gap has
    // no row. Not yet connected, it spools the batch: the absence with the candle.
    let mut b = Batch::new();
    let c = candle(T0, T0 * 1000 + 59_000_000, true, "7.0");
    assert!(writer.offer(&mut b, &envelope(Record::ClosedCandle(c))));
    assert!(writer.offer(&mut b, &envelope(Record::Absent(gap))));
    assert!(
        !writer.offer(&mut b, &envelope(Record::Gap(gap))),
        "a gap has no row"
    );
    writer.commit(&b);
    assert_eq!(stats.spooled_rows.get(), 2, "{}", writer_figures(&stats));
    // Running, it connects, replays the spool, and takes the same span again from its
    // ring (a restart asks again): one row.
    let (tx, stop, thread) = spawn_writer(writer, 64);
    tx.push(envelope(Record::Absent(gap))).unwrap();
    stop_writer_when(&stats, &stop, thread, |s| {
        s.replayed_rows.get() == 2
            && s.rows_offered.get() == 3
            && s.spool_rows.get() == 0
            && s.batches.get() >= 2
    });
    assert_eq!(
        stats.absences_written.get(),
        1,
        "{}",
        writer_figures(&stats)
    );
    let rows = pg
        .client()
        .query(
            "SELECT symbol, timeframe, (extract(epoch FROM from_open_time) * 1000)::bigint, \
             (extract(epoch FROM to_open_time) * 1000)::bigint, candles FROM candle_absences",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "BTCUSDT");
    assert_eq!(row.get::<_, String>(1), "1m");
    assert_eq!(row.get::<_, i64>(2), T0 + 60_000);
    assert_eq!(row.get::<_, i64>(3), T0 + 180_000);
    assert_eq!(row.get::<_, i64>(4), 2);
    assert_eq!(db_count(&pg), 1);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn both_write_methods_record_an_absence_once() {
    use alphapulse::candle::Gap;
    use alphapulse::sinks::db::upsert::{BatchConn, WriteMethod};
    let pg = Postgres::start_new();
    migrate_now(&settings(&pg)).expect("migrations");
    for (i, method) in [WriteMethod::Copy, WriteMethod::Unnest]
        .into_iter()
        .enumerate()
    {
        let client = copy::connect(&pg.url(), CONNECT_TIMEOUT).unwrap();
        let mut conn = BatchConn::new(client, method).unwrap();
        let gap = Gap {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            interval: Interval::M5,
            from_open_ms: T0 + i as i64 * 3_600_000,
            to_open_ms: T0 + i as i64 * 3_600_000 + 900_000,
        };
        let mut b = batch(&[candle(T0, T0 * 1000, true, "1.0")], &[]);
        b.push_absence(gap);
        assert_eq!(conn.write(&b).unwrap().absences, 1, "{method:?}");
        assert_eq!(conn.write(&b).unwrap().absences, 0, "{method:?}: once");
        let (n, candles): (i64, i64) = pg
            .client()
            .query_one(
                "SELECT count(*), sum(candles)::bigint FROM candle_absences \
                 WHERE from_open_time = to_timestamp($1::bigint / 1000.0)",
                &[&gap.from_open_ms],
            )
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!((n, candles), (1, 3), "{method:?}");
    }
}

#[test]
fn at_its_bound_the_spool_refuses_batches_and_counts_the_rows() {
    use std::sync::Arc;
    let spool = temp_spool("bound");
    let config = alphapulse::config::Config {
        // Nothing listens on port 1: every connection attempt fails at once.
        database_url: Some("postgres://postgres@127.0.0.1:1/none".into()),
        ..Default::default()
    };
    let mut s = DbSettings::from_config(&config).unwrap();
    s.spool_dir = spool.clone();
    let stats = Arc::new(alphapulse::sinks::db::DbStats::default());
    let mut writer = alphapulse::sinks::db::writer::Writer::new(
        s,
        alphapulse::sinks::db::spool::Spool::open(&spool, 2000).unwrap(),
        stats.clone(),
        false,
    );
    for i in 0..20 {
        let open = T0 + i * 60_000;
        writer.commit(&batch(&[candle(open, open * 1000, true, "1.0")], &[]));
    }
    let (stored, dropped) = (stats.spooled_rows.get(), stats.spool_dropped_rows.get());
    assert!(
        stored > 0 && dropped > 0,
        "stored {stored}, dropped {dropped}"
    );
    assert_eq!(stored + dropped, 20);
    assert!(stats.spool_bytes.get() <= 2000);
    let _ = std::fs::remove_dir_all(&spool);
}

/// A statement the server refuses whatever the rows (a column the writer needs is
/// gone: SQLSTATE 42703) keeps the batches in the spool, is retried at `retry_max` pace
/// only, shows as `refusing`; once the column is back the spool replays in full.
#[test]
fn a_refused_statement_holds_batches_in_the_spool_until_mended() {
    use alphapulse::sinks::db::writer::{Now, Writer};
    use std::sync::Arc;
    let pg = Postgres::start_new();
    migrate_now(&settings(&pg)).expect("migrations");
    let spool = temp_spool("refused");
    let mut s = settings(&pg);
    s.spool_dir = spool.clone();
    s.retry_max = Duration::from_millis(1500);
    let stats = Arc::new(alphapulse::sinks::db::DbStats::default());
    let mut writer = Writer::new(
        s,
        alphapulse::sinks::db::spool::Spool::open(&spool, 1 << 20).unwrap(),
        stats.clone(),
        true,
    );
    writer.maintain(Now::read(), Duration::from_millis(100));
    assert_eq!(stats.connected.get(), 1);
    let mut c = pg.client();
    c.batch_execute("ALTER TABLE candles DROP COLUMN taker_buy_quote")
        .unwrap();
    for i in 0..3 {
        let open = T0 + i * 60_000;
        writer.commit(&batch(&[candle(open, open * 1000, true, "1.0")], &[]));
        writer.maintain(Now::read(), Duration::from_millis(100));
    }
    assert_eq!(stats.refusing.get(), 1);
    assert_eq!(stats.refused_writes.get(), 1, "not retried at full rate");
    assert_eq!(stats.spool_rows.get(), 3);
    assert_eq!(stats.spool_dropped_rows.get(), 0);
    assert_eq!(
        stats.dead_rows.get(),
        0,
        "no row is blamed for the statement"
    );
    let error = stats.last_error.lock().unwrap().clone().unwrap_or_default();
    assert!(error.contains("taker_buy_quote"), "{error}");
    c.batch_execute("ALTER TABLE candles ADD COLUMN taker_buy_quote numeric")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.spool_rows.get() > 0 && Instant::now() < deadline {
        writer.maintain(Now::read(), Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats.spool_rows.get(), 0, "the spool replays once mended");
    assert_eq!(stats.refusing.get(), 0);
    assert_eq!(db_count(&pg), 3);
    let _ = std::fs::remove_dir_all(&spool);
}

/// A list read with a `from` no timestamp can hold is answered with an error, and the
/// query worker goes on answering.
#[test]
fn an_extreme_time_in_a_list_read_is_an_error_not_a_dead_worker() {
    let pg = Postgres::start_new();
    let mut w = conn(&pg);
    w.write(&batch(&[candle(T0, T0 * 1000, true, "1.0")], &[]))
        .unwrap();
    let q = QueryClient::spawn(pg.url(), None).unwrap();
    let all = ListQuery {
        symbol: None,
        interval: None,
        limit: 10,
        from_ms: None,
        to_ms: None,
    };
    for (from, to) in [
        (Some(i64::MIN), None),
        (None, Some(i64::MIN)),
        (Some(-i64::MAX), Some(i64::MAX)),
    ] {
        let q2 = ListQuery {
            from_ms: from,
            to_ms: to,
            ..all
        };
        let err = futures_lite::future::block_on(q.candles(q2)).expect_err("out of range");
        assert!(err.0.contains("range"), "{err:?}");
        assert!(futures_lite::future::block_on(q.signals(q2)).is_err());
    }
    assert_eq!(
        futures_lite::future::block_on(q.candles(all))
            .unwrap()
            .len(),
        1
    );
}

/// A batch too big to upsert within `statement_timeout` (a trigger makes each row cost
/// 50 ms; the timeout is 500 ms) is written in halves rather than retried whole for
/// ever.
#[test]
fn a_batch_that_times_out_is_written_in_halves() {
    use alphapulse::sinks::db::writer::{Now, Writer};
    use std::sync::Arc;
    let pg = Postgres::start_new();
    migrate_now(&settings(&pg)).expect("migrations");
    pg.client()
        .batch_execute(
            "CREATE FUNCTION slow_rows() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_sleep(0.05 * (SELECT count(*) FROM new_rows)); RETURN NULL; END $$; \
             CREATE TRIGGER slow_rows AFTER INSERT ON candles REFERENCING NEW TABLE AS new_rows \
             FOR EACH STATEMENT EXECUTE FUNCTION slow_rows();",
        )
        .expect("the slow trigger");
    let spool = temp_spool("timeout");
    let mut s = settings(&pg);
    s.spool_dir = spool.clone();
    s.statement_timeout = Duration::from_millis(500);
    let stats = Arc::new(alphapulse::sinks::db::DbStats::default());
    let mut writer = Writer::new(
        s,
        alphapulse::sinks::db::spool::Spool::open(&spool, 1 << 20).unwrap(),
        stats.clone(),
        true,
    );
    writer.maintain(Now::read(), Duration::from_millis(100));
    assert_eq!(stats.connected.get(), 1);
    let candles: Vec<Candle> = (0..16)
        .map(|i| {
            let open = T0 + i * 60_000;
            candle(open, open * 1000, true, "1.0")
        })
        .collect();
    writer.commit(&batch(&candles, &[]));
    assert_eq!(db_count(&pg), 16);
    assert!(stats.split_writes.get() >= 2, "written in halves");
    assert_eq!(stats.spool_rows.get(), 0);
    assert_eq!(stats.write_errors.get(), 0);
    let _ = std::fs::remove_dir_all(&spool);
}

fn trade(id: u64, price: &str, quantity: &str) -> alphapulse::market::Trade {
    alphapulse::market::Trade {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        trade_id: id,
        price: dec(price),
        quantity: dec(quantity),
        trade_time_ms: T0 + id as i64,
        buyer_is_maker: id % 2 == 0,
        event_time_us: (T0 + id as i64) * 1000 + 3,
    }
}

fn agg_trade(id: u64, first: u64, last: u64) -> alphapulse::market::AggTrade {
    alphapulse::market::AggTrade {
        symbol: Symbol::new("ETHUSDT").unwrap(),
        agg_trade_id: id,
        price: dec("2034.10000000"),
        quantity: dec("0.00100000"),
        first_trade_id: first,
        last_trade_id: last,
        trade_time_ms: T0 + id as i64,
        buyer_is_maker: true,
        event_time_us: (T0 + id as i64) * 1000,
    }
}

/// Every trade and aggregate trade row as text, in key order.
fn trade_rows(client: &mut postgres::Client) -> (Vec<String>, Vec<String>) {
    let mut rows = |sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let trades = rows(
        "SELECT concat_ws(' ', symbol, trade_id, price, quantity, \
         (extract(epoch FROM trade_time) * 1000)::bigint, buyer_is_maker) \
         FROM trades ORDER BY symbol, trade_id",
    );
    let aggs = rows(
        "SELECT concat_ws(' ', symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, \
         (extract(epoch FROM trade_time) * 1000)::bigint, buyer_is_maker) \
         FROM agg_trades ORDER BY symbol, agg_trade_id",
    );
    (trades, aggs)
}

#[test]
fn both_write_methods_store_trades_exactly_and_once() {
    use alphapulse::sinks::db::upsert::{BatchConn, WriteMethod};
    let pg = Postgres::start_new();
    migrate_now(&settings(&pg)).expect("migrations");
    for (i, method) in [WriteMethod::Copy, WriteMethod::Unnest]
        .into_iter()
        .enumerate()
    {
        let client = copy::connect(&pg.url(), CONNECT_TIMEOUT).unwrap();
        let mut conn = BatchConn::new(client, method).unwrap();
        let base = 1000 * i as u64;
        let mut b = Batch::new();
        b.push_trade(trade(base + 1, "43251.12000000", "0.00150000"));
        b.push_trade(trade(base + 2, "0.01634790", "148976.11427815"));
        b.push_trade(trade(base + 2, "0.01634790", "148976.11427815"));
        b.push_agg_trade(agg_trade(base + 7, base + 1, base + 2));
        let done = conn.write(&b).unwrap();
        assert_eq!((done.trades, done.agg_trades), (2, 1), "{method:?}");
        let again = conn.write(&b).unwrap();
        assert_eq!((again.trades, again.agg_trades), (0, 0), "{method:?}: once");
    }
    let (trades, aggs) = trade_rows(&mut pg.client());
    assert_eq!(
        trades,
        [
            format!("BTCUSDT 1 43251.12000000 0.00150000 {} f", T0 + 1),
            format!("BTCUSDT 2 0.01634790 148976.11427815 {} t", T0 + 2),
            format!("BTCUSDT 1001 43251.12000000 0.00150000 {} f", T0 + 1001),
            format!("BTCUSDT 1002 0.01634790 148976.11427815 {} t", T0 + 1002),
        ],
        "digits and scale as received"
    );
    assert_eq!(
        aggs,
        [
            format!("ETHUSDT 7 2034.10000000 0.00100000 1 2 {} t", T0 + 7),
            format!(
                "ETHUSDT 1007 2034.10000000 0.00100000 1001 1002 {} t",
                T0 + 1007
            ),
        ]
    );
}

#[test]
fn trades_are_spooled_during_an_outage_then_stored_once_by_the_writer() {
    use alphapulse::shard::Record;
    let pg = Postgres::start_new();
    let (mut writer, stats, spool) = unconnected_writer(&pg, "trades");
    // Not connected: the batch of trades goes to the spool.
    let mut b = Batch::new();
    for id in 1..=3 {
        assert!(writer.offer(&mut b, &envelope(Record::Trade(trade(id, "1.50", "2.0")))));
    }
    assert!(writer.offer(&mut b, &envelope(Record::AggTrade(agg_trade(5, 1, 3)))));
    writer.commit(&b);
    assert_eq!(stats.spooled_rows.get(), 4, "{}", writer_figures(&stats));
    // Running, it replays the spool, then takes the same trades again from its ring
    // (a rotation's overlap) and one new one: each stored once.
    let (tx, stop, thread) = spawn_writer(writer, 64);
    for id in 2..=4 {
        tx.push(envelope(Record::Trade(trade(id, "1.50", "2.0"))))
            .unwrap();
    }
    tx.push(envelope(Record::AggTrade(agg_trade(5, 1, 3))))
        .unwrap();
    stop_writer_when(&stats, &stop, thread, |s| {
        s.replayed_rows.get() == 4
            && s.rows_offered.get() == 8
            && s.spool_rows.get() == 0
            && s.trades_written.get() == 4
    });
    assert_eq!(
        stats.agg_trades_written.get(),
        1,
        "{}",
        writer_figures(&stats)
    );
    let (trades, aggs) = trade_rows(&mut pg.client());
    let ids: Vec<&str> = trades
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    assert_eq!(trades[0], format!("BTCUSDT 1 1.50 2.0 {} f", T0 + 1));
    assert_eq!(aggs.len(), 1);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn a_restart_resumes_trades_after_the_newest_stored_and_finds_the_holes_among_them() {
    use alphapulse::backfill::{RestDatabase, TradeKind, TradeResume};
    let pg = Postgres::start_new();
    migrate_now(&settings(&pg)).expect("migrations");
    let mut client = pg.client();
    // BTCUSDT: ids 1..=10, 15..=20 and 30 of both kinds; ETHUSDT: none.
    for id in (1..=10).chain(15..=20).chain([30i64]) {
        client
            .execute(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, buyer_is_maker) \
                 VALUES ('BTCUSDT', $1, 1, 1, now(), true)",
                &[&id],
            )
            .unwrap();
        client
            .execute(
                "INSERT INTO agg_trades (symbol, agg_trade_id, price, quantity, first_trade_id, \
                 last_trade_id, trade_time, buyer_is_maker) \
                 VALUES ('BTCUSDT', $1, 1, 1, $1, $1, now(), true)",
                &[&id],
            )
            .unwrap();
    }
    let mut db = alphapulse::sinks::db::rest::RestDb::new(pg.url());
    let symbols = [
        Symbol::new("BTCUSDT").unwrap(),
        Symbol::new("ETHUSDT").unwrap(),
    ];
    for kind in TradeKind::ALL {
        let resume = db.trade_resume(kind, &symbols).expect("query");
        assert_eq!(
            resume,
            [TradeResume {
                symbol: symbols[0],
                newest: 30,
                holes: vec![(11, 15), (21, 30)],
                more_holes: false,
            }],
            "{kind:?}"
        );
    }
    // BNBUSDT: every other id, 102 holes: the newest 100 are asked for, and the rest
    // are said to be left.
    for id in (0..=102i64).map(|k| 2 * k) {
        client
            .execute(
                "INSERT INTO trades (symbol, trade_id, price, quantity, trade_time, buyer_is_maker) \
                 VALUES ('BNBUSDT', $1, 1, 1, now(), true)",
                &[&id],
            )
            .unwrap();
    }
    let bnb = [Symbol::new("BNBUSDT").unwrap()];
    let resume = db.trade_resume(TradeKind::Raw, &bnb).expect("query");
    let holes = &resume[0].holes;
    assert_eq!(
        holes.len(),
        alphapulse::backfill::MAX_RESUMED_HOLES as usize
    );
    assert_eq!((holes[0], holes[holes.len() - 1]), ((5, 6), (203, 204)));
    assert!(resume[0].more_holes);
}
