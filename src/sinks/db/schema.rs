//! The database schema: the refinery migrations in `migrations/`, then the TimescaleDB
//! policies that depend on configuration.
//!
//! Runs on the control plane (`alphapulse migrate`, engine startup) or on the writer
//! thread when it first reaches a database that was away at startup. In: a connected
//! client and the settings. Out: the tables of DESIGN.md "Database", and one log line
//! saying whether TimescaleDB features are on.

use postgres::Client;

use super::{DbError, DbSettings};

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
/// the compression and retention policies of `settings`.
pub fn migrate(client: &mut Client, settings: &DbSettings) -> Result<MigrateReport, DbError> {
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
    Ok(row.get(0))
}

/// Compression after `compress_after_days` and, when set, retention after
/// `retention_days`; both replace any earlier policy so a changed setting takes effect.
fn apply_policies(client: &mut Client, settings: &DbSettings) -> Result<(), DbError> {
    for table in ["candles", "signals"] {
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
