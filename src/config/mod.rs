//! Configuration: parsed and validated once into [`Config`], then handed to each role.
//!
//! Runs on the main thread before any executor starts; no role ever reads the
//! environment or a file for its settings. In: an optional TOML file and a map of
//! environment variables (the CLI merges the process environment over a `.env` file and
//! passes the result in). Out: one validated [`Config`], or one [`ConfigError`] line
//! naming the key, the bad value and what is allowed.
//!
//! Precedence, highest first: environment, `.env`, TOML file, built-in defaults.
//!
//! Every setting is described once, in one row of the [`Field`] table (`fields.rs`):
//! its place in [`Config`] (which is its TOML key), its default, its environment name
//! (if any) and its [`Rule`]. Loading, validation and `config print` all walk that
//! table, so a setting cannot be loadable but unchecked, or checked but unprintable.
//!
//! Layout: this file holds the types, loading and printing; `fields.rs` the settings
//! table; `value.rs` raw and typed values (and the redaction of secrets); `checks.rs`
//! each rule and the checks across settings; `keys.rs` the error for an unknown key (the
//! nearest known one); `origin.rs` where each value came from (`config print
//! --origin`); [`signals`] the `[signals]` table, whose per-timeframe sub-tables the
//! flat settings table cannot list; `tests.rs` the tests.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::market::{Interval, Symbol};
use crate::signals::params::SignalsConfig;

mod checks;
mod fields;
mod keys;
mod origin;
pub mod signals;
#[cfg(test)]
mod tests;
mod value;

use checks::Rule;
use fields::Field;
use value::{Raw, Setting};

pub use keys::nearest;
pub use origin::Origins;

/// Default `BINANCE_WS_URL`: Binance's spot market-data stream endpoint.
pub const DEFAULT_BINANCE_WS_URL: &str = "wss://stream.binance.com:9443";
/// Default `BINANCE_REST_URL`: Binance's spot REST endpoint (used for backfill).
pub const DEFAULT_BINANCE_REST_URL: &str = "https://api.binance.com";
/// Default `SYMBOLS`.
pub const DEFAULT_SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "ADAUSDT"];
/// Default `TIMEFRAMES`.
pub const DEFAULT_TIMEFRAMES: [Interval; 4] =
    [Interval::M1, Interval::M5, Interval::M15, Interval::H1];
/// Default `DASHBOARD_ADDR`: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_DASHBOARD_ADDR: &str = "127.0.0.1:8000";
/// Default `REDIS_CHANNEL_PREFIX`.
pub const DEFAULT_REDIS_CHANNEL_PREFIX: &str = "alphapulse";

/// Binance accepts at most 1024 streams on one connection.
pub const BINANCE_MAX_STREAMS_PER_CONNECTION: u64 = 1024;
/// Binance disconnects a connection that sends more than 5 messages per second.
pub const BINANCE_MAX_INCOMING_MSGS_PER_S: u64 = 5;
/// Binance rejects control messages of 4096 bytes or more.
pub const BINANCE_MAX_REQUEST_BYTES: u64 = 4096;
/// Binance closes every connection after 24 hours.
pub const BINANCE_MAX_CONNECTION_AGE_S: f64 = 86_400.0;

