//! `alphapulse bench redis`: publishes per second through the real publisher path
//! (shard rings → publisher thread → pipelined `PUBLISH`), and the same records sent
//! one `PUBLISH` per round trip, measured in the same run against the same Redis.
//!
//! Without `--redis-url` the bench starts a private `redis-server` on a free loopback
//! port (no persistence, in a temp dir) and stops it at the end, so figures do not
//! depend on whatever else uses the host's Redis.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::harness::ingest::thread_cpu_seconds;
use crate::market::{Candle, Decimal, Interval, Symbol};
use crate::message::{Envelope, Record};
use crate::metrics::process_cpu_split;
use crate::record;
use crate::ring::{self, Producer};
use crate::signals::{Direction, IndicatorValues, Signal, SignalKind};
use crate::sinks::redis::resp::{self, Conn, Target};
use crate::sinks::redis::{PublisherStats, RedisSettings};

#[derive(Debug, Clone, clap::Args)]
pub struct RedisBenchArgs {
    /// Redis to measure against (default: a private redis-server started for the run).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Records published through the publisher path.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Records published one round trip at a time (the baseline).
    #[arg(long, default_value_t = 50_000)]
    pub unpipelined: usize,
    /// Shard rings feeding the publisher.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Distinct symbols (each a channel per timeframe).
    #[arg(long, default_value_t = 200)]
    pub symbols: usize,
    /// Pattern subscribers on `{prefix}:*` reading everything during both runs, as
    /// subscribers of every channel do (0: publish to no one).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Ring capacity (MAX_QUEUE_SIZE).
    #[arg(long, default_value_t = 10_000)]
    pub ring: usize,
}

/// The publisher thread's name, to find its CPU time.
const PUBLISHER_THREAD: &str = "redis-publisher";

/// Longest the measured run may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A closed candle with realistic decimal strings; `seq` varies the prices.
pub fn sample_candle(
    symbol: Symbol,
    interval: Interval,
    open_ms: i64,
    closed: bool,
    seq: u64,
) -> Candle {
    let cents = 4_200_000 + (seq % 10_000) as i64;
    let price = Decimal::new(cents * 1000, 5);
    Candle {
        symbol,
        interval,
        open_time_ms: open_ms,
        close_time_ms: interval.close_time(open_ms),
        open: price,
        high: Decimal::new(cents * 1000 + 12_345, 5),
        low: Decimal::new(cents * 1000 - 6_789, 5),
        close: price,
        volume: Decimal::new(1_234_567_800 + seq as i64, 8),
        quote_volume: Decimal::new(51_234_567_891 + seq as i64, 6),
        taker_buy_base: Decimal::new(612_345_600, 8),
        taker_buy_quote: Decimal::new(25_617_283_945, 6),
        trades: 1000 + seq % 500,
        first_trade_id: 0,
        last_trade_id: 0,
        closed,
        event_time_us: interval.close_time(open_ms) * 1000 + 1,
    }
}

/// A signal on `symbol` at `timestamp_ms`.
pub fn sample_signal(
    symbol: Symbol,
    interval: Interval,
    timestamp_ms: i64,
    kind: SignalKind,
) -> Signal {
    let mut indicators = IndicatorValues::new();
    indicators.push("rsi", 72.5);
    indicators.push("ema_fast", 42_001.25);
    indicators.push("ema_slow", 41_998.5);
    Signal {
        symbol,
        interval,
        kind,
        direction: Direction::Buy,
        confidence: 0.75,
        price: Decimal::new(4_200_012, 2),
        timestamp_ms,
        event_time_us: timestamp_ms * 1000 + 7,
        indicators,
    }
}

