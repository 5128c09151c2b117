//! Tests of configuration loading, checks and printing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::fields::Field;
use super::value::redact_url;
use super::*;
use crate::market::{Interval, Symbol};

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
        ("[feed]\nmax_frame_bytes = 1000", "feed.max_frame_bytes=1000: expected a whole number from 4096 to 1048576 (the largest frame the parser takes)"),
        ("[feed]\nmax_frame_bytes = 67108864", "feed.max_frame_bytes=67108864: expected a whole number from 4096 to 1048576 (the largest frame the parser takes)"),
        ("[feed]\nmax_frame_bytes = 1048577", "feed.max_frame_bytes=1048577: expected a whole number from 4096 to 1048576 (the largest frame the parser takes)"),
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
            "unknown key batch_sise in the configuration (did you mean `batch_size`?); \
             allowed here: database_url,"
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
    // Unencoded '/', '?', '#' and '@' in a password: none of it is printed.
    assert_eq!(
        redact_url("postgres://ap:pa/ss?w#o@rd@db:5432/ap"),
        "postgres://ap:REDACTED@db:5432/ap"
    );
    assert_eq!(
        redact_url("redis://:a/b@cache:6379/0"),
        "redis://:REDACTED@cache:6379/0"
    );
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
    let text = include_str!("../../alphapulse.example.toml");
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
            // A secret of the environment only is refused in a file, by design.
            Some(rest)
                if Field::ALL.iter().any(|f| {
                    !matches!(f.rule(), Rule::Key) && rest.starts_with(&format!("{} =", f.leaf()))
                }) =>
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
    assert_eq!(env_names.len(), 45);
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
    let c = Config::from_toml_str("[database]\nretention_days = 90\nspool_max_bytes = 2097152\n")
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
fn dashboard_on_shard_takes_a_flag_or_auto() {
    assert_eq!(Config::default().engine.dashboard_on_shard, Switch::Auto);
    for (toml, want) in [
        ("true", Switch::On),
        ("false", Switch::Off),
        ("\"auto\"", Switch::Auto),
    ] {
        let c = Config::from_toml_str(&format!("[engine]\ndashboard_on_shard = {toml}\n")).unwrap();
        assert_eq!(c.engine.dashboard_on_shard, want, "{toml}");
    }
    for (text, want) in [
        ("AUTO", Switch::Auto),
        ("off", Switch::Off),
        ("1", Switch::On),
    ] {
        let env: HashMap<String, String> =
            [("ALPHAPULSE_DASHBOARD_ON_SHARD".to_owned(), text.to_owned())].into();
        assert_eq!(
            load(None, &env).unwrap().engine.dashboard_on_shard,
            want,
            "{text}"
        );
    }
    let e = Config::from_toml_str("[engine]\ndashboard_on_shard = \"sometimes\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "engine.dashboard_on_shard=\"sometimes\": expected true, false or auto"
    );
    let env: HashMap<String, String> =
        [("ALPHAPULSE_DASHBOARD_ON_SHARD".to_owned(), "2".to_owned())].into();
    let e = load(None, &env).unwrap_err().to_string();
    assert!(e.contains("expected true, false or auto"), "{e}");
}

