//! Signal settings: the `[signals]` table of the configuration file, with per-timeframe
//! overrides in `[signals.timeframes."1h"]`.
//!
//! Runs on: the main thread, while [`crate::config`] loads the file (the shard cores
//! get the resolved [`SignalParams`] per timeframe). In: the `signals` TOML table. Out:
//! a [`SignalsConfig`], checked key by key with one [`ConfigError`] naming the key
//! (e.g. `signals.timeframes.1h.rsi_oversold`). There are no environment variables for
//! these: they are a table per timeframe, which a flat variable cannot express.

use crate::config::ConfigError;
use crate::market::Interval;

use super::indicators::MAX_PERIOD;

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

    /// Applies a `[signals]` TOML table over `self`.
    pub fn apply_toml(&mut self, value: &toml::Value) -> Result<(), ConfigError> {
        let table = as_table(value, "signals")?;
        // Defaults first, so every override starts from the file's defaults, whatever
        // the key order.
        for (key, v) in table {
            let name = format!("signals.{key}");
            match key.as_str() {
                "enabled" => self.enabled = flag(v, &name)?,
                "warm_candles" => {
                    self.warm_candles = count(v, &name, 0, u64::from(MAX_WARM_CANDLES))?
                }
                "rewarm_after_candles" => {
                    self.rewarm_after_candles = count(v, &name, 1, 1_000_000)?
                }
                "timeframes" => {}
                _ => {
                    if !apply_param(&mut self.defaults, key, v, &name)? {
                        return Err(unknown(&name, "signals", true));
                    }
                }
            }
        }
        if let Some(tfs) = table.get("timeframes") {
            for (tf_name, v) in as_table(tfs, "signals.timeframes")? {
                let key = format!("signals.timeframes.{tf_name}");
                let tf = Interval::parse(tf_name).map_err(|e| ConfigError::Invalid {
                    key: key.clone(),
                    value: tf_name.clone(),
                    expected: e.to_string(),
                })?;
                let mut p = self.params(tf);
                for (k, v) in as_table(v, &key)? {
                    let name = format!("{key}.{k}");
                    if !apply_param(&mut p, k, v, &name)? {
                        return Err(unknown(&name, &key, false));
                    }
                }
                match self.timeframes.iter_mut().find(|(t, _)| *t == tf) {
                    Some(slot) => slot.1 = p,
                    None => self.timeframes.push((tf, p)),
                }
            }
        }
        Ok(())
    }

    /// Relations between values (ranges are checked as they are read).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_params(&self.defaults, "signals")?;
        for (tf, p) in &self.timeframes {
            check_params(p, &format!("signals.timeframes.{tf}"))?;
        }
        Ok(())
    }

    /// The table as TOML that [`SignalsConfig::apply_toml`] accepts back.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("\n[signals]\n");
        out.push_str(&format!("enabled = {}\n", self.enabled));
        out.push_str(&format!("warm_candles = {}\n", self.warm_candles));
        out.push_str(&format!(
            "rewarm_after_candles = {}\n",
            self.rewarm_after_candles
        ));
        push_params(&mut out, &self.defaults);
        for (tf, p) in &self.timeframes {
            out.push_str(&format!("\n[signals.timeframes.\"{tf}\"]\n"));
            push_params(&mut out, p);
        }
        out
    }
}

/// Names of the per-timeframe keys, in print order.
const PARAM_KEYS: [&str; 13] = [
    "ema_fast",
    "ema_slow",
    "rsi_period",
    "rsi_oversold",
    "rsi_overbought",
    "macd_fast",
    "macd_slow",
    "macd_signal",
    "bollinger_period",
    "bollinger_k",
    "atr_period",
    "volume_period",
    "volume_spike_k",
];

fn push_params(out: &mut String, p: &SignalParams) {
    let values = [
        p.ema_fast.to_string(),
        p.ema_slow.to_string(),
        p.rsi_period.to_string(),
        float(p.rsi_oversold),
        float(p.rsi_overbought),
        p.macd_fast.to_string(),
        p.macd_slow.to_string(),
        p.macd_signal.to_string(),
        p.bollinger_period.to_string(),
        float(p.bollinger_k),
        p.atr_period.to_string(),
        p.volume_period.to_string(),
        float(p.volume_spike_k),
    ];
    for (k, v) in PARAM_KEYS.iter().zip(values) {
        out.push_str(&format!("{k} = {v}\n"));
    }
}

