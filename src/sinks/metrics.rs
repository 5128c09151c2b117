//! The sink roles' `/metrics` families: each figure of a sink's stats with its name,
//! its type and its meaning, read on request from the relaxed counters.
//!
//! Runs on: the dashboard core, when `/metrics` is rendered. Counters (figures that only
//! go up while the process runs) are `..._total` of type counter; states and levels
//! (connected, rows held, bytes, batch sizes) are gauges. Every family is listed by
//! [`families`] whether or not its sink runs, so a dashboard or an alert names a family
//! that always exists; a sink that runs adds its samples ([`super::SinkStatus::metrics`]).

use super::db::DbStats;
use super::redis::bridge::BridgeStats;
use super::redis::PublisherStats;
use crate::metrics::Kind::{self, Counter, Gauge};

/// One figure of a sink's stats `S`, as `/metrics` exports it.
pub struct Figure<S> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub read: fn(&S) -> f64,
}

/// One sample of a sink family: an optional label and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub family: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub value: f64,
}

const fn figure<S>(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&S) -> f64,
) -> Figure<S> {
    Figure {
        name,
        kind,
        help,
        read,
    }
}

/// The database writer's figures: its connection and writes, the spool, the
/// dead-letter file.
#[rustfmt::skip]
pub const DATABASE: [Figure<DbStats>; 37] = [
    figure("alphapulse_database_connected", Gauge, "1 while the database writer is connected", |s| s.connected.get() as f64),
    figure("alphapulse_database_refusing", Gauge, "1 while the database refuses the writer's writes whatever the rows (permissions, schema)", |s| s.refusing.get() as f64),
    figure("alphapulse_database_timescaledb", Gauge, "1 when the database has the TimescaleDB extension", |s| s.timescaledb.get() as f64),
    figure("alphapulse_database_last_commit_timestamp_seconds", Gauge, "Unix time of the writer's latest commit (0 before the first)", |s| s.last_commit_unix_ms.get().max(0) as f64 / 1000.0),
    figure("alphapulse_database_rows_committed_total", Counter, "Rows the writer committed", |s| s.rows_committed.get() as f64),
    figure("alphapulse_database_candles_written_total", Counter, "Closed candles written", |s| s.candles_written.get() as f64),
    figure("alphapulse_database_signals_written_total", Counter, "Signals written", |s| s.signals_written.get() as f64),
    figure("alphapulse_database_absences_written_total", Counter, "Confirmed absences written", |s| s.absences_written.get() as f64),
    figure("alphapulse_database_trades_written_total", Counter, "Trades written", |s| s.trades_written.get() as f64),
    figure("alphapulse_database_agg_trades_written_total", Counter, "Aggregate trades written", |s| s.agg_trades_written.get() as f64),
    figure("alphapulse_database_rows_offered_total", Counter, "Rows offered to batches, duplicates included", |s| s.rows_offered.get() as f64),
    figure("alphapulse_database_batches_total", Counter, "Batches committed", |s| s.batches.get() as f64),
    figure("alphapulse_database_batch_rows_last", Gauge, "Rows of the latest batch", |s| s.last_batch_rows.get() as f64),
    figure("alphapulse_database_batch_rows_max", Gauge, "Rows of the largest batch so far", |s| s.max_batch_rows.get() as f64),
    figure("alphapulse_database_batch_target", Gauge, "The current batch target (grows under load)", |s| s.batch_target.get() as f64),
    figure("alphapulse_database_live_candles_skipped_total", Counter, "Live candle updates not written", |s| s.live_skipped.get() as f64),
    figure("alphapulse_database_errors_total", Counter, "Writes that failed", |s| s.write_errors.get() as f64),
    figure("alphapulse_database_transient_errors_total", Counter, "Writes that failed for a passing reason (lock or statement timeout), retried", |s| s.transient_errors.get() as f64),
    figure("alphapulse_database_refused_writes_total", Counter, "Writes the database refused whatever the rows", |s| s.refused_writes.get() as f64),
    figure("alphapulse_database_split_writes_total", Counter, "Extra writes made to isolate refused rows", |s| s.split_writes.get() as f64),
    figure("alphapulse_database_connect_failures_total", Counter, "Failed connection attempts of the writer", |s| s.connect_failures.get() as f64),
    figure("alphapulse_spool_rows", Gauge, "Rows held in the database spool", |s| s.spool_rows.get() as f64),
    figure("alphapulse_spool_bytes", Gauge, "Bytes held in the database spool", |s| s.spool_bytes.get() as f64),
    figure("alphapulse_spool_segments", Gauge, "Files of the database spool", |s| s.spool_segments.get() as f64),
    figure("alphapulse_spool_max_bytes", Gauge, "The spool's bound: past it new batches are dropped", |s| s.spool_max_bytes.get() as f64),
    figure("alphapulse_spool_held_rows", Gauge, "Rows held in memory while the spool's disk refuses writes", |s| s.spool_held_rows.get() as f64),
    figure("alphapulse_spool_spooled_rows_total", Counter, "Rows written to the spool", |s| s.spooled_rows.get() as f64),
    figure("alphapulse_spool_replayed_rows_total", Counter, "Rows replayed from the spool into the database", |s| s.replayed_rows.get() as f64),
    figure("alphapulse_spool_dropped_rows_total", Counter, "Rows dropped because the spool was at its bound", |s| s.spool_dropped_rows.get() as f64),
    figure("alphapulse_spool_corrupt_records_total", Counter, "Unreadable spool records skipped", |s| s.spool_corrupt_records.get() as f64),
    figure("alphapulse_spool_append_failures_total", Counter, "Appends the spool's disk refused", |s| s.spool_append_failures.get() as f64),
    figure("alphapulse_spool_quarantined_segments_total", Counter, "Unreadable spool files renamed aside", |s| s.spool_quarantined_segments.get() as f64),
    figure("alphapulse_dead_letter_rows_refused_total", Counter, "Rows the database refused (constraint, range), isolated from their batch", |s| s.dead_rows.get() as f64),
    figure("alphapulse_dead_letter_rows_total", Counter, "Refused rows kept in the dead-letter file", |s| s.dead_letter_rows.get() as f64),
    figure("alphapulse_dead_letter_left_out_rows_total", Counter, "Refused rows left out of the dead-letter file (at its bound, or the disk refused)", |s| s.dead_letter_left_out.get() as f64),
    figure("alphapulse_dead_letter_bytes", Gauge, "Bytes of the dead-letter file", |s| s.dead_letter_bytes.get() as f64),
    figure("alphapulse_dead_letter_max_bytes", Gauge, "The dead-letter file's bound", |s| s.dead_letter_max_bytes.get() as f64),
];

