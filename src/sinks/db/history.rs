//! `alphapulse history`'s statements: where a series' stored candles in a range end (so
//! a fetch resumes there), and the stored candles of a range, streamed, for export.
//!
//! Runs on the main thread of the `history` command (blocking, the sync `postgres`
//! client). The candles it fetches are written by the writer's own batch paths
//! ([`super::upsert::BatchConn`]), under the writer's conflict rule.

use postgres::types::ToSql;
use postgres::Client;

use super::rows::PgTime;
use super::DbError;
use crate::market::{Interval, Symbol};

/// The newest stored open time (ms) of a series in `[from, to)`.
const NEWEST_IN_RANGE: &str = "SELECT (extract(epoch FROM max(open_time)) * 1000)::bigint \
     FROM candles WHERE symbol = $1 AND timeframe = $2 AND closed \
     AND open_time >= $3 AND open_time < $4";

/// Stored closed candles of the series asked for in `[from, to)`, exact decimals as
/// text, in (symbol, timeframe, open time) order.
const STORED_IN_RANGE: &str = "SELECT symbol, timeframe, open_time, close_time, open::text, \
     high::text, low::text, close::text, volume::text, quote_volume::text, \
     taker_buy_base::text, taker_buy_quote::text, trades \
     FROM candles WHERE symbol = ANY($1) AND timeframe = ANY($2) AND closed \
     AND open_time >= $3 AND open_time < $4 ORDER BY symbol, timeframe, open_time";

/// The columns of an exported candle, in the order of [`StoredCandle::fields`].
pub const EXPORT_COLUMNS: [&str; 13] = [
    "symbol",
    "timeframe",
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_base",
    "taker_buy_quote",
    "trades",
];

/// The newest stored closed candle's open time (ms) of a series in `[from_ms, to_ms)`.
pub fn newest_in_range(
    client: &mut Client,
    symbol: Symbol,
    interval: Interval,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<i64>, DbError> {
    let row = client.query_one(
        NEWEST_IN_RANGE,
        &[
            &symbol.as_str(),
            &interval.as_str(),
            &PgTime::from_ms(from_ms),
            &PgTime::from_ms(to_ms),
        ],
    )?;
    Ok(row.try_get::<_, Option<i64>>(0)?)
}

/// One stored candle as exported: times in ms, decimals exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCandle {
    pub symbol: String,
    pub timeframe: String,
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    /// open, high, low, close, volume, quote volume, taker buy base, taker buy quote.
    pub decimals: [String; 8],
    pub trades: i64,
}

impl StoredCandle {
    /// The values in the order of [`EXPORT_COLUMNS`].
    pub fn fields(&self) -> Vec<String> {
        let mut out = vec![
            self.symbol.clone(),
            self.timeframe.clone(),
            self.open_time_ms.to_string(),
            self.close_time_ms.to_string(),
        ];
        out.extend(self.decimals.iter().cloned());
        out.push(self.trades.to_string());
        out
    }
}

/// Hands each stored closed candle of `symbols` × `intervals` in `[from_ms, to_ms)` to
/// `each`, as the rows arrive (a large range is never held in memory); returns how many.
pub fn each_stored(
    client: &mut Client,
    symbols: &[Symbol],
    intervals: &[Interval],
    from_ms: i64,
    to_ms: i64,
    mut each: impl FnMut(&StoredCandle) -> std::io::Result<()>,
) -> Result<u64, HistoryReadError> {
    let symbols: Vec<&str> = symbols.iter().map(|s| s.as_str()).collect();
    let intervals: Vec<&str> = intervals.iter().map(|i| i.as_str()).collect();
    let (from, to) = (PgTime::from_ms(from_ms), PgTime::from_ms(to_ms));
    let params: [&(dyn ToSql + Sync); 4] = [&symbols, &intervals, &from, &to];
    let mut rows = client.query_raw(STORED_IN_RANGE, params)?;
    let mut n = 0;
    while let Some(r) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
        let text = |i: usize| r.try_get::<_, String>(i);
        let candle = StoredCandle {
            symbol: text(0)?,
            timeframe: text(1)?,
            open_time_ms: r.try_get::<_, PgTime>(2)?.as_ms(),
            close_time_ms: r.try_get::<_, PgTime>(3)?.as_ms(),
            decimals: [
                text(4)?,
                text(5)?,
                text(6)?,
                text(7)?,
                text(8)?,
                text(9)?,
                text(10)?,
                text(11)?,
            ],
            trades: r.try_get(12)?,
        };
        each(&candle).map_err(HistoryReadError::Output)?;
        n += 1;
    }
    Ok(n)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum HistoryReadError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("writing the export: {0}")]
    Output(std::io::Error),
}

impl From<postgres::Error> for HistoryReadError {
    fn from(e: postgres::Error) -> Self {
        HistoryReadError::Database(e.into())
    }
}
