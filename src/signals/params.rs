//! Signal settings as the signal engine uses them: indicator periods and rule
//! thresholds per timeframe ([`SignalParams`]), and the warm-start and re-warm counts
//! ([`SignalsConfig`]). Plain values with their defaults, no parsing: the `[signals]`
//! table of the configuration file is read and checked by [`crate::config`], which
//! hands the shard cores a finished [`SignalsConfig`].

use crate::market::Interval;

/// Most klines one warm start fetches per (symbol, timeframe): one `/api/v3/klines`
/// call returns at most 1000.
pub const MAX_WARM_CANDLES: u32 = 1000;

/// Indicator periods and rule thresholds of one timeframe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalParams {
    /// Fast EMA of `ema_cross`.
    pub ema_fast: u32,
    /// Slow EMA of `ema_cross`; must exceed `ema_fast`.
    pub ema_slow: u32,
    pub rsi_period: u32,
    /// `rsi` buys when the RSI rises back to this from below.
    pub rsi_oversold: f64,
    /// `rsi` sells when the RSI falls back to this from above; must exceed
    /// `rsi_oversold`.
    pub rsi_overbought: f64,
    pub macd_fast: u32,
    /// Must exceed `macd_fast`.
    pub macd_slow: u32,
    pub macd_signal: u32,
    pub bollinger_period: u32,
    /// Band width in population standard deviations.
    pub bollinger_k: f64,
    pub atr_period: u32,
    pub volume_period: u32,
    /// `volume_spike` fires when the volume exceeds this many times its SMA.
    pub volume_spike_k: f64,
    /// `book_imbalance` fires when the book's imbalance reaches this (buy) or its
    /// negative (sell), in (0, 1).
    pub book_imbalance: f64,
}

impl Default for SignalParams {
    fn default() -> Self {
        SignalParams {
            ema_fast: 9,
            ema_slow: 21,
            rsi_period: 14,
            rsi_oversold: 30.0,
            rsi_overbought: 70.0,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            bollinger_period: 20,
            bollinger_k: 2.0,
            atr_period: 14,
            volume_period: 20,
            volume_spike_k: 3.0,
            book_imbalance: 0.6,
        }
    }
}

impl SignalParams {
    /// Candles until every indicator has a value (the MACD signal line is the slowest:
    /// `macd_slow + macd_signal − 1`), plus one so every rule has a previous state.
    pub fn warm_up_candles(&self) -> u32 {
        let slowest = [
            self.ema_slow,
            self.rsi_period + 1,
            self.macd_slow + self.macd_signal - 1,
            self.bollinger_period,
            self.atr_period + 1,
            self.volume_period,
        ];
        slowest.into_iter().max().unwrap_or(0) + 1
    }
}

/// The `[signals]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalsConfig {
    /// Compute indicators and signals at all.
    pub enabled: bool,
    /// Closed klines fetched per (symbol, timeframe) at startup and on a re-warm, so the
    /// indicators are warm before the first live candle closes. 0 disables warm starts.
    pub warm_candles: u32,
    /// A gap of more than this many candles (an outage) resets the series and fetches
    /// the recent klines again, instead of computing across the hole.
    pub rewarm_after_candles: u32,
    /// Parameters of every timeframe without an override.
    pub defaults: SignalParams,
    /// Per-timeframe parameters (each the defaults with that table's keys applied).
    pub timeframes: Vec<(Interval, SignalParams)>,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            enabled: true,
            // The slowest default indicator (the MACD signal line) needs 34 candles;
            // 200 lets the EMAs forget their seed before the first live candle.
            warm_candles: 200,
            rewarm_after_candles: 30,
            defaults: SignalParams::default(),
            timeframes: Vec::new(),
        }
    }
}

impl SignalsConfig {
    /// The parameters of `tf`.
    pub fn params(&self, tf: Interval) -> SignalParams {
        self.timeframes
            .iter()
            .find(|(t, _)| *t == tf)
            .map_or(self.defaults, |(_, p)| *p)
    }
}
