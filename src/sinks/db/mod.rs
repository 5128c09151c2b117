//! The database writer role: persists every closed candle and every signal to
//! PostgreSQL/TimescaleDB, fast, exactly once, and without losing anything while the
//! database is away.
//!
//! Runs on: its own thread pinned to the writer core (a plain thread: the sync
//! `postgres` client blocks, so it never runs on a glommio executor). Owns: one write
//! connection, the micro-batch being built, and the on-disk spool. In: envelopes from
//! every shard's ring. Out: rows in `candles`, `signals`, `candle_absences`, `trades`
//! and `agg_trades`, and the
//! `database` and `spool` sections of `/api/status`.
//!
//! - [`rows`]: the batch (in-batch merge), its spool encoding, PostgreSQL encodings.
//! - [`copy`]: binary COPY into staging tables and the idempotent upserts.
//! - [`upsert`]: the same upserts as one array statement per table (`unnest`), for
//!   servers without `COPY FROM STDIN`; the writer's connection on either path.
//! - [`spool`]: the bounded, checksummed, append-only spool.
//! - [`writer`]: the loop: batching with growth under load, retry with capped jittered
//!   backoff, spooling and in-order replay.
//! - [`errors`]: what a failed write means (lost connection, retry later, bad rows,
//!   refused statement), from its SQLSTATE.
//! - [`deadletter`]: the bounded file of rows the database refuses.
//! - [`schema`]: the migrations and TimescaleDB policies.
//! - [`query`]: the query worker the dashboard reads through.
//! - [`rest`]: the REST thread's one statement: the newest stored candle per series.

pub mod copy;
pub mod deadletter;
pub mod errors;
pub mod history;
pub mod query;
pub mod rest;
pub mod rows;
pub mod schema;
pub mod spool;
pub mod upsert;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::message::RecordKinds;
use crate::metrics::{Counter, Gauge};
use crate::sinks::SinkIo;
use crate::sinks::SinkStatus;

/// Largest batch the writer grows to under load. Past this a batch only adds latency
/// and memory: one COPY of 50k candle rows already amortises the round trips.
pub const MAX_BATCH_ROWS: usize = 50_000;
/// How long a connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("database migrations failed: {0}")]
    Migrate(String),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error("database: not connected")]
    NotConnected,
    /// Isolating the rows a batch's server refuses took more writes than the bound:
    /// so many rows are refused that the cause is the statement, not the rows.
    #[error("more than {0} writes to isolate the rows the database refuses: holding the batch in the spool")]
    TooManyBadRows(usize),
}

/// The writer's settings, taken from [`Config`] once.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: String,
    /// Rows per batch when the writer is idle (`BATCH_SIZE`); batches grow from here.
    pub batch_size: usize,
    /// A partial batch is written after this long (`BATCH_TIMEOUT`).
    pub batch_timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub migrate_on_start: bool,
    /// Also upsert in-progress candles (conflated per candle within a batch).
    pub live_candles: bool,
    /// Store trades and aggregate trades (`database.store_trades`).
    pub store_trades: bool,
    pub compress_after_days: u32,
    pub retention_days: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How batches are sent (`database.write_method`).
    pub write_method: upsert::WriteMethod,
    /// Keep connections open between uses (`database.hold_connections`).
    pub hold_connections: bool,
    /// `statement_timeout` and `lock_timeout` of the write session.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// Bound of the dead-letter file in `spool_dir`.
    pub dead_letter_max_bytes: u64,
}

impl DbSettings {
    /// The settings, or `None` without `DATABASE_URL`.
    pub fn from_config(config: &Config) -> Option<DbSettings> {
        let db = &config.database;
        Some(DbSettings {
            url: config.database_url.clone()?,
            batch_size: config.batch_size,
            batch_timeout: Duration::from_secs_f64(config.batch_timeout_s),
            spool_dir: db.spool_dir.clone(),
            spool_max_bytes: db.spool_max_bytes,
            migrate_on_start: db.migrate_on_start,
            live_candles: db.live_candles,
            store_trades: db.store_trades,
            compress_after_days: db.compress_after_days,
            retention_days: db.retention_days,
            retry_initial: Duration::from_millis(db.retry_initial_ms),
            retry_max: Duration::from_millis(db.retry_max_ms),
            write_method: db.write_method,
            hold_connections: db.hold_connections,
            statement_timeout: Duration::from_millis(db.statement_timeout_ms),
            lock_timeout: Duration::from_millis(db.lock_timeout_ms),
            dead_letter_max_bytes: db.dead_letter_max_bytes,
        })
    }
}