/// Most symbols one configuration may name. Binance lists a few thousand spot symbols;
/// this bound keeps per-symbol state and subscription plans bounded.
pub const MAX_SYMBOLS: usize = 4096;
/// Most connections the pool may hold. Binance allows 300 connection attempts per
/// 5 minutes per IP; 100 connections reconnecting twice in a bad minute stay under it.
pub const MAX_BINANCE_CONNECTIONS: u64 = 100;
/// Most dashboard clients: each holds a bounded send queue on the one dashboard core.
pub const MAX_WEBSOCKET_CLIENTS: u64 = 100_000;
/// Largest write batch: bigger batches only add latency to the database write.
pub const MAX_BATCH_SIZE: u64 = 100_000;
/// Largest ring between cores, in messages; rings are allocated up front per
/// shard→sink pair, so this bounds memory.
pub const MAX_QUEUE_SIZE: u64 = 1 << 20;
/// Most closed candles kept per (symbol, timeframe) in memory.
pub const MAX_RECENT_CANDLES: u64 = 100_000;
/// Most instances a deployment may be split into.
pub const MAX_INSTANCES: u64 = 1024;
/// Smallest SUBSCRIBE request that still fits one stream name with the JSON around it.
pub const MIN_SUBSCRIBE_BATCH_BYTES: u64 = 128;
/// Largest frame we may be told to accept: the parser's own limit, so one limit holds
/// from the socket to the parser (a larger frame would pass the WebSocket layer only to
/// be refused by the parser).
pub const MAX_FRAME_BYTES_LIMIT: u64 = crate::wire::Parser::MAX_FRAME_BYTES as u64;
/// Largest `feed.max_clock_skew_ms`: a year (366 days).
pub const MAX_CLOCK_SKEW_MS: u64 = 366 * 86_400_000;
/// Largest `feed.exchange_speed` (the simulator's speeds are far below).
pub const MAX_EXCHANGE_SPEED: u64 = 1_000_000;
/// Shortest dashboard token: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest dashboard token, so a header or query string stays small.
pub const MAX_TOKEN_LEN: usize = 256;
/// Shortest bridge key: 32 characters, so an HMAC-SHA256 key carries at least the
/// 128 bits of strength that guessing must not reach.
pub const MIN_KEY_LEN: usize = 32;
/// Most series (symbol, timeframe) the in-memory store may hold: a deployment's whole
/// universe at every interval with room, while a flood of forged series stays bounded.
pub const MAX_SERIES_LIMIT: u64 = 1 << 20;
/// Longest Redis channel prefix.
pub const MAX_CHANNEL_PREFIX_LEN: usize = 64;
/// Largest database spool: a bound well beyond any outage worth riding out in place
/// (a day of 1000 symbols x 4 timeframes is under 1 GiB), below typical disk sizes.
pub const MAX_SPOOL_BYTES: u64 = 1 << 40;

