//! One write connection: binary `COPY` of a batch into per-connection staging tables,
//! then one `INSERT … SELECT … ON CONFLICT` per table, in one transaction.
//!
//! Runs on the writer thread (and in `bench db`). In: a merged [`Batch`]. Out: rows in
//! `candles` and `signals`, written idempotently:
//! - a candle replaces the stored one only if it supersedes it (closed beats live, then
//!   the later exchange event time wins), so a closed candle never doubles and an older
//!   update never overwrites a newer one, whatever order replays arrive in;
//! - a signal is inserted once (`ON CONFLICT DO NOTHING`);
//! - a trade and an aggregate trade are inserted once per (symbol, id) (`ON CONFLICT
//!   DO NOTHING`): a replayed or backfilled trade is the same trade.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use super::rows::{Batch, JsonbText, PgTime};
use super::DbError;
use crate::market::{AggTrade, Candle, Trade};

/// Staging tables: temporary (never WAL-logged, private to the connection), emptied at
/// every commit.
const CREATE_STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS candles_stage (LIKE candles) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS signals_stage (LIKE signals) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS trades_stage (LIKE trades) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS agg_trades_stage (LIKE agg_trades) ON COMMIT DELETE ROWS;";

/// The `candles` columns a row fills, in the order of [`CandleRow::params`].
pub const CANDLE_COLUMNS: &str =
    "symbol, timeframe, open_time, close_time, open, high, low, close, \
     volume, quote_volume, taker_buy_base, taker_buy_quote, trades, closed, event_time";

const CANDLE_TYPES: [Type; CandleRow::COLUMNS] = [
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::INT8,
    Type::BOOL,
    Type::TIMESTAMPTZ,
];

/// The conflict rule of the module doc, as SQL, for an `INSERT INTO candles AS c`: the
/// stored row changes only when the incoming one supersedes it.
pub const CANDLE_CONFLICT: &str = "ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET \
     close_time = EXCLUDED.close_time, open = EXCLUDED.open, high = EXCLUDED.high, \
     low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, \
     quote_volume = EXCLUDED.quote_volume, taker_buy_base = EXCLUDED.taker_buy_base, \
     taker_buy_quote = EXCLUDED.taker_buy_quote, trades = EXCLUDED.trades, \
     closed = EXCLUDED.closed, event_time = EXCLUDED.event_time \
     WHERE (EXCLUDED.closed, EXCLUDED.event_time) > (c.closed, c.event_time)";

/// The upsert of the staged candles under [`CANDLE_CONFLICT`].
fn upsert_candles() -> String {
    format!(
        "INSERT INTO candles AS c ({CANDLE_COLUMNS}) \
         SELECT {CANDLE_COLUMNS} FROM candles_stage {CANDLE_CONFLICT}"
    )
}

/// One candle as the values of [`CANDLE_COLUMNS`], encoded as the database takes them.
pub struct CandleRow<'a> {
    candle: &'a Candle,
    symbol: &'a str,
    interval: &'a str,
    open_time: PgTime,
    close_time: PgTime,
    trades: i64,
    event_time: PgTime,
}

impl<'a> CandleRow<'a> {
    /// Columns per row.
    pub const COLUMNS: usize = 15;

    pub fn new(candle: &'a Candle) -> CandleRow<'a> {
        CandleRow {
            candle,
            symbol: candle.symbol.as_str(),
            interval: candle.interval.as_str(),
            open_time: PgTime::from_ms(candle.open_time_ms),
            close_time: PgTime::from_ms(candle.close_time_ms),
            trades: i64::try_from(candle.trades).unwrap_or(i64::MAX),
            event_time: PgTime(candle.event_time_us),
        }
    }

    /// The row's values, in the order of [`CANDLE_COLUMNS`].
    pub fn params(&self) -> [&(dyn ToSql + Sync); CandleRow::COLUMNS] {
        let c = self.candle;
        [
            &self.symbol,
            &self.interval,
            &self.open_time,
            &self.close_time,
            &c.open,
            &c.high,
            &c.low,
            &c.close,
            &c.volume,
            &c.quote_volume,
            &c.taker_buy_base,
            &c.taker_buy_quote,
            &self.trades,
            &c.closed,
            &self.event_time,
        ]
    }
}

const SIGNAL_COLUMNS: &str =
    "\"timestamp\", symbol, timeframe, kind, direction, confidence, price, indicators, event_time";

const SIGNAL_TYPES: [Type; 9] = [
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::JSONB,
    Type::TIMESTAMPTZ,
];

/// A trade id as `bigint`; ids past `i64` never get here (the shard drops them, a REST
/// page holding one is refused: [`crate::message::rest::MAX_STORED_ID`]).
pub(super) fn db_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// The `trades` columns a row fills, in the order of [`TradeRow::params`].
pub const TRADE_COLUMNS: &str = "symbol, trade_id, price, quantity, trade_time, buyer_is_maker";

const TRADE_TYPES: [Type; TradeRow::COLUMNS] = [
    Type::TEXT,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::BOOL,
];

/// One trade as the values of [`TRADE_COLUMNS`]. Ids past `i64` never get here: the
/// shard drops them as out of range.
pub struct TradeRow<'a> {
    trade: &'a Trade,
    symbol: &'a str,
    trade_id: i64,
    trade_time: PgTime,
}

