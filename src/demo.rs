//! `alphapulse demo`: the simulator, the engine and the dashboard in one process, with
//! nothing else needed. Prints the dashboard URL and a one-line summary each second.
//!
//! Runs on: the main thread (control plane); the simulator and the engine start their
//! own threads and executors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{self, Engine, EngineError};
use crate::simulator::{self, SimConfig};

/// The longest the engine may take to start after the simulator: the simulated
/// clock's lead gained meanwhile is added to the engine's allowed clock skew.
const ENGINE_STARTUP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated time runs this many times faster than the wall clock (60: a 1m candle
    /// closes every second).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Trades per simulated second per symbol.
    #[arg(long, default_value_t = 5.0)]
    pub trade_rate: f64,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the simulator listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sim_listen: SocketAddr,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

/// Runs the demo until Ctrl-C (or `--seconds`).
pub fn run(args: DemoArgs, mut config: Config) -> anyhow::Result<()> {
    // The host check first: without io_uring the simulator's own executor could not
    // start either, and the user gets the check's sentence rather than a panic.
    let layout = engine::prepare(&config)?;
    let sim = simulator::start(SimConfig {
        listen: args.sim_listen,
        symbols: config.symbols.clone(),
        seed: args.seed,
        speed: args.speed,
        trade_rate: args.trade_rate,
        ..SimConfig::default()
    })?;
    config.binance_ws_url = sim.ws_url();
    config.binance_rest_url = sim.rest_url();
    // The simulated clock runs `--speed` times as fast as ours: the engine is told, or
    // it would drop every event as stamped in the future.
    let (speed, skew) = sim.clock_settings(config.feed.max_clock_skew_ms, ENGINE_STARTUP);
    config.feed.exchange_speed = speed;
    config.feed.max_clock_skew_ms = skew;
    engine::install_signal_handlers();

    let mut engine = match Engine::start(&config, &layout) {
        Ok(e) => e,
        Err(EngineError::Listen { addr, why }) => {
            // The demo must start anywhere: if the configured port is taken, use a free one.
            tracing::warn!(%addr, %why, "dashboard address busy; using a free port");
            config.dashboard_addr.set_port(0);
            Engine::start(&config, &layout)?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "AlphaPulse demo: dashboard at http://{}/  (API: /api/status, /api/candles; simulated exchange at {})",
        engine.dashboard_addr(),
        sim.ws_url()
    );

    let started = Instant::now();
    let mut last_messages: Vec<u64> = vec![0; engine.status().shards.len()];
    let mut next = Instant::now() + Duration::from_secs(1);
    while !engine::signalled()
        && (args.seconds == 0 || started.elapsed() < Duration::from_secs(args.seconds))
    {
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
        if Instant::now() < next {
            continue;
        }
        next += Duration::from_secs(1);
        println!("{}", summary_line(&engine, &mut last_messages));
    }
    engine.shutdown();
    sim.stop();
    Ok(())
}

/// `t=12s shard0 1234 msg/s | candles closed 36 | signals 4 | reconnects 0 | gaps 0 | ready`
fn summary_line(engine: &Engine, last: &mut [u64]) -> String {
    let status = engine.status();
    let mut line = format!("t={:.0}s", status.started.elapsed().as_secs_f64());
    let (mut closed, mut signals, mut reconnects, mut gaps) = (0, 0, 0, 0);
    for (shard, prev) in status.shards.iter().zip(last.iter_mut()) {
        let now = shard.stats.messages.get();
        line.push_str(&format!(" shard{} {} msg/s", shard.index, now - *prev));
        *prev = now;
        closed += shard.stats.candles_closed.get();
        signals += shard.stats.signals.iter().map(|c| c.get()).sum::<u64>();
        reconnects += shard.stats.reconnects.get();
        gaps += shard.stats.gaps.get();
    }
    line.push_str(&format!(
        " | candles closed {closed} | signals {signals} | reconnects {reconnects} | gaps {gaps} | {}",
        if status.ready() { "ready" } else { "starting" }
    ));
    line
}
