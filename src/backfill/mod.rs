//! REST work of the whole process: warm starts, gap backfill and catch-up, through one
//! scheduler that keeps Binance's REST rules.
//!
//! Runs on: its own control-plane thread (`rest`), never on a shard executor: the HTTP
//! calls and the startup database query block. Owns: one `ureq` agent, the
//! [`scheduler::Scheduler`] (weight share, 429/418 back-off, urgent first) and the
//! retry timers of failed requests. In: each shard's [`Want`]s on a bounded queue
//! ([`ShardLink::requests`]). Out: one [`RestBatch`] per answered page on the shard's
//! bounded delivery queue, which the shard drains on its own executor.
//!
//! What is fetched, and when:
//! - **Startup**: a warm start per series (recent closed candles: indicator history
//!   and, like every closed candle, rows for the database). With a database, the warm
//!   history ends two candles before the newest stored candle and a catch-up fetches
//!   everything after it, so candles closed while the engine was down are stored and
//!   make their signals, in order, exactly as they would have live.
//! - **Gaps**: a closed candle that skips open times (a reconnect, a stall, a lost
//!   frame) makes its shard ask for the missing range at once, urgent.
//! - **Reconnects**: a shard whose connection was down asks, per series whose last
//!   close is behind the reconnect time, for the candles in between (urgent), rather
//!   than waiting for the next close to reveal the gap (up to a day on `1d`).
//!
//! A span the exchange answers without candles is asked again a few seconds later
//! ([`ABSENCE_CHECK_DELAY`]); what the second answer lacks too is **confirmed absent**:
//! the delivery says so, the shard stops waiting for it, and the database records it
//! (`candle_absences`); it is never asked again. Only candles whose close time the
//! exchange's own time has passed are delivered, as closed (see `thread`). A request that fails (exchange down,
//! bad answer) is retried with capped back-off up to [`MAX_ATTEMPTS`] times; then the
//! shard is told, keeps the gap open (and counted), and asks again on the next
//! reconnect.
//!
//! - [`scheduler`]: which request goes next, and when (pure).
//! - [`klines`]: the klines answer parsed into candles, and the runs it lacks (pure).
//! - `client`: the HTTP agent, the klines URL of a request, one GET read.
//! - `thread`: the loop: requests in, retries, pages out, absences to the database.
//! - The link to the shards ([`Request`], [`RestBatch`], [`ShardLink`]) is vocabulary:
//!   [`crate::message::rest`].

pub mod agg_trades;
mod client;
pub mod depth;
pub mod klines;
mod repeats;
pub mod scheduler;
mod thread;
pub mod trades;

pub use client::{agent, klines_url, Answer, Client};

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::market::{Interval, Symbol};
use crate::metrics::{Counter, Gauge};

use scheduler::Priority;

pub use crate::message::rest::{
    Request, RestBatch, ShardLink, TradeKind, Want, MAX_PENDING_BATCHES, MAX_PENDING_REQUESTS,
};

