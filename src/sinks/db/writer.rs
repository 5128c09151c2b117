//! The writer loop: drains every shard's ring into micro-batches, writes them, and
//! spools them while the database is away.
//!
//! Runs on the writer thread. In: envelopes (closed candles, signals and, when
//! configured, live candles; gaps and outages are not stored here). Out: committed
//! batches, or spooled ones.
//!
//! Batching: a batch is written when it holds the batch target's rows or its first row
//! is `BATCH_TIMEOUT` old. The target starts at `BATCH_SIZE`, doubles (up to
//! [`MAX_BATCH_ROWS`]) whenever a full batch leaves rows waiting in the rings, and
//! halves back when a batch is written by timeout: big batches under load, small and
//! prompt ones when idle.
//!
//! Order and outages: once anything is spooled, every later batch is spooled too and
//! the spool is replayed oldest first, so the database sees batches in the order they
//! were made. A failed write closes the connection; reconnects follow a capped,
//! jittered exponential backoff. The shards never wait for any of this: they only see
//! their ring to this thread, which keeps draining throughout.
//!
//! Errors by their class ([`ErrorClass`]): a lost connection or a passing failure (a
//! lock or statement timeout, bounded by the session's `lock_timeout` and
//! `statement_timeout`) spools and retries with backoff. Bad rows (SQLSTATE classes 22
//! and 23) are found by halving the batch until each stands alone; the rest of the
//! batch is stored and the bad rows go to the dead-letter file. A statement the server
//! refuses whatever the rows (a permission, a missing column) keeps every batch in the
//! spool, retried at `retry_max` pace and logged once per cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::copy::{self, Committed};
use super::deadletter::{DeadLetter, DeadRow};
use super::errors::{self, ErrorClass};
use super::rows::{Batch, SignalRow};
use super::spool::{Append, Spool};
use super::upsert::BatchConn;
use super::{schema, DbError, DbSettings, DbStats, CONNECT_TIMEOUT, MAX_BATCH_ROWS};
use crate::backoff::Backoff;
use crate::clock::mono_ns;
use crate::latency::Stage;
use crate::message::{Envelope, Record};
use crate::sinks::SinkIo;

/// The writer's own deadline when nothing else is due: only its rate window is, then.
/// A partial batch, a reconnect and a replay have deadlines of their own, and a
/// connection that died while idle is found by the next write, as with any other. This
/// is what wakes an idle writer: the stop wakes it itself.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// Time spent replaying the spool per loop turn, so the rings keep being drained
/// (into the spool) while a long backlog replays.
const REPLAY_SLICE: Duration = Duration::from_millis(50);
/// At shutdown, how long the writer keeps replaying the spool before leaving the rest
/// for the next start.
const SHUTDOWN_REPLAY: Duration = Duration::from_secs(5);
/// A connection must last this long before the reconnect backoff starts over.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Writes one batch may take to isolate the rows the server refuses. Halving finds k
/// bad rows among n in about 2·k·log2(n/k) writes: 256 finds a dozen in the largest
/// batch; more bad rows than that means the statement, not the rows, is at fault.
const MAX_SPLIT_WRITES: usize = 256;

/// The time a writer turn runs at, read once by its caller: decisions within the turn
/// (is the batch late, is a reconnect due, when to retry) all use it. Times that follow
/// blocking I/O (a connect, a replayed batch) are read when the I/O is done.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    /// Unix ms, for `last_commit_unix_ms`.
    pub wall_ms: i64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall_ms: crate::clock::wall_ms(),
        }
    }
}

pub struct Writer {
    settings: DbSettings,
    stats: Arc<DbStats>,
    conn: Option<BatchConn>,
    connected_at: Instant,
    spool: Spool,
    backoff: Backoff,
    next_attempt: Instant,
    /// Whether this process has applied the migrations (at startup or since).
    migrated: bool,
    /// Set while the spool refuses batches, so the loss is logged once per episode.
    dropping: bool,
    /// Rows the database refuses go here.
    dead_letter: DeadLetter,
    /// The cause of the refusals under way (SQLSTATE and message) and how many writes
    /// it refused, so it is logged once per cause.
    refused: Option<(String, u64)>,
    rate_mark: (Instant, u64),
}

