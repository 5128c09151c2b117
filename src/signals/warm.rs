//! Warm start: recent closed klines from the REST API, so indicators are warm before the
//! first live candle closes.
//!
//! Runs on: its own control-plane thread (`signals-warm`), never on a shard executor:
//! the HTTP calls block. Owns: one `ureq` agent and the REST weight budget. In: at
//! startup every (symbol, timeframe) of every shard, and later the re-warm requests a
//! shard makes after a long outage ([`WarmLink::requests`]). Out: one [`WarmBatch`] per
//! (symbol, timeframe) on the shard's bounded delivery queue, which the shard drains on
//! its own executor (the periodic flusher) and applies before its live candles.
//!
//! Budget: `/api/v3/klines` costs weight 2. The thread uses at most
//! [`WEIGHT_BUDGET_1M`] of Binance's per-minute weight (the rest stays for the backfill
//! and other clients of the same IP): when `X-MBX-USED-WEIGHT-1M` reaches it, the thread
//! waits for the next minute. A 429 or 418 answer is obeyed: it waits `Retry-After`
//! seconds and tries again, at most [`MAX_ATTEMPTS`] times.
//!
//! Failure: a warm start that fails (REST down, bad answer) is logged and counted in
//! [`WarmStats`], and the series warms from live candles instead.
//!
//! Historical candles never emit signals: they warm the indicators only, so a restart
//! does not flood the sinks with signals that were already made (or never wanted). The
//! signals of live candles then depend only on the candle sequence applied: the same
//! history and the same live candles give the same signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::market::{Decimal, Interval, Symbol};
use crate::metrics::{Counter, Gauge};

use super::rules::{decimal_to_f64, Bar};