/// The whole effective configuration. Its `Debug` output is the redacted TOML of
/// `config print`, so logging a configuration never leaks the token or a password.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// PostgreSQL/TimescaleDB URL (`DATABASE_URL`); `None` keeps candles and signals
    /// in memory only.
    pub database_url: Option<String>,
    /// Redis URL (`REDIS_URL`); `None` publishes nowhere.
    pub redis_url: Option<String>,
    /// Seconds between status pushes on `/ws/status` (`WEBSOCKET_UPDATE_INTERVAL`).
    pub websocket_update_interval_s: f64,
    /// Most dashboard WebSocket clients at once (`WEBSOCKET_MAX_CLIENTS`).
    pub websocket_max_clients: usize,
    /// Most Binance WebSocket connections the pool spreads streams over
    /// (`BINANCE_MAX_CONNECTIONS`).
    pub binance_max_connections: usize,
    /// Rows per database write batch (`BATCH_SIZE`).
    pub batch_size: usize,
    /// Seconds a partial batch may wait before it is written anyway (`BATCH_TIMEOUT`).
    pub batch_timeout_s: f64,
    /// Capacity of each ring between cores, in messages (`MAX_QUEUE_SIZE`).
    pub max_queue_size: usize,
    /// Binance WebSocket base URL, `ws://` or `wss://` (`BINANCE_WS_URL`).
    pub binance_ws_url: String,
    /// Binance REST base URL, `http://` or `https://` (`BINANCE_REST_URL`).
    pub binance_rest_url: String,
    /// Symbols to follow, distinct, upper case (`SYMBOLS`).
    pub symbols: Vec<Symbol>,
    /// Kline intervals to follow, distinct (`TIMEFRAMES`).
    pub timeframes: Vec<Interval>,
    /// Address the dashboard listens on (`DASHBOARD_ADDR`).
    pub dashboard_addr: SocketAddr,
    /// Shard map file (`SHARD_MAP`); `None` plans the layout from the allowed cores.
    pub shard_map: Option<PathBuf>,
    /// Bearer token the dashboard API requires (`DASHBOARD_TOKEN`); `None` leaves it
    /// open, which is only sensible on loopback.
    pub dashboard_token: Option<String>,
    /// Origins allowed to open dashboard WebSockets, besides the dashboard's own
    /// (`DASHBOARD_ALLOWED_ORIGINS`, comma-separated).
    pub dashboard_allowed_origins: Vec<String>,
    /// Host names a dashboard without a token answers to, besides IP addresses,
    /// `localhost` and the allowed origins' hosts (`DASHBOARD_ALLOWED_HOSTS`,
    /// comma-separated): any other `Host` is refused, so a DNS-rebinding page cannot
    /// read an open dashboard.
    pub dashboard_allowed_hosts: Vec<String>,
    /// Prefix of every Redis channel name (`REDIS_CHANNEL_PREFIX`).
    pub redis_channel_prefix: String,
    /// Shared secret of the Redis bridge (`ALPHAPULSE_BRIDGE_KEY`, environment only):
    /// when set, every published record carries an HMAC-SHA256 and the bridge applies
    /// only records whose HMAC verifies. `None`: unsigned, as plain subscribers expect.
    pub redis_bridge_key: Option<String>,
    /// Extra root certificates (PEM) trusted for `rediss://`, besides the built-in ones
    /// (`REDIS_TLS_CA_FILE`): for a Redis with a private certificate authority.
    pub redis_tls_ca_file: Option<PathBuf>,
    /// Conflation window of the Redis trade channels, in ms
    /// (`REDIS_TRADES_CONFLATE_MS`): 0 publishes every trade; otherwise each symbol's
    /// latest trade and latest aggregate trade of each window are published at its end.
    pub redis_trades_conflate_ms: u64,
    /// Binance feed settings (`[feed]`).
    pub feed: FeedConfig,
    /// Engine-wide settings (`[engine]`).
    pub engine: EngineConfig,
    /// Dashboard server limits and options (`[dashboard]`).
    pub dashboard: DashboardConfig,
    /// Database writer settings (`[database]`).
    pub database: DatabaseConfig,
    /// Local order books (`[books]`).
    pub books: BooksConfig,
    /// Indicators, signal rules and warm start (`[signals]`, read by [`signals`]).
    pub signals: SignalsConfig,
}

/// Dashboard server settings: limits that keep one core serving many clients, TLS, and
/// the conformance endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Serve `/ws/echo` (echoes every message) for WebSocket conformance runs
    /// (`--conformance-echo`). Off in production: it is an open echo service.
    pub conformance_echo: bool,
    /// Allow binding a non-loopback `DASHBOARD_ADDR` without `DASHBOARD_TOKEN`
    /// (`DASHBOARD_ALLOW_PUBLIC`), e.g. behind an authenticating proxy.
    pub allow_public_without_token: bool,
    /// PEM certificate chain for HTTPS/WSS (`DASHBOARD_TLS_CERT`); with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS/WSS (`DASHBOARD_TLS_KEY`); with `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Largest WebSocket message a client may send; larger closes with 1009.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame a client may send; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Messages a client may have waiting to be sent; past this it is disconnected
    /// (close 1008) rather than holding memory for a reader that does not keep up.
    pub client_queue_messages: usize,
    /// Open connections (HTTP and WebSocket) from one IP address.
    pub max_connections_per_ip: usize,
    /// Commands per second one WebSocket client may send; faster closes with 1008.
    pub max_inbound_msgs_per_s: u32,
}

