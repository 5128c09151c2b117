//! The database schema: the refinery migrations in `migrations/`, then the TimescaleDB
//! policies that depend on configuration.
//!
//! Runs on the control plane (`alphapulse migrate`, engine startup) or on the writer
//! thread when it first reaches a database that was away at startup. In: a connected
//! client and the settings. Out: the tables of docs/schema.md, and one log line
//! saying whether TimescaleDB features are on.

use std::time::{Duration, Instant};

use postgres::Client;

use super::{DbError, DbSettings};

/// The PostgreSQL advisory lock every AlphaPulse process holds while it migrates
/// (any fixed number; this one spells "alphapul"): instances that start together
/// against an empty database would otherwise run the same `CREATE TABLE` at once, and
/// all but one would fail.
const MIGRATION_LOCK_KEY: i64 = 0x616c_7068_6170_756c;
/// How long a process waits for another one's migration before it gives up: the
/// migrations take well under a second, so this only ends a wait on a stuck migrator.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(60);
/// How often the lock is tried while another process holds it.
const MIGRATION_LOCK_POLL: Duration = Duration::from_millis(100);

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Names of the migrations applied now (empty when the schema was current).
    pub applied: Vec<String>,
    /// True when the `timescaledb` extension is installed in the database.
    pub timescaledb: bool,
}

/// Applies the migrations (idempotent: applied ones are skipped) and, on TimescaleDB,
/// the compression and retention policies of `settings`, under the migration lock, so
/// several processes migrating one database at once apply each migration once.
pub fn migrate(client: &mut Client, settings: &DbSettings) -> Result<MigrateReport, DbError> {
    lock_migrations(client)?;
    let result = migrate_locked(client, settings);
    // An unlock that fails means the connection broke, which releases the lock too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]);
    result
}

/// Takes the migration lock, waiting at most [`MIGRATION_LOCK_WAIT`] for another
/// process to release it.
fn lock_migrations(client: &mut Client) -> Result<(), DbError> {
    let deadline = Instant::now() + MIGRATION_LOCK_WAIT;
    loop {
        let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DbError::Migrate(format!(
                "another process has held the migration lock (advisory lock {MIGRATION_LOCK_KEY}) \
                 for {} s; find it in pg_locks and stop it",
                MIGRATION_LOCK_WAIT.as_secs()
            )));
        }
        std::thread::sleep(MIGRATION_LOCK_POLL);
    }
}

fn migrate_locked(client: &mut Client, settings: &DbSettings) -> Result<MigrateReport, DbError> {
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run(client)
        .map_err(|e| DbError::Migrate(e.to_string()))?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    let timescaledb = timescaledb_installed(client)?;
    if timescaledb {
        apply_policies(client, settings)?;
        tracing::info!("TimescaleDB present: candles and signals are compressed hypertables");
    } else {
        tracing::info!(
            "TimescaleDB features are off (extension not available): candles and signals are plain indexed tables"
        );
    }
    Ok(MigrateReport {
        applied,
        timescaledb,
    })
}

fn timescaledb_installed(client: &mut Client) -> Result<bool, DbError> {
    let row = client.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// Compression after `compress_after_days` and, when set, retention after
/// `retention_days`; both replace any earlier policy so a changed setting takes effect.
fn apply_policies(client: &mut Client, settings: &DbSettings) -> Result<(), DbError> {
    // The trade tables are hypertables only when TimescaleDB was there when V4 ran.
    let trade_hypertables: Vec<String> = client
        .query(
            "SELECT hypertable_name::text FROM timescaledb_information.hypertables \
             WHERE hypertable_name IN ('trades', 'agg_trades') ORDER BY 1 DESC",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tables = ["candles", "signals"]
        .into_iter()
        .chain(trade_hypertables.iter().map(String::as_str));
    for table in tables {
        client.execute(
            "SELECT remove_compression_policy($1::text::regclass, if_exists => true)",
            &[&table],
        )?;
        if settings.compress_after_days > 0 {
            let days = format!("{} days", settings.compress_after_days);
            client.execute(
                "SELECT add_compression_policy($1::text::regclass, $2::text::interval)",
                &[&table, &days],
            )?;
        }
        client.execute(
            "SELECT remove_retention_policy($1::text::regclass, if_exists => true)",
            &[&table],
        )?;
        if settings.retention_days > 0 {
            let days = format!("{} days", settings.retention_days);
            client.execute(
                "SELECT add_retention_policy($1::text::regclass, $2::text::interval)",
                &[&table, &days],
            )?;
        }
    }
    Ok(())
}