#[test]
fn write_method_loads_from_toml_and_environment_and_refuses_other_names() {
    assert_eq!(Config::default().database.write_method, WriteMethod::Copy);
    let c = Config::from_toml_str("[database]\nwrite_method = \"unnest\"\n").unwrap();
    assert_eq!(c.database.write_method, WriteMethod::Unnest);
    let env: HashMap<String, String> = [
        ("DATABASE_WRITE_METHOD", "unnest"),
        ("DATABASE_HOLD_CONNECTIONS", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let c = load(None, &env).unwrap();
    assert_eq!(c.database.write_method, WriteMethod::Unnest);
    assert!(!c.database.hold_connections && Config::default().database.hold_connections);
    let e = Config::from_toml_str("[database]\nwrite_method = \"insert\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "database.write_method=\"insert\": expected one of copy, unnest"
    );
    let env: HashMap<String, String> = [("DATABASE_WRITE_METHOD", "COPY")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let e = load(None, &env).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("DATABASE_WRITE_METHOD=COPY: expected one of"),
        "{e}"
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

/// The `[signals]` table (formerly tested in `signals::params`).
mod signals_table {
    use super::super::signals;
    use crate::config::ConfigError;
    use crate::market::Interval;
    use crate::signals::params::SignalsConfig;

    fn parse(text: &str) -> Result<SignalsConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut c = SignalsConfig::default();
        signals::apply_toml(&mut c, &table["signals"], "the configuration")?;
        signals::validate(&c)?;
        Ok(c)
    }

    #[test]
    fn overrides_start_from_the_files_defaults() {
        let c = parse("[signals.timeframes.\"1h\"]\nrsi_oversold = 25\n[signals]\nema_fast = 5\n")
            .unwrap();
        let h1 = c.params(Interval::H1);
        assert_eq!((h1.ema_fast, h1.rsi_oversold), (5, 25.0));
        assert_eq!(c.params(Interval::M1).rsi_oversold, 30.0);
        // Printing and reading back gives the same settings.
        let again = parse(&signals::to_toml(&c)).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[signals.timeframes.\"1h\"]\nema_slow = 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("signals.timeframes.1h.ema_slow=3"),
            "{e}"
        );
        let e = parse("[signals]\nvolume_spike_k = 0.5\n").unwrap_err();
        assert!(
            e.to_string().starts_with("signals.volume_spike_k=0.5"),
            "{e}"
        );
        let e = parse("[signals]\nrsi_oversld = 20\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown key signals.rsi_oversld"),
            "{e}"
        );
        let e = parse("[signals.timeframes.\"2m\"]\nema_fast = 3\n").unwrap_err();
        assert!(e.to_string().starts_with("signals.timeframes.2m=2m"), "{e}");
    }
}

#[test]
fn the_bridge_key_comes_from_the_environment_only_and_is_never_shown() {
    let key = "k3y-of-at-least-thirty-two-characters!";
    let c = load_env(&[
        ("ALPHAPULSE_BRIDGE_KEY", key),
        ("REDIS_TLS_CA_FILE", "/etc/ap/redis-ca.pem"),
        ("ALPHAPULSE_MAX_SERIES", "64"),
    ])
    .unwrap();
    assert_eq!(c.redis_bridge_key.as_deref(), Some(key));
    assert_eq!(
        c.redis_tls_ca_file,
        Some(PathBuf::from("/etc/ap/redis-ca.pem"))
    );
    assert_eq!(c.engine.max_series, 64);
    // Neither `config print` nor `Debug` (what a log line would show) carries it.
    let printed = c.to_toml_redacted();
    assert!(!printed.contains(key), "{printed}");
    assert!(printed
        .contains("redis_bridge_key is set but not shown; supply it with ALPHAPULSE_BRIDGE_KEY"));
    assert!(!format!("{c:?}").contains(key));
    // A short key is refused without being echoed.
    let e = err_env(&[("ALPHAPULSE_BRIDGE_KEY", "short")]);
    assert!(
        e.starts_with("ALPHAPULSE_BRIDGE_KEY=<redacted>: expected 32 to 256"),
        "{e}"
    );
    // A file that holds the key is refused, naming the variable, without echoing it.
    let e = err_toml(&format!("redis_bridge_key = \"{key}\"\n"));
    assert!(!e.contains(key), "{e}");
    assert!(
        e.contains("set ALPHAPULSE_BRIDGE_KEY in the environment"),
        "{e}"
    );
}

#[test]
fn the_redis_trade_conflation_window_is_read_and_bounded() {
    assert_eq!(load_env(&[]).unwrap().redis_trades_conflate_ms, 0);
    let c = load_env(&[("REDIS_TRADES_CONFLATE_MS", "250")]).unwrap();
    assert_eq!(c.redis_trades_conflate_ms, 250);
    let e = err_env(&[("REDIS_TRADES_CONFLATE_MS", "60001")]);
    assert!(
        e.starts_with("REDIS_TRADES_CONFLATE_MS=60001: expected"),
        "{e}"
    );
    let c = Config::from_toml_str("redis_trades_conflate_ms = 100\n").unwrap();
    assert_eq!(c.redis_trades_conflate_ms, 100);
}

#[test]
fn max_series_holds_at_least_this_instance_series() {
    // 3 default symbols x 4 default timeframes.
    let e = err_env(&[("ALPHAPULSE_MAX_SERIES", "11")]);
    assert_eq!(
        e,
        "ALPHAPULSE_MAX_SERIES=11: expected at least this instance's 12 series \
         (its symbols x timeframes)"
    );
    assert_eq!(
        load_env(&[("ALPHAPULSE_MAX_SERIES", "12")])
            .unwrap()
            .engine
            .max_series,
        12
    );
    assert_eq!(
        Config::default().engine.max_series,
        crate::store::DEFAULT_MAX_SERIES
    );
}

#[test]
fn instance_of_is_the_split_instance_symbols_uses() {
    let mut c = Config::default();
    c.engine.instance_count = 3;
    for index in 0..3 {
        c.engine.instance_index = index;
        for s in c.instance_symbols() {
            assert_eq!(instance_of(s, 3), index);
        }
    }
    assert_eq!(instance_of(sym("BTCUSDT"), 1), 0);
    assert_eq!(
        instance_of(sym("BTCUSDT"), 0),
        0,
        "a count of 0 is taken as 1"
    );
}

#[test]
fn the_frame_limit_is_the_parsers() {
    // One limit from the socket to the parser: the largest setting is what the parser
    // takes, and that setting loads.
    assert_eq!(
        MAX_FRAME_BYTES_LIMIT as usize,
        crate::wire::Parser::MAX_FRAME_BYTES
    );
    let at_limit = format!("[feed]\nmax_frame_bytes = {MAX_FRAME_BYTES_LIMIT}");
    let c = Config::from_toml_str(&at_limit).unwrap();
    assert_eq!(c.feed.max_frame_bytes, crate::wire::Parser::MAX_FRAME_BYTES);
}
