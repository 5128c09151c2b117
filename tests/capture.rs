//! Raw capture and deterministic replay, end to end over loopback.
//!
//! `alphapulse capture` (the real binary) records a live simulator's kline, trade and
//! depth streams while an engine runs against the same simulator; then a simulator
//! serves the capture directory (`--replay DIR`, faster than recorded) to a fresh
//! engine, which must produce exactly the live engine's closed candles and signals, as
//! `/api/candles` and `/api/signals` give them.
//!
//! What makes the replay deterministic: an engine's candles and signals depend only on
//! the closed klines it is fed, in order, from its first. Both engines therefore take
//! candles only from the stream: the warm start is off (`signals.warm_candles = 0`), no
//! database (so no catch-up), and the simulator has no seeded past (`history = 0`), so
//! the exchange has no candle before the market opens and REST could add nothing. The
//! replaying simulator answers no REST klines at all, so a run that did ask REST could
//! not be replayed faithfully; this one never asks. The market opens on a minute
//! boundary and the first 1m candle closes [`FIRST_CLOSE`] of wall time later; the
//! capture and the live engine both subscribe before that (checked: the live engine's
//! first candle must be the market's first), so both see every closed candle from the
//! first, and the replayed engine is fed exactly the live engine's sequence. The
//! event-time check is off (`feed.max_clock_skew_ms = 0`): replayed frames carry the
//! live run's simulated times.

#[path = "support/engine.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use alphapulse::config::Config;
use alphapulse::engine::Engine;
use alphapulse::market::Interval;
use alphapulse::signals::params::{SignalParams, SignalsConfig};
use alphapulse::simulator::{self, SimConfig};
use serde_json::Value;
use support::*;

const SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
/// Simulated time runs this fast: a 1m candle closes every 4 wall seconds.
const SPEED: f64 = 15.0;
/// The wall time from the simulator's start to the first close.
const FIRST_CLOSE: Duration = Duration::from_secs(4);
/// 2026-01-01T00:00:00Z: the market opens on a minute boundary.
const START_MS: i64 = 1_767_225_600_000;
/// Closed 1m candles per series the live run waits for.
const CANDLES: usize = 16;
/// The replay runs this many times faster than recorded.
const REPLAY_SPEED: f64 = 4.0;

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `alphapulse capture --out dir` run in `work` against `sim` (its streams, and its REST
/// for depth snapshots), with no configuration file.
fn capture_command(work: &Path, sim: &simulator::SimHandle, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alphapulse"));
    c.current_dir(work)
        .env("BINANCE_WS_URL", sim.ws_url())
        .env("BINANCE_REST_URL", sim.rest_url())
        .env_remove("ALPHAPULSE_CONFIG")
        .args(["capture", "--out"])
        .arg(dir);
    c
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("alphapulse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Short indicator periods, so rules fire within a few candles.
fn signals() -> SignalsConfig {
    SignalsConfig {
        warm_candles: 0,
        defaults: SignalParams {
            ema_fast: 3,
            ema_slow: 7,
            rsi_period: 5,
            rsi_oversold: 45.0,
            rsi_overbought: 55.0,
            macd_fast: 3,
            macd_slow: 7,
            macd_signal: 3,
            bollinger_period: 6,
            bollinger_k: 1.0,
            atr_period: 5,
            volume_period: 6,
            volume_spike_k: 1.2,
            ..SignalParams::default()
        },
        ..SignalsConfig::default()
    }
}

fn engine_config(ws: String, rest: String) -> Config {
    let mut c = Config {
        binance_ws_url: ws,
        binance_rest_url: rest,
        symbols: symbols(&SYMS),
        timeframes: vec![Interval::M1],
        dashboard_addr: "127.0.0.1:0".parse().unwrap(),
        signals: signals(),
        ..Config::default()
    };
    c.engine.pin_cores = false;
    c.feed.backoff_initial_ms = 50;
    c.feed.backoff_max_ms = 500;
    c.feed.max_clock_skew_ms = 0;
    c.feed.streams.trade = true;
    c.feed.streams.diff_depth_ms = Some(100);
    // Whole books, published often: every view is compared with the exchange's.
    c.books.symbols = symbols(&SYMS);
    c.books.top_levels = 1000;
    c.books.publish_ms = 10;
    c
}

fn start_engine(config: &Config) -> Engine {
    let layout = alphapulse::topology::plan(config, None, &alphapulse::topology::allowed_cores())
        .expect("layout");
    Engine::start(config, &layout).expect("engine starts")
}

fn shard_sum(engine: &Engine, f: impl Fn(&alphapulse::metrics::ShardStats) -> u64) -> u64 {
    engine.status().shards.iter().map(|s| f(&s.stats)).sum()
}

/// `/api/candles` or `/api/signals` of one series, oldest first, up to `to` (ms).
fn api(engine: &Engine, what: &str, symbol: &str, to: i64) -> Vec<Value> {
    let path = format!("/api/{what}?symbol={symbol}&timeframe=1m&limit=1000&to={to}");
    let body = http_json(engine.dashboard_addr(), &path);
    let mut list = body[what].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

fn open_times(engine: &Engine, symbol: &str) -> Vec<i64> {
    api(engine, "candles", symbol, i64::MAX)
        .iter()
        .filter_map(|c| c["open_time"].as_i64())
        .collect()
}

/// The open times of the first and the last closed kline of each 1m stream in the
/// capture.
fn closes_in(dir: &Path) -> BTreeMap<String, (i64, i64)> {
    let mut closes = BTreeMap::new();
    for record in alphapulse::capture::Reader::open(dir).expect("the capture opens") {
        let record = record.expect("the capture reads back");
        if record.kind != alphapulse::capture::Kind::Frame {
            continue;
        }
        let frame: Value = serde_json::from_slice(&record.payload).expect("JSON frame");
        let k = &frame["data"]["k"];
        if k["x"].as_bool() == Some(true) {
            let stream = frame["stream"].as_str().unwrap_or_default().to_string();
            let open = k["t"].as_i64().unwrap();
            closes.entry(stream).or_insert((open, open)).1 = open;
        }
    }
    closes
}

#[test]
fn a_replayed_capture_reproduces_the_live_runs_candles_and_signals() {
    let _serial = serial();
    let work = temp_dir("capture-replay");
    let dir = work.0.join("capture");
    let sim = simulator::start(SimConfig {
        speed: SPEED,
        start_time_ms: Some(START_MS),
        history: 0,
        trade_rate: 4.0,
        ..sim_config(&SYMS)
    })
    .expect("simulator starts");
    let started = std::time::Instant::now();

    // The capture: kline, trade and depth streams of both symbols, small files so it
    // rotates, frequent flushes.
    let streams: Vec<String> = SYMS
        .iter()
        .flat_map(|s| {
            let s = s.to_lowercase();
            [
                format!("{s}@kline_1m"),
                format!("{s}@trade"),
                format!("{s}@depth@100ms"),
            ]
        })
        .collect();
    let capture = capture_command(&work.0, &sim, &dir)
        .args(["--streams", &streams.join(",")])
        .args([
            "--rotate-bytes",
            "16384",
            "--max-bytes",
            "1000000000",
            "--flush-secs",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(work.0.join("capture.log")).unwrap())
        .spawn()
        .expect("capture starts");
    let mut capture = ChildGuard(capture);
    let live = start_engine(&engine_config(sim.ws_url(), sim.rest_url()));
    assert!(
        wait_until(Duration::from_secs(10), || {
            alphapulse::capture::Manifest::load(&dir).is_ok_and(|m| m.frames() > 0)
        }),
        "the capture records frames"
    );
    let subscribed = started.elapsed();
    assert!(
        wait_until(Duration::from_secs(30 + CANDLES as u64 * 6), || {
            SYMS.iter().all(|s| open_times(&live, s).len() >= CANDLES)
        }),
        "live candles: {}",
        live.status().snapshot()
    );

    // Stop the capture as an operator would (SIGINT), then the live engine.
    let pid = capture.0.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            status = capture.0.try_wait().ok().flatten();
            status.is_some()
        }),
        "the capture stops at SIGINT"
    );
    let mut stdout = String::new();
    if let Some(mut out) = capture.0.stdout.take() {
        out.read_to_string(&mut stdout).expect("capture stdout");
    }
    let log = std::fs::read_to_string(work.0.join("capture.log")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "capture: {stdout}{log}"
    );
    assert!(stdout.contains("captured"), "{stdout}");
    let live_candles: BTreeMap<&str, Vec<i64>> =
        SYMS.iter().map(|s| (*s, open_times(&live, s))).collect();

    // The capture is complete: closed files, rotated, an end time.
    let manifest = alphapulse::capture::Manifest::load(&dir).expect("manifest");
    assert!(manifest.ended_wall_ns.is_some());
    assert!(
        manifest.files.len() >= 2,
        "rotated: {} files",
        manifest.files.len()
    );
    assert!(manifest
        .files
        .iter()
        .all(|f| f.state == alphapulse::capture::manifest::FileState::Closed));
    assert_eq!(manifest.streams, streams);
    let closes = closes_in(&dir);
    let last_closes: BTreeMap<String, i64> = closes.iter().map(|(k, v)| (k.clone(), v.1)).collect();
    let market_open = START_MS;
    for s in SYMS {
        let stream = format!("{}@kline_1m", s.to_lowercase());
        assert_eq!(
            closes.get(&stream).map(|c| c.0),
            Some(market_open),
            "{s}: the capture missed the market's first candle (it recorded {subscribed:?} \
             after the simulator started, the first close came at {FIRST_CLOSE:?}): the machine is too slow for this test"
        );
        let first = live_candles[s][0];
        assert_eq!(
            first, market_open,
            "{s}: the live engine missed the market's first candle (it subscribed {subscribed:?} \
             after the simulator started, the first close came at {FIRST_CLOSE:?}): the machine is too slow for this test"
        );
    }

    // The live run's results, each series up to the last close both the capture and
    // the live engine have.
    let mut expected = BTreeMap::new();
    for s in SYMS {
        let stream = format!("{}@kline_1m", s.to_lowercase());
        let cutoff = last_closes[&stream].min(*live_candles[s].last().unwrap());
        let candles = api(&live, "candles", s, cutoff);
        let signals = api(&live, "signals", s, cutoff + 60_000 - 1);
        expected.insert(s, (cutoff, candles, signals));
    }
    drop(live);
    // The exchange's books at any update id, for the replayed engine's.
    let market = sim.market_config().expect("a synthetic market").clone();
    drop(sim);
    assert!(
        expected
            .values()
            .map(|(_, _, sig)| sig.len())
            .sum::<usize>()
            > 0,
        "the live run made signals (nothing would be compared)"
    );

    // The replay: a fresh simulator serving the directory, a fresh engine.
    let replay = simulator::start(SimConfig {
        replay: Some(dir.clone()),
        replay_speed: REPLAY_SPEED,
        ..sim_config(&SYMS)
    })
    .expect("replay simulator starts");
    // The replay's depth answers check their parameters as the live market's do.
    let replay_addr: std::net::SocketAddr = replay
        .rest_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    for (query, code) in [
        ("", -1102),
        ("symbol=BTCUSDT&limit=0", -1130),
        ("symbol=BTCUSDT&limit=x", -1100),
    ] {
        let (status, body) = http_get(replay_addr, &format!("/api/v3/depth?{query}"));
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(
            (status, answer["code"].as_i64()),
            (400, Some(code)),
            "{query}: {body}"
        );
    }
    let engine = start_engine(&engine_config(replay.ws_url(), replay.rest_url()));
    // While it replays, the engine's books: every valid view must be the exchange's book
    // at its update id (the replay's depth answers come from the capture's snapshots).
    let mut reference = BookReference::new(&market);
    let mut books_compared = BTreeMap::<&str, usize>::new();
    assert!(
        wait_until(Duration::from_secs(30 + CANDLES as u64 * 2), || {
            for s in SYMS {
                let (status, body) =
                    http_get(engine.dashboard_addr(), &format!("/api/book?symbol={s}"));
                let view: Value = serde_json::from_str(&body).unwrap_or_default();
                if status == 200 && view["valid"] == true {
                    if let Err(why) = reference.check_view(&view) {
                        panic!("replayed book: {why}");
                    }
                    *books_compared.entry(s).or_default() += 1;
                }
            }
            SYMS.iter().all(|s| {
                let stream = format!("{}@kline_1m", s.to_lowercase());
                open_times(&engine, s).last() == last_closes.get(&stream)
            })
        }),
        "replayed candles: {}",
        engine.status().snapshot()
    );
    for s in SYMS {
        let (cutoff, candles, signals) = &expected[s];
        assert_eq!(
            &api(&engine, "candles", s, *cutoff),
            candles,
            "{s}: candles"
        );
        assert_eq!(
            &api(&engine, "signals", s, cutoff + 60_000 - 1),
            signals,
            "{s}: signals"
        );
        assert!(
            candles.len() >= CANDLES - 1,
            "{s}: {} candles compared",
            candles.len()
        );
        eprintln!(
            "{s}: {} closed candles and {} signals equal after replay",
            candles.len(),
            signals.len()
        );
    }
    eprintln!(
        "capture: {} frames in {} files, {} bytes on disk; {stdout}",
        manifest.frames(),
        manifest.files.len(),
        manifest.bytes()
    );
    eprintln!("replayed books equal to the exchange's: {books_compared:?}");
    for s in SYMS {
        let n = books_compared.get(s).copied().unwrap_or(0);
        assert!(n >= 5, "{s}: only {n} valid replayed book views compared");
    }
    let snapshots = alphapulse::capture::Reader::open(&dir)
        .expect("the capture opens")
        .filter_map(Result::ok)
        .filter(|r| {
            r.kind == alphapulse::capture::Kind::Marker
                && r.payload.starts_with(br#"{"event":"depth_snapshot""#)
        })
        .count();
    assert!(
        snapshots >= SYMS.len(),
        "depth snapshots in the capture: {snapshots}"
    );
    // The other streams were captured and replayed too.
    assert!(shard_sum(&engine, |s| s.trades.get()) > 0);
    assert!(shard_sum(&engine, |s| s.depth_updates.get()) > 0);
    assert_eq!(shard_sum(&engine, |s| s.parse_errors_total()), 0);
    drop(engine);
    drop(replay);
}

/// The exchange drops every connection each second: the capture reconnects with backoff
/// and records each disconnect and connect as a marker. Then it is killed (SIGKILL): the
/// directory still reads back, its last file up to its last whole record. A second
/// capture into the same directory is refused with exit 2.
#[test]
fn a_capture_reconnects_with_markers_and_a_killed_one_still_reads_back() {
    let _serial = serial();
    let work = temp_dir("capture-killed");
    let dir = work.0.join("capture");
    let sim = simulator::start(SimConfig {
        drop_every: Some(Duration::from_secs(1)),
        ..sim_config(&SYMS)
    })
    .expect("simulator starts");
    let capture = |dir: &Path| {
        let mut c = capture_command(&work.0, &sim, dir);
        c.args([
            "--streams",
            "btcusdt@trade,ethusdt@trade",
            "--flush-secs",
            "0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    };
    let mut running = ChildGuard(capture(&dir).spawn().expect("capture starts"));
    let reconnected = wait_until(Duration::from_secs(20), || {
        alphapulse::capture::Manifest::load(&dir).is_ok_and(|m| m.reconnects >= 2)
    });
    running.0.kill().expect("SIGKILL");
    let _ = running.0.wait();
    assert!(reconnected, "the capture reconnects after drops");

    let manifest = alphapulse::capture::Manifest::load(&dir).expect("a whole manifest");
    assert!(manifest.ended_wall_ns.is_none(), "killed: no end");
    let mut reader = alphapulse::capture::Reader::open(&dir).expect("opens");
    let (mut frames, mut markers) = (0, Vec::new());
    for record in reader.by_ref() {
        let record = record.expect("a killed capture reads back without an error");
        match record.kind {
            alphapulse::capture::Kind::Frame => frames += 1,
            alphapulse::capture::Kind::Marker => {
                let v: Value = serde_json::from_slice(&record.payload).unwrap();
                markers.push(v["event"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    assert!(frames > 0);
    let count = |event: &str| markers.iter().filter(|m| *m == event).count();
    assert!(count("connected") >= 3, "{markers:?}");
    assert!(count("disconnected") >= 2, "{markers:?}");

    let again = capture(&dir).output().expect("second capture runs");
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already holds a capture"), "{stderr}");
    // A file size of 0 would rotate at every record: refused, naming the option.
    let zero = capture(&work.0.join("other"))
        .args(["--rotate-bytes", "0", "--seconds", "1"])
        .output()
        .expect("capture runs");
    assert_eq!(zero.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(stderr.contains("--rotate-bytes"), "{stderr}");
    drop(sim);
}

/// The simulator pings every 200 ms and drops a client that leaves a ping unanswered
/// for a second: the capture answers every ping, so its one connection lasts.
#[test]
fn the_capture_answers_pings() {
    let _serial = serial();
    let work = temp_dir("capture-pings");
    let sim = simulator::start(SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_secs(1),
        ..sim_config(&SYMS)
    })
    .expect("simulator starts");
    let out = Command::new(env!("CARGO_BIN_EXE_alphapulse"))
        .current_dir(&work.0)
        .env("BINANCE_WS_URL", sim.ws_url())
        .env_remove("ALPHAPULSE_CONFIG")
        .args(["capture", "--out", "cap", "--streams", "btcusdt@trade"])
        .args(["--seconds", "3"])
        .output()
        .expect("capture runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = alphapulse::capture::Manifest::load(&work.0.join("cap")).expect("manifest");
    let stats = sim.stats();
    assert_eq!(manifest.reconnects, 0, "{stats:?}");
    assert_eq!(stats.pong_timeout_disconnects, 0, "{stats:?}");
    assert!(stats.pongs_received >= 5, "{stats:?}");
    assert!(manifest.frames() > 0);
}

/// An exchange that rate limits the depth snapshots (a weight budget below one
/// snapshot's): the capture asks once, then waits as the answer's Retry-After says,
/// for every symbol, instead of asking again every few seconds per symbol.
#[test]
fn a_rate_limited_capture_waits_before_asking_for_snapshots_again() {
    let _serial = serial();
    let work = temp_dir("capture-rate-limited");
    let dir = work.0.join("capture");
    let sim = simulator::start(SimConfig {
        // A snapshot of limit 1000 weighs 50.
        weight_limit: 10,
        ..sim_config(&SYMS)
    })
    .expect("simulator starts");
    // The exchange's weight window is the wall-clock minute and its Retry-After runs
    // to the minute's end: a capture that crossed a boundary would rightly ask again.
    wait_for_minute_room(Duration::from_secs(8));
    let out = capture_command(&work.0, &sim, &dir)
        .args([
            "--streams",
            "btcusdt@depth@100ms,ethusdt@depth@100ms",
            "--seconds",
            "3",
        ])
        .output()
        .expect("capture runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("depth snapshots: 0 recorded, 1 failed"),
        "{stdout}"
    );
    assert_eq!(sim.stats().rest_rejected, 1, "one request, then the wait");
}

/// Sleeps until at least `room` is left of the current wall-clock minute (at most
/// `room`), so that a few seconds of requests fall in one weight window.
fn wait_for_minute_room(room: Duration) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let left =
        Duration::from_secs(60) - Duration::from_millis((since_epoch.as_millis() % 60_000) as u64);
    if left < room {
        std::thread::sleep(left + Duration::from_millis(50));
    }
}
