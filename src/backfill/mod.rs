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
//! A range the exchange answers without some candles is **confirmed absent**: the
//! delivery says so, the shard stops waiting for it, and the database records it
//! (`candle_absences`); it is never asked again. A request that fails (exchange down,
//! bad answer) is retried with capped back-off up to [`MAX_ATTEMPTS`] times; then the
//! shard is told, keeps the gap open (and counted), and asks again on the next
//! reconnect.

pub mod klines;
pub mod scheduler;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::market::{Candle, Interval, Symbol};
use crate::metrics::{Counter, Gauge};

use scheduler::{Hold, Next, Priority, Scheduler};

pub use crate::message::rest::{
    Request, RestBatch, ShardLink, Want, MAX_PENDING_BATCHES, MAX_PENDING_REQUESTS,
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
/// Confirmed absences waiting for the database; past this the oldest is dropped and
/// counted (the counter and the shard's figures still have it).
pub const MAX_PENDING_ABSENCES: usize = 10_000;
/// Wait between attempts to record absences while the database is down.
const ABSENCE_RETRY: Duration = Duration::from_secs(5);
/// How often an idle thread looks for requests and for the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Filling a range live data has passed is urgent; history and open-ended catch-up
/// are not.
pub fn priority(request: &Request) -> Priority {
    match request.want {
        Want::Range {
            to_open_ms: Some(_),
            ..
        } => Priority::Urgent,
        _ => Priority::Normal,
    }
}

/// Figures of the REST thread (its single writer), for `/api/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct RestStats {
    /// Requests sent, by purpose: warm, gap/catch-up.
    pub warm_requests: Counter,
    pub backfill_requests: Counter,
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
    /// Ranges the exchange confirmed it has no candles for, and their candles.
    pub absent_ranges: Counter,
    pub absent_candles: Counter,
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
    /// Absences written to `candle_absences`, and dropped while it was unreachable.
    pub absences_written: Counter,
    pub absences_dropped: Counter,
    pub last_error: Mutex<Option<String>>,
}

