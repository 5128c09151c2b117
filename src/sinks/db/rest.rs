//! The REST thread's database work: where each series resumes after a restart, and the
//! ranges the exchange confirmed it has no candles for (`candle_absences`).
//!
//! Runs on the REST thread ([`crate::backfill`]), which takes it as a
//! [`RestDatabase`] from the engine, so every statement the process sends lives under
//! `sinks::db`. Blocking (the sync `postgres` client), like the rest of that thread.

use std::time::Duration;

use postgres::Client;

use super::copy::connect;
use super::DbError;
use crate::backfill::{DatabaseError, RestDatabase};
use crate::candle::Gap;
use crate::market::{Interval, Symbol};

/// Connect timeout of the startup query (newest stored candles).
const RESUME_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect timeout of the absence writes, which are retried every few seconds.
const ABSENCE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The newest stored open time of a series, in ms.
const NEWEST_STORED: &str = "SELECT (extract(epoch FROM max(open_time)) * 1000)::bigint \
     FROM candles WHERE symbol = $1 AND timeframe = $2";

/// One confirmed absence; recording it twice changes nothing.
const INSERT_ABSENCE: &str = "INSERT INTO candle_absences \
     (symbol, timeframe, from_open_time, to_open_time, candles) \
     VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), \
             to_timestamp($4::bigint / 1000.0), $5) \
     ON CONFLICT DO NOTHING";

/// The newest stored open time per series (series without candles are left out).
pub fn newest_stored(
    client: &mut Client,
    series: &[(Symbol, Interval)],
) -> Result<Vec<(Symbol, Interval, i64)>, DbError> {
    let stmt = client.prepare(NEWEST_STORED)?;
    let mut out = Vec::new();
    for &(symbol, interval) in series {
        let row = client.query_one(&stmt, &[&symbol.as_str(), &interval.as_str()])?;
        if let Some(t) = row.get::<_, Option<i64>>(0) {
            out.push((symbol, interval, t));
        }
    }
    Ok(out)
}

/// Records one confirmed absence (idempotent).
pub fn record_absence(client: &mut Client, gap: &Gap) -> Result<(), DbError> {
    client.execute(
        INSERT_ABSENCE,
        &[
            &gap.symbol.as_str(),
            &gap.interval.as_str(),
            &gap.from_open_ms,
            &gap.to_open_ms,
            &(gap.candles() as i64),
        ],
    )?;
    Ok(())
}

/// The REST thread's database: `DATABASE_URL`, connected when needed. The startup
/// query uses its own short-lived connection; absences keep one open until it fails.
pub struct RestDb {
    url: String,
    absences: Option<Client>,
}

impl RestDb {
    pub fn new(url: String) -> RestDb {
        RestDb {
            url,
            absences: None,
        }
    }
}

impl RestDatabase for RestDb {
    fn newest_stored(
        &mut self,
        series: &[(Symbol, Interval)],
    ) -> Result<Vec<(Symbol, Interval, i64)>, DatabaseError> {
        let mut client = connect(&self.url, RESUME_CONNECT_TIMEOUT)?;
        Ok(newest_stored(&mut client, series)?)
    }

    fn record_absence(&mut self, gap: &Gap) -> Result<(), DatabaseError> {
        let result = (|| {
            let client = match self.absences.as_mut() {
                Some(c) => c,
                None => self
                    .absences
                    .insert(connect(&self.url, ABSENCE_CONNECT_TIMEOUT)?),
            };
            record_absence(client, gap)
        })();
        if result.is_err() {
            // The next attempt starts from a new connection.
            self.absences = None;
        }
        Ok(result?)
    }
}
