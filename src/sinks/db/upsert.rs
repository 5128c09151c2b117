//! The writer's second path: one array upsert per table and batch,
//! `INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT …`, with no `COPY`
//! sub-protocol and no staging table.
//!
//! Runs on the writer thread (and in `bench db`). In: a merged [`Batch`]. Out: the same
//! rows, under the same conflict rules, as [`copy`]'s path: a candle replaces the
//! stored one only if it supersedes it, a signal is inserted once, and confirmed
//! absences are recorded by the same statement. Each column travels
//! as one binary array parameter, so a batch is one round trip per table whatever its
//! size.
//!
//! Why a second path: servers that speak the wire protocol but not `COPY FROM STDIN`
//! (PGlite, the WASM build of PostgreSQL with TimescaleDB that the tests use, dies on
//! it) still take every batch. [`BatchConn`] is what the writer holds: one connection
//! on the path `database.write_method` chose.

use postgres::types::ToSql;
use postgres::{Client, Statement};

use super::copy::{
    self, db_id, Committed, WriteConn, AGG_TRADE_COLUMNS, CANDLE_COLUMNS, CANDLE_CONFLICT,
    TRADE_COLUMNS,
};
use super::rows::{Batch, JsonbText, PgTime};
use super::{DbError, DbSettings, CONNECT_TIMEOUT};
pub use crate::config::WriteMethod;
use crate::market::Decimal;

/// The candle upsert: the columns of [`CANDLE_COLUMNS`] as typed arrays, one row per
/// index, under [`CANDLE_CONFLICT`].
fn upsert_candles() -> String {
    format!(
        "INSERT INTO candles AS c ({CANDLE_COLUMNS}) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
         $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], \
         $10::numeric[], $11::numeric[], $12::numeric[], $13::int8[], $14::bool[], \
         $15::timestamptz[]) {CANDLE_CONFLICT}"
    )
}

/// The signal insert, as [`copy`]'s: a signal already stored is left alone.
const INSERT_SIGNALS: &str = "INSERT INTO signals \
     (\"timestamp\", symbol, timeframe, kind, direction, confidence, price, indicators, event_time) \
     SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::float8[], $7::numeric[], $8::jsonb[], $9::timestamptz[]) ON CONFLICT DO NOTHING";

/// The trade insert, as [`copy`]'s: the columns of [`TRADE_COLUMNS`] as typed arrays;
/// a trade already stored is left alone.
fn insert_trades() -> String {
    format!(
        "INSERT INTO trades ({TRADE_COLUMNS}) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::numeric[], $4::numeric[], \
         $5::timestamptz[], $6::bool[]) ON CONFLICT DO NOTHING"
    )
}

/// The aggregate trade insert, as [`copy`]'s: the columns of [`AGG_TRADE_COLUMNS`].
fn insert_agg_trades() -> String {
    format!(
        "INSERT INTO agg_trades ({AGG_TRADE_COLUMNS}) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::numeric[], $4::numeric[], \
         $5::int8[], $6::int8[], $7::timestamptz[], $8::bool[]) ON CONFLICT DO NOTHING"
    )
}

/// A connection with the statements prepared.
pub struct UnnestConn {
    client: Client,
    candles: Statement,
    signals: Statement,
    trades: Statement,
    agg_trades: Statement,
}

