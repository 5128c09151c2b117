//! Runs the built `alphapulse` binary against configuration files, environment
//! variables and `.env` files, and checks its exit codes and its one-line errors.
//!
//! Every child runs with a cleared environment (only PATH and HOME kept) in a fresh
//! temporary directory, so neither this machine's environment nor a stray `.env`
//! leaks in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_alphapulse");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "alphapulse-config-cli-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary in `dir` with only PATH, HOME and `env` set.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    // Pinning depends on this machine's cores; the layout rules are unit-tested.
    cmd.env("ALPHAPULSE_PIN_CORES", "false");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new("run");
    run_in(&dir.0, args, env)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 2 and exactly one `error:` line on stderr; returns that line.
fn usage_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn a_good_configuration_checks_ok() {
    let dir = TempDir::new("good");
    let file = dir.write(
        "good.toml",
        "symbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntimeframes = [\"1m\"]\n[feed.streams]\ntrade = true\n",
    );
    let out = run_in(
        &dir.0,
        &["config", "check", "-c", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("configuration OK\n"), "{text}");
    assert!(text.contains("symbols: 2 (BTCUSDT,ETHUSDT)"), "{text}");
    assert!(text.contains("timeframes: 1m"), "{text}");
    assert!(text.contains("4 streams: kline, trade"), "{text}");
    assert!(text.contains("layout: "), "{text}");

    // -c also works before the sub-command.
    let out = run_in(
        &dir.0,
        &["-c", file.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_non_number_in_the_environment_exits_2_naming_the_variable() {
    let line = usage_error(&run(&["config", "check"], &[("BATCH_SIZE", "abc")]));
    assert_eq!(
        line,
        "error: BATCH_SIZE=abc: expected a whole number from 1 to 100000"
    );
    // `run` loads the configuration before anything starts.
    let line = usage_error(&run(&["run"], &[("BATCH_SIZE", "abc")]));
    assert!(line.contains("BATCH_SIZE=abc"), "{line}");
}

#[test]
fn an_unknown_toml_key_exits_2_naming_it() {
    let dir = TempDir::new("unknown");
    let file = dir.write("bad.toml", "[feed]\nmax_streams = 10\n");
    let line = usage_error(&run_in(
        &dir.0,
        &["config", "check", "-c", file.to_str().unwrap()],
        &[],
    ));
    assert!(
        line.starts_with("error: unknown key feed.max_streams in "),
        "{line}"
    );
}

#[test]
fn bad_values_exit_2_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("SYMBOLS", "BTCUSDT,ETH/USDT", "error: SYMBOLS=BTCUSDT,ETH/USDT: \"ETH/USDT\" is not a symbol"),
        ("TIMEFRAMES", "1m,10m", "error: TIMEFRAMES=1m,10m: \"10m\" is not an interval"),
        ("BINANCE_WS_URL", "https://stream.binance.com:9443", "error: BINANCE_WS_URL=https://stream.binance.com:9443: expected a URL starting with ws:// or wss://"),
        ("BINANCE_REST_URL", "ftp://api.binance.com", "error: BINANCE_REST_URL=ftp://api.binance.com: expected a URL starting with http:// or https://"),
        ("DASHBOARD_ADDR", "nowhere", "error: DASHBOARD_ADDR=nowhere: expected an IP address and port"),
        ("INSTANCE_INDEX", "4", "error: INSTANCE_INDEX=4: expected less than engine.instance_count (1)"),
    ];
    for (key, value, want) in cases {
        let line = usage_error(&run(&["config", "check"], &[(key, value)]));
        assert!(
            line.starts_with(want),
            "{key}={value}:\n got  {line}\n want {want}"
        );
    }
    let dir = TempDir::new("badfile");
    let file = dir.write(
        "bad.toml",
        "symbols = [\"BTCUSDT\"]\ntimeframes = [\"2h\", \"9h\"]\n",
    );
    let line = usage_error(&run_in(
        &dir.0,
        &["config", "check", "-c", file.to_str().unwrap()],
        &[],
    ));
    assert!(
        line.starts_with("error: timeframes=[\"2h\", \"9h\"]: \"9h\" is not an interval"),
        "{line}"
    );
}

#[test]
fn a_bad_shard_map_exits_2() {
    let dir = TempDir::new("shardmap");
    dir.write(
        "twice.toml",
        "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n\
         [[shard]]\ncore = 1\nsymbols = [\"BTCUSDT\"]\n\
         [[shard]]\ncore = 2\nsymbols = [\"BTCUSDT\", \"ETHUSDT\", \"ADAUSDT\"]\n",
    );
    let line = usage_error(&run_in(
        &dir.0,
        &["config", "check"],
        &[("SHARD_MAP", "twice.toml")],
    ));
    assert_eq!(
        line,
        "error: symbol BTCUSDT is listed by shard 0 and shard 1: keep it in one shard's list"
    );
    let line = usage_error(&run_in(
        &dir.0,
        &["config", "check"],
        &[("SHARD_MAP", "missing.toml")],
    ));
    assert!(
        line.starts_with("error: cannot read shard map missing.toml"),
        "{line}"
    );
    dir.write(
        "typo.toml",
        "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n[[shards]]\ncore = 1\n",
    );
    let line = usage_error(&run_in(
        &dir.0,
        &["config", "check"],
        &[("SHARD_MAP", "typo.toml")],
    ));
    assert!(
        line.starts_with("error: shard map typo.toml line 4: unknown field `shards`"),
        "{line}"
    );
}

#[test]
fn the_shipped_shard_maps_check_ok_unpinned() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dev = format!("{root}/shards/dev-2core.toml");
    let out = run(&["config", "check"], &[("SHARD_MAP", &dev)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("layout: 1 shard on any core (3 symbols)"),
        "{}",
        stdout(&out)
    );

    let metal = format!("{root}/shards/bare-metal-16core.toml");
    let symbols: Vec<String> = (0..24).map(|i| format!("S{i}USDT")).collect();
    // Each shard owns its sockets: twelve shards need at least twelve connections.
    let line = usage_error(&run(
        &["config", "check"],
        &[("SHARD_MAP", &metal), ("SYMBOLS", &symbols.join(","))],
    ));
    assert!(line.contains("need 12 exchange connections"), "{line}");
    let out = run(
        &["config", "check"],
        &[
            ("SHARD_MAP", &metal),
            ("SYMBOLS", &symbols.join(",")),
            ("BINANCE_MAX_CONNECTIONS", "12"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("layout: 12 shards"),
        "{}",
        stdout(&out)
    );
    // The default three symbols cannot fill twelve shards.
    let line = usage_error(&run(&["config", "check"], &[("SHARD_MAP", &metal)]));
    assert!(
        line.starts_with(
            "error: the shard map has 12 shards without a symbols list but only 3 symbols"
        ),
        "{line}"
    );
}

#[test]
fn printed_configuration_round_trips_through_check() {
    let env = [
        (
            "DATABASE_URL",
            "postgres://ap:hunter2@db.internal:5432/alphapulse",
        ),
        ("REDIS_URL", "redis://:hunter3@cache:6379/0"),
        ("DASHBOARD_TOKEN", "a-very-long-dashboard-token-0123"),
        ("SYMBOLS", "SOLUSDT,BNBUSDT"),
        ("TIMEFRAMES", "1s,1d"),
        ("BATCH_TIMEOUT", "0.25"),
        ("DASHBOARD_ALLOWED_ORIGINS", "https://dash.example.com"),
        ("INSTANCE_INDEX", "0"),
        ("INSTANCE_COUNT", "1"),
    ];
    let first = run(&["config", "print"], &env);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let printed = stdout(&first);
    for secret in ["hunter2", "hunter3", "a-very-long-dashboard-token-0123"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        printed.contains("symbols = [\"SOLUSDT\", \"BNBUSDT\"]"),
        "{printed}"
    );
    assert!(printed.contains("batch_timeout_s = 0.25"), "{printed}");

    let dir = TempDir::new("roundtrip");
    let file = dir.write("printed.toml", &printed);
    let path = file.to_str().unwrap();
    let check = run_in(&dir.0, &["config", "check", "-c", path], &[]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}\n{printed}",
        stderr(&check)
    );
    assert!(stdout(&check).contains("symbols: 2 (SOLUSDT,BNBUSDT)"));

    // Printing the printed file again gives the same text, less the token note.
    let second = run_in(&dir.0, &["config", "print", "-c", path], &[]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let without_token: String = printed
        .lines()
        .filter(|l| !l.starts_with("# dashboard_token"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout(&second), without_token);
}

#[test]
fn dotenv_sits_between_the_environment_and_the_file() {
    let dir = TempDir::new("dotenv");
    let file = dir.write("c.toml", "batch_size = 3\nmax_queue_size = 33\n");
    dir.write(
        ".env",
        "# local overrides\nBATCH_SIZE=9\nWEBSOCKET_MAX_CLIENTS=99\n",
    );
    let path = file.to_str().unwrap();

    let out = run_in(&dir.0, &["config", "print", "-c", path], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.contains("\nbatch_size = 9\n"),
        ".env beats the file:\n{text}"
    );
    assert!(
        text.contains("\nmax_queue_size = 33\n"),
        "the file beats defaults:\n{text}"
    );
    assert!(text.contains("\nwebsocket_max_clients = 99\n"), "{text}");

    let out = run_in(
        &dir.0,
        &["config", "print", "-c", path],
        &[("BATCH_SIZE", "7")],
    );
    assert!(
        stdout(&out).contains("\nbatch_size = 7\n"),
        "the environment beats .env"
    );

    dir.write(".env", "BATCH_SIZE=abc\n");
    let line = usage_error(&run_in(&dir.0, &["config", "check"], &[]));
    assert_eq!(
        line,
        "error: BATCH_SIZE=abc: expected a whole number from 1 to 100000"
    );

    dir.write(".env", "BATCH_SIZE='unterminated\n");
    let line = usage_error(&run_in(&dir.0, &["config", "check"], &[]));
    assert!(line.contains(".env"), "{line}");
}

#[test]
fn a_missing_config_file_or_bad_argument_exits_2() {
    let line = usage_error(&run(&["config", "check", "-c", "no-such-file.toml"], &[]));
    assert!(
        line.starts_with("error: cannot read configuration file no-such-file.toml"),
        "{line}"
    );
    let line = usage_error(&run(&["config", "chekc"], &[]));
    assert!(line.contains("chekc"), "{line}");
    let line = usage_error(&run(&["--frobnicate", "run"], &[]));
    assert!(line.contains("--frobnicate"), "{line}");
}

#[test]
fn help_and_version_exit_0() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    for command in ["run", "demo", "simulate", "config", "bench"] {
        assert!(
            stdout(&out).contains(command),
            "{command} missing from help"
        );
    }
    let out = run(&["bench", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("parse") && stdout(&out).contains("ingest"));
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("alphapulse "));
}

#[test]
fn too_many_connections_or_a_missing_ca_file_exit_2_before_starting() {
    let symbols: Vec<String> = (0..300).map(|i| format!("S{i:03}USDT")).collect();
    let symbols = symbols.join(",");
    // 300 symbols × 2 timeframes = 600 streams; 2 connections × 200 streams hold 400.
    for command in [&["config", "check"][..], &["run"][..]] {
        let out = run(
            command,
            &[
                ("SYMBOLS", symbols.as_str()),
                ("TIMEFRAMES", "1m,5m"),
                ("BINANCE_MAX_CONNECTIONS", "2"),
                ("ALPHAPULSE_PIN_CORES", "false"),
            ],
        );
        let line = usage_error(&out);
        assert!(
            line.contains("BINANCE_MAX_CONNECTIONS"),
            "{command:?}: {line}"
        );
    }
    for command in [&["config", "check"][..], &["run"][..]] {
        let out = run(
            command,
            &[
                ("BINANCE_TLS_CA_FILE", "/nonexistent/ca.pem"),
                ("ALPHAPULSE_PIN_CORES", "false"),
            ],
        );
        let line = usage_error(&out);
        assert!(line.contains("feed.tls_ca_file"), "{command:?}: {line}");
    }
}