/// Weight of one `/api/v3/klines` call (any limit up to 1000).
pub const KLINES_WEIGHT: u32 = 2;
/// Attempts of one request that fails (not counting 429/418, which wait and retry).
/// Backfill keeps trying for about a minute; a warm start gives up sooner, since the
/// series' signals wait for it (they then warm from live candles).
pub const MAX_ATTEMPTS: u32 = 8;
pub const MAX_WARM_ATTEMPTS: u32 = 3;
/// Back-off after a failed request: doubled per attempt, capped.
pub const RETRY_INITIAL: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Timeout of one REST call, so a hung exchange cannot hold the thread (or shutdown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest klines answer read: 1000 rows of about 200 bytes, with room to spare.
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Candles re-fetched before the newest stored one at a restart: the signals of the
/// last stored candles may not have reached the database before the process died.
pub const RESTART_OVERLAP_CANDLES: i64 = 2;
/// Wait before asking again for a span an answer lacked. One empty answer proves
/// little: the exchange's REST view can trail its stream by a moment. Well inside the
/// shard's hold on later signals (`shard::gate::DEFAULT_HOLD`).
pub const ABSENCE_CHECK_DELAY: Duration = Duration::from_secs(3);
/// Spans waiting for their second look; past this a check is queued at once (the
/// scheduler still paces it), so memory stays bounded during a long empty stretch.
pub const MAX_PENDING_CHECKS: usize = 4096;
/// The longest an idle thread sleeps. A shard that queues a request and the engine's
/// stop unpark it sooner, and its retries and second looks set its alarm; this only
/// bounds what a missed wake-up could cost.
pub(crate) const LONGEST_IDLE_SLEEP: Duration = Duration::from_secs(1);

/// Filling a range live data has passed is urgent; history and open-ended catch-up
/// are not.
pub fn priority(request: &Request) -> Priority {
    match request.want {
        Want::Range {
            to_open_ms: Some(_),
            ..
        }
        | Want::Trades { to_id: Some(_), .. } => Priority::Urgent,
        _ => Priority::Normal,
    }
}

/// Figures of the REST thread (its single writer), for `/api/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct RestStats {
    /// Requests sent, by purpose: warm, gap/catch-up.
    pub warm_requests: Counter,
    pub backfill_requests: Counter,
    /// Depth snapshots asked for the shards' books.
    pub book_requests: Counter,
    /// Closed candles received, by purpose.
    pub warm_candles: Counter,
    pub backfill_candles: Counter,
    /// Series whose warm start completed.
    pub series_warmed: Counter,
    /// Requests that failed for good, and failed attempts (retried).
    pub failures: Counter,
    pub failed_attempts: Counter,
    /// 429/418 answers obeyed.
    pub rate_limited: Counter,
    /// Times the thread waited for the minute's weight share.
    pub budget_waits: Counter,
    /// Ranges the exchange confirmed it has no candles for (two answers lacked them),
    /// and their candles.
    pub absent_ranges: Counter,
    pub absent_candles: Counter,
    /// Spans one answer lacked, asked again before anything is confirmed; candles the
    /// second answers had (the first answer was wrong); checks waiting for their time.
    pub unconfirmed_ranges: Counter,
    pub unconfirmed_candles_found: Counter,
    pub pending_checks: Counter,
    /// `X-MBX-USED-WEIGHT-1M` after the latest answer.
    pub used_weight_1m: Gauge,
    /// The configured share, as weight per minute.
    pub weight_share_1m: Gauge,
    /// Jobs queued: urgent, normal; and waiting to be retried.
    pub queued_urgent: Counter,
    pub queued_normal: Counter,
    pub retrying: Counter,
    /// 1 while waiting out a Retry-After.
    pub blocked: Counter,
    /// Series whose newest stored candle was read from the database at startup.
    pub resumed_series: Counter,
    /// `aggTrades` requests sent (holes in aggregate trade ids, restart catch-ups),
    /// and the aggregate trades they delivered.
    pub agg_trade_requests: Counter,
    pub agg_trades: Counter,
    /// `historicalTrades` requests sent (holes in raw trade ids, restart catch-ups),
    /// and the raw trades they delivered.
    pub trade_requests: Counter,
    pub trades: Counter,
    /// Symbols and kinds whose stored holes at start were more than
    /// [`MAX_RESUMED_HOLES`]: the oldest of them are left.
    pub trade_holes_left: Counter,
    /// Rows dropped for an open time outside what was asked or too far from our clock,
    /// per [`crate::clock::Skew`] (future, past).
    pub rows_dropped: [Counter; crate::clock::Skew::ALL.len()],
    pub last_error: Mutex<Option<String>>,
}

impl RestStats {
    /// The requests and delivered trades of `kind`.
    pub fn trade_counters(&self, kind: TradeKind) -> (&Counter, &Counter) {
        match kind {
            TradeKind::Aggregate => (&self.agg_trade_requests, &self.agg_trades),
            TradeKind::Raw => (&self.trade_requests, &self.trades),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::json!({
            "warm_requests": self.warm_requests.get(),
            "backfill_requests": self.backfill_requests.get(),
            "book_requests": self.book_requests.get(),
            "warm_candles": self.warm_candles.get(),
            "backfill_candles": self.backfill_candles.get(),
            "series_warmed": self.series_warmed.get(),
            "failures": self.failures.get(),
            "failed_attempts": self.failed_attempts.get(),
            "rate_limited": self.rate_limited.get(),
            "budget_waits": self.budget_waits.get(),
            "absent_ranges": self.absent_ranges.get(),
            "absent_candles": self.absent_candles.get(),
            "unconfirmed_ranges": self.unconfirmed_ranges.get(),
            "unconfirmed_candles_found": self.unconfirmed_candles_found.get(),
            "pending_checks": self.pending_checks.get(),
            "used_weight_1m": self.used_weight_1m.get(),
            "weight_share_1m": self.weight_share_1m.get(),
            "queued_urgent": self.queued_urgent.get(),
            "queued_normal": self.queued_normal.get(),
            "retrying": self.retrying.get(),
            "blocked": self.blocked.get() == 1,
            "resumed_series": self.resumed_series.get(),
            "agg_trade_requests": self.agg_trade_requests.get(),
            "agg_trades": self.agg_trades.get(),
            "trade_requests": self.trade_requests.get(),
            "trades": self.trades.get(),
            "trade_holes_left": self.trade_holes_left.get(),
            "rows_dropped": self.rows_dropped.iter().map(Counter::get).sum::<u64>(),
            "rows_dropped_by_reason": crate::clock::Skew::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), self.rows_dropped[*r as usize].get().into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "last_error": last_error,
        })
    }