impl Writer {
    /// A writer over an opened spool; `migrated` says whether startup applied the
    /// migrations already.
    pub fn new(settings: DbSettings, spool: Spool, stats: Arc<DbStats>, migrated: bool) -> Writer {
        let now = Instant::now();
        if !spool.is_empty() {
            tracing::info!(
                rows = spool.rows(),
                bytes = spool.bytes(),
                "spool holds rows from an earlier run: replaying them first once the database is reachable"
            );
        }
        stats.spool_max_bytes.set(settings.spool_max_bytes);
        stats.batch_target.set(settings.batch_size as u64);
        let dead_letter = DeadLetter::new(&settings.spool_dir, settings.dead_letter_max_bytes);
        stats.dead_letter_bytes.set(dead_letter.bytes());
        stats
            .dead_letter_max_bytes
            .set(settings.dead_letter_max_bytes);
        let backoff = Backoff::new(
            settings.retry_initial,
            settings.retry_max,
            STABLE_CONNECTION,
        );
        let w = Writer {
            settings,
            stats,
            conn: None,
            connected_at: now,
            spool,
            backoff,
            next_attempt: now,
            migrated,
            dropping: false,
            dead_letter,
            refused: None,
            rate_mark: (now, 0),
        };
        w.publish_spool();
        w
    }

    /// Drains the rings until the stop is requested and they are empty, then writes (or
    /// spools) what is left and replays the spool for a bounded time. Records the ring
    /// hop of every record and, for rows committed straight from the rings, the time from
    /// receipt to the commit (`recv_to_db_commit`; rows that go through the spool have
    /// no such figure: their commit waits for the database to come back).
    pub fn run(self, io: SinkIo) {
        let target = self.settings.batch_size.max(1);
        // A turn takes at most what fits the growing batch target from each ring.
        let (rings, stop) = io.into_rings(MAX_BATCH_ROWS);
        let mut turns = Turns {
            writer: self,
            batch: Batch::new(),
            batch_recv_ns: Vec::new(),
            target,
            started: None,
        };
        crate::consumer::run_thread(rings, &stop, &mut turns);
    }
    /// Adds a record's row to the batch; false when the record has no row here.
    pub fn offer(&mut self, batch: &mut Batch, env: &Envelope) -> bool {
        match &env.record {
            Record::ClosedCandle(c) => batch.push_candle(*c),
            Record::LiveCandle(c) => {
                if self.settings.live_candles {
                    batch.push_candle(*c);
                } else {
                    self.stats.live_skipped.inc();
                    return false;
                }
            }
            Record::Signal(s) => batch.push_signal(SignalRow::from(s)),
            Record::Absent(g) => batch.push_absence(*g),
            Record::Trade(t) => batch.push_trade(*t),
            Record::AggTrade(t) => batch.push_agg_trade(*t),
            Record::Gap(_) | Record::Outage(_) | Record::Book(_) => return false,
        }
        self.stats.rows_offered.inc();
        true
    }

    /// Writes `batch` now if the database is up and nothing is spooled ahead of it;
    /// spools it otherwise.
    pub fn commit(&mut self, batch: &Batch) {
        self.commit_at(batch, Now::read());
    }

    /// [`Writer::commit`] at `now`.
    pub fn commit_at(&mut self, batch: &Batch, now: Now) {
        let rows = batch.rows() as u64;
        self.stats.last_batch_rows.set(rows);
        if rows > self.stats.max_batch_rows.get() {
            self.stats.max_batch_rows.set(rows);
        }
        if self.spool.is_empty() && self.conn.is_some() {
            match self.write(batch, now.wall_ms) {
                Ok((done, dead)) => {
                    self.committed(rows - dead, done, now.wall_ms);
                    return;
                }
                Err(e) => self.failed(&e, now.mono),
            }
        }
        self.spool_batch(batch);
    }

