//! The settings table: every setting of [`Config`] in one row.
//!
//! A row names the setting once: its [`Field`] variant, its place in [`Config`] (which
//! is also its dotted TOML key: `feed.streams.kline` is `[feed.streams] kline`), its
//! default, its environment variable (`env _` for none) and its [`Rule`]. The Rust type
//! of the place decides how a raw value is parsed and how it is shown (see
//! `value::Value`). From the rows the `settings!` macro writes the `Field`
//! enum, its key, variable, rule, read and write for each setting, and the `Default` of
//! every settings struct, so nothing about a setting is stated twice.
//!
//! Rows are grouped by the struct that holds them, in print order; `nested` lists the
//! struct's fields that are tables of their own (with their own `Default`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::checks::{
    Rule, Why, DIFF_DEPTH_MS, HTTP_SCHEMES, PARTIAL_DEPTH_LEVELS, POSTGRES_SCHEMES, REDIS_SCHEMES,
    WS_SCHEMES,
};
use super::value::{Raw, Setting, Value};
use super::*;

/// `c.feed.streams.kline` from `c`, `{feed.streams}` and `kline`.
macro_rules! place {
    ($c:ident, {$($seg:ident).*}, $field:ident) => {
        $c $(.$seg)* .$field
    };
}

/// `"feed.streams.kline"` from `{feed.streams}` and `kline`.
macro_rules! toml_key {
    ({$($seg:ident).*}, $field:ident) => {
        concat!($(stringify!($seg), ".",)* stringify!($field))
    };
}

macro_rules! env_name {
    (_) => {
        None
    };
    ($name:literal) => {
        Some($name)
    };
}

macro_rules! settings {
    ($(
        $strukt:ident at $path:tt, nested { $($nested:ident),* } {
            $( $variant:ident: $field:ident = $default:expr, env $env:tt, $rule:expr; )*
        }
    )*) => {
        /// One setting of [`Config`]: its keys, its rule, and how to read and write it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(super) enum Field {
            $($($variant,)*)*
        }

        impl Field {
            /// Every setting, in print order.
            pub(super) const ALL: &'static [Field] = &[$($(Field::$variant,)*)*];

            /// The dotted TOML key.
            pub(super) fn toml_key(self) -> &'static str {
                match self {
                    $($(Field::$variant => toml_key!($path, $field),)*)*
                }
            }

            /// The environment variable that overrides this setting, if any.
            pub(super) fn env_name(self) -> Option<&'static str> {
                match self {
                    $($(Field::$variant => env_name!($env),)*)*
                }
            }

            pub(super) fn rule(self) -> Rule {
                match self {
                    $($(Field::$variant => $rule,)*)*
                }
            }

            /// A read-only view of the current value, for checks and printing.
            pub(super) fn get(self, c: &Config) -> Setting {
                match self {
                    $($(Field::$variant => Value::show(&place!(c, $path, $field)),)*)*
                }
            }

            /// Parses `raw` as this field's type and stores it.
            fn store(self, c: &mut Config, raw: Raw<'_>) -> Result<(), Why> {
                match self {
                    $($(Field::$variant => {
                        let slot = &mut place!(c, $path, $field);
                        *slot = Value::read(raw)?;
                    })*)*
                }
                Ok(())
            }
        }

        $(
            impl Default for $strukt {
                fn default() -> Self {
                    $strukt {
                        $($field: $default,)*
                        $($nested: Default::default(),)*
                    }
                }
            }
        )*
    };
}

fn count(min: u64, max: u64) -> Rule {
    Rule::Count { min, max }
}

fn seconds(min: f64, max: f64) -> Rule {
    Rule::Seconds { min, max }
}

