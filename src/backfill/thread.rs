//! The REST thread's loop: takes each shard's requests, asks the scheduler what to send
//! and when, sends it ([`super::client`]), retries failures with capped back-off, and
//! delivers each answered page to its shard with the spans it confirms absent.
//!
//! Runs on the `rest` thread ([`super::spawn`]). Owns the scheduler and the retry
//! timers. The spans it confirms absent go to their shard with the page, and from the
//! shard to the database writer, which stores them like candles.
//!
//! Two rules keep what it delivers true:
//! - **Only closed candles.** A row is delivered (and so stored) as closed only when its
//!   close time is before the exchange's time as the thread knows it: the newest open
//!   time any answer has shown (the exchange had opened that candle when it answered),
//!   and, for a bounded range, the range's end (the shard asks for one only behind the
//!   live stream, from the exchange's own event times). The local clock is not used: a
//!   simulated exchange runs at its own speed. So the newest row of an open-ended page
//!   is held back, full page or not; a full page's next page starts at it.
//! - **An empty answer is not proof.** Spans a page lacks are asked again after
//!   [`ABSENCE_CHECK_DELAY`], through the same scheduler; only spans the second answer
//!   lacks too are delivered as absent and recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{klines_url, Client};
use super::repeats::Repeats;
use super::scheduler::{Hold, Next, Priority, Scheduler};
use super::{
    agg_trades, klines, priority, trades, RestError, RestPlan, RestStats, ABSENCE_CHECK_DELAY,
    KLINES_WEIGHT, LONGEST_IDLE_SLEEP, MAX_ATTEMPTS, MAX_PENDING_CHECKS, MAX_RESUMED_HOLES,
    MAX_WARM_ATTEMPTS, RESTART_OVERLAP_CANDLES, RETRY_INITIAL, RETRY_MAX,
};
use crate::market::{AggTrade, Candle, Interval, Symbol, Trade};
use crate::message::rest::{BookAnswer, BookRequest, Request, RestBatch, TradeKind, Want};

/// A queued job: a request and the shard it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Job {
    shard: usize,
    request: Request,
    /// A second look at a span an earlier answer lacked: what this answer lacks too is
    /// confirmed absent.
    check: bool,
}

/// What the scheduler orders: candle jobs, and depth snapshots for the shards' books.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Task {
    Candles(Job),
    Book { shard: usize, request: BookRequest },
}

impl Task {
    fn priority(&self) -> Priority {
        match self {
            Task::Candles(job) => priority(&job.request),
            // A book is invalid until its snapshot comes: as urgent as a gap.
            Task::Book { .. } => Priority::Urgent,
        }
    }

    fn weight(&self) -> u32 {
        match self {
            Task::Candles(Job {
                request:
                    Request {
                        want: Want::Trades { kind, .. },
                        ..
                    },
                ..
            }) => match kind {
                TradeKind::Aggregate => agg_trades::WEIGHT,
                TradeKind::Raw => trades::WEIGHT,
            },
            Task::Candles(_) => KLINES_WEIGHT,
            Task::Book { request, .. } => request.weight,
        }
    }
}

/// The scheduler counts the minute's weight in unsigned milliseconds of wall time.
fn wall_ms() -> u64 {
    crate::clock::wall_ms().max(0) as u64
}

/// The scheduler times Retry-After on the monotonic clock, in milliseconds.
fn mono_ms() -> u64 {
    crate::clock::mono_ns() / 1_000_000
}

pub(super) struct Thread {
    plan: RestPlan,
    client: Client,
    stats: Arc<RestStats>,
    stop: Arc<AtomicBool>,
    scheduler: Scheduler<Task>,
    /// Failed jobs waiting for their next attempt, and when it is.
    retries: Vec<(Instant, Job)>,
    /// Failed attempts of jobs not yet done.
    attempts: Vec<(Job, u32)>,
    /// Second looks at lacking spans, and when each is due.
    checks: Vec<(Instant, Job)>,
    /// The exchange's time as far as its answers show (ms): the newest open time seen.
    exchange_ms: i64,
    /// Failures logged once per cause and window: those retried, those given up.
    retried: Repeats,
    given_up: Repeats,
}