    /// Writes `batch` on the connection, isolating the rows the server refuses: those
    /// go to the dead-letter file and the rest is stored. An error means nothing
    /// needs to be known about which parts were stored: writes are idempotent, so the
    /// whole batch is written again later.
    /// Returns what was stored and how many rows were refused.
    fn write(&mut self, batch: &Batch, wall_ms: i64) -> Result<(Committed, u64), DbError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(DbError::NotConnected);
        };
        let mut split = Split {
            dead: Vec::new(),
            writes_left: MAX_SPLIT_WRITES,
        };
        let done = write_split(conn, batch, &mut split);
        self.stats
            .split_writes
            .add((MAX_SPLIT_WRITES - split.writes_left) as u64);
        let done = done?;
        let dead = split.dead.len() as u64;
        if !split.dead.is_empty() {
            self.dead_rows(&split.dead, wall_ms);
        }
        if let Some((cause, refusals)) = self.refused.take() {
            tracing::info!(refusals, cause, "the database takes writes again");
            self.stats.refusing.set(0);
        }
        Ok((done, dead))
    }

    fn dead_rows(&mut self, dead: &[DeadRow], wall_ms: i64) {
        let s = &self.stats;
        let written = self.dead_letter.write(dead, wall_ms);
        s.dead_rows.add(dead.len() as u64);
        s.dead_letter_rows.add(written.kept);
        s.dead_letter_left_out.add(written.left_out);
        s.dead_letter_bytes.set(self.dead_letter.bytes());
        for row in dead {
            tracing::error!(
                table = row.table,
                sqlstate = %row.sqlstate,
                reason = %row.reason,
                row = %row.row,
                "the database refused a row: stored the rest of its batch, this row in the dead-letter file"
            );
        }
        if written.left_out > 0 {
            tracing::error!(
                rows = written.left_out,
                path = %self.dead_letter.path().display(),
                "refused rows left out of the dead-letter file (at database.dead_letter_max_bytes or unwritable)"
            );
        }
    }

    /// A write failed with `e` at `now`: what follows depends on its class.
    fn failed(&mut self, e: &DbError, now: Instant) {
        match ErrorClass::of(e) {
            ErrorClass::Connection => self.lost_connection(e, now),
            ErrorClass::Transient => {
                self.stats.transient_errors.inc();
                self.lost_connection(e, now);
            }
            ErrorClass::BadRows | ErrorClass::Refused => self.refused_write(e, now),
        }
    }

    fn committed(&mut self, rows: u64, done: Committed, wall_ms: i64) {
        let s = &self.stats;
        s.batches.inc();
        s.rows_committed.add(rows);
        s.candles_written.add(done.candles);
        s.signals_written.add(done.signals);
        s.absences_written.add(done.absences);
        s.trades_written.add(done.trades);
        s.agg_trades_written.add(done.agg_trades);
        s.last_commit_unix_ms.set(wall_ms);
    }

    /// The server refused the statement whatever its rows (a permission, a missing
    /// column, too many bad rows to isolate): retrying soon would fail the same way.
    /// The batches wait in the spool; the connection is closed and the next attempt
    /// comes after `retry_max`. Logged once per cause, with the count when it ends.
    fn refused_write(&mut self, e: &DbError, now: Instant) {
        let s = &self.stats;
        s.write_errors.inc();
        s.refused_writes.inc();
        s.refusing.set(1);
        s.connected.set(0);
        self.conn = None;
        self.next_attempt = now + self.settings.retry_max;
        let cause = format!(
            "refused ({}): {}",
            errors::sqlstate(e).unwrap_or("-"),
            errors::reason(e)
        );
        s.set_error(&cause);
        match &mut self.refused {
            Some((known, count)) if *known == cause => *count += 1,
            _ => {
                tracing::error!(
                    error = %cause,
                    retry_in_ms = self.settings.retry_max.as_millis() as u64,
                    "the database refuses the writer's statements whatever the rows: batches wait in the spool until this is mended (sinks.database.refusing)"
                );
                self.refused = Some((cause, 1));
            }
        }
    }

    fn spool_batch(&mut self, batch: &Batch) {
        let rows = batch.rows() as u64;
        match self.spool.append(batch) {
            // A held batch is kept in memory, ahead of later ones, until the disk takes
            // it or replay does: spooled, not lost.
            Ok(Append::Stored | Append::Held) => {
                self.stats.spooled_rows.add(rows);
                self.dropping = false;
            }
            Ok(Append::Full) => self.dropped(rows, "the spool is full (database.spool_max_bytes)"),
            Err(e) => self.dropped(rows, &e.to_string()),
        }
        self.publish_spool();
    }

    fn dropped(&mut self, rows: u64, why: &str) {
        self.stats.spool_dropped_rows.add(rows);
        if !self.dropping {
            tracing::error!(
                rows,
                spool_bytes = self.spool.bytes(),
                "database unavailable and {why}: dropping batches until it has room (counted in sinks.spool.dropped_rows)"
            );
            self.dropping = true;
        }
    }

    fn lost_connection(&mut self, e: &DbError, now: Instant) {
        let error = errors::describe(e);
        self.stats.write_errors.inc();
        self.stats.set_error(&error);
        self.stats.connected.set(0);
        self.conn = None;
        self.backoff.connection_ended(self.connected_at, now);
        self.next_attempt = now + self.backoff.next_delay(fastrand::f64());
        tracing::warn!(error = %error, "database write failed: spooling until it is back");
    }

    /// Reconnects when due at `now`; replays spooled batches for up to `budget`.
    /// Returns whether anything was replayed.
    pub fn maintain(&mut self, now: Now, budget: Duration) -> bool {
        if self.conn.is_none() && now.mono >= self.next_attempt {
            self.connect();
        }
        let mut replayed = false;
        // The budget is measured as it is spent: each replayed batch is blocking I/O.
        let deadline = Instant::now() + budget;
        while self.conn.is_some() && Instant::now() < deadline {
            let Some(batch) = self.spool.front() else {
                break;
            };
            let rows = batch.rows() as u64;
            let wall_ms = crate::clock::wall_ms();
            match self.write(&batch, wall_ms) {
                Ok((done, dead)) => {
                    self.committed(rows - dead, done, wall_ms);
                    self.stats.replayed_rows.add(rows - dead);
                    self.spool.commit_front();
                }
                Err(e) => self.failed(&e, Instant::now()),
            }
            replayed = true;
            if self.spool.is_empty() {
                tracing::info!("spool replayed: the database is current");
            }
        }
        if replayed {
            self.publish_spool();
        }
        replayed
    }

    fn connect(&mut self) {
        match self.open_connection() {
            Ok(conn) => {
                self.conn = Some(conn);
                self.connected_at = Instant::now();
                self.stats.connected.set(1);
                tracing::info!(spooled_rows = self.spool.rows(), "database connected");
            }
            Err(e) => {
                self.stats.connect_failures.inc();
                self.stats.set_error(&e);
                let delay = self.backoff.next_delay(fastrand::f64());
                self.next_attempt = Instant::now() + delay;
                if self.backoff.attempts() <= 1 {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database unreachable: spooling and retrying");
                } else {
                    tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "database still unreachable");
                }
            }
        }
    }

    fn open_connection(&mut self) -> Result<BatchConn, DbError> {
        let mut client = copy::connect(&self.settings.url, CONNECT_TIMEOUT)?;
        if !self.migrated && self.settings.migrate_on_start {
            let report = schema::migrate(&mut client, &self.settings)?;
            self.stats.timescaledb.set(u64::from(report.timescaledb));
            self.migrated = true;
        }
        BatchConn::open(client, &self.settings)
    }

    fn publish_spool(&self) {
        let s = &self.stats;
        s.spool_rows.set(self.spool.rows());
        s.spool_bytes.set(self.spool.bytes());
        s.spool_segments.set(self.spool.segments() as u64);
        s.spool_corrupt_records.set(self.spool.corrupt_records);
        s.spool_append_failures.set(self.spool.append_failures);
        s.spool_held_rows.set(self.spool.held_rows());
        s.spool_quarantined_segments
            .set(self.spool.quarantined_segments);
    }

    fn update_rate(&mut self, now: Instant) {
        let (at, rows) = self.rate_mark;
        let elapsed = now.saturating_duration_since(at);
        if elapsed >= Duration::from_secs(1) {
            let now_rows = self.stats.rows_committed.get();
            let rate = (now_rows - rows) as f64 / elapsed.as_secs_f64();
            self.stats.rows_per_s.set(rate as u64);
            self.rate_mark = (now, now_rows);
        }
    }

    fn finish(&mut self) {
        let deadline = Instant::now() + SHUTDOWN_REPLAY;
        while !self.spool.is_empty() && self.conn.is_some() && Instant::now() < deadline {
            self.maintain(Now::read(), REPLAY_SLICE);
        }
        if let Err(e) = self.spool.flush_held() {
            let rows = self.spool.held_rows();
            self.stats.spool_dropped_rows.add(rows);
            tracing::error!(rows, error = %e, "stopping while the disk refuses the spool's writes: the batches held in memory are lost");
        }
        if !self.spool.is_empty() {
            tracing::warn!(
                rows = self.spool.rows(),
                "stopping with rows in the spool: they are replayed at the next start"
            );
        }
    }
}