impl UnnestConn {
    /// Prepares the statements on `client` (the schema must exist).
    pub fn new(mut client: Client) -> Result<UnnestConn, DbError> {
        let candles = client.prepare(&upsert_candles())?;
        let signals = client.prepare(INSERT_SIGNALS)?;
        let trades = client.prepare(&insert_trades())?;
        let agg_trades = client.prepare(&insert_agg_trades())?;
        Ok(UnnestConn {
            client,
            candles,
            signals,
            trades,
            agg_trades,
        })
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Writes `batch` in one transaction: all of it or none of it.
    pub fn write(&mut self, batch: &Batch) -> Result<Committed, DbError> {
        let mut tx = self.client.transaction()?;
        let mut done = Committed::default();
        if !batch.candles.is_empty() {
            let cs = &batch.candles;
            let symbol: Vec<&str> = cs.iter().map(|c| c.symbol.as_str()).collect();
            let timeframe: Vec<&str> = cs.iter().map(|c| c.interval.as_str()).collect();
            let open_time: Vec<PgTime> =
                cs.iter().map(|c| PgTime::from_ms(c.open_time_ms)).collect();
            let close_time: Vec<PgTime> = cs
                .iter()
                .map(|c| PgTime::from_ms(c.close_time_ms))
                .collect();
            let decimals = |f: fn(&crate::market::Candle) -> Decimal| -> Vec<Decimal> {
                cs.iter().map(f).collect()
            };
            let open = decimals(|c| c.open);
            let high = decimals(|c| c.high);
            let low = decimals(|c| c.low);
            let close = decimals(|c| c.close);
            let volume = decimals(|c| c.volume);
            let quote_volume = decimals(|c| c.quote_volume);
            let taker_buy_base = decimals(|c| c.taker_buy_base);
            let taker_buy_quote = decimals(|c| c.taker_buy_quote);
            let trades: Vec<i64> = cs
                .iter()
                .map(|c| i64::try_from(c.trades).unwrap_or(i64::MAX))
                .collect();
            let closed: Vec<bool> = cs.iter().map(|c| c.closed).collect();
            let event_time: Vec<PgTime> = cs.iter().map(|c| PgTime(c.event_time_us)).collect();
            let params: [&(dyn ToSql + Sync); 15] = [
                &symbol,
                &timeframe,
                &open_time,
                &close_time,
                &open,
                &high,
                &low,
                &close,
                &volume,
                &quote_volume,
                &taker_buy_base,
                &taker_buy_quote,
                &trades,
                &closed,
                &event_time,
            ];
            done.candles = tx.execute(&self.candles, &params)?;
        }
        if !batch.signals.is_empty() {
            let ss = &batch.signals;
            let timestamp: Vec<PgTime> =
                ss.iter().map(|s| PgTime::from_ms(s.timestamp_ms)).collect();
            let symbol: Vec<&str> = ss.iter().map(|s| s.symbol.as_str()).collect();
            let timeframe: Vec<&str> = ss.iter().map(|s| s.interval.as_str()).collect();
            let kind: Vec<&str> = ss.iter().map(|s| s.kind.as_str()).collect();
            let direction: Vec<&str> = ss.iter().map(|s| s.direction.as_str()).collect();
            let confidence: Vec<f64> = ss.iter().map(|s| s.confidence).collect();
            let price: Vec<Decimal> = ss.iter().map(|s| s.price).collect();
            let indicators: Vec<JsonbText> =
                ss.iter().map(|s| JsonbText(&s.indicators_json)).collect();
            let event_time: Vec<PgTime> = ss.iter().map(|s| PgTime(s.event_time_us)).collect();
            let params: [&(dyn ToSql + Sync); 9] = [
                &timestamp,
                &symbol,
                &timeframe,
                &kind,
                &direction,
                &confidence,
                &price,
                &indicators,
                &event_time,
            ];
            done.signals = tx.execute(&self.signals, &params)?;
        }
        done.absences = copy::insert_absences(&mut tx, &batch.absences)?;
        if !batch.trades.is_empty() {
            let ts = &batch.trades;
            let symbol: Vec<&str> = ts.iter().map(|t| t.symbol.as_str()).collect();
            let id: Vec<i64> = ts.iter().map(|t| db_id(t.trade_id)).collect();
            let price: Vec<Decimal> = ts.iter().map(|t| t.price).collect();
            let quantity: Vec<Decimal> = ts.iter().map(|t| t.quantity).collect();
            let time: Vec<PgTime> = ts
                .iter()
                .map(|t| PgTime::from_ms(t.trade_time_ms))
                .collect();
            let maker: Vec<bool> = ts.iter().map(|t| t.buyer_is_maker).collect();
            let params: [&(dyn ToSql + Sync); 6] = [&symbol, &id, &price, &quantity, &time, &maker];
            done.trades = tx.execute(&self.trades, &params)?;
        }
        if !batch.agg_trades.is_empty() {
            let ts = &batch.agg_trades;
            let symbol: Vec<&str> = ts.iter().map(|t| t.symbol.as_str()).collect();
            let id: Vec<i64> = ts.iter().map(|t| db_id(t.agg_trade_id)).collect();
            let price: Vec<Decimal> = ts.iter().map(|t| t.price).collect();
            let quantity: Vec<Decimal> = ts.iter().map(|t| t.quantity).collect();
            let first: Vec<i64> = ts.iter().map(|t| db_id(t.first_trade_id)).collect();
            let last: Vec<i64> = ts.iter().map(|t| db_id(t.last_trade_id)).collect();
            let time: Vec<PgTime> = ts
                .iter()
                .map(|t| PgTime::from_ms(t.trade_time_ms))
                .collect();
            let maker: Vec<bool> = ts.iter().map(|t| t.buyer_is_maker).collect();
            let params: [&(dyn ToSql + Sync); 8] = [
                &symbol, &id, &price, &quantity, &first, &last, &time, &maker,
            ];
            done.agg_trades = tx.execute(&self.agg_trades, &params)?;
        }
        tx.commit()?;
        Ok(done)
    }
}

/// The writer's connection, on the path `database.write_method` chose.
pub enum BatchConn {
    Copy(WriteConn),
    Unnest(UnnestConn),
    /// `database.hold_connections = false`: a connection per batch, closed once the
    /// batch is committed, so a server that serves one connection at a time (PGlite)
    /// can serve the query worker and the REST thread between batches.
    PerBatch {
        url: String,
        method: WriteMethod,
        /// The session's `statement_timeout` and `lock_timeout`.
        timeouts: (std::time::Duration, std::time::Duration),
    },
}

impl BatchConn {
    /// Readies `client` for `method` (the schema must exist).
    pub fn new(client: Client, method: WriteMethod) -> Result<BatchConn, DbError> {
        Ok(match method {
            WriteMethod::Copy => BatchConn::Copy(copy::WriteConn::new(client)?),
            WriteMethod::Unnest => BatchConn::Unnest(UnnestConn::new(client)?),
        })
    }

