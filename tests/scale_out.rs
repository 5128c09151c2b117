//! Scale-out on one host: two `alphapulse run` processes (instance 0 and 1 of 2) against
//! one simulator, one private Redis and one private PostgreSQL, as a two-host
//! deployment would run them. Shows that
//! (a) each instance owns a disjoint half of the symbols, the stable-hash slice of
//!     `Config::instance_symbols`;
//! (b) both write to the same tables without conflict: every symbol's closed candles are
//!     stored once per key, gap-free, and only by the instance that owns the symbol (a
//!     test-only trigger records which database role wrote each row), signals likewise;
//! (c) either instance's dashboard serves every symbol: the other instance's symbols in
//!     `/api/status`, `/api/candles` and live over `/ws` (through the Redis bridge).
//! And instances that start together against an empty database migrate it once.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/engine.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alphapulse::config::Config;
use alphapulse::market::Symbol;
use pg::Postgres;
use redis_support::RedisServer;
use serde_json::{json, Value};
use support::{http_get, http_json, wait_until, ChildGuard};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Eight symbols, split four and four by the stable hash (checked below).
const SYMBOLS: [&str; 8] = [
    "BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT", "XRPUSDT", "SOLUSDT", "DOTUSDT", "LTCUSDT",
];
const INSTANCES: u32 = 2;
/// Closed 1m candles each symbol must have in the database before the checks.
const CANDLES_PER_SYMBOL: i64 = 12;

/// Database role of instance `k`: the audit trigger records `current_user`, so each
/// stored row names the instance that wrote it.
fn role(k: u32) -> String {
    format!("instance_{k}")
}

/// The symbols instance `k` must own, by the configuration's own rule.
fn expected_slice(k: u32) -> BTreeSet<String> {
    let config = Config {
        symbols: SYMBOLS.iter().map(|s| Symbol::new(s).unwrap()).collect(),
        engine: alphapulse::config::EngineConfig {
            instance_index: k,
            instance_count: INSTANCES,
            ..Default::default()
        },
        ..Config::default()
    };
    config
        .instance_symbols()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alphapulse-scale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `alphapulse run` as instance `k` of [`INSTANCES`], configured only through the
/// environment, as a container or systemd unit would be.
fn instance(
    k: u32,
    sim: &alphapulse::simulator::SimHandle,
    database_url: &str,
    redis: &RedisServer,
    dashboard: SocketAddr,
    spool: &Path,
) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_alphapulse"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ALPHAPULSE_PIN_CORES", "false")
            .env("ALPHAPULSE_LOG", "warn")
            .env("BINANCE_WS_URL", sim.ws_url())
            .envs(support::clock_env(sim))
            .env("BINANCE_REST_URL", sim.rest_url())
            .env("SYMBOLS", SYMBOLS.join(","))
            .env("TIMEFRAMES", "1m")
            .env("DASHBOARD_ADDR", dashboard.to_string())
            .env("DATABASE_URL", database_url)
            .env("DATABASE_SPOOL_DIR", spool)
            .env("BATCH_TIMEOUT", "0.05")
            .env("REDIS_URL", redis.url())
            .env("INSTANCE_INDEX", k.to_string())
            .env("INSTANCE_COUNT", INSTANCES.to_string())
            .current_dir(std::env::temp_dir())
            .arg("run")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn alphapulse run"),
    )
}

/// A login role per instance, and a trigger that records which role wrote each row of
/// `candles` and `signals` (insert or update) into `row_writes`.
const AUDIT_SQL: &str = "
    CREATE ROLE instance_0 LOGIN SUPERUSER;
    CREATE ROLE instance_1 LOGIN SUPERUSER;
    CREATE TABLE row_writes (tbl text NOT NULL, symbol text NOT NULL, op text NOT NULL,
                             writer text NOT NULL);
    CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO row_writes VALUES (TG_TABLE_NAME, NEW.symbol, TG_OP, current_user);
        RETURN NEW;
    END $$;
    CREATE TRIGGER candles_writes AFTER INSERT OR UPDATE ON candles
        FOR EACH ROW EXECUTE FUNCTION note_write();
    CREATE TRIGGER signals_writes AFTER INSERT OR UPDATE ON signals
        FOR EACH ROW EXECUTE FUNCTION note_write();
";

fn migrate(database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alphapulse"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .current_dir(std::env::temp_dir())
        .arg("migrate")
        .output()
        .expect("run alphapulse migrate")
}