/// SQLSTATE of a statement cancelled by `statement_timeout`.
const STATEMENT_TIMEOUT: &str = "57014";

/// The rows a batch's server refused, and the writes left to find them.
struct Split {
    dead: Vec<DeadRow>,
    writes_left: usize,
}

/// Writes `batch`; while the server refuses rows of it (class 22 or 23) it is halved
/// and each half written, until every refused row stands alone in `split.dead`. A
/// statement timeout halves it too. Any other error, or running out of writes, ends
/// the search with an error.
fn write_split(
    conn: &mut BatchConn,
    batch: &Batch,
    split: &mut Split,
) -> Result<Committed, DbError> {
    if batch.is_empty() {
        return Ok(Committed::default());
    }
    let e = match conn.write(batch) {
        Ok(done) => return Ok(done),
        Err(e) => e,
    };
    let class = ErrorClass::of(&e);
    // A statement timeout on a big batch recurs at every retry of the same batch:
    // halves take less time each, down to one row (a row that still times out is
    // retried as any passing failure).
    let timed_out = errors::sqlstate(&e) == Some(STATEMENT_TIMEOUT) && batch.rows() > 1;
    if class != ErrorClass::BadRows && !timed_out {
        return Err(e);
    }
    if batch.rows() == 1 {
        let code = errors::sqlstate(&e).unwrap_or("").to_string();
        split
            .dead
            .extend(DeadRow::of_single(batch, &code, errors::reason(&e)));
        return Ok(Committed::default());
    }
    if split.writes_left < 2 {
        if timed_out {
            return Err(e);
        }
        return Err(DbError::TooManyBadRows(MAX_SPLIT_WRITES));
    }
    split.writes_left -= 2;
    let (a, b) = batch.halves();
    let x = write_split(conn, &a, split)?;
    let y = write_split(conn, &b, split)?;
    Ok(Committed {
        candles: x.candles + y.candles,
        signals: x.signals + y.signals,
        absences: x.absences + y.absences,
        trades: x.trades + y.trades,
        agg_trades: x.agg_trades + y.agg_trades,
    })
}

