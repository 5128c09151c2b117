//! `alphapulse bench ingest`: how many messages one shard core takes in from the
//! simulator over loopback, with the full path: WebSocket framing, in-place parsing,
//! de-duplication, candle updates and the ring to the sink.
//!
//! The simulator and the engine run in this process, the simulator on its own thread.
//! Two figures are reported, because on a small machine the simulator shares the CPU
//! with the shard: `msgs_per_s` (wall clock) and `msgs_per_shard_cpu_s` (messages per
//! second of CPU time the shard thread actually used, read from
//! `/proc/self/task/*/stat`), which is what one dedicated core would sustain if the
//! sender kept up.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Config;
use crate::engine::Engine;
use crate::market::Symbol;
use crate::simulator::{self, SimConfig};
use crate::topology::{Layout, ShardPlan};

#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Number of simulated symbols, all on the one shard.
    #[arg(long, default_value_t = 20)]
    pub symbols: usize,
    /// Trades per second per symbol (each yields a trade and an aggTrade message).
    #[arg(long, default_value_t = 25_000.0)]
    pub trade_rate: f64,
    /// Pin the shard to this core (default: the last allowed core).
    #[arg(long)]
    pub core: Option<usize>,
}

/// Results of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    pub seconds: f64,
    pub symbols: usize,
    pub streams: usize,
    pub messages: u64,
    pub msgs_per_s: f64,
    pub shard_cpu_s: f64,
    /// User-space share of the shard's CPU time (parsing, candles, rings, framing).
    pub shard_user_cpu_s: f64,
    /// Kernel share (TCP receive, io_uring) of the shard's CPU time.
    pub shard_system_cpu_s: f64,
    pub shard_user_ns_per_msg: f64,
    pub shard_cpu_utilisation: f64,
    pub msgs_per_shard_cpu_s: f64,
    pub bytes_per_s: f64,
    pub parse_errors: u64,
    /// Heap allocations on the shard thread per message received (measured window).
    pub allocations_per_msg: f64,
    pub candles_closed: u64,
    pub sim_frames_sent: u64,
}

pub fn run(args: IngestBenchArgs, config: Config) -> anyhow::Result<()> {
    let report = measure(&args, config)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "ingest": report }))?
    );
    Ok(())
}

/// Synthetic symbol names: `S000USDT`, `S001USDT`, …
fn bench_symbols(n: usize) -> Vec<Symbol> {
    (0..n)
        .filter_map(|i| Symbol::new(&format!("S{i:03}USDT")).ok())
        .collect()
}

pub fn measure(args: &IngestBenchArgs, mut config: Config) -> anyhow::Result<IngestReport> {
    anyhow::ensure!(
        (1..=1000).contains(&args.symbols),
        "--symbols must be from 1 to 1000"
    );
    let symbols = bench_symbols(args.symbols);
    let sim = simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse()?,
        symbols: symbols.clone(),
        trade_rate: args.trade_rate,
        speed: 1.0,
        ..SimConfig::default()
    })?;
    config.binance_ws_url = sim.ws_url();
    config.binance_rest_url = sim.rest_url();
    config.symbols = symbols.clone();
    config.dashboard_addr.set_port(0);
    config.feed.streams.kline = true;
    config.feed.streams.trade = true;
    config.feed.streams.agg_trade = true;
    config.feed.max_streams_per_connection = 1024;
    config.max_queue_size = config.max_queue_size.max(65_536);
    let allowed = crate::topology::allowed_cores();
    let core = args.core.or_else(|| allowed.last().copied());
    let layout = Layout {
        shards: vec![ShardPlan {
            index: 0,
            core,
            symbols,
        }],
        writer_core: allowed.first().copied(),
        publisher_core: allowed.first().copied(),
        dashboard_core: allowed.first().copied(),
        pinned: core.is_some(),
        busy_poll: false,
        // The shard's CPU is what is measured: the dashboard keeps its own thread.
        dashboard_on_shard: false,
    };
    let mut engine = Engine::start(&config, &layout)?;
    let shard = &engine.status().shards[0];
    let stats = shard.stats.clone();
    let streams = shard.streams;

    // Wait until subscribed, then warm up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !engine.status().ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::ensure!(
        engine.status().ready(),
        "the shard did not subscribe within 30 s"
    );
    std::thread::sleep(Duration::from_secs_f64(args.warmup));

    let cpu0 = thread_cpu_split("shard-0");
    let (m0, b0, s0, a0) = (
        stats.messages.get(),
        stats.bytes.get(),
        sim.stats().frames_sent,
        stats.allocations.get(),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let elapsed = t0.elapsed().as_secs_f64();
    let (m1, b1, s1, a1) = (
        stats.messages.get(),
        stats.bytes.get(),
        sim.stats().frames_sent,
        stats.allocations.get(),
    );
    let cpu1 = thread_cpu_split("shard-0");

    let messages = m1 - m0;
    let (shard_user_s, shard_system_s) = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
        _ => (f64::NAN, f64::NAN),
    };
    let shard_cpu_s = shard_user_s + shard_system_s;
    let report = IngestReport {
        seconds: elapsed,
        symbols: args.symbols,
        streams,
        messages,
        msgs_per_s: messages as f64 / elapsed,
        shard_cpu_s,
        shard_user_cpu_s: shard_user_s,
        shard_system_cpu_s: shard_system_s,
        shard_user_ns_per_msg: shard_user_s * 1e9 / messages.max(1) as f64,
        shard_cpu_utilisation: shard_cpu_s / elapsed,
        msgs_per_shard_cpu_s: messages as f64 / shard_cpu_s,
        bytes_per_s: (b1 - b0) as f64 / elapsed,
        parse_errors: stats.parse_errors_total(),
        allocations_per_msg: (a1 - a0) as f64 / messages.max(1) as f64,
        candles_closed: stats.candles_closed.get(),
        sim_frames_sent: s1 - s0,
    };
    engine.shutdown();
    sim.stop();
    Ok(report)
}

/// CPU time (user + system) of the threads named `name` in this process (glommio names
/// an executor's threads `<name>-<id>`), from `/proc/self/task/<tid>/stat` (fields 14
/// and 15, in clock ticks).
pub fn thread_cpu_seconds(name: &str) -> Option<f64> {
    thread_cpu_split(name).map(|(user, system)| user + system)
}

/// (user, system) CPU seconds of the threads named `name`; see [`thread_cpu_seconds`].
pub fn thread_cpu_split(name: &str) -> Option<(f64, f64)> {
    crate::metrics::thread_cpu_seconds()
        .into_iter()
        .find(|(role, _, _)| role == name)
        .map(|(_, user, system)| (user, system))
}
