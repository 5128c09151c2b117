//! The `alphapulse` command line: parses arguments, loads the configuration once and
//! hands it to the role that runs the command.
//!
//! Runs on the main thread. In: the process arguments, the process environment and a
//! `.env` file in the working directory (merged here, so no library code reads the
//! environment). Out: an exit code: 0 on success, 2 for bad arguments (clap's whole
//! message) or configuration (one `error:` line naming the key and the fix), 1 for
//! runtime failures. Also the shell completions and the man page, both made from the
//! same [`command`], so they cannot drift from the parser.
//!
//! Adding a command is one variant in [`Command`] (or in a sub-command enum) and one
//! arm in [`dispatch`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::topology::{self, ShardMap};

/// Exit code for bad arguments or configuration.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for failures at run time.
pub const EXIT_FAILURE: i32 = 1;

/// Environment variable holding the log filter (tracing-subscriber `EnvFilter` syntax).
pub const LOG_ENV: &str = "ALPHAPULSE_LOG";
/// The Rust ecosystem's usual log variable, read when `ALPHAPULSE_LOG` is not set.
pub const RUST_LOG_ENV: &str = "RUST_LOG";
/// `text` (the default) or `json`: one JSON object per log line, for log aggregation.
pub const LOG_FORMAT_ENV: &str = "ALPHAPULSE_LOG_FORMAT";
/// Set and not empty: no colour in the logs, even on a terminal (no-color.org).
pub const NO_COLOR_ENV: &str = "NO_COLOR";
/// The `.env` file read from the working directory.
pub const DOTENV_FILE: &str = ".env";
/// The configuration file when `-c` is not given (`-c` wins).
pub const CONFIG_ENV: &str = "ALPHAPULSE_CONFIG";

/// The version `--version` prints: the package version and the git revision it was built
/// from, `0.1.0 (abc1234)` (`-dirty` when the tree had changes), set by `build.rs`; the
/// bare package version where the build had no revision.
pub const VERSION: &str = match option_env!("ALPHAPULSE_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// Thread-per-core Binance market-data and signal engine.
#[derive(Debug, Parser)]
#[command(name = "alphapulse", version = VERSION, about)]
pub struct Cli {
    /// TOML configuration file; environment variables and `.env` override it. Without
    /// it, ALPHAPULSE_CONFIG (from the environment or `.env`) names the file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        global = true,
        env = CONFIG_ENV
    )]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine: feed, signals, sinks and dashboard.
    Run(ServeArgs),
    /// Simulator, engine and dashboard in one process; prints the dashboard URL.
    Demo {
        #[command(flatten)]
        demo: crate::demo::DemoArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// The Binance-compatible exchange simulator alone.
    Simulate(Box<crate::simulator::SimulateArgs>),
    /// Validate or print the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measurements, printed as JSON.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Apply the database migrations to DATABASE_URL.
    Migrate,
    /// Page the exchange's klines of a past range into the database (resumable, within
    /// the REST weight budget), or export stored candles (--export csv|parquet).
    History(crate::history::HistoryArgs),
    /// Record the exchange's raw frames with their receive times into rotated zstd
    /// files and a manifest, for `simulate --replay DIR`.
    Capture(Box<crate::capture::CaptureArgs>),
    /// Host tuning: check it, plan it (for tuning/apply.sh), render the systemd unit.
    #[command(subcommand)]
    Tuning(crate::tuning::TuningCommand),
    /// Print a shell completion script, e.g. `alphapulse completions bash >
    /// /etc/bash_completion.d/alphapulse`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `alphapulse man | man -l -`.
    Man,
}

/// Options of the commands that serve the dashboard (`run`, `demo`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ServeArgs {
    /// Serve `/ws/echo` for WebSocket conformance runs (also `[dashboard]
    /// conformance_echo = true`); never in production.
    #[arg(long)]
    pub conformance_echo: bool,
}

