//! A Binance-compatible spot exchange simulator: the ground truth engine tests compare
//! against, and the load generator of the ingest benchmark.
//!
//! Runs on: its own thread with one glommio `LocalExecutor` (unpinned). Owns: one TCP
//! listener that serves Binance's REST API (HTTP/1.1) and its WebSocket market streams
//! (upgrade on the same port), a deterministic synthetic market (or a replayed
//! capture), and every client connection. In: [`SimConfig`]. Out: Binance-shaped frames
//! and responses; [`SimStats`] counters for tests.
//!
//! # Layout
//! - [`market`]: the seeded market model (trades, aggTrades, klines, book), pure.
//! - [`kline`], `book`: the kline aggregation and order book it is built from.
//! - `stream`, `control`, `render`, `ws`, `http`, `rest`: stream names, control
//!   messages, JSON rendering, WebSocket framing, HTTP parsing, REST endpoints; pure.
//! - [`replay`]: capture formats and pacing.
//! - `faults`: drops, stalls and malformed frames on a seeded schedule.
//! - `hub`: connection state, subscriptions, fan-out and protocol timers (no sockets).
//! - `server`: the glommio tasks that own the sockets.
//!
//! # Behaviour worth knowing
//! - Simulated time runs `speed` times the wall clock. Trades, their times and every
//!   candle depend only on the seed, the symbols and the start time.
//! - Events are scheduled open-loop by their intended time; `E` is that time. A slow
//!   client gets bursts, never a slower schedule; one whose unsent output passes
//!   `max_outbox_bytes` is disconnected.
//! - The market opens at the start time. Before it, REST has `history` closed candles
//!   per series of seeded past ([`market::history`]; `SimConfig`'s default 0 is a new
//!   listing with none, `simulate` and `demo` default to 1000). Each (symbol, interval)
//!   keeps the last `kline_history` closed candles; older ones are gone, and
//!   `GET /api/v3/klines` returns nothing for them.
//! - Replayed frames are sent as recorded (`timeUnit` does not rewrite them), and REST
//!   knows no symbols in replay mode.

pub mod book;
mod clock;
mod control;
mod faults;
mod http;
mod hub;
pub mod kline;
pub mod market;
mod render;
pub mod replay;
mod replay_books;
mod rest;
mod server;
mod stats;
pub mod stream;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::market::Symbol;

pub use kline::DEFAULT_KLINE_HISTORY;
/// Seeded past per series of `simulate` and `demo` unless told otherwise: enough for
/// every indicator's warm-up many times over, generated in a few milliseconds.
pub const DEFAULT_HISTORY: usize = 1_000;
pub use market::KlinePhase;
pub use replay::ReplayError;
pub use stats::SimStats;

use clock::SimClock;
use faults::FaultPlan;
use hub::Settings;
use market::{Market, MarketConfig, MAX_TRADE_RATE};
use stats::Counters;

/// io_uring buffer memory for the simulator's executor. It does no file I/O, so the
/// minimum leaves the process's locked-memory budget to the engine's cores.
const SIM_IO_MEMORY_BYTES: usize = 512 * 1024;
/// How long [`start`] waits for the executor to bind and report.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default outbox limit per connection (`--max-outbox-mb`).
const DEFAULT_MAX_OUTBOX_MB: usize = 256;
/// Fastest simulated clock: a simulated day in under a wall second. Faster clocks would
/// outrun any client and, within a few years of simulated time, the nanosecond range.
const MAX_SPEED: f64 = 100_000.0;
/// Latest start time accepted (2200-01-01): simulated nanoseconds stay inside `i64`.
const MAX_START_TIME_MS: i64 = crate::clock::YEAR_2200_MS;

