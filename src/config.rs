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
//! Every setting is described once, in the [`Field`] table: its TOML key, its
//! environment name (if any) and its [`Rule`]. Loading, validation and `config print`
//! all walk that table, so a setting cannot be loadable but unchecked, or checked but
//! unprintable.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::market::{Interval, Symbol};

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
/// Largest frame we may be told to accept; larger settings only invite memory blow-ups.
pub const MAX_FRAME_BYTES_LIMIT: u64 = 64 << 20;
/// Shortest dashboard token: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest dashboard token, so a header or query string stays small.
pub const MAX_TOKEN_LEN: usize = 256;
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
    /// Prefix of every Redis channel name (`REDIS_CHANNEL_PREFIX`).
    pub redis_channel_prefix: String,
    /// Binance feed settings (`[feed]`).
    pub feed: FeedConfig,
    /// Engine-wide settings (`[engine]`).
    pub engine: EngineConfig,
    /// Dashboard server limits and options (`[dashboard]`).
    pub dashboard: DashboardConfig,
    /// Database writer settings (`[database]`).
    pub database: DatabaseConfig,
    /// Indicators, signal rules and warm start (`[signals]`, see
    /// [`crate::signals::params`]).
    pub signals: crate::signals::params::SignalsConfig,
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

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            conformance_echo: false,
            allow_public_without_token: false,
            tls_cert_file: None,
            tls_key_file: None,
            // Commands are small JSON objects: 64 KiB is generous and bounds the memory
            // a client can make the server hold while it assembles a message.
            max_message_bytes: 64 << 10,
            max_frame_bytes: 16 << 10,
            // Ten seconds of backlog at 100 broadcasts/s; frames are shared, so each
            // entry costs a pointer, not a copy.
            client_queue_messages: 1024,
            // A few browser tabs and tools per address; fan-out benchmarks raise it.
            max_connections_per_ip: 64,
            // A person or a tool sends a handful of commands; more is a flood.
            max_inbound_msgs_per_s: 20,
        }
    }
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
    /// TimescaleDB: compress chunks older than this many days; 0 disables compression.
    pub compress_after_days: u32,
    /// TimescaleDB: drop chunks older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// First delay before reconnecting to the database; doubles (with jitter).
    pub retry_initial_ms: u64,
    /// Cap of the reconnect delay.
    pub retry_max_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            migrate_on_start: true,
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 1 << 30,
            live_candles: false,
            compress_after_days: 7,
            retention_days: 0,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
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
    /// First reconnect delay after a failure; doubles (with jitter) on each failure.
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay.
    pub backoff_max_ms: u64,
    /// A connection must stay up this long before the backoff resets.
    pub backoff_stable_s: f64,
    /// Largest frame accepted from the exchange.
    pub max_frame_bytes: usize,
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
    /// Closed candles kept per (symbol, timeframe) by the in-memory store.
    pub recent_candles: usize,
    /// Instance slice for scale-out: this process takes symbols whose stable hash
    /// modulo `instance_count` equals `instance_index`.
    pub instance_index: u32,
    /// How many instances share the symbols (see `instance_index`).
    pub instance_count: u32,
}

impl Default for StreamKinds {
    fn default() -> Self {
        StreamKinds {
            kline: true,
            trade: false,
            agg_trade: false,
            book_ticker: false,
            diff_depth_ms: None,
            partial_depth_levels: None,
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

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            streams: StreamKinds::default(),
            // Well under Binance's 1024, so one connection's loss hurts fewer streams
            // and the subscription burst after a reconnect is short.
            max_streams_per_connection: 200,
            // One under Binance's 5, leaving room for a pong in the same second.
            max_outgoing_msgs_per_s: 4,
            subscribe_batch_bytes: 3072,
            time_unit_microsecond: false,
            max_connection_age_s: BINANCE_MAX_CONNECTION_AGE_S,
            rotation_overlap_s: 5.0,
            rest_weight_per_minute: 3000,
            backfill_hold_s: 30.0,
            // Binance pings every 20 s, so a live connection is never silent for 30 s.
            silence_timeout_s: 30.0,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            backoff_stable_s: 60.0,
            max_frame_bytes: 1 << 20,
            rotate_before_s: 300.0,
            tls_ca_file: None,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pin_cores: true,
            busy_poll: false,
            recent_candles: 1000,
            instance_index: 0,
            instance_count: 1,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_toml_redacted())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            redis_url: None,
            websocket_update_interval_s: 3.0,
            websocket_max_clients: 1000,
            binance_max_connections: 5,
            batch_size: 50,
            batch_timeout_s: 0.1,
            max_queue_size: 10_000,
            binance_ws_url: DEFAULT_BINANCE_WS_URL.to_owned(),
            binance_rest_url: DEFAULT_BINANCE_REST_URL.to_owned(),
            symbols: DEFAULT_SYMBOLS
                .iter()
                .filter_map(|s| Symbol::new(s).ok())
                .collect(),
            timeframes: DEFAULT_TIMEFRAMES.to_vec(),
            dashboard_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            shard_map: None,
            dashboard_token: None,
            dashboard_allowed_origins: Vec::new(),
            redis_channel_prefix: DEFAULT_REDIS_CHANNEL_PREFIX.to_owned(),
            feed: FeedConfig::default(),
            engine: EngineConfig::default(),
            dashboard: DashboardConfig::default(),
            database: DatabaseConfig::default(),
            signals: crate::signals::params::SignalsConfig::default(),
        }
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
    /// The TOML file names a key we do not know.
    #[error("unknown key {key} in {file}; allowed here: {allowed}")]
    UnknownKey {
        key: String,
        file: String,
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
    let mut config = Config::default();
    if let Some(path) = toml_path {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        apply_toml(&mut config, &text, &path.display().to_string())?;
    }
    let from_env = apply_env(&mut config, env)?;
    config.check(&from_env)?;
    Ok(config)
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
        let count = u64::from(self.engine.instance_count.max(1));
        let index = u64::from(self.engine.instance_index);
        self.symbols
            .iter()
            .copied()
            .filter(|s| s.stable_hash() % count == index)
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
                if matches!(rule, Rule::Token) {
                    if let Setting::Text(Some(_)) = setting {
                        out.push_str(&format!(
                            "# {name} is set but not shown; supply it with DASHBOARD_TOKEN.\n"
                        ));
                    }
                    continue;
                }
                if let Some(value) = setting.to_toml(&rule) {
                    out.push_str(&format!("{name} = {value}\n"));
                }
            }
        }
        out.push_str(&self.signals.to_toml());
        out
    }

    fn check(&self, from_env: &HashSet<Field>) -> Result<(), ConfigError> {
        for field in Field::ALL {
            let setting = field.get(self);
            if let Err(problem) = field.rule().check(&setting) {
                let expected = match problem {
                    Why::Type => field.rule().expected(),
                    Why::Detail(detail) => detail,
                };
                return Err(ConfigError::Invalid {
                    key: field.name(from_env).to_owned(),
                    value: setting.render(field, from_env),
                    expected,
                });
            }
        }
        self.check_relations(from_env)
    }

    fn check_relations(&self, from_env: &HashSet<Field>) -> Result<(), ConfigError> {
        let name = |f: Field| f.name(from_env);
        let engine = &self.engine;
        if engine.instance_index >= engine.instance_count {
            return Err(ConfigError::Invalid {
                key: name(Field::InstanceIndex).to_owned(),
                value: engine.instance_index.to_string(),
                expected: format!(
                    "expected less than {} ({}): instances are numbered from 0",
                    name(Field::InstanceCount),
                    engine.instance_count
                ),
            });
        }
        let feed = &self.feed;
        if feed.backoff_initial_ms > feed.backoff_max_ms {
            return Err(ConfigError::Invalid {
                key: name(Field::BackoffInitialMs).to_owned(),
                value: feed.backoff_initial_ms.to_string(),
                expected: format!(
                    "expected at most {} ({})",
                    name(Field::BackoffMaxMs),
                    feed.backoff_max_ms
                ),
            });
        }
        let db = &self.database;
        if db.retry_initial_ms > db.retry_max_ms {
            return Err(ConfigError::Invalid {
                key: name(Field::DbRetryInitialMs).to_owned(),
                value: db.retry_initial_ms.to_string(),
                expected: format!(
                    "expected at most {} ({})",
                    name(Field::DbRetryMaxMs),
                    db.retry_max_ms
                ),
            });
        }
        if feed.rotate_before_s >= feed.max_connection_age_s {
            return Err(ConfigError::Invalid {
                key: name(Field::RotateBeforeS).to_owned(),
                value: feed.rotate_before_s.to_string(),
                expected: format!(
                    "expected less than {} ({})",
                    name(Field::MaxConnectionAgeS),
                    feed.max_connection_age_s
                ),
            });
        }
        if feed.rotation_overlap_s >= feed.rotate_before_s {
            return Err(ConfigError::Invalid {
                key: name(Field::RotationOverlapS).to_owned(),
                value: feed.rotation_overlap_s.to_string(),
                expected: format!(
                    "expected less than {} ({}), so the old connection closes before Binance cuts it",
                    name(Field::RotateBeforeS),
                    feed.rotate_before_s
                ),
            });
        }
        if feed.streams.per_symbol(self.timeframes.len()) == 0 {
            return Err(ConfigError::Conflict {
                key: "feed.streams".to_owned(),
                problem: "no stream kind is enabled; set kline, trade, agg_trade or book_ticker \
                          to true, or set diff_depth_ms or partial_depth_levels"
                    .to_owned(),
            });
        }
        let dash = &self.dashboard;
        if dash.tls_cert_file.is_some() != dash.tls_key_file.is_some() {
            return Err(ConfigError::Conflict {
                key: name(Field::DashTlsCert).to_owned(),
                problem: format!(
                    "{} and {} must be set together (or neither, for plain HTTP)",
                    name(Field::DashTlsCert),
                    name(Field::DashTlsKey)
                ),
            });
        }
        self.signals.validate()?;
        let needed = self.instance_stream_count();
        let capacity = self.binance_max_connections * feed.max_streams_per_connection;
        if needed > capacity {
            return Err(ConfigError::Conflict {
                key: name(Field::Symbols).to_owned(),
                problem: format!(
                    "this instance needs {needed} streams but {} ({}) x {} ({}) allow only \
                     {capacity}; raise either, split the symbols over more instances \
                     ({}), or subscribe fewer streams",
                    name(Field::BinanceMaxConnections),
                    self.binance_max_connections,
                    name(Field::MaxStreamsPerConnection),
                    feed.max_streams_per_connection,
                    name(Field::InstanceCount),
                ),
            });
        }
        Ok(())
    }
}