/// Database writer settings (used only with `DATABASE_URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// Apply the migrations when the engine starts (`alphapulse migrate` always does).
    pub migrate_on_start: bool,
    /// Directory of the on-disk spool that holds batches while the database is away.
    pub spool_dir: PathBuf,
    /// Bound of the spool; past it new batches are dropped, counted and logged.
    pub spool_max_bytes: u64,
    /// Also upsert in-progress candles (conflated per candle within each batch).
    pub live_candles: bool,
    /// Store every trade and aggregate trade received (`trades`, `agg_trades`), never
    /// lost, like closed candles; they arrive only when `[feed.streams] trade` or
    /// `agg_trade` is on.
    pub store_trades: bool,
    /// TimescaleDB: compress chunks older than this many days; 0 disables compression.
    pub compress_after_days: u32,
    /// TimescaleDB: drop chunks older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// First delay before reconnecting to the database; doubles (with jitter).
    pub retry_initial_ms: u64,
    /// Cap of the reconnect delay.
    pub retry_max_ms: u64,
    /// How the writer sends a batch: binary `COPY` or one array upsert per table.
    pub write_method: WriteMethod,
    /// Keep the writer's and the query worker's connections open between uses; false
    /// opens one per batch or read and closes it at once, for a server that serves one
    /// connection at a time (PGlite).
    pub hold_connections: bool,
    /// `statement_timeout` of the writer's session: a longer statement is cancelled,
    /// its batch spooled and retried.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of the writer's session: a write that waits longer for a lock is
    /// cancelled, its batch spooled and retried.
    pub lock_timeout_ms: u64,
    /// Bound of the dead-letter file (`dead-letter.jsonl` in the spool directory) where
    /// rows the database refuses are kept; past it they are counted only.
    pub dead_letter_max_bytes: u64,
}

/// Local order books kept from the diff depth stream (`[books]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BooksConfig {
    /// Symbols to keep a book for (`BOOK_SYMBOLS`); each must be followed, and
    /// `feed.streams.diff_depth_ms` set. Empty: no books.
    pub symbols: Vec<Symbol>,
    /// Levels kept per side; beyond them the book is cut (and refilled from a snapshot
    /// when its published top runs short). The snapshot asked for is the smallest of
    /// Binance's limits (100, 500, 1000, 5000) that holds this many.
    pub max_levels: usize,
    /// Levels per side published to the dashboard, Redis and `/api/book`.
    pub top_levels: usize,
    /// Least time between two publications of one book, ms: changes in between are
    /// conflated into the next.
    pub publish_ms: u64,
}

/// A setting that is on, off, or left to the engine to decide from the host (`auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Auto,
    On,
    Off,
}

impl Switch {
    /// `On` or `Off` as `flag` says.
    pub fn from_flag(flag: bool) -> Switch {
        if flag {
            Switch::On
        } else {
            Switch::Off
        }
    }

    /// Whether it is on, `auto` deciding as `decide` says.
    pub fn resolve(self, decide: impl FnOnce() -> bool) -> bool {
        match self {
            Switch::Auto => decide(),
            Switch::On => true,
            Switch::Off => false,
        }
    }
}

/// How the database writer sends a batch (`database.write_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    /// Binary `COPY` into per-connection staging tables, then one upsert per table.
    Copy,
    /// One `INSERT … SELECT … FROM unnest(…) ON CONFLICT` per table: no `COPY`
    /// sub-protocol and no staging table, for servers without `COPY FROM STDIN`.
    Unnest,
}

impl WriteMethod {
    /// Every method's name, as `database.write_method` takes it.
    pub const NAMES: &'static [&'static str] = &["copy", "unnest"];

    pub fn parse(name: &str) -> Option<WriteMethod> {
        match name {
            "copy" => Some(WriteMethod::Copy),
            "unnest" => Some(WriteMethod::Unnest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Copy => "copy",
            WriteMethod::Unnest => "unnest",
        }
    }
}

/// Which Binance streams to subscribe to for every symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamKinds {
    /// `<symbol>@kline_<tf>` for every configured timeframe.
    pub kline: bool,
    /// `<symbol>@trade`: every trade.
    pub trade: bool,
    /// `<symbol>@aggTrade`: trades aggregated by price and taker side.
    pub agg_trade: bool,
    /// `<symbol>@bookTicker`: best bid and offer.
    pub book_ticker: bool,
    /// `<symbol>@depth` (diff depth); `Some(100)` for `@depth@100ms`, `Some(1000)` for 1 s.
    pub diff_depth_ms: Option<u32>,
    /// `<symbol>@depth<levels>` partial book depth (5, 10 or 20 levels).
    pub partial_depth_levels: Option<u32>,
}