impl Thread {
    pub fn new(
        plan: RestPlan,
        client: Client,
        stats: Arc<RestStats>,
        stop: Arc<AtomicBool>,
    ) -> Thread {
        let scheduler = Scheduler::new(plan.weight_share, KLINES_WEIGHT);
        stats.weight_share_1m.set(i64::from(scheduler.share_1m()));
        Thread {
            plan,
            client,
            stats,
            stop,
            scheduler,
            retries: Vec::new(),
            attempts: Vec::new(),
            checks: Vec::new(),
            exchange_ms: 0,
            retried: Repeats::default(),
            given_up: Repeats::default(),
        }
    }

    pub fn run(mut self) {
        for (_, link) in &self.plan.shards {
            let _ = link.rest_thread.set(std::thread::current());
        }
        self.queue_startup();
        let mut was_budget_held = false;
        while !self.stop.load(Ordering::Relaxed) {
            self.take_requests();
            self.release_due(Instant::now());
            self.report_repeats(Instant::now());
            let queued = self.scheduler.queued();
            self.stats.queued_urgent.set(queued[0] as u64);
            self.stats.queued_normal.set(queued[1] as u64);
            self.stats.retrying.set(self.retries.len() as u64);
            let (wall, mono) = (wall_ms(), mono_ms());
            let hold = self.scheduler.hold(wall, mono);
            self.stats.blocked.set(u64::from(hold == Hold::RetryAfter));
            match self.scheduler.next(wall, mono) {
                // A shard that queues a request, and the stop, unpark it sooner.
                Next::Idle => std::thread::park_timeout(self.idle_wait(Instant::now())),
                Next::Wait(ms) => {
                    if hold == Hold::Budget && !was_budget_held {
                        self.stats.budget_waits.inc();
                    }
                    was_budget_held = hold == Hold::Budget;
                    std::thread::park_timeout(
                        LONGEST_IDLE_SLEEP.min(Duration::from_millis(ms.max(1))),
                    );
                }
                Next::Send(Task::Candles(job)) => {
                    was_budget_held = false;
                    self.execute(job);
                }
                Next::Send(Task::Book { shard, request }) => {
                    was_budget_held = false;
                    self.execute_book(shard, request);
                }
            }
        }
        // Stopping: say what was counted and not logged yet.
        self.report_repeats(Instant::now() + super::repeats::WINDOW);
    }

    /// Says how many failures were counted, not logged, in each window that ended.
    fn report_repeats(&mut self, now: Instant) {
        for (cause, n) in self.retried.ended(now) {
            tracing::warn!(error = %cause, more = n, window_s = super::repeats::WINDOW.as_secs(),
                "REST requests failed the same way {n} more times (retrying; logged once per cause)");
        }
        for (cause, n) in self.given_up.ended(now) {
            tracing::error!(error = %cause, more = n, window_s = super::repeats::WINDOW.as_secs(),
                "{n} more REST requests failed for good the same way (gaps stay open; warm starts warm from live candles)");
        }
    }

    /// How long to sleep with nothing queued: until the next retry or second look is
    /// due, at most [`LONGEST_IDLE_SLEEP`].
    fn idle_wait(&self, now: Instant) -> Duration {
        self.retries
            .iter()
            .chain(&self.checks)
            .map(|(at, _)| at.saturating_duration_since(now))
            .min()
            .map_or(LONGEST_IDLE_SLEEP, |due| due.min(LONGEST_IDLE_SLEEP))
    }

    /// Queues the retries and the second looks due at `now`.
    fn release_due(&mut self, now: Instant) {
        for job in take_due(&mut self.retries, now) {
            self.push_front(Task::Candles(job));
        }
        for job in take_due(&mut self.checks, now) {
            self.push(Task::Candles(job));
        }
        self.stats.pending_checks.set(self.checks.len() as u64);
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
                        check: false,
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
        self.queue_trade_catch_up(&mut jobs);
        for job in jobs {
            self.push(Task::Candles(job));
        }
    }