/// Settings of the simulator (see the `simulate` flags for each).
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub symbols: Vec<Symbol>,
    pub seed: u64,
    /// Trades per simulated second per symbol.
    pub trade_rate: f64,
    /// Simulated time runs this many times the wall clock.
    pub speed: f64,
    /// Simulated epoch ms at start; `None`: now, truncated to the second.
    pub start_time_ms: Option<i64>,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// Disconnect clients that do not answer pings within `pong_timeout`.
    pub pong_check: bool,
    /// Treat client pongs as never received.
    pub ignore_pongs: bool,
    pub max_connection_age: Duration,
    /// Time between `serverShutdown` and the close frame.
    pub shutdown_grace: Duration,
    /// Serve this capture instead of the synthetic market.
    pub replay: Option<PathBuf>,
    /// Replay pacing factor; 0 sends as fast as possible.
    pub replay_speed: f64,
    pub drop_every: Option<Duration>,
    pub stall_every: Option<Duration>,
    pub stall_for: Duration,
    /// Fraction of data frames sent damaged.
    pub malformed_rate: f64,
    /// SUBSCRIBE requests naming one of these streams are refused as a whole (Binance's
    /// answer to an invalid stream name) …
    pub reject_streams: Vec<String>,
    /// … for this long after the start (`None`: for ever).
    pub reject_streams_for: Option<Duration>,
    /// Streams acknowledged and never sent (Binance's way with a stream of a symbol it
    /// does not list).
    pub silent_streams: Vec<String>,
    /// REST request weight per IP per minute.
    pub weight_limit: u32,
    /// Streams per connection.
    pub max_streams: usize,
    /// Incoming messages per second per connection before it is disconnected.
    pub max_incoming_rate: u32,
    /// Kline update period in simulated ms (the 1s interval pushes every second).
    pub kline_push_ms: i64,
    /// When in the period each symbol pushes its kline updates.
    pub kline_phase: KlinePhase,
    /// Closed candles kept per (symbol, interval).
    pub kline_history: usize,
    /// Closed candles of seeded past per (symbol, interval) before the start (see
    /// [`market::history`]); 0: the market opens with no past, like a new listing.
    pub history: usize,
    /// Unsent output per connection beyond which it is dropped as too slow.
    pub max_outbox_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9443)),
            symbols: ["BTCUSDT", "ETHUSDT", "ADAUSDT"]
                .iter()
                .filter_map(|s| Symbol::new(s).ok())
                .collect(),
            seed: 1,
            trade_rate: 10.0,
            speed: 1.0,
            start_time_ms: None,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            pong_check: true,
            ignore_pongs: false,
            max_connection_age: Duration::from_secs(86_400),
            shutdown_grace: Duration::from_secs(1),
            replay: None,
            replay_speed: 1.0,
            drop_every: None,
            stall_every: None,
            stall_for: Duration::from_secs(5),
            malformed_rate: 0.0,
            reject_streams: Vec::new(),
            reject_streams_for: None,
            silent_streams: Vec::new(),
            weight_limit: 6000,
            max_streams: 1024,
            max_incoming_rate: 5,
            kline_push_ms: 2000,
            kline_phase: KlinePhase::Aligned,
            kline_history: DEFAULT_KLINE_HISTORY,
            history: 0,
            max_outbox_bytes: DEFAULT_MAX_OUTBOX_MB * 1024 * 1024,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Config(what.to_string()));
        if self.symbols.is_empty() && self.replay.is_none() {
            return bad("--symbols: give at least one symbol");
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= MAX_SPEED) {
            return bad("--speed: must be positive and at most 100000");
        }
        if self
            .start_time_ms
            .is_some_and(|t| !(0..=MAX_START_TIME_MS).contains(&t))
        {
            return bad("--start-time: epoch milliseconds between 0 and 7258118400000 (year 2200)");
        }
        let durations = [
            self.ping_interval,
            self.pong_timeout,
            self.max_connection_age,
            self.shutdown_grace,
            self.stall_for,
        ];
        let optional = [self.drop_every, self.stall_every, self.reject_streams_for];
        if durations
            .iter()
            .chain(optional.iter().flatten())
            .any(|d| d.as_secs_f64() > crate::clock::MAX_SETTING_SECONDS)
        {
            return bad("durations: at most 1000000000 seconds");
        }
        if !(self.trade_rate.is_finite()
            && self.trade_rate > 0.0
            && self.trade_rate <= MAX_TRADE_RATE)
        {
            return bad("--trade-rate: must be positive and at most 100000000");
        }
        if !(self.replay_speed.is_finite() && self.replay_speed >= 0.0) {
            return bad("--replay-speed: must be 0 (as fast as possible) or positive");
        }
        if !(0.0..=1.0).contains(&self.malformed_rate) {
            return bad("--malformed-rate: must be between 0 and 1");
        }
        if self.kline_push_ms < 1 {
            return bad("--kline-push-ms: must be at least 1");
        }
        if self.ping_interval.is_zero() {
            return bad("--ping-interval: must be positive");
        }
        if self.max_streams == 0 || self.kline_history == 0 || self.max_outbox_bytes == 0 {
            return bad("--max-streams, --kline-history and --max-outbox-mb must be positive");
        }
        if self.history > market::history::MAX_HISTORY_CANDLES {
            return Err(SimError::Config(format!(
                "--history: at most {} candles per series",
                market::history::MAX_HISTORY_CANDLES
            )));
        }
        Ok(())
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator setting: {0}")]
    Config(String),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("simulator runtime failed: {0}")]
    Runtime(String),
}

