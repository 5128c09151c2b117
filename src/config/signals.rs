//! The `[signals]` table of the configuration file, with per-timeframe overrides in
//! `[signals.timeframes."1h"]`.
//!
//! Runs on: the main thread, while [`super::load`] reads the file (the shard cores get
//! the resolved [`SignalParams`] per timeframe). In: the `signals` TOML table. Out: a
//! [`SignalsConfig`], checked key by key with one [`ConfigError`] naming the key (e.g.
//! `signals.timeframes.1h.rsi_oversold`). There are no environment variables for
//! these: they are a table per timeframe, which a flat variable cannot express.

use std::collections::HashSet;

use super::ConfigError;
use crate::market::Interval;
use crate::signals::indicators::MAX_PERIOD;
use crate::signals::params::{SignalParams, SignalsConfig, MAX_WARM_CANDLES};

/// Applies a `[signals]` TOML table from `file` over `signals`; returns the dotted
/// names of the keys it set (`signals.ema_fast`, `signals.timeframes.1h.rsi_period`).
pub fn apply_toml(
    signals: &mut SignalsConfig,
    value: &toml::Value,
    file: &str,
) -> Result<HashSet<String>, ConfigError> {
    let table = as_table(value, "signals")?;
    let mut set = HashSet::new();
    // Defaults first, so every override starts from the file's defaults, whatever
    // the key order.
    for (key, v) in table {
        let name = format!("signals.{key}");
        match key.as_str() {
            "enabled" => signals.enabled = flag(v, &name)?,
            "warm_candles" => {
                signals.warm_candles = count(v, &name, 0, u64::from(MAX_WARM_CANDLES))?
            }
            "rewarm_after_candles" => signals.rewarm_after_candles = count(v, &name, 1, 1_000_000)?,
            "timeframes" => continue,
            _ => {
                if !apply_param(&mut signals.defaults, key, v, &name)? {
                    return Err(unknown(&name, file, true));
                }
            }
        }
        set.insert(name);
    }
    if let Some(tfs) = table.get("timeframes") {
        for (tf_name, v) in as_table(tfs, "signals.timeframes")? {
            let key = format!("signals.timeframes.{tf_name}");
            let tf = Interval::parse(tf_name).map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                value: tf_name.clone(),
                expected: e.to_string(),
            })?;
            let mut p = signals.params(tf);
            for (k, v) in as_table(v, &key)? {
                let name = format!("{key}.{k}");
                if !apply_param(&mut p, k, v, &name)? {
                    return Err(unknown(&name, file, false));
                }
                set.insert(name);
            }
            match signals.timeframes.iter_mut().find(|(t, _)| *t == tf) {
                Some(slot) => slot.1 = p,
                None => signals.timeframes.push((tf, p)),
            }
        }
    }
    Ok(set)
}

/// Relations between values (ranges are checked as they are read).
pub fn validate(signals: &SignalsConfig) -> Result<(), ConfigError> {
    check_params(&signals.defaults, "signals")?;
    for (tf, p) in &signals.timeframes {
        check_params(p, &format!("signals.timeframes.{tf}"))?;
    }
    Ok(())
}

/// The table as TOML that [`apply_toml`] accepts back.
pub fn to_toml(signals: &SignalsConfig) -> String {
    render(signals, &|_| String::new())
}

/// [`to_toml`] with `note(dotted name)` after each value (a comment, or nothing).
pub(super) fn render(signals: &SignalsConfig, note: &dyn Fn(&str) -> String) -> String {
    let mut out = String::from("\n[signals]\n");
    let top = [
        ("enabled", signals.enabled.to_string()),
        ("warm_candles", signals.warm_candles.to_string()),
        (
            "rewarm_after_candles",
            signals.rewarm_after_candles.to_string(),
        ),
    ];
    for (k, v) in top {
        out.push_str(&format!("{k} = {v}{}\n", note(&format!("signals.{k}"))));
    }
    push_params(&mut out, &signals.defaults, "signals", note);
    for (tf, p) in &signals.timeframes {
        out.push_str(&format!("\n[signals.timeframes.\"{tf}\"]\n"));
        push_params(&mut out, p, &format!("signals.timeframes.{tf}"), note);
    }
    out
}

/// Names of the per-timeframe keys, in print order.
const PARAM_KEYS: [&str; 14] = [
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
    "book_imbalance",
];

fn push_params(out: &mut String, p: &SignalParams, table: &str, note: &dyn Fn(&str) -> String) {
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
        float(p.book_imbalance),
    ];
    for (k, v) in PARAM_KEYS.iter().zip(values) {
        out.push_str(&format!("{k} = {v}{}\n", note(&format!("{table}.{k}"))));
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
        // 0 would fire on any lean, 1 only on an empty side.
        "book_imbalance" => p.book_imbalance = number(v, name, 0.01, 0.99)?,
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

/// An unknown key of `[signals]` (`top`) or of a per-timeframe table.
fn unknown(name: &str, file: &str, top: bool) -> ConfigError {
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
    super::keys::unknown_key(name, file, &allowed)
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
