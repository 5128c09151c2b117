//! The fault suite's rig and its one proof.
//!
//! A [`Rig`] is one scenario's world: a private PostgreSQL and redis-server, the built-in
//! simulator in this process (speed 60: a 1m candle closes every wall second), and the
//! engine as a separate process of the real binary, so a scenario can SIGKILL it and
//! start it again on the same database. Scenarios inject their fault, then call
//! [`Rig::prove`], which checks the same four things every time:
//! 1. `/api/status` reports every series complete (see [`COMPLETENESS_STATUS_REQUIRED`]);
//! 2. every closed candle of the run is in `candles` once, equal to the simulator's REST
//!    klines, field by field, as exact decimals;
//! 3. the signals in `signals` equal those a fault-free engine computes from the same
//!    klines (reference: [`SignalEngine`] fed every kline from the market's first);
//! 4. the engine is alive and never panicked.
//!
//! The including test file declares the sibling helpers as `support` (engine.rs), `pg`
//! (postgres.rs) and `redis_server` (redis.rs); this module reaches them through
//! `super`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use alphapulse::market::{Decimal, Interval};
use alphapulse::record::indicators_object;
use alphapulse::signals::params::{SignalParams, SignalsConfig, MAX_WARM_CANDLES};
use alphapulse::signals::rules::{decimal_to_f64, Bar, SignalEngine};
use alphapulse::simulator::{self, SimConfig, SimHandle};
use alphapulse::sinks::db::{migrate_now, DbSettings};
use serde_json::Value;

use super::pg::Postgres;
use super::redis_server::RedisServer;
use super::support::{self, ChildGuard};

/// Whether the proof insists that `/api/status` reports `completeness` (issue 8: the
/// REST backfill of candle gaps). While false, an engine without the field passes step
/// 1 with a printed note; an engine that has it must still reach 100%. Flip to true once
/// the backfill is merged, so an engine that stops reporting fails.
pub const COMPLETENESS_STATUS_REQUIRED: bool = true;

/// The symbols and timeframes of every scenario: 3 × 2 series.
pub const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
pub const TIMEFRAMES: [Interval; 2] = [Interval::M1, Interval::M3];

/// Simulated time runs this many times the wall clock: a 1m candle per wall second.
pub const SPEED: f64 = 60.0;

/// Bounds of the waits (wall time).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WARM_TIMEOUT: Duration = Duration::from_secs(30);
const COMPLETENESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the stored candles and signals may take to match once completeness holds
/// (the writer's batches, a backfill finishing).
const MATCH_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);
/// Signals of candles that closed this long (wall) before a SIGKILL may be lost with the
/// process (they were in its memory, not yet written); the proof does not require them,
/// but any that were stored must still be right.
const KILL_IN_FLIGHT: Duration = Duration::from_secs(2);
/// The restarted engine resumes two candles before the newest stored one and catches
/// up from there, so it makes again every signal the killed process had in memory: the
/// proof requires them all. (False would make that window optional.)
const RESTART_REMAKES_SIGNALS: bool = true;
/// Most differences listed in a failure message.
const MAX_LISTED: usize = 12;

/// Signal parameters short enough that rules fire within a scenario's few dozen
/// candles (the defaults need 35 candles before the MACD signal line is warm). The
/// engine gets them through its TOML; the reference engine uses the same values.
pub fn signals_config() -> SignalsConfig {
    SignalsConfig {
        // Covers the market's whole history: the simulated market opens when the
        // simulator starts, and REST has no candles before that.
        warm_candles: MAX_WARM_CANDLES,
        defaults: SignalParams {
            ema_fast: 3,
            ema_slow: 7,
            rsi_period: 5,
            rsi_oversold: 40.0,
            rsi_overbought: 60.0,
            macd_fast: 3,
            macd_slow: 7,
            macd_signal: 3,
            bollinger_period: 6,
            bollinger_k: 1.5,
            atr_period: 5,
            volume_period: 6,
            volume_spike_k: 1.5,
            ..SignalParams::default()
        },
        ..SignalsConfig::default()
    }
}

/// The simulator of every scenario before its fault: pings every second (a healthy
/// connection is never silent for the engine's short watchdog), pong check on.
pub fn sim_config() -> SimConfig {
    SimConfig {
        speed: SPEED,
        ping_interval: Duration::from_secs(1),
        ..support::sim_config(&SYMBOLS)
    }
}

/// Engine settings (TOML) for fast recovery in tests; scenarios override single keys.
fn base_toml() -> BTreeMap<&'static str, BTreeMap<&'static str, String>> {
    let mut t: BTreeMap<&'static str, BTreeMap<&'static str, String>> = BTreeMap::new();
    let mut set = |table, key, value: &str| {
        t.entry(table).or_default().insert(key, value.to_string());
    };
    set("feed", "silence_timeout_s", "1.5");
    set("feed", "backoff_initial_ms", "50");
    set("feed", "backoff_max_ms", "500");
    set("feed", "backoff_stable_s", "1.0");
    set("engine", "pin_cores", "false");
    set("database", "retry_initial_ms", "50");
    set("database", "retry_max_ms", "500");
    t
}

/// One engine setting a scenario changes: (table, key, TOML value).
pub type Setting = (&'static str, &'static str, &'static str);

/// The engine process of one run (a scenario that kills it starts another).
struct EngineProcess {
    child: ChildGuard,
    addr: SocketAddr,
}

/// A signal as compared: everything but `event_time`.
#[derive(Clone, Debug)]
struct SignalRow {
    direction: String,
    confidence: f64,
    price: String,
    indicators: serde_json::Map<String, Value>,
}

/// A candle as compared: everything but `event_time`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CandleRow {
    close_time: i64,
    /// open, high, low, close, volume, quote_volume, taker_buy_base, taker_buy_quote,
    /// each normalised ([`norm`]).
    values: [String; 8],
    trades: i64,
}