/// The writer's figures; the writer thread is the only writer of each.
#[derive(Debug, Default)]
pub struct DbStats {
    pub connected: Counter,
    pub last_commit_unix_ms: Gauge,
    pub rows_committed: Counter,
    pub candles_written: Counter,
    pub signals_written: Counter,
    /// Confirmed absences recorded in `candle_absences`.
    pub absences_written: Counter,
    /// Trades and aggregate trades inserted (ones already stored not counted).
    pub trades_written: Counter,
    pub agg_trades_written: Counter,
    /// Rows offered to batches, duplicates included.
    pub rows_offered: Counter,
    pub batches: Counter,
    pub last_batch_rows: Counter,
    pub max_batch_rows: Counter,
    /// The current batch target (grows under load, shrinks when idle).
    pub batch_target: Counter,
    /// Rows per second committed over the last second.
    pub rows_per_s: Counter,
    pub write_errors: Counter,
    /// Writes that failed for a reason that passes (a lock or statement timeout, a
    /// serialization failure): spooled and retried with backoff.
    pub transient_errors: Counter,
    /// Writes the server refused whatever the rows (permissions, schema drift): the
    /// batches wait in the spool, retried at `retry_max` pace.
    pub refused_writes: Counter,
    /// 1 while the latest write was refused so.
    pub refusing: Counter,
    /// Extra writes made to isolate refused rows (halves of a batch).
    pub split_writes: Counter,
    /// Rows the database refused (classes 22 and 23), isolated from their batch.
    pub dead_rows: Counter,
    /// Of those, rows kept in the dead-letter file, and rows left out of it (at its
    /// bound, or the disk refused).
    pub dead_letter_rows: Counter,
    pub dead_letter_left_out: Counter,
    pub dead_letter_bytes: Counter,
    pub dead_letter_max_bytes: Counter,
    pub connect_failures: Counter,
    pub last_error: std::sync::Mutex<Option<String>>,
    pub live_skipped: Counter,
    pub spool_rows: Counter,
    pub spool_bytes: Counter,
    pub spool_segments: Counter,
    pub spooled_rows: Counter,
    pub replayed_rows: Counter,
    /// Rows dropped because the spool was at its bound.
    pub spool_dropped_rows: Counter,
    pub spool_corrupt_records: Counter,
    /// Appends the spool's disk refused (each cut back, the batch held in memory).
    pub spool_append_failures: Counter,
    /// Rows held in memory while the spool's disk refuses writes.
    pub spool_held_rows: Counter,
    /// Unreadable spool segments renamed aside.
    pub spool_quarantined_segments: Counter,
    pub spool_max_bytes: Counter,
    pub timescaledb: Counter,
}

impl DbStats {
    pub fn set_error(&self, e: &dyn std::fmt::Display) {
        let mut slot = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(e.to_string());
    }
}

/// `sinks.database` and `sinks.spool` of `/api/status`.
pub struct DatabaseStatus(pub Arc<DbStats>);

impl SinkStatus for DatabaseStatus {
    fn name(&self) -> &'static str {
        "database"
    }
    fn metrics(&self, out: &mut Vec<crate::sinks::metrics::Sample>) {
        crate::sinks::metrics::read(&crate::sinks::metrics::DATABASE, &self.0, out);
    }
    fn sections(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("database", self.status()),
            ("spool", self.spool()),
            ("dead_letter", self.dead_letter()),
        ]
    }
    fn status(&self) -> Value {
        let s = &self.0;
        let connected = s.connected.get() == 1;
        let last_error = s
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let last_commit = s.last_commit_unix_ms.get();
        let refusing = s.refusing.get() == 1;
        let state = match (connected, refusing) {
            (_, true) => "refusing",
            (true, false) => "connected",
            (false, false) => "disconnected",
        };
        json!({
            "state": state,
            "connected": connected,
            "timescaledb": s.timescaledb.get() == 1,
            "last_commit_unix_ms": (last_commit > 0).then_some(last_commit),
            "rows_per_s": s.rows_per_s.get(),
            "rows_committed": s.rows_committed.get(),
            "candles_written": s.candles_written.get(),
            "signals_written": s.signals_written.get(),
            "absences_written": s.absences_written.get(),
            "trades_written": s.trades_written.get(),
            "agg_trades_written": s.agg_trades_written.get(),
            "rows_offered": s.rows_offered.get(),
            "batches": s.batches.get(),
            "batch_rows_last": s.last_batch_rows.get(),
            "batch_rows_max": s.max_batch_rows.get(),
            "batch_target": s.batch_target.get(),
            "live_candles_skipped": s.live_skipped.get(),
            "errors": s.write_errors.get(),
            "transient_errors": s.transient_errors.get(),
            "refused_writes": s.refused_writes.get(),
            "refusing": refusing,
            "split_writes": s.split_writes.get(),
            "connect_failures": s.connect_failures.get(),
            "last_error": last_error,
        })
    }
}

