//! `alphapulse history`: the exchange's klines of a past range paged into the database
//! on demand, and stored candles exported for research tools (CSV, or Parquet in
//! [`parquet`]).
//!
//! Runs on: the main thread (blocking: the REST client and the sync `postgres` client;
//! no executor). In: symbols, timeframes, a range. Out: closed candles in `candles`,
//! written by the writer's own batch path under its conflict rule (idempotent: a
//! re-run stores nothing twice), or CSV on stdout or a file.
//!
//! Fetching keeps to the REST weight budget through the backfill's scheduler
//! (`feed.rest_weight_per_minute`, the exchange's `X-MBX-USED-WEIGHT-1M` and
//! `Retry-After`), one page of 1,000 klines at a time. Each series resumes after its
//! newest stored closed candle in the range, so an interrupted run continues where it
//! stopped. Only candles closed by the exchange's time at the start (`/api/v3/time`)
//! are stored. On a terminal each series shows a progress line; otherwise one summary
//! line per series.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::backfill::scheduler::{Next, Priority, Scheduler, EXCHANGE_WEIGHT_1M};
use crate::backfill::{klines, klines_url, Client, Request, Want};
use crate::config::Config;
use crate::market::{Interval, Symbol};
use crate::sinks::db::history::{each_stored, newest_in_range, EXPORT_COLUMNS};
use crate::sinks::db::rows::Batch;
use crate::sinks::db::upsert::BatchConn;
use crate::sinks::db::{copy, DbSettings, CONNECT_TIMEOUT};

mod parquet;

/// The end of an export without `--until` (2200-01-01).
const EXPORT_NO_END_MS: i64 = crate::clock::YEAR_2200_MS;
/// Weight of one `GET /api/v3/klines` page (limit 1000).
const PAGE_WEIGHT: u32 = 2;
/// Attempts of one page before the series is given up.
const MAX_ATTEMPTS: u32 = 6;
/// First retry delay of a failed page; doubles per attempt.
const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Rate-limited answers (429/418) one request may get before the run gives up on it;
/// each is waited out as its `Retry-After` says.
const MAX_RATE_LIMITED: u32 = 20;
/// The longest single sleep while the weight budget holds a request (the scheduler is
/// asked again after it).
const BUDGET_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Symbols, comma-separated (default: SYMBOLS of the configuration).
    #[arg(long, value_delimiter = ',', value_parser = parse_symbol)]
    pub symbols: Vec<Symbol>,
    /// Timeframes, comma-separated (default: TIMEFRAMES of the configuration).
    #[arg(long, value_delimiter = ',', value_parser = parse_interval)]
    pub timeframes: Vec<Interval>,
    /// Start of the range (inclusive): YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z (UTC) or
    /// epoch milliseconds.
    #[arg(long, value_parser = parse_time)]
    pub since: i64,
    /// End of the range (exclusive), same forms; default: the exchange's time now
    /// (fetch) or no end (export).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Export the stored candles of the range instead of fetching: `csv` or `parquet`.
    #[arg(long, value_enum)]
    pub export: Option<ExportFormat>,
    /// Where the export goes (default: stdout).
    #[arg(long, requires = "export")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated, one header line; times in epoch ms, decimals exactly as stored.
    Csv,
    /// Apache Parquet: times as UTC millisecond timestamps, prices and quantities as
    /// DECIMAL(38,8) (exact: a stored value with more decimals stops the export).
    Parquet,
}

fn parse_symbol(text: &str) -> Result<Symbol, String> {
    Symbol::new(text.trim()).map_err(|e| e.to_string())
}

fn parse_interval(text: &str) -> Result<Interval, String> {
    Interval::parse(text.trim()).map_err(|e| e.to_string())
}