/// One scenario's world. Field order is drop order: the engine stops first, the
/// servers after it, the serialisation guard is released last.
pub struct Rig {
    engine: Option<EngineProcess>,
    /// A small filesystem mounted at the spool directory (after the engine in drop
    /// order: it is unmounted once the engine has stopped).
    spool_disk: Option<SmallDisk>,
    pub sim: SimHandle,
    pub redis: RedisServer,
    pub pg: Postgres,
    name: &'static str,
    dir: PathBuf,
    toml: PathBuf,
    signals: SignalsConfig,
    /// Stderr files of every engine process of the run.
    stderr: Vec<PathBuf>,
    started: Instant,
    /// Simulated ms when the first engine reported ready: the candle check starts at
    /// the first candle that opened after it.
    ready_sim_ms: i64,
    /// Simulated ms when the first engine's warm start was applied: the signal check
    /// starts after the candle in progress then.
    warm_sim_ms: i64,
    /// Spans of candle close times (ms) whose signals may be missing (a SIGKILL and
    /// the restart after it).
    optional_signals: Vec<(i64, i64)>,
    killed_at_sim_ms: Option<i64>,
    /// SIGKILLs restarted from so far: the trades of each kill are received by no
    /// engine's stream, and fetched back (see [`Rig::prove_trades`]).
    kills: usize,
    /// Simulated ms of the latest [`Rig::prove`]'s check: its windows end there.
    checked_sim_ms: Option<i64>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

fn iv_ms(tf: Interval) -> i64 {
    tf.next_open(0)
}

impl Rig {
    /// Starts PostgreSQL (migrated), redis-server, the simulator and the engine; returns
    /// once the engine is ready and its warm start is applied.
    pub fn start(name: &'static str, sim: SimConfig, settings: &[Setting]) -> Rig {
        Rig::start_on(name, sim, settings, None)
    }

    /// [`Rig::start`] with the spool directory on a filesystem of its own of
    /// `spool_bytes` (a tmpfs), so a scenario can fill it ([`Rig::fill_spool_disk`]) and
    /// free it ([`Rig::free_spool_disk`]).
    pub fn start_with_small_spool(
        name: &'static str,
        sim: SimConfig,
        settings: &[Setting],
        spool_bytes: u64,
    ) -> Rig {
        Rig::start_on(name, sim, settings, Some(spool_bytes))
    }

