//! `alphapulse capture`: records the exchange's raw frames for replay.
//!
//! Runs on: the main thread, with a blocking WebSocket client (no executor: the capture
//! is a standalone tool, not one of the engine's cores). Owns: one connection to the
//! combined-stream endpoint (`binance_ws_url`, the feed's TLS settings) and the capture
//! directory. In: the streams to record. Out: every text frame exactly as received,
//! with its receive time in nanoseconds on the wall and the monotonic clock, in
//! rotated zstd files with a manifest kept current ([`writer`]); the simulator's
//! `--replay DIR` serves them again ([`reader`]).
//!
//! Pings are answered at once (by the WebSocket layer); a connection that closes, fails
//! or stays silent for `feed.silence_timeout_s` is reopened with the feed's capped,
//! jittered backoff within Binance's connection-attempt limit, and each connect and
//! disconnect is recorded in the capture as a marker, so a replay shows where frames may
//! be missing. The 24-hour rotation of a connection is left to the exchange (its close
//! is a disconnect like any other). SIGINT or SIGTERM closes the connection, finishes
//! the active file and writes the final manifest.
//!
//! # Layout
//! - [`format`]: the record format inside a file (pure).
//! - [`manifest`]: `manifest.json` (pure data and its checks).
//! - [`writer`]: files, rotation, flushes, the disk budget.
//! - [`reader`]: streaming read-back, tolerant of a killed capture's last file.

pub mod format;
pub mod manifest;
pub mod reader;
pub mod writer;

mod client;
pub mod snapshots;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::backoff::{AttemptLimiter, Backoff, BINANCE_ATTEMPT_WINDOW, DEFAULT_ATTEMPT_LIMIT};
use crate::config::Config;
use crate::market::{Interval, Symbol};

pub use format::{Kind, Record};
pub use manifest::{Manifest, MANIFEST_FILE};
pub use reader::{ReadError, Reader};
pub use writer::{Settings, Stamp, WriteError, Writer};

/// Binance's limit of streams on one connection; a capture uses one connection.
const MAX_STREAMS: usize = crate::feed::protocol::BINANCE_MAX_STREAMS_PER_CONNECTION;
/// How long one blocking read waits before the loop checks the stop flag, flushes and
/// rotates: the longest a Ctrl-C waits, and the finest flush period that is kept.
const READ_POLL: Duration = Duration::from_millis(100);
/// Summary lines on stderr while capturing.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// `alphapulse capture` flags.
/// A file is closed past this size (`--rotate-bytes`): small enough to copy and
/// replay piecewise, large enough that rotation is rare.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 << 20;
/// The capture's disk budget (`--max-bytes`): 160 full files.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;
/// zstd level (`--level`): zstd's own default, fast enough for a live feed.
pub const DEFAULT_LEVEL: i32 = 3;
/// zstd's highest regular level.
pub const MAX_LEVEL: i64 = 19;

#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// The capture directory (created; it must not hold a capture already).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Binance stream names, comma-separated (`btcusdt@kline_1m,btcusdt@trade`).
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Symbols whose streams to record as the engine would subscribe them (a kline
    /// stream per timeframe and the kinds of [feed.streams]), comma-separated. Default:
    /// SYMBOLS of the configuration when no --streams are given.
    #[arg(long, value_delimiter = ',', value_parser = parse_symbol)]
    pub symbols: Vec<Symbol>,
    /// Timeframes of the derived kline streams (default: TIMEFRAMES).
    #[arg(long, value_delimiter = ',', value_parser = parse_interval)]
    pub timeframes: Vec<Interval>,
    /// Close a file once it holds this many bytes on disk.
    #[arg(long, default_value_t = DEFAULT_ROTATE_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_bytes: u64,
    /// … or once it has been open this many seconds.
    #[arg(long, default_value = "3600", value_parser = parse_seconds, value_name = "SECONDS")]
    pub rotate_secs: Duration,
    /// Disk budget of the whole capture; past it the oldest files are deleted (never the
    /// one being written). At least twice --rotate-bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES, value_name = "BYTES")]
    pub max_bytes: u64,
    /// Flush the active file and rewrite the manifest this often: at most this much is
    /// lost when the capture is killed.
    #[arg(long, default_value = "1", value_parser = parse_seconds, value_name = "SECONDS")]
    pub flush_secs: Duration,
    /// zstd compression level (1 fastest … 19 smallest).
    #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=MAX_LEVEL))]
    pub level: i32,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_seconds, value_name = "SECONDS")]
    pub seconds: Option<Duration>,
}

