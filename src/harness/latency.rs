//! `alphapulse bench latency`: end-to-end latency at a fixed open-loop rate, measured at
//! real clients, with HDR histogram reports.
//!
//! The simulator pushes kline updates for `--symbols` symbols at `--rate` updates per
//! second in total (one 1m stream per symbol, pushed every `symbols / rate` seconds on
//! the millisecond grid; `--phase aligned`, the default, pushes every symbol at the same
//! millisecond, `--phase spread` spreads them evenly over the period), with event times in microseconds equal to the intended send
//! time: the simulator renders an event when it is due whatever happened before, so a
//! stall shows up as latency instead of silently delaying the schedule (no coordinated
//! omission). The engine runs in this process; two clients run as separate processes (the
//! same binary, `bench latency-client`): a dashboard WebSocket client subscribed to
//! candles, and a Redis subscriber on the candle channels when Redis is available. Each
//! measures exchange event time to its own receive time on the host's wall clock.
//!
//! Engine-internal stages come from the engine's own histograms, taken as the difference
//! between the end and the start of the measured window (the warm-up is excluded); at
//! each edge every role first hands over what it has recorded and the collector merges
//! it (`stages_settled` in `summary.json` says whether both edges did). The first row,
//! `exchange_send`, is the simulator's: event time → the return of each socket write of
//! market frames (its pacing, the write, and on loopback the receiver's TCP input), so
//! that the exchange's share of `exchange_to_recv` is measured, not assumed.
//!
//! What the host took from the window is measured beside it ([`crate::harness::host`]):
//! each core's steal time and how late a sleeper on each core woke, so that a run in
//! which the host stopped a core says so.
//!
//! Output in `--out DIR`: one `.hgrm` per stage (HdrHistogram percentile distribution,
//! values in µs), `summary.json`, `latency.svg`; a table on stdout. `--compare
//! NAME=VALUE` runs a second configuration (environment-variable names, e.g.
//! `ALPHAPULSE_PIN_CORES=false`) right after the first and reports the ratios.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::Engine;
use crate::harness::host::{HostNoise, Probe};
use crate::harness::redis::PrivateRedis;
use crate::latency::report::{hgrm, percentile_svg};
use crate::latency::{new_histogram, Stage, StageFigures, StageSet};
use crate::market::{Interval, Symbol};
use crate::simulator::{self, KlinePhase, SimConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyBenchArgs {
    /// Kline updates per second, all symbols together (open loop).
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Simulated symbols (one 1m kline stream each).
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
    /// When in each push period the symbols push: `aligned` (all at once, one burst of
    /// `--symbols` updates per period) or `spread` (evenly over the period).
    #[arg(long, value_enum, default_value_t = KlinePhase::Aligned)]
    pub phase: KlinePhase,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds run before measuring (connections, subscriptions, caches).
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Where the reports go.
    #[arg(long, default_value = "bench/results/latency")]
    pub out: PathBuf,
    /// Redis for the publisher and the subscriber client: `auto` starts a private
    /// `redis-server` on a free loopback port when one is installed; `off`; or a URL.
    #[arg(long, default_value = "auto")]
    pub redis: String,
    /// A second configuration to compare with, as environment overrides
    /// (`NAME=VALUE`, repeatable), e.g. `--compare ALPHAPULSE_PIN_CORES=false`.
    #[arg(long)]
    pub compare: Vec<String>,
}

/// Arguments of the hidden client process.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyClientArgs {
    /// `ws` (a dashboard WebSocket URL) or `redis` (a Redis URL).
    #[arg(long)]
    pub kind: String,
    #[arg(long)]
    pub url: String,
    /// Redis channel prefix.
    #[arg(long, default_value = "alphapulse")]
    pub prefix: String,
    /// Seconds to ignore at the start.
    #[arg(long)]
    pub skip: f64,
    /// Seconds to measure after that.
    #[arg(long)]
    pub duration: f64,
    /// Where the histogram goes (V2 serialization).
    #[arg(long)]
    pub out: PathBuf,
}

/// The simulator's own share: event time → the return of the write that carried it
/// (one value per write; on loopback the receiver's TCP input runs inside that call).
const SIM_SEND_STAGE: &str = "exchange_send";
/// A stage the clients measure, outside the engine.
const WS_CLIENT_STAGE: &str = "exchange_to_dashboard_client";
const REDIS_CLIENT_STAGE: &str = "exchange_to_redis_subscriber";
/// How long the clients may take to connect and report beyond the run.
const CLIENT_GRACE: Duration = Duration::from_secs(20);
/// How long the engine may take to connect and have every subscription acknowledged.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each edge of the window may wait for the roles to hand over their values.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client wakes this often while no message comes, to check its deadline.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_millis(200);