/// Share of Binance's 6000 weight per minute the warm start may use: half, leaving the
/// other half to the gap backfill and any other client behind the same IP.
pub const WEIGHT_BUDGET_1M: u32 = 3000;
/// Weight of one `/api/v3/klines` call (any limit up to 1000).
pub const KLINES_WEIGHT: u32 = 2;
/// Attempts per (symbol, timeframe) when the exchange answers 429/418.
pub const MAX_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` obeyed; a longer ban fails the warm start (the series warms
/// from live candles) instead of stalling every other series behind it.
pub const MAX_RETRY_AFTER_S: u64 = 300;
/// Timeout of one REST call, so a hung exchange cannot hold the thread (or shutdown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest klines answer read: 1000 rows of about 200 bytes, with room to spare.
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Re-warm requests a shard may have waiting; past this a request is dropped and
/// counted (the series then warms from live candles).
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// Batches waiting for a shard to take them. The thread waits for room rather than
/// dropping one: a shard drains its queue every few milliseconds.
pub const MAX_PENDING_BATCHES: usize = 64;
/// How often an idle warm thread looks for requests and for the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// A shard's request to warm one series again (after a long outage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmRequest {
    pub symbol: Symbol,
    pub interval: Interval,
}

/// Recent closed candles of one series, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmBatch {
    pub symbol: Symbol,
    pub interval: Interval,
    pub bars: Vec<Bar>,
}

/// The two bounded queues between one shard and the warm thread.
#[derive(Clone)]
pub struct WarmLink {
    /// Shard → warm thread: series to warm again.
    pub requests: Arc<ArrayQueue<WarmRequest>>,
    /// Warm thread → shard: fetched candles.
    pub deliveries: Arc<ArrayQueue<WarmBatch>>,
}

impl Default for WarmLink {
    fn default() -> Self {
        WarmLink {
            requests: Arc::new(ArrayQueue::new(MAX_PENDING_REQUESTS)),
            deliveries: Arc::new(ArrayQueue::new(MAX_PENDING_BATCHES)),
        }
    }
}

/// Figures of the warm thread (its single writer), for `/api/status`.
#[derive(Debug, Default)]
pub struct WarmStats {
    /// Series fetched successfully.
    pub series_warmed: Counter,
    /// Closed candles fetched.
    pub candles_fetched: Counter,
    /// Series whose fetch failed (they warm from live candles).
    pub failures: Counter,
    /// 429/418 answers obeyed.
    pub rate_limited: Counter,
    /// Pauses for the weight budget.
    pub budget_waits: Counter,
    /// The exchange's `X-MBX-USED-WEIGHT-1M` after the latest call.
    pub used_weight_1m: Gauge,
    /// Series still waiting to be fetched.
    pub pending: Counter,
    /// The latest failure, for the operator.
    pub last_error: Mutex<Option<String>>,
}

impl WarmStats {
    pub fn status(&self) -> serde_json::Value {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::json!({
            "series_warmed": self.series_warmed.get(),
            "candles_fetched": self.candles_fetched.get(),
            "failures": self.failures.get(),
            "rate_limited": self.rate_limited.get(),
            "budget_waits": self.budget_waits.get(),
            "used_weight_1m": self.used_weight_1m.get(),
            "pending": self.pending.get(),
            "last_error": last_error,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: ureq::Error },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: rate limited (HTTP {status}), retry after {retry_after_s} s")]
    RateLimited {
        url: String,
        status: u16,
        retry_after_s: u64,
    },
    #[error("GET {url}: malformed klines: {why}")]
    Malformed { url: String, why: String },
    #[error("{path}: {why}")]
    CaFile { path: String, why: String },
    #[error("cannot start the warm thread: {0}")]
    Thread(std::io::Error),
}

/// The HTTP agent: rustls trusting the webpki roots, plus the certificates of
/// `feed.tls_ca_file` when set (as the WebSocket feed does).
pub fn agent(extra_ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, WarmError> {
    use futures_rustls::rustls::pki_types::pem::PemObject;
    use futures_rustls::rustls::pki_types::CertificateDer;
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

    let roots = match extra_ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let bad = |why: String| WarmError::CaFile {
                path: path.display().to_string(),
                why,
            };
            let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            let before = certs.len();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                certs.push(Certificate::from_der(cert.as_ref()).to_owned());
            }
            if certs.len() == before {
                return Err(bad("no certificates in the file".into()));
            }
            RootCerts::Specific(Arc::new(certs))
        }
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into())
}

/// Parses a `/api/v3/klines` answer into bars, oldest first, leaving out the last row:
/// the exchange always ends the list with the candle still open.
pub fn parse_klines(body: &str) -> Result<Vec<Bar>, String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut bars = Vec::with_capacity(rows.len());
    for row in rows.iter().take(rows.len().saturating_sub(1)) {
        let cell = |i: usize| row.get(i).ok_or_else(|| format!("row without field {i}"));
        let dec = |i: usize| -> Result<f64, String> {
            let text = cell(i)?.as_str().ok_or("price is not a string")?;
            let d: Decimal = text.parse().map_err(|_| format!("bad decimal {text:?}"))?;
            Ok(decimal_to_f64(d))
        };
        let open_time_ms = cell(0)?.as_i64().ok_or("open time is not an integer")?;
        bars.push(Bar {
            open_time_ms,
            open: dec(1)?,
            high: dec(2)?,
            low: dec(3)?,
            close: dec(4)?,
            volume: dec(5)?,
        });
    }
    if bars
        .windows(2)
        .any(|w| w[1].open_time_ms <= w[0].open_time_ms)
    {
        return Err("rows are not in open-time order".into());
    }
    Ok(bars)
}

/// The warm thread's work: which series, where to deliver, how many candles.
pub struct WarmPlan {
    pub rest_url: String,
    pub candles: u32,
    /// Per shard: its series (warmed at start) and its link.
    pub shards: Vec<(Vec<WarmRequest>, WarmLink)>,
}

/// Starts the warm thread; it returns when `stop` is set.
pub fn spawn(
    plan: WarmPlan,
    agent: ureq::Agent,
    stats: Arc<WarmStats>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, WarmError> {
    std::thread::Builder::new()
        .name("signals-warm".into())
        .spawn(move || run(plan, agent, &stats, &stop))
        .map_err(WarmError::Thread)
}

fn run(plan: WarmPlan, agent: ureq::Agent, stats: &WarmStats, stop: &AtomicBool) {
    let mut pending: std::collections::VecDeque<(usize, WarmRequest)> = plan
        .shards
        .iter()
        .enumerate()
        .flat_map(|(i, (series, _))| series.iter().map(move |r| (i, *r)))
        .collect();
    let mut budget = Budget::default();
    while !stop.load(Ordering::Relaxed) {
        for (i, (_, link)) in plan.shards.iter().enumerate() {
            while let Some(r) = link.requests.pop() {
                if !pending.contains(&(i, r)) {
                    pending.push_back((i, r));
                }
            }
        }
        stats.pending.set(pending.len() as u64);
        let Some((shard, req)) = pending.pop_front() else {
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        match fetch(&agent, &plan, req, &mut budget, stats, stop) {
            Ok(bars) => {
                stats.series_warmed.inc();
                stats.candles_fetched.add(bars.len() as u64);
                let mut batch = WarmBatch {
                    symbol: req.symbol,
                    interval: req.interval,
                    bars,
                };
                let deliveries = &plan.shards[shard].1.deliveries;
                while let Err(back) = deliveries.push(batch) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    batch = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Err(e) => {
                stats.failures.inc();
                tracing::warn!(symbol = %req.symbol, timeframe = %req.interval, error = %e,
                    "warm start failed; the series warms from live candles");
                *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }
}

/// The weight used in the current minute, as the exchange last reported it, and how
/// long the exchange asked us to stay away.
#[derive(Default)]
struct Budget {
    used: u32,
    minute: u64,
    /// Set by a 429/418: no request for any series before this instant.
    blocked_until: Option<Instant>,
}

fn wall_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// Sleeps up to `total`, waking early when `stop` is set; false when stopped.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(IDLE_POLL.min(end - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

fn fetch(
    agent: &ureq::Agent,
    plan: &WarmPlan,
    req: WarmRequest,
    budget: &mut Budget,
    stats: &WarmStats,
    stop: &AtomicBool,
) -> Result<Vec<Bar>, WarmError> {
    // One more than asked: the newest row is the open candle, which is left out.
    let url = format!(
        "{}/api/v3/klines?symbol={}&interval={}&limit={}",
        plan.rest_url.trim_end_matches('/'),
        req.symbol,
        req.interval,
        (plan.candles + 1).min(1000)
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A Retry-After applies to every request from this IP, not just the one that
        // got it: wait it out here, or fail this series at once if the ban is long
        // (the series warms from live candles; nothing is sent to a banning server).
        if let Some(until) = budget.blocked_until {
            let left = until.saturating_duration_since(Instant::now());
            if left > Duration::from_secs(MAX_RETRY_AFTER_S) {
                return Err(WarmError::RateLimited {
                    url,
                    status: 418,
                    retry_after_s: left.as_secs(),
                });
            }
            if !sleep_unless_stopped(left, stop) {
                return Err(WarmError::Status {
                    url,
                    status: 0,
                    body: "stopped while rate limited".into(),
                });
            }
            // Retry-After ends where the exchange's weight window resets.
            budget.blocked_until = None;
            budget.used = 0;
        }
        if budget.minute == wall_minute() && budget.used + KLINES_WEIGHT > WEIGHT_BUDGET_1M {
            // Binance's weight window is the calendar minute: wait for the next one.
            stats.budget_waits.inc();
            let secs = 60
                - (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    % 60);
            sleep_unless_stopped(Duration::from_secs(secs), stop);
        }
        let mut resp = agent.get(&url).call().map_err(|source| WarmError::Http {
            url: url.clone(),
            source,
        })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        budget.minute = wall_minute();
        budget.used = header("x-mbx-used-weight-1m").map_or(budget.used + KLINES_WEIGHT, |w| {
            u32::try_from(w).unwrap_or(u32::MAX)
        });
        stats.used_weight_1m.set(i64::from(budget.used));
        let status = resp.status().as_u16();
        if status == 429 || status == 418 {
            stats.rate_limited.inc();
            let retry_after_s = header("retry-after").unwrap_or(60);
            budget.blocked_until = Some(Instant::now() + Duration::from_secs(retry_after_s));
            let err = WarmError::RateLimited {
                url: url.clone(),
                status,
                retry_after_s,
            };
            if attempt >= MAX_ATTEMPTS || retry_after_s > MAX_RETRY_AFTER_S {
                return Err(err);
            }
            tracing::warn!(error = %err, "warm start waits as the exchange asks");
            continue;
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|source| WarmError::Http {
                url: url.clone(),
                source,
            })?;
        if status != 200 {
            return Err(WarmError::Status {
                url,
                status,
                body: body.chars().take(200).collect(),
            });
        }
        return parse_klines(&body).map_err(|why| WarmError::Malformed { url, why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_candle_is_left_out_and_order_is_checked() {
        let row = |t: i64, c: &str| {
            format!(
                "[{t},\"1.0\",\"2.0\",\"0.5\",\"{c}\",\"10.5\",{},\"0\",1,\"0\",\"0\",\"0\"]",
                t + 59_999
            )
        };
        let body = format!(
            "[{},{},{}]",
            row(0, "1.5"),
            row(60_000, "1.25"),
            row(120_000, "9")
        );
        let bars = parse_klines(&body).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].close, 1.25);
        assert_eq!(bars[0].volume, 10.5);
        let body = format!(
            "[{},{},{}]",
            row(60_000, "1"),
            row(0, "1"),
            row(120_000, "1")
        );
        assert!(parse_klines(&body).is_err());
        assert!(parse_klines("[[1,2]]").unwrap().is_empty());
        assert!(parse_klines("[[1,2],[1]]").is_err());
        assert!(parse_klines("{}").is_err());
    }
}