/// Applies a TOML document over `config`, rejecting unknown keys.
fn apply_toml(config: &mut Config, text: &str, file: &str) -> Result<(), ConfigError> {
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
    if let Some(signals) = table.remove("signals") {
        config.signals.apply_toml(&signals)?;
    }
    let mut entries = Vec::new();
    collect_entries(&table, "", file, &mut entries)?;
    for (field, value) in entries {
        field.assign(config, Raw::Toml(value))?;
    }
    Ok(())
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
            return Err(ConfigError::UnknownKey {
                key: path,
                file: file.to_owned(),
                allowed: allowed.join(", "),
            });
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
    for field in Field::ALL {
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
const TABLES: [&str; 6] = [
    "",
    "feed",
    "feed.streams",
    "engine",
    "dashboard",
    "database",
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

/// One setting of [`Config`]: its keys, its rule, and how to read and write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Field {
    DatabaseUrl,
    RedisUrl,
    WebsocketUpdateIntervalS,
    WebsocketMaxClients,
    BinanceMaxConnections,
    BatchSize,
    BatchTimeoutS,
    MaxQueueSize,
    BinanceWsUrl,
    BinanceRestUrl,
    Symbols,
    Timeframes,
    DashboardAddr,
    ShardMap,
    DashboardToken,
    DashboardAllowedOrigins,
    RedisChannelPrefix,
    MaxStreamsPerConnection,
    MaxOutgoingMsgsPerS,
    SubscribeBatchBytes,
    TimeUnitMicrosecond,
    MaxConnectionAgeS,
    RotateBeforeS,
    RotationOverlapS,
    RestWeightPerMinute,
    BackfillHoldS,
    SilenceTimeoutS,
    BackoffInitialMs,
    BackoffMaxMs,
    BackoffStableS,
    MaxFrameBytes,
    TlsCaFile,
    StreamKline,
    StreamTrade,
    StreamAggTrade,
    StreamBookTicker,
    StreamDiffDepthMs,
    StreamPartialDepthLevels,
    PinCores,
    BusyPoll,
    RecentCandles,
    InstanceIndex,
    InstanceCount,
    DashConformanceEcho,
    DashAllowPublic,
    DashTlsCert,
    DashTlsKey,
    DashMaxMessageBytes,
    DashMaxFrameBytes,
    DashClientQueue,
    DashMaxPerIp,
    DashInboundRate,
    DbMigrateOnStart,
    DbSpoolDir,
    DbSpoolMaxBytes,
    DbLiveCandles,
    DbCompressAfterDays,
    DbRetentionDays,
    DbRetryInitialMs,
    DbRetryMaxMs,
}

const WS_SCHEMES: &[&str] = &["ws", "wss"];
const HTTP_SCHEMES: &[&str] = &["http", "https"];
const POSTGRES_SCHEMES: &[&str] = &["postgres", "postgresql"];
const REDIS_SCHEMES: &[&str] = &["redis", "rediss", "redis+unix", "unix"];
/// Binance offers diff depth every 100 ms or every second.
const DIFF_DEPTH_MS: &[u32] = &[100, 1000];
/// Binance offers partial book depth with 5, 10 or 20 levels.
const PARTIAL_DEPTH_LEVELS: &[u32] = &[5, 10, 20];

impl Field {
    const ALL: [Field; 60] = [
        Field::DatabaseUrl,
        Field::RedisUrl,
        Field::WebsocketUpdateIntervalS,
        Field::WebsocketMaxClients,
        Field::BinanceMaxConnections,
        Field::BatchSize,
        Field::BatchTimeoutS,
        Field::MaxQueueSize,
        Field::BinanceWsUrl,
        Field::BinanceRestUrl,
        Field::Symbols,
        Field::Timeframes,
        Field::DashboardAddr,
        Field::ShardMap,
        Field::DashboardToken,
        Field::DashboardAllowedOrigins,
        Field::RedisChannelPrefix,
        Field::MaxStreamsPerConnection,
        Field::MaxOutgoingMsgsPerS,
        Field::SubscribeBatchBytes,
        Field::TimeUnitMicrosecond,
        Field::MaxConnectionAgeS,
        Field::RotateBeforeS,
        Field::RotationOverlapS,
        Field::RestWeightPerMinute,
        Field::BackfillHoldS,
        Field::SilenceTimeoutS,
        Field::BackoffInitialMs,
        Field::BackoffMaxMs,
        Field::BackoffStableS,
        Field::MaxFrameBytes,
        Field::TlsCaFile,
        Field::StreamKline,
        Field::StreamTrade,
        Field::StreamAggTrade,
        Field::StreamBookTicker,
        Field::StreamDiffDepthMs,
        Field::StreamPartialDepthLevels,
        Field::PinCores,
        Field::BusyPoll,
        Field::RecentCandles,
        Field::InstanceIndex,
        Field::InstanceCount,
        Field::DashConformanceEcho,
        Field::DashAllowPublic,
        Field::DashTlsCert,
        Field::DashTlsKey,
        Field::DashMaxMessageBytes,
        Field::DashMaxFrameBytes,
        Field::DashClientQueue,
        Field::DashMaxPerIp,
        Field::DashInboundRate,
        Field::DbMigrateOnStart,
        Field::DbSpoolDir,
        Field::DbSpoolMaxBytes,
        Field::DbLiveCandles,
        Field::DbCompressAfterDays,
        Field::DbRetentionDays,
        Field::DbRetryInitialMs,
        Field::DbRetryMaxMs,
    ];

    /// The dotted TOML key.
    fn toml_key(self) -> &'static str {
        match self {
            Field::DatabaseUrl => "database_url",
            Field::RedisUrl => "redis_url",
            Field::WebsocketUpdateIntervalS => "websocket_update_interval_s",
            Field::WebsocketMaxClients => "websocket_max_clients",
            Field::BinanceMaxConnections => "binance_max_connections",
            Field::BatchSize => "batch_size",
            Field::BatchTimeoutS => "batch_timeout_s",
            Field::MaxQueueSize => "max_queue_size",
            Field::BinanceWsUrl => "binance_ws_url",
            Field::BinanceRestUrl => "binance_rest_url",
            Field::Symbols => "symbols",
            Field::Timeframes => "timeframes",
            Field::DashboardAddr => "dashboard_addr",
            Field::ShardMap => "shard_map",
            Field::DashboardToken => "dashboard_token",
            Field::DashboardAllowedOrigins => "dashboard_allowed_origins",
            Field::RedisChannelPrefix => "redis_channel_prefix",
            Field::MaxStreamsPerConnection => "feed.max_streams_per_connection",
            Field::MaxOutgoingMsgsPerS => "feed.max_outgoing_msgs_per_s",
            Field::SubscribeBatchBytes => "feed.subscribe_batch_bytes",
            Field::TimeUnitMicrosecond => "feed.time_unit_microsecond",
            Field::MaxConnectionAgeS => "feed.max_connection_age_s",
            Field::RotateBeforeS => "feed.rotate_before_s",
            Field::RotationOverlapS => "feed.rotation_overlap_s",
            Field::RestWeightPerMinute => "feed.rest_weight_per_minute",
            Field::BackfillHoldS => "feed.backfill_hold_s",
            Field::SilenceTimeoutS => "feed.silence_timeout_s",
            Field::BackoffInitialMs => "feed.backoff_initial_ms",
            Field::BackoffMaxMs => "feed.backoff_max_ms",
            Field::BackoffStableS => "feed.backoff_stable_s",
            Field::MaxFrameBytes => "feed.max_frame_bytes",
            Field::TlsCaFile => "feed.tls_ca_file",
            Field::StreamKline => "feed.streams.kline",
            Field::StreamTrade => "feed.streams.trade",
            Field::StreamAggTrade => "feed.streams.agg_trade",
            Field::StreamBookTicker => "feed.streams.book_ticker",
            Field::StreamDiffDepthMs => "feed.streams.diff_depth_ms",
            Field::StreamPartialDepthLevels => "feed.streams.partial_depth_levels",
            Field::PinCores => "engine.pin_cores",
            Field::BusyPoll => "engine.busy_poll",
            Field::RecentCandles => "engine.recent_candles",
            Field::InstanceIndex => "engine.instance_index",
            Field::InstanceCount => "engine.instance_count",
            Field::DashConformanceEcho => "dashboard.conformance_echo",
            Field::DashAllowPublic => "dashboard.allow_public_without_token",
            Field::DashTlsCert => "dashboard.tls_cert_file",
            Field::DashTlsKey => "dashboard.tls_key_file",
            Field::DashMaxMessageBytes => "dashboard.max_message_bytes",
            Field::DashMaxFrameBytes => "dashboard.max_frame_bytes",
            Field::DashClientQueue => "dashboard.client_queue_messages",
            Field::DashMaxPerIp => "dashboard.max_connections_per_ip",
            Field::DashInboundRate => "dashboard.max_inbound_msgs_per_s",
            Field::DbMigrateOnStart => "database.migrate_on_start",
            Field::DbSpoolDir => "database.spool_dir",
            Field::DbSpoolMaxBytes => "database.spool_max_bytes",
            Field::DbLiveCandles => "database.live_candles",
            Field::DbCompressAfterDays => "database.compress_after_days",
            Field::DbRetentionDays => "database.retention_days",
            Field::DbRetryInitialMs => "database.retry_initial_ms",
            Field::DbRetryMaxMs => "database.retry_max_ms",
        }
    }

    /// The environment variable that overrides this setting, if any.
    fn env_name(self) -> Option<&'static str> {
        Some(match self {
            Field::DatabaseUrl => "DATABASE_URL",
            Field::RedisUrl => "REDIS_URL",
            Field::WebsocketUpdateIntervalS => "WEBSOCKET_UPDATE_INTERVAL",
            Field::WebsocketMaxClients => "WEBSOCKET_MAX_CLIENTS",
            Field::BinanceMaxConnections => "BINANCE_MAX_CONNECTIONS",
            Field::BatchSize => "BATCH_SIZE",
            Field::BatchTimeoutS => "BATCH_TIMEOUT",
            Field::MaxQueueSize => "MAX_QUEUE_SIZE",
            Field::BinanceWsUrl => "BINANCE_WS_URL",
            Field::BinanceRestUrl => "BINANCE_REST_URL",
            Field::Symbols => "SYMBOLS",
            Field::Timeframes => "TIMEFRAMES",
            Field::DashboardAddr => "DASHBOARD_ADDR",
            Field::ShardMap => "SHARD_MAP",
            Field::TlsCaFile => "BINANCE_TLS_CA_FILE",
            Field::DashboardToken => "DASHBOARD_TOKEN",
            Field::DashboardAllowedOrigins => "DASHBOARD_ALLOWED_ORIGINS",
            Field::RedisChannelPrefix => "REDIS_CHANNEL_PREFIX",
            Field::PinCores => "ALPHAPULSE_PIN_CORES",
            Field::BusyPoll => "ALPHAPULSE_BUSY_POLL",
            Field::InstanceIndex => "INSTANCE_INDEX",
            Field::InstanceCount => "INSTANCE_COUNT",
            Field::DashAllowPublic => "DASHBOARD_ALLOW_PUBLIC",
            Field::DashTlsCert => "DASHBOARD_TLS_CERT",
            Field::DashTlsKey => "DASHBOARD_TLS_KEY",
            Field::DbMigrateOnStart => "DATABASE_MIGRATE_ON_START",
            Field::DbSpoolDir => "DATABASE_SPOOL_DIR",
            Field::DbSpoolMaxBytes => "DATABASE_SPOOL_MAX_BYTES",
            Field::DbLiveCandles => "DATABASE_LIVE_CANDLES",
            _ => return None,
        })
    }

    /// The name to show in an error: the variable if the environment set it.
    fn name(self, from_env: &HashSet<Field>) -> &'static str {
        match self.env_name() {
            Some(env) if from_env.contains(&self) => env,
            _ => self.toml_key(),
        }
    }

    fn table(self) -> &'static str {
        self.toml_key()
            .rsplit_once('.')
            .map(|(t, _)| t)
            .unwrap_or("")
    }

    fn leaf(self) -> &'static str {
        self.toml_key().rsplit('.').next().unwrap_or("")
    }

    fn rule(self) -> Rule {
        let count = |min: u64, max: u64| Rule::Count { min, max };
        let seconds = |min: f64, max: f64| Rule::Seconds { min, max };
        match self {
            Field::DatabaseUrl => Rule::Url {
                schemes: POSTGRES_SCHEMES,
                optional: true,
                host_port: false,
            },
            Field::RedisUrl => Rule::Url {
                schemes: REDIS_SCHEMES,
                optional: true,
                host_port: false,
            },
            Field::BinanceWsUrl => Rule::Url {
                schemes: WS_SCHEMES,
                optional: false,
                host_port: true,
            },
            Field::BinanceRestUrl => Rule::Url {
                schemes: HTTP_SCHEMES,
                optional: false,
                host_port: true,
            },
            // A browser needs at least a fraction of a second to render a push; an hour
            // is the longest a status page can be called live.
            Field::WebsocketUpdateIntervalS => seconds(0.1, 3600.0),
            Field::WebsocketMaxClients => count(1, MAX_WEBSOCKET_CLIENTS),
            Field::BinanceMaxConnections => count(1, MAX_BINANCE_CONNECTIONS),
            Field::BatchSize => count(1, MAX_BATCH_SIZE),
            // Below a millisecond the writer would spin; above a minute closed candles
            // reach the database too late to be useful to anyone watching.
            Field::BatchTimeoutS => seconds(0.001, 60.0),
            Field::MaxQueueSize => count(1, MAX_QUEUE_SIZE),
            Field::Symbols => Rule::Symbols,
            Field::Timeframes => Rule::Timeframes,
            Field::DashboardAddr => Rule::Addr,
            Field::ShardMap => Rule::Path,
            Field::DashboardToken => Rule::Token,
            Field::DashboardAllowedOrigins => Rule::Origins,
            Field::RedisChannelPrefix => Rule::Prefix,
            Field::MaxStreamsPerConnection => count(1, BINANCE_MAX_STREAMS_PER_CONNECTION),
            Field::MaxOutgoingMsgsPerS => count(1, BINANCE_MAX_INCOMING_MSGS_PER_S),
            Field::SubscribeBatchBytes => {
                count(MIN_SUBSCRIBE_BATCH_BYTES, BINANCE_MAX_REQUEST_BYTES - 1)
            }
            Field::TimeUnitMicrosecond
            | Field::StreamKline
            | Field::StreamTrade
            | Field::StreamAggTrade
            | Field::StreamBookTicker
            | Field::PinCores
            | Field::BusyPoll
            | Field::DbMigrateOnStart
            | Field::DbLiveCandles => Rule::Flag,
            // Rotating more often than once a minute would spend the connection-attempt
            // budget (300 per 5 minutes) on rotations alone.
            Field::MaxConnectionAgeS => seconds(60.0, BINANCE_MAX_CONNECTION_AGE_S),
            Field::RotateBeforeS => seconds(1.0, 3600.0),
            Field::RotationOverlapS => seconds(0.0, 600.0),
            Field::RestWeightPerMinute => count(2, 6000),
            Field::BackfillHoldS => seconds(0.0, 3600.0),
            Field::SilenceTimeoutS => seconds(1.0, 3600.0),
            Field::BackoffInitialMs => count(1, 60_000),
            Field::BackoffMaxMs => count(1, 600_000),
            Field::BackoffStableS => seconds(1.0, 3600.0),
            Field::MaxFrameBytes => count(4096, MAX_FRAME_BYTES_LIMIT),
            Field::TlsCaFile => Rule::Path,
            Field::StreamDiffDepthMs => Rule::Choice(DIFF_DEPTH_MS),
            Field::StreamPartialDepthLevels => Rule::Choice(PARTIAL_DEPTH_LEVELS),
            Field::RecentCandles => count(1, MAX_RECENT_CANDLES),
            Field::InstanceIndex => count(0, MAX_INSTANCES - 1),
            Field::InstanceCount => count(1, MAX_INSTANCES),
            Field::DashConformanceEcho | Field::DashAllowPublic => Rule::Flag,
            Field::DashTlsCert | Field::DashTlsKey => Rule::Path,
            // Below 1 KiB not even a command fits; above 16 MiB a client could make the
            // one dashboard core hold a large share of memory per connection.
            Field::DashMaxMessageBytes | Field::DashMaxFrameBytes => count(1024, 16 << 20),
            Field::DashClientQueue => count(8, 1 << 20),
            Field::DashMaxPerIp => count(1, MAX_WEBSOCKET_CLIENTS),
            Field::DashInboundRate => count(1, 10_000),
            Field::DbSpoolDir => Rule::Path,
            // One spooled batch must fit: 1 MiB holds thousands of rows.
            Field::DbSpoolMaxBytes => count(1 << 20, MAX_SPOOL_BYTES),
            // Ten years: longer horizons are not a policy but an archive.
            Field::DbCompressAfterDays | Field::DbRetentionDays => count(0, 3650),
            Field::DbRetryInitialMs => count(1, 60_000),
            Field::DbRetryMaxMs => count(1, 600_000),
        }
    }

    /// A read-only view of the current value, for checks and printing.
    fn get(self, c: &Config) -> Setting {
        let count = |n: usize| Setting::Count(n as u64);
        let texts = |v: &[String]| Setting::List(v.to_vec());
        let (f, s, e) = (&c.feed, &c.feed.streams, &c.engine);
        match self {
            Field::DatabaseUrl => Setting::Text(c.database_url.clone()),
            Field::RedisUrl => Setting::Text(c.redis_url.clone()),
            Field::WebsocketUpdateIntervalS => Setting::Seconds(c.websocket_update_interval_s),
            Field::WebsocketMaxClients => count(c.websocket_max_clients),
            Field::BinanceMaxConnections => count(c.binance_max_connections),
            Field::BatchSize => count(c.batch_size),
            Field::BatchTimeoutS => Setting::Seconds(c.batch_timeout_s),
            Field::MaxQueueSize => count(c.max_queue_size),
            Field::BinanceWsUrl => Setting::Text(Some(c.binance_ws_url.clone())),
            Field::BinanceRestUrl => Setting::Text(Some(c.binance_rest_url.clone())),
            Field::Symbols => Setting::List(c.symbols.iter().map(|s| s.to_string()).collect()),
            Field::Timeframes => {
                Setting::List(c.timeframes.iter().map(|t| t.to_string()).collect())
            }
            Field::DashboardAddr => Setting::Text(Some(c.dashboard_addr.to_string())),
            Field::ShardMap => Setting::Text(c.shard_map.as_ref().map(|p| p.display().to_string())),
            Field::DashboardToken => Setting::Text(c.dashboard_token.clone()),
            Field::DashboardAllowedOrigins => texts(&c.dashboard_allowed_origins),
            Field::RedisChannelPrefix => Setting::Text(Some(c.redis_channel_prefix.clone())),
            Field::MaxStreamsPerConnection => count(f.max_streams_per_connection),
            Field::MaxOutgoingMsgsPerS => Setting::Count(u64::from(f.max_outgoing_msgs_per_s)),
            Field::SubscribeBatchBytes => count(f.subscribe_batch_bytes),
            Field::TimeUnitMicrosecond => Setting::Flag(f.time_unit_microsecond),
            Field::MaxConnectionAgeS => Setting::Seconds(f.max_connection_age_s),
            Field::RotateBeforeS => Setting::Seconds(f.rotate_before_s),
            Field::RotationOverlapS => Setting::Seconds(f.rotation_overlap_s),
            Field::RestWeightPerMinute => Setting::Count(f.rest_weight_per_minute),
            Field::BackfillHoldS => Setting::Seconds(f.backfill_hold_s),
            Field::SilenceTimeoutS => Setting::Seconds(f.silence_timeout_s),
            Field::BackoffInitialMs => Setting::Count(f.backoff_initial_ms),
            Field::BackoffMaxMs => Setting::Count(f.backoff_max_ms),
            Field::BackoffStableS => Setting::Seconds(f.backoff_stable_s),
            Field::MaxFrameBytes => count(f.max_frame_bytes),
            Field::TlsCaFile => {
                Setting::Text(f.tls_ca_file.as_ref().map(|p| p.display().to_string()))
            }
            Field::StreamKline => Setting::Flag(s.kline),
            Field::StreamTrade => Setting::Flag(s.trade),
            Field::StreamAggTrade => Setting::Flag(s.agg_trade),
            Field::StreamBookTicker => Setting::Flag(s.book_ticker),
            Field::StreamDiffDepthMs => Setting::Choice(s.diff_depth_ms),
            Field::StreamPartialDepthLevels => Setting::Choice(s.partial_depth_levels),
            Field::PinCores => Setting::Flag(e.pin_cores),
            Field::BusyPoll => Setting::Flag(e.busy_poll),
            Field::RecentCandles => count(e.recent_candles),
            Field::InstanceIndex => Setting::Count(u64::from(e.instance_index)),
            Field::InstanceCount => Setting::Count(u64::from(e.instance_count)),
            Field::DashConformanceEcho => Setting::Flag(c.dashboard.conformance_echo),
            Field::DashAllowPublic => Setting::Flag(c.dashboard.allow_public_without_token),
            Field::DashTlsCert => Setting::Text(
                c.dashboard
                    .tls_cert_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            Field::DashTlsKey => Setting::Text(
                c.dashboard
                    .tls_key_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            Field::DashMaxMessageBytes => count(c.dashboard.max_message_bytes),
            Field::DashMaxFrameBytes => count(c.dashboard.max_frame_bytes),
            Field::DashClientQueue => count(c.dashboard.client_queue_messages),
            Field::DashMaxPerIp => count(c.dashboard.max_connections_per_ip),
            Field::DashInboundRate => Setting::Count(u64::from(c.dashboard.max_inbound_msgs_per_s)),
            Field::DbMigrateOnStart => Setting::Flag(c.database.migrate_on_start),
            Field::DbSpoolDir => Setting::Text(Some(c.database.spool_dir.display().to_string())),
            Field::DbSpoolMaxBytes => Setting::Count(c.database.spool_max_bytes),
            Field::DbLiveCandles => Setting::Flag(c.database.live_candles),
            Field::DbCompressAfterDays => Setting::Count(u64::from(c.database.compress_after_days)),
            Field::DbRetentionDays => Setting::Count(u64::from(c.database.retention_days)),
            Field::DbRetryInitialMs => Setting::Count(c.database.retry_initial_ms),
            Field::DbRetryMaxMs => Setting::Count(c.database.retry_max_ms),
        }
    }

    /// Converts `raw` to this field's type and stores it. Only the type is checked
    /// here; ranges and relations are checked once, in [`Config::check`].
    fn assign(self, c: &mut Config, raw: Raw<'_>) -> Result<(), ConfigError> {
        let fail = |why: Why| {
            let rule = self.rule();
            ConfigError::Invalid {
                key: match raw {
                    Raw::Env(_) => self.env_name().unwrap_or(self.toml_key()),
                    Raw::Toml(_) => self.toml_key(),
                }
                .to_owned(),
                value: raw.render(&rule),
                expected: match why {
                    Why::Type => rule.expected(),
                    Why::Detail(detail) => detail,
                },
            }
        };
        let usize_of = |raw: Raw<'_>| -> Result<usize, Why> {
            usize::try_from(raw.count()?).map_err(|_| Why::Type)
        };
        let u32_of = |raw: Raw<'_>| -> Result<u32, Why> {
            u32::try_from(raw.count()?).map_err(|_| Why::Type)
        };
        let (f, e, d, db) = (
            &mut c.feed,
            &mut c.engine,
            &mut c.dashboard,
            &mut c.database,
        );
        let result = match self {
            Field::DatabaseUrl => raw.opt_text().map(|v| c.database_url = v),
            Field::RedisUrl => raw.opt_text().map(|v| c.redis_url = v),
            Field::WebsocketUpdateIntervalS => {
                raw.seconds().map(|v| c.websocket_update_interval_s = v)
            }
            Field::WebsocketMaxClients => usize_of(raw).map(|v| c.websocket_max_clients = v),
            Field::BinanceMaxConnections => usize_of(raw).map(|v| c.binance_max_connections = v),
            Field::BatchSize => usize_of(raw).map(|v| c.batch_size = v),
            Field::BatchTimeoutS => raw.seconds().map(|v| c.batch_timeout_s = v),
            Field::MaxQueueSize => usize_of(raw).map(|v| c.max_queue_size = v),
            Field::BinanceWsUrl => raw.text().map(|v| c.binance_ws_url = v),
            Field::BinanceRestUrl => raw.text().map(|v| c.binance_rest_url = v),
            Field::Symbols => raw.symbols().map(|v| c.symbols = v),
            Field::Timeframes => raw.timeframes().map(|v| c.timeframes = v),
            Field::DashboardAddr => raw.text().and_then(|v| {
                v.parse::<SocketAddr>()
                    .map(|a| c.dashboard_addr = a)
                    .map_err(|_| Why::Type)
            }),
            Field::ShardMap => raw.opt_text().map(|v| c.shard_map = v.map(PathBuf::from)),
            Field::DashboardToken => raw.opt_text().map(|v| c.dashboard_token = v),
            Field::DashboardAllowedOrigins => raw.list().map(|v| c.dashboard_allowed_origins = v),
            Field::RedisChannelPrefix => raw.text().map(|v| c.redis_channel_prefix = v),
            Field::MaxStreamsPerConnection => {
                usize_of(raw).map(|v| f.max_streams_per_connection = v)
            }
            Field::MaxOutgoingMsgsPerS => u32_of(raw).map(|v| f.max_outgoing_msgs_per_s = v),
            Field::SubscribeBatchBytes => usize_of(raw).map(|v| f.subscribe_batch_bytes = v),
            Field::TimeUnitMicrosecond => raw.flag().map(|v| f.time_unit_microsecond = v),
            Field::MaxConnectionAgeS => raw.seconds().map(|v| f.max_connection_age_s = v),
            Field::RotateBeforeS => raw.seconds().map(|v| f.rotate_before_s = v),
            Field::RotationOverlapS => raw.seconds().map(|v| f.rotation_overlap_s = v),
            Field::RestWeightPerMinute => raw.count().map(|v| f.rest_weight_per_minute = v),
            Field::BackfillHoldS => raw.seconds().map(|v| f.backfill_hold_s = v),
            Field::SilenceTimeoutS => raw.seconds().map(|v| f.silence_timeout_s = v),
            Field::BackoffInitialMs => raw.count().map(|v| f.backoff_initial_ms = v),
            Field::BackoffMaxMs => raw.count().map(|v| f.backoff_max_ms = v),
            Field::BackoffStableS => raw.seconds().map(|v| f.backoff_stable_s = v),
            Field::MaxFrameBytes => usize_of(raw).map(|v| f.max_frame_bytes = v),
            Field::TlsCaFile => raw.opt_text().map(|v| f.tls_ca_file = v.map(PathBuf::from)),
            Field::StreamKline => raw.flag().map(|v| f.streams.kline = v),
            Field::StreamTrade => raw.flag().map(|v| f.streams.trade = v),
            Field::StreamAggTrade => raw.flag().map(|v| f.streams.agg_trade = v),
            Field::StreamBookTicker => raw.flag().map(|v| f.streams.book_ticker = v),
            Field::StreamDiffDepthMs => u32_of(raw).map(|v| f.streams.diff_depth_ms = Some(v)),
            Field::StreamPartialDepthLevels => {
                u32_of(raw).map(|v| f.streams.partial_depth_levels = Some(v))
            }
            Field::PinCores => raw.flag().map(|v| e.pin_cores = v),
            Field::BusyPoll => raw.flag().map(|v| e.busy_poll = v),
            Field::RecentCandles => usize_of(raw).map(|v| e.recent_candles = v),
            Field::InstanceIndex => u32_of(raw).map(|v| e.instance_index = v),
            Field::InstanceCount => u32_of(raw).map(|v| e.instance_count = v),
            Field::DashConformanceEcho => raw.flag().map(|v| d.conformance_echo = v),
            Field::DashAllowPublic => raw.flag().map(|v| d.allow_public_without_token = v),
            Field::DashTlsCert => raw
                .opt_text()
                .map(|v| d.tls_cert_file = v.map(PathBuf::from)),
            Field::DashTlsKey => raw
                .opt_text()
                .map(|v| d.tls_key_file = v.map(PathBuf::from)),
            Field::DashMaxMessageBytes => usize_of(raw).map(|v| d.max_message_bytes = v),
            Field::DashMaxFrameBytes => usize_of(raw).map(|v| d.max_frame_bytes = v),
            Field::DashClientQueue => usize_of(raw).map(|v| d.client_queue_messages = v),
            Field::DashMaxPerIp => usize_of(raw).map(|v| d.max_connections_per_ip = v),
            Field::DashInboundRate => u32_of(raw).map(|v| d.max_inbound_msgs_per_s = v),
            Field::DbMigrateOnStart => raw.flag().map(|v| db.migrate_on_start = v),
            Field::DbSpoolDir => raw.text().map(|v| db.spool_dir = PathBuf::from(v)),
            Field::DbSpoolMaxBytes => raw.count().map(|v| db.spool_max_bytes = v),
            Field::DbLiveCandles => raw.flag().map(|v| db.live_candles = v),
            Field::DbCompressAfterDays => u32_of(raw).map(|v| db.compress_after_days = v),
            Field::DbRetentionDays => u32_of(raw).map(|v| db.retention_days = v),
            Field::DbRetryInitialMs => raw.count().map(|v| db.retry_initial_ms = v),
            Field::DbRetryMaxMs => raw.count().map(|v| db.retry_max_ms = v),
        };
        result.map_err(fail)
    }
}