    fn set_error(&self, e: &dyn std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: ureq::Error },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: malformed klines: {why}")]
    Malformed { url: String, why: String },
    #[error("{path}: {why}")]
    CaFile { path: String, why: String },
    #[error("cannot start the REST thread: {0}")]
    Thread(std::io::Error),
}

impl RestError {
    /// What went wrong without which request it was (no URL): failures of many series
    /// with the same cause are logged as one line with a count.
    pub fn cause(&self) -> String {
        match self {
            RestError::Http { source, .. } => source.to_string(),
            RestError::Status { status, .. } => format!("HTTP {status}"),
            RestError::Malformed { .. } => "malformed klines".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Why the database could not do what the REST thread asked.
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync>;

/// What the REST thread needs of the database. `sinks::db` owns the statements
/// ([`crate::sinks::db::rest::RestDb`]); the engine hands them in, so this role talks
/// no SQL.
pub trait RestDatabase: Send {
    /// The newest stored open time (ms) of each series that has candles.
    fn newest_stored(
        &mut self,
        series: &[(Symbol, Interval)],
    ) -> Result<Vec<(Symbol, Interval, i64)>, DatabaseError>;

    /// Where each symbol's stored trades of `kind` resume: the newest stored id, and
    /// the holes among the newest [`TRADE_HOLE_SCAN`] ids (a backfill cut short by a
    /// kill). Symbols with none stored are left out.
    fn trade_resume(
        &mut self,
        _kind: TradeKind,
        _symbols: &[Symbol],
    ) -> Result<Vec<TradeResume>, DatabaseError> {
        Ok(Vec::new())
    }
}

/// How many of a symbol's newest stored trade ids a restart looks through for holes.
pub const TRADE_HOLE_SCAN: i64 = 50_000;
/// Most holes a restart asks for per symbol and kind (the oldest are left). Holes close
/// together are asked as one page ([`merge_holes`]).
pub const MAX_RESUMED_HOLES: i64 = 100;

/// Holes `[from, to)` (oldest first) merged into spans that one page of
/// [`crate::message::rest::TRADES_PAGE`] ids from their start covers: a restart asks
/// one request per span, not one per hole (the stored ids fetched again in between are
/// dropped by the idempotent insert).
pub fn merge_holes(holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let page = u64::from(crate::message::rest::TRADES_PAGE);
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(holes.len());
    for &(from, to) in holes {
        match spans.last_mut() {
            Some(span) if to <= span.0 + page => span.1 = span.1.max(to),
            _ => spans.push((from, to)),
        }
    }
    spans
}

/// Where a symbol's stored trades of one kind resume after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeResume {
    pub symbol: Symbol,
    /// The newest stored id: the catch-up starts after it.
    pub newest: u64,
    /// Ids `[from, to)` missing between stored ones, oldest first.
    pub holes: Vec<(u64, u64)>,
    /// Older holes were found past [`MAX_RESUMED_HOLES`]: they are not asked for.
    pub more_holes: bool,
}

/// The thread's work: where the exchange is, which series each shard has.
pub struct RestPlan {
    pub rest_url: String,
    /// Warm history per series; 0: no warm start.
    pub warm_candles: u32,
    /// Share of the exchange's weight per minute this process may use.
    pub weight_share: f64,
    /// The database: the newest stored candle per series at startup, and the
    /// confirmed absences. `None`: no database.
    pub database: Option<Box<dyn RestDatabase>>,
    /// Per shard: its series and its link.
    pub shards: Vec<(Vec<(Symbol, Interval)>, ShardLink)>,
    /// How far a row's open time may be from our clock (besides keeping to what was
    /// asked).
    pub clock: crate::clock::ClockBound,
    /// The kinds of trades received and stored: at startup, each symbol's catch-up of
    /// each from its newest stored one (the ones made while no engine ran), and the
    /// holes among its stored ids.
    pub trade_catch_up: Vec<TradeKind>,
}

/// Starts the REST thread; it returns when `stop` is set.
pub fn spawn(
    plan: RestPlan,
    agent: ureq::Agent,
    stats: Arc<RestStats>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, RestError> {
    std::thread::Builder::new()
        .name("rest".into())
        .spawn(move || thread::Thread::new(plan, client::Client::new(agent), stats, stop).run())
        .map_err(RestError::Thread)
}