pub fn run(args: LatencyBenchArgs, base: Config, compare: Option<Config>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.symbols),
        "--symbols must be from 1 to 1000"
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let redis = RedisChoice::from_arg(&args.redis)?;
    let a = measure(&args, base, &redis, &args.out)?;
    print_table("", &a);
    let mut summary = json!({ "run": a.json(&args) });
    if let Some(config) = compare {
        let dir = args.out.join("compare");
        std::fs::create_dir_all(&dir)?;
        let b = measure(&args, config, &redis, &dir)?;
        print_table(&format!("compare ({})", args.compare.join(" ")), &b);
        let ratios = print_ratios(&a, &b);
        summary["compare"] = json!({
            "overrides": args.compare,
            "run": b.json(&args),
            "ratios_b_over_a": ratios,
        });
    }
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    println!("reports in {}", args.out.display());
    Ok(())
}

/// Named histograms (ns) of one run, in report order.
struct RunResult {
    stages: Vec<(String, Histogram<u64>)>,
    intended_rate: f64,
    kline_push_ms: i64,
    kline_phase: KlinePhase,
    engine_messages: u64,
    seconds: f64,
    /// Both edges of the window reached the engine's stage histograms in time (see
    /// [`Engine::settle_latency`]); false: a stage's count may be off at an edge.
    stages_settled: bool,
    client_counts: Vec<(String, Value)>,
    /// CPU seconds of the engine's threads in the window, by role.
    cpu_by_role: std::collections::BTreeMap<&'static str, f64>,
    /// CPU seconds of the simulator's thread in the window (not the engine's).
    simulator_cpu_s: f64,
    /// What the host took from the window: steal time and late wake-ups per core.
    host: HostNoise,
}

impl RunResult {
    fn engine_cpu_s(&self) -> f64 {
        self.cpu_by_role.values().sum()
    }

    /// Engine CPU (all threads) per kline update received, µs.
    fn cpu_us_per_update(&self) -> f64 {
        self.engine_cpu_s() * 1e6 / self.engine_messages.max(1) as f64
    }
}

impl RunResult {
    fn json(&self, args: &LatencyBenchArgs) -> Value {
        let stages: serde_json::Map<String, Value> = self
            .stages
            .iter()
            .map(|(n, h)| (n.clone(), json!(StageFigures::of(h))))
            .collect();
        json!({
            "unit": "us",
            "requested_rate": args.rate,
            "intended_rate": self.intended_rate,
            "kline_push_ms": self.kline_push_ms,
            "kline_phase": self.kline_phase.as_str(),
            "symbols": args.symbols,
            "seconds": self.seconds,
            "engine_messages": self.engine_messages,
            "stages_settled": self.stages_settled,
            "engine_messages_per_s": self.engine_messages as f64 / self.seconds,
            "cpu": {
                "engine_cpu_s": self.engine_cpu_s(),
                "engine_cpu_us_per_update": self.cpu_us_per_update(),
                "engine_cpu_share_of_a_core": self.engine_cpu_s() / self.seconds,
                "per_role_cpu_us_per_update": self.cpu_by_role.iter()
                    .map(|(r, s)| (r.to_string(), json!(s * 1e6 / self.engine_messages.max(1) as f64)))
                    .collect::<serde_json::Map<_, _>>(),
                "simulator_cpu_s": self.simulator_cpu_s,
            },
            "stages": stages,
            "clients": self.client_counts.iter().cloned().collect::<serde_json::Map<_, _>>(),
            "host": self.host.json(),
        })
    }
}

enum RedisChoice {
    Off,
    Url(String),
    Private,
}

impl RedisChoice {
    fn from_arg(arg: &str) -> anyhow::Result<RedisChoice> {
        Ok(match arg {
            "off" => RedisChoice::Off,
            "auto" if which("redis-server").is_some() => RedisChoice::Private,
            "auto" => {
                eprintln!("bench latency: no redis-server installed: measuring without Redis");
                RedisChoice::Off
            }
            url if url.starts_with("redis://") => RedisChoice::Url(url.to_string()),
            other => anyhow::bail!("--redis: expected auto, off or a redis:// URL, got {other}"),
        })
    }
}