impl ServeArgs {
    /// Applies the options over the loaded configuration (a flag only turns on).
    fn apply(self, config: &mut Config) {
        config.dashboard.conformance_echo |= self.conformance_echo;
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and shard map; prints a summary.
    Check,
    /// Print the effective configuration as TOML (secrets redacted).
    Print {
        /// After each value, a comment saying where it came from: `default`, `from file
        /// (PATH)`, `from .env (VAR)` or `from env (VAR)`.
        #[arg(long)]
        origin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Parser throughput and latency on recorded frames.
    Parse(crate::harness::parse::ParseBenchArgs),
    /// End-to-end ingest through the engine against the simulator.
    Ingest(crate::harness::ingest::IngestBenchArgs),
    /// End-to-end latency at a fixed open-loop rate, measured at real clients, with HDR
    /// histogram reports.
    Latency(crate::harness::latency::LatencyBenchArgs),
    /// The client process of `bench latency` (started by it).
    #[command(hide = true)]
    LatencyClient(crate::harness::latency::LatencyClientArgs),
    /// Dashboard fan-out: N WebSocket clients, broadcasts at a fixed rate.
    Fanout(crate::harness::fanout::FanoutArgs),
    /// The client side of `bench fanout` (run by it in a separate process).
    #[command(hide = true)]
    FanoutClients(crate::harness::fanout::ClientArgs),
    /// Redis publishes per second, pipelined (the publisher path) against unpipelined.
    Redis(crate::harness::redis::RedisBenchArgs),
    /// Database writer throughput (binary COPY + upsert) against a plain multi-row
    /// INSERT baseline, into a scratch database.
    Db(crate::harness::db::DbBenchArgs),
}

/// Why a command stopped: bad input (exit 2) or a runtime failure (exit 1).
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<crate::tuning::TuningError> for Failure {
    fn from(e: crate::tuning::TuningError) -> Self {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Runtime(e.into())
        }
    }
}

impl From<topology::TopologyError> for Failure {
    fn from(e: topology::TopologyError) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// Where the environment variables and every setting are described.
const ENV_POINTER: &str = "Environment variables override the file (a .env file in the \
    working directory too); `alphapulse run --help` and `alphapulse config --help` list \
    them. Defaults, ranges and meanings: the README's Configuration table; \
    alphapulse.example.toml lists every key, also those set only in the file.";

/// The command line as clap sees it: the derived [`Cli`] with the environment
/// variables listed in the help of `run` and `config` (from the settings table).
pub fn command() -> clap::Command {
    let listed = format!("{}\n{ENV_POINTER}", env_help());
    let brief = |c: clap::Command| c.after_help(ENV_POINTER);
    let full = |c: clap::Command| c.after_help(ENV_POINTER).after_long_help(listed.clone());
    Cli::command()
        .mut_subcommand("run", full)
        .mut_subcommand("config", |c| {
            full(c)
                .mut_subcommand("check", brief)
                .mut_subcommand("print", brief)
        })
        .mut_subcommand("demo", brief)
}

/// Every environment variable the program reads, with what it sets: the process-wide
/// ones, then each setting's, in the settings table's order.
fn env_vars() -> Vec<(&'static str, String)> {
    let process = [
        (CONFIG_ENV, "the configuration file, when -c is not given"),
        (LOG_ENV, "log filter (else RUST_LOG; default info)"),
        (LOG_FORMAT_ENV, "text or json"),
        (NO_COLOR_ENV, "set: no colour in the logs"),
        (
            crate::tuning::POLICY_ENV,
            "warn or refuse when tuning checks fail",
        ),
    ]
    .map(|(name, what)| (name, what.to_owned()));
    process.into_iter().chain(config::env_settings()).collect()
}

/// [`env_vars`] as a help section.
fn env_help() -> String {
    let vars = env_vars();
    let width = vars.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment variables:\n");
    for (name, what) in &vars {
        out.push_str(&format!("  {name:width$}  {what}\n"));
    }
    out
}

/// The manual page in roff: clap's (name, synopsis, options, commands, version) with
/// its title first, then an ENVIRONMENT section listing every variable.
fn man_page() -> std::io::Result<String> {
    let mut rendered = Vec::new();
    clap_mangen::Man::new(command()).render(&mut rendered)?;
    let rendered = String::from_utf8_lossy(&rendered);
    // roff opens with its definition of the apostrophe; a man page opens with `.TH`.
    let mut page = match rendered.find("\n.TH ") {
        Some(at) => {
            let (preamble, rest) = rendered.split_at(at + 1);
            let (title, body) = rest.split_once('\n').unwrap_or((rest, ""));
            format!("{title}\n{preamble}{body}")
        }
        None => rendered.into_owned(),
    };
    page.push_str(".SH ENVIRONMENT\n");
    for (name, what) in env_vars() {
        page.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(name), roff(&what)));
    }
    page.push_str(&format!(".PP\n{}\n", roff(ENV_POINTER)));
    Ok(page)
}