/// The Redis publisher's figures.
#[rustfmt::skip]
pub const REDIS: [Figure<PublisherStats>; 10] = [
    figure("alphapulse_redis_connected", Gauge, "1 while the Redis publisher is connected", |s| s.connected.get() as f64),
    figure("alphapulse_redis_published_total", Counter, "PUBLISH commands Redis acknowledged", |s| s.published.get() as f64),
    figure("alphapulse_redis_dropped_total", Counter, "Publishes lost: Redis down, or a failed connection", |s| s.dropped.get() as f64),
    figure("alphapulse_redis_refused_total", Counter, "Publishes Redis answered with an error", |s| s.refused.get() as f64),
    figure("alphapulse_redis_conflated_total", Counter, "Live candle updates superseded before they were sent", |s| s.conflated.get() as f64),
    figure("alphapulse_redis_trades_conflated_total", Counter, "Trades superseded in a conflation window (REDIS_TRADES_CONFLATE_MS), not published", |s| s.trades_conflated.get() as f64),
    figure("alphapulse_redis_reconnects_total", Counter, "Publisher connections made after the first", |s| s.reconnects.get() as f64),
    figure("alphapulse_redis_connect_failures_total", Counter, "Failed connection attempts of the publisher", |s| s.connect_failures.get() as f64),
    figure("alphapulse_redis_timeouts_total", Counter, "Publisher connections dropped for a stalled write or reply", |s| s.timeouts.get() as f64),
    figure("alphapulse_redis_pipelines_total", Counter, "Pipelines sent", |s| s.pipelines.get() as f64),
];