fn measure(
    args: &LatencyBenchArgs,
    mut config: Config,
    redis: &RedisChoice,
    out: &Path,
) -> anyhow::Result<RunResult> {
    let symbols: Vec<Symbol> = (0..args.symbols)
        .filter_map(|i| Symbol::new(&format!("L{i:03}USDT")).ok())
        .collect();
    // Pushes land on the millisecond grid, so the period is a whole number of ms.
    let kline_push_ms = ((args.symbols as f64 * 1000.0 / args.rate).round() as i64).max(1);
    let intended_rate = args.symbols as f64 * 1000.0 / kline_push_ms as f64;
    let sim = simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse()?,
        symbols: symbols.clone(),
        // A few trades a second move the prices; kline pushes are the measured load.
        trade_rate: 2.0,
        speed: 1.0,
        kline_push_ms,
        kline_phase: args.phase,
        ..SimConfig::default()
    })?;
    let _private_redis;
    let redis_url = match redis {
        RedisChoice::Off => None,
        RedisChoice::Url(u) => Some(u.clone()),
        RedisChoice::Private => {
            let r = PrivateRedis::start()?;
            let url = r.url();
            _private_redis = r;
            Some(url)
        }
    };
    config.binance_ws_url = sim.ws_url();
    config.binance_rest_url = sim.rest_url();
    config.symbols = symbols;
    config.timeframes = vec![Interval::M1];
    config.dashboard_addr.set_port(0);
    config.feed.streams.kline = true;
    config.feed.streams.trade = false;
    config.feed.streams.agg_trade = false;
    config.feed.streams.book_ticker = false;
    config.feed.streams.diff_depth_ms = None;
    config.feed.streams.partial_depth_levels = None;
    config.feed.time_unit_microsecond = true;
    config.feed.max_streams_per_connection = 1024;
    config.redis_url = redis_url.clone().or(config.redis_url);
    let layout = crate::engine::prepare(&config)?;
    let mut engine = Engine::start(&config, &layout)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !engine.status().ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::ensure!(
        engine.status().ready(),
        "the engine did not subscribe within {} s",
        READY_TIMEOUT.as_secs()
    );

    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut clients: Vec<(String, ClientProcess)> = Vec::new();
    let ws_url = format!("ws://{}/ws", engine.dashboard_addr());
    clients.push((
        WS_CLIENT_STAGE.into(),
        ClientProcess::spawn(&exe, "ws", &ws_url, &config.redis_channel_prefix, args, out)?,
    ));
    if let Some(url) = &redis_url {
        clients.push((
            REDIS_CLIENT_STAGE.into(),
            ClientProcess::spawn(&exe, "redis", url, &config.redis_channel_prefix, args, out)?,
        ));
    }

    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    let probe = Probe::start();
    // Each edge of the window: every role hands over what it recorded (at its next
    // wake-up) and the collector merges it; then the counters are read, in the same order
    // at both edges and the message count first. Without this the cumulative histograms
    // lag the roles by up to a hand-off plus a merge interval (1.5 s), by a different
    // amount at each edge.
    let mut settled = engine.settle_latency(SETTLE_TIMEOUT);
    let m0 = messages(&engine);
    let (start, start_hops) = cumulative(&engine);
    let sent0 = sim.send_late();
    let cpu0 = crate::harness::cpu::snapshot();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    settled &= engine.settle_latency(SETTLE_TIMEOUT);
    let m1 = messages(&engine);
    let (end, end_hops) = cumulative(&engine);
    let mut sent = sim.send_late();
    let cpu1 = crate::harness::cpu::snapshot();
    let seconds = t0.elapsed().as_secs_f64();
    let host = probe.finish();
    // Cumulative: the start is a prefix of the end.
    let _ = sent.subtract(&sent0);

    let mut stages: Vec<(String, Histogram<u64>)> = vec![(SIM_SEND_STAGE.into(), sent)];
    for st in Stage::ALL {
        let mut h = end.get(st).clone();
        // The start is a prefix of the end (cumulative), so this cannot underflow.
        let _ = h.subtract(start.get(st));
        stages.push((st.as_str().to_string(), h));
    }
    for (name, mut h) in end_hops {
        if let Some((_, before)) = start_hops.iter().find(|(n, _)| *n == name) {
            let _ = h.subtract(before);
        }
        stages.push((name, h));
    }
    let mut client_counts = Vec::new();
    for (name, client) in clients {
        let (hist, counts) = client.finish()?;
        stages.push((name.clone(), hist));
        client_counts.push((name, counts));
    }
    engine.shutdown();
    drop(sim);

    for (name, h) in &stages {
        std::fs::write(out.join(format!("{name}.hgrm")), hgrm(h, 1000.0))?;
    }
    let series: Vec<(&str, &Histogram<u64>)> =
        stages.iter().map(|(n, h)| (n.as_str(), h)).collect();
    let title = format!(
        "AlphaPulse latency at {intended_rate:.0} kline updates/s, {} symbols",
        args.symbols
    );
    std::fs::write(out.join("latency.svg"), percentile_svg(&title, &series))?;
    Ok(RunResult {
        stages,
        intended_rate,
        kline_push_ms,
        kline_phase: args.phase,
        engine_messages: m1 - m0,
        seconds,
        client_counts,
        stages_settled: settled,
        cpu_by_role: crate::harness::cpu::by_role(&cpu0, &cpu1),
        simulator_cpu_s: crate::harness::cpu::of_threads(&cpu0, &cpu1, "alphapulse-sim"),
        host,
    })
}