    /// With trades stored, per symbol and kind: a catch-up from the newest stored one
    /// (what no engine received while none ran: a kill, a restart), and the holes among
    /// the stored ids (a backfill a kill cut short), so the ids stay contiguous. A symbol
    /// with none stored starts with the live stream.
    fn queue_trade_catch_up(&mut self, jobs: &mut Vec<Job>) {
        if self.plan.trade_catch_up.is_empty() {
            return;
        }
        let Some(db) = self.plan.database.as_mut() else {
            return;
        };
        let owners: Vec<(usize, Symbol, Interval)> = self
            .plan
            .shards
            .iter()
            .enumerate()
            .flat_map(|(shard, (series, _))| {
                let mut symbols: Vec<(usize, Symbol, Interval)> =
                    series.iter().map(|&(s, i)| (shard, s, i)).collect();
                symbols.dedup_by_key(|(_, s, _)| *s);
                symbols
            })
            .collect();
        let symbols: Vec<Symbol> = owners.iter().map(|(_, s, _)| *s).collect();
        for &kind in &self.plan.trade_catch_up {
            let stored = db.trade_resume(kind, &symbols).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read where the stored {} resume; no catch-up", kind.as_str());
                self.stats.set_error(&e);
                Vec::new()
            });
            for resume in stored {
                if resume.more_holes {
                    self.stats.trade_holes_left.inc();
                    tracing::warn!(symbol = %resume.symbol, "more than {MAX_RESUMED_HOLES} holes among the stored {}: the oldest stay", kind.as_str());
                }
                let Some(&(shard, _, interval)) =
                    owners.iter().find(|(_, s, _)| *s == resume.symbol)
                else {
                    continue;
                };
                let spans = super::merge_holes(&resume.holes)
                    .into_iter()
                    .map(|(from, to)| (from, Some(to)));
                for (from_id, to_id) in spans.chain([(resume.newest + 1, None)]) {
                    jobs.push(Job {
                        shard,
                        request: Request {
                            symbol: resume.symbol,
                            interval,
                            want: Want::Trades {
                                kind,
                                from_id,
                                to_id,
                            },
                        },
                        check: false,
                    });
                }
            }
        }
    }

    fn take_requests(&mut self) {
        for shard in 0..self.plan.shards.len() {
            while let Some(request) = self.plan.shards[shard].1.requests.pop() {
                let job = Job {
                    shard,
                    request,
                    check: false,
                };
                if !self.retries.iter().any(|(_, j)| *j == job) {
                    self.push(Task::Candles(job));
                }
            }
            while let Some(request) = self.plan.shards[shard].1.book_requests.pop() {
                self.push(Task::Book { shard, request });
            }
        }
    }

    fn push(&mut self, task: Task) {
        self.scheduler
            .push_weighted(task, task.priority(), task.weight());
    }

    fn push_front(&mut self, task: Task) {
        self.scheduler
            .push_front_weighted(task, task.priority(), task.weight());
    }

    /// Fetches a depth snapshot for a shard's book; a failure is answered as such at
    /// once (the shard asks again after its retry delay), a 429/418 waits its turn.
    fn execute_book(&mut self, shard: usize, request: BookRequest) {
        self.stats.book_requests.inc();
        let url = super::depth::depth_url(&self.plan.rest_url, &request);
        let snapshot = match self.call(&url) {
            Call::Body(body) => match super::depth::parse(&body, &request) {
                Ok(s) => Some(Box::new(s)),
                Err(why) => {
                    self.book_failed(RestError::Malformed { url, why });
                    None
                }
            },
            Call::RateLimited => {
                self.push_front(Task::Book { shard, request });
                return;
            }
            Call::Failed(e) => {
                self.book_failed(e);
                None
            }
        };
        let answer = BookAnswer {
            symbol: request.symbol,
            snapshot,
        };
        let link = &self.plan.shards[shard].1;
        if link.book_answers.push(answer).is_err() {
            // A book has about one request outstanding, so this queue holds the
            // answers; were it full, the book asks again when its request times out
            // (`shard::BOOK_ANSWER_TIMEOUT_NS`).
            self.stats.failures.inc();
        }
        link.delivered.ring();
    }

    fn book_failed(&mut self, e: RestError) {
        self.stats.set_error(&e);
        self.stats.failed_attempts.inc();
        if self.retried.note(&e.cause(), Instant::now()) {
            tracing::warn!(error = %e,
                "depth snapshot request failed; the book asks again (more failing the same way are counted, not logged, for 10 s)");
        }
    }

    fn execute(&mut self, job: Job) {
        let req = job.request;
        let url = klines_url(&self.plan.rest_url, &req);
        match &req.want {
            Want::Warm { .. } => self.stats.warm_requests.inc(),
            Want::Range { .. } => self.stats.backfill_requests.inc(),
            Want::Trades { kind, .. } => {
                self.stats.trade_counters(*kind).0.inc();
                match self.call(&url) {
                    Call::Body(body) => {
                        let page = match kind {
                            TradeKind::Aggregate => {
                                agg_trades::parse(&body, req.symbol).map(TradePage::Aggregate)
                            }
                            TradeKind::Raw => trades::parse(&body, req.symbol).map(TradePage::Raw),
                        };
                        match page {
                            Ok(rows) => self.answered_trades(job, rows),
                            Err(why) => self.failed(job, RestError::Malformed { url, why }),
                        }
                    }
                    Call::RateLimited => self.push_front(Task::Candles(job)),
                    Call::Failed(e) => self.failed(job, e),
                }
                return;
            }
        }
        match self.call(&url) {
            Call::Body(body) => match klines::parse(&body, req.symbol, req.interval) {
                Ok(rows) => self.answered(job, rows),
                Err(why) => self.failed(job, RestError::Malformed { url, why }),
            },
            Call::RateLimited => self.push_front(Task::Candles(job)),
            Call::Failed(e) => self.failed(job, e),
        }
    }

    /// One GET: the body of a 200, or why not. Every answer's weight header and
    /// Retry-After go to the scheduler.
    fn call(&mut self, url: &str) -> Call {
        let answer = match self.client.get(url) {
            Ok(a) => a,
            Err(e) => return Call::Failed(e),
        };
        let (status, used, retry_after) =
            (answer.status, answer.used_weight_1m, answer.retry_after_s);
        self.scheduler
            .on_answer(wall_ms(), mono_ms(), status, used, retry_after);
        if let Some(w) = used {
            self.stats.used_weight_1m.set(i64::from(w));
        }
        match answer.body {
            None => {
                self.stats.rate_limited.inc();
                tracing::warn!(status, retry_after_s = ?retry_after, "REST rate limited; waiting as the exchange asks");
                Call::RateLimited
            }
            Some(Ok(body)) => Call::Body(body),
            Some(Err(e)) => Call::Failed(e),
        }
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
            Want::Range { .. } | Want::Trades { .. } => MAX_ATTEMPTS,
        };
        if attempts < max {
            let delay = RETRY_INITIAL
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(RETRY_MAX);
            if self.retried.note(&e.cause(), Instant::now()) {
                tracing::warn!(symbol = %job.request.symbol, timeframe = %job.request.interval,
                    attempt = attempts, error = %e,
                    "REST request failed; retrying (more failing the same way are counted, not logged, for 10 s)");
            }
            self.retries.push((Instant::now() + delay, job));
            return;
        }
        self.attempts_done(job);
        self.stats.failures.inc();
        if self.given_up.note(&e.cause(), Instant::now()) {
            let outcome = match job.request.want {
                Want::Warm { .. } => "the series' indicators warm up from live candles instead",
                Want::Range { .. } => "the gap stays open",
                Want::Trades {
                    kind: TradeKind::Aggregate,
                    ..
                } => "the aggregate trades stay missing",
                Want::Trades {
                    kind: TradeKind::Raw,
                    ..
                } => "the trades stay missing",
            };
            tracing::error!(symbol = %job.request.symbol, timeframe = %job.request.interval,
                error = %e, "REST request failed for good; {outcome}");
        }
        self.deliver(
            job.shard,
            RestBatch {
                request: job.request,
                candles: Vec::new(),
                absent: Vec::new(),
                failed: true,
                agg_trades: Vec::new(),
                trades: Vec::new(),
            },
        );
    }

    /// A page came back: deliver its closed candles, ask again for the spans it lacks
    /// (or, on a second look, confirm them absent), and queue the next page when the
    /// range goes on.
    fn answered(&mut self, job: Job, mut rows: Vec<Candle>) {
        self.attempts_done(job);
        let req = job.request;
        // Rows outside what was asked, or far from our clock (a 1970 or a 2100 candle),
        // are counted and dropped before anything believes them.
        let clock = self
            .plan
            .clock
            .window_ms(crate::clock::wall_ms(), crate::clock::mono_ns());
        let window = klines::asked_window(&req.want, req.interval, clock);
        for (counter, n) in self
            .stats
            .rows_dropped
            .iter()
            .zip(klines::keep_window(&mut rows, window))
        {
            counter.add(n);
        }
        let full_page = rows.len() >= klines::MAX_LIMIT as usize;
        if let Some(newest) = rows.last() {
            // The exchange had opened its newest row when it answered.
            self.exchange_ms = self.exchange_ms.max(newest.open_time_ms);
        }
        let (lacking, more) = match req.want {
            Want::Warm { end_open_ms, .. } => {
                // A history with an end stops candles before one already stored, which
                // the exchange had opened; without one, its newest row is still open.
                let now_ms = end_open_ms.map_or(self.exchange_ms, |end| {
                    self.exchange_ms.max(req.interval.next_open(end))
                });
                rows.truncate(klines::closed_before(&rows, now_ms));
                self.stats.series_warmed.inc();
                self.stats.warm_candles.add(rows.len() as u64);
                (Vec::new(), None)
            }
            Want::Range {
                from_open_ms,
                to_open_ms: Some(to),
            } => {
                // Behind the live stream: every candle before `to` had closed.
                rows.truncate(klines::closed_before(&rows, self.exchange_ms.max(to)));
                let page_end = match rows.last() {
                    Some(last) if full_page => req.interval.next_open(last.open_time_ms),
                    _ => to,
                };
                let lacking = klines::missing_runs(&rows, req.interval, from_open_ms, page_end);
                let more = (page_end < to).then_some(Want::Range {
                    from_open_ms: page_end,
                    to_open_ms: Some(to),
                });
                (lacking, more)
            }
            Want::Range {
                from_open_ms,
                to_open_ms: None,
            } => {
                let closed = klines::closed_before(&rows, self.exchange_ms);
                let held = rows.get(closed).map(|c| c.open_time_ms);
                rows.truncate(closed);
                // Nothing at or after a row not yet closed can be judged: a full page
                // goes on from it, any other page ends the catch-up there.
                let page_end = match (held, rows.last()) {
                    (Some(open), _) => open,
                    (None, Some(last)) => req.interval.next_open(last.open_time_ms),
                    (None, None) => from_open_ms,
                };
                let more = (full_page && page_end > from_open_ms).then_some(Want::Range {
                    from_open_ms: page_end,
                    to_open_ms: None,
                });
                let lacking = klines::missing_runs(&rows, req.interval, from_open_ms, page_end);
                (lacking, more)
            }
            // Answered by `answered_trades`, never here.
            Want::Trades { .. } => (Vec::new(), None),
        };
        if matches!(req.want, Want::Range { .. }) {
            self.stats.backfill_candles.add(rows.len() as u64);
        }
        let absent = if job.check {
            if !rows.is_empty() {
                self.stats.unconfirmed_candles_found.add(rows.len() as u64);
            }
            self.confirm_absent(req, &lacking);
            lacking
        } else {
            self.check_later(job, &lacking);
            Vec::new()
        };
        self.deliver(
            job.shard,
            RestBatch {
                request: req,
                candles: rows,
                absent,
                failed: false,
                agg_trades: Vec::new(),
                trades: Vec::new(),
            },
        );
        if let Some(want) = more {
            let next = Request { want, ..req };
            self.push_front(Task::Candles(Job {
                request: next,
                ..job
            }));
        }
    }

    /// A page of trades came back: deliver the ones asked for, and queue the next page
    /// while the hole (or the catch-up) goes on.
    fn answered_trades(&mut self, job: Job, page: TradePage) {
        self.attempts_done(job);
        let req = job.request;
        let Want::Trades {
            kind,
            from_id,
            to_id,
        } = req.want
        else {
            return;
        };
        let (mut agg, mut raw) = (Vec::new(), Vec::new());
        let next = match page {
            TradePage::Aggregate(mut rows) => {
                let next = trades::page(&mut rows, |t| t.agg_trade_id, from_id, to_id);
                agg = rows;
                next
            }
            TradePage::Raw(mut rows) => {
                let next = trades::page(&mut rows, |t| t.trade_id, from_id, to_id);
                raw = rows;
                next
            }
        };
        let rows = agg.len() + raw.len();
        self.stats.trade_counters(kind).1.add(rows as u64);
        // A catch-up's last page goes to the shard even empty: it tells how far the
        // exchange's trades reached, which the shard joins to its stream.
        if rows > 0 || (to_id.is_none() && next.is_none()) {
            self.deliver(
                job.shard,
                RestBatch {
                    request: req,
                    candles: Vec::new(),
                    absent: Vec::new(),
                    failed: false,
                    agg_trades: agg,
                    trades: raw,
                },
            );
        }
        if let Some(from_id) = next {
            let next = Request {
                want: Want::Trades {
                    kind,
                    from_id,
                    to_id,
                },
                ..req
            };
            self.push_front(Task::Candles(Job {
                request: next,
                ..job
            }));
        }
    }

    /// Asks again, after [`ABSENCE_CHECK_DELAY`], for each span an answer lacked: the
    /// exchange may not have had them yet (its REST view can trail its stream). Past
    /// [`MAX_PENDING_CHECKS`] waiting, a check is queued at once instead.
    fn check_later(&mut self, job: Job, lacking: &[(i64, i64)]) {
        let due = Instant::now() + ABSENCE_CHECK_DELAY;
        for &(from, to) in lacking {
            self.stats.unconfirmed_ranges.inc();
            let request = Request {
                want: Want::Range {
                    from_open_ms: from,
                    to_open_ms: Some(to),
                },
                ..job.request
            };
            let check = Job {
                request,
                check: true,
                ..job
            };
            if self.checks.len() < MAX_PENDING_CHECKS {
                self.checks.push((due, check));
            } else {
                self.push(Task::Candles(check));
            }
        }
    }

    /// Counts spans two answers lacked (their shard has them with the page).
    fn confirm_absent(&mut self, req: Request, spans: &[(i64, i64)]) {
        for &(from, to) in spans {
            let gap = crate::candle::Gap {
                symbol: req.symbol,
                interval: req.interval,
                from_open_ms: from,
                to_open_ms: to,
            };
            self.stats.absent_ranges.inc();
            self.stats.absent_candles.add(gap.candles());
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

/// Takes the jobs of `timers` due at `now`, in order.
fn take_due(timers: &mut Vec<(Instant, Job)>, now: Instant) -> Vec<Job> {
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(timers)
        .into_iter()
        .partition(|(at, _)| *at <= now);
    *timers = later;
    due.into_iter().map(|(_, job)| job).collect()
}

/// One parsed page of trades, of the kind asked for.
pub(super) enum TradePage {
    Aggregate(Vec<AggTrade>),
    Raw(Vec<Trade>),
}

enum Call {
    Body(String),
    RateLimited,
    Failed(RestError),
}

#[cfg(test)]
mod tests;
