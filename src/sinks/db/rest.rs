//! The REST thread's database work: where each series resumes after a restart, and
//! where each symbol's trades and aggregate trades do. (The
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
use crate::backfill::{
    DatabaseError, RestDatabase, TradeKind, TradeResume, MAX_RESUMED_HOLES, TRADE_HOLE_SCAN,
};
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

/// The newest stored id of a symbol's trades of one kind, and the holes among its newest
/// [`TRADE_HOLE_SCAN`] stored ids (at most [`MAX_RESUMED_HOLES`], oldest first).
fn trade_resume_sql(kind: TradeKind) -> (String, String) {
    let (table, id) = match kind {
        TradeKind::Aggregate => ("agg_trades", "agg_trade_id"),
        TradeKind::Raw => ("trades", "trade_id"),
    };
    let newest = format!("SELECT max({id}) FROM {table} WHERE symbol = $1");
    let holes = format!(
        "SELECT id + 1, next_id FROM ( \
           SELECT id, lead(id) OVER (ORDER BY id) AS next_id FROM ( \
             SELECT {id} AS id FROM {table} WHERE symbol = $1 ORDER BY {id} DESC LIMIT $2 \
           ) recent \
         ) ids WHERE next_id > id + 1 ORDER BY id DESC LIMIT $3"
    );
    (newest, holes)
}

/// Where each symbol's stored trades of `kind` resume (symbols without any left out).
pub fn trade_resume(
    client: &mut Client,
    kind: TradeKind,
    symbols: &[Symbol],
) -> Result<Vec<TradeResume>, DbError> {
    let (newest, holes) = trade_resume_sql(kind);
    let newest = client.prepare(&newest)?;
    let mut out = Vec::new();
    for &symbol in symbols {
        let row = client.query_one(&newest, &[&symbol.as_str()])?;
        let Some(id) = row.try_get::<_, Option<i64>>(0)? else {
            continue;
        };
        // The catch-up does not depend on the hole scan: a scan that fails (a timeout
        // on a huge table) is logged, and the symbol still catches up.
        let (found, more_holes) = stored_holes(client, &holes, symbol).unwrap_or_else(|e| {
            tracing::warn!(%symbol, error = %e, "cannot look for holes among the stored {}; they stay", kind.as_str());
            (Vec::new(), false)
        });
        out.push(TradeResume {
            symbol,
            newest: id.max(0) as u64,
            holes: found,
            more_holes,
        });
    }
    Ok(out)
}

/// The newest [`MAX_RESUMED_HOLES`] holes among `symbol`'s newest stored ids (query
/// `holes` of [`trade_resume_sql`]), oldest first, and whether older ones are left.
fn stored_holes(
    client: &mut Client,
    holes: &str,
    symbol: Symbol,
) -> Result<(Vec<(u64, u64)>, bool), DbError> {
    let mut found = Vec::new();
    for row in client.query(
        holes,
        // One more than asked for tells whether any are left.
        &[&symbol.as_str(), &TRADE_HOLE_SCAN, &(MAX_RESUMED_HOLES + 1)],
    )? {
        let (from, to): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        found.push((from.max(0) as u64, to.max(0) as u64));
    }
    // Newest first so far: past the bound are the oldest.
    let more = found.len() > MAX_RESUMED_HOLES as usize;
    found.truncate(MAX_RESUMED_HOLES as usize);
    found.reverse();
    Ok((found, more))
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

    fn trade_resume(
        &mut self,
        kind: TradeKind,
        symbols: &[Symbol],
    ) -> Result<Vec<TradeResume>, DatabaseError> {
        let mut client = connect(&self.url, RESUME_CONNECT_TIMEOUT)?;
        Ok(trade_resume(&mut client, kind, symbols)?)
    }
}