/// `alphapulse simulate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Address for REST and WebSocket (one port).
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: SocketAddr,
    /// Symbols to simulate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "BTCUSDT,ETHUSDT,ADAUSDT", value_parser = parse_symbol)]
    pub symbols: Vec<Symbol>,
    /// Seed of the synthetic market.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trades per simulated second per symbol.
    #[arg(long, default_value_t = 10.0, value_parser = parse_positive)]
    pub trade_rate: f64,
    /// Simulated time runs this many times the wall clock (60: a 1m candle a second).
    #[arg(long, default_value_t = 1.0, value_parser = parse_positive)]
    pub speed: f64,
    /// Simulated epoch milliseconds at start (default: now, truncated to the second).
    #[arg(long)]
    pub start_time: Option<i64>,
    /// Seconds between server pings.
    #[arg(long, default_value = "20", value_parser = parse_seconds)]
    pub ping_interval: Duration,
    /// Disconnect a client after this many seconds without a pong.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub pong_timeout: Duration,
    /// Seconds before a connection gets `serverShutdown` and is closed.
    #[arg(long, default_value = "86400", value_parser = parse_seconds)]
    pub max_connection_age: Duration,
    /// Seconds between `serverShutdown` and the close.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
    /// Serve this capture instead of the synthetic market: a directory written by
    /// `alphapulse capture` (streamed), or a capture file (loaded; at most 1 GiB).
    #[arg(long, value_name = "PATH")]
    pub replay: Option<PathBuf>,
    /// Replay pacing factor (0: as fast as possible).
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative)]
    pub replay_speed: f64,
    /// Abruptly close every WebSocket connection every this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub drop_every: Option<Duration>,
    /// Stop all output to every connection every this many seconds …
    #[arg(long, value_parser = parse_seconds)]
    pub stall_every: Option<Duration>,
    /// … for this many seconds.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub stall_for: Duration,
    /// Never disconnect clients for missing pongs.
    #[arg(long)]
    pub no_pong_check: bool,
    /// Treat client pongs as never received.
    #[arg(long)]
    pub ignore_pongs: bool,
    /// Fraction of data frames sent truncated or invalid (seeded).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub malformed_rate: f64,
    /// Refuse every SUBSCRIBE naming one of these streams (comma-separated), as Binance
    /// refuses a request with an invalid stream: error code 2, nothing subscribed.
    #[arg(long, value_delimiter = ',')]
    pub reject_streams: Vec<String>,
    /// Refuse them only for this many seconds after the start, then accept them.
    #[arg(long, value_parser = parse_seconds)]
    pub reject_streams_for: Option<Duration>,
    /// Acknowledge these streams (comma-separated) and never send them, as Binance does
    /// with a stream of a symbol it does not list.
    #[arg(long, value_delimiter = ',')]
    pub silent_streams: Vec<String>,
    /// REST request weight per minute per IP.
    #[arg(long, default_value_t = 6000)]
    pub weight_limit: u32,
    /// Streams per connection.
    #[arg(long, default_value_t = 1024)]
    pub max_streams: usize,
    /// Incoming messages per second per connection; more disconnects the client.
    #[arg(long, default_value_t = 5)]
    pub max_incoming_rate: u32,
    /// Kline update period in simulated ms (the 1s interval pushes every 1000).
    #[arg(long, default_value_t = 2000)]
    pub kline_push_ms: i64,
    /// When in the period each symbol pushes: `aligned` (all at the period's start, one
    /// burst per period) or `spread` (evenly over the period's milliseconds).
    #[arg(long, value_enum, default_value_t = KlinePhase::Aligned)]
    pub kline_phase: KlinePhase,
    /// Closed candles kept per (symbol, interval) for REST.
    #[arg(long, default_value_t = DEFAULT_KLINE_HISTORY)]
    pub kline_history: usize,
    /// Closed candles of seeded past per (symbol, interval) before the start, so a
    /// client's warm start finds history (0: none, like a new listing). 1s–30m reach
    /// back this many candles, and so do longer intervals, but never before 2017.
    #[arg(long, default_value_t = DEFAULT_HISTORY, value_parser = parse_history)]
    pub history: usize,
    /// Unsent output (MiB) per connection before it is dropped as too slow.
    #[arg(long, default_value_t = DEFAULT_MAX_OUTBOX_MB)]
    pub max_outbox_mb: usize,
}