/// Why a value was refused: the wrong type (the rule's description says what is
/// allowed), or a specific problem described in full.
enum Why {
    Type,
    Detail(String),
}

/// What a setting may hold.
#[derive(Clone, Copy)]
enum Rule {
    Count {
        min: u64,
        max: u64,
    },
    Seconds {
        min: f64,
        max: f64,
    },
    Flag,
    /// A URL with one of `schemes`. `host_port` asks for a plain `host[:port][/path]`
    /// authority (the Binance endpoints); database and Redis URLs may carry user info,
    /// several hosts or socket paths, so only their scheme is checked.
    Url {
        schemes: &'static [&'static str],
        optional: bool,
        host_port: bool,
    },
    Symbols,
    Timeframes,
    Addr,
    Path,
    Token,
    Origins,
    Prefix,
    Choice(&'static [u32]),
}

impl Rule {
    fn expected(&self) -> String {
        match self {
            Rule::Count { min, max } => format!("expected a whole number from {min} to {max}"),
            Rule::Seconds { min, max } => format!("expected seconds from {min} to {max}"),
            Rule::Flag => "expected true or false".to_owned(),
            Rule::Url { schemes, .. } => {
                let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                format!("expected a URL starting with {}", list.join(" or "))
            }
            Rule::Symbols => format!(
                "expected 1 to {MAX_SYMBOLS} distinct symbols of ASCII letters and digits, \
                 such as BTCUSDT,ETHUSDT"
            ),
            Rule::Timeframes => {
                let all: Vec<&str> = Interval::ALL.iter().map(|i| i.as_str()).collect();
                format!("expected distinct intervals from {}", all.join(","))
            }
            Rule::Addr => "expected an IP address and port such as 127.0.0.1:8000".to_owned(),
            Rule::Path => "expected a file path".to_owned(),
            Rule::Token => format!(
                "expected {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} printable ASCII characters \
                 without spaces"
            ),
            Rule::Origins => "expected distinct origins such as https://dash.example.com \
                              (scheme http or https, host, optional port, no path)"
                .to_owned(),
            Rule::Prefix => format!(
                "expected 1 to {MAX_CHANNEL_PREFIX_LEN} ASCII letters, digits, '_', '-' or '.'"
            ),
            Rule::Choice(options) => {
                let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
                format!(
                    "expected one of {} (leave the key out to disable)",
                    list.join(", ")
                )
            }
        }
    }

