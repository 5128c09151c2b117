//! The REST thread's database work: where each series resumes after a restart, and
//! where each symbol's aggregate trades do. (The
//! ranges the exchange confirms it has no candles for reach the database through the
//! writer, as `Record::Absent`, spooled like candles while it is down.)
//!
//! Runs on the REST thread ([`crate::backfill`]), which takes it as a
//! [`RestDatabase`] from the engine, so every statement the process sends lives under
//! `sinks::db`. Blocking (the sync `postgres` client), like the rest of that thread.

use std::time::Duration;

use postgres::Client;

use super::copy::connect;
use super::DbError;
use crate::backfill::{DatabaseError, RestDatabase};
use crate::market::{Interval, Symbol};

/// Connect timeout of the startup query (newest stored candles).
const RESUME_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The newest stored open time of a series, in ms.
const NEWEST_STORED: &str = "SELECT (extract(epoch FROM max(open_time)) * 1000)::bigint \
     FROM candles WHERE symbol = $1 AND timeframe = $2";

/// The newest stored open time per series (series without candles are left out).
pub fn newest_stored(
    client: &mut Client,
    series: &[(Symbol, Interval)],
) -> Result<Vec<(Symbol, Interval, i64)>, DbError> {
    let stmt = client.prepare(NEWEST_STORED)?;
    let mut out = Vec::new();
    for &(symbol, interval) in series {
        let row = client.query_one(&stmt, &[&symbol.as_str(), &interval.as_str()])?;
        if let Some(t) = row.try_get::<_, Option<i64>>(0)? {
            out.push((symbol, interval, t));
        }
    }
    Ok(out)
}

/// The newest stored aggregate trade id of a symbol.
const NEWEST_AGG_TRADE: &str = "SELECT max(agg_trade_id) FROM agg_trades WHERE symbol = $1";

/// The newest stored aggregate trade id per symbol (symbols without any left out).
pub fn newest_agg_trades(
    client: &mut Client,
    symbols: &[Symbol],
) -> Result<Vec<(Symbol, u64)>, DbError> {
    let stmt = client.prepare(NEWEST_AGG_TRADE)?;
    let mut out = Vec::new();
    for &symbol in symbols {
        let row = client.query_one(&stmt, &[&symbol.as_str()])?;
        if let Some(id) = row.try_get::<_, Option<i64>>(0)? {
            out.push((symbol, id.max(0) as u64));
        }
    }
    Ok(out)
}

/// The REST thread's database: `DATABASE_URL`, connected for the startup query only.
pub struct RestDb {
    url: String,
}

impl RestDb {
    pub fn new(url: String) -> RestDb {
        RestDb { url }
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

    fn newest_agg_trades(
        &mut self,
        symbols: &[Symbol],
    ) -> Result<Vec<(Symbol, u64)>, DatabaseError> {
        let mut client = connect(&self.url, RESUME_CONNECT_TIMEOUT)?;
        Ok(newest_agg_trades(&mut client, symbols)?)
    }
}