fn parse_symbol(text: &str) -> Result<Symbol, String> {
    Symbol::new(text.trim()).map_err(|e| format!("{e}"))
}

fn parse_history(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= market::history::MAX_HISTORY_CANDLES => Ok(n),
        _ => Err(format!(
            "expected candles per series, from 0 to {}",
            market::history::MAX_HISTORY_CANDLES
        )),
    }
}

fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number".into()),
    }
}

fn parse_non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number >= 0".into()),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a fraction between 0 and 1".into()),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    crate::clock::parse_seconds(text, true)
}

impl From<&SimulateArgs> for SimConfig {
    fn from(a: &SimulateArgs) -> SimConfig {
        SimConfig {
            listen: a.listen,
            symbols: a.symbols.clone(),
            seed: a.seed,
            trade_rate: a.trade_rate,
            speed: a.speed,
            start_time_ms: a.start_time,
            ping_interval: a.ping_interval,
            pong_timeout: a.pong_timeout,
            pong_check: !a.no_pong_check,
            ignore_pongs: a.ignore_pongs,
            max_connection_age: a.max_connection_age,
            shutdown_grace: a.shutdown_grace,
            replay: a.replay.clone(),
            replay_speed: a.replay_speed,
            drop_every: a.drop_every,
            stall_every: a.stall_every,
            stall_for: a.stall_for,
            malformed_rate: a.malformed_rate,
            reject_streams: a.reject_streams.clone(),
            reject_streams_for: a.reject_streams_for,
            silent_streams: a.silent_streams.clone(),
            weight_limit: a.weight_limit,
            max_streams: a.max_streams,
            max_incoming_rate: a.max_incoming_rate,
            kline_push_ms: a.kline_push_ms,
            kline_phase: a.kline_phase,
            kline_history: a.kline_history,
            history: a.history,
            max_outbox_bytes: a.max_outbox_mb.saturating_mul(1024 * 1024),
        }
    }
}

impl SimulateArgs {
    pub fn to_config(&self) -> SimConfig {
        SimConfig::from(self)
    }
}