impl<'a> TradeRow<'a> {
    pub const COLUMNS: usize = 6;

    pub fn new(trade: &'a Trade) -> TradeRow<'a> {
        TradeRow {
            trade,
            symbol: trade.symbol.as_str(),
            trade_id: db_id(trade.trade_id),
            trade_time: PgTime::from_ms(trade.trade_time_ms),
        }
    }

    pub fn params(&self) -> [&(dyn ToSql + Sync); TradeRow::COLUMNS] {
        let t = self.trade;
        [
            &self.symbol,
            &self.trade_id,
            &t.price,
            &t.quantity,
            &self.trade_time,
            &t.buyer_is_maker,
        ]
    }
}

/// The `agg_trades` columns a row fills, in the order of [`AggTradeRow::params`].
pub const AGG_TRADE_COLUMNS: &str = "symbol, agg_trade_id, price, quantity, first_trade_id, \
     last_trade_id, trade_time, buyer_is_maker";

const AGG_TRADE_TYPES: [Type; AggTradeRow::COLUMNS] = [
    Type::TEXT,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::INT8,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::BOOL,
];

/// One aggregate trade as the values of [`AGG_TRADE_COLUMNS`].
pub struct AggTradeRow<'a> {
    trade: &'a AggTrade,
    symbol: &'a str,
    ids: [i64; 3],
    trade_time: PgTime,
}

impl<'a> AggTradeRow<'a> {
    pub const COLUMNS: usize = 8;

    pub fn new(trade: &'a AggTrade) -> AggTradeRow<'a> {
        let id = db_id;
        AggTradeRow {
            trade,
            symbol: trade.symbol.as_str(),
            ids: [
                id(trade.agg_trade_id),
                id(trade.first_trade_id),
                id(trade.last_trade_id),
            ],
            trade_time: PgTime::from_ms(trade.trade_time_ms),
        }
    }

    pub fn params(&self) -> [&(dyn ToSql + Sync); AggTradeRow::COLUMNS] {
        let t = self.trade;
        [
            &self.symbol,
            &self.ids[0],
            &t.price,
            &t.quantity,
            &self.ids[1],
            &self.ids[2],
            &self.trade_time,
            &t.buyer_is_maker,
        ]
    }
}

/// What one committed batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Candle rows inserted or updated (rows an older update did not change are not counted).
    pub candles: u64,
    /// Signal rows inserted (replays are not counted).
    pub signals: u64,
    /// Confirmed absences recorded (ones already recorded are not counted).
    pub absences: u64,
    /// Trade and aggregate trade rows inserted (ones already stored are not counted).
    pub trades: u64,
    pub agg_trades: u64,
}

/// How long sent data may stay unacknowledged by the server before the connection
/// counts as lost (`tcp_user_timeout`): long enough for a busy server's pauses, short
/// enough that the writer turns to the spool while the rings still have room.
const UNACKNOWLEDGED_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A connection ready to take batches.
pub struct WriteConn {
    client: Client,
    upsert_candles: String,
}

/// Connects with `DATABASE_URL`, bounding the connect time so an unreachable server
/// cannot stall the writer past its retry schedule.
pub fn connect(url: &str, connect_timeout: std::time::Duration) -> Result<Client, DbError> {
    let mut config: postgres::Config = url.parse().map_err(DbError::Postgres)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    // A server that vanishes without closing the connection (host down, network cut)
    // would otherwise hold a write for the kernel's default of ~15 minutes while the
    // rings fill: unacknowledged data fails the write after this instead.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(UNACKNOWLEDGED_WRITE_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("alphapulse");
    }
    Ok(config.connect(NoTls)?)
}

