//! `alphapulse demo`: the simulator, the engine and the dashboard in one process, with
//! nothing else needed. Prints the dashboard URL, each signal as it fires and a one-line
//! summary each second. The simulator starts with a seeded past (`--history`), so the
//! warm start finds candles at once and signals come within seconds.
//!
//! Runs on: the main thread (control plane); the simulator and the engine start their
//! own threads and executors.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{self, Engine, EngineError};
use crate::market::{Interval, Symbol};
use crate::signals::{Signal, SignalKind};
use crate::simulator::{self, SimConfig};

/// The longest the engine may take to start after the simulator: the simulated
/// clock's lead gained meanwhile is added to the engine's allowed clock skew.
const ENGINE_STARTUP: Duration = Duration::from_secs(10);
/// How often the demo looks for newly fired signals to print (its summary line is once
/// a second; Ctrl-C ends the wait at once).
const SIGNAL_LOOK_EVERY: Duration = Duration::from_millis(100);

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
    /// Closed candles of simulated past per series before the start (0: none, and the
    /// indicators warm up from live candles).
    #[arg(long, default_value_t = simulator::DEFAULT_HISTORY)]
    pub history: usize,
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
        history: args.history,
        ..SimConfig::default()
    })?;
    config.binance_ws_url = sim.ws_url();
    config.binance_rest_url = sim.rest_url();
    if config.books.symbols.is_empty() {
        // The demo shows every symbol's order book (unless the configuration chose).
        config.feed.streams.diff_depth_ms.get_or_insert(100);
        config.books.symbols = config.instance_symbols();
    }
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
        "AlphaPulse demo: dashboard at http://{}/  (API: /api/status, /api/candles, /api/signals; simulated exchange at {})",
        engine.dashboard_addr(),
        sim.ws_url()
    );
    let warm_up = config
        .timeframes
        .iter()
        .map(|&tf| config.signals.params(tf).warm_up_candles())
        .max()
        .unwrap_or(0);
    let series: Vec<(Symbol, Interval)> = config
        .symbols
        .iter()
        .flat_map(|&s| config.timeframes.iter().map(move |&tf| (s, tf)))
        .collect();
    println!(
        "Simulated time runs {}x the wall clock{}. Each second: messages per second per shard core \
         (msg/s), candles closed, signals made, and 'ready' once every stream is live. A series \
         makes signals once its indicators have {warm_up} closed candles (from the exchange's \
         history at start, then live); each signal is printed as it fires.",
        args.speed,
        if args.history > 0 {
            format!(", with {} candles of history per series", args.history)
        } else {
            String::new()
        },
    );

    let started = Instant::now();
    let mut summary = Summary {
        last_messages: vec![0; engine.status().shards.len()],
        series,
        warm_up,
    };
    let mut printed = Printed::default();
    let mut next = Instant::now() + Duration::from_secs(1);
    while !engine::signalled()
        && (args.seconds == 0 || started.elapsed() < Duration::from_secs(args.seconds))
    {
        engine::wait_for_signal(
            next.saturating_duration_since(Instant::now())
                .min(SIGNAL_LOOK_EVERY),
        );
        for line in printed.new_signals(&engine) {
            println!("{line}");
        }
        if Instant::now() < next {
            continue;
        }
        next += Duration::from_secs(1);
        println!("{}", summary.line(&engine));
    }
    engine.shutdown();
    sim.stop();
    Ok(())
}

/// The signals printed so far (recent ones only: enough to recognise a signal that
/// arrives after a newer one from another shard).
#[derive(Default)]
struct Printed {
    seen: HashSet<(i64, Symbol, Interval, SignalKind)>,
    newest_ms: i64,
}

/// How far back (candle close times) a signal is still recognised as printed.
const PRINTED_WINDOW_MS: i64 = 7 * 86_400_000;
/// The newest signals looked at each time (more than can fire in 100 ms of a demo).
const SIGNALS_PER_LOOK: usize = 500;

impl Printed {
    /// `signal BTCUSDT 1m ema_cross buy at 60123.45 (confidence 0.72)` for each signal
    /// not printed yet, oldest first.
    fn new_signals(&mut self, engine: &Engine) -> Vec<String> {
        let mut fresh: Vec<Signal> = {
            let store = engine
                .status()
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            store.signals(None, None, SIGNALS_PER_LOOK)
        };
        fresh.retain(|s| {
            s.timestamp_ms > self.newest_ms - PRINTED_WINDOW_MS
                && self
                    .seen
                    .insert((s.timestamp_ms, s.symbol, s.interval, s.kind))
        });
        fresh.sort_by_key(|s| (s.timestamp_ms, s.interval, s.symbol));
        if let Some(last) = fresh.last() {
            self.newest_ms = self.newest_ms.max(last.timestamp_ms);
            let cut = self.newest_ms - PRINTED_WINDOW_MS;
            self.seen.retain(|k| k.0 > cut);
        }
        fresh.iter().map(signal_line).collect()
    }
}

fn signal_line(s: &Signal) -> String {
    format!(
        "signal {} {} {} {} at {} (confidence {:.2})",
        s.symbol.as_str(),
        s.interval.as_str(),
        s.kind.as_str(),
        s.direction.as_str(),
        s.price,
        s.confidence
    )
}

/// The once-a-second line.
struct Summary {
    last_messages: Vec<u64>,
    series: Vec<(Symbol, Interval)>,
    warm_up: u32,
}

impl Summary {
    /// `t=12s shard0 1234 msg/s | candles closed 36 | signals 4 | reconnects 0 | gaps 0 | ready`;
    /// until the first signal, while series are short of candles,
    /// `warming up (20/35 candles; 0/12 series ready)` stands where the signal count would.
    fn line(&mut self, engine: &Engine) -> String {
        let status = engine.status();
        let mut line = format!("t={:.0}s", status.started.elapsed().as_secs_f64());
        let (mut closed, mut signals, mut reconnects, mut gaps, mut ready) = (0, 0, 0, 0, 0);
        for (shard, prev) in status.shards.iter().zip(self.last_messages.iter_mut()) {
            let now = shard.stats.messages.get();
            line.push_str(&format!(" shard{} {} msg/s", shard.index, now - *prev));
            *prev = now;
            closed += shard.stats.candles_closed.get();
            signals += shard.stats.signals.iter().map(|c| c.get()).sum::<u64>();
            reconnects += shard.stats.reconnects.get();
            gaps += shard.stats.gaps.get();
            ready += shard.stats.signal_series_ready.get().max(0) as usize;
        }
        let signals = if ready < self.series.len() && signals == 0 {
            format!(
                "warming up ({}/{} candles; {ready}/{} series ready)",
                self.most_candles(engine),
                self.warm_up,
                self.series.len()
            )
        } else {
            format!("signals {signals}")
        };
        line.push_str(&format!(
            " | candles closed {closed} | {signals} | reconnects {reconnects} | gaps {gaps} | {}",
            if status.ready() { "ready" } else { "starting" }
        ));
        line
    }

    /// The closed candles of the series furthest along, up to the warm-up.
    fn most_candles(&self, engine: &Engine) -> usize {
        let want = self.warm_up as usize;
        let store = engine
            .status()
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.series
            .iter()
            .map(|&(s, tf)| store.closed(Some(s), Some(tf), want).len())
            .max()
            .unwrap_or(0)
    }
}