/// A running simulator. Dropping it stops it.
pub struct SimHandle {
    addr: SocketAddr,
    clock: SimClock,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
    /// The synthetic market's settings (none when replaying a capture).
    market: Option<MarketConfig>,
}

impl SimHandle {
    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn url_host(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        addr
    }

    /// `ws://127.0.0.1:PORT`: append `/stream?streams=…` or `/ws/<stream>`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.url_host())
    }

    /// `http://127.0.0.1:PORT`: append `/api/v3/…`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.url_host())
    }

    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    /// For each socket write that carried market events: the event time of the oldest
    /// of them → the write's return, ns; cumulative since the start.
    pub fn send_late(&self) -> hdrhistogram::Histogram<u64> {
        self.counters.send_late.snapshot()
    }

    /// The settings of the synthetic market it serves (none for a replay): a
    /// [`Market`] built from them makes the same events, so a test can rebuild the
    /// exchange's state at any point (its book at an update id).
    pub fn market_config(&self) -> Option<&MarketConfig> {
        self.market.as_ref()
    }

    /// The simulator's current simulated time, epoch milliseconds.
    pub fn sim_now_ms(&self) -> i64 {
        self.clock.sim_now_ms()
    }

    /// The clock bound an engine pointed at this simulator needs (`feed.exchange_speed`,
    /// `feed.max_clock_skew_ms`): the speed, rounded up, and `base_ms` plus how far the
    /// simulated clock is from ours now plus the lead it gains within `startup` (an
    /// engine's allowance grows only from its own start). `base_ms` 0 stays 0 (off).
    pub fn clock_settings(&self, base_ms: u64, startup: Duration) -> (u32, u64) {
        let speed = self.clock.speed().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        if base_ms == 0 {
            return (speed, 0);
        }
        let distance_ms = (self.sim_now_ms() - crate::clock::wall_ms()).unsigned_abs();
        let gained_ms = (startup.as_secs_f64() * 1000.0 * (f64::from(speed) - 1.0)) as u64;
        let skew = base_ms
            .saturating_add(distance_ms)
            .saturating_add(gained_ms);
        (speed, skew.min(crate::config::MAX_CLOCK_SKEW_MS))
    }

    /// Stops serving, closes every connection and joins the simulator thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if let Err(e) = thread.join() {
                tracing::warn!(error = %e, "simulator thread ended with an error");
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds, starts the simulator thread and returns once it is listening. Call it from
/// a plain thread (it blocks briefly while the executor starts).
pub fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    config.validate()?;
    let playback = match &config.replay {
        Some(path) => Some(replay::Playback::from_source(
            replay::open(path)?,
            config.replay_speed,
        )?),
        None => None,
    };
    let clock = SimClock::new(config.start_time_ms, config.speed);
    let market_config = playback.is_none().then(|| MarketConfig {
        symbols: config.symbols.clone(),
        seed: config.seed,
        trade_rate: config.trade_rate,
        start_time_ms: clock.start_ns().div_euclid(1_000_000),
        kline_push_ms: config.kline_push_ms,
        kline_phase: config.kline_phase,
        history_limit: config.kline_history,
        history_candles: config.history,
    });
    let market = market_config.as_ref().map(Market::new);
    let settings = Settings {
        ping_interval: config.ping_interval,
        pong_timeout: config.pong_timeout,
        pong_check: config.pong_check,
        ignore_pongs: config.ignore_pongs,
        max_connection_age: config.max_connection_age,
        shutdown_grace: config.shutdown_grace,
        max_streams: config.max_streams,
        max_incoming_rate: config.max_incoming_rate,
        max_outbox_bytes: config.max_outbox_bytes,
        faults: FaultPlan {
            drop_every: config.drop_every,
            stall_every: config.stall_every,
            stall_for: config.stall_for,
            malformed_rate: config.malformed_rate,
            seed: config.seed,
            reject_streams: config.reject_streams.clone(),
            reject_for: config.reject_streams_for,
            silent_streams: config.silent_streams.clone(),
        },
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let (ready_tx, ready_rx) = mpsc::channel();
    let startup = server::Startup {
        listen: config.listen,
        settings,
        clock,
        market,
        playback,
        weight_limit: config.weight_limit,
        stop: stop.clone(),
        counters: counters.clone(),
        ready: ready_tx,
    };
    // The market and the playback are plain data: they move to the executor thread.
    let thread = LocalExecutorBuilder::new(Placement::Unbound)
        .name("alphapulse-sim")
        .io_memory(SIM_IO_MEMORY_BYTES)
        .spawn(move || server::run(startup))
        .map_err(|e| SimError::Runtime(e.to_string()))?;
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(addr)) => Ok(SimHandle {
            addr,
            clock,
            stop,
            counters,
            thread: Some(thread),
            market: market_config,
        }),
        Ok(Err(reason)) => {
            let _ = thread.join();
            Err(SimError::Bind {
                addr: config.listen,
                reason,
            })
        }
        Err(_) => {
            stop.store(true, Ordering::Release);
            let reason = match thread.join() {
                Err(e) => e.to_string(),
                Ok(()) => "the simulator thread did not report".to_string(),
            };
            Err(SimError::Runtime(reason))
        }
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// `alphapulse simulate`: runs until Ctrl-C or SIGTERM. The first line on stdout is
/// `simulator listening on ws://HOST:PORT`, for scripts.
pub fn run_cli(args: SimulateArgs) -> anyhow::Result<()> {
    let handle = start(SimConfig::from(&args))?;
    println!("simulator listening on {}", handle.ws_url());
    eprintln!(
        "REST on {}; streams on {}/stream?streams=… and {}/ws/<stream>; Ctrl-C stops",
        handle.rest_url(),
        handle.ws_url(),
        handle.ws_url()
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    while !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = handle.stats();
    handle.stop();
    eprintln!("simulator stopped: {stats:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn flags_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--symbols",
            "btcusdt,SOLUSDT",
            "--speed",
            "60",
            "--ping-interval",
            "0.5",
            "--no-pong-check",
            "--drop-every",
            "3",
            "--malformed-rate",
            "0.25",
            "--max-outbox-mb",
            "8",
            "--kline-phase",
            "spread",
        ])
        .unwrap();
        let c = cli.args.to_config();
        assert_eq!(
            c.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["BTCUSDT", "SOLUSDT"]
        );
        assert_eq!(c.speed, 60.0);
        assert_eq!(c.ping_interval, Duration::from_millis(500));
        assert!(!c.pong_check && !c.ignore_pongs);
        assert_eq!(c.drop_every, Some(Duration::from_secs(3)));
        assert_eq!(c.max_outbox_bytes, 8 << 20);
        assert_eq!(c.kline_push_ms, 2000);
        assert_eq!(c.kline_phase, KlinePhase::Spread);
        assert_eq!(c.max_streams, 1024);
        assert!(c.validate().is_ok());
        let defaults = Cli::try_parse_from(["simulate"]).unwrap().args.to_config();
        assert_eq!(defaults.listen.port(), 9443);
        assert_eq!(defaults.kline_phase, KlinePhase::Aligned);
        assert_eq!(defaults.pong_timeout, Duration::from_secs(60));
        assert_eq!(defaults.max_connection_age, Duration::from_secs(86_400));
        for bad in [
            ["simulate", "--speed", "0"],
            ["simulate", "--malformed-rate", "2"],
            ["simulate", "--symbols", "BTC-USDT"],
            ["simulate", "--ping-interval", "-1"],
            ["simulate", "--kline-phase", "late"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let too_fast = SimConfig {
            speed: 1e9,
            ..SimConfig::default()
        };
        assert!(matches!(too_fast.validate(), Err(SimError::Config(_))));
    }
}
