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

/// Asserts exit code 2 and stderr starting with `error: `; returns stderr.
fn exit_2_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Asserts exit code 2 and exactly one `error:` line on stderr; returns that line.
fn usage_error(out: &Output) -> String {
    let err = exit_2_error(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    lines[0].to_owned()
}

/// Asserts exit 2 and clap's whole message on stderr (the error, any tip, the usage
/// line where clap gives one, and where help is); returns it.
fn argument_error(out: &Output) -> String {
    let err = exit_2_error(out);
    assert!(
        err.ends_with("\nFor more information, try '--help'.\n"),
        "{err}"
    );
    err
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
fn an_unknown_toml_key_suggests_the_nearest_and_lists_the_table() {
    let dir = TempDir::new("suggest");
    let check = |name: &str, text: &str| {
        let file = dir.write(name, text);
        let path = file.to_str().unwrap().to_owned();
        let line = usage_error(&run_in(&dir.0, &["config", "check", "-c", &path], &[]));
        (line, path)
    };
    let (line, path) = check("feed.toml", "[feed]\nstream_per_connection = 3\n");
    assert!(
        line.starts_with(&format!(
            "error: unknown key feed.stream_per_connection in {path} \
             (did you mean `max_streams_per_connection`?); allowed here: \
             max_streams_per_connection, max_outgoing_msgs_per_s,"
        )),
        "{line}"
    );
    let (line, _) = check("top.toml", "batchsize = 5\n");
    assert!(line.contains("(did you mean `batch_size`?)"), "{line}");
    let (line, _) = check("table.toml", "[signal]\nema_fast = 5\n");
    assert!(line.contains("(did you mean `signals`?)"), "{line}");
    let (line, _) = check("place.toml", "[feed]\nbatch_size = 5\n");
    assert!(
        line.contains("(did you mean `batch_size` at the top level, before any [table]?)"),
        "{line}"
    );
    // [signals] and its per-timeframe tables are checked the same way, in the file.
    let (line, path) = check("signals.toml", "[signals]\nema_fst = 5\n");
    assert!(
        line.starts_with(&format!(
            "error: unknown key signals.ema_fst in {path} (did you mean `ema_fast`?); \
             allowed here: enabled, warm_candles,"
        )),
        "{line}"
    );
    let (line, path) = check("tf.toml", "[signals.timeframes.\"1h\"]\nrsi_perod = 10\n");
    assert!(
        line.starts_with(&format!(
            "error: unknown key signals.timeframes.1h.rsi_perod in {path} \
             (did you mean `rsi_period`?); allowed here: ema_fast,"
        )),
        "{line}"
    );
    // Nothing close: no guess.
    let (line, _) = check("far.toml", "[engine]\ncolour = 1\n");
    assert!(!line.contains("did you mean"), "{line}");
    assert!(line.contains("allowed here: pin_cores,"), "{line}");
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
fn printed_origins_name_each_source_and_round_trip_through_check() {
    let dir = TempDir::new("origin");
    let file = dir.write(
        "c.toml",
        "batch_size = 3\nmax_queue_size = 33\n[feed]\nbackoff_max_ms = 9000\n\
         [signals]\nema_fast = 5\n[signals.timeframes.\"1h\"]\nrsi_period = 10\n",
    );
    dir.write(".env", "BATCH_SIZE=9\nWEBSOCKET_MAX_CLIENTS=99\n");
    let path = file.to_str().unwrap();
    let env = [
        ("BATCH_SIZE", "7"),
        ("DASHBOARD_TOKEN", "a-very-long-dashboard-token-0123"),
    ];
    let out = run_in(&dir.0, &["config", "print", "--origin", "-c", path], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = stdout(&out);
    let from_file = format!("  # from file ({path})");
    for line in [
        "batch_size = 7  # from env (BATCH_SIZE)".to_owned(),
        "websocket_max_clients = 99  # from .env (WEBSOCKET_MAX_CLIENTS)".to_owned(),
        format!("max_queue_size = 33{from_file}"),
        format!("backoff_max_ms = 9000{from_file}"),
        "batch_timeout_s = 0.1  # default".to_owned(),
        "# database_url is unset  # default".to_owned(),
        "# dashboard_token is set but not shown; supply it with DASHBOARD_TOKEN.  \
         # from env (DASHBOARD_TOKEN)"
            .to_owned(),
        // A per-timeframe key the file leaves out holds the [signals] value.
        "[signals]\nenabled = true  # default\nwarm_candles = 200  # default".to_owned(),
        format!("[signals.timeframes.\"1h\"]\nema_fast = 5{from_file}"),
        format!("rsi_period = 10{from_file}"),
        "macd_fast = 12  # default".to_owned(),
    ] {
        assert!(printed.contains(&format!("{line}\n")), "{line}:\n{printed}");
    }
    assert!(!printed.contains("a-very-long-dashboard-token-0123"));

    // The annotated text loads back to the same values.
    let again = dir.write("printed.toml", &printed);
    let check = run_in(
        &dir.0,
        &["config", "check", "-c", again.to_str().unwrap()],
        &[],
    );
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    std::fs::remove_file(dir.0.join(".env")).unwrap();
    let plain = |file: &str, env: &[(&str, &str)]| {
        let out = run_in(&dir.0, &["config", "print", "-c", file], env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let original = plain(
        path,
        &[("BATCH_SIZE", "7"), ("WEBSOCKET_MAX_CLIENTS", "99")],
    );
    assert_eq!(plain(again.to_str().unwrap(), &[]), original);
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
    let err = argument_error(&run(&["config", "chekc"], &[]));
    assert!(err.contains("chekc"), "{err}");
    let err = argument_error(&run(&["--frobnicate", "run"], &[]));
    assert!(err.contains("--frobnicate"), "{err}");
}

#[test]
fn a_mistyped_command_keeps_claps_whole_message() {
    let err = argument_error(&run(&["rn"], &[]));
    assert!(
        err.starts_with("error: unrecognized subcommand 'rn'\n"),
        "{err}"
    );
    assert!(
        err.contains("\n  tip: a similar subcommand exists: 'run'\n"),
        "{err}"
    );
    assert!(
        err.contains("\nUsage: alphapulse [OPTIONS] <COMMAND>\n"),
        "{err}"
    );
    // Under a command, its own commands are suggested.
    let err = argument_error(&run(&["config", "prnt"], &[]));
    assert!(
        err.contains("tip: a similar subcommand exists: 'print'"),
        "{err}"
    );
    let err = argument_error(&run(&["-c", "x.toml", "bench", "dv"], &[]));
    assert!(
        err.contains("tip: a similar subcommand exists: 'db'"),
        "{err}"
    );
    // Nothing near: no tip, the rest of the message all the same.
    let err = argument_error(&run(&["frobnicate"], &[]));
    assert!(!err.contains("tip:"), "{err}");
    assert!(err.contains("\nUsage: alphapulse"), "{err}");
}

#[test]
fn conformance_echo_is_an_option_of_run_and_demo_only() {
    for command in [&["run", "--help"][..], &["demo", "--help"][..]] {
        let out = run(command, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("--conformance-echo"), "{command:?}");
    }
    for command in [&["--help"][..], &["config", "check", "--help"][..]] {
        let out = run(command, &[]);
        assert!(!stdout(&out).contains("--conformance-echo"), "{command:?}");
    }
    let err = argument_error(&run(&["--conformance-echo", "config", "check"], &[]));
    assert!(err.contains("--conformance-echo"), "{err}");
    let err = argument_error(&run(&["config", "check", "--conformance-echo"], &[]));
    assert!(err.contains("--conformance-echo"), "{err}");
    // The file's setting still works without the flag.
    let dir = TempDir::new("echo");
    let file = dir.write("echo.toml", "[dashboard]\nconformance_echo = true\n");
    let out = run_in(
        &dir.0,
        &["config", "print", "-c", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\nconformance_echo = true\n"));
}

#[test]
fn help_shows_the_environment_variables() {
    for command in [&["run", "--help"][..], &["config", "--help"][..]] {
        let out = run(command, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        // The option's variable, clap's way.
        assert!(
            text.contains("[env: ALPHAPULSE_CONFIG="),
            "{command:?}:\n{text}"
        );
        // Settings set only through the environment or the file: listed, and where
        // the rest is.
        for listed in [
            "DATABASE_URL",
            "BATCH_SIZE",
            "ALPHAPULSE_BRIDGE_KEY",
            "DATABASE_SPOOL_DIR",
            "ALPHAPULSE_LOG",
            "README",
            "alphapulse.example.toml",
        ] {
            assert!(text.contains(listed), "{command:?} lacks {listed}:\n{text}");
        }
    }
    let out = run(&["run", "-h"], &[]);
    assert!(stdout(&out).contains("alphapulse.example.toml"));
    // An option read from a secret variable does not show its value.
    let out = run(
        &["bench", "db", "--help"],
        &[("DATABASE_URL", "postgres://ap:hunter2@db/alphapulse")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[env: DATABASE_URL]"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn alphapulse_config_names_the_file_unless_c_does() {
    let dir = TempDir::new("config-env");
    let a = dir.write("a.toml", "batch_size = 3\n");
    let b = dir.write("b.toml", "batch_size = 4\n");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let batch = |args: &[&str], env: &[(&str, &str)]| {
        let out = run_in(&dir.0, args, env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let line = text.lines().find(|l| l.starts_with("batch_size = "));
        line.unwrap_or_default().to_owned()
    };
    let env = [("ALPHAPULSE_CONFIG", a)];
    assert_eq!(batch(&["config", "print"], &env), "batch_size = 3");
    assert_eq!(batch(&["config", "print", "-c", b], &env), "batch_size = 4");
    // From `.env` too; the process environment wins over it.
    dir.write(".env", &format!("ALPHAPULSE_CONFIG={a}\n"));
    assert_eq!(batch(&["config", "print"], &[]), "batch_size = 3");
    assert_eq!(
        batch(&["config", "print"], &[("ALPHAPULSE_CONFIG", b)]),
        "batch_size = 4"
    );
    let missing = run(
        &["config", "check"],
        &[("ALPHAPULSE_CONFIG", "missing.toml")],
    );
    assert!(usage_error(&missing).contains("cannot read configuration file missing.toml"));
}

#[test]
fn completions_and_the_man_page_name_the_commands() {
    let out = run(&["completions", "bash"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = stdout(&out);
    for command in [
        "run",
        "demo",
        "simulate",
        "config",
        "bench",
        "capture",
        "completions",
        "man",
    ] {
        assert!(script.contains(command), "{command} missing:\n{script}");
    }
    let dir = TempDir::new("completions");
    let file = dir.write("alphapulse.bash", &script);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("alphapulse"), "{shell}");
    }
    let err = argument_error(&run(&["completions", "tcsh"], &[]));
    assert!(err.contains("tcsh"), "{err}");

    let out = run(&["man"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.starts_with(".TH alphapulse "), "{page}");
    assert!(page.contains("\n.SH ENVIRONMENT\n"), "{page}");
    assert!(page.contains("\\fBBATCH_SIZE\\fR"), "{page}");
    for command in [
        "run", "demo", "simulate", "config", "migrate", "tuning", "capture",
    ] {
        assert!(
            page.contains(&format!("alphapulse\\-{command}(1)")),
            "{command} missing:\n{page}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    for command in ["run", "demo", "simulate", "config", "bench", "capture"] {
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

/// The build script, as a module, to test its fallbacks without another build.
#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

#[test]
fn version_carries_the_git_revision() {
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let version = stdout(&out);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = build_script::revision(option_env!("ALPHAPULSE_GIT_REV").map(String::from), root);
    let bare = format!("alphapulse {}", env!("CARGO_PKG_VERSION"));
    match want {
        // `-dirty` follows the tree at build time, which the test cannot know.
        Some(rev) => {
            let rev = rev.trim_end_matches("-dirty");
            assert!(
                version == format!("{bare} ({rev})\n")
                    || version == format!("{bare} ({rev}-dirty)\n"),
                "{version:?}, want revision {rev}"
            );
        }
        None => assert_eq!(version, format!("{bare}\n")),
    }
}

#[test]
fn the_build_script_falls_back_outside_a_checkout() {
    // A directory that is no checkout (an unpacked tarball): no revision.
    let dir = TempDir::new("tarball");
    assert_eq!(build_script::git_revision(&dir.0), None);
    // Packagers name the revision (or none, with an empty value).
    let named = build_script::revision(Some("1a2b3c4".into()), &dir.0);
    assert_eq!(named.as_deref(), Some("1a2b3c4"));
    assert_eq!(build_script::revision(Some(String::new()), &dir.0), None);
    // A tarball unpacked inside another repository does not take its revision.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if git(&["init", "-q"]) {
        let inner = dir.0.join("alphapulse-0.1.0");
        std::fs::create_dir_all(&inner).unwrap();
        assert_eq!(build_script::git_revision(&inner), None);
    }
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

#[test]
fn capture_bad_use_exits_2_with_one_line() {
    let err = usage_error(&run(
        &[
            "capture",
            "--out",
            "c",
            "--rotate-bytes",
            "1000",
            "--max-bytes",
            "1500",
        ],
        &[],
    ));
    assert!(
        err.contains("--max-bytes (1500) must be at least twice --rotate-bytes"),
        "{err}"
    );
    let err = usage_error(&run(&["capture", "--out", "c", "--streams", "a b"], &[]));
    assert!(err.contains("is not a stream name"), "{err}");
    let err = usage_error(&run(
        &["capture", "--out", "c", "--streams", "a@trade"],
        &[("BINANCE_WS_URL", "http://x")],
    ));
    assert!(err.contains("BINANCE_WS_URL"), "{err}");
    let err = argument_error(&run(&["capture", "--out", "c", "--level", "30"], &[]));
    assert!(err.contains("--level"), "{err}");
    let err = argument_error(&run(&["capture"], &[]));
    assert!(err.contains("--out"), "{err}");
}