/// `2024-03-01`, `2024-03-01T12:30Z`, `2024-03-01T12:30:15Z` (UTC) or epoch ms.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("'{text}': expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z (UTC) or epoch milliseconds")
    };
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str, max: i64| -> Result<i64, String> {
        match s.parse::<i64>() {
            Ok(v) if s.len() >= 2 && (0..=max).contains(&v) => Ok(v),
            _ => Err(bad()),
        }
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, day] = d[..] else {
        return Err(bad());
    };
    let (y, m, day) = (num(y, 9999)?, num(m, 12)?, num(day, 31)?);
    if y < 1970 || m == 0 || day == 0 {
        return Err(bad());
    }
    let mut ms = crate::market::days_from_civil(y, m, day) * 86_400_000;
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        let (h, min, s) = match parts[..] {
            [h, min] => (num(h, 23)?, num(min, 59)?, 0),
            [h, min, s] => (num(h, 23)?, num(min, 59)?, num(s, 59)?),
            _ => return Err(bad()),
        };
        ms += ((h * 60 + min) * 60 + s) * 1000;
    }
    Ok(ms)
}

/// Why the command failed: bad use (exit 2) or at run time (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

/// Runs `alphapulse history`.
pub fn run(args: HistoryArgs, config: &Config) -> Result<(), HistoryError> {
    let Some(settings) = DbSettings::from_config(config) else {
        return Err(HistoryError::Usage(
            "DATABASE_URL is not set; history is stored in (and exported from) the database".into(),
        ));
    };
    let symbols = if args.symbols.is_empty() {
        config.symbols.clone()
    } else {
        args.symbols.clone()
    };
    let intervals = if args.timeframes.is_empty() {
        config.timeframes.clone()
    } else {
        args.timeframes.clone()
    };
    if args.until.is_some_and(|u| u <= args.since) {
        return Err(HistoryError::Usage("--until must be after --since".into()));
    }
    let runtime = |e: &dyn std::fmt::Display| HistoryError::Runtime(e.to_string());
    let mut client = copy::connect(&settings.url, CONNECT_TIMEOUT).map_err(|e| runtime(&e))?;
    if let Some(format) = args.export {
        let until = args.until.unwrap_or(EXPORT_NO_END_MS);
        let range = (args.since, until);
        let out = args.out.as_deref();
        return match format {
            ExportFormat::Csv => export_csv(&mut client, &symbols, &intervals, range, out),
            ExportFormat::Parquet => {
                if out.is_none() && std::io::stdout().is_terminal() {
                    return Err(HistoryError::Usage(
                        "--export parquet writes binary: give --out FILE or redirect stdout".into(),
                    ));
                }
                export_sink(out).and_then(|sink| {
                    parquet::export(&mut client, &symbols, &intervals, range, sink)
                })
            }
        }
        .map_err(|e| runtime(&e));
    }
    if settings.migrate_on_start {
        crate::sinks::db::migrate_now(&settings).map_err(|e| runtime(&e))?;
    }
    let agent =
        crate::backfill::agent(config.feed.tls_ca_file.as_deref()).map_err(|e| runtime(&e))?;
    let mut fetch = Fetch {
        client: Client::new(agent),
        rest_url: config.binance_rest_url.trim_end_matches('/').to_owned(),
        scheduler: Scheduler::new(
            config.feed.rest_weight_per_minute as f64 / f64::from(EXCHANGE_WEIGHT_1M),
            PAGE_WEIGHT,
        ),
        requests: 0,
    };
    let now = fetch.exchange_time().map_err(|e| runtime(&e))?;
    let until = args.until.unwrap_or(now).min(now);
    let mut writer = BatchConn::open(
        copy::connect(&settings.url, CONNECT_TIMEOUT).map_err(|e| runtime(&e))?,
        &settings,
    )
    .map_err(|e| runtime(&e))?;
    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let (mut stored, mut failed) = (0u64, Vec::new());
    for &symbol in &symbols {
        for &interval in &intervals {
            let series = Series::plan(&mut client, symbol, interval, args.since, until)
                .map_err(|e| runtime(&e))?;
            match fetch.series(&series, &mut writer, progress) {
                Ok(n) => stored += n,
                Err(why) => {
                    eprintln!("history: {symbol} {interval}: gave up: {why}");
                    failed.push(format!("{symbol} {interval}"));
                }
            }
        }
    }
    eprintln!(
        "history: {stored} candles stored for {} series in {:.1} s ({} requests); {}",
        symbols.len() * intervals.len(),
        started.elapsed().as_secs_f64(),
        fetch.requests,
        if failed.is_empty() {
            "every series is complete for the range".to_owned()
        } else {
            format!("incomplete (run again to resume): {}", failed.join(", "))
        }
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(HistoryError::Runtime(format!(
            "{} series incomplete",
            failed.len()
        )))
    }
}