impl RestStats {
    pub fn status(&self) -> serde_json::Value {
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::json!({
            "warm_requests": self.warm_requests.get(),
            "backfill_requests": self.backfill_requests.get(),
            "warm_candles": self.warm_candles.get(),
            "backfill_candles": self.backfill_candles.get(),
            "series_warmed": self.series_warmed.get(),
            "failures": self.failures.get(),
            "failed_attempts": self.failed_attempts.get(),
            "rate_limited": self.rate_limited.get(),
            "budget_waits": self.budget_waits.get(),
            "absent_ranges": self.absent_ranges.get(),
            "absent_candles": self.absent_candles.get(),
            "used_weight_1m": self.used_weight_1m.get(),
            "weight_share_1m": self.weight_share_1m.get(),
            "queued_urgent": self.queued_urgent.get(),
            "queued_normal": self.queued_normal.get(),
            "retrying": self.retrying.get(),
            "blocked": self.blocked.get() == 1,
            "resumed_series": self.resumed_series.get(),
            "absences_written": self.absences_written.get(),
            "absences_dropped": self.absences_dropped.get(),
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

/// The HTTP agent: rustls trusting the webpki roots, plus the certificates of
/// `feed.tls_ca_file` when set (as the WebSocket feed does).
pub fn agent(extra_ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, RestError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

    let roots = match extra_ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let extra = crate::tls::certificates(path).map_err(|e| RestError::CaFile {
                path: e.path.display().to_string(),
                why: e.why,
            })?;
            let certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .chain(&extra)
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
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
    /// Records one confirmed absence; recording it twice changes nothing.
    fn record_absence(&mut self, gap: &crate::candle::Gap) -> Result<(), DatabaseError>;
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
}

/// A queued job: a request and the shard it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Job {
    shard: usize,
    request: Request,
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
        .spawn(move || Thread::new(plan, agent, stats, stop).run())
        .map_err(RestError::Thread)
}

/// The scheduler counts in unsigned milliseconds of wall time.
fn wall_ms() -> u64 {
    crate::clock::wall_ms().max(0) as u64
}

struct Thread {
    plan: RestPlan,
    agent: ureq::Agent,
    stats: Arc<RestStats>,
    stop: Arc<AtomicBool>,
    scheduler: Scheduler<Job>,
    /// Failed jobs waiting for their next attempt, and when it is.
    retries: Vec<(Instant, Job)>,
    /// Failed attempts of jobs not yet done.
    attempts: Vec<(Job, u32)>,
    /// Confirmed absences not yet in the database.
    absences: std::collections::VecDeque<crate::candle::Gap>,
    /// No database attempt before this (after a failure).
    db_retry_at: Instant,
}

impl Thread {
    fn new(
        plan: RestPlan,
        agent: ureq::Agent,
        stats: Arc<RestStats>,
        stop: Arc<AtomicBool>,
    ) -> Thread {
        let scheduler = Scheduler::new(plan.weight_share, KLINES_WEIGHT);
        stats.weight_share_1m.set(i64::from(scheduler.share_1m()));
        Thread {
            plan,
            agent,
            stats,
            stop,
            scheduler,
            retries: Vec::new(),
            attempts: Vec::new(),
            absences: std::collections::VecDeque::new(),
            db_retry_at: Instant::now(),
        }
    }

    fn run(mut self) {
        self.queue_startup();
        let mut was_budget_held = false;
        while !self.stop.load(Ordering::Relaxed) {
            self.take_requests();
            self.record_absences();
            let now = Instant::now();
            for (at, job) in &self.retries {
                if *at <= now {
                    self.scheduler.push_front(*job, priority(&job.request));
                }
            }
            self.retries.retain(|(at, _)| *at > now);
            let queued = self.scheduler.queued();
            self.stats.queued_urgent.set(queued[0] as u64);
            self.stats.queued_normal.set(queued[1] as u64);
            self.stats.retrying.set(self.retries.len() as u64);
            let wall = wall_ms();
            let hold = self.scheduler.hold(wall);
            self.stats.blocked.set(u64::from(hold == Hold::RetryAfter));
            match self.scheduler.next(wall) {
                Next::Idle => std::thread::sleep(IDLE_POLL),
                Next::Wait(ms) => {
                    if hold == Hold::Budget && !was_budget_held {
                        self.stats.budget_waits.inc();
                    }
                    was_budget_held = hold == Hold::Budget;
                    std::thread::sleep(IDLE_POLL.min(Duration::from_millis(ms.max(1))));
                }
                Next::Send(job) => {
                    was_budget_held = false;
                    self.execute(job);
                }
            }
        }
    }

    /// Warm starts for every series; with a database, resumed after the newest stored
    /// candle.
    fn queue_startup(&mut self) {
        let series: Vec<(Symbol, Interval)> = self
            .plan
            .shards
            .iter()
            .flat_map(|(series, _)| series.iter().copied())
            .collect();
        let stored = match self.plan.database.as_mut() {
            Some(db) => db.newest_stored(&series).unwrap_or_else(|e| {
                tracing::warn!(error = %e,
                    "cannot read the newest stored candles; starting as on an empty database");
                self.stats.set_error(&e);
                Vec::new()
            }),
            None => Vec::new(),
        };
        self.stats.resumed_series.set(stored.len() as u64);
        let warm = self.plan.warm_candles;
        let mut jobs = Vec::new();
        for (shard, (series, _)) in self.plan.shards.iter().enumerate() {
            for &(symbol, interval) in series {
                let newest = stored
                    .iter()
                    .find(|(s, i, _)| *s == symbol && *i == interval)
                    .map(|(_, _, t)| *t);
                let mut push = |want| {
                    jobs.push(Job {
                        shard,
                        request: Request {
                            symbol,
                            interval,
                            want,
                        },
                    })
                };
                match newest {
                    Some(last) => {
                        let mut resume = last;
                        for _ in 0..RESTART_OVERLAP_CANDLES {
                            resume = interval.open_time(resume - 1);
                        }
                        if warm > 0 {
                            let end = interval.open_time(resume - 1);
                            push(Want::Warm {
                                candles: warm,
                                end_open_ms: Some(end),
                            });
                        }
                        push(Want::Range {
                            from_open_ms: resume,
                            to_open_ms: None,
                        });
                    }
                    None if warm > 0 => push(Want::Warm {
                        candles: warm,
                        end_open_ms: None,
                    }),
                    None => {}
                }
            }
        }
        for job in jobs {
            self.scheduler.push(job, priority(&job.request));
        }
    }

    fn take_requests(&mut self) {
        for (shard, (_, link)) in self.plan.shards.iter().enumerate() {
            while let Some(request) = link.requests.pop() {
                let job = Job { shard, request };
                if !self.retries.iter().any(|(_, j)| *j == job) {
                    self.scheduler.push(job, priority(&request));
                }
            }
        }
    }

    fn url(&self, req: &Request) -> String {
        let base = format!(
            "{}/api/v3/klines?symbol={}&interval={}",
            self.plan.rest_url.trim_end_matches('/'),
            req.symbol,
            req.interval
        );
        match req.want {
            Want::Warm {
                candles,
                end_open_ms: Some(end),
            } => format!(
                "{base}&endTime={end}&limit={}",
                candles.clamp(1, klines::MAX_LIMIT)
            ),
            // One more than asked: the newest row is the open candle, left out.
            Want::Warm {
                candles,
                end_open_ms: None,
            } => format!("{base}&limit={}", (candles + 1).clamp(1, klines::MAX_LIMIT)),
            Want::Range {
                from_open_ms,
                to_open_ms: Some(to),
            } => format!(
                "{base}&startTime={from_open_ms}&endTime={}&limit={}",
                to - 1,
                klines::MAX_LIMIT
            ),
            Want::Range {
                from_open_ms,
                to_open_ms: None,
            } => format!(
                "{base}&startTime={from_open_ms}&limit={}",
                klines::MAX_LIMIT
            ),
        }
    }

    fn execute(&mut self, job: Job) {
        let req = job.request;
        let url = self.url(&req);
        match &req.want {
            Want::Warm { .. } => self.stats.warm_requests.inc(),
            Want::Range { .. } => self.stats.backfill_requests.inc(),
        }
        match self.call(&url) {
            Call::Body(body) => match klines::parse(&body, req.symbol, req.interval) {
                Ok(rows) => self.answered(job, rows),
                Err(why) => self.failed(job, RestError::Malformed { url, why }),
            },
            Call::RateLimited => self.scheduler.push_front(job, priority(&req)),
            Call::Failed(e) => self.failed(job, e),
        }
    }

    /// One GET: the body of a 200, or why not. Every answer's weight header and
    /// Retry-After go to the scheduler.
    fn call(&mut self, url: &str) -> Call {
        let mut resp = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(source) => {
                return Call::Failed(RestError::Http {
                    url: url.to_owned(),
                    source,
                })
            }
        };
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let used = header("x-mbx-used-weight-1m").map(|w| u32::try_from(w).unwrap_or(u32::MAX));
        let retry_after = header("retry-after");
        let status = resp.status().as_u16();
        self.scheduler
            .on_answer(wall_ms(), status, used, retry_after);
        if let Some(w) = used {
            self.stats.used_weight_1m.set(i64::from(w));
        }
        if status == 429 || status == 418 {
            self.stats.rate_limited.inc();
            tracing::warn!(status, retry_after_s = ?retry_after, "REST rate limited; waiting as the exchange asks");
            return Call::RateLimited;
        }
        let body = match resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
        {
            Ok(b) => b,
            Err(source) => {
                return Call::Failed(RestError::Http {
                    url: url.to_owned(),
                    source,
                })
            }
        };
        if status != 200 {
            return Call::Failed(RestError::Status {
                url: url.to_owned(),
                status,
                body: body.chars().take(200).collect(),
            });
        }
        Call::Body(body)
    }

    fn failed(&mut self, job: Job, e: RestError) {
        self.stats.set_error(&e);
        self.stats.failed_attempts.inc();
        let attempts = match self.attempts.iter_mut().find(|(j, _)| *j == job) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.attempts.push((job, 1));
                1
            }
        };
        let max = match job.request.want {
            Want::Warm { .. } => MAX_WARM_ATTEMPTS,
            Want::Range { .. } => MAX_ATTEMPTS,
        };
        if attempts < max {
            let delay = RETRY_INITIAL
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(RETRY_MAX);
            tracing::warn!(symbol = %job.request.symbol, timeframe = %job.request.interval,
                attempt = attempts, error = %e, "REST request failed; retrying");
            self.retries.push((Instant::now() + delay, job));
            return;
        }
        self.attempts_done(job);
        self.stats.failures.inc();
        tracing::error!(symbol = %job.request.symbol, timeframe = %job.request.interval,
            error = %e, "REST request failed for good; the gap stays open");
        self.deliver(
            job.shard,
            RestBatch {
                request: job.request,
                candles: Vec::new(),
                absent: Vec::new(),
                failed: true,
            },
        );
    }