/// The symbols listed by the shards of an instance's `/api/status`.
fn own_symbols(status: &Value) -> BTreeSet<String> {
    status["shards"]
        .as_array()
        .expect("shards in the status")
        .iter()
        .flat_map(|s| s["symbols"].as_array().expect("shard symbols").iter())
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Closed candles per symbol in the database.
fn stored_per_symbol(client: &mut postgres::Client) -> BTreeMap<String, i64> {
    client
        .query(
            "SELECT symbol, count(*) FROM candles WHERE timeframe = '1m' GROUP BY symbol",
            &[],
        )
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

fn ws_connect(addr: SocketAddr) -> Ws {
    let req = format!("ws://{addr}/ws").into_client_request().unwrap();
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tungstenite::client(req, MaybeTlsStream::Plain(stream))
        .expect("WebSocket upgrade")
        .0
}

/// Reads candle pushes of one subscription until it has seen both a live update and a
/// closed candle, or `timeout` passes; returns every candle it read.
fn candle_pushes(ws: &mut Ws, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut got: Vec<Value> = Vec::new();
    let done = |got: &[Value]| {
        got.iter().any(|c| c["closed"] == true) && got.iter().any(|c| c["closed"] == false)
    };
    while Instant::now() < deadline && !done(&got) {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON push");
                if v["type"] == "candle" {
                    got.push(v);
                }
            }
            Ok(Message::Close(f)) => panic!("the dashboard closed the WebSocket: {f:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("WebSocket read: {e}"),
        }
    }
    got
}

#[test]
fn two_instances_split_the_symbols_share_the_tables_and_each_dashboard_serves_all() {
    let _serial = support::serial();
    let slices: Vec<BTreeSet<String>> = (0..INSTANCES).map(expected_slice).collect();
    let all: BTreeSet<String> = SYMBOLS.iter().map(|s| s.to_string()).collect();
    assert!(
        slices.iter().all(|s| s.len() >= 2),
        "the stable hash should split these symbols roughly in half: {slices:?}"
    );

    let pg = Postgres::start_new();
    let redis = RedisServer::start();
    // Schema first (as an operator's migration job would), then the audit on top.
    let out = migrate(&pg.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.client().batch_execute(AUDIT_SQL).expect("audit setup");

    let mut sim_config = support::sim_config(&SYMBOLS);
    // Four 1m candles a second per symbol: signals within seconds, light on 2 cores.
    sim_config.speed = 240.0;
    sim_config.trade_rate = 1.0;
    let sim = alphapulse::simulator::start(sim_config).expect("simulator");
    let dashboards: Vec<SocketAddr> = (0..INSTANCES).map(|_| free_addr()).collect();
    let spools: Vec<PathBuf> = (0..INSTANCES)
        .map(|k| temp_dir(&format!("spool-{k}")))
        .collect();
    let url_of = |k: u32| format!("postgres://{}@127.0.0.1:{}/postgres", role(k), pg.port);
    let _children: Vec<ChildGuard> = (0..INSTANCES)
        .map(|k| {
            let i = k as usize;
            instance(k, &sim, &url_of(k), &redis, dashboards[i], &spools[i])
        })
        .collect();
    for (k, addr) in dashboards.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(40), || http_get(*addr, "/readyz").0
                == 200),
            "instance {k} never became ready: {}",
            http_get(*addr, "/api/status").1
        );
    }

    // (a) Disjoint halves, the stable-hash ones, together every symbol.
    let owned: Vec<BTreeSet<String>> = dashboards
        .iter()
        .map(|a| own_symbols(&http_json(*a, "/api/status")))
        .collect();
    for k in 0..INSTANCES as usize {
        assert_eq!(owned[k], slices[k], "instance {k} owns the wrong symbols");
    }
    assert!(owned[0].is_disjoint(&owned[1]), "{owned:?}");
    assert_eq!(&owned[0] | &owned[1], all);
    let owner = |symbol: &str| -> usize {
        (0..owned.len())
            .find(|k| owned[*k].contains(symbol))
            .expect("every symbol has an owner")
    };

    // (b) Both write to the same tables. Wait for enough candles of every symbol and
    // a signal of each instance's symbols.
    let mut client = pg.client();
    let enough = wait_until(Duration::from_secs(60), || {
        let per = stored_per_symbol(&mut client);
        let signals: BTreeSet<String> = client
            .query("SELECT DISTINCT symbol FROM signals", &[])
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        all.iter()
            .all(|s| per.get(s).copied().unwrap_or(0) >= CANDLES_PER_SYMBOL)
            && (0..owned.len()).all(|k| signals.iter().any(|s| owned[k].contains(s)))
    });
    assert!(
        enough,
        "candles per symbol {:?}, signals {:?}",
        stored_per_symbol(&mut client),
        client
            .query("SELECT symbol, count(*) FROM signals GROUP BY 1", &[])
            .map(|rows| rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );

    // Every write of a symbol's rows came from the instance that owns it.
    let writes: Vec<(String, String, String, i64)> = client
        .query(
            "SELECT tbl, symbol, writer, count(*) FROM row_writes GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for (table, symbol, writer, n) in &writes {
        assert_eq!(
            writer,
            &role(owner(symbol) as u32),
            "{n} {table} rows of {symbol} written by {writer}: {writes:?}"
        );
    }
    let written: BTreeSet<&str> = writes
        .iter()
        .filter(|w| w.0 == "candles")
        .map(|w| w.1.as_str())
        .collect();
    assert_eq!(written.len(), all.len(), "{writes:?}");

    // One row per key (the primary key holds) and no hole in any symbol's series.
    let duplicates: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM candles GROUP BY symbol, timeframe, open_time \
             HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(duplicates, 0);
    let series: Vec<(String, i64, i64)> = client
        .query(
            "SELECT symbol, count(*), \
             ((extract(epoch from max(open_time) - min(open_time)) / 60)::int8 + 1) \
             FROM candles WHERE timeframe = '1m' GROUP BY symbol ORDER BY symbol",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (symbol, rows, span) in &series {
        assert_eq!(rows, span, "{symbol}: {rows} candles over {span} minutes");
    }
    let signal_duplicates: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM signals GROUP BY symbol, timeframe, kind, \
             \"timestamp\" HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(signal_duplicates, 0);

    // Neither writer met an error, a retry or a spool (a key conflict would be one).
    let statuses: Vec<Value> = dashboards
        .iter()
        .map(|a| http_json(*a, "/api/status"))
        .collect();
    for (k, status) in statuses.iter().enumerate() {
        let db = &status["sinks"]["database"];
        assert_eq!(db["connected"], true, "instance {k}: {db}");
        assert_eq!(db["errors"], 0, "instance {k}: {db}");
        assert_eq!(db["connect_failures"], 0, "instance {k}: {db}");
        assert!(
            db["candles_written"].as_u64().unwrap() > 0,
            "instance {k}: {db}"
        );
        let spool = &status["sinks"]["spool"];
        assert_eq!(spool["spooled_rows"], 0, "instance {k}: {spool}");
        assert_eq!(spool["dropped_rows"], 0, "instance {k}: {spool}");
        assert_eq!(
            status["instance"],
            json!({"index": k, "count": INSTANCES}),
            "instance {k}"
        );
    }

    // (c) Each dashboard serves every symbol.
    for (k, addr) in dashboards.iter().enumerate() {
        let theirs = &owned[1 - k];
        let status = &statuses[k];
        assert_eq!(
            string_set(&status["symbols"]),
            all,
            "instance {k} does not list every symbol: {}",
            status["symbols"]
        );
        // The bridge brings exactly the other instance's symbols.
        let bridged = wait_until(Duration::from_secs(10), || {
            let s = http_json(*addr, "/api/status");
            string_set(&s["sinks"]["redis"]["bridge"]["remote_symbols"]) == *theirs
        });
        assert!(
            bridged,
            "instance {k}'s bridge: {}",
            http_json(*addr, "/api/status")["sinks"]["redis"]["bridge"]
        );
        for symbol in theirs {
            // History from the shared table, the in-progress candle from the bridge.
            let api = http_json(*addr, &format!("/api/candles?symbol={symbol}&timeframe=1m"));
            let candles = api["candles"].as_array().expect("candles");
            assert!(!candles.is_empty(), "instance {k}, {symbol}: {api}");
            assert!(
                candles
                    .iter()
                    .all(|c| c["symbol"] == symbol.as_str() && c["closed"] == true),
                "instance {k}, {symbol}: {api}"
            );
            let live_shown = wait_until(Duration::from_secs(10), || {
                let api = http_json(*addr, &format!("/api/candles?symbol={symbol}&timeframe=1m"));
                api["live"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|c| c["symbol"] == symbol.as_str()))
            });
            assert!(live_shown, "instance {k} shows no live candle of {symbol}");
        }

        // Live over the WebSocket: the other instance's candles, pushed as they come.
        let symbol = theirs.iter().next().unwrap();
        let mut ws = ws_connect(*addr);
        ws.send(Message::text(
            json!({"type": "subscribe", "subscription": "candles",
                   "symbol": symbol, "timeframe": "1m"})
            .to_string(),
        ))
        .unwrap();
        let pushes = candle_pushes(&mut ws, Duration::from_secs(15));
        assert!(
            pushes.iter().any(|c| c["closed"] == true)
                && pushes.iter().any(|c| c["closed"] == false),
            "instance {k}: no live and closed pushes of {symbol} over /ws: {pushes:?}"
        );
        assert!(
            pushes
                .iter()
                .all(|c| c["symbol"] == symbol.as_str() && c["timeframe"] == "1m"),
            "{pushes:?}"
        );
        let _ = ws.close(None);
    }

    for dir in &spools {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn instances_starting_together_on_an_empty_database_migrate_it_once() {
    let _serial = support::serial();
    let pg = Postgres::start_new();
    // Several rounds over a fresh schema each time: a race shows in some rounds only.
    for round in 0..3 {
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_alphapulse"))
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("DATABASE_URL", pg.url())
                    .current_dir(std::env::temp_dir())
                    .arg("migrate")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run alphapulse migrate")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut c = pg.client();
        let applied: i64 = c
            .query_one("SELECT count(*) FROM refinery_schema_history", &[])
            .unwrap()
            .get(0);
        let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count() as i64;
        assert_eq!(
            applied, migrations,
            "round {round}: each migration recorded once"
        );
        c.batch_execute("DROP TABLE candles, signals, candle_absences, refinery_schema_history")
            .unwrap();
    }
}