/// A float as TOML (always with a decimal point).
fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// Sets one per-timeframe key; false when `key` is not one.
fn apply_param(
    p: &mut SignalParams,
    key: &str,
    v: &toml::Value,
    name: &str,
) -> Result<bool, ConfigError> {
    let period = |v| count(v, name, 1, u64::from(MAX_PERIOD));
    match key {
        "ema_fast" => p.ema_fast = period(v)?,
        "ema_slow" => p.ema_slow = period(v)?,
        "rsi_period" => p.rsi_period = period(v)?,
        "rsi_oversold" => p.rsi_oversold = number(v, name, 0.0, 100.0)?,
        "rsi_overbought" => p.rsi_overbought = number(v, name, 0.0, 100.0)?,
        "macd_fast" => p.macd_fast = period(v)?,
        "macd_slow" => p.macd_slow = period(v)?,
        "macd_signal" => p.macd_signal = period(v)?,
        "bollinger_period" => p.bollinger_period = period(v)?,
        // Past 10 deviations a band is never reached; below 0.1 every close is outside.
        "bollinger_k" => p.bollinger_k = number(v, name, 0.1, 10.0)?,
        "atr_period" => p.atr_period = period(v)?,
        "volume_period" => p.volume_period = period(v)?,
        // A spike must at least exceed the average; past 1000 it never fires.
        "volume_spike_k" => p.volume_spike_k = number(v, name, 1.0, 1000.0)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn check_params(p: &SignalParams, table: &str) -> Result<(), ConfigError> {
    let must_exceed = |hi: &str, hi_v: f64, lo: &str, lo_v: f64| {
        if hi_v > lo_v {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                key: format!("{table}.{hi}"),
                value: hi_v.to_string(),
                expected: format!("expected more than {table}.{lo} ({lo_v})"),
            })
        }
    };
    must_exceed("ema_slow", p.ema_slow.into(), "ema_fast", p.ema_fast.into())?;
    must_exceed(
        "macd_slow",
        p.macd_slow.into(),
        "macd_fast",
        p.macd_fast.into(),
    )?;
    must_exceed(
        "rsi_overbought",
        p.rsi_overbought,
        "rsi_oversold",
        p.rsi_oversold,
    )?;
    // The RSI's buy depth divides by the oversold level: it must be above 0.
    if p.rsi_oversold <= 0.0 || p.rsi_overbought >= 100.0 {
        return Err(ConfigError::Invalid {
            key: format!("{table}.rsi_oversold"),
            value: format!("{} / {}", p.rsi_oversold, p.rsi_overbought),
            expected: "expected 0 < rsi_oversold < rsi_overbought < 100".to_owned(),
        });
    }
    Ok(())
}

fn as_table<'a>(v: &'a toml::Value, key: &str) -> Result<&'a toml::Table, ConfigError> {
    v.as_table().ok_or_else(|| ConfigError::Invalid {
        key: key.to_owned(),
        value: v.to_string(),
        expected: format!("expected a table ([{key}])"),
    })
}

fn unknown(name: &str, table: &str, top: bool) -> ConfigError {
    let mut allowed: Vec<&str> = Vec::new();
    if top {
        allowed.extend([
            "enabled",
            "warm_candles",
            "rewarm_after_candles",
            "timeframes",
        ]);
    }
    allowed.extend(PARAM_KEYS);
    ConfigError::UnknownKey {
        key: name.to_owned(),
        file: format!("[{table}]"),
        allowed: allowed.join(", "),
    }
}

fn flag(v: &toml::Value, name: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| ConfigError::Invalid {
        key: name.to_owned(),
        value: v.to_string(),
        expected: "expected true or false".to_owned(),
    })
}

fn count(v: &toml::Value, name: &str, min: u64, max: u64) -> Result<u32, ConfigError> {
    v.as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ConfigError::Invalid {
            key: name.to_owned(),
            value: v.to_string(),
            expected: format!("expected a whole number from {min} to {max}"),
        })
}

fn number(v: &toml::Value, name: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .filter(|x| x.is_finite() && (min..=max).contains(x))
        .ok_or_else(|| ConfigError::Invalid {
            key: name.to_owned(),
            value: v.to_string(),
            expected: format!("expected a number from {min} to {max}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SignalsConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut c = SignalsConfig::default();
        c.apply_toml(&table["signals"])?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn overrides_start_from_the_files_defaults() {
        let c = parse("[signals.timeframes.\"1h\"]\nrsi_oversold = 25\n[signals]\nema_fast = 5\n")
            .unwrap();
        let h1 = c.params(Interval::H1);
        assert_eq!((h1.ema_fast, h1.rsi_oversold), (5, 25.0));
        assert_eq!(c.params(Interval::M1).rsi_oversold, 30.0);
        // Printing and reading back gives the same settings.
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[signals.timeframes.\"1h\"]\nema_slow = 3\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("signals.timeframes.1h.ema_slow=3"),
            "{e}"
        );
        let e = parse("[signals]\nvolume_spike_k = 0.5\n").unwrap_err();
        assert!(
            e.to_string().starts_with("signals.volume_spike_k=0.5"),
            "{e}"
        );
        let e = parse("[signals]\nrsi_oversld = 20\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown key signals.rsi_oversld"),
            "{e}"
        );
        let e = parse("[signals.timeframes.\"2m\"]\nema_fast = 3\n").unwrap_err();
        assert!(e.to_string().starts_with("signals.timeframes.2m=2m"), "{e}");
    }
}