impl DatabaseStatus {
    fn dead_letter(&self) -> Value {
        let s = &self.0;
        json!({
            "file": deadletter::DEAD_LETTER_FILE,
            "rows_refused": s.dead_rows.get(),
            "rows": s.dead_letter_rows.get(),
            "left_out_rows": s.dead_letter_left_out.get(),
            "bytes": s.dead_letter_bytes.get(),
            "max_bytes": s.dead_letter_max_bytes.get(),
        })
    }

    fn spool(&self) -> Value {
        let s = &self.0;
        json!({
            "state": if s.spool_rows.get() > 0 { "holding" } else { "empty" },
            "rows": s.spool_rows.get(),
            "bytes": s.spool_bytes.get(),
            "segments": s.spool_segments.get(),
            "max_bytes": s.spool_max_bytes.get(),
            "spooled_rows": s.spooled_rows.get(),
            "replayed_rows": s.replayed_rows.get(),
            "dropped_rows": s.spool_dropped_rows.get(),
            "corrupt_records": s.spool_corrupt_records.get(),
            "append_failures": s.spool_append_failures.get(),
            "held_rows": s.spool_held_rows.get(),
            "quarantined_segments": s.spool_quarantined_segments.get(),
        })
    }
}

/// `alphapulse migrate`: connects and applies the migrations.
pub fn migrate_now(settings: &DbSettings) -> Result<schema::MigrateReport, DbError> {
    let mut client = copy::connect(&settings.url, CONNECT_TIMEOUT)?;
    schema::migrate(&mut client, settings)
}

/// The writer's [`SinkRole`] when `DATABASE_URL` is set. Runs on the control plane
/// before any role starts: opens the spool (a bad spool directory is a startup error)
/// and, unless configured off, applies the migrations. A database that cannot be
/// reached now is not an error: the writer spools and migrates once it connects.
pub fn writer_role(
    config: &Config,
    layout: &crate::topology::Layout,
) -> Result<Option<crate::sinks::SinkRole>, DbError> {
    let Some(settings) = DbSettings::from_config(config) else {
        return Ok(None);
    };
    let spool = spool::Spool::open(&settings.spool_dir, settings.spool_max_bytes)?;
    let stats = Arc::new(DbStats::default());
    let mut migrated = false;
    if settings.migrate_on_start {
        match migrate_now(&settings) {
            Ok(report) => {
                if !report.applied.is_empty() {
                    tracing::info!(applied = ?report.applied, "database migrations applied");
                }
                stats.timescaledb.set(u64::from(report.timescaledb));
                migrated = true;
            }
            Err(e @ DbError::Migrate(_)) => return Err(e),
            Err(e) => tracing::warn!(
                error = %e,
                "database unreachable at startup: spooling, and migrating once it connects"
            ),
        }
    }
    let status: Arc<dyn SinkStatus> = Arc::new(DatabaseStatus(stats.clone()));
    // Live candles reach the writer only when it stores them; gaps and outages never
    // (status owns them). Confirmed absences are stored like candles: spooled while the
    // database is down, never dropped.
    let stored = RecordKinds::CLOSED
        .with(RecordKinds::SIGNAL)
        .with(RecordKinds::ABSENT);
    let kinds = if settings.live_candles {
        stored.with(RecordKinds::LIVE)
    } else {
        stored
    };
    // Trades are never lost either: kept records, spooled while the database is down.
    let kinds = if settings.store_trades {
        kinds.with(RecordKinds::TRADES)
    } else {
        kinds
    };
    let writer = writer::Writer::new(settings, spool, stats, migrated);
    Ok(Some(crate::sinks::SinkRole {
        name: "database",
        core: layout.writer_core.filter(|_| layout.pinned),
        run: Box::new(move |io: SinkIo| writer.run(io)),
        status: Some(status),
        kinds,
        lossy: RecordKinds::NONE,
    }))
}