/// A private redis-server on a free loopback port, in memory only, killed on drop
/// (shared by the Redis and latency benchmarks).
pub struct PrivateRedis {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl PrivateRedis {
    pub fn start() -> anyhow::Result<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("alphapulse-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (install it, or pass --redis-url)")?;
        let server = PrivateRedis {
            child,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let target = Target::parse(&server.url)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Conn::connect(&target, Duration::from_millis(200), Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not come up on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl PrivateRedis {
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(args: RedisBenchArgs) -> anyhow::Result<()> {
    let private = match &args.redis_url {
        Some(_) => None,
        None => Some(PrivateRedis::start()?),
    };
    let url = match (&args.redis_url, &private) {
        (Some(u), _) => u.clone(),
        (None, Some(p)) => p.url.clone(),
        (None, None) => unreachable!("a private server is started without a URL"),
    };
    let symbols: Vec<Symbol> = (0..args.symbols.max(1))
        .map(|i| Symbol::new(&format!("BENCH{i}USDT")))
        .collect::<Result<_, _>>()?;
    let prefix = format!("alphapulse-bench-{}", std::process::id());

    let stop_subscribers = Arc::new(AtomicBool::new(false));
    let subscribers: Vec<_> = (0..args.subscribers)
        .map(|_| subscriber(&url, &prefix, stop_subscribers.clone()))
        .collect::<anyhow::Result<_>>()?;
    let server_pid = private.as_ref().map(|p| p.child.id());
    let pipelined = pipelined(&args, &url, &prefix, &symbols, server_pid);
    let baseline = unpipelined(&args, &url, &prefix, &symbols);
    stop_subscribers.store(true, Ordering::Relaxed);
    let received: u64 = subscribers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let (pipelined, baseline) = (pipelined?, baseline?);
    let ratio = pipelined.publishes_per_s / baseline.0;
    let report = json!({
        "redis": {
            "server": if private.is_some() { "private redis-server on loopback" } else { "given by --redis-url" },
            "pipelined": {
                "publishes": args.records,
                "seconds": pipelined.seconds,
                "publishes_per_s": pipelined.publishes_per_s.round(),
                "pipelines": pipelined.pipelines,
                "avg_pipeline": (args.records as f64 / pipelined.pipelines.max(1) as f64).round(),
                "dropped": pipelined.dropped,
                "shards": args.shards,
                "payload_bytes": pipelined.payload_bytes,
                "allocations_per_publish": pipelined.allocations_per_publish,
                "publisher_cpu_s": pipelined.publisher_cpu_s,
                "publishes_per_publisher_cpu_s": pipelined.publisher_cpu_s.map(|c| (args.records as f64 / c).round()),
                "redis_server_cpu_s": pipelined.server_cpu_s,
                "publishes_per_redis_server_cpu_s": pipelined.server_cpu_s.map(|c| (args.records as f64 / c).round()),
            },
            "unpipelined": {
                "publishes": args.unpipelined,
                "seconds": baseline.1,
                "publishes_per_s": baseline.0.round(),
            },
            "subscribers": args.subscribers,
            "messages_received_by_subscribers": received,
            "ratio": (ratio * 10.0).round() / 10.0,
            "target_publishes_per_s": 500_000,
            "target_ratio": 5.0,
            "target_met": pipelined.publishes_per_s >= 500_000.0 && ratio >= 5.0,
        }
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

struct Pipelined {
    publishes_per_s: f64,
    seconds: f64,
    pipelines: u64,
    dropped: u64,
    payload_bytes: usize,
    allocations_per_publish: f64,
    /// CPU seconds the publisher thread used in the measured window.
    publisher_cpu_s: Option<f64>,
    /// CPU seconds the private redis-server used in the measured window.
    server_cpu_s: Option<f64>,
}

fn env(record: Record) -> Envelope {
    Envelope::untimed(0, record)
}

fn pipelined(
    args: &RedisBenchArgs,
    url: &str,
    prefix: &str,
    symbols: &[Symbol],
    server_pid: Option<u32>,
) -> anyhow::Result<Pipelined> {
    let shards = args.shards.max(1);
    let mut producers: Vec<Producer<Envelope>> = Vec::new();
    let mut consumers = Vec::new();
    for i in 0..shards {
        let (tx, rx) = ring::ring(format!("bench{i}->redis"), args.ring);
        producers.push(tx);
        consumers.push(rx);
    }
    let stats = Arc::new(PublisherStats::default());
    let stop = crate::consumer::Stop::new();
    let settings = RedisSettings::new(url, prefix);
    let publisher = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name(PUBLISHER_THREAD.into())
            .spawn(move || {
                // The engine's publisher records its stage latencies: so does this one.
                let io = crate::sinks::SinkIo {
                    rings: consumers,
                    stop,
                    latency: crate::latency::Registry::new().recorder("redis"),
                    busy_poll: false,
                };
                crate::sinks::redis::run(io, settings, stats)
            })?
    };
    // Wait for the connection, so the measurement is of publishing, not connecting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.connected.get() == 0 {
        if Instant::now() > deadline {
            stop.request();
            let _ = publisher.join();
            bail!("the publisher did not connect to {url}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Warm-up: the pipeline buffer and connection are sized by a first round, so the
    // allocation count below is of steady publishing.
    let warm = args.records.min(2 * crate::sinks::redis::DRAIN_BATCH);
    for i in 0..warm {
        let c = sample_candle(symbols[i % symbols.len()], Interval::M1, 0, true, i as u64);
        while producers[0].push(env(Record::ClosedCandle(c))).is_err() {
            std::thread::yield_now();
        }
    }
    let done = |s: &PublisherStats| s.published.get() + s.dropped.get() + s.refused.get();
    while done(&stats) < warm as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(5));
    // The Redis server's CPU, user and system together.
    let server_cpu = || server_pid.and_then(process_cpu_split).map(|(u, s)| u + s);
    let cpu_base = (thread_cpu_seconds(PUBLISHER_THREAD), server_cpu());
    let base = (
        done(&stats),
        stats.published.get(),
        stats.pipelines.get(),
        stats.allocations.get(),
    );
    let total = args.records;
    let mut payload = Vec::new();
    record::write_candle(
        &mut payload,
        &sample_candle(symbols[0], Interval::M1, 0, true, 0),
    );
    let started = Instant::now();
    // One feeder stands in for the shards, filling each ring in turn and yielding when
    // all are full, as a shard never waits on a sink.
    let mut sent = 0usize;
    while sent < total {
        let mut progressed = false;
        for p in &producers {
            let i = sent;
            if i >= total {
                break;
            }
            let sym = symbols[i % symbols.len()];
            let open = (i / symbols.len()) as i64 * 60_000;
            let env = Envelope {
                shard: 0,
                recv_ns: 0,
                parsed_ns: 0,
                record: Record::ClosedCandle(sample_candle(
                    sym,
                    Interval::M1,
                    open,
                    true,
                    i as u64,
                )),
            };
            if p.push(env).is_ok() {
                sent += 1;
                progressed = true;
            }
        }
        if !progressed {
            std::thread::yield_now();
        }
        if started.elapsed() > RUN_LIMIT {
            break;
        }
    }
    while done(&stats) - base.0 < sent as u64 && started.elapsed() < RUN_LIMIT {
        std::thread::sleep(Duration::from_micros(200));
    }
    let seconds = started.elapsed().as_secs_f64();
    // The publisher records its allocation count after each pipeline.
    std::thread::sleep(Duration::from_millis(5));
    let allocations = stats.allocations.get() - base.3;
    let publisher_cpu_s = thread_cpu_seconds(PUBLISHER_THREAD)
        .zip(cpu_base.0)
        .map(|(end, start)| end - start);
    let server_cpu_s = server_cpu().zip(cpu_base.1).map(|(end, start)| end - start);
    stop.request();
    let _ = publisher.join();
    if done(&stats) - base.0 < total as u64 {
        bail!("the run did not finish within {RUN_LIMIT:?}");
    }
    let published = stats.published.get() - base.1;
    Ok(Pipelined {
        publishes_per_s: published as f64 / seconds,
        seconds,
        pipelines: stats.pipelines.get() - base.2,
        dropped: stats.dropped.get() + stats.refused.get(),
        payload_bytes: payload.len(),
        allocations_per_publish: allocations as f64 / published.max(1) as f64,
        publisher_cpu_s,
        server_cpu_s,
    })
}

/// A pattern subscriber that reads and counts messages until `stop`.
fn subscriber(
    url: &str,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<u64>> {
    let target = Target::parse(url)?;
    let mut conn = Conn::connect(&target, Duration::from_secs(1), Duration::from_secs(5))?;
    let mut cmd = Vec::new();
    let pattern = format!("{prefix}:*");
    resp::command(&mut cmd, &[b"PSUBSCRIBE", pattern.as_bytes()]);
    conn.write_all(&cmd)?;
    // The confirmation: from here on every publish reaches this subscriber.
    conn.next(|_| ())?;
    conn.set_read_timeout(Duration::from_millis(50))?;
    Ok(std::thread::spawn(move || {
        // After `stop`, keep reading until a quiet read timeout, so that messages still
        // in flight are counted.
        let mut n = 0u64;
        loop {
            match conn.next(|_| ()) {
                Ok(Some(())) => n += 1,
                Ok(None) if stop.load(Ordering::Relaxed) => break,
                Ok(None) => {}
                Err(_) => break,
            }
        }
        n
    }))
}

/// (publishes/s, seconds): one PUBLISH, then its reply, per record.
fn unpipelined(
    args: &RedisBenchArgs,
    url: &str,
    prefix: &str,
    symbols: &[Symbol],
) -> anyhow::Result<(f64, f64)> {
    let target = Target::parse(url)?;
    let mut conn = Conn::connect(&target, Duration::from_secs(1), Duration::from_secs(5))?;
    let mut out = Vec::with_capacity(2048);
    let mut payload = Vec::with_capacity(1024);
    let started = Instant::now();
    for i in 0..args.unpipelined {
        let c = sample_candle(
            symbols[i % symbols.len()],
            Interval::M1,
            i as i64 * 60_000,
            true,
            i as u64,
        );
        payload.clear();
        record::write_candle(&mut payload, &c);
        out.clear();
        resp::publish(
            &mut out,
            &[prefix.as_bytes(), b":candles:", c.symbol.as_bytes(), b":1m"],
            &payload,
        );
        conn.write_all(&out)?;
        conn.replies(1)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((args.unpipelined as f64 / seconds, seconds))
}