/// The engine's cumulative histograms: all cores merged, and each sink's ring hops
/// (`ring_hop_<sink>`), which differ by how each sink waits for records.
fn cumulative(engine: &Engine) -> (StageSet, Vec<(String, Histogram<u64>)>) {
    let snap = engine
        .status()
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut copy = StageSet::new();
    copy.add(&snap.cumulative);
    let hops = snap
        .per_recorder
        .iter()
        .filter(|(_, set)| !set.get(Stage::RingHop).is_empty())
        .map(|(label, set)| (format!("ring_hop_{label}"), set.get(Stage::RingHop).clone()))
        .collect();
    (copy, hops)
}

fn messages(engine: &Engine) -> u64 {
    engine
        .status()
        .shards
        .iter()
        .map(|s| s.stats.messages.get())
        .sum()
}

fn print_table(title: &str, r: &RunResult) {
    if !title.is_empty() {
        println!("{title}");
    }
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "stage (µs)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, h) in &r.stages {
        let f = StageFigures::of(h);
        if f.count == 0 {
            println!("{name:<30} {:>9}", "no data");
            continue;
        }
        println!(
            "{name:<30} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            f.count, f.p50, f.p90, f.p99, f.p999, f.max
        );
    }
    println!(
        "intended rate {:.0}/s (pushes every {} ms, {}), engine received {:.0} msg/s over {:.1} s",
        r.intended_rate,
        r.kline_push_ms,
        r.kline_phase.as_str(),
        r.engine_messages as f64 / r.seconds,
        r.seconds
    );
    let roles: Vec<String> = r
        .cpu_by_role
        .iter()
        .map(|(role, s)| format!("{role} {:.2}", s * 1e6 / r.engine_messages.max(1) as f64))
        .collect();
    println!(
        "engine CPU {:.2} µs per update ({:.1} % of a core; by role, µs: {}); simulator {:.1} % of a core",
        r.cpu_us_per_update(),
        100.0 * r.engine_cpu_s() / r.seconds,
        roles.join(", "),
        100.0 * r.simulator_cpu_s / r.seconds,
    );
    println!("{}", r.host.line());
    if r.host.stalled() {
        println!(
            "note: a core of this host stopped for {:.1} ms in the window (a sleeper woke that late, whoever held the core): the tail figures include it",
            r.host.worst_us() / 1000.0
        );
    }
    if !r.stages_settled {
        println!(
            "note: a role still held stage values at an edge of the window; the engine's stage counts may be off there"
        );
    }
}

fn print_ratios(a: &RunResult, b: &RunResult) -> Value {
    println!("{:<30} {:>12} {:>12}", "ratio b/a", "p50", "p99");
    let mut out = serde_json::Map::new();
    for ((name, ha), (_, hb)) in a.stages.iter().zip(&b.stages) {
        let (fa, fb) = (StageFigures::of(ha), StageFigures::of(hb));
        if fa.count == 0 || fb.count == 0 {
            continue;
        }
        let (r50, r99) = (fb.p50 / fa.p50, fb.p99 / fa.p99);
        println!("{name:<30} {r50:>12.2} {r99:>12.2}");
        out.insert(name.clone(), json!({ "p50": r50, "p99": r99 }));
    }
    let cpu = b.cpu_us_per_update() / a.cpu_us_per_update().max(1e-9);
    println!("{:<30} {cpu:>12.2}", "engine CPU per update");
    out.insert("engine_cpu_us_per_update".into(), json!(cpu));
    Value::Object(out)
}

