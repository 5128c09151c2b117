//! Reads a JSON record (docs/api.md) received from another instance back into a [`Candle`]
//! or [`Signal`].

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use serde::Deserialize;

use crate::market::{Candle, Decimal, Interval, Symbol};
use crate::signals::{Direction, IndicatorValues, Signal, SignalKind};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad {field}: {value:?}")]
    Field { field: &'static str, value: String },
}

/// A record received from another instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Remote {
    Candle(Candle),
    Signal(Signal),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Candle(CandleIn),
    Signal(SignalIn),
}

#[derive(Deserialize)]
struct CandleIn {
    symbol: String,
    timeframe: String,
    open_time: i64,
    close_time: i64,
    open: String,
    high: String,
    low: String,
    close: String,
    volume: String,
    quote_volume: String,
    taker_buy_base: String,
    taker_buy_quote: String,
    trades: u64,
    closed: bool,
    event_time: i64,
}

#[derive(Deserialize)]
struct SignalIn {
    timestamp: i64,
    symbol: String,
    timeframe: String,
    kind: String,
    direction: String,
    confidence: f64,
    price: String,
    indicators: BTreeMap<String, f64>,
    event_time: i64,
}

/// Most distinct indicator names kept from other instances. Signal values name their
/// indicators with `&'static str`, so names read off the wire are interned for the life
/// of the process; the rules name a handful, and this bound keeps a misbehaving
/// publisher from growing memory without end (names past it are left out).
pub const MAX_INTERNED_NAMES: usize = 256;

/// Interned indicator names (owned by the bridge thread).
#[derive(Default)]
pub struct Names(HashSet<&'static str>);

impl Names {
    pub(super) fn get(&mut self, name: &str) -> Option<&'static str> {
        if let Some(n) = self.0.get(name) {
            return Some(n);
        }
        if self.0.len() >= MAX_INTERNED_NAMES {
            return None;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        self.0.insert(leaked);
        Some(leaked)
    }
}

fn field<T>(field: &'static str, value: &str, r: Option<T>) -> Result<T, RecordError> {
    r.ok_or_else(|| RecordError::Field {
        field,
        value: value.chars().take(64).collect(),
    })
}

fn symbol(s: &str) -> Result<Symbol, RecordError> {
    field("symbol", s, Symbol::new(s).ok())
}

fn interval(s: &str) -> Result<Interval, RecordError> {
    field("timeframe", s, Interval::parse(s).ok())
}

fn decimal(name: &'static str, s: &str) -> Result<Decimal, RecordError> {
    // Exact parsing keeps the scale, so the record re-serializes as received.
    field(
        name,
        s,
        Decimal::from_str_exact(s)
            .or_else(|_| Decimal::from_str(s))
            .ok(),
    )
}

/// Parses a candle or signal record (as published by
/// [`write_candle`](super::write_candle) / [`write_signal`](super::write_signal)). Event
/// times come back at the record's millisecond precision.
pub fn parse(payload: &[u8], names: &mut Names) -> Result<Remote, RecordError> {
    match serde_json::from_slice::<Incoming>(payload)? {
        Incoming::Candle(c) => Ok(Remote::Candle(Candle {
            symbol: symbol(&c.symbol)?,
            interval: interval(&c.timeframe)?,
            open_time_ms: c.open_time,
            close_time_ms: c.close_time,
            open: decimal("open", &c.open)?,
            high: decimal("high", &c.high)?,
            low: decimal("low", &c.low)?,
            close: decimal("close", &c.close)?,
            volume: decimal("volume", &c.volume)?,
            quote_volume: decimal("quote_volume", &c.quote_volume)?,
            taker_buy_base: decimal("taker_buy_base", &c.taker_buy_base)?,
            taker_buy_quote: decimal("taker_buy_quote", &c.taker_buy_quote)?,
            trades: c.trades,
            // Trade ids are not part of the record.
            first_trade_id: 0,
            last_trade_id: 0,
            closed: c.closed,
            event_time_us: c.event_time.saturating_mul(1000),
        })),
        Incoming::Signal(s) => {
            let mut indicators = IndicatorValues::new();
            for (name, v) in &s.indicators {
                if let Some(name) = names.get(name) {
                    indicators.push(name, *v);
                }
            }
            Ok(Remote::Signal(Signal {
                symbol: symbol(&s.symbol)?,
                interval: interval(&s.timeframe)?,
                kind: field("kind", &s.kind, SignalKind::parse(&s.kind))?,
                direction: field("direction", &s.direction, Direction::parse(&s.direction))?,
                confidence: s.confidence,
                price: decimal("price", &s.price)?,
                timestamp_ms: s.timestamp,
                event_time_us: s.event_time.saturating_mul(1000),
                indicators,
            }))
        }
    }
}
