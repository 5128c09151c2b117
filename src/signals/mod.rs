//! Trading signals: what the shard cores emit when a rule fires on a closed candle.
//!
//! This module holds the signal vocabulary shared by every role (the shard that makes
//! signals, the sinks that store and publish them, the dashboard that shows them). The
//! indicator and rule engine lives in submodules:
//! - [`indicators`]: incremental SMA, EMA, RSI, MACD, Bollinger bands, ATR (pure).
//! - [`rules`]: the signal rules and the per-(symbol, timeframe) [`rules::SignalEngine`].
//! - [`params`]: indicator periods and rule thresholds per timeframe, and the warm-start
//!   counts (read from the `[signals]` table by [`crate::config::signals`]).
//!
//! Warm starts from REST klines are fetched by [`crate::backfill`] and applied by the
//! shard ([`crate::shard`]).

pub mod indicators;
pub mod params;
pub mod rules;

use crate::market::{Decimal, Interval, Symbol};

/// The rule that produced a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    EmaCross,
    Rsi,
    MacdCross,
    Bollinger,
    VolumeSpike,
    /// The local order book leans to one side (only for symbols with a book).
    BookImbalance,
}

impl SignalKind {
    pub const ALL: [SignalKind; 6] = [
        SignalKind::EmaCross,
        SignalKind::Rsi,
        SignalKind::MacdCross,
        SignalKind::Bollinger,
        SignalKind::VolumeSpike,
        SignalKind::BookImbalance,
    ];

    /// The `kind` string of the signal record.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::EmaCross => "ema_cross",
            SignalKind::Rsi => "rsi",
            SignalKind::MacdCross => "macd_cross",
            SignalKind::Bollinger => "bollinger",
            SignalKind::VolumeSpike => "volume_spike",
            SignalKind::BookImbalance => "book_imbalance",
        }
    }

    pub fn parse(s: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Buy,
    Sell,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Buy => "buy",
            Direction::Sell => "sell",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "buy" => Some(Direction::Buy),
            "sell" => Some(Direction::Sell),
            _ => None,
        }
    }
}

/// Most indicator values one signal carries.
pub const MAX_SIGNAL_INDICATORS: usize = 6;

/// The indicator values that produced a signal: a fixed-capacity list of named numbers
/// (no allocation, so a signal fits in a ring slot).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct IndicatorValues {
    len: u8,
    items: [(&'static str, f64); MAX_SIGNAL_INDICATORS],
}

impl IndicatorValues {
    pub fn new() -> IndicatorValues {
        IndicatorValues::default()
    }

    /// Adds `name = value`; past [`MAX_SIGNAL_INDICATORS`] the value is ignored (a rule
    /// names at most that many, which its tests check).
    pub fn push(&mut self, name: &'static str, value: f64) {
        if (self.len as usize) < MAX_SIGNAL_INDICATORS {
            self.items[self.len as usize] = (name, value);
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.items[..self.len as usize].iter().copied()
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One trading signal (docs/api.md, "Records": signal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Signal {
    pub symbol: Symbol,
    pub interval: Interval,
    pub kind: SignalKind,
    pub direction: Direction,
    /// 0..=1, as documented per rule.
    pub confidence: f64,
    /// The close of the candle the rule fired on, exactly as received.
    pub price: Decimal,
    /// The candle's close time, ms (the record's `timestamp`).
    pub timestamp_ms: i64,
    /// Exchange event time of the closing kline update, µs.
    pub event_time_us: i64,
    pub indicators: IndicatorValues,
}