/// Why a capture could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Bad arguments or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Runtime(String),
}

fn parse_symbol(text: &str) -> Result<Symbol, String> {
    Symbol::new(text.trim()).map_err(|e| e.to_string())
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    Interval::parse(text.trim()).map_err(|e| e.to_string())
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    crate::clock::parse_seconds(text, false)
}

/// The streams to record, in order, without repeats: `--streams` as given, then those
/// derived from `--symbols`/`--timeframes` (or the configuration's, when neither
/// `--streams` nor `--symbols` is given) as the engine derives them.
pub fn plan_streams(args: &CaptureArgs, config: &Config) -> Result<Vec<String>, CaptureError> {
    let mut streams: Vec<String> = Vec::new();
    for name in &args.streams {
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-' | b'.'))
        {
            return Err(CaptureError::Usage(format!(
                "--streams: {name:?} is not a stream name (like btcusdt@kline_1m)"
            )));
        }
        streams.push(name.to_string());
    }
    if streams.is_empty() || !args.symbols.is_empty() || !args.timeframes.is_empty() {
        let symbols = if args.symbols.is_empty() {
            &config.symbols
        } else {
            &args.symbols
        };
        let timeframes = if args.timeframes.is_empty() {
            &config.timeframes
        } else {
            &args.timeframes
        };
        streams.extend(crate::feed::protocol::streams_for(
            symbols,
            timeframes,
            &config.feed.streams,
        ));
    }
    let mut seen = std::collections::HashSet::new();
    streams.retain(|s| seen.insert(s.clone()));
    if streams.is_empty() {
        return Err(CaptureError::Usage(
            "no streams: give --streams, or --symbols and --timeframes".into(),
        ));
    }
    if streams.len() > MAX_STREAMS {
        return Err(CaptureError::Usage(format!(
            "{} streams: one capture connection takes at most {MAX_STREAMS} (Binance's limit)",
            streams.len()
        )));
    }
    Ok(streams)
}

/// The combined-stream URL for `streams` on the feed's endpoint URL.
pub fn stream_url(endpoint_url: &str, streams: &[String]) -> String {
    let sep = if endpoint_url.contains('?') { '&' } else { '?' };
    format!("{endpoint_url}{sep}streams={}", streams.join("/"))
}

fn now() -> Stamp {
    Stamp {
        wall_ns: crate::clock::wall_ns(),
        mono_ns: crate::clock::mono_ns(),
    }
}

fn marker(writer: &mut Writer, value: serde_json::Value) -> Result<(), WriteError> {
    writer.record(Kind::Marker, now(), value.to_string().as_bytes())
}