    fn start_on(
        name: &'static str,
        sim: SimConfig,
        settings: &[Setting],
        spool_bytes: Option<u64>,
    ) -> Rig {
        let serial = support::serial();
        let started = Instant::now();
        println!("[{name}] starting");
        let dir =
            std::env::temp_dir().join(format!("alphapulse-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("rig temp dir");
        let spool_disk = spool_bytes.map(|bytes| {
            SmallDisk::mount(&dir.join("spool"), bytes)
                .unwrap_or_else(|e| panic!("[{name}] a {bytes}-byte tmpfs for the spool: {e}"))
        });
        let sim = simulator::start(sim).expect("simulator starts");
        let market_open_ms = sim.sim_now_ms();
        let pg = Postgres::start_new();
        let db_config = alphapulse::config::Config {
            database_url: Some(pg.url()),
            ..Default::default()
        };
        migrate_now(&DbSettings::from_config(&db_config).expect("db settings")).expect("migrate");
        let redis = RedisServer::start();
        // The engine starts once every series has a closed candle, as on an exchange with
        // history: its warm start then has candles to join the live stream to. (A warm
        // batch fetched before the market's first close would be empty, and a candle
        // closing before the stream is subscribed would then be missing from the
        // indicators, unlike in the reference.)
        let longest = TIMEFRAMES
            .into_iter()
            .max_by_key(|t| iv_ms(*t))
            .unwrap_or(Interval::M1);
        let first_close = longest.open_time(market_open_ms) + iv_ms(longest);
        let deadline = Instant::now() + candles(2, longest);
        while sim.sim_now_ms() < first_close && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let signals = signals_config();
        let mut tables = base_toml();
        for (table, key, value) in settings {
            tables
                .entry(table)
                .or_default()
                .insert(key, value.to_string());
        }
        let mut text = String::new();
        // The root table ("") sorts first, so its keys come before any header.
        for (table, keys) in &tables {
            if !table.is_empty() {
                text.push_str(&format!("[{table}]\n"));
            }
            for (k, v) in keys {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text.push_str(&alphapulse::config::signals::to_toml(&signals));
        let toml = dir.join("engine.toml");
        std::fs::write(&toml, text).expect("write engine.toml");
        let mut rig = Rig {
            engine: None,
            spool_disk,
            sim,
            redis,
            pg,
            name,
            dir,
            toml,
            signals,
            stderr: Vec::new(),
            started,
            ready_sim_ms: 0,
            warm_sim_ms: 0,
            optional_signals: Vec::new(),
            killed_at_sim_ms: None,
            kills: 0,
            checked_sim_ms: None,
            _serial: serial,
        };
        rig.spawn_engine();
        rig.ready_sim_ms = rig.wait_ready();
        rig.warm_sim_ms = rig.wait_warm();
        println!(
            "[{name}] engine ready and warm after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        rig
    }

    fn spawn_engine(&mut self) {
        let addr = free_addr();
        let stderr_path = self
            .dir
            .join(format!("engine-{}.stderr", self.stderr.len()));
        let stderr = File::create(&stderr_path).expect("engine stderr file");
        let symbols = SYMBOLS.join(",");
        let timeframes: Vec<&str> = TIMEFRAMES.iter().map(|t| t.as_str()).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_alphapulse"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ALPHAPULSE_LOG", "info")
            .env("ALPHAPULSE_PIN_CORES", "false")
            .env("DATABASE_URL", self.pg.url())
            .env("DATABASE_SPOOL_DIR", self.dir.join("spool"))
            .env("REDIS_URL", self.redis.url())
            .env("BINANCE_WS_URL", self.sim.ws_url())
            .envs(support::clock_env(&self.sim))
            .env("BINANCE_REST_URL", self.sim.rest_url())
            .env("SYMBOLS", symbols)
            .env("TIMEFRAMES", timeframes.join(","))
            .env("DASHBOARD_ADDR", addr.to_string())
            .env("BATCH_TIMEOUT", "0.05")
            .current_dir(&self.dir)
            .arg("run")
            .arg("-c")
            .arg(&self.toml)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn alphapulse run");
        self.stderr.push(stderr_path);
        self.engine = Some(EngineProcess {
            child: ChildGuard(child),
            addr,
        });
    }

    /// The engine's spool directory (the dead-letter file is in it).
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Fills the spool's small filesystem ([`Rig::start_with_small_spool`]) up to
    /// `leave` bytes free; returns the bytes the filler took.
    pub fn fill_spool_disk(&self, leave: u64) -> u64 {
        let disk = self
            .spool_disk
            .as_ref()
            .expect("started with a small spool");
        disk.fill(leave)
            .unwrap_or_else(|e| panic!("[{}] filling the spool's disk: {e}", self.name))
    }

    /// Frees what [`Rig::fill_spool_disk`] took.
    pub fn free_spool_disk(&self) {
        let disk = self
            .spool_disk
            .as_ref()
            .expect("started with a small spool");
        disk.free()
            .unwrap_or_else(|e| panic!("[{}] freeing the spool's disk: {e}", self.name));
    }

    /// The running engine's dashboard address.
    pub fn addr(&self) -> SocketAddr {
        self.engine.as_ref().expect("an engine runs").addr
    }

    /// `/api/status`, or `None` while the engine does not answer.
    pub fn status(&self) -> Option<Value> {
        let (code, body) = support::http_get(self.addr(), "/api/status");
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// A shard counter of `/api/status` summed over the shards (0 while the engine does
    /// not answer), e.g. "reconnects".
    /// Closed candles the REST backfill fetched for gaps and catch-up (not warm history).
    pub fn backfilled_candles(&self) -> u64 {
        self.status().map_or(0, |s| {
            s["completeness"]["backfill"]["backfill_candles"]
                .as_u64()
                .unwrap_or(0)
        })
    }

    pub fn shard_total(&self, key: &str) -> u64 {
        self.status().map_or(0, |s| {
            s["shards"].as_array().map_or(0, |shards| {
                shards.iter().map(|x| x[key].as_u64().unwrap_or(0)).sum()
            })
        })
    }

    /// Polls `/api/status` until `cond` holds on it (bounded); returns whether it held.
    pub fn wait_status(&self, timeout: Duration, mut cond: impl FnMut(&Value) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status().is_some_and(|s| cond(&s)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Panics (with the engine's stderr) unless the engine process is running.
    pub fn assert_alive(&mut self) {
        let name = self.name;
        let engine = self.engine.as_mut().expect("an engine runs");
        if let Ok(Some(exit)) = engine.child.0.try_wait() {
            panic!(
                "[{name}] the engine exited ({exit}); stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    fn stderr_tail(&self) -> String {
        let Some(path) = self.stderr.last() else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits for `/readyz`; returns the simulated time then.
    fn wait_ready(&mut self) -> i64 {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.assert_alive();
            if support::http_get(self.addr(), "/readyz").0 == 200 {
                return self.sim.sim_now_ms();
            }
            assert!(
                Instant::now() < deadline,
                "[{}] the engine is not ready after {READY_TIMEOUT:?}; stderr:\n{}",
                self.name,
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every series' warm batch is applied on its shard (and every re-fetch
    /// of a hole between history and live candles too); returns the simulated time then.
    fn wait_warm(&mut self) -> i64 {
        let series = (SYMBOLS.len() * TIMEFRAMES.len()) as u64;
        let deadline = Instant::now() + WARM_TIMEOUT;
        loop {
            self.assert_alive();
            if let Some(s) = self.status() {
                let sum = |key: &str| -> u64 {
                    s["shards"]
                        .as_array()
                        .map(|shards| {
                            shards
                                .iter()
                                .map(|sh| sh["signals"][key].as_u64().unwrap_or(0))
                                .sum()
                        })
                        .unwrap_or(0)
                };
                let pending = s["signals"]["warm"]["pending"].as_u64().unwrap_or(0);
                if pending == 0 && sum("warm_series") >= series + sum("warm_holes") {
                    return self.sim.sim_now_ms();
                }
            }
            assert!(
                Instant::now() < deadline,
                "[{}] warm start not applied after {WARM_TIMEOUT:?}: {}",
                self.name,
                self.status()
                    .map_or("no status".into(), |s| s["signals"].to_string())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets the run go on for `d`, checking every half second that the engine lives
    /// and its dashboard answers (a stalled engine fails here, not only at the end).
    pub fn run_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.assert_alive();
            std::thread::sleep(Duration::from_millis(500).min(deadline - Instant::now()));
        }
        self.assert_alive();
        let asked = Instant::now();
        let (code, body) = support::http_get(self.addr(), "/api/status");
        let parsed = serde_json::from_str::<Value>(&body).is_ok();
        assert!(
            code == 200 && parsed,
            "[{}] the engine's dashboard does not answer /api/status: HTTP {code} after {:.1} s, {} bytes{}",
            self.name,
            asked.elapsed().as_secs_f64(),
            body.len(),
            if parsed { "" } else { ", not JSON" }
        );
    }

    /// SIGKILLs the engine (no goodbye: rings and unwritten batches are lost).
    pub fn kill_engine(&mut self) {
        let mut engine = self.engine.take().expect("an engine runs");
        self.killed_at_sim_ms = Some(self.sim.sim_now_ms());
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(engine.child.0.id() as i32, libc::SIGKILL) };
        let _ = engine.child.0.wait();
        println!("[{}] engine killed (SIGKILL)", self.name);
        // Keep the guard's pid reaped; the address stays known for nothing else.
        drop(engine);
    }

    /// Starts a new engine process on the same database, Redis and spool; returns once
    /// it is ready and warm. Signals of candles closing between shortly before the kill
    /// and the new warm start become optional (see [`KILL_IN_FLIGHT`]).
    pub fn restart_engine(&mut self) {
        assert!(self.engine.is_none(), "kill_engine first");
        self.spawn_engine();
        self.wait_ready();
        let warm = self.wait_warm();
        let killed = self.killed_at_sim_ms.take().expect("killed before");
        self.kills += 1;
        if !RESTART_REMAKES_SIGNALS {
            let from = killed - (KILL_IN_FLIGHT.as_secs_f64() * SPEED * 1000.0) as i64;
            // Up to the close of the candle in progress at the new warm start, of the
            // longest timeframe.
            let longest = TIMEFRAMES.iter().map(|t| iv_ms(*t)).max().unwrap_or(60_000);
            self.optional_signals.push((from, warm + 2 * longest));
        }
        println!("[{}] engine restarted, ready and warm", self.name);
    }

    /// A dashboard client that subscribes to every candle, then never reads again; its
    /// tiny receive buffer fills at once. Dropping it closes the socket.
    pub fn slow_client(&self) -> SlowClient {
        use tungstenite::client::IntoClientRequest;
        let stream = TcpStream::connect(self.addr()).expect("connect to the dashboard");
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt on a socket we own, with a correctly sized value.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &small as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let req = format!("ws://{}/ws", self.addr())
            .into_client_request()
            .expect("request");
        let (mut ws, _) =
            tungstenite::client(req, tungstenite::stream::MaybeTlsStream::Plain(stream))
                .expect("WebSocket upgrade");
        ws.send(tungstenite::Message::text(
            r#"{"type":"subscribe","subscription":"candles"}"#,
        ))
        .expect("send subscribe");
        // One read for the acknowledgement, so the subscription is in place; then never.
        let _ = ws.read();
        SlowClient { _ws: ws }
    }

    /// The proof every scenario ends with (see the module comment).
    pub fn prove(&mut self) {
        let name = self.name;
        self.assert_alive();
        self.check_completeness();
        let check_sim_ms = self.sim.sim_now_ms();
        let deadline = Instant::now() + MATCH_TIMEOUT;
        let mut client = self.pg.client();
        let (candles, signals) = loop {
            let result = self.check_store(&mut client, check_sim_ms);
            match result {
                Ok(counts) => break counts,
                Err(why) if Instant::now() >= deadline => {
                    self.report("FAIL", None);
                    panic!("[{name}] the database does not match the simulator:\n{why}")
                }
                Err(_) => std::thread::sleep(POLL),
            }
        };
        self.checked_sim_ms = Some(check_sim_ms);
        self.assert_alive();
        self.assert_no_panic();
        self.report("PASS", Some((candles, signals)));
    }

    /// The trade proof, after [`Rig::prove`] (whose candles it leans on), for a run
    /// with `[feed.streams] trade` and `agg_trade` on; returns (minutes, trades,
    /// aggregate trades) compared. Per symbol, retried like the candle proof:
    /// - every 1m candle from the first whole minute the engine received trades in to
    ///   the latest the proof checked is made exactly of the stored trades: their count,
    ///   volume, quote volume (sum of price × quantity) and taker buy volume equal the
    ///   simulator's REST kline's, as exact decimals; and of the stored aggregate trades
    ///   the same way (their trade id ranges counted);
    /// - trade ids and aggregate trade ids are contiguous, and each aggregate trade
    ///   starts at the trade after the previous one's last;
    /// - nothing is stored twice (a double would change a count or a sum).
    ///
    /// What a SIGKILL loses by design: trades in the killed process's rings and
    /// unwritten batch, and those made while no engine ran. Both kinds get them back:
    /// the restart fetches every one after the newest stored over REST (`aggTrades`,
    /// `historicalTrades`), and the holes among the stored ids (a backfill the kill cut
    /// short), and a hole in the stream's ids is fetched too. So both are compared in
    /// every minute, and neither may have a hole at all.
    pub fn prove_trades(&mut self) -> (usize, usize, usize) {
        let name = self.name;
        let at = self.checked_sim_ms.expect("prove() ran first");
        let deadline = Instant::now() + MATCH_TIMEOUT;
        let mut client = self.pg.client();
        loop {
            match self.check_trades(&mut client, at) {
                Ok(counts) => {
                    println!(
                        "[{name}] trades PASS: {} minutes, {} trades and {} aggregate trades match the simulator's klines, ids contiguous across {} SIGKILL(s)",
                        counts.0, counts.1, counts.2, self.kills
                    );
                    return counts;
                }
                Err(why) if Instant::now() >= deadline => {
                    self.report("FAIL", None);
                    panic!("[{name}] the stored trades do not match the simulator:\n{why}")
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// [`Rig::prove_trades`] once more, without waiting (the tampering test).
    pub fn recheck_trades(&self) -> Result<(usize, usize, usize), String> {
        let at = self.checked_sim_ms.expect("prove() ran");
        self.check_trades(&mut self.pg.client(), at)
    }

    fn check_trades(
        &self,
        client: &mut postgres::Client,
        at: i64,
    ) -> Result<(usize, usize, usize), String> {
        let tf = Interval::M1;
        let last = tf.open_time(at) - iv_ms(tf);
        let mut problems = Vec::new();
        let (mut minutes, mut trades, mut aggs) = (0, 0, 0);
        for symbol in SYMBOLS {
            let ids = trade_ids(client, symbol, "trades", "trade_id")?;
            let agg_ids = trade_ids(client, symbol, "agg_trades", "agg_trade_id")?;
            let (Some(first), Some(first_agg)) = (ids.first(), agg_ids.first()) else {
                problems.push(format!("{symbol}: no trades or no aggregate trades stored"));
                continue;
            };
            // The first whole minute after the first trade received.
            let from = tf.open_time(first.1.min(first_agg.1)) + iv_ms(tf);
            if last < from {
                problems.push(format!("{symbol}: no whole minute of trades yet"));
                continue;
            }
            // No hole in either kind of ids: the restart's catch-up, the holes it finds
            // stored and the gap backfill fetch every one.
            for (table, list) in [("trades", &ids), ("agg_trades", &agg_ids)] {
                let holes: Vec<_> = list
                    .windows(2)
                    .filter(|w| w[1].0 != w[0].0 + 1)
                    .map(|w| (w[0], w[1]))
                    .collect();
                if !holes.is_empty() {
                    problems.push(format!(
                        "{symbol} {table}: ids not contiguous ((id, time) before and after each hole): {:?}",
                        &holes[..holes.len().min(MAX_LISTED)]
                    ));
                }
            }
            let chain = client
                .query(
                    "SELECT agg_trade_id, first_trade_id, last_trade_id FROM agg_trades                      WHERE symbol = $1 ORDER BY agg_trade_id",
                    &[&symbol],
                )
                .map_err(|e| e.to_string())?;
            let broken: Vec<i64> = chain
                .windows(2)
                .filter(|w| {
                    w[1].get::<_, i64>(0) == w[0].get::<_, i64>(0) + 1
                        && w[1].get::<_, i64>(1) != w[0].get::<_, i64>(2) + 1
                })
                .map(|w| w[1].get(0))
                .collect();
            if !broken.is_empty() {
                problems.push(format!(
                    "{symbol}: aggregate trades not starting after the previous one's last trade: {:?}",
                    &broken[..broken.len().min(MAX_LISTED)]
                ));
            }
            let klines = rest_klines(&self.sim.rest_url(), symbol, tf, last)?;
            let mut per_minute = |table: &str,
                                  count: &str|
             -> Result<BTreeMap<i64, CandleRow>, String> {
                let rows = client
                    .query(
                        &format!(
                            "SELECT (floor(extract(epoch from trade_time) * 1000 / 60000) * 60000)::int8 AS open,                                     {count}::int8, sum(quantity)::text, sum(price * quantity)::text,                                     coalesce(sum(quantity) FILTER (WHERE NOT buyer_is_maker), 0)::text                              FROM {table} WHERE symbol = $1 GROUP BY 1"
                        ),
                        &[&symbol],
                    )
                    .map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let s = |i: usize| norm(r.get::<_, &str>(i));
                        let mut values: [String; 8] = Default::default();
                        values[4] = s(2);
                        values[5] = s(3);
                        values[6] = s(4);
                        (
                            r.get(0),
                            CandleRow {
                                close_time: 0,
                                values,
                                trades: r.get(1),
                            },
                        )
                    })
                    .collect())
            };
            let stored = per_minute("trades", "count(*)")?;
            let stored_aggs = per_minute("agg_trades", "sum(last_trade_id - first_trade_id + 1)")?;
            let empty = CandleRow {
                close_time: 0,
                values: Default::default(),
                trades: 0,
            };
            let mut wrong = Vec::new();
            for k in klines
                .iter()
                .filter(|k| (from..=last).contains(&k.open_time))
            {
                let want = (k.row.trades, &k.row.values[4..7]);
                for (table, got) in [("trades", &stored), ("agg_trades", &stored_aggs)] {
                    let row = got.get(&k.open_time).unwrap_or(&empty);
                    let have = (row.trades, &row.values[4..7]);
                    let zero = want.0 == 0 && row.trades == 0;
                    if have != want && !zero {
                        wrong.push(format!(
                            "{table} of the minute at {}: (trades, volume, quote volume, taker buy) {:?}, kline {:?}",
                            k.open_time, have, want
                        ));
                    }
                }
                minutes += 1;
                trades += k.row.trades as usize;
            }
            aggs += agg_ids.len();
            if !wrong.is_empty() {
                problems.push(format!(
                    "{symbol}: {} minutes differ: {}",
                    wrong.len(),
                    wrong[..wrong.len().min(MAX_LISTED)].join("; ")
                ));
            }
        }
        if problems.is_empty() && (minutes == 0 || trades == 0) {
            problems.push("no minute of trades was compared".into());
        }
        if problems.is_empty() {
            Ok((minutes, trades, aggs))
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Steps 2 and 3 once more over the windows the latest [`Rig::prove`] checked,
    /// without waiting: for the test that the proof notices a tampered database.
    pub fn recheck_store(&self) -> Result<(usize, usize), String> {
        let at = self.checked_sim_ms.expect("prove() ran");
        self.check_store(&mut self.pg.client(), at)
    }

    /// The open times `[first, last]` of the candles the latest proof compared for `tf`.
    pub fn candle_window(&self, tf: Interval) -> (i64, i64) {
        self.windows(tf, self.checked_sim_ms.expect("prove() ran"))
            .0
    }

    /// The timestamps `(from, to]` of the signals the latest proof compared for `tf`.
    pub fn signal_window(&self, tf: Interval) -> (i64, i64) {
        self.windows(tf, self.checked_sim_ms.expect("prove() ran"))
            .1
    }

    /// The windows a check at simulated time `at` compares for `tf`: candles from the
    /// first that opened after the engine was ready to the latest closed at `at`, and
    /// signals of candles from the one in progress when the warm start was applied to
    /// the same latest one.
    fn windows(&self, tf: Interval, at: i64) -> ((i64, i64), (i64, i64)) {
        let iv = iv_ms(tf);
        let first = tf.open_time(self.ready_sim_ms) + iv;
        let last = tf.open_time(at) - iv;
        let signals_from = tf.open_time(self.warm_sim_ms) + iv;
        ((first, last), (signals_from, last + iv - 1))
    }

    /// Step 1: `/api/status` reports 100% completeness.
    fn check_completeness(&mut self) {
        let name = self.name;
        let deadline = Instant::now() + COMPLETENESS_TIMEOUT;
        let mut last = Value::Null;
        loop {
            self.assert_alive();
            if let Some(s) = self.status() {
                let c = &s["completeness"];
                if c.is_null() && !COMPLETENESS_STATUS_REQUIRED {
                    println!(
                        "[{name}] note: /api/status has no `completeness` yet: step 1 not checked \
                         (COMPLETENESS_STATUS_REQUIRED is false)"
                    );
                    return;
                }
                if complete(c) {
                    return;
                }
                last = c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "[{name}] completeness did not reach 100% within {COMPLETENESS_TIMEOUT:?}: {last}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Steps 2 and 3 for every series; returns (candles compared, signals compared).
    fn check_store(
        &self,
        client: &mut postgres::Client,
        check_sim_ms: i64,
    ) -> Result<(usize, usize), String> {
        let mut problems = Vec::new();
        let (mut candles, mut signals, mut required_signals) = (0, 0, 0);
        for symbol in SYMBOLS {
            for tf in TIMEFRAMES {
                let ((first, last), signal_span) = self.windows(tf, check_sim_ms);
                if last < first {
                    continue;
                }
                let klines = match rest_klines(&self.sim.rest_url(), symbol, tf, last) {
                    Ok(k) => k,
                    Err(e) => {
                        problems.push(format!("{symbol} {tf}: {e}"));
                        continue;
                    }
                };
                match compare_candles(client, symbol, tf, &klines, first, last) {
                    Ok(n) => candles += n,
                    Err(e) => problems.push(format!("{symbol} {tf} candles: {e}")),
                }
                let params = self.signals.params(tf);
                match compare_signals(
                    client,
                    symbol,
                    tf,
                    &klines,
                    &params,
                    signal_span,
                    &self.optional_signals,
                ) {
                    Ok((n, required)) => {
                        signals += n;
                        required_signals += required;
                    }
                    Err(e) => problems.push(format!("{symbol} {tf} signals: {e}")),
                }
            }
        }
        if problems.is_empty() && candles == 0 {
            problems.push("no candle closed in the checked window".into());
        }
        if problems.is_empty() && required_signals == 0 {
            problems.push(
                "the reference made no signal in the checked window: nothing was compared".into(),
            );
        }
        if problems.is_empty() {
            Ok((candles, signals))
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Step 4: no engine process of the run panicked.
    fn assert_no_panic(&self) {
        for path in &self.stderr {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            assert!(
                !text.contains("panicked"),
                "[{}] the engine panicked ({}):\n{text}",
                self.name,
                path.display()
            );
        }
    }

    /// Prints what happened in the run, from the engine's status.
    fn report(&self, verdict: &str, matched: Option<(usize, usize)>) {
        let Some(s) = self.status() else {
            return;
        };
        let shards = s["shards"].as_array().cloned().unwrap_or_default();
        let sum = |key: &str| -> u64 { shards.iter().map(|x| x[key].as_u64().unwrap_or(0)).sum() };
        let signal_sum = |key: &str| -> u64 {
            shards
                .iter()
                .map(|x| x["signals"][key].as_u64().unwrap_or(0))
                .sum()
        };
        let mut line = format!(
            "[{}] {verdict} in {:.1} s{}; \
             this engine: reconnects={} rotations={} server_shutdowns={} silent_drops={} \
             gaps={} gap_candles={} duplicates={} stale={} signal warm_series={} warm_holes={} \
             rewarms={}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            matched.map_or(String::new(), |(c, s)| format!(
                ": {c} candles and {s} signals match"
            )),
            sum("reconnects"),
            sum("rotations"),
            sum("server_shutdowns"),
            sum("silent_drops"),
            sum("gaps"),
            sum("gap_candles"),
            sum("duplicates"),
            sum("stale"),
            signal_sum("warm_series"),
            signal_sum("warm_holes"),
            signal_sum("rewarms"),
        );
        let series = s["completeness"]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !series.is_empty() {
            let total =
                |key: &str| -> u64 { series.iter().map(|x| x[key].as_u64().unwrap_or(0)).sum() };
            line.push_str(&format!(
                "; completeness: gaps_filled={} candles_backfilled={} confirmed_absent={}",
                total("gaps_filled"),
                total("candles_backfilled"),
                total("confirmed_absent"),
            ));
        }
        let db = &s["sinks"]["database"];
        let redis = &s["sinks"]["redis"];
        line.push_str(&format!(
            "; database connected={} spool rows={} replayed={}; redis connected={} reconnects={}; \
             dashboard conflated={} disconnected_slow={}; sim {:?}",
            db["connected"],
            s["sinks"]["spool"]["rows"],
            s["sinks"]["spool"]["replayed_rows"],
            redis["connected"],
            redis["reconnects"],
            s["dashboard"]["dropped"],
            s["dashboard"]["disconnected_slow"],
            self.sim.stats(),
        ));
        println!("{line}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Stop the engine before the servers it talks to (the fields drop after this).
        self.engine = None;
        // Then the spool's own filesystem, if it has one, so its mount point can go.
        self.spool_disk = None;
        if std::thread::panicking() {
            eprintln!(
                "[{}] kept the engine's files (configuration, stderr) in {}",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A dashboard client that stopped reading.
pub struct SlowClient {
    _ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
}

/// Whether a `completeness` object reports every series complete: the ratio is 1 and
/// no series has a missing candle or an open gap.
fn complete(c: &Value) -> bool {
    let Some(series) = c["series"].as_array() else {
        return false;
    };
    let configured: BTreeSet<(String, String)> = SYMBOLS
        .iter()
        .flat_map(|s| TIMEFRAMES.iter().map(|t| (s.to_string(), t.to_string())))
        .collect();
    let reported: BTreeSet<(String, String)> = series
        .iter()
        .map(|x| {
            (
                x["symbol"].as_str().unwrap_or("").to_string(),
                x["timeframe"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    c["ratio"].as_f64() == Some(1.0)
        && configured.is_subset(&reported)
        && series
            .iter()
            .all(|x| x["missing"].as_u64() == Some(0) && x["open_gaps"].as_u64() == Some(0))
}

/// A decimal string without insignificant zeros: "1.5000" → "1.5", "2.000" → "2",
/// "0.0" → "0". The database's `numeric::text` keeps the scale it was given, the
/// exchange's strings have a fixed scale; equal numbers must compare equal.
pub fn norm(s: &str) -> String {
    let s = s.trim();
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if body == "0" {
        body
    } else {
        format!("{sign}{body}")
    }
}

/// One REST kline: `[open_time, open, high, low, close, volume, close_time,
/// quote_volume, trades, taker_buy_base, taker_buy_quote, ignore]`.
/// A tmpfs of a fixed size mounted at a directory, unmounted on drop: a disk that a
/// scenario can fill and free. Mounting needs root (or `sudo` without a password).
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    const FILLER: &'static str = "filler.bin";

    pub fn mount(path: &std::path::Path, bytes: u64) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let options = format!("size={bytes},mode=0700");
        let args = [
            "-t",
            "tmpfs",
            "-o",
            options.as_str(),
            "alphapulse-test-spool",
        ];
        privileged("mount", &args, path)?;
        Ok(SmallDisk {
            path: path.to_owned(),
        })
    }

    /// Writes a filler file until the filesystem refuses (ENOSPC), then gives `leave`
    /// bytes back. Returns the filler's size.
    fn fill(&self, leave: u64) -> Result<u64, String> {
        use std::io::Write;
        let path = self.path.join(Self::FILLER);
        let mut file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        /// Bounded: the disk is small; this much written would mean it is not.
        const MOST: u64 = 1 << 30;
        let chunk = vec![0xA5u8; 4096];
        let mut written = 0u64;
        while written < MOST {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        if written >= MOST {
            return Err(format!("the disk took {MOST} bytes without filling"));
        }
        let keep = written.saturating_sub(leave);
        file.set_len(keep)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(keep)
    }

    fn free(&self) -> Result<(), String> {
        let path = self.path.join(Self::FILLER);
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: files the engine may still hold open do not keep it mounted.
        if let Err(e) = privileged("umount", &["-l"], &self.path) {
            eprintln!("unmounting {}: {e}", self.path.display());
        }
    }
}

/// Runs `program args path` as we are, or through `sudo -n` when we are not root.
fn privileged(program: &str, args: &[&str], path: &std::path::Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(program);
        c
    };
    let out = command
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} {} failed ({}): {}{}",
            args.join(" "),
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if root {
                ""
            } else {
                " (this scenario needs root, or sudo without a password, to mount a tmpfs)"
            }
        ))
    }
}

#[derive(Clone, Debug)]
struct Kline {
    open_time: i64,
    row: CandleRow,
    /// The exact strings, for the reference signal engine.
    ohlcv: [String; 5],
}

/// Every closed kline of a series from the market's first up to the one opening at
/// `last_open` (the simulator keeps them all), read in pages of 1000 as a client of
/// Binance reads a long history: each page starts after the previous page's last open.
fn rest_klines(
    rest: &str,
    symbol: &str,
    tf: Interval,
    last_open: i64,
) -> Result<Vec<Kline>, String> {
    /// Binance's (and the simulator's) most rows per call.
    const PAGE: usize = 1000;
    /// A bound on the pages of one series: far more than any scenario's history.
    const MAX_PAGES: usize = 100;
    let mut out: Vec<Kline> = Vec::new();
    let mut start = 0i64;
    for _ in 0..MAX_PAGES {
        let url = format!(
            "{rest}/api/v3/klines?symbol={symbol}&interval={tf}&startTime={start}&endTime={last_open}&limit={PAGE}"
        );
        let body = ureq::get(&url)
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let rows: Vec<Vec<Value>> =
            serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}: {body}"))?;
        let full = rows.len() >= PAGE;
        for r in rows {
            out.push(kline_row(&r)?);
        }
        match out.last() {
            Some(k) if full && k.open_time < last_open => start = k.open_time + 1,
            _ => break,
        }
    }
    // The window ends at a candle that had closed when the check began: the answer
    // holds no candle still open.
    if out.last().map(|k| k.open_time) != Some(last_open) {
        return Err(format!(
            "REST answered up to {:?}, asked up to {last_open}",
            out.last().map(|k| k.open_time)
        ));
    }
    if out
        .windows(2)
        .any(|w| w[1].open_time != tf.next_open(w[0].open_time))
    {
        return Err("REST klines are not contiguous".into());
    }
    Ok(out)
}

/// One row of a REST klines answer (Binance's array of twelve fields).
fn kline_row(r: &[Value]) -> Result<Kline, String> {
    let text = |i: usize| -> Result<String, String> {
        r.get(i)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("kline field {i} is not a string: {r:?}"))
    };
    let int = |i: usize| -> Result<i64, String> {
        r.get(i)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("kline field {i} is not an integer: {r:?}"))
    };
    let ohlcv = [text(1)?, text(2)?, text(3)?, text(4)?, text(5)?];
    Ok(Kline {
        open_time: int(0)?,
        row: CandleRow {
            close_time: int(6)?,
            values: [
                norm(&ohlcv[0]),
                norm(&ohlcv[1]),
                norm(&ohlcv[2]),
                norm(&ohlcv[3]),
                norm(&ohlcv[4]),
                norm(&text(7)?),
                norm(&text(9)?),
                norm(&text(10)?),
            ],
            trades: int(8)?,
        },
        ohlcv,
    })
}

/// The (id, trade time ms) of every stored row of `table` for `symbol`, by id.
fn trade_ids(
    client: &mut postgres::Client,
    symbol: &str,
    table: &str,
    id: &str,
) -> Result<Vec<(i64, i64)>, String> {
    let rows = client
        .query(
            &format!(
                "SELECT {id}, (extract(epoch from trade_time) * 1000)::int8 FROM {table} \
                 WHERE symbol = $1 ORDER BY {id}"
            ),
            &[&symbol],
        )
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

const EPOCH_PLUS_MS: &str = "('epoch'::timestamptz + $MS::int8 * interval '1 millisecond')";

fn at(param: usize) -> String {
    EPOCH_PLUS_MS.replace("$MS", &format!("${param}"))
}

/// Step 2 for one series: the stored candles with open times in `[first, last]` are
/// exactly the REST klines there, once each, equal field by field.
fn compare_candles(
    client: &mut postgres::Client,
    symbol: &str,
    tf: Interval,
    klines: &[Kline],
    first: i64,
    last: i64,
) -> Result<usize, String> {
    let tf_name = tf.as_str();
    let doubles = client
        .query(
            &format!(
                "SELECT (extract(epoch from open_time) * 1000)::int8, count(*) FROM candles \
                 WHERE symbol = $1 AND timeframe = $2 AND open_time BETWEEN {} AND {} \
                 GROUP BY open_time HAVING count(*) > 1",
                at(3),
                at(4)
            ),
            &[&symbol, &tf_name, &first, &last],
        )
        .map_err(|e| e.to_string())?;
    if !doubles.is_empty() {
        let list: Vec<(i64, i64)> = doubles.iter().map(|r| (r.get(0), r.get(1))).collect();
        return Err(format!(
            "candles stored more than once (open, count): {list:?}"
        ));
    }
    let rows = client
        .query(
            &format!(
                "SELECT (extract(epoch from open_time) * 1000)::int8, \
                        (extract(epoch from close_time) * 1000)::int8, \
                        open::text, high::text, low::text, close::text, volume::text, \
                        quote_volume::text, taker_buy_base::text, taker_buy_quote::text, \
                        trades, closed \
                 FROM candles WHERE symbol = $1 AND timeframe = $2 \
                   AND open_time BETWEEN {} AND {} ORDER BY open_time",
                at(3),
                at(4)
            ),
            &[&symbol, &tf_name, &first, &last],
        )
        .map_err(|e| e.to_string())?;
    let mut got: BTreeMap<i64, CandleRow> = BTreeMap::new();
    let mut open_rows = Vec::new();
    for r in &rows {
        let open: i64 = r.get(0);
        if !r.get::<_, bool>(11) {
            open_rows.push(open);
        }
        let s = |i: usize| norm(r.get::<_, &str>(i));
        got.insert(
            open,
            CandleRow {
                close_time: r.get(1),
                values: [s(2), s(3), s(4), s(5), s(6), s(7), s(8), s(9)],
                trades: r.get(10),
            },
        );
    }
    let want: BTreeMap<i64, CandleRow> = klines
        .iter()
        .filter(|k| (first..=last).contains(&k.open_time))
        .map(|k| (k.open_time, k.row.clone()))
        .collect();
    let missing: Vec<i64> = want
        .keys()
        .filter(|t| !got.contains_key(t))
        .copied()
        .collect();
    let extra: Vec<i64> = got
        .keys()
        .filter(|t| !want.contains_key(t))
        .copied()
        .collect();
    let differing: Vec<String> = want
        .iter()
        .filter_map(|(t, w)| {
            let g = got.get(t)?;
            (g != w).then(|| format!("{t}: stored {g:?}, simulator {w:?}"))
        })
        .take(MAX_LISTED)
        .collect();
    if missing.is_empty() && extra.is_empty() && differing.is_empty() && open_rows.is_empty() {
        return Ok(want.len());
    }
    Err(format!(
        "window {first}..={last} ({} expected, {} stored): missing {} {:?}; extra {:?}; \
         not marked closed {:?}; differing {}",
        want.len(),
        got.len(),
        missing.len(),
        &missing[..missing.len().min(MAX_LISTED)],
        &extra[..extra.len().min(MAX_LISTED)],
        open_rows,
        differing.join("; ")
    ))
}

/// The signals a fault-free engine makes on `klines` (every kline of the series from
/// the market's first), keyed by (kind, timestamp), as the shard turns a fired rule
/// into a signal: the candle's close time and close price.
fn reference_signals(
    klines: &[Kline],
    params: &SignalParams,
) -> BTreeMap<(String, i64), SignalRow> {
    let mut engine = SignalEngine::new(params);
    let mut out = BTreeMap::new();
    for k in klines {
        let f = |i: usize| decimal_to_f64(Decimal::from_str(&k.ohlcv[i]).unwrap_or_default());
        let bar = Bar {
            open_time_ms: k.open_time,
            open: f(0),
            high: f(1),
            low: f(2),
            close: f(3),
            volume: f(4),
            book: None,
        };
        engine.update(&bar, |fired| {
            out.insert(
                (fired.kind.as_str().to_string(), k.row.close_time),
                SignalRow {
                    direction: fired.direction.as_str().to_string(),
                    confidence: fired.confidence,
                    price: norm(&k.ohlcv[3]),
                    indicators: indicators_object(&fired.indicators),
                },
            );
        });
    }
    out
}

fn close_enough(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn same_signal(a: &SignalRow, b: &SignalRow) -> bool {
    a.direction == b.direction
        && a.confidence == b.confidence
        && a.price == b.price
        && a.indicators.len() == b.indicators.len()
        && a.indicators.iter().all(|(k, v)| {
            match (v.as_f64(), b.indicators.get(k).and_then(Value::as_f64)) {
                (Some(x), Some(y)) => close_enough(x, y),
                _ => false,
            }
        })
}

/// Step 3 for one series: the stored signals with timestamps in `(from, to]` are those
/// of the reference engine. Inside an `optional` span a reference signal may be missing,
/// but a stored one must still be right. Returns (compared, required) counts.
fn compare_signals(
    client: &mut postgres::Client,
    symbol: &str,
    tf: Interval,
    klines: &[Kline],
    params: &SignalParams,
    (from, to): (i64, i64),
    optional: &[(i64, i64)],
) -> Result<(usize, usize), String> {
    let want: BTreeMap<(String, i64), SignalRow> = reference_signals(klines, params)
        .into_iter()
        .filter(|((_, t), _)| *t > from && *t <= to)
        .collect();
    let rows = client
        .query(
            &format!(
                "SELECT kind, (extract(epoch from \"timestamp\") * 1000)::int8, direction, \
                        confidence, price::text, indicators \
                 FROM signals WHERE symbol = $1 AND timeframe = $2 \
                   AND \"timestamp\" > {} AND \"timestamp\" <= {}",
                at(3),
                at(4)
            ),
            &[&symbol, &tf.as_str(), &from, &to],
        )
        .map_err(|e| e.to_string())?;
    let mut got: BTreeMap<(String, i64), SignalRow> = BTreeMap::new();
    for r in &rows {
        let indicators: Value = r.get(5);
        got.insert(
            (r.get(0), r.get(1)),
            SignalRow {
                direction: r.get(2),
                confidence: r.get(3),
                price: norm(r.get::<_, &str>(4)),
                indicators: indicators.as_object().cloned().unwrap_or_default(),
            },
        );
    }
    let is_optional = |t: i64| optional.iter().any(|(a, b)| t > *a && t <= *b);
    let missing: Vec<&(String, i64)> = want
        .keys()
        .filter(|k| !got.contains_key(*k) && !is_optional(k.1))
        .collect();
    let extra: Vec<&(String, i64)> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differing: Vec<String> = want
        .iter()
        .filter_map(|(k, w)| {
            let g = got.get(k)?;
            (!same_signal(g, w)).then(|| format!("{k:?}: stored {g:?}, reference {w:?}"))
        })
        .take(MAX_LISTED)
        .collect();
    if missing.is_empty() && extra.is_empty() && differing.is_empty() {
        let required = want.keys().filter(|k| !is_optional(k.1)).count();
        return Ok((got.len(), required));
    }
    Err(format!(
        "window ({from}, {to}] ({} in the reference, {} stored): missing {} {:?}; extra {} {:?}; \
         differing {}",
        want.len(),
        got.len(),
        missing.len(),
        &missing[..missing.len().min(MAX_LISTED)],
        extra.len(),
        &extra[..extra.len().min(MAX_LISTED)],
        differing.join("; ")
    ))
}

/// Wall duration of `n` candles of `tf` at [`SPEED`].
pub fn candles(n: u32, tf: Interval) -> Duration {
    Duration::from_secs_f64(iv_ms(tf) as f64 * f64::from(n) / SPEED / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::norm;

    #[test]
    fn decimals_normalise() {
        for (a, b) in [
            ("1.5000", "1.5"),
            ("2.000", "2"),
            ("0.0", "0"),
            ("-0.00", "0"),
            ("00012.0100", "12.01"),
            ("-3.10", "-3.1"),
            ("42", "42"),
        ] {
            assert_eq!(norm(a), b, "{a}");
        }
    }
}