/// `text` as one roff text line: backslashes and hyphens escaped, and a leading `.` or
/// `'` kept from reading as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The whole program; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match command()
        .try_get_matches_from(&args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m))
    {
        Ok(cli) => cli,
        Err(e) => return clap_exit(with_command_tip(e, &args)),
    };
    let env = collect_env(Path::new(DOTENV_FILE));
    init_tracing(env.as_ref().ok().map(|e| &e.vars));
    match dispatch(cli, env) {
        Ok(()) => 0,
        Err(Failure::Usage(line)) => {
            eprintln!("error: {line}");
            EXIT_USAGE
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

fn dispatch(cli: Cli, env: Result<Environment, ConfigError>) -> Result<(), Failure> {
    // `-c` (or ALPHAPULSE_CONFIG from the process, through clap), else the variable
    // from `.env`; empty is no file.
    let from_dotenv = env.as_ref().ok().and_then(|e| e.vars.get(CONFIG_ENV));
    let path = cli
        .config
        .clone()
        .or_else(|| from_dotenv.map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    let path = path.as_deref();
    let load = || -> Result<Config, Failure> { Ok(config::load(path, env_ref(&env)?)?) };
    let serve = |args: ServeArgs| -> Result<Config, Failure> {
        let mut config = load()?;
        args.apply(&mut config);
        check_layout(&config)?;
        Ok(config)
    };
    match cli.command {
        Command::Run(args) => crate::engine::run(serve(args)?).map_err(Failure::Runtime),
        Command::Demo { demo, serve: args } => {
            crate::demo::run(demo, serve(args)?).map_err(Failure::Runtime)
        }
        Command::Simulate(args) => crate::simulator::run_cli(*args).map_err(Failure::Runtime),
        Command::Config(ConfigCommand::Check) => {
            let config = load()?;
            let layout = check_layout(&config)?;
            print!("{}", check_summary(&config, &layout));
            Ok(())
        }
        Command::Config(ConfigCommand::Print { origin: false }) => {
            print!("{}", load()?.to_toml_redacted());
            Ok(())
        }
        Command::Config(ConfigCommand::Print { origin: true }) => {
            let env = env_all(&env)?;
            let (config, origins) = config::load_with_origins(path, &env.vars, &env.from_dotenv)?;
            print!("{}", config.to_toml_with_origins(&origins));
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "alphapulse", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            print!("{}", man_page().map_err(|e| Failure::Runtime(e.into()))?);
            Ok(())
        }
        Command::Bench(BenchCommand::Parse(args)) => {
            crate::harness::parse::run(args).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::Ingest(args)) => {
            crate::harness::ingest::run(args, load()?).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::Latency(args)) => {
            let base = load()?;
            let compare = if args.compare.is_empty() {
                None
            } else {
                let mut env = env_ref(&env)?.clone();
                for kv in &args.compare {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        Failure::Usage(format!("--compare {kv}: expected NAME=VALUE"))
                    })?;
                    env.insert(k.to_string(), v.to_string());
                }
                Some(config::load(path, &env)?)
            };
            crate::harness::latency::run(args, base, compare).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::LatencyClient(args)) => {
            crate::harness::latency::run_client(args).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::Fanout(args)) => {
            crate::harness::fanout::run(args).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::FanoutClients(args)) => {
            crate::harness::fanout::run_clients(args).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::Redis(args)) => {
            crate::harness::redis::run(args).map_err(Failure::Runtime)
        }
        Command::Bench(BenchCommand::Db(args)) => {
            crate::harness::db::run(args, load()?).map_err(Failure::Runtime)
        }
        Command::Tuning(command) => {
            let config = load()?;
            let policy = env_ref(&env)?.get(crate::tuning::POLICY_ENV);
            Ok(crate::tuning::run(
                command,
                &config,
                policy.map(String::as_str),
            )?)
        }
        Command::History(args) => {
            let config = load()?;
            crate::history::run(args, &config).map_err(|e| match e {
                crate::history::HistoryError::Usage(why) => Failure::Usage(why),
                crate::history::HistoryError::Runtime(why) => {
                    Failure::Runtime(anyhow::anyhow!(why))
                }
            })
        }
        Command::Capture(args) => {
            let config = load()?;
            crate::capture::run(*args, &config).map_err(|e| match e {
                crate::capture::CaptureError::Usage(why) => Failure::Usage(why),
                other => Failure::Runtime(other.into()),
            })
        }
        Command::Migrate => {
            let config = load()?;
            let Some(settings) = crate::sinks::db::DbSettings::from_config(&config) else {
                return Err(Failure::Usage(
                    "DATABASE_URL is not set; set it to the database to migrate, \
                     e.g. postgres://user:password@localhost/alphapulse"
                        .into(),
                ));
            };
            let report =
                crate::sinks::db::migrate_now(&settings).map_err(|e| Failure::Runtime(e.into()))?;
            if report.applied.is_empty() {
                println!("database schema is current");
            } else {
                for name in &report.applied {
                    println!("applied {name}");
                }
            }
            println!(
                "timescaledb: {}",
                if report.timescaledb {
                    "on (hypertables, compression and retention policies)"
                } else {
                    "off (plain PostgreSQL tables)"
                }
            );
            Ok(())
        }
    }
}

fn env_ref(env: &Result<Environment, ConfigError>) -> Result<&HashMap<String, String>, Failure> {
    env_all(env).map(|e| &e.vars)
}

fn env_all(env: &Result<Environment, ConfigError>) -> Result<&Environment, Failure> {
    env.as_ref().map_err(|e| Failure::Usage(e.to_string()))
}

/// The variables the program sees: the process environment over `.env`.
struct Environment {
    vars: HashMap<String, String>,
    /// The names whose value came from `.env` (the process does not set them).
    from_dotenv: HashSet<String>,
}

/// The layout for this host, with its exchange connections planned: a bad shard map or
/// more connections than `BINANCE_MAX_CONNECTIONS` allows are configuration errors
/// (exit 2), found before anything starts.
fn check_layout(config: &Config) -> Result<topology::Layout, Failure> {
    let layout = plan_layout(config)?;
    crate::dashboard::check_exposure(config).map_err(|e| Failure::Usage(e.to_string()))?;
    crate::dashboard::Options::from_config(config).map_err(|e| Failure::Usage(e.to_string()))?;
    crate::engine::plan_connections(config, &layout).map_err(|e| Failure::Usage(e.to_string()))?;
    crate::feed::connection::tls_config(config.feed.tls_ca_file.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(layout)
}

fn plan_layout(config: &Config) -> Result<topology::Layout, Failure> {
    let map = match &config.shard_map {
        Some(path) => Some(ShardMap::load(path)?),
        None => None,
    };
    Ok(topology::plan(
        config,
        map.as_ref(),
        &topology::allowed_cores(),
    )?)
}

/// The text `config check` prints after validating.
fn check_summary(config: &Config, layout: &topology::Layout) -> String {
    let symbols: Vec<String> = config.symbols.iter().map(|s| s.to_string()).collect();
    let timeframes: Vec<&str> = config.timeframes.iter().map(|t| t.as_str()).collect();
    let engine = &config.engine;
    let mut out = String::from("configuration OK\n");
    out.push_str(&format!(
        "symbols: {} ({})\n",
        symbols.len(),
        symbols.join(",")
    ));
    out.push_str(&format!("timeframes: {}\n", timeframes.join(",")));
    out.push_str(&format!(
        "instance: {} of {} ({} symbols here, {} streams: {})\n",
        engine.instance_index,
        engine.instance_count,
        config.instance_symbols().len(),
        config.instance_stream_count(),
        config.feed.streams,
    ));
    out.push_str(&format!("layout: {layout}\n"));
    out.push_str(&format!(
        "database: {}\nredis: {}\ndashboard: http://{}\n",
        if config.database_url.is_some() {
            "configured"
        } else {
            "none (recent candles and signals kept in memory)"
        },
        if config.redis_url.is_some() {
            "configured"
        } else {
            "none (publishes nowhere)"
        },
        config.dashboard_addr,
    ));
    out
}

/// The process environment merged over `.env` (the process wins). The process
/// environment itself is never modified. Variables that are not valid UTF-8 cannot be
/// ours and are skipped.
fn collect_env(dotenv_path: &Path) -> Result<Environment, ConfigError> {
    let process: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let dotenv = match dotenvy::from_path_iter(dotenv_path) {
        Ok(iter) => iter
            .collect::<Result<HashMap<String, String>, dotenvy::Error>>()
            .map_err(|e| ConfigError::DotEnv {
                path: dotenv_path.to_owned(),
                message: dotenv_problem(dotenv_path, &e),
            })?,
        Err(e) if e.not_found() => HashMap::new(),
        Err(e) => {
            return Err(ConfigError::DotEnv {
                path: dotenv_path.to_owned(),
                message: e.to_string().replace('\n', " "),
            })
        }
    };
    let from_dotenv = dotenv
        .keys()
        .filter(|k| !process.contains_key(*k))
        .cloned()
        .collect();
    Ok(Environment {
        vars: config::layer_env(dotenv, process),
        from_dotenv,
    })
}

/// Describes a `.env` error without echoing the offending line, which may hold a
/// password.
fn dotenv_problem(path: &Path, e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, column) => {
            let number = std::fs::read_to_string(path).ok().and_then(|text| {
                let first = line.lines().next().unwrap_or("").trim();
                text.lines().position(|l| l.trim() == first).map(|i| i + 1)
            });
            match number {
                Some(n) => format!("line {n} cannot be parsed (at column {})", column + 1),
                None => "a line cannot be parsed".to_owned(),
            }
        }
        other => other.to_string().replace('\n', " "),
    }
}