    /// A page came back: deliver its closed candles and the spans it confirms absent;
    /// queue the next page when the range goes on.
    fn answered(&mut self, job: Job, mut rows: Vec<Candle>) {
        self.attempts_done(job);
        let req = job.request;
        let full_page = rows.len() >= klines::MAX_LIMIT as usize;
        let (absent, more) = match req.want {
            Want::Warm { end_open_ms, .. } => {
                if end_open_ms.is_none() {
                    // The newest row is the candle still open.
                    rows.pop();
                }
                self.stats.series_warmed.inc();
                self.stats.warm_candles.add(rows.len() as u64);
                (Vec::new(), None)
            }
            Want::Range {
                from_open_ms,
                to_open_ms: Some(to),
            } => {
                rows.retain(|c| c.open_time_ms >= from_open_ms && c.open_time_ms < to);
                let page_end = match rows.last() {
                    Some(last) if full_page => req.interval.next_open(last.open_time_ms),
                    _ => to,
                };
                let absent = klines::missing_runs(&rows, req.interval, from_open_ms, page_end);
                let more = (page_end < to).then_some(Want::Range {
                    from_open_ms: page_end,
                    to_open_ms: Some(to),
                });
                self.stats.backfill_candles.add(rows.len() as u64);
                (absent, more)
            }
            Want::Range {
                from_open_ms,
                to_open_ms: None,
            } => {
                rows.retain(|c| c.open_time_ms >= from_open_ms);
                let (page_end, more) = match rows.last() {
                    Some(last) if full_page => {
                        let next = req.interval.next_open(last.open_time_ms);
                        (
                            next,
                            Some(Want::Range {
                                from_open_ms: next,
                                to_open_ms: None,
                            }),
                        )
                    }
                    // The last page: its newest row is the open candle, left out, and
                    // nothing after it can be confirmed absent yet.
                    Some(_) => (rows.pop().map_or(from_open_ms, |c| c.open_time_ms), None),
                    None => (from_open_ms, None),
                };
                let absent = klines::missing_runs(&rows, req.interval, from_open_ms, page_end);
                self.stats.backfill_candles.add(rows.len() as u64);
                (absent, more)
            }
        };
        for (from, to) in &absent {
            self.stats.absent_ranges.inc();
            let gap = crate::candle::Gap {
                symbol: req.symbol,
                interval: req.interval,
                from_open_ms: *from,
                to_open_ms: *to,
            };
            self.stats.absent_candles.add(gap.candles());
            if self.plan.database.is_some() {
                if self.absences.len() >= MAX_PENDING_ABSENCES {
                    self.absences.pop_front();
                    self.stats.absences_dropped.inc();
                }
                self.absences.push_back(gap);
            }
        }
        self.deliver(
            job.shard,
            RestBatch {
                request: req,
                candles: rows,
                absent,
                failed: false,
            },
        );
        if let Some(want) = more {
            let next = Request { want, ..req };
            self.scheduler.push_front(
                Job {
                    shard: job.shard,
                    request: next,
                },
                priority(&next),
            );
        }
    }

