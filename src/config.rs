//! Configuration: parsed and validated once into [`Config`], then handed to each role.
//! (Loading from TOML, environment and `.env` lands with the config work.)

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::market::{Interval, Symbol};

/// The whole effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub websocket_update_interval_s: f64,
    pub websocket_max_clients: usize,
    pub binance_max_connections: usize,
    pub batch_size: usize,
    pub batch_timeout_s: f64,
    pub max_queue_size: usize,
    pub binance_ws_url: String,
    pub binance_rest_url: String,
    pub symbols: Vec<Symbol>,
    pub timeframes: Vec<Interval>,
    pub dashboard_addr: SocketAddr,
    pub shard_map: Option<PathBuf>,
    pub dashboard_token: Option<String>,
    pub dashboard_allowed_origins: Vec<String>,
    pub redis_channel_prefix: String,
    pub feed: FeedConfig,
    pub engine: EngineConfig,
}

/// Which Binance streams to subscribe to for every symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamKinds {
    /// `<symbol>@kline_<tf>` for every configured timeframe.
    pub kline: bool,
    pub trade: bool,
    pub agg_trade: bool,
    pub book_ticker: bool,
    /// `<symbol>@depth` (diff depth); `Some(100)` for `@depth@100ms`, `Some(1000)` for 1 s.
    pub diff_depth_ms: Option<u32>,
    /// `<symbol>@depth<levels>` partial book depth (5, 10 or 20 levels).
    pub partial_depth_levels: Option<u32>,
}

/// Binance feed settings (limits are Binance's, defaults stay under them).
#[derive(Debug, Clone)]
pub struct FeedConfig {
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
    /// A connection that delivers nothing for this long is dropped by the watchdog.
    pub silence_timeout_s: f64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// A connection must stay up this long before the backoff resets.
    pub backoff_stable_s: f64,
    /// Largest frame accepted from the exchange.
    pub max_frame_bytes: usize,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Pin role threads to cores (off for laptops and containers).
    pub pin_cores: bool,
    /// Closed candles kept per (symbol, timeframe) by the in-memory store.
    pub recent_candles: usize,
    /// Instance slice for scale-out: this process takes symbols whose stable hash
    /// modulo `instance_count` equals `instance_index`.
    pub instance_index: u32,
    pub instance_count: u32,
}