settings! {
    Config at {}, nested { feed, engine, dashboard, database, books, signals } {
        DatabaseUrl: database_url = None, env "DATABASE_URL",
            Rule::Url { schemes: POSTGRES_SCHEMES, optional: true, host_port: false };
        RedisUrl: redis_url = None, env "REDIS_URL",
            Rule::Url { schemes: REDIS_SCHEMES, optional: true, host_port: false };
        // A browser needs at least a fraction of a second to render a push; an hour is
        // the longest a status page can be called live.
        WebsocketUpdateIntervalS: websocket_update_interval_s = 3.0,
            env "WEBSOCKET_UPDATE_INTERVAL", seconds(0.1, 3600.0);
        WebsocketMaxClients: websocket_max_clients = 1000,
            env "WEBSOCKET_MAX_CLIENTS", count(1, MAX_WEBSOCKET_CLIENTS);
        BinanceMaxConnections: binance_max_connections = 5,
            env "BINANCE_MAX_CONNECTIONS", count(1, MAX_BINANCE_CONNECTIONS);
        BatchSize: batch_size = 50, env "BATCH_SIZE", count(1, MAX_BATCH_SIZE);
        // Below a millisecond the writer would spin; above a minute closed candles reach
        // the database too late to be useful to anyone watching.
        BatchTimeoutS: batch_timeout_s = 0.1, env "BATCH_TIMEOUT", seconds(0.001, 60.0);
        MaxQueueSize: max_queue_size = 10_000, env "MAX_QUEUE_SIZE", count(1, MAX_QUEUE_SIZE);
        BinanceWsUrl: binance_ws_url = DEFAULT_BINANCE_WS_URL.to_owned(), env "BINANCE_WS_URL",
            Rule::Url { schemes: WS_SCHEMES, optional: false, host_port: true };
        BinanceRestUrl: binance_rest_url = DEFAULT_BINANCE_REST_URL.to_owned(),
            env "BINANCE_REST_URL",
            Rule::Url { schemes: HTTP_SCHEMES, optional: false, host_port: true };
        Symbols: symbols = DEFAULT_SYMBOLS.iter().filter_map(|s| Symbol::new(s).ok()).collect(),
            env "SYMBOLS", Rule::Symbols;
        Timeframes: timeframes = DEFAULT_TIMEFRAMES.to_vec(), env "TIMEFRAMES", Rule::Timeframes;
        DashboardAddr: dashboard_addr = SocketAddr::from(([127, 0, 0, 1], 8000)),
            env "DASHBOARD_ADDR", Rule::Addr;
        ShardMap: shard_map = None, env "SHARD_MAP", Rule::Path;
        DashboardToken: dashboard_token = None, env "DASHBOARD_TOKEN", Rule::Token;
        DashboardAllowedOrigins: dashboard_allowed_origins = Vec::new(),
            env "DASHBOARD_ALLOWED_ORIGINS", Rule::Origins;
        DashboardAllowedHosts: dashboard_allowed_hosts = Vec::new(),
            env "DASHBOARD_ALLOWED_HOSTS", Rule::Hosts;
        RedisChannelPrefix: redis_channel_prefix = DEFAULT_REDIS_CHANNEL_PREFIX.to_owned(),
            env "REDIS_CHANNEL_PREFIX", Rule::Prefix;
        RedisBridgeKey: redis_bridge_key = None, env "ALPHAPULSE_BRIDGE_KEY", Rule::Key;
        RedisTlsCaFile: redis_tls_ca_file = None, env "REDIS_TLS_CA_FILE", Rule::Path;
        // A minute is past any use a live trade channel has.
        RedisTradesConflateMs: redis_trades_conflate_ms = 0,
            env "REDIS_TRADES_CONFLATE_MS", count(0, 60_000);
    }

    FeedConfig at {feed}, nested { streams } {
        // Well under Binance's 1024, so one connection's loss hurts fewer streams and the
        // subscription burst after a reconnect is short.
        MaxStreamsPerConnection: max_streams_per_connection = 200,
            env _, count(1, BINANCE_MAX_STREAMS_PER_CONNECTION);
        // One under Binance's 5, leaving room for a pong in the same second.
        MaxOutgoingMsgsPerS: max_outgoing_msgs_per_s = 4,
            env _, count(1, BINANCE_MAX_INCOMING_MSGS_PER_S);
        SubscribeBatchBytes: subscribe_batch_bytes = 3072,
            env _, count(MIN_SUBSCRIBE_BATCH_BYTES, BINANCE_MAX_REQUEST_BYTES - 1);
        TimeUnitMicrosecond: time_unit_microsecond = false, env _, Rule::Flag;
        // Rotating more often than once a minute would spend the connection-attempt
        // budget (300 per 5 minutes) on rotations alone.
        MaxConnectionAgeS: max_connection_age_s = BINANCE_MAX_CONNECTION_AGE_S,
            env _, seconds(60.0, BINANCE_MAX_CONNECTION_AGE_S);
        RotateBeforeS: rotate_before_s = 300.0, env _, seconds(1.0, 3600.0);
        RotationOverlapS: rotation_overlap_s = 5.0, env _, seconds(0.0, 600.0);
        RestWeightPerMinute: rest_weight_per_minute = 3000, env _, count(2, 6000);
        BackfillHoldS: backfill_hold_s = 30.0, env _, seconds(0.0, 3600.0);
        // Binance pings every 20 s, so a live connection is never silent for 30 s.
        SilenceTimeoutS: silence_timeout_s = 30.0, env _, seconds(1.0, 3600.0);
        // Binance pushes a kline stream's update every 2 s (1 s for `1s`), trades or
        // none: five pushes missed means the stream is dead, not quiet.
        StreamSilenceS: stream_silence_s = 10.0,
            env "ALPHAPULSE_STREAM_SILENCE_S", seconds(1.0, 3600.0);
        BackoffInitialMs: backoff_initial_ms = 250, env _, count(1, 60_000);
        BackoffMaxMs: backoff_max_ms = 30_000, env _, count(1, 600_000);
        BackoffStableS: backoff_stable_s = 60.0, env _, seconds(1.0, 3600.0);
        MaxFrameBytes: max_frame_bytes = 1 << 20, env _, count(4096, MAX_FRAME_BYTES_LIMIT);
        // Five minutes: far more than a synchronised host's clock is off from Binance's
        // (it rejects signed requests 60 s off at most), far less than a frame stamped
        // in another year. A year is the most that is still a bound.
        MaxClockSkewMs: max_clock_skew_ms = 300_000,
            env "ALPHAPULSE_MAX_CLOCK_SKEW_MS", count(0, MAX_CLOCK_SKEW_MS);
        ExchangeSpeed: exchange_speed = 1,
            env "ALPHAPULSE_EXCHANGE_SPEED", count(1, MAX_EXCHANGE_SPEED);
        TlsCaFile: tls_ca_file = None, env "BINANCE_TLS_CA_FILE", Rule::Path;
    }

    StreamKinds at {feed.streams}, nested {} {
        StreamKline: kline = true, env _, Rule::Flag;
        StreamTrade: trade = false, env _, Rule::Flag;
        StreamAggTrade: agg_trade = false, env _, Rule::Flag;
        StreamBookTicker: book_ticker = false, env _, Rule::Flag;
        StreamDiffDepthMs: diff_depth_ms = None, env _, Rule::Choice(DIFF_DEPTH_MS);
        StreamPartialDepthLevels: partial_depth_levels = None,
            env _, Rule::Choice(PARTIAL_DEPTH_LEVELS);
    }

    EngineConfig at {engine}, nested {} {
        PinCores: pin_cores = true, env "ALPHAPULSE_PIN_CORES", Rule::Flag;
        BusyPoll: busy_poll = false, env "ALPHAPULSE_BUSY_POLL", Rule::Flag;
        DashboardOnShard: dashboard_on_shard = Switch::Auto,
            env "ALPHAPULSE_DASHBOARD_ON_SHARD", Rule::Switch;
        RecentCandles: recent_candles = 1000, env _, count(1, MAX_RECENT_CANDLES);
        // The configured universe at every Binance interval fits several times over;
        // what the bridge is sent beyond that is refused rather than held.
        MaxSeries: max_series = crate::store::DEFAULT_MAX_SERIES,
            env "ALPHAPULSE_MAX_SERIES", count(1, MAX_SERIES_LIMIT);
        InstanceIndex: instance_index = 0, env "INSTANCE_INDEX", count(0, MAX_INSTANCES - 1);
        InstanceCount: instance_count = 1, env "INSTANCE_COUNT", count(1, MAX_INSTANCES);
    }

    DashboardConfig at {dashboard}, nested {} {
        DashConformanceEcho: conformance_echo = false, env _, Rule::Flag;
        DashAllowPublic: allow_public_without_token = false,
            env "DASHBOARD_ALLOW_PUBLIC", Rule::Flag;
        DashTlsCert: tls_cert_file = None, env "DASHBOARD_TLS_CERT", Rule::Path;
        DashTlsKey: tls_key_file = None, env "DASHBOARD_TLS_KEY", Rule::Path;
        // Commands are small JSON objects: 64 KiB is generous and bounds the memory a
        // client can make the server hold while it assembles a message. Below 1 KiB not
        // even a command fits; above 16 MiB a client could make the one dashboard core
        // hold a large share of memory per connection.
        DashMaxMessageBytes: max_message_bytes = 64 << 10, env _, count(1024, 16 << 20);
        DashMaxFrameBytes: max_frame_bytes = 16 << 10, env _, count(1024, 16 << 20);
        // Ten seconds of backlog at 100 broadcasts/s; frames are shared, so each entry
        // costs a pointer, not a copy.
        DashClientQueue: client_queue_messages = 1024, env _, count(8, 1 << 20);
        // A few browser tabs and tools per address; fan-out benchmarks raise it.
        DashMaxPerIp: max_connections_per_ip = 64, env _, count(1, MAX_WEBSOCKET_CLIENTS);
        // A person or a tool sends a handful of commands; more is a flood.
        DashInboundRate: max_inbound_msgs_per_s = 20, env _, count(1, 10_000);
    }

    DatabaseConfig at {database}, nested {} {
        DbMigrateOnStart: migrate_on_start = true, env "DATABASE_MIGRATE_ON_START", Rule::Flag;
        DbSpoolDir: spool_dir = PathBuf::from("spool"), env "DATABASE_SPOOL_DIR", Rule::Path;
        // One spooled batch must fit: 1 MiB holds thousands of rows.
        DbSpoolMaxBytes: spool_max_bytes = 1 << 30,
            env "DATABASE_SPOOL_MAX_BYTES", count(1 << 20, MAX_SPOOL_BYTES);
        DbLiveCandles: live_candles = false, env "DATABASE_LIVE_CANDLES", Rule::Flag;
        DbStoreTrades: store_trades = true, env "DATABASE_STORE_TRADES", Rule::Flag;
        // Ten years: longer horizons are not a policy but an archive.
        DbCompressAfterDays: compress_after_days = 7, env _, count(0, 3650);
        DbRetentionDays: retention_days = 0, env _, count(0, 3650);
        DbRetryInitialMs: retry_initial_ms = 100, env _, count(1, 60_000);
        DbRetryMaxMs: retry_max_ms = 5_000, env _, count(1, 600_000);
        DbWriteMethod: write_method = WriteMethod::Copy,
            env "DATABASE_WRITE_METHOD", Rule::OneOf(WriteMethod::NAMES);
        DbHoldConnections: hold_connections = true,
            env "DATABASE_HOLD_CONNECTIONS", Rule::Flag;
        // A minute covers a 50,000-row upsert on a slow server; past it a statement is
        // cancelled and retried rather than holding the writer (and the rings) for ever.
        DbStatementTimeoutMs: statement_timeout_ms = 60_000,
            env "DATABASE_STATEMENT_TIMEOUT_MS", count(100, 3_600_000);
        // A write waits this long for a lock (an `ALTER TABLE`, a manual `LOCK`) before
        // it gives up and spools: short, so the writer keeps draining the rings.
        DbLockTimeoutMs: lock_timeout_ms = 5_000,
            env "DATABASE_LOCK_TIMEOUT_MS", count(100, 600_000);
        // Rows the database refuses are kept for a person to read; 64 MiB holds
        // hundreds of thousands of them, and the file can never fill the disk.
        DbDeadLetterMaxBytes: dead_letter_max_bytes = 64 << 20,
            env "DATABASE_DEAD_LETTER_MAX_BYTES", count(4096, 1 << 36);
    }

    BooksConfig at {books}, nested {} {
        BookSymbols: symbols = Vec::new(), env "BOOK_SYMBOLS", Rule::BookSymbols;
        // Binance's deepest snapshot is 5,000 levels; below 10 a book is only a ticker.
        BookMaxLevels: max_levels = 1000, env _, count(10, 5000);
        BookTopLevels: top_levels = 20, env _, count(1, 5000);
        // Binance's fastest diff stream is every 100 ms; 10 ms still conflates bursts.
        BookPublishMs: publish_ms = 100, env _, count(10, 60_000);
    }
}

impl Field {
    /// The name to show in an error: the variable if the environment set it.
    pub(super) fn name(self, from_env: &HashSet<Field>) -> &'static str {
        match self.env_name() {
            Some(env) if from_env.contains(&self) => env,
            _ => self.toml_key(),
        }
    }

    /// Why a setting's bound is where it is, when the range alone would puzzle.
    pub(super) fn limit_why(self) -> Option<&'static str> {
        match self {
            Field::MaxFrameBytes => Some("the largest frame the parser takes"),
            _ => None,
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
        self.store(c, raw).map_err(fail)
    }
}