/// The writer's side of the consumer loop: the batch being built and its timing.
struct Turns {
    writer: Writer,
    batch: Batch,
    /// Receive times of the batch's rows that came straight from the rings.
    batch_recv_ns: Vec<u64>,
    /// Rows per batch now: grows under load, shrinks back when idle.
    target: usize,
    /// When the batch's first row came.
    started: Option<Instant>,
}

impl Turns {
    /// Writes (or spools) the batch being built; `full` says why, for the target.
    fn commit(
        &mut self,
        full: bool,
        backlog: bool,
        latency: &mut Option<&mut crate::latency::Recorder>,
        now: Now,
    ) {
        let committed_before = self.writer.stats.batches.get();
        self.writer.commit_at(&self.batch, now);
        if self.writer.stats.batches.get() > committed_before {
            if let Some(rec) = latency.as_deref_mut() {
                let now = mono_ns();
                for r in &self.batch_recv_ns {
                    rec.record_span(Stage::RecvToDbCommit, *r, now);
                }
            }
        }
        self.batch_recv_ns.clear();
        self.batch.clear();
        self.started = None;
        let floor = self.writer.settings.batch_size.max(1);
        self.target = if full && backlog {
            (self.target * 2).min(MAX_BATCH_ROWS)
        } else if !full {
            (self.target / 2).max(floor)
        } else {
            self.target
        };
        self.writer.stats.batch_target.set(self.target as u64);
    }
}

impl crate::consumer::Consume<Envelope> for Turns {
    fn turn(&mut self, turn: crate::consumer::Turn<'_, Envelope>) -> crate::consumer::Next {
        let crate::consumer::Turn {
            batch,
            stopping,
            mut latency,
        } = turn;
        let now = Now::read();
        for (i, env) in batch.iter().enumerate() {
            if self.writer.offer(&mut self.batch, env) {
                self.batch_recv_ns.push(env.recv_ns);
                self.started.get_or_insert(now.mono);
            }
            if self.batch.rows() >= self.target {
                // Full, with more waiting in this turn: the target grows.
                let backlog = i + 1 < batch.len();
                self.commit(true, backlog, &mut latency, now);
            }
        }
        let timeout = self.writer.settings.batch_timeout;
        let late = self
            .started
            .is_some_and(|t| now.mono.saturating_duration_since(t) >= timeout);
        if !self.batch.is_empty() && (late || (stopping && batch.is_empty())) {
            self.commit(false, false, &mut latency, now);
        }
        let replayed = self.writer.maintain(now, REPLAY_SLICE);
        self.writer.update_rate(now.mono);
        if replayed {
            return crate::consumer::Next::Now;
        }
        // The partial batch's deadline, the next reconnect attempt, and a periodic look
        // at the spool (a replay waits for a connection).
        let mut next = crate::consumer::Next::At(now.mono + HOUSEKEEPING_EVERY);
        if let Some(t) = self.started {
            next = next.min(crate::consumer::Next::At(t + timeout));
        }
        if self.writer.conn.is_none() {
            next = next.min(crate::consumer::Next::At(self.writer.next_attempt));
        }
        next
    }

    fn finish(&mut self) {
        if !self.batch.is_empty() {
            self.commit(false, false, &mut None, Now::read());
        }
        self.writer.finish();
    }
}