/// Binance feed settings (limits are Binance's, defaults stay under them).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    /// Which streams every symbol gets (`[feed.streams]`).
    pub streams: StreamKinds,
    /// Streams per connection; Binance allows 1024.
    pub max_streams_per_connection: usize,
    /// Messages we send per second per connection (subscribes + pongs); Binance allows 5.
    pub max_outgoing_msgs_per_s: u32,
    /// Largest SUBSCRIBE request, bytes; Binance requires under 4096.
    pub subscribe_batch_bytes: usize,
    /// Ask for microsecond timestamps (`timeUnit=MICROSECOND`).
    pub time_unit_microsecond: bool,
    /// Rotate a connection (make-before-break) when it reaches this age; Binance: 24 h.
    pub max_connection_age_s: f64,
    /// How long the old and new connection overlap during a rotation.
    pub rotation_overlap_s: f64,
    /// REST request weight per minute this process may use, of Binance's 6,000 (warm
    /// starts and backfill share it; the rest is left to other clients of the IP).
    pub rest_weight_per_minute: u64,
    /// How long a series' signals wait for the backfill of a gap before computing
    /// across it (closed candles are stored either way).
    pub backfill_hold_s: f64,
    /// A connection that delivers nothing for this long is dropped by the watchdog.
    pub silence_timeout_s: f64,
    /// A subscribed kline stream without an update for this long is flagged silent in
    /// `/api/status`, `/readyz` and `/metrics` (its connection may be fine: Binance
    /// stopped sending that stream). Trade and depth streams may be quiet: not flagged.
    pub stream_silence_s: f64,
    /// First reconnect delay after a failure; doubles (with jitter) on each failure.
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay.
    pub backoff_max_ms: u64,
    /// A connection must stay up this long before the backoff resets.
    pub backoff_stable_s: f64,
    /// Largest frame (and message) accepted from the exchange; at most the parser's
    /// limit ([`MAX_FRAME_BYTES_LIMIT`], 1 MiB).
    pub max_frame_bytes: usize,
    /// How far (ms) an exchange event time (and a REST kline's open time) may be from
    /// our wall clock; events beyond it are dropped and counted
    /// (`clock_skew_drops_by_reason`), REST rows too. 0 checks nothing (replays of old
    /// captures).
    pub max_clock_skew_ms: u64,
    /// How many times as fast as ours the exchange's clock runs: 1 for Binance, the
    /// simulator's `--speed` for an accelerated one. The skew allowed grows by
    /// `(speed - 1)` times the time since the engine started.
    pub exchange_speed: u32,
    /// Start the replacement connection this long before `max_connection_age_s`, so the
    /// old one is retired before Binance cuts it. Must exceed `rotation_overlap_s`.
    pub rotate_before_s: f64,
    /// A PEM file of extra root certificates trusted for `wss://`, besides the built-in
    /// (webpki) roots: for TLS-intercepting proxies and private test exchanges.
    pub tls_ca_file: Option<PathBuf>,
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Pin role threads to cores (off for laptops and containers).
    pub pin_cores: bool,
    /// Consumers spin on their rings instead of parking until a producer rings: the
    /// lowest hop between cores, at the price of a whole core each. Only for isolated
    /// cores (the bare-metal shard map turns it on); off by default.
    pub busy_poll: bool,
    /// Whether the dashboard runs on the first shard's executor instead of a thread of
    /// its own: the shard's records then reach it without a wake-up across cores (the
    /// cost of one update arriving alone on a host where waking a core is expensive), at
    /// the price of its fan-out work sharing the shard's core. `Auto` (the default)
    /// does so where the dashboard would have no core of its own and every record it
    /// serves comes from that one shard (see `topology::plan`).
    pub dashboard_on_shard: Switch,
    /// Closed candles kept per (symbol, timeframe) by the in-memory store.
    pub recent_candles: usize,
    /// Series (symbol, timeframe) the in-memory store holds at most; past it a new
    /// series is refused and counted, existing ones keep updating. At least this
    /// instance's own series.
    pub max_series: usize,
    /// Instance slice for scale-out: this process takes symbols whose stable hash
    /// modulo `instance_count` equals `instance_index`.
    pub instance_index: u32,
    /// How many instances share the symbols (see `instance_index`).
    pub instance_count: u32,
}