    /// Range and format checks on a typed value.
    fn check(&self, setting: &Setting) -> Result<(), Why> {
        let ok_if = |good: bool| if good { Ok(()) } else { Err(Why::Type) };
        match (self, setting) {
            (Rule::Count { min, max }, Setting::Count(n)) => ok_if((*min..=*max).contains(n)),
            (Rule::Seconds { min, max }, Setting::Seconds(s)) => {
                ok_if(s.is_finite() && *min <= *s && *s <= *max)
            }
            (Rule::Flag, Setting::Flag(_)) => Ok(()),
            (
                Rule::Url {
                    schemes,
                    optional,
                    host_port,
                },
                Setting::Text(text),
            ) => match text {
                None => ok_if(*optional),
                Some(url) => ok_if(url_ok(url, schemes, *host_port)),
            },
            (Rule::Symbols, Setting::List(items)) => {
                if items.is_empty() || items.len() > MAX_SYMBOLS {
                    return Err(Why::Type);
                }
                distinct(items)
            }
            (Rule::Timeframes, Setting::List(items)) => {
                if items.is_empty() {
                    return Err(Why::Type);
                }
                distinct(items)
            }
            (Rule::Addr, Setting::Text(Some(_))) | (Rule::Path, Setting::Text(_)) => Ok(()),
            (Rule::Token, Setting::Text(token)) => match token {
                None => Ok(()),
                Some(t) => ok_if(
                    (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len())
                        && t.bytes().all(|b| b.is_ascii_graphic()),
                ),
            },
            (Rule::Origins, Setting::List(items)) => {
                for item in items {
                    if !origin_ok(item) {
                        return Err(Why::Detail(format!(
                            "{item:?} is not an origin; {}",
                            self.expected()
                        )));
                    }
                }
                distinct(items)
            }
            (Rule::Prefix, Setting::Text(Some(p))) => ok_if(
                (1..=MAX_CHANNEL_PREFIX_LEN).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')),
            ),
            (Rule::Choice(options), Setting::Choice(choice)) => match choice {
                None => Ok(()),
                Some(v) => ok_if(options.contains(v)),
            },
            _ => Err(Why::Type),
        }
    }
}

