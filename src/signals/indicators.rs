//! Incremental technical indicators over closed candles.
//!
//! Runs on: shard cores, inside each (symbol, timeframe)'s [`super::engine::SignalEngine`].
//! Pure: no I/O, no clocks. In: one value (or one candle's high, low, close) per closed
//! candle, oldest first. Out: the indicator's value once it is warm, `None` before (an
//! indicator that has not seen enough candles has no value, which is not the same as 0).
//!
//! Every update is O(1) and allocation-free: windows are allocated once, when the
//! indicator is made. The definitions are the standard ones traders check against (the
//! same as TA-Lib's defaults); `tests/data/` holds reference values computed with TA-Lib
//! and the tests compare against them to 1e-9 relative.

/// Longest period any indicator accepts. Windows are allocated per (symbol, timeframe),
/// so this bounds the memory of one series; no common setting comes near it.
pub const MAX_PERIOD: u32 = 1000;

/// A fixed window of the last `n` values with running sums of the values and of their
/// squares, both taken about a shift (see [`Window::resum`]).
///
/// Running sums make each update O(1). Two things keep them exact enough for 1e-9
/// relative: the sums are taken about a shift near the window's mean, so the variance
/// `E[d²] − E[d]²` does not cancel catastrophically when prices are large and their
/// spread is small (a 50 000 price with a spread of 5); and each time the window wraps
/// the sums are recomputed from the stored values, so rounding from adding and
/// subtracting never accumulates over a long run. That recomputation is `n` additions
/// once per `n` updates: amortised O(1), with no allocation.
#[derive(Clone, Debug)]
pub struct Window {
    values: Box<[f64]>,
    pos: usize,
    filled: usize,
    shift: f64,
    sum: f64,
    sum_sq: f64,
}