    /// Writes confirmed absences to `candle_absences` (idempotent); while the
    /// database is down they wait, bounded, and are tried again every few seconds.
    fn record_absences(&mut self) {
        let Some(db) = self.plan.database.as_mut() else {
            return;
        };
        if self.absences.is_empty() || Instant::now() < self.db_retry_at {
            return;
        }
        while let Some(g) = self.absences.front() {
            if let Err(e) = db.record_absence(g) {
                tracing::warn!(error = %e, pending = self.absences.len(),
                    "cannot record confirmed absences yet; retrying");
                self.stats.set_error(&e);
                self.db_retry_at = Instant::now() + ABSENCE_RETRY;
                return;
            }
            self.absences.pop_front();
            self.stats.absences_written.inc();
        }
    }

    fn attempts_done(&mut self, job: Job) {
        self.attempts.retain(|(j, _)| *j != job);
    }

    fn deliver(&self, shard: usize, mut batch: RestBatch) {
        let link = &self.plan.shards[shard].1;
        while let Err(back) = link.deliveries.push(batch) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            batch = back;
            link.delivered.ring();
            std::thread::sleep(Duration::from_millis(2));
        }
        link.delivered.ring();
    }
}

enum Call {
    Body(String),
    RateLimited,
    Failed(RestError),
}