/// `alphapulse capture`: records until SIGINT/SIGTERM (or `--seconds`), then prints a
/// summary line on stdout.
pub fn run(args: CaptureArgs, config: &Config) -> Result<(), CaptureError> {
    let streams = plan_streams(&args, config)?;
    let endpoint = crate::feed::connection::Endpoint::new(
        &config.binance_ws_url,
        config.feed.time_unit_microsecond,
    )
    .map_err(|e| CaptureError::Usage(e.to_string()))?;
    let tls = if endpoint.tls {
        Some(
            crate::feed::connection::tls_config(config.feed.tls_ca_file.as_deref())
                .map_err(|e| CaptureError::Usage(e.to_string()))?,
        )
    } else {
        None
    };
    let url = stream_url(&endpoint.url, &streams);
    let settings = Settings {
        rotate_bytes: args.rotate_bytes,
        rotate_after: args.rotate_secs,
        max_bytes: args.max_bytes,
        flush_every: args.flush_secs,
        level: args.level,
    };
    let started = Instant::now();
    let mut writer = match Writer::create(&args.out, settings, url.clone(), streams.clone(), now())
    {
        Err(e @ (WriteError::Exists { .. } | WriteError::Budget { .. })) => {
            return Err(CaptureError::Usage(e.to_string()))
        }
        other => other?,
    };
    crate::engine::install_signal_handlers();
    let deadline = args.seconds.map(|s| started + s);
    let stopping = || crate::engine::signalled() || deadline.is_some_and(|d| Instant::now() >= d);
    let target = client::Target {
        endpoint: &endpoint,
        url: &url,
        tls,
        max_frame_bytes: config.feed.max_frame_bytes,
        silence: Duration::from_secs_f64(config.feed.silence_timeout_s),
        read_poll: READ_POLL.min(args.flush_secs),
    };
    let mut backoff = Backoff::new(
        Duration::from_millis(config.feed.backoff_initial_ms),
        Duration::from_millis(config.feed.backoff_max_ms),
        Duration::from_secs_f64(config.feed.backoff_stable_s),
    );
    let mut attempts = AttemptLimiter::new(BINANCE_ATTEMPT_WINDOW, DEFAULT_ATTEMPT_LIMIT);
    let mut progress = client::Progress::new(started, PROGRESS_EVERY);
    // Diff depth streams get a REST snapshot after their first event on each
    // connection, so a replay can rebuild their books ([`snapshots`]).
    let depth = streams
        .iter()
        .any(|s| crate::market::diff_depth_stream_symbol(s).is_some());
    let rest = if depth {
        let agent = crate::backfill::agent(config.feed.tls_ca_file.as_deref())
            .map_err(|e| CaptureError::Usage(e.to_string()))?;
        Some(crate::backfill::Client::new(agent))
    } else {
        None
    };
    let mut snapshots = snapshots::DepthSnapshots::new(&config.binance_rest_url, rest);
    let mut connections = 0u64;
    eprintln!(
        "capturing {} streams from {} into {}",
        streams.len(),
        endpoint.url,
        args.out.display()
    );
    while !stopping() {
        attempts.record(Instant::now());
        match client::connect(&target) {
            Ok(mut ws) => {
                connections += 1;
                if connections > 1 {
                    writer.reconnected();
                }
                tracing::info!(url = %endpoint.url, streams = streams.len(), "capture connected");
                marker(
                    &mut writer,
                    serde_json::json!({"event": "connected", "url": url}),
                )?;
                let connected_at = Instant::now();
                snapshots.reset();
                let end = client::session(
                    &mut ws,
                    &mut writer,
                    &target,
                    &stopping,
                    &mut progress,
                    &mut snapshots,
                )?;
                backoff.connection_ended(connected_at, Instant::now());
                if let client::End::Stopped = end {
                    break;
                }
                let reason = end.to_string();
                tracing::warn!(%reason, "capture connection ended; reconnecting");
                marker(
                    &mut writer,
                    serde_json::json!({"event": "disconnected", "reason": reason}),
                )?;
            }
            Err(why) => {
                tracing::warn!(error = %why, "capture cannot connect; retrying");
                marker(
                    &mut writer,
                    serde_json::json!({"event": "connect_failed", "error": why}),
                )?;
            }
        }
        let wait = backoff
            .next_delay(fastrand::f64())
            .max(attempts.delay(Instant::now()));
        let until = Instant::now() + wait;
        while !stopping() && Instant::now() < until {
            std::thread::sleep(READ_POLL.min(until.saturating_duration_since(Instant::now())));
            writer.tick(now())?;
        }
    }
    let manifest = writer.finish(now())?;
    println!("{}", summary(&manifest, started.elapsed(), &args.out));
    if snapshots.taken + snapshots.failed > 0 {
        println!(
            "depth snapshots: {} recorded, {} failed (each also a marker)",
            snapshots.taken, snapshots.failed
        );
    }
    Ok(())
}

/// One line: frames, frames per second, bytes per frame on disk, compression ratio.
pub fn summary(manifest: &Manifest, elapsed: Duration, dir: &std::path::Path) -> String {
    let frames = manifest.frames();
    let disk = manifest.bytes();
    let received: u64 = manifest.files.iter().map(|f| f.frame_bytes).sum();
    let per_frame = |bytes: u64| bytes as f64 / frames.max(1) as f64;
    format!(
        "captured {frames} frames in {:.1} s ({:.0} frames/s) into {} files in {}: {} bytes received ({:.1} per frame), {} on disk ({:.1} per frame, ratio {:.1}); {} reconnects, {} files deleted for the budget",
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64().max(1e-9),
        manifest.files.len(),
        dir.display(),
        received,
        per_frame(received),
        disk,
        per_frame(disk),
        received as f64 / disk.max(1) as f64,
        manifest.reconnects,
        manifest.deleted_files_total,
    )
}

#[cfg(test)]
mod tests;
