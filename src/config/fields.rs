//! The settings table: every setting of [`Config`] with its TOML key, its environment
//! name and its [`Rule`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::checks::{
    Rule, Why, DIFF_DEPTH_MS, HTTP_SCHEMES, PARTIAL_DEPTH_LEVELS, POSTGRES_SCHEMES, REDIS_SCHEMES,
    WS_SCHEMES,
};
use super::value::{Raw, Setting};
use super::*;

/// One setting of [`Config`]: its keys, its rule, and how to read and write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Field {
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

impl Field {
    pub(super) const ALL: [Field; 60] = [
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
    pub(super) fn toml_key(self) -> &'static str {
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
    pub(super) fn env_name(self) -> Option<&'static str> {
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
    pub(super) fn name(self, from_env: &HashSet<Field>) -> &'static str {
        match self.env_name() {
            Some(env) if from_env.contains(&self) => env,
            _ => self.toml_key(),
        }
    }

    pub(super) fn table(self) -> &'static str {
        self.toml_key()
            .rsplit_once('.')
            .map(|(t, _)| t)
            .unwrap_or("")
    }

    pub(super) fn leaf(self) -> &'static str {
        self.toml_key().rsplit('.').next().unwrap_or("")
    }

    pub(super) fn rule(self) -> Rule {
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
    pub(super) fn get(self, c: &Config) -> Setting {
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
    pub(super) fn assign(self, c: &mut Config, raw: Raw<'_>) -> Result<(), ConfigError> {
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