impl FeedConfig {
    /// The bound on exchange times these settings give, the speed's allowance growing
    /// from monotonic time `since_mono_ns` (the engine's start).
    pub fn clock_bound(&self, since_mono_ns: u64) -> crate::clock::ClockBound {
        crate::clock::ClockBound {
            max_skew_ms: self.max_clock_skew_ms,
            speed: f64::from(self.exchange_speed),
            since_mono_ns,
        }
    }
}

impl StreamKinds {
    /// How many streams one symbol needs with `timeframes` kline intervals.
    pub fn per_symbol(&self, timeframes: usize) -> usize {
        let flag = |on: bool| usize::from(on);
        (if self.kline { timeframes } else { 0 })
            + flag(self.trade)
            + flag(self.agg_trade)
            + flag(self.book_ticker)
            + flag(self.diff_depth_ms.is_some())
            + flag(self.partial_depth_levels.is_some())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_toml_redacted())
    }
}

/// A configuration problem, displayed as one line that names the key, the bad value
/// and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or lies outside its allowed range.
    #[error("{key}={value}: {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    /// Two settings contradict each other, or together exceed a limit.
    #[error("{key}: {problem}")]
    Conflict { key: String, problem: String },
    /// The TOML file names a key we do not know; `hint` is ` (did you mean …?)` when a
    /// known key is close, or empty.
    #[error("unknown key {key} in {file}{hint}; allowed here: {allowed}")]
    UnknownKey {
        key: String,
        file: String,
        hint: String,
        allowed: String,
    },
    /// The TOML file is not valid TOML.
    #[error("{file} line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// The TOML file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `.env` file could not be read or parsed.
    #[error("{path}: {message}; fix the line or remove the file")]
    DotEnv { path: PathBuf, message: String },
}

