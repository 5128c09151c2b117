//! The signal rules and the per-(symbol, timeframe) engine that feeds them.
//!
//! Runs on: shard cores, one [`SignalEngine`] per (symbol, timeframe) the shard owns.
//! Pure: no I/O, no clocks. In: closed candles ([`Bar`]s), oldest first. Out: the
//! indicators after each candle ([`Snapshot`]) and, through a callback, each rule that
//! fired on it ([`Fired`]). The same candle sequence always gives the same signals: the
//! rules read only the indicators and their own state, which only the candles change.
//!
//! # The rules
//! Each rule fires on a *change* of state between two consecutive closed candles, never
//! on a state that merely persists, and never on the first candle its inputs are warm
//! (there is no previous state to change from). Each has a documented confidence in
//! 0..=1: 0.5 for the bare event, rising to 1 with its strength.
//! - `ema_cross`: the fast EMA (default 9) crosses the slow EMA (default 21). Above →
//!   buy, below → sell. An EMA equal to the other is no side: the cross fires when the
//!   difference takes the other sign than it last had. Confidence `0.5 + 0.5 ·
//!   min(1, |fast − slow| / ATR)` (0.5 while the ATR is not warm or zero). Carries
//!   `ema_fast`, `ema_slow`, `atr`.
//! - `rsi`: the RSI leaves a zone back towards the middle: from below `rsi_oversold`
//!   (30) to at or above it → buy; from above `rsi_overbought` (70) to at or below it →
//!   sell. Confidence grows with how deep the excursion went: `0.5 + 0.5 · min(1,
//!   (oversold − lowest RSI) / oversold)`, and likewise `(highest − overbought) /
//!   (100 − overbought)`. Carries `rsi` and `rsi_extreme` (that lowest/highest value).
//! - `macd_cross`: the MACD line crosses its signal line; above → buy, below → sell,
//!   as `ema_cross`. Confidence `0.5 + 0.5 · min(1, |histogram| / ATR)`. Carries
//!   `macd`, `macd_signal`, `macd_hist`, `atr`.
//! - `bollinger`: the close goes outside a band it was not outside at the previous
//!   candle: below the lower band → buy, above the upper → sell (mean reversion: the
//!   close is `k` deviations from its average). Confidence `0.5 + 0.5 · min(1, distance
//!   beyond the band / σ)`. Carries `bb_upper`, `bb_middle`, `bb_lower`, `bb_std`.
//! - `volume_spike`: the volume exceeds `k` (3) times the volume SMA of the candles
//!   *before* it (a spike does not raise its own baseline), with the direction of the
//!   candle: close above open → buy, below → sell, equal → nothing (no direction). No
//!   baseline (not warm, or zero volume throughout) → nothing. Confidence `0.5 + 0.5 ·
//!   min(1, (ratio − k) / k)`. Carries `volume`, `volume_sma`, `volume_ratio`.
//! - `book_imbalance` (symbols with a local book, [`crate::book`]): at the candle's
//!   close the book's imbalance over its published top levels, `(Σbid − Σask) /
//!   (Σbid + Σask)`, reaches `book_imbalance` (0.6) → buy, or `−book_imbalance` → sell,
//!   having not been in that zone at the previous close. Only a live close with a valid
//!   book counts; a close without one (history, backfill, a resyncing book) forgets the
//!   previous zone, so the rule needs two book-carrying closes in a row. Confidence
//!   `0.5 + 0.5 · min(1, (|imbalance| − k) / (1 − k))`. Carries `imbalance`, `spread`,
//!   `mid`, `microprice`.
//!
//! # Order and repeats
//! A candle whose open time is not after the last applied one is skipped (a duplicate
//! or a late gap fill: indicators only move forward). Missing candles (a gap) are not
//! invented: the next candle is applied as the next value. The shard re-warms a series
//! after a long gap (see [`super::warm`]).

use crate::market::{Candle, Decimal};

use super::indicators::{Atr, Bollinger, BollingerValue, Ema, Macd, MacdValue, Rsi, Sma};
use super::params::SignalParams;
use super::{Direction, IndicatorValues, SignalKind};

/// The numbers of one closed candle the indicators read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bar {
    pub open_time_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// The symbol's local book at the close, when it has a valid one.
    pub book: Option<BookSignal>,
}

/// What a local book says at a candle's close, for the `book_imbalance` rule.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BookSignal {
    /// In [−1, 1]: positive when more rests on the bid side.
    pub imbalance: f64,
    pub spread: f64,
    pub mid: f64,
    pub microprice: f64,
}