/// The log filter, format and colour from the environment (`.env` included):
/// `ALPHAPULSE_LOG`, else `RUST_LOG`, else `info`; a bare level applies to the engine's
/// own targets and leaves its dependencies at `warn` (`debug` shows the engine's
/// debugging, not every HTTP client's internals); a full directive is taken as written.
/// `ALPHAPULSE_LOG_FORMAT=json` writes one JSON object per line; the text format is
/// coloured only on a terminal and never when `NO_COLOR` is set (not empty).
fn init_tracing(env: Option<&HashMap<String, String>>) {
    use std::io::IsTerminal;
    let get = |name: &str| env.and_then(|e| e.get(name)).filter(|v| !v.is_empty());
    let (source, written) = match (get(LOG_ENV), get(RUST_LOG_ENV)) {
        (Some(v), _) => (LOG_ENV, v.clone()),
        (None, Some(v)) => (RUST_LOG_ENV, v.clone()),
        (None, None) => (LOG_ENV, "info".to_owned()),
    };
    let filter = log_filter(&written).unwrap_or_else(|e| {
        eprintln!("warning: {source}={written} is not a valid log filter ({e}); using info");
        log_filter("info").expect("info is a valid filter")
    });
    let json = match get(LOG_FORMAT_ENV).map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "json" => true,
        Some(v) if v == "text" => false,
        Some(v) => {
            eprintln!("warning: {LOG_FORMAT_ENV}={v} is not text or json; using text");
            false
        }
    };
    let colour = std::io::stderr().is_terminal() && get(NO_COLOR_ENV).is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(colour).try_init()
    };
}