/// The Redis bridge's figures (other instances' records), besides its refusals.
#[rustfmt::skip]
pub const BRIDGE: [Figure<BridgeStats>; 11] = [
    figure("alphapulse_redis_bridge_active", Gauge, "1 when the bridge runs (other instances' records to take); 0 for a single instance", |s| s.active.get() as f64),
    figure("alphapulse_redis_bridge_connected", Gauge, "1 while the bridge's subscription is connected", |s| s.connected.get() as f64),
    figure("alphapulse_redis_bridge_received_total", Counter, "Messages the bridge received", |s| s.received.get() as f64),
    figure("alphapulse_redis_bridge_applied_total", Counter, "Other instances' records applied to the recent store", |s| s.applied.get() as f64),
    figure("alphapulse_redis_bridge_forwarded_total", Counter, "Other instances' records forwarded to the dashboard", |s| s.forwarded.get() as f64),
    figure("alphapulse_redis_bridge_forward_full_total", Counter, "Records the dashboard's ring had no room for", |s| s.forward_full.get() as f64),
    figure("alphapulse_redis_bridge_reconnects_total", Counter, "Bridge connections made after the first", |s| s.reconnects.get() as f64),
    figure("alphapulse_redis_bridge_pings_total", Counter, "PINGs the bridge sent to check its subscription", |s| s.pings.get() as f64),
    figure("alphapulse_redis_bridge_timeouts_total", Counter, "Bridge connections dropped for no answer in time", |s| s.timeouts.get() as f64),
    figure("alphapulse_redis_bridge_store_series", Gauge, "Series in the recent store", |s| s.store_series.get() as f64),
    figure("alphapulse_redis_bridge_store_max_series", Gauge, "The recent store's bound on series", |s| s.store_max_series.get() as f64),
];

/// The bridge's refusals, labelled `reason` ([`BridgeStats::rejections`]).
pub const BRIDGE_REJECTED: (&str, Kind, &str) = (
    "alphapulse_redis_bridge_rejected_total",
    Counter,
    "Messages the bridge refused, by reason",
);

/// Every sink family as (name, type, help), in the order `/metrics` writes them.
pub fn families() -> impl Iterator<Item = (&'static str, Kind, &'static str)> {
    fn of<S>(f: &'static [Figure<S>]) -> impl Iterator<Item = (&'static str, Kind, &'static str)> {
        f.iter().map(|f| (f.name, f.kind, f.help))
    }
    of(&DATABASE)
        .chain(of(&REDIS))
        .chain(of(&BRIDGE))
        .chain(std::iter::once(BRIDGE_REJECTED))
}

/// Reads every figure of `figures` from `stats` into `out`.
pub fn read<S>(figures: &[Figure<S>], stats: &S, out: &mut Vec<Sample>) {
    out.extend(figures.iter().map(|f| Sample {
        family: f.name,
        label: None,
        value: (f.read)(stats),
    }));
}

/// The bridge's figures and its refusals by reason.
pub fn read_bridge(stats: &BridgeStats, out: &mut Vec<Sample>) {
    read(&BRIDGE, stats, out);
    out.extend(stats.rejections().into_iter().map(|(reason, n)| Sample {
        family: BRIDGE_REJECTED.0,
        label: Some(("reason", reason)),
        value: n as f64,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_unique_and_counters_end_in_total() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, kind, help) in families() {
            assert!(seen.insert(name), "{name} twice");
            assert!(name.starts_with("alphapulse_"), "{name}");
            assert_eq!(name.ends_with("_total"), kind == Counter, "{name}");
            assert!(!help.is_empty());
        }
    }

    #[test]
    fn each_figure_reads_its_own_counter() {
        let db = DbStats::default();
        db.rows_committed.add(7);
        db.spool_bytes.set(4096);
        db.last_commit_unix_ms.set(1_500);
        let mut out = Vec::new();
        read(&DATABASE, &db, &mut out);
        let value = |name: &str| out.iter().find(|s| s.family == name).unwrap().value;
        assert_eq!(value("alphapulse_database_rows_committed_total"), 7.0);
        assert_eq!(value("alphapulse_spool_bytes"), 4096.0);
        assert_eq!(
            value("alphapulse_database_last_commit_timestamp_seconds"),
            1.5
        );
        assert_eq!(value("alphapulse_spool_rows"), 0.0);
        let bridge = BridgeStats::default();
        bridge.over_bound.inc();
        let mut out = Vec::new();
        read_bridge(&bridge, &mut out);
        assert!(out.contains(&Sample {
            family: "alphapulse_redis_bridge_rejected_total",
            label: Some(("reason", "over_bound")),
            value: 1.0,
        }));
    }
}