fn distinct(items: &[String]) -> Result<(), Why> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(Why::Detail(format!("{item} is listed twice; list it once")));
        }
    }
    Ok(())
}

/// Splits `scheme://rest`, with the scheme lower-cased.
fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

fn url_ok(url: &str, schemes: &[&str], host_port: bool) -> bool {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return false;
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return false;
    };
    if !schemes.contains(&scheme.as_str()) {
        return false;
    }
    if !host_port {
        return !rest.is_empty();
    }
    if rest.contains(['?', '#', '@']) {
        return false;
    }
    let authority = rest.split('/').next().unwrap_or("");
    host_port_ok(authority)
}

/// `host[:port]` or `[v6]:port`, with a non-empty host and a valid port if present.
fn host_port_ok(authority: &str) -> bool {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, tail)) => match tail {
                "" => (host, None),
                _ => match tail.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return false,
                },
            },
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    !host.is_empty() && port_ok
}

fn origin_ok(origin: &str) -> bool {
    let Some((scheme, rest)) = split_scheme(origin) else {
        return false;
    };
    HTTP_SCHEMES.contains(&scheme.as_str())
        && !rest.contains(['/', '?', '#', '@'])
        && !rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && host_port_ok(rest)
}

/// Replaces the password of `scheme://user:password@host` and any `password=` query
/// parameter with `REDACTED`.
fn redact_url(url: &str) -> String {
    let Some((scheme_end, rest)) = url.split_once("://").map(|(s, r)| (s.len() + 3, r)) else {
        return url.to_owned();
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:REDACTED@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=REDACTED")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{authority}{tail}", &url[..scheme_end])
}

/// Renders a string value that may be secret, for errors and `config print`.
fn redacted(rule: &Rule, text: &str) -> String {
    match rule {
        Rule::Token => "<redacted>".to_owned(),
        Rule::Url { .. } => redact_url(text),
        _ => text.to_owned(),
    }
}

/// A typed view of one setting's value.
#[derive(Debug, Clone, PartialEq)]
enum Setting {
    Count(u64),
    Seconds(f64),
    Flag(bool),
    Text(Option<String>),
    List(Vec<String>),
    Choice(Option<u32>),
}

impl Setting {
    /// As TOML, with secrets redacted; `None` when unset (the key is left out).
    fn to_toml(&self, rule: &Rule) -> Option<toml::Value> {
        Some(match self {
            Setting::Count(n) => toml::Value::Integer(i64::try_from(*n).unwrap_or(i64::MAX)),
            Setting::Seconds(s) => toml::Value::Float(*s),
            Setting::Flag(b) => toml::Value::Boolean(*b),
            Setting::Text(text) => toml::Value::String(redacted(rule, text.as_deref()?)),
            Setting::List(items) => toml::Value::Array(
                items
                    .iter()
                    .map(|i| toml::Value::String(i.clone()))
                    .collect(),
            ),
            Setting::Choice(choice) => toml::Value::Integer(i64::from((*choice)?)),
        })
    }

    /// As the user would have written it: environment syntax if the environment set it.
    fn render(&self, field: Field, from_env: &HashSet<Field>) -> String {
        let rule = field.rule();
        if from_env.contains(&field) {
            return match self {
                Setting::Count(n) => n.to_string(),
                Setting::Seconds(s) => s.to_string(),
                Setting::Flag(b) => b.to_string(),
                Setting::Text(text) => text
                    .as_deref()
                    .map(|t| redacted(&rule, t))
                    .unwrap_or_default(),
                Setting::List(items) => items.join(","),
                Setting::Choice(choice) => choice.map(|c| c.to_string()).unwrap_or_default(),
            };
        }
        self.to_toml(&rule)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(unset)".to_owned())
    }
}

/// A value as the user supplied it: an environment string or a TOML value.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Env(&'a str),
    Toml(&'a toml::Value),
}