impl Window {
    /// A window of `n` values (at least 1, at most [`MAX_PERIOD`]).
    pub fn new(n: u32) -> Window {
        let n = n.clamp(1, MAX_PERIOD) as usize;
        Window {
            values: vec![0.0; n].into_boxed_slice(),
            pos: 0,
            filled: 0,
            shift: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// True once the window holds `n` values.
    pub fn full(&self) -> bool {
        self.filled == self.values.len()
    }

    #[inline]
    pub fn push(&mut self, x: f64) {
        let n = self.values.len();
        if self.filled == n {
            let old = self.values[self.pos] - self.shift;
            self.sum -= old;
            self.sum_sq -= old * old;
        } else {
            if self.filled == 0 {
                // The first value is the first shift: the sums stay small from the start.
                self.shift = x;
            }
            self.filled += 1;
        }
        self.values[self.pos] = x;
        let d = x - self.shift;
        self.sum += d;
        self.sum_sq += d * d;
        self.pos += 1;
        if self.pos == n {
            self.pos = 0;
            self.resum();
        }
    }

    /// Recomputes the sums from the stored values about a new shift: their mean.
    fn resum(&mut self) {
        let held = &self.values[..self.filled];
        let count = held.len() as f64;
        let mean = held.iter().sum::<f64>() / count;
        self.shift = mean;
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for &x in held {
            let d = x - mean;
            sum += d;
            sum_sq += d * d;
        }
        self.sum = sum;
        self.sum_sq = sum_sq;
    }

    /// Mean of the window once full.
    #[inline]
    pub fn mean(&self) -> Option<f64> {
        self.full()
            .then(|| self.shift + self.sum / self.values.len() as f64)
    }

    /// Population variance (divided by `n`, not `n − 1`) once full; never negative.
    #[inline]
    pub fn variance(&self) -> Option<f64> {
        self.full().then(|| {
            let n = self.values.len() as f64;
            let m = self.sum / n;
            (self.sum_sq / n - m * m).max(0.0)
        })
    }
}

/// Simple moving average: the mean of the last `n` values. First value at the `n`-th
/// input.
#[derive(Clone, Debug)]
pub struct Sma {
    window: Window,
}

impl Sma {
    pub fn new(n: u32) -> Sma {
        Sma {
            window: Window::new(n),
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.window.push(x);
        self.window.mean()
    }

    pub fn value(&self) -> Option<f64> {
        self.window.mean()
    }
}

/// Exponential moving average with α = 2 / (n + 1), seeded with the simple average of
/// its first `n` values (first value at the `n`-th input), then
/// `ema = ema + α · (x − ema)`.
#[derive(Clone, Copy, Debug)]
pub struct Ema {
    n: u32,
    alpha: f64,
    seen: u32,
    seed_sum: f64,
    value: Option<f64>,
}

impl Ema {
    pub fn new(n: u32) -> Ema {
        let n = n.clamp(1, MAX_PERIOD);
        Ema {
            n,
            alpha: 2.0 / (f64::from(n) + 1.0),
            seen: 0,
            seed_sum: 0.0,
            value: None,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        match self.value {
            Some(v) => self.value = Some((x - v) * self.alpha + v),
            None => {
                self.seed_sum += x;
                self.seen += 1;
                if self.seen == self.n {
                    self.value = Some(self.seed_sum / f64::from(self.n));
                }
            }
        }
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Wilder's smoothing: the simple average of the first `n` inputs, then
/// `avg = (avg · (n − 1) + x) / n`. Used by RSI and ATR.
#[derive(Clone, Copy, Debug)]
struct Wilder {
    n: u32,
    seen: u32,
    sum: f64,
    value: Option<f64>,
}

impl Wilder {
    fn new(n: u32) -> Wilder {
        Wilder {
            n: n.clamp(1, MAX_PERIOD),
            seen: 0,
            sum: 0.0,
            value: None,
        }
    }

    #[inline]
    fn update(&mut self, x: f64) -> Option<f64> {
        let n = f64::from(self.n);
        match self.value {
            Some(v) => self.value = Some((v * (n - 1.0) + x) / n),
            None => {
                self.sum += x;
                self.seen += 1;
                if self.seen == self.n {
                    self.value = Some(self.sum / n);
                }
            }
        }
        self.value
    }
}

/// Relative strength index (Wilder): changes `close − previous close` split into gains
/// and losses, each smoothed with Wilder's method over `n` changes (so the first value
/// comes at the `n + 1`-th close), `RSI = 100 · avg_gain / (avg_gain + avg_loss)`.
/// With no losses RSI is 100, with no gains 0; with neither (flat prices) it is 50, the
/// neutral value, rather than undefined.
#[derive(Clone, Copy, Debug)]
pub struct Rsi {
    prev: Option<f64>,
    gain: Wilder,
    loss: Wilder,
    value: Option<f64>,
}

impl Rsi {
    pub fn new(n: u32) -> Rsi {
        Rsi {
            prev: None,
            gain: Wilder::new(n),
            loss: Wilder::new(n),
            value: None,
        }
    }

    #[inline]
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let change = close - prev;
        let gain = self.gain.update(change.max(0.0));
        let loss = self.loss.update((-change).max(0.0));
        if let (Some(g), Some(l)) = (gain, loss) {
            let total = g + l;
            self.value = Some(if total > 0.0 { 100.0 * g / total } else { 50.0 });
        }
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Average true range (Wilder): the true range of a candle is the largest of
/// `high − low`, `|high − previous close|` and `|low − previous close|` (so the first
/// true range needs a previous candle), smoothed with Wilder's method over `n` true
/// ranges; the first value comes at the `n + 1`-th candle.
#[derive(Clone, Copy, Debug)]
pub struct Atr {
    prev_close: Option<f64>,
    avg: Wilder,
}

impl Atr {
    pub fn new(n: u32) -> Atr {
        Atr {
            prev_close: None,
            avg: Wilder::new(n),
        }
    }

    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let pc = self.prev_close.replace(close)?;
        let tr = (high - low).max((high - pc).abs()).max((low - pc).abs());
        self.avg.update(tr)
    }

    pub fn value(&self) -> Option<f64> {
        self.avg.value
    }
}

/// MACD: `line = EMA(fast) − EMA(slow)` of closes (each EMA seeded on its own, as
/// [`Ema`]), `signal = EMA(signal)` of the line (seeded with the average of the line's
/// first `signal` values), `histogram = line − signal`. With 12/26/9 the line starts at
/// the 26th close and the signal at the 34th.
#[derive(Clone, Copy, Debug)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
    value: Option<MacdValue>,
    line: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MacdValue {
    pub line: f64,
    pub signal: f64,
    pub histogram: f64,
}

impl Macd {
    pub fn new(fast: u32, slow: u32, signal: u32) -> Macd {
        Macd {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
            value: None,
            line: None,
        }
    }

    #[inline]
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let fast = self.fast.update(close);
        let slow = self.slow.update(close);
        if let (Some(f), Some(s)) = (fast, slow) {
            let line = f - s;
            self.line = Some(line);
            if let Some(signal) = self.signal.update(line) {
                self.value = Some(MacdValue {
                    line,
                    signal,
                    histogram: line - signal,
                });
            }
        }
        self.value
    }

    /// The MACD line, which is warm before the signal line.
    pub fn line(&self) -> Option<f64> {
        self.line
    }

    pub fn value(&self) -> Option<MacdValue> {
        self.value
    }
}

/// Bollinger bands: `middle = SMA(n)` of closes, `σ` the population standard deviation
/// of the same `n` closes, `upper/lower = middle ± k·σ`. First value at the `n`-th
/// close.
#[derive(Clone, Debug)]
pub struct Bollinger {
    window: Window,
    k: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BollingerValue {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
    pub std_dev: f64,
}

impl Bollinger {
    pub fn new(n: u32, k: f64) -> Bollinger {
        Bollinger {
            window: Window::new(n),
            k,
        }
    }

    #[inline]
    pub fn update(&mut self, close: f64) -> Option<BollingerValue> {
        self.window.push(close);
        self.value()
    }

    pub fn value(&self) -> Option<BollingerValue> {
        let middle = self.window.mean()?;
        let std_dev = self.window.variance()?.sqrt();
        Some(BollingerValue {
            upper: middle + self.k * std_dev,
            middle,
            lower: middle - self.k * std_dev,
            std_dev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_is_seeded_with_the_sma() {
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        assert_eq!(e.update(3.0), Some(2.0));
        // α = 0.5: 2 + 0.5 · (6 − 2) = 4.
        assert_eq!(e.update(6.0), Some(4.0));
    }

    #[test]
    fn window_survives_many_wraps_without_drift() {
        let mut w = Window::new(5);
        for i in 0..100_000 {
            w.push(50_000.0 + f64::from(i % 7));
        }
        let last: Vec<f64> = (99_995..100_000)
            .map(|i| 50_000.0 + f64::from(i % 7))
            .collect();
        let mean = last.iter().sum::<f64>() / 5.0;
        assert!((w.mean().unwrap() - mean).abs() < 1e-9);
        let var = last.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((w.variance().unwrap() - var).abs() < 1e-9 * var);
    }

    #[test]
    fn atr_needs_a_previous_close() {
        let mut a = Atr::new(2);
        assert_eq!(a.update(10.0, 8.0, 9.0), None);
        assert_eq!(a.update(11.0, 9.0, 10.0), None);
        // True ranges 2 and max(3, 3, 0) = 3: seed 2.5.
        assert_eq!(a.update(13.0, 10.0, 12.0), Some(2.5));
    }
}