/// Bounds every statement of `client`'s session: one that waits longer than `lock`
/// for a lock, or runs longer than `statement`, is cancelled by the server (SQLSTATE
/// 55P03, 57014) instead of holding the writer while the rings fill. Set before the
/// staging tables are made: their `LIKE candles` waits for a lock on `candles` too.
pub fn set_timeouts(
    client: &mut Client,
    statement: std::time::Duration,
    lock: std::time::Duration,
) -> Result<(), DbError> {
    client.batch_execute(&format!(
        "SET statement_timeout = {}; SET lock_timeout = {}",
        statement.as_millis(),
        lock.as_millis()
    ))?;
    Ok(())
}

impl WriteConn {
    /// Prepares the staging tables on `client` (the schema must exist).
    pub fn new(mut client: Client) -> Result<WriteConn, DbError> {
        client.batch_execute(CREATE_STAGING)?;
        Ok(WriteConn {
            client,
            upsert_candles: upsert_candles(),
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
            let sink = tx.copy_in(&format!(
                "COPY candles_stage ({CANDLE_COLUMNS}) FROM STDIN (FORMAT binary)"
            ))?;
            let mut w = BinaryCopyInWriter::new(sink, &CANDLE_TYPES);
            for c in &batch.candles {
                w.write(&CandleRow::new(c).params())?;
            }
            w.finish()?;
            done.candles = tx.execute(&self.upsert_candles, &[])?;
        }
        if !batch.signals.is_empty() {
            done.signals =
                copy_and_insert(&mut tx, "signals", SIGNAL_COLUMNS, &SIGNAL_TYPES, |w| {
                    for s in &batch.signals {
                        let row: [&(dyn ToSql + Sync); 9] = [
                            &PgTime::from_ms(s.timestamp_ms),
                            &s.symbol.as_str(),
                            &s.interval.as_str(),
                            &s.kind.as_str(),
                            &s.direction.as_str(),
                            &s.confidence,
                            &s.price,
                            &JsonbText(&s.indicators_json),
                            &PgTime(s.event_time_us),
                        ];
                        w.write(&row)?;
                    }
                    Ok(())
                })?;
        }
        done.absences = insert_absences(&mut tx, &batch.absences)?;
        if !batch.trades.is_empty() {
            done.trades = copy_and_insert(&mut tx, "trades", TRADE_COLUMNS, &TRADE_TYPES, |w| {
                for t in &batch.trades {
                    w.write(&TradeRow::new(t).params())?;
                }
                Ok(())
            })?;
        }
        if !batch.agg_trades.is_empty() {
            let columns = AGG_TRADE_COLUMNS;
            done.agg_trades =
                copy_and_insert(&mut tx, "agg_trades", columns, &AGG_TRADE_TYPES, |w| {
                    for t in &batch.agg_trades {
                        w.write(&AggTradeRow::new(t).params())?;
                    }
                    Ok(())
                })?;
        }
        tx.commit()?;
        Ok(done)
    }
}

/// Binary COPY of rows (written by `rows`, of `types`) into `{table}_stage`, then
/// `INSERT … SELECT … ON CONFLICT DO NOTHING` into `table`; returns the rows inserted.
fn copy_and_insert(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    types: &[Type],
    rows: impl FnOnce(&mut BinaryCopyInWriter<'_>) -> Result<(), postgres::Error>,
) -> Result<u64, DbError> {
    let sink = tx.copy_in(&format!(
        "COPY {table}_stage ({columns}) FROM STDIN (FORMAT binary)"
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, types);
    rows(&mut w)?;
    w.finish()?;
    Ok(tx.execute(
        &format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_stage \
             ON CONFLICT DO NOTHING"
        ),
        &[],
    )?)
}

/// Records a batch's confirmed absences in `tx` (both write paths); returns how many were
/// new. A few per batch at most (a span per answer the exchange confirmed empty), so one
/// statement each.
pub(super) fn insert_absences(
    tx: &mut postgres::Transaction<'_>,
    absences: &[crate::candle::Gap],
) -> Result<u64, DbError> {
    if absences.is_empty() {
        return Ok(0);
    }
    let insert = tx.prepare(INSERT_ABSENCE)?;
    let mut new = 0;
    for g in absences {
        new += tx.execute(
            &insert,
            &[
                &g.symbol.as_str(),
                &g.interval.as_str(),
                &g.from_open_ms,
                &g.to_open_ms,
                &(g.candles() as i64),
            ],
        )?;
    }
    Ok(new)
}

/// One confirmed absence; recording it twice changes nothing.
const INSERT_ABSENCE: &str = "INSERT INTO candle_absences \
     (symbol, timeframe, from_open_time, to_open_time, candles) \
     VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), \
             to_timestamp($4::bigint / 1000.0), $5) \
     ON CONFLICT DO NOTHING";