/// The filter for a log setting: a bare level (`debug`, `info`, …) is the engine's
/// own level, with its dependencies at `warn` at most; anything else is an
/// `EnvFilter` directive taken as written.
fn log_filter(
    written: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    use tracing_subscriber::EnvFilter;
    let level = written.trim().to_ascii_lowercase();
    let directive = match level.as_str() {
        "trace" | "debug" | "info" => format!("warn,alphapulse={level}"),
        "warn" | "error" | "off" => level,
        _ => written.to_owned(),
    };
    EnvFilter::try_new(directive)
}

/// clap suggests a command only past its own similarity bar, which short typos miss
/// (`rn` for `run`): for an unknown command without a tip, adds the nearest command
/// by edit distance as clap's own tip (`tip: a similar subcommand exists: 'run'`).
fn with_command_tip(mut e: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand || e.get(ContextKind::SuggestedSubcommand).is_some()
    {
        return e;
    }
    let Some(ContextValue::String(typed)) = e.get(ContextKind::InvalidSubcommand) else {
        return e;
    };
    let typed = typed.clone();
    // The command the typo was given to: follow the commands named before it.
    let mut cmd = command();
    for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if arg == typed {
            break;
        }
        if let Some(sub) = cmd.find_subcommand(arg) {
            cmd = sub.clone();
        }
    }
    let names: Vec<&str> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .collect();
    if let Some(near) = config::nearest(&typed, &names) {
        e.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(vec![near.to_owned()]),
        );
    }
    e
}

/// Help and version go to stdout with exit 0; every other argument error is clap's
/// whole message on stderr (the error, any tip such as a similar subcommand, the usage
/// line and where to find help) with exit 2.
fn clap_exit(e: clap::Error) -> i32 {
    // Printing fails only when the stream is closed; the exit code still tells.
    let _ = e.print();
    if e.use_stderr() {
        EXIT_USAGE
    } else {
        0
    }
}