/// Loads the effective configuration: defaults, then the TOML file at `toml_path`, then
/// `env` (the process environment already merged over `.env`, see [`layer_env`]).
pub fn load(
    toml_path: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Config, ConfigError> {
    load_with_origins(toml_path, env, &HashSet::new()).map(|(config, _)| config)
}

/// [`load`], also telling where each value came from (for `config print --origin`):
/// `from_dotenv` names the variables of `env` whose value came from the `.env` file.
pub fn load_with_origins(
    toml_path: Option<&Path>,
    env: &HashMap<String, String>,
    from_dotenv: &HashSet<String>,
) -> Result<(Config, Origins), ConfigError> {
    let mut config = Config::default();
    let mut origins = Origins::default();
    if let Some(path) = toml_path {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = path.display().to_string();
        origins.file_keys = apply_toml(&mut config, &text, &file)?;
        origins.file = Some(file);
    }
    let from_env = apply_env(&mut config, env)?;
    config.check(&from_env)?;
    origins.from_env = from_env;
    origins.from_dotenv = from_dotenv.clone();
    Ok((config, origins))
}

/// Every setting an environment variable sets, in the settings table's order: the
/// variable and the TOML key it overrides (or that it is read from the environment only).
pub fn env_settings() -> Vec<(&'static str, String)> {
    Field::ALL
        .iter()
        .filter_map(|f| {
            let what = match f.rule() {
                Rule::Key => format!("{} (environment only)", f.toml_key()),
                _ => f.toml_key().to_owned(),
            };
            Some((f.env_name()?, what))
        })
        .collect()
}

/// Merges the process environment over the variables of a `.env` file: the process
/// environment wins, as in every dotenv implementation.
pub fn layer_env(
    dotenv: HashMap<String, String>,
    process: HashMap<String, String>,
) -> HashMap<String, String> {
    let mut merged = dotenv;
    merged.extend(process);
    merged
}

/// The instance, of `count`, that owns `symbol`: its stable hash modulo `count`. The
/// one rule that splits the symbols of a deployment; the planner (through
/// [`Config::instance_symbols`]) and the Redis bridge both ask it.
pub fn instance_of(symbol: Symbol, count: u32) -> u32 {
    // The remainder is below `count`, a u32.
    (symbol.stable_hash() % u64::from(count.max(1))) as u32
}

impl Config {
    /// Parses a TOML document over the defaults and validates the result (no
    /// environment involved).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        apply_toml(&mut config, text, "the configuration")?;
        config.check(&HashSet::new())?;
        Ok(config)
    }

    /// Checks every value and every relation between values. [`load`] and
    /// [`Config::from_toml_str`] call this; code that builds a `Config` by hand may too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&HashSet::new())
    }

    /// The symbols this instance owns: those whose stable hash modulo `instance_count`
    /// equals `instance_index`, in configuration order.
    pub fn instance_symbols(&self) -> Vec<Symbol> {
        let (index, count) = (self.engine.instance_index, self.engine.instance_count);
        self.symbols
            .iter()
            .copied()
            .filter(|s| instance_of(*s, count) == index)
            .collect()
    }

    /// Streams this instance subscribes to in total.
    pub fn instance_stream_count(&self) -> usize {
        self.instance_symbols().len() * self.feed.streams.per_symbol(self.timeframes.len())
    }

    /// The effective configuration as TOML that [`load`] accepts back. Passwords in
    /// URLs are replaced by `REDACTED`; the dashboard token is left out (as a comment),
    /// so the output is safe to paste into a ticket.
    pub fn to_toml_redacted(&self) -> String {
        self.render_toml(None)
    }

    /// [`Config::to_toml_redacted`] with a trailing comment on each value saying where
    /// it came from (`# default`, `# from file (c.toml)`, `# from .env (BATCH_SIZE)`,
    /// `# from env (BATCH_SIZE)`); unset values are listed as comments. [`load`] still
    /// accepts it back.
    pub fn to_toml_with_origins(&self, origins: &Origins) -> String {
        self.render_toml(Some(origins))
    }

    fn render_toml(&self, origins: Option<&Origins>) -> String {
        let note = |field: Field| match origins {
            Some(o) => format!("  # {}", o.of_field(field)),
            None => String::new(),
        };
        let mut out = String::from(
            "# Effective AlphaPulse configuration (`alphapulse config print`).\n\
             # Secrets are redacted: URL passwords read REDACTED and the dashboard token is omitted.\n",
        );
        for table in TABLES {
            if !table.is_empty() {
                out.push_str(&format!("\n[{table}]\n"));
            }
            for field in Field::ALL.iter().filter(|f| f.table() == table) {
                let name = field.leaf();
                let rule = field.rule();
                let setting = field.get(self);
                if matches!(rule, Rule::Token | Rule::Key) {
                    if let (Setting::Text(Some(_)), Some(env)) = (setting, field.env_name()) {
                        out.push_str(&format!(
                            "# {name} is set but not shown; supply it with {env}.{}\n",
                            note(*field)
                        ));
                    }
                    continue;
                }
                match setting.to_toml(&rule) {
                    Some(value) => out.push_str(&format!("{name} = {value}{}\n", note(*field))),
                    None if origins.is_some() => {
                        out.push_str(&format!("# {name} is unset{}\n", note(*field)))
                    }
                    None => {}
                }
            }
        }
        match origins {
            Some(o) => out.push_str(&signals::render(&self.signals, &|name| {
                format!("  # {}", o.of_signal(name))
            })),
            None => out.push_str(&signals::to_toml(&self.signals)),
        }
        out
    }
}

