//! The JSON records of docs/api.md ("Records"), as served on the API, WebSocket and Redis:
//! the one codec for them. Decimal fields are strings, exactly as received; times are
//! milliseconds.
//!
//! Pure. The serde structs here are the records' reference shape (the API's list reads
//! and status build them); [`mod@write`] appends the same bytes without building them
//! (the dashboard's fan-out and the Redis publisher), and [`read`] parses a record back
//! (the Redis bridge).

use serde::Serialize;

pub mod read;
pub mod write;

pub use read::{parse, Names, RecordError, Remote, MAX_INTERNED_NAMES};
pub use write::{write_agg_trade, write_candle, write_decimal, write_signal, write_trade};

use crate::candle::Gap;
use crate::market::{AggTrade, Candle, Trade};
use crate::signals::{IndicatorValues, Signal};

/// `type:"candle"` record.
#[derive(Debug, Serialize)]
pub struct CandleRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub symbol: String,
    pub timeframe: &'static str,
    pub open_time: i64,
    pub close_time: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub quote_volume: String,
    pub taker_buy_base: String,
    pub taker_buy_quote: String,
    pub trades: u64,
    pub closed: bool,
    pub event_time: i64,
}

impl From<&Candle> for CandleRecord {
    fn from(c: &Candle) -> Self {
        CandleRecord {
            kind: "candle",
            symbol: c.symbol.to_string(),
            timeframe: c.interval.as_str(),
            open_time: c.open_time_ms,
            close_time: c.close_time_ms,
            open: c.open.to_string(),
            high: c.high.to_string(),
            low: c.low.to_string(),
            close: c.close.to_string(),
            volume: c.volume.to_string(),
            quote_volume: c.quote_volume.to_string(),
            taker_buy_base: c.taker_buy_base.to_string(),
            taker_buy_quote: c.taker_buy_quote.to_string(),
            trades: c.trades,
            closed: c.closed,
            event_time: c.event_time_us / 1000,
        }
    }
}

/// A recorded gap, for the status API and the backfill.
#[derive(Debug, Serialize)]
pub struct GapRecord {
    pub symbol: String,
    pub timeframe: &'static str,
    pub from_open_time: i64,
    pub to_open_time: i64,
    pub candles: u64,
}

impl From<&Gap> for GapRecord {
    fn from(g: &Gap) -> Self {
        GapRecord {
            symbol: g.symbol.to_string(),
            timeframe: g.interval.as_str(),
            from_open_time: g.from_open_ms,
            to_open_time: g.to_open_ms,
            candles: g.candles(),
        }
    }
}

/// `type:"signal"` record.
#[derive(Debug, Serialize)]
pub struct SignalRecord {
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
    pub timestamp: i64,
    pub symbol: String,
    pub timeframe: &'static str,
    pub kind: &'static str,
    pub direction: &'static str,
    pub confidence: f64,
    pub price: String,
    pub indicators: serde_json::Map<String, serde_json::Value>,
    pub event_time: i64,
}

/// The `indicators` object of a signal record. A value that is not finite has no JSON
/// number: it is left out.
pub fn indicators_object(values: &IndicatorValues) -> serde_json::Map<String, serde_json::Value> {
    values
        .iter()
        .filter_map(|(n, v)| serde_json::Number::from_f64(v).map(|x| (n.to_string(), x.into())))
        .collect()
}

impl From<&Signal> for SignalRecord {
    fn from(s: &Signal) -> Self {
        SignalRecord {
            kind_tag: "signal",
            timestamp: s.timestamp_ms,
            symbol: s.symbol.to_string(),
            timeframe: s.interval.as_str(),
            kind: s.kind.as_str(),
            direction: s.direction.as_str(),
            confidence: s.confidence,
            price: s.price.to_string(),
            indicators: indicators_object(&s.indicators),
            event_time: s.event_time_us / 1000,
        }
    }
}

/// `type:"trade"` record: one trade, as stored in `trades`.
#[derive(Debug, Serialize)]
pub struct TradeRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub symbol: String,
    pub trade_id: u64,
    pub price: String,
    pub quantity: String,
    pub trade_time: i64,
    pub buyer_is_maker: bool,
    pub event_time: i64,
}

impl From<&Trade> for TradeRecord {
    fn from(t: &Trade) -> Self {
        TradeRecord {
            kind: "trade",
            symbol: t.symbol.to_string(),
            trade_id: t.trade_id,
            price: t.price.to_string(),
            quantity: t.quantity.to_string(),
            trade_time: t.trade_time_ms,
            buyer_is_maker: t.buyer_is_maker,
            event_time: t.event_time_us / 1000,
        }
    }
}

/// `type:"agg_trade"` record: one aggregate trade, as stored in `agg_trades`.
#[derive(Debug, Serialize)]
pub struct AggTradeRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub symbol: String,
    pub agg_trade_id: u64,
    pub price: String,
    pub quantity: String,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub trade_time: i64,
    pub buyer_is_maker: bool,
    pub event_time: i64,
}

impl From<&AggTrade> for AggTradeRecord {
    fn from(t: &AggTrade) -> Self {
        AggTradeRecord {
            kind: "agg_trade",
            symbol: t.symbol.to_string(),
            agg_trade_id: t.agg_trade_id,
            price: t.price.to_string(),
            quantity: t.quantity.to_string(),
            first_trade_id: t.first_trade_id,
            last_trade_id: t.last_trade_id,
            trade_time: t.trade_time_ms,
            buyer_is_maker: t.buyer_is_maker,
            event_time: t.event_time_us / 1000,
        }
    }
}

/// A trade's record as a JSON value (the dead-letter file).
pub fn trade_json(t: &Trade) -> serde_json::Value {
    serde_json::to_value(TradeRecord::from(t)).unwrap_or(serde_json::Value::Null)
}

/// An aggregate trade's record as a JSON value (the dead-letter file).
pub fn agg_trade_json(t: &AggTrade) -> serde_json::Value {
    serde_json::to_value(AggTradeRecord::from(t)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
pub(crate) mod tests;