impl Bar {
    pub fn from_candle(c: &Candle) -> Bar {
        Bar {
            open_time_ms: c.open_time_ms,
            open: decimal_to_f64(c.open),
            high: decimal_to_f64(c.high),
            low: decimal_to_f64(c.low),
            close: decimal_to_f64(c.close),
            volume: decimal_to_f64(c.volume),
            book: None,
        }
    }
}

/// Powers of ten exactly representable as `f64` (10^22 is the last).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The `f64` nearest a decimal. For every exchange price and quantity (mantissa below
/// 2^53, at most 22 decimals) this is one correctly rounded division of two exact
/// numbers, so `"0.1"` and `"0.10"` give the same `f64`, and so does any other parser
/// that rounds correctly (the reference data's). Others fall back to `rust_decimal`.
#[inline]
pub fn decimal_to_f64(d: Decimal) -> f64 {
    const EXACT: i128 = 1 << 53;
    let m = d.mantissa();
    let scale = d.scale() as usize;
    if (-EXACT..=EXACT).contains(&m) && scale < POW10.len() {
        m as f64 / POW10[scale]
    } else {
        use rust_decimal::prelude::ToPrimitive;
        d.to_f64().unwrap_or(f64::NAN)
    }
}

/// The indicators of a series after its latest candle; `None` until warm.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// SMA of closes over `bollinger_period`: the Bollinger middle band.
    pub sma: Option<f64>,
    pub ema_fast: Option<f64>,
    pub ema_slow: Option<f64>,
    pub rsi: Option<f64>,
    /// The MACD line alone, warm before its signal line.
    pub macd_line: Option<f64>,
    /// The MACD line, signal line and histogram once the signal line is warm.
    pub macd: Option<MacdValue>,
    pub bollinger: Option<BollingerValue>,
    pub atr: Option<f64>,
    /// SMA of volumes over `volume_period`, this candle included.
    pub volume_sma: Option<f64>,
}

/// One rule that fired on a candle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fired {
    pub kind: SignalKind,
    pub direction: Direction,
    pub confidence: f64,
    pub indicators: IndicatorValues,
}

/// The sign of a difference: -1, 0 or 1.
fn side(x: f64) -> i8 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

fn direction(side: i8) -> Direction {
    if side > 0 {
        Direction::Buy
    } else {
        Direction::Sell
    }
}

/// `0.5 + 0.5 · min(1, strength)`, for a strength ≥ 0 (NaN counts as 0).
fn confidence(strength: f64) -> f64 {
    let s = if strength.is_finite() {
        strength.clamp(0.0, 1.0)
    } else if strength == f64::INFINITY {
        1.0
    } else {
        0.0
    };
    0.5 + 0.5 * s
}

/// The state the rules keep between candles.
#[derive(Clone, Copy, Debug, Default)]
struct RuleState {
    /// Last non-zero sign of `ema_fast − ema_slow` (0: none yet).
    ema_side: i8,
    /// Last non-zero sign of `macd − signal` (0: none yet).
    macd_side: i8,
    /// RSI zone at the previous candle: -1 oversold, 0 between, 1 overbought.
    rsi_zone: Option<i8>,
    /// Lowest (oversold) or highest (overbought) RSI of the current excursion.
    rsi_extreme: f64,
    /// Close against the bands at the previous candle: -1 below, 0 inside, 1 above.
    bb_side: Option<i8>,
    /// Book imbalance zone at the previous close: -1 sell side, 0 between, 1 buy side;
    /// `None` when that close had no book.
    book_zone: Option<i8>,
}

/// Indicators and rules of one (symbol, timeframe).
#[derive(Clone, Debug)]
pub struct SignalEngine {
    params: SignalParams,
    ema_fast: Ema,
    ema_slow: Ema,
    rsi: Rsi,
    macd: Macd,
    bollinger: Bollinger,
    atr: Atr,
    volume: Sma,
    rules: RuleState,
    last_open_ms: Option<i64>,
    applied: u64,
}

impl SignalEngine {
    pub fn new(params: &SignalParams) -> SignalEngine {
        SignalEngine {
            params: *params,
            ema_fast: Ema::new(params.ema_fast),
            ema_slow: Ema::new(params.ema_slow),
            rsi: Rsi::new(params.rsi_period),
            macd: Macd::new(params.macd_fast, params.macd_slow, params.macd_signal),
            bollinger: Bollinger::new(params.bollinger_period, params.bollinger_k),
            atr: Atr::new(params.atr_period),
            volume: Sma::new(params.volume_period),
            rules: RuleState::default(),
            last_open_ms: None,
            applied: 0,
        }
    }

    pub fn params(&self) -> &SignalParams {
        &self.params
    }