/// Applies a TOML document over `config`, rejecting unknown keys; returns the keys it
/// set.
fn apply_toml(config: &mut Config, text: &str, file: &str) -> Result<FileKeys, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1),
        message: e.message().replace('\n', " "),
    })?;
    // `[signals]` has a table per timeframe, which the flat field table cannot list:
    // its own module reads it.
    let mut keys = FileKeys::default();
    if let Some(value) = table.remove("signals") {
        keys.signals = signals::apply_toml(&mut config.signals, &value, file)?;
    }
    let mut entries = Vec::new();
    collect_entries(&table, "", file, &mut entries)?;
    for (field, value) in entries {
        field.assign(config, Raw::Toml(value))?;
        keys.fields.insert(field);
    }
    Ok(keys)
}

/// The settings a configuration file set: fields of the settings table, and the dotted
/// names of `[signals]` keys.
#[derive(Debug, Default)]
struct FileKeys {
    fields: HashSet<Field>,
    signals: HashSet<String>,
}

/// Walks a parsed TOML table against the [`Field`] table. Every key must be a known
/// setting or one of the known sub-tables; anything else is an error naming the key
/// (the same effect as serde's `deny_unknown_fields`, with the full dotted key).
fn collect_entries<'a>(
    table: &'a toml::Table,
    prefix: &str,
    file: &str,
    out: &mut Vec<(Field, &'a toml::Value)>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let Some(field) = Field::ALL.iter().find(|f| f.toml_key() == path) {
            if matches!(field.rule(), Rule::Key) {
                return Err(ConfigError::Invalid {
                    key: path,
                    value: "<redacted>".to_owned(),
                    expected: format!(
                        "a secret is never read from {file}; set {} in the environment",
                        field.env_name().unwrap_or("its variable")
                    ),
                });
            }
            out.push((*field, value));
        } else if TABLES.contains(&path.as_str()) {
            let Some(inner) = value.as_table() else {
                return Err(ConfigError::Invalid {
                    key: path.clone(),
                    value: value.to_string(),
                    expected: format!("expected a table ([{path}])"),
                });
            };
            collect_entries(inner, &path, file, out)?;
        } else {
            let mut allowed: Vec<&str> = Field::ALL
                .iter()
                .filter(|f| f.table() == prefix)
                .map(|f| f.leaf())
                .collect();
            allowed.extend(
                TABLES
                    .iter()
                    .filter(|t| table_parent(t) == Some(prefix))
                    .map(|t| t.rsplit('.').next().unwrap_or(t)),
            );
            if prefix.is_empty() {
                allowed.push("signals");
            }
            return Err(keys::unknown_key(&path, file, &allowed));
        }
    }
    Ok(())
}

/// Applies every known environment variable in `env`; returns which fields it set, so
/// errors found later name the variable the user actually wrote.
fn apply_env(
    config: &mut Config,
    env: &HashMap<String, String>,
) -> Result<HashSet<Field>, ConfigError> {
    let mut from_env = HashSet::new();
    for &field in Field::ALL {
        let Some(name) = field.env_name() else {
            continue;
        };
        if let Some(value) = env.get(name) {
            field.assign(config, Raw::Env(value))?;
            from_env.insert(field);
        }
    }
    Ok(from_env)
}

/// The TOML tables, in print order; `""` is the top level.
const TABLES: [&str; 7] = [
    "",
    "feed",
    "feed.streams",
    "engine",
    "dashboard",
    "database",
    "books",
];

fn table_parent(table: &str) -> Option<&str> {
    if table.is_empty() {
        return None;
    }
    Some(
        table
            .rsplit_once('.')
            .map(|(parent, _)| parent)
            .unwrap_or(""),
    )
}

impl fmt::Display for StreamKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds = Vec::new();
        if self.kline {
            kinds.push("kline".to_owned());
        }
        if self.trade {
            kinds.push("trade".to_owned());
        }
        if self.agg_trade {
            kinds.push("aggTrade".to_owned());
        }
        if self.book_ticker {
            kinds.push("bookTicker".to_owned());
        }
        if let Some(ms) = self.diff_depth_ms {
            kinds.push(format!("depth@{ms}ms"));
        }
        if let Some(levels) = self.partial_depth_levels {
            kinds.push(format!("depth{levels}"));
        }
        f.write_str(&kinds.join(", "))
    }
}