/// One series' range: what to fetch, and where it resumes.
struct Series {
    symbol: Symbol,
    interval: Interval,
    /// The first open time of the range, and where this run starts (after the newest
    /// stored candle of the range).
    first_ms: i64,
    from_ms: i64,
    until_ms: i64,
}

impl Series {
    fn plan(
        client: &mut postgres::Client,
        symbol: Symbol,
        interval: Interval,
        since: i64,
        until: i64,
    ) -> Result<Series, crate::sinks::db::DbError> {
        let open = interval.open_time(since);
        let first_ms = if open < since {
            interval.next_open(open)
        } else {
            open
        };
        let resume = newest_in_range(client, symbol, interval, first_ms, until)?;
        Ok(Series {
            symbol,
            interval,
            first_ms,
            from_ms: resume.map_or(first_ms, |t| interval.next_open(t)),
            until_ms: until,
        })
    }

    /// The candles from `from` that close before the range's end (for the progress
    /// line).
    fn span_candles(&self, from: i64) -> u64 {
        let end = self.interval.open_time(self.until_ms);
        crate::candle::span_candles(self.interval, from, end)
    }
}

/// The REST side: one client, the weight scheduler.
struct Fetch {
    client: Client,
    rest_url: String,
    scheduler: Scheduler<u64>,
    requests: u64,
}