    /// The writer's connection under `settings`: `client` readied for the write method,
    /// or, when connections are not held, closed now and opened again for each batch.
    /// The session's statement and lock timeouts are set first (the staging tables'
    /// `LIKE` waits on locks too).
    pub fn open(mut client: Client, settings: &DbSettings) -> Result<BatchConn, DbError> {
        let timeouts = (settings.statement_timeout, settings.lock_timeout);
        if settings.hold_connections {
            copy::set_timeouts(&mut client, timeouts.0, timeouts.1)?;
            return BatchConn::new(client, settings.write_method);
        }
        drop(client);
        Ok(BatchConn::PerBatch {
            url: settings.url.clone(),
            method: settings.write_method,
            timeouts,
        })
    }

    /// Writes `batch` in one transaction: all of it or none of it.
    pub fn write(&mut self, batch: &Batch) -> Result<Committed, DbError> {
        match self {
            BatchConn::Copy(c) => c.write(batch),
            BatchConn::Unnest(c) => c.write(batch),
            BatchConn::PerBatch {
                url,
                method,
                timeouts,
            } => {
                let mut client = copy::connect(url, CONNECT_TIMEOUT)?;
                copy::set_timeouts(&mut client, timeouts.0, timeouts.1)?;
                BatchConn::new(client, *method)?.write(batch)
            }
        }
    }

    /// The held connection (none when connections are opened per batch).
    pub fn client(&mut self) -> Option<&mut Client> {
        match self {
            BatchConn::Copy(c) => Some(c.client()),
            BatchConn::Unnest(c) => Some(c.client()),
            BatchConn::PerBatch { .. } => None,
        }
    }
}