    /// Forgets every candle (allocates the windows anew: only on a re-warm).
    pub fn reset(&mut self) {
        *self = SignalEngine::new(&self.params);
    }

    /// Open time of the last candle applied.
    pub fn last_open_ms(&self) -> Option<i64> {
        self.last_open_ms
    }

    /// Candles applied since the engine was made or reset.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn snapshot(&self) -> Snapshot {
        let bollinger = self.bollinger.value();
        Snapshot {
            sma: bollinger.map(|b| b.middle),
            ema_fast: self.ema_fast.value(),
            ema_slow: self.ema_slow.value(),
            rsi: self.rsi.value(),
            macd_line: self.macd.line(),
            macd: self.macd.value(),
            bollinger,
            atr: self.atr.value(),
            volume_sma: self.volume.value(),
        }
    }

    /// Applies one closed candle and calls `fire` for each rule that fired on it, in the
    /// order of [`SignalKind::ALL`]. Returns false (and changes nothing) when the candle
    /// is not after the last one applied.
    #[inline]
    pub fn update(&mut self, bar: &Bar, mut fire: impl FnMut(Fired)) -> bool {
        if self
            .last_open_ms
            .is_some_and(|last| bar.open_time_ms <= last)
        {
            return false;
        }
        self.last_open_ms = Some(bar.open_time_ms);
        self.applied += 1;
        let p = self.params;
        let baseline = self.volume.value();
        let ema_fast = self.ema_fast.update(bar.close);
        let ema_slow = self.ema_slow.update(bar.close);
        let rsi = self.rsi.update(bar.close);
        let macd = self.macd.update(bar.close);
        let bands = self.bollinger.update(bar.close);
        let atr = self.atr.update(bar.high, bar.low, bar.close);
        self.volume.update(bar.volume);
        let r = &mut self.rules;
        let per_atr = |gap: f64| match atr {
            Some(a) if a > 0.0 => confidence(gap.abs() / a),
            _ => 0.5,
        };

        if let (Some(f), Some(s)) = (ema_fast, ema_slow) {
            let now = side(f - s);
            if now != 0 {
                if r.ema_side != 0 && now != r.ema_side {
                    let mut ind = IndicatorValues::new();
                    ind.push("ema_fast", f);
                    ind.push("ema_slow", s);
                    ind.push("atr", atr.unwrap_or(f64::NAN));
                    fire(Fired {
                        kind: SignalKind::EmaCross,
                        direction: direction(now),
                        confidence: per_atr(f - s),
                        indicators: ind,
                    });
                }
                r.ema_side = now;
            }
        }

        if let Some(v) = rsi {
            let zone = if v < p.rsi_oversold {
                -1
            } else if v > p.rsi_overbought {
                1
            } else {
                0
            };
            let fired = match r.rsi_zone {
                Some(-1) if zone != -1 => Some((
                    Direction::Buy,
                    (p.rsi_oversold - r.rsi_extreme) / p.rsi_oversold,
                )),
                Some(1) if zone != 1 => Some((
                    Direction::Sell,
                    (r.rsi_extreme - p.rsi_overbought) / (100.0 - p.rsi_overbought),
                )),
                _ => None,
            };
            if let Some((dir, depth)) = fired {
                let mut ind = IndicatorValues::new();
                ind.push("rsi", v);
                ind.push("rsi_extreme", r.rsi_extreme);
                fire(Fired {
                    kind: SignalKind::Rsi,
                    direction: dir,
                    confidence: confidence(depth),
                    indicators: ind,
                });
            }
            if zone != 0 && r.rsi_zone != Some(zone) {
                r.rsi_extreme = v;
            } else if zone == -1 {
                r.rsi_extreme = r.rsi_extreme.min(v);
            } else if zone == 1 {
                r.rsi_extreme = r.rsi_extreme.max(v);
            }
            r.rsi_zone = Some(zone);
        }

        if let Some(m) = macd {
            let now = side(m.histogram);
            if now != 0 {
                if r.macd_side != 0 && now != r.macd_side {
                    let mut ind = IndicatorValues::new();
                    ind.push("macd", m.line);
                    ind.push("macd_signal", m.signal);
                    ind.push("macd_hist", m.histogram);
                    ind.push("atr", atr.unwrap_or(f64::NAN));
                    fire(Fired {
                        kind: SignalKind::MacdCross,
                        direction: direction(now),
                        confidence: per_atr(m.histogram),
                        indicators: ind,
                    });
                }
                r.macd_side = now;
            }
        }

        if let Some(b) = bands {
            let now = if bar.close > b.upper {
                1
            } else if bar.close < b.lower {
                -1
            } else {
                0
            };
            if now != 0 && r.bb_side.is_some_and(|before| before != now) {
                let beyond = if now > 0 {
                    bar.close - b.upper
                } else {
                    b.lower - bar.close
                };
                let mut ind = IndicatorValues::new();
                ind.push("bb_upper", b.upper);
                ind.push("bb_middle", b.middle);
                ind.push("bb_lower", b.lower);
                ind.push("bb_std", b.std_dev);
                fire(Fired {
                    kind: SignalKind::Bollinger,
                    // Below the lower band is a buy: the opposite of the side.
                    direction: direction(-now),
                    confidence: if b.std_dev > 0.0 {
                        confidence(beyond / b.std_dev)
                    } else {
                        0.5
                    },
                    indicators: ind,
                });
            }
            r.bb_side = Some(now);
        }

        if let Some(base) = baseline {
            let candle_side = side(bar.close - bar.open);
            if base > 0.0 && bar.volume > p.volume_spike_k * base && candle_side != 0 {
                let ratio = bar.volume / base;
                let mut ind = IndicatorValues::new();
                ind.push("volume", bar.volume);
                ind.push("volume_sma", base);
                ind.push("volume_ratio", ratio);
                fire(Fired {
                    kind: SignalKind::VolumeSpike,
                    direction: direction(candle_side),
                    confidence: confidence((ratio - p.volume_spike_k) / p.volume_spike_k),
                    indicators: ind,
                });
            }
        }

        let r = &mut self.rules;
        r.book_zone = match bar.book {
            Some(b) if b.imbalance.is_finite() => {
                let k = p.book_imbalance;
                let zone = if b.imbalance >= k {
                    1
                } else if b.imbalance <= -k {
                    -1
                } else {
                    0
                };
                if zone != 0 && r.book_zone.is_some_and(|before| before != zone) {
                    let mut ind = IndicatorValues::new();
                    ind.push("imbalance", b.imbalance);
                    ind.push("spread", b.spread);
                    ind.push("mid", b.mid);
                    ind.push("microprice", b.microprice);
                    fire(Fired {
                        kind: SignalKind::BookImbalance,
                        direction: direction(zone),
                        confidence: confidence((b.imbalance.abs() - k) / (1.0 - k)),
                        indicators: ind,
                    });
                }
                Some(zone)
            }
            _ => None,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly_and_scale_free() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(decimal_to_f64(d("0.1")), 0.1);
        assert_eq!(decimal_to_f64(d("0.10000000")), 0.1);
        assert_eq!(decimal_to_f64(d("50123.45")), 50123.45);
        assert_eq!(decimal_to_f64(d("-3")), -3.0);
    }

    #[test]
    fn book_imbalance_fires_on_entering_a_zone_between_book_carrying_closes() {
        let mut engine = SignalEngine::new(&SignalParams::default());
        let mut fired = Vec::new();
        let imbalances = [
            Some(0.0),
            Some(0.7),  // enters the buy zone: buy
            Some(0.9),  // stays: nothing
            Some(-0.8), // enters the sell zone: sell
            None,       // no book at this close: the zone is forgotten
            Some(0.7),  // no previous zone to leave: nothing
            Some(0.1),
            Some(-1.0), // sell at full confidence
        ];
        for (i, imb) in imbalances.iter().enumerate() {
            let bar = Bar {
                open_time_ms: i as i64 * 60_000,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
                book: imb.map(|imbalance| BookSignal {
                    imbalance,
                    spread: 0.01,
                    mid: 1.0,
                    microprice: 1.0,
                }),
            };
            engine.update(&bar, |f| {
                if f.kind == SignalKind::BookImbalance {
                    fired.push((i, f.direction, f.confidence, f.indicators.get("imbalance")));
                }
            });
        }
        let conf = |x: f64| 0.5 + 0.5 * (x - 0.6) / 0.4;
        assert_eq!(fired.len(), 3, "{fired:?}");
        assert_eq!((fired[0].0, fired[0].1), (1, Direction::Buy));
        assert!((fired[0].2 - conf(0.7)).abs() < 1e-12);
        assert_eq!(fired[0].3, Some(0.7));
        assert_eq!((fired[1].0, fired[1].1), (3, Direction::Sell));
        assert_eq!(
            (fired[2].0, fired[2].1, fired[2].2),
            (7, Direction::Sell, 1.0)
        );
    }

    #[test]
    fn confidence_is_bounded() {
        assert_eq!(confidence(f64::NAN), 0.5);
        assert_eq!(confidence(f64::INFINITY), 1.0);
        assert_eq!(confidence(-1.0), 0.5);
        assert_eq!(confidence(0.5), 0.75);
    }
}