impl Fetch {
    /// One GET within the weight budget: waits as the scheduler says, reports the answer
    /// to it, and retries a rate-limited answer after its `Retry-After`.
    fn get(&mut self, url: &str) -> Result<String, String> {
        let (mut attempts, mut rate_limited) = (0, 0);
        loop {
            self.scheduler.push(self.requests, Priority::Normal);
            loop {
                let (wall, mono) = clocks();
                match self.scheduler.next(wall, mono) {
                    Next::Send(_) => break,
                    Next::Wait(ms) => {
                        std::thread::sleep(Duration::from_millis(ms.max(1)).min(BUDGET_POLL))
                    }
                    Next::Idle => break,
                }
            }
            self.requests += 1;
            attempts += 1;
            let outcome = match self.client.get(url) {
                Ok(answer) => {
                    let (wall, mono) = clocks();
                    self.scheduler.on_answer(
                        wall,
                        mono,
                        answer.status,
                        answer.used_weight_1m,
                        answer.retry_after_s,
                    );
                    match answer.body {
                        // Rate limited: the scheduler holds the next send; not an attempt.
                        None if rate_limited < MAX_RATE_LIMITED => {
                            rate_limited += 1;
                            attempts -= 1;
                            continue;
                        }
                        None => {
                            return Err(format!(
                                "rate limited {MAX_RATE_LIMITED} times (HTTP {})",
                                answer.status
                            ))
                        }
                        Some(Ok(body)) => return Ok(body),
                        Some(Err(e)) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if attempts >= MAX_ATTEMPTS {
                return Err(outcome);
            }
            std::thread::sleep(RETRY_INITIAL * (1 << (attempts - 1)));
        }
    }

    /// The exchange's time now (`GET /api/v3/time`), ms.
    fn exchange_time(&mut self) -> Result<i64, String> {
        let body = self.get(&format!("{}/api/v3/time", self.rest_url))?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        v["serverTime"]
            .as_i64()
            .ok_or_else(|| format!("GET /api/v3/time: no serverTime in {body}"))
    }

    /// Pages one series' range into the database; returns the candles stored.
    fn series(
        &mut self,
        s: &Series,
        writer: &mut BatchConn,
        progress: bool,
    ) -> Result<u64, String> {
        let total = s.span_candles(s.first_ms).max(1);
        let already = total.saturating_sub(s.span_candles(s.from_ms));
        let mut from = s.from_ms;
        let mut stored = 0u64;
        let show = |stored: u64, done: bool| {
            let have = (already + stored).min(total);
            let line = format!(
                "{} {}: {have}/{total} candles ({} this run){}",
                s.symbol,
                s.interval,
                stored,
                if already > 0 { ", resumed" } else { "" }
            );
            if progress {
                let width = 30;
                let filled = (have * width / total) as usize;
                eprint!(
                    "\r{:<10} {:<3} [{}{}] {line}{}",
                    s.symbol.as_str(),
                    s.interval.as_str(),
                    "#".repeat(filled),
                    ".".repeat(width as usize - filled),
                    if done { "\n" } else { "" }
                );
            } else if done {
                eprintln!("history: {line}");
            }
        };
        while from < s.until_ms {
            let request = Request {
                symbol: s.symbol,
                interval: s.interval,
                want: Want::Range {
                    from_open_ms: from,
                    to_open_ms: Some(s.until_ms),
                },
            };
            let body = self.get(&klines_url(&self.rest_url, &request))?;
            let rows = klines::parse(&body, s.symbol, s.interval)?;
            // Only candles the exchange had closed when the run began.
            let closed: Vec<_> = rows
                .into_iter()
                .filter(|c| c.open_time_ms >= from && c.close_time_ms < s.until_ms)
                .collect();
            let Some(last) = closed.last().map(|c| c.open_time_ms) else {
                break; // the exchange has nothing more in the range
            };
            let mut batch = Batch::new();
            for mut c in closed {
                c.closed = true;
                batch.push_candle(c);
            }
            writer.write(&batch).map_err(|e| e.to_string())?;
            stored += batch.rows() as u64;
            from = s.interval.next_open(last);
            show(stored, false);
        }
        show(stored, true);
        Ok(stored)
    }
}

/// The scheduler's clocks: wall ms (the weight minute) and monotonic ms (Retry-After).
fn clocks() -> (u64, u64) {
    (
        crate::clock::wall_ms().max(0) as u64,
        crate::clock::mono_ns() / 1_000_000,
    )
}

/// Where an export goes: `out`, or stdout.
fn export_sink(out: Option<&std::path::Path>) -> Result<Box<dyn Write + Send>, String> {
    Ok(match out {
        Some(path) => {
            Box::new(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => Box::new(std::io::stdout()),
    })
}

/// Writes the stored candles of the range as CSV to `out` (or stdout).
fn export_csv(
    client: &mut postgres::Client,
    symbols: &[Symbol],
    intervals: &[Interval],
    (since, until): (i64, i64),
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    let mut w = std::io::BufWriter::new(export_sink(out)?);
    writeln!(w, "{}", EXPORT_COLUMNS.join(",")).map_err(|e| e.to_string())?;
    let n = each_stored(client, symbols, intervals, since, until, |c| {
        writeln!(w, "{}", c.fields().join(","))
    })
    .map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())?;
    eprintln!("history: exported {n} candles");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_utc() {
        assert_eq!(parse_time("2024-03-01"), Ok(1_709_251_200_000));
        assert_eq!(
            parse_time("2024-03-01T12:30Z"),
            Ok(1_709_251_200_000 + 45_000_000)
        );
        assert_eq!(
            parse_time("2024-03-01T12:30:15Z"),
            Ok(1_709_251_200_000 + 45_015_000)
        );
        assert_eq!(parse_time("1709251200000"), Ok(1_709_251_200_000));
        for bad in [
            "",
            "2024-3-1",
            "2024-13-01",
            "2024-03-01T12:30",
            "yesterday",
            "2024-03-01T25:00Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