/// A client process measuring at its own receive time.
struct ClientProcess {
    child: Child,
    out: PathBuf,
    deadline: Instant,
}

impl ClientProcess {
    fn spawn(
        exe: &Path,
        kind: &str,
        url: &str,
        prefix: &str,
        args: &LatencyBenchArgs,
        dir: &Path,
    ) -> anyhow::Result<ClientProcess> {
        let out = dir.join(format!(".{kind}-client.hist"));
        let _ = std::fs::remove_file(&out);
        let child = Command::new(exe)
            .args(["bench", "latency-client", "--kind", kind, "--url", url])
            .args(["--prefix", prefix])
            .args(["--skip", &args.warmup.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the {kind} client"))?;
        Ok(ClientProcess {
            child,
            out,
            deadline: Instant::now()
                + Duration::from_secs_f64(args.warmup + args.duration)
                + CLIENT_GRACE,
        })
    }

    /// Waits for the client's report: its histogram and its counts.
    fn finish(mut self) -> anyhow::Result<(Histogram<u64>, Value)> {
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!("a latency client did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut stdout = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut stdout)?;
        }
        let counts: Value = serde_json::from_str(stdout.trim()).unwrap_or(json!({
            "error": "the client printed no report",
            "output": stdout,
        }));
        let bytes = std::fs::read(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        let hist = if bytes.is_empty() {
            new_histogram()
        } else {
            Deserializer::new()
                .deserialize(&mut &bytes[..])
                .map_err(|e| anyhow::anyhow!("a latency client's histogram: {e:?}"))?
        };
        Ok((hist, counts))
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The client process: measures exchange event time → arrival time of every candle
/// record it gets, and writes the histogram.
///
/// A record's arrival is the wall time of the socket read that brought its last byte,
/// not the time this process got around to decoding it: a burst of records arrives in
/// one read, and the client's own decoding of the first ones must not count against the
/// system measured for the later ones.
pub fn run_client(args: LatencyClientArgs) -> anyhow::Result<()> {
    let mut hist = new_histogram();
    let mut stats = ClientStats::default();
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.skip);
    let until = measure_from + Duration::from_secs_f64(args.duration);
    let mut on_payload = |payload: &[u8], arrived_us: i64, stats: &mut ClientStats| {
        let now_us = arrived_us;
        if Instant::now() < measure_from {
            return;
        }
        match candle_event_time_us(payload) {
            Some(event_us) => {
                stats.received += 1;
                let ns = (now_us - event_us).max(0) as u64 * 1000;
                hist.saturating_record(ns.clamp(1, crate::latency::MAX_TRACKED_NS));
            }
            None => stats.other += 1,
        }
    };
    let result = match args.kind.as_str() {
        "ws" => ws_client(&args.url, until, &mut stats, &mut on_payload),
        "redis" => redis_client(&args.url, &args.prefix, until, &mut stats, &mut on_payload),
        other => Err(anyhow::anyhow!("unknown client kind {other}")),
    };
    if let Err(e) = &result {
        stats.error = Some(format!("{e:#}"));
    }
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(&hist, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serializing the histogram: {e:?}"))?;
    std::fs::write(&args.out, bytes)?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

#[derive(Debug, Default, serde::Serialize)]
struct ClientStats {
    received: u64,
    other: u64,
    error: Option<String>,
}

/// A socket that notes the wall time (µs) of its latest read that brought bytes.
struct ArrivalStamped {
    inner: TcpStream,
    last_read_us: i64,
}

impl Read for ArrivalStamped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last_read_us = crate::clock::wall_us();
        }
        Ok(n)
    }
}

impl Write for ArrivalStamped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The exchange event time of a candle record, in µs: the records carry it in ms, and
/// the benchmark's pushes are on the millisecond grid, so the ms value is exact. Accepts
/// a bare record or one wrapped in `data`; signals and other messages give `None`. A
/// scan for the two keys rather than a JSON parse, so the client keeps up with bursts.
fn candle_event_time_us(payload: &[u8]) -> Option<i64> {
    let find = |needle: &[u8]| payload.windows(needle.len()).position(|w| w == needle);
    if find(br#""type":"signal""#).is_some() || find(br#""open_time":"#).is_none() {
        return None;
    }
    let key = br#""event_time":"#;
    let at = find(key)? + key.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    let ms: i64 = std::str::from_utf8(&digits).ok()?.parse().ok()?;
    Some(ms * 1000)
}

fn ws_client(
    url: &str,
    until: Instant,
    stats: &mut ClientStats,
    on_payload: &mut dyn FnMut(&[u8], i64, &mut ClientStats),
) -> anyhow::Result<()> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| anyhow::anyhow!("expected a ws:// URL, got {url}"))?;
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    let stream = ArrivalStamped {
        inner: stream,
        last_read_us: 0,
    };
    let (mut ws, _) = tungstenite::client(url, stream)
        .map_err(|e| anyhow::anyhow!("WebSocket handshake with {url}: {e}"))?;
    ws.send(tungstenite::Message::text(
        r#"{"type":"subscribe","subscription":"candles"}"#,
    ))?;
    while Instant::now() < until {
        let read = ws.read();
        let arrived_us = ws.get_ref().last_read_us;
        match read {
            Ok(tungstenite::Message::Text(t)) => on_payload(t.as_bytes(), arrived_us, stats),
            Ok(tungstenite::Message::Binary(b)) => on_payload(&b, arrived_us, stats),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(anyhow::anyhow!("WebSocket: {e}")),
        }
    }
    let _ = ws.close(None);
    Ok(())
}

/// A minimal RESP reader for `PSUBSCRIBE`: the subscriber only reads arrays of bulk
/// strings, so this stays dependency-free and allocation-light.
fn redis_client(
    url: &str,
    prefix: &str,
    until: Instant,
    stats: &mut ClientStats,
    on_payload: &mut dyn FnMut(&[u8], i64, &mut ClientStats),
) -> anyhow::Result<()> {
    let addr = url
        .strip_prefix("redis://")
        .map(|r| r.trim_end_matches('/'))
        .ok_or_else(|| anyhow::anyhow!("expected a redis:// URL, got {url}"))?;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    let pattern = format!("{prefix}:candles:*");
    write!(
        stream,
        "*2\r\n$10\r\nPSUBSCRIBE\r\n${}\r\n{pattern}\r\n",
        pattern.len()
    )?;
    let mut reader = BufReader::new(ArrivalStamped {
        inner: stream,
        last_read_us: 0,
    });
    let mut line = Vec::new();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    while Instant::now() < until {
        parts.clear();
        match read_resp_array(&mut reader, &mut line, &mut parts) {
            Ok(()) => {
                // ["pmessage", pattern, channel, payload]
                if parts.len() == 4 && parts[0] == b"pmessage" {
                    let arrived_us = reader.get_ref().last_read_us;
                    on_payload(&parts[3], arrived_us, stats);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one RESP array of bulk strings (or integers) into `parts`. A read timeout in the
/// middle of a message keeps the partial state in the reader's buffer only when it struck
/// between messages; the subscriber's messages are small and arrive whole.
fn read_resp_array(
    reader: &mut BufReader<ArrivalStamped>,
    line: &mut Vec<u8>,
    parts: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    line.clear();
    reader.read_until(b'\n', line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "Redis closed the connection",
        ));
    }
    if line[0] != b'*' {
        return Err(bad("expected a RESP array"));
    }
    let n: usize = std::str::from_utf8(&line[1..])
        .map_err(|_| bad("bad RESP length"))?
        .trim()
        .parse()
        .map_err(|_| bad("bad RESP length"))?;
    for _ in 0..n {
        line.clear();
        reader.read_until(b'\n', line)?;
        match line.first() {
            Some(b'$') => {
                let len: usize = std::str::from_utf8(&line[1..])
                    .map_err(|_| bad("bad bulk length"))?
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad bulk length"))?;
                let mut buf = vec![0u8; len + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len);
                parts.push(buf);
            }
            Some(b':') => parts.push(line[1..].trim_ascii().to_vec()),
            _ => return Err(bad("unexpected RESP element")),
        }
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_read_from_bare_and_wrapped_candles_only() {
        let bare = br#"{"type":"candle","open_time":1,"event_time":1700000000123}"#;
        assert_eq!(candle_event_time_us(bare), Some(1_700_000_000_123_000));
        let wrapped = br#"{"type":"candle","data":{"open_time":1,"event_time":5}}"#;
        assert_eq!(candle_event_time_us(wrapped), Some(5_000));
        let signal = br#"{"type":"signal","timestamp":1,"event_time":5}"#;
        assert_eq!(candle_event_time_us(signal), None);
        assert_eq!(candle_event_time_us(b"not json"), None);
        assert_eq!(candle_event_time_us(br#"{"type":"pong"}"#), None);
    }
}