impl Raw<'_> {
    fn render(&self, rule: &Rule) -> String {
        match self {
            Raw::Env(text) => redacted(rule, text),
            Raw::Toml(toml::Value::String(text)) => {
                toml::Value::String(redacted(rule, text)).to_string()
            }
            Raw::Toml(value) => value.to_string(),
        }
    }

    fn count(&self) -> Result<u64, Why> {
        match self {
            Raw::Env(text) => text.trim().parse().map_err(|_| Why::Type),
            Raw::Toml(toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| Why::Type),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    fn seconds(&self) -> Result<f64, Why> {
        let value = match self {
            Raw::Env(text) => text.trim().parse::<f64>().map_err(|_| Why::Type)?,
            Raw::Toml(toml::Value::Float(f)) => *f,
            Raw::Toml(toml::Value::Integer(n)) => *n as f64,
            Raw::Toml(_) => return Err(Why::Type),
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Why::Type)
        }
    }

    fn flag(&self) -> Result<bool, Why> {
        match self {
            Raw::Env(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(Why::Type),
            },
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    fn text(&self) -> Result<String, Why> {
        match self {
            Raw::Env(text) => Ok(text.trim().to_owned()),
            Raw::Toml(toml::Value::String(text)) => Ok(text.clone()),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    /// An optional string: empty means unset, as in a `.env` template's `DATABASE_URL=`.
    fn opt_text(&self) -> Result<Option<String>, Why> {
        let text = self.text()?;
        Ok((!text.is_empty()).then_some(text))
    }

    /// A list: comma-separated in the environment (empty items ignored, so a trailing
    /// comma is harmless), an array of strings in TOML.
    fn list(&self) -> Result<Vec<String>, Why> {
        match self {
            Raw::Env(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(Why::Type))
                .collect(),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    fn symbols(&self) -> Result<Vec<Symbol>, Why> {
        self.list()?
            .iter()
            .map(|item| {
                Symbol::new(item).map_err(|e| Why::Detail(format!("{item:?} is not a symbol: {e}")))
            })
            .collect()
    }

    fn timeframes(&self) -> Result<Vec<Interval>, Why> {
        self.list()?
            .iter()
            .map(|item| {
                Interval::parse(item)
                    .map_err(|e| Why::Detail(format!("{item:?} is not an interval: {e}")))
            })
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load(None, &env(pairs))
    }

    fn err_env(pairs: &[(&str, &str)]) -> String {
        match load_env(pairs) {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn err_toml(text: &str) -> String {
        match Config::from_toml_str(text) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    /// A temporary file removed when dropped.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "alphapulse-config-unit-{}-{name}",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.database_url, None);
        assert_eq!(c.redis_url, None);
        assert_eq!(c.websocket_update_interval_s, 3.0);
        assert_eq!(c.websocket_max_clients, 1000);
        assert_eq!(c.binance_max_connections, 5);
        assert_eq!(c.batch_size, 50);
        assert_eq!(c.batch_timeout_s, 0.1);
        assert_eq!(c.max_queue_size, 10_000);
        assert_eq!(c.binance_ws_url, "wss://stream.binance.com:9443");
        assert_eq!(c.binance_rest_url, "https://api.binance.com");
        assert_eq!(
            c.symbols,
            vec![sym("BTCUSDT"), sym("ETHUSDT"), sym("ADAUSDT")]
        );
        assert_eq!(
            c.timeframes,
            vec![Interval::M1, Interval::M5, Interval::M15, Interval::H1]
        );
        assert_eq!(c.dashboard_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.shard_map, None);
        assert_eq!(c.dashboard_token, None);
        assert!(c.dashboard_allowed_origins.is_empty());
        assert_eq!(c.redis_channel_prefix, "alphapulse");

        let f = &c.feed;
        assert_eq!(f.streams, StreamKinds::default());
        assert!(f.streams.kline && !f.streams.trade && !f.streams.agg_trade);
        assert!(!f.streams.book_ticker && f.streams.diff_depth_ms.is_none());
        assert!(f.streams.partial_depth_levels.is_none());
        assert_eq!(f.max_streams_per_connection, 200);
        assert_eq!(f.max_outgoing_msgs_per_s, 4);
        assert_eq!(f.subscribe_batch_bytes, 3072);
        assert!(!f.time_unit_microsecond);
        assert_eq!(f.max_connection_age_s, 86_400.0);
        assert_eq!(f.rotate_before_s, 300.0);
        assert_eq!(f.rotation_overlap_s, 5.0);
        assert_eq!(f.silence_timeout_s, 30.0);
        assert_eq!((f.backoff_initial_ms, f.backoff_max_ms), (250, 30_000));
        assert_eq!(f.backoff_stable_s, 60.0);
        assert_eq!(f.max_frame_bytes, 1 << 20);

        let e = &c.engine;
        assert!(e.pin_cores);
        assert_eq!(e.recent_candles, 1000);
        assert_eq!((e.instance_index, e.instance_count), (0, 1));

        c.validate().unwrap();
        assert_eq!(load_env(&[]).unwrap(), c);
        assert_eq!(Config::from_toml_str("").unwrap(), c);
    }

    #[test]
    fn every_env_name_from_the_design_is_read() {
        let c = load_env(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/ap"),
            ("REDIS_URL", "redis://cache:6379/0"),
            ("WEBSOCKET_UPDATE_INTERVAL", "1.5"),
            ("WEBSOCKET_MAX_CLIENTS", "20"),
            ("BINANCE_MAX_CONNECTIONS", "7"),
            ("BATCH_SIZE", "500"),
            ("BATCH_TIMEOUT", "0.25"),
            ("MAX_QUEUE_SIZE", "4096"),
            ("BINANCE_WS_URL", "ws://127.0.0.1:9443"),
            ("BINANCE_REST_URL", "http://127.0.0.1:9444"),
            ("SYMBOLS", " bnbusdt , XRPUSDT,"),
            ("TIMEFRAMES", "1s,1M"),
            ("DASHBOARD_ADDR", "[::1]:9000"),
            ("SHARD_MAP", "shards/dev-2core.toml"),
            ("DASHBOARD_TOKEN", "0123456789abcdef-token"),
            (
                "DASHBOARD_ALLOWED_ORIGINS",
                "https://a.example.com, http://localhost:3000",
            ),
            ("REDIS_CHANNEL_PREFIX", "ap-test"),
            ("INSTANCE_INDEX", "2"),
            ("INSTANCE_COUNT", "3"),
            ("ALPHAPULSE_PIN_CORES", "false"),
        ])
        .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://u:p@db:5432/ap"));
        assert_eq!(c.redis_url.as_deref(), Some("redis://cache:6379/0"));
        assert_eq!(c.websocket_update_interval_s, 1.5);
        assert_eq!(c.websocket_max_clients, 20);
        assert_eq!(c.binance_max_connections, 7);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.batch_timeout_s, 0.25);
        assert_eq!(c.max_queue_size, 4096);
        assert_eq!(c.binance_ws_url, "ws://127.0.0.1:9443");
        assert_eq!(c.binance_rest_url, "http://127.0.0.1:9444");
        assert_eq!(c.symbols, vec![sym("BNBUSDT"), sym("XRPUSDT")]);
        assert_eq!(c.timeframes, vec![Interval::S1, Interval::Mo1]);
        assert_eq!(c.dashboard_addr.to_string(), "[::1]:9000");
        assert_eq!(c.shard_map, Some(PathBuf::from("shards/dev-2core.toml")));
        assert_eq!(c.dashboard_token.as_deref(), Some("0123456789abcdef-token"));
        assert_eq!(
            c.dashboard_allowed_origins,
            vec!["https://a.example.com", "http://localhost:3000"]
        );
        assert_eq!(c.redis_channel_prefix, "ap-test");
        assert_eq!((c.engine.instance_index, c.engine.instance_count), (2, 3));
        assert!(!c.engine.pin_cores);
    }

    #[test]
    fn empty_optional_variables_mean_unset() {
        let c = load_env(&[
            ("DATABASE_URL", ""),
            ("REDIS_URL", " "),
            ("DASHBOARD_TOKEN", ""),
            ("SHARD_MAP", ""),
            ("DASHBOARD_ALLOWED_ORIGINS", ""),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn flags_accept_the_usual_spellings() {
        for (text, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("on", true),
            ("false", false),
            ("0", false),
            ("No", false),
            ("off", false),
        ] {
            let c = load_env(&[("ALPHAPULSE_PIN_CORES", text)]).unwrap();
            assert_eq!(c.engine.pin_cores, want, "{text}");
        }
        let e = err_env(&[("ALPHAPULSE_PIN_CORES", "maybe")]);
        assert_eq!(e, "ALPHAPULSE_PIN_CORES=maybe: expected true or false");
    }

    #[test]
    fn precedence_is_env_over_dotenv_over_toml_over_defaults() {
        let file = TempFile::new(
            "precedence.toml",
            "batch_size = 10\nmax_queue_size = 11\nsymbols = [\"SOLUSDT\"]\n\
             [engine]\nrecent_candles = 12\n",
        );
        let dotenv = env(&[("BATCH_SIZE", "20"), ("MAX_QUEUE_SIZE", "21")]);
        let process = env(&[("BATCH_SIZE", "30")]);
        let c = load(Some(&file.0), &layer_env(dotenv, process)).unwrap();
        assert_eq!(c.batch_size, 30, "environment beats .env");
        assert_eq!(c.max_queue_size, 21, ".env beats TOML");
        assert_eq!(c.symbols, vec![sym("SOLUSDT")], "TOML beats defaults");
        assert_eq!(c.engine.recent_candles, 12);
        assert_eq!(c.websocket_max_clients, 1000, "defaults fill the rest");
    }

    #[test]
    fn the_environment_can_repair_a_file_value_out_of_range() {
        // Ranges are checked on the effective value, after every layer is applied.
        let file = TempFile::new("repair.toml", "batch_size = 0\n");
        assert!(load(Some(&file.0), &env(&[])).is_err());
        let c = load(Some(&file.0), &env(&[("BATCH_SIZE", "5")])).unwrap();
        assert_eq!(c.batch_size, 5);
    }

    #[test]
    fn a_missing_file_names_it() {
        let e = load(Some(Path::new("/nonexistent/alphapulse.toml")), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read configuration file /nonexistent/alphapulse.toml"),
            "{e}"
        );
    }

    #[test]
    fn env_errors_name_the_variable_the_value_and_the_range() {
        let cases: &[(&str, &str, &str)] = &[
            ("BATCH_SIZE", "abc", "BATCH_SIZE=abc: expected a whole number from 1 to 100000"),
            ("BATCH_SIZE", "0", "BATCH_SIZE=0: expected a whole number from 1 to 100000"),
            ("BATCH_SIZE", "-3", "BATCH_SIZE=-3: expected a whole number from 1 to 100000"),
            ("BATCH_SIZE", "100001", "BATCH_SIZE=100001: expected a whole number from 1 to 100000"),
            ("WEBSOCKET_MAX_CLIENTS", "0", "WEBSOCKET_MAX_CLIENTS=0: expected a whole number from 1 to 100000"),
            ("BINANCE_MAX_CONNECTIONS", "101", "BINANCE_MAX_CONNECTIONS=101: expected a whole number from 1 to 100"),
            ("MAX_QUEUE_SIZE", "99999999999999999999999", "MAX_QUEUE_SIZE=99999999999999999999999: expected a whole number from 1 to 1048576"),
            ("WEBSOCKET_UPDATE_INTERVAL", "0", "WEBSOCKET_UPDATE_INTERVAL=0: expected seconds from 0.1 to 3600"),
            ("WEBSOCKET_UPDATE_INTERVAL", "NaN", "WEBSOCKET_UPDATE_INTERVAL=NaN: expected seconds from 0.1 to 3600"),
            ("BATCH_TIMEOUT", "inf", "BATCH_TIMEOUT=inf: expected seconds from 0.001 to 60"),
            ("BATCH_TIMEOUT", "61", "BATCH_TIMEOUT=61: expected seconds from 0.001 to 60"),
            ("BINANCE_WS_URL", "https://stream.binance.com", "BINANCE_WS_URL=https://stream.binance.com: expected a URL starting with ws:// or wss://"),
            ("BINANCE_WS_URL", "wss://", "BINANCE_WS_URL=wss://: expected a URL starting with ws:// or wss://"),
            ("BINANCE_WS_URL", "wss://h:99999", "BINANCE_WS_URL=wss://h:99999: expected a URL starting with ws:// or wss://"),
            ("BINANCE_WS_URL", "wss://h/x?streams=a", "BINANCE_WS_URL=wss://h/x?streams=a: expected a URL starting with ws:// or wss://"),
            ("BINANCE_WS_URL", "stream.binance.com", "BINANCE_WS_URL=stream.binance.com: expected a URL starting with ws:// or wss://"),
            ("BINANCE_REST_URL", "ws://api.binance.com", "BINANCE_REST_URL=ws://api.binance.com: expected a URL starting with http:// or https://"),
            ("DATABASE_URL", "mysql://db/x", "DATABASE_URL=mysql://db/x: expected a URL starting with postgres:// or postgresql://"),
            ("REDIS_URL", "http://cache", "REDIS_URL=http://cache: expected a URL starting with redis:// or rediss:// or redis+unix:// or unix://"),
            ("SYMBOLS", "BTC-USDT", "SYMBOLS=BTC-USDT: \"BTC-USDT\" is not a symbol: symbol may contain only ASCII letters and digits"),
            ("SYMBOLS", "BTCUSDT,btcusdt", "SYMBOLS=BTCUSDT,BTCUSDT: BTCUSDT is listed twice; list it once"),
            ("SYMBOLS", ",", "SYMBOLS=: expected 1 to 4096 distinct symbols of ASCII letters and digits, such as BTCUSDT,ETHUSDT"),
            ("TIMEFRAMES", "1m,2m", "TIMEFRAMES=1m,2m: \"2m\" is not an interval: unknown interval; allowed: 1s,1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d,3d,1w,1M"),
            ("TIMEFRAMES", "1m,1m", "TIMEFRAMES=1m,1m: 1m is listed twice; list it once"),
            ("TIMEFRAMES", "", "TIMEFRAMES=: expected distinct intervals from 1s,1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d,3d,1w,1M"),
            ("DASHBOARD_ADDR", "localhost:8000", "DASHBOARD_ADDR=localhost:8000: expected an IP address and port such as 127.0.0.1:8000"),
            ("DASHBOARD_TOKEN", "short", "DASHBOARD_TOKEN=<redacted>: expected 16 to 256 printable ASCII characters without spaces"),
            ("DASHBOARD_TOKEN", "long enough but has spaces", "DASHBOARD_TOKEN=<redacted>: expected 16 to 256 printable ASCII characters without spaces"),
            ("DASHBOARD_ALLOWED_ORIGINS", "https://a.example.com/", "DASHBOARD_ALLOWED_ORIGINS=https://a.example.com/: \"https://a.example.com/\" is not an origin; expected distinct origins such as https://dash.example.com (scheme http or https, host, optional port, no path)"),
            ("DASHBOARD_ALLOWED_ORIGINS", "*", "DASHBOARD_ALLOWED_ORIGINS=*: \"*\" is not an origin;"),
            ("DASHBOARD_ALLOWED_ORIGINS", "http://a:1,http://a:1", "DASHBOARD_ALLOWED_ORIGINS=http://a:1,http://a:1: http://a:1 is listed twice; list it once"),
            ("REDIS_CHANNEL_PREFIX", "ap:x", "REDIS_CHANNEL_PREFIX=ap:x: expected 1 to 64 ASCII letters, digits, '_', '-' or '.'"),
            ("REDIS_CHANNEL_PREFIX", "", "REDIS_CHANNEL_PREFIX=: expected 1 to 64 ASCII letters"),
            ("INSTANCE_COUNT", "0", "INSTANCE_COUNT=0: expected a whole number from 1 to 1024"),
            ("INSTANCE_INDEX", "1", "INSTANCE_INDEX=1: expected less than engine.instance_count (1): instances are numbered from 0"),
        ];
        for (key, value, want) in cases {
            let got = err_env(&[(key, value)]);
            assert!(
                got.starts_with(want),
                "{key}={value}:\n got  {got}\n want {want}"
            );
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = err_env(&[("DATABASE_URL", "mysql://user:hunter2@db/x")]);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("user:REDACTED@db"), "{e}");
        let e = err_env(&[("DASHBOARD_TOKEN", "hunter2 hunter2 hunter2")]);
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn relations_between_settings_are_checked() {
        let e = err_env(&[("INSTANCE_INDEX", "3"), ("INSTANCE_COUNT", "3")]);
        assert_eq!(
            e,
            "INSTANCE_INDEX=3: expected less than INSTANCE_COUNT (3): instances are numbered from 0"
        );
        let e = err_toml("[feed]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 1000\n");
        assert_eq!(
            e,
            "feed.backoff_initial_ms=5000: expected at most feed.backoff_max_ms (1000)"
        );
        let e = err_toml("[feed]\nmax_connection_age_s = 600\nrotate_before_s = 600\n");
        assert_eq!(
            e,
            "feed.rotate_before_s=600: expected less than feed.max_connection_age_s (600)"
        );
        let e = err_toml("[feed]\nrotate_before_s = 5\n");
        assert!(
            e.starts_with("feed.rotation_overlap_s=5: expected less than feed.rotate_before_s (5)"),
            "{e}"
        );
        let e = err_toml("[feed.streams]\nkline = false\n");
        assert!(
            e.starts_with("feed.streams: no stream kind is enabled"),
            "{e}"
        );
        // 3 symbols x 4 klines = 12 streams fit one connection of 200 streams;
        // 13 symbols x 16 klines = 208 do not.
        assert!(load_env(&[("BINANCE_MAX_CONNECTIONS", "1")]).is_ok());
        let symbols: Vec<String> = (0..13).map(|i| format!("S{i}USDT")).collect();
        let e = err_env(&[
            ("BINANCE_MAX_CONNECTIONS", "1"),
            ("SYMBOLS", &symbols.join(",")),
            (
                "TIMEFRAMES",
                "1s,1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d,3d,1w,1M",
            ),
        ]);
        assert!(
            e.starts_with("SYMBOLS: this instance needs 208 streams but BINANCE_MAX_CONNECTIONS (1) x feed.max_streams_per_connection (200) allow only 200;"),
            "{e}"
        );
    }

    #[test]
    fn stream_capacity_counts_only_this_instance() {
        let text = "binance_max_connections = 1\n[feed]\nmax_streams_per_connection = 10\n";
        let e = err_toml(text);
        assert!(
            e.starts_with("symbols: this instance needs 12 streams but binance_max_connections (1) x feed.max_streams_per_connection (10) allow only 10"),
            "{e}"
        );
        // Sliced over three instances, no instance needs more than 12 streams, and
        // each instance's share is what counts.
        for index in 0..3 {
            let text = format!("{text}[engine]\ninstance_index = {index}\ninstance_count = 3\n");
            let result = Config::from_toml_str(&text);
            let mine = Config {
                engine: EngineConfig {
                    instance_index: index,
                    instance_count: 3,
                    ..EngineConfig::default()
                },
                ..Config::default()
            }
            .instance_symbols()
            .len();
            assert_eq!(
                result.is_ok(),
                mine * 4 <= 10,
                "instance {index}: {result:?}"
            );
        }
    }

    #[test]
    fn toml_errors_name_the_dotted_key() {
        let cases: &[(&str, &str)] = &[
            ("batch_size = \"abc\"", "batch_size=\"abc\": expected a whole number from 1 to 100000"),
            ("batch_size = 1.5", "batch_size=1.5: expected a whole number from 1 to 100000"),
            ("batch_size = 0", "batch_size=0: expected a whole number from 1 to 100000"),
            ("batch_timeout_s = \"fast\"", "batch_timeout_s=\"fast\": expected seconds from 0.001 to 60"),
            ("symbols = \"BTCUSDT\"", "symbols=\"BTCUSDT\": expected 1 to 4096 distinct symbols"),
            ("symbols = [1]", "symbols=[1]: expected 1 to 4096 distinct symbols"),
            ("symbols = []", "symbols=[]: expected 1 to 4096 distinct symbols"),
            ("timeframes = [\"1m\", \"7m\"]", "timeframes=[\"1m\", \"7m\"]: \"7m\" is not an interval"),
            ("dashboard_addr = 8000", "dashboard_addr=8000: expected an IP address and port"),
            ("binance_ws_url = \"http://x\"", "binance_ws_url=\"http://x\": expected a URL starting with ws:// or wss://"),
            ("[feed]\nmax_streams_per_connection = 1025", "feed.max_streams_per_connection=1025: expected a whole number from 1 to 1024"),
            ("[feed]\nmax_outgoing_msgs_per_s = 6", "feed.max_outgoing_msgs_per_s=6: expected a whole number from 1 to 5"),
            ("[feed]\nsubscribe_batch_bytes = 4096", "feed.subscribe_batch_bytes=4096: expected a whole number from 128 to 4095"),
            ("[feed]\nsubscribe_batch_bytes = 100", "feed.subscribe_batch_bytes=100: expected a whole number from 128 to 4095"),
            ("[feed]\ntime_unit_microsecond = 1", "feed.time_unit_microsecond=1: expected true or false"),
            ("[feed]\nmax_connection_age_s = 86401", "feed.max_connection_age_s=86401.0: expected seconds from 60 to 86400"),
            ("[feed]\nsilence_timeout_s = 0", "feed.silence_timeout_s=0.0: expected seconds from 1 to 3600"),
            ("[feed]\nbackoff_initial_ms = 0", "feed.backoff_initial_ms=0: expected a whole number from 1 to 60000"),
            ("[feed]\nbackoff_max_ms = 600001", "feed.backoff_max_ms=600001: expected a whole number from 1 to 600000"),
            ("[feed]\nbackoff_stable_s = -1", "feed.backoff_stable_s=-1.0: expected seconds from 1 to 3600"),
            ("[feed]\nmax_frame_bytes = 1000", "feed.max_frame_bytes=1000: expected a whole number from 4096 to 67108864"),
            ("[feed]\nrotation_overlap_s = 601", "feed.rotation_overlap_s=601.0: expected seconds from 0 to 600"),
            ("[feed.streams]\ndiff_depth_ms = 500", "feed.streams.diff_depth_ms=500: expected one of 100, 1000 (leave the key out to disable)"),
            ("[feed.streams]\npartial_depth_levels = 15", "feed.streams.partial_depth_levels=15: expected one of 5, 10, 20"),
            ("[feed.streams]\ntrade = \"yes\"", "feed.streams.trade=\"yes\": expected true or false"),
            ("[engine]\nrecent_candles = 0", "engine.recent_candles=0: expected a whole number from 1 to 100000"),
            ("[engine]\ninstance_count = 1025", "engine.instance_count=1025: expected a whole number from 1 to 1024"),
            ("[engine]\ninstance_index = -1", "engine.instance_index=-1: expected a whole number from 0 to 1023"),
            ("[engine]\npin_cores = \"no\"", "engine.pin_cores=\"no\": expected true or false"),
        ];
        for (text, want) in cases {
            let got = err_toml(text);
            assert!(got.starts_with(want), "{text}:\n got  {got}\n want {want}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = err_toml("batch_sise = 10\n");
        assert!(
            e.starts_with(
                "unknown key batch_sise in the configuration; allowed here: database_url,"
            ),
            "{e}"
        );
        assert!(e.contains("feed, engine"), "{e}");
        let e = err_toml("[feed]\nmax_streams = 10\n");
        assert!(e.starts_with("unknown key feed.max_streams in"), "{e}");
        assert!(e.contains("max_streams_per_connection"), "{e}");
        assert!(e.contains("streams"), "{e}");
        let e = err_toml("[feed.streams]\ndepth = true\n");
        assert!(e.starts_with("unknown key feed.streams.depth in"), "{e}");
        let e = err_toml("[engine]\ncores = 4\n");
        assert!(e.starts_with("unknown key engine.cores in"), "{e}");
        // The URL is a top-level key (DATABASE_URL); [database] holds the writer's.
        let e = err_toml("[database]\nurl = \"x\"\n");
        assert!(e.starts_with("unknown key database.url in"), "{e}");
        assert!(e.contains("spool_dir"), "{e}");
        let e = err_toml("feed = 3\n");
        assert_eq!(e, "feed=3: expected a table ([feed])");
    }

    #[test]
    fn every_toml_form_of_a_table_is_accepted() {
        let dotted = Config::from_toml_str("feed.streams.trade = true\n").unwrap();
        let inline = Config::from_toml_str("[feed]\nstreams = { trade = true }\n").unwrap();
        let table = Config::from_toml_str("[feed.streams]\ntrade = true\n").unwrap();
        assert!(dotted.feed.streams.trade);
        assert_eq!(dotted, inline);
        assert_eq!(dotted, table);
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = err_toml("batch_size = 5\n\nsymbols = [\"BTCUSDT\"\n");
        assert!(e.starts_with("the configuration line 3: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://ap:s3cret@db:5432/ap?sslmode=require&password=x"),
            "postgres://ap:REDACTED@db:5432/ap?sslmode=require&password=REDACTED"
        );
        assert_eq!(
            redact_url("redis://:pw@cache:6379/0"),
            "redis://:REDACTED@cache:6379/0"
        );
        assert_eq!(redact_url("redis://user@cache"), "redis://user@cache");
        assert_eq!(redact_url("wss://h:9443/x"), "wss://h:9443/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn printed_configuration_loads_back_to_the_same_values() {
        let original = load_env(&[
            ("DATABASE_URL", "postgres://ap:s3cret@db:5432/ap"),
            ("REDIS_URL", "redis://cache:6379"),
            ("SYMBOLS", "BTCUSDT,SOLUSDT"),
            ("TIMEFRAMES", "1s,4h,1M"),
            ("SHARD_MAP", "shards/dev-2core.toml"),
            ("DASHBOARD_TOKEN", "0123456789abcdef0123"),
            ("DASHBOARD_ALLOWED_ORIGINS", "https://a.example.com"),
            ("BATCH_TIMEOUT", "0.2"),
            ("DASHBOARD_ADDR", "0.0.0.0:9000"),
        ])
        .and_then(|mut c| {
            c.feed.streams.diff_depth_ms = Some(100);
            c.feed.streams.partial_depth_levels = Some(5);
            c.feed.streams.book_ticker = true;
            c.feed.time_unit_microsecond = true;
            c.engine.recent_candles = 77;
            c.validate().map(|_| c)
        })
        .unwrap();
        let printed = original.to_toml_redacted();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!printed.contains("0123456789abcdef0123"), "{printed}");
        assert!(
            printed.contains("# dashboard_token is set but not shown"),
            "{printed}"
        );
        let reloaded = Config::from_toml_str(&printed).unwrap();
        let expected = Config {
            database_url: Some("postgres://ap:REDACTED@db:5432/ap".to_owned()),
            dashboard_token: None,
            ..original
        };
        assert_eq!(reloaded, expected);
        // Printing is a fixed point once secrets are gone.
        assert_eq!(
            Config::from_toml_str(&reloaded.to_toml_redacted()).unwrap(),
            reloaded
        );
    }

    #[test]
    fn the_example_file_holds_every_key_with_its_default() {
        let text = include_str!("../alphapulse.example.toml");
        assert_eq!(Config::from_toml_str(text).unwrap(), Config::default());
        for field in Field::ALL {
            let leaf = field.leaf();
            let present = text.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.starts_with(&format!("{leaf} ="))
            });
            assert!(present, "{} is missing from the example", field.toml_key());
            if let Some(env) = field.env_name() {
                assert!(text.contains(&format!("[{env}")), "{env} is not mentioned");
            }
        }
        // Every commented-out key is valid once uncommented.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if Field::ALL
                        .iter()
                        .any(|f| rest.starts_with(&format!("{} =", f.leaf()))) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml_str(&uncommented).unwrap();
        assert!(c.database_url.is_some() && c.redis_url.is_some());
        assert!(c.dashboard_token.is_some() && c.shard_map.is_some());
        assert_eq!(c.feed.streams.diff_depth_ms, Some(100));
        assert_eq!(c.feed.streams.partial_depth_levels, Some(20));
    }

    #[test]
    fn field_table_is_complete_and_unambiguous() {
        let mut toml_keys = HashSet::new();
        let mut env_names = HashSet::new();
        for field in Field::ALL {
            assert!(toml_keys.insert(field.toml_key()), "{field:?}");
            if let Some(env) = field.env_name() {
                assert!(env_names.insert(env), "{field:?}");
            }
            assert!(TABLES.contains(&field.table()), "{field:?}");
            // Every default passes its own rule.
            assert!(
                field.rule().check(&field.get(&Config::default())).is_ok(),
                "{field:?}"
            );
        }
        assert_eq!(env_names.len(), 29);
    }

    #[test]
    fn database_writer_settings_load_from_toml_and_environment() {
        let env: HashMap<String, String> = [
            ("DATABASE_SPOOL_DIR", "/var/lib/alphapulse/spool"),
            ("DATABASE_LIVE_CANDLES", "true"),
            ("DATABASE_MIGRATE_ON_START", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = load(None, &env).unwrap();
        assert_eq!(
            c.database.spool_dir,
            PathBuf::from("/var/lib/alphapulse/spool")
        );
        assert!(c.database.live_candles && !c.database.migrate_on_start);
        let c =
            Config::from_toml_str("[database]\nretention_days = 90\nspool_max_bytes = 2097152\n")
                .unwrap();
        assert_eq!(
            (c.database.retention_days, c.database.spool_max_bytes),
            (90, 2 << 20)
        );
        let e = Config::from_toml_str("[database]\nspool_max_bytes = 10\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("database.spool_max_bytes=10: expected"),
            "{e}"
        );
        let e = Config::from_toml_str("[database]\nretry_initial_ms = 900\nretry_max_ms = 100\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "database.retry_initial_ms=900: expected at most database.retry_max_ms (100)"
        );
    }

    #[test]
    fn instance_slices_are_disjoint_and_complete() {
        let symbols: Vec<Symbol> = (0..200).map(|i| sym(&format!("S{i}USDT"))).collect();
        for count in 1..=7u32 {
            let mut seen = HashSet::new();
            for index in 0..count {
                let c = Config {
                    symbols: symbols.clone(),
                    engine: EngineConfig {
                        instance_index: index,
                        instance_count: count,
                        ..EngineConfig::default()
                    },
                    ..Config::default()
                };
                for s in c.instance_symbols() {
                    assert!(seen.insert(s), "{s} in two slices of {count}");
                    assert_eq!(s.stable_hash() % u64::from(count), u64::from(index));
                }
            }
            assert_eq!(seen.len(), symbols.len(), "{count} instances lose symbols");
        }
    }

    #[test]
    fn streams_per_symbol_counts_every_kind() {
        let mut kinds = StreamKinds::default();
        assert_eq!(kinds.per_symbol(4), 4);
        kinds.trade = true;
        kinds.agg_trade = true;
        kinds.book_ticker = true;
        kinds.diff_depth_ms = Some(100);
        kinds.partial_depth_levels = Some(10);
        assert_eq!(kinds.per_symbol(4), 9);
        assert_eq!(
            kinds.to_string(),
            "kline, trade, aggTrade, bookTicker, depth@100ms, depth10"
        );
        kinds.kline = false;
        assert_eq!(kinds.per_symbol(4), 5);
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = Config {
            dashboard_token: Some("s3cret-token-of-some-length".into()),
            database_url: Some("postgres://user:hunter2@127.0.0.1/db".into()),
            ..Config::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret-token-of-some-length"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("127.0.0.1"),
            "the rest is still shown: {text}"
        );
    }
}
