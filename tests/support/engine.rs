//! Shared helpers for the end-to-end tests: a simulator plus an engine on loopback, a
//! tiny HTTP client, and bounded waiting.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use alphapulse::config::Config;
use alphapulse::engine::Engine;
use alphapulse::market::{Candle, Interval, Symbol};
use alphapulse::simulator::{self, SimConfig, SimHandle};

pub fn symbols(names: &[&str]) -> Vec<Symbol> {
    names.iter().map(|s| Symbol::new(s).unwrap()).collect()
}

/// A simulator on a free port with test-friendly defaults (speed 60: a 1m candle a second).
pub fn sim_config(names: &[&str]) -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        symbols: symbols(names),
        speed: 60.0,
        trade_rate: 5.0,
        seed: 7,
        ..SimConfig::default()
    }
}

/// An engine configuration pointed at `sim`, unpinned (tests share cores), dashboard on
/// a free port.
pub fn engine_config(sim: &SimHandle, names: &[&str], timeframes: &[Interval]) -> Config {
    let mut c = Config {
        binance_ws_url: sim.ws_url(),
        binance_rest_url: sim.rest_url(),
        symbols: symbols(names),
        timeframes: timeframes.to_vec(),
        dashboard_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    c.engine.pin_cores = false;
    c.feed.backoff_initial_ms = 50;
    c.feed.backoff_max_ms = 500;
    let (speed, skew) = sim.clock_settings(c.feed.max_clock_skew_ms, ENGINE_STARTUP);
    c.feed.exchange_speed = speed;
    c.feed.max_clock_skew_ms = skew;
    c
}

/// The longest an engine may take to start after its simulator (on a busy 2-core
/// machine): the simulated clock's lead gained meanwhile is allowed for.
pub const ENGINE_STARTUP: Duration = Duration::from_secs(20);

/// The clock-bound environment of an engine process pointed at `sim` now (what
/// [`engine_config`] sets in a `Config`).
pub fn clock_env(sim: &SimHandle) -> [(&'static str, String); 2] {
    let default = Config::default().feed.max_clock_skew_ms;
    let (speed, skew) = sim.clock_settings(default, ENGINE_STARTUP);
    [
        ("ALPHAPULSE_EXCHANGE_SPEED", speed.to_string()),
        ("ALPHAPULSE_MAX_CLOCK_SKEW_MS", skew.to_string()),
    ]
}

pub struct Running {
    // Field order is drop order: the engine stops before the simulator, and the
    // serialisation guard is released last.
    pub engine: Engine,
    pub sim: SimHandle,
    /// The layout the engine was started with (where its dashboard runs, its shards).
    pub layout: alphapulse::topology::Layout,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// End-to-end tests measure timing-sensitive behaviour (rotations within a grace
/// period, pings within a timeout) on a 2-core machine: they run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn start(
    sim: SimConfig,
    tweak: impl FnOnce(&mut Config),
    names: &[&str],
    tfs: &[Interval],
) -> Running {
    let serial = serial();
    let sim = simulator::start(sim).expect("simulator starts");
    let mut config = engine_config(&sim, names, tfs);
    tweak(&mut config);
    let layout = alphapulse::topology::plan(&config, None, &alphapulse::topology::allowed_cores())
        .expect("layout");
    let engine = Engine::start(&config, &layout).expect("engine starts");
    Running {
        engine,
        sim,
        layout,
        _serial: serial,
    }
}

/// How many times a thread has gone to sleep of its own accord so far (its voluntary
/// context switches), from its `/proc/<pid>/task/<tid>` directory; `None` when the
/// thread is gone.
pub fn voluntary_switches(task_dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(task_dir.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// `GET path` with `Connection: close`; returns (status, body), or status 0 when the
/// server cannot be reached (so callers can poll for it to come up).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn http_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

pub fn rest_addr(sim: &SimHandle) -> SocketAddr {
    sim.local_addr()
}

/// Kills and reaps a child process when dropped, so a failing assertion never leaves an
/// engine running (or holding the test harness's output pipes open).
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Checks a `/metrics` body with `promtool check metrics` (scripts/setup.sh installs it);
/// without promtool only the line shapes are checked, and the test says so; under CI
/// (`CI` set) a missing promtool fails the test.
pub fn check_metrics_text(body: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed: run scripts/setup.sh (CI must check /metrics)"
        );
        eprintln!("promtool not installed: run scripts/setup.sh for the full check");
        assert!(body
            .lines()
            .all(|l| l.starts_with('#') || l.rsplit_once(' ').is_some()));
        return;
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(body.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample of a Prometheus text exposition: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of `body` named `name` exactly (comments skipped; label values
/// unescaped).
pub fn samples(body: &str, name: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_sample)
        .filter(|s| s.name == name)
        .collect()
}

/// The `# TYPE` of family `name` in `body`.
pub fn metric_type<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix("# TYPE ")?.strip_prefix(name)?;
        rest.strip_prefix(' ')
    })
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let mut labels = std::collections::BTreeMap::new();
    let name = match head.split_once('{') {
        None => head,
        Some((name, rest)) => {
            let mut rest = rest.strip_suffix('}')?;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"")?;
                let mut val = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => match chars.next()?.1 {
                            'n' => val.push('\n'),
                            c => val.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => val.push(c),
                    }
                };
                labels.insert(key.to_owned(), val);
                rest = after[end + 1..].trim_start_matches(',');
            }
            name
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The fields docs/api.md requires of `/api/performance` (besides the stages).
pub const PERFORMANCE_FIELDS: [&str; 6] = [
    "active_clients",
    "messages_sent",
    "avg_latency_ms",
    "total_messages_received",
    "active_connections",
    "throughput",
];

/// The closed candles the engine keeps for a series (at most 1000), oldest first.
pub fn closed(run: &Running, symbol: &str, tf: Interval) -> Vec<Candle> {
    let store = run.engine.status().store.lock().unwrap();
    let mut v = store.closed(Some(symbol.parse().unwrap()), Some(tf), 1000);
    v.reverse();
    v
}

/// Every closed candle the engine kept equals the simulator's REST kline, field by
/// field, and they follow each other without a hole.
pub fn assert_match_rest(run: &Running, symbol: &str, tf: Interval, candles: &[Candle]) {
    for w in candles.windows(2) {
        assert_eq!(
            w[1].open_time_ms,
            tf.next_open(w[0].open_time_ms),
            "{symbol} {tf}: contiguous"
        );
    }
    let (first, last) = (
        candles[0].open_time_ms,
        candles[candles.len() - 1].open_time_ms,
    );
    let path = format!(
        "/api/v3/klines?symbol={symbol}&interval={tf}&startTime={first}&endTime={last}&limit=1000"
    );
    let rest = http_json(rest_addr(&run.sim), &path);
    let rows = rest.as_array().expect("klines array");
    assert_eq!(rows.len(), candles.len(), "{symbol} {tf}: {rest}");
    for (c, row) in candles.iter().zip(rows) {
        let s = |i: usize| row[i].as_str().unwrap().to_string();
        assert_eq!(row[0].as_i64(), Some(c.open_time_ms));
        assert_eq!(s(1), c.open.to_string());
        assert_eq!(s(2), c.high.to_string());
        assert_eq!(s(3), c.low.to_string());
        assert_eq!(s(4), c.close.to_string());
        assert_eq!(s(5), c.volume.to_string());
        assert_eq!(row[6].as_i64(), Some(c.close_time_ms));
        assert_eq!(s(7), c.quote_volume.to_string());
        assert_eq!(row[8].as_u64(), Some(c.trades));
        assert_eq!(s(9), c.taker_buy_base.to_string());
        assert_eq!(s(10), c.taker_buy_quote.to_string());
        assert!(c.closed);
    }
}

/// A book level as `(price, quantity)`, both exact.
pub type Levels = Vec<(rust_decimal::Decimal, rust_decimal::Decimal)>;

/// The levels of a `bids` or `asks` list of a book view (`[price, quantity]` strings).
pub fn levels(v: &serde_json::Value) -> Levels {
    v.as_array()
        .expect("a list of levels")
        .iter()
        .map(|l| {
            let d = |x: &serde_json::Value| {
                x.as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            };
            (d(&l[0]), d(&l[1]))
        })
        .collect()
}

/// The exchange's side of a book comparison: the simulator's synthetic market, rebuilt
/// from its settings (it is deterministic) and stepped to the update id asked for.
pub struct BookReference {
    config: alphapulse::simulator::market::MarketConfig,
    market: alphapulse::simulator::market::Market,
}

impl BookReference {
    pub fn new(config: &alphapulse::simulator::market::MarketConfig) -> BookReference {
        BookReference {
            config: config.clone(),
            market: alphapulse::simulator::market::Market::new(config),
        }
    }

    /// Both sides of `symbol`'s book right after update `id`, best first; `None` if
    /// the market passed `id` without stopping there (it never should).
    pub fn book_at(&mut self, symbol: Symbol, id: u64) -> Option<(Levels, Levels)> {
        use alphapulse::simulator::market::{Market, NullSink};
        let i = self.market.symbol_index(symbol)?;
        if self.market.symbols()[i].book().update_id() > id {
            // Asked for the past (another symbol stepped it on): start again.
            self.market = Market::new(&self.config);
        }
        let unit = |u: i64| rust_decimal::Decimal::new(u, 8);
        for _ in 0..50_000_000u64 {
            let book = self.market.symbols()[i].book();
            if book.update_id() == id {
                let side =
                    |it: &mut dyn Iterator<Item = &alphapulse::simulator::book::BookLevel>| {
                        it.map(|l| (unit(l.price), unit(l.qty))).collect::<Levels>()
                    };
                return Some((side(&mut book.bids()), side(&mut book.asks())));
            }
            if book.update_id() > id {
                return None;
            }
            self.market.advance_bounded(i64::MAX, &mut NullSink, 1);
        }
        None
    }

    /// Compares a valid book view (`/api/book`'s object, every level published) with the
    /// exchange's book at its `last_update_id`; the error names the first difference.
    pub fn check_view(&mut self, view: &serde_json::Value) -> Result<(), String> {
        let name = view["symbol"].as_str().unwrap_or_default();
        let symbol = Symbol::new(name).map_err(|e| e.to_string())?;
        let id = view["last_update_id"].as_u64().ok_or("no last_update_id")?;
        let (bids, asks) = self
            .book_at(symbol, id)
            .ok_or_else(|| format!("{name}: the exchange never had update {id}"))?;
        for (side, ours, theirs) in [
            ("bids", levels(&view["bids"]), bids),
            ("asks", levels(&view["asks"]), asks),
        ] {
            if let Some(i) =
                (0..ours.len().max(theirs.len())).find(|&i| ours.get(i) != theirs.get(i))
            {
                return Err(format!(
                    "{name} {side} at update {id} differ from level {i} (of {} here, {} on the \
                     exchange): {:?} here, {:?} there",
                    ours.len(),
                    theirs.len(),
                    ours.get(i),
                    theirs.get(i)
                ));
            }
        }
        Ok(())
    }
}
