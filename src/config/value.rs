//! Values as the user wrote them ([`Raw`]) and as a setting holds them ([`Setting`]),
//! with the redaction of secrets for errors and `config print`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::checks::{Rule, Why};
use super::fields::Field;
use super::{Switch, WriteMethod};
use crate::market::{Interval, Symbol};

/// Replaces the password of `scheme://user:password@host` and any `password=` query
/// parameter with `REDACTED`.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme_end, rest)) = url.split_once("://").map(|(s, r)| (s.len() + 3, r)) else {
        return url.to_owned();
    };
    // A password may hold an unencoded '/', '?', '#' or '@': the authority then runs to
    // the host after the last '@' (a '@' in the path or query alone makes the redaction
    // cover more than the password, never less).
    let host_from = rest.rfind('@').map_or(0, |at| at + 1);
    let authority_len = host_from
        + rest[host_from..]
            .find(['/', '?', '#'])
            .unwrap_or(rest.len() - host_from);
    let (authority, tail) = rest.split_at(authority_len);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:REDACTED@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=REDACTED")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{authority}{tail}", &url[..scheme_end])
}

/// Renders a string value that may be secret, for errors and `config print`.
pub(super) fn redacted(rule: &Rule, text: &str) -> String {
    match rule {
        Rule::Token | Rule::Key => "<redacted>".to_owned(),
        Rule::Url { .. } => redact_url(text),
        _ => text.to_owned(),
    }
}

/// A typed view of one setting's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Setting {
    Count(u64),
    Seconds(f64),
    Flag(bool),
    Text(Option<String>),
    List(Vec<String>),
    Choice(Option<u32>),
}

impl Setting {
    /// As TOML, with secrets redacted; `None` when unset (the key is left out).
    pub(super) fn to_toml(&self, rule: &Rule) -> Option<toml::Value> {
        Some(match self {
            Setting::Count(n) => toml::Value::Integer(i64::try_from(*n).unwrap_or(i64::MAX)),
            Setting::Seconds(s) => toml::Value::Float(*s),
            Setting::Flag(b) => toml::Value::Boolean(*b),
            Setting::Text(text) => toml::Value::String(redacted(rule, text.as_deref()?)),
            Setting::List(items) => toml::Value::Array(
                items
                    .iter()
                    .map(|i| toml::Value::String(i.clone()))
                    .collect(),
            ),
            Setting::Choice(choice) => toml::Value::Integer(i64::from((*choice)?)),
        })
    }

    /// As the user would have written it: environment syntax if the environment set it.
    pub(super) fn render(&self, field: Field, from_env: &HashSet<Field>) -> String {
        let rule = field.rule();
        if from_env.contains(&field) {
            return match self {
                Setting::Count(n) => n.to_string(),
                Setting::Seconds(s) => s.to_string(),
                Setting::Flag(b) => b.to_string(),
                Setting::Text(text) => text
                    .as_deref()
                    .map(|t| redacted(&rule, t))
                    .unwrap_or_default(),
                Setting::List(items) => items.join(","),
                Setting::Choice(choice) => choice.map(|c| c.to_string()).unwrap_or_default(),
            };
        }
        self.to_toml(&rule)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(unset)".to_owned())
    }
}

/// A value as the user supplied it: an environment string or a TOML value.
#[derive(Clone, Copy)]
pub(super) enum Raw<'a> {
    Env(&'a str),
    Toml(&'a toml::Value),
}

impl Raw<'_> {
    pub(super) fn render(&self, rule: &Rule) -> String {
        match self {
            Raw::Env(text) => redacted(rule, text),
            Raw::Toml(toml::Value::String(text)) => {
                toml::Value::String(redacted(rule, text)).to_string()
            }
            Raw::Toml(value) => value.to_string(),
        }
    }

    pub(super) fn count(&self) -> Result<u64, Why> {
        match self {
            Raw::Env(text) => text.trim().parse().map_err(|_| Why::Type),
            Raw::Toml(toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| Why::Type),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    pub(super) fn seconds(&self) -> Result<f64, Why> {
        let value = match self {
            Raw::Env(text) => text.trim().parse::<f64>().map_err(|_| Why::Type)?,
            Raw::Toml(toml::Value::Float(f)) => *f,
            Raw::Toml(toml::Value::Integer(n)) => *n as f64,
            Raw::Toml(_) => return Err(Why::Type),
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Why::Type)
        }
    }

    pub(super) fn flag(&self) -> Result<bool, Why> {
        match self {
            Raw::Env(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(Why::Type),
            },
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    pub(super) fn text(&self) -> Result<String, Why> {
        match self {
            Raw::Env(text) => Ok(text.trim().to_owned()),
            Raw::Toml(toml::Value::String(text)) => Ok(text.clone()),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    /// An optional string: empty means unset, as in a `.env` template's `DATABASE_URL=`.
    pub(super) fn opt_text(&self) -> Result<Option<String>, Why> {
        let text = self.text()?;
        Ok((!text.is_empty()).then_some(text))
    }

    /// A list: comma-separated in the environment (empty items ignored, so a trailing
    /// comma is harmless), an array of strings in TOML.
    pub(super) fn list(&self) -> Result<Vec<String>, Why> {
        match self {
            Raw::Env(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(Why::Type))
                .collect(),
            Raw::Toml(_) => Err(Why::Type),
        }
    }

    pub(super) fn symbols(&self) -> Result<Vec<Symbol>, Why> {
        self.list()?
            .iter()
            .map(|item| {
                Symbol::new(item).map_err(|e| Why::Detail(format!("{item:?} is not a symbol: {e}")))
            })
            .collect()
    }

    pub(super) fn timeframes(&self) -> Result<Vec<Interval>, Why> {
        self.list()?
            .iter()
            .map(|item| {
                Interval::parse(item)
                    .map_err(|e| Why::Detail(format!("{item:?} is not an interval: {e}")))
            })
            .collect()
    }
}

/// A type a setting may have: how a raw value is parsed into it and how it is shown.
/// Only the type is checked here; ranges and formats are the [`Rule`]'s.
pub(super) trait Value: Sized {
    fn read(raw: Raw<'_>) -> Result<Self, Why>;
    fn show(&self) -> Setting;
}

impl Value for u64 {
    fn read(raw: Raw<'_>) -> Result<u64, Why> {
        raw.count()
    }
    fn show(&self) -> Setting {
        Setting::Count(*self)
    }
}

impl Value for u32 {
    fn read(raw: Raw<'_>) -> Result<u32, Why> {
        u32::try_from(raw.count()?).map_err(|_| Why::Type)
    }
    fn show(&self) -> Setting {
        Setting::Count(u64::from(*self))
    }
}

impl Value for usize {
    fn read(raw: Raw<'_>) -> Result<usize, Why> {
        usize::try_from(raw.count()?).map_err(|_| Why::Type)
    }
    fn show(&self) -> Setting {
        Setting::Count(*self as u64)
    }
}

/// Durations in seconds are the only floating-point settings.
impl Value for f64 {
    fn read(raw: Raw<'_>) -> Result<f64, Why> {
        raw.seconds()
    }
    fn show(&self) -> Setting {
        Setting::Seconds(*self)
    }
}

impl Value for bool {
    fn read(raw: Raw<'_>) -> Result<bool, Why> {
        raw.flag()
    }
    fn show(&self) -> Setting {
        Setting::Flag(*self)
    }
}

/// A choice among a few numbers, or none (the key left out).
impl Value for Option<u32> {
    fn read(raw: Raw<'_>) -> Result<Option<u32>, Why> {
        u32::read(raw).map(Some)
    }
    fn show(&self) -> Setting {
        Setting::Choice(*self)
    }
}

impl Value for String {
    fn read(raw: Raw<'_>) -> Result<String, Why> {
        raw.text()
    }
    fn show(&self) -> Setting {
        Setting::Text(Some(self.clone()))
    }
}

/// `true` / `false` (or the environment's other flag words), or `auto`.
impl Value for Switch {
    fn read(raw: Raw<'_>) -> Result<Switch, Why> {
        match raw.flag() {
            Ok(flag) => Ok(Switch::from_flag(flag)),
            Err(_) if raw.text()?.eq_ignore_ascii_case("auto") => Ok(Switch::Auto),
            Err(why) => Err(why),
        }
    }
    fn show(&self) -> Setting {
        match self {
            Switch::Auto => Setting::Text(Some("auto".to_owned())),
            Switch::On => Setting::Flag(true),
            Switch::Off => Setting::Flag(false),
        }
    }
}

impl Value for WriteMethod {
    fn read(raw: Raw<'_>) -> Result<WriteMethod, Why> {
        WriteMethod::parse(&raw.text()?).ok_or(Why::Type)
    }
    fn show(&self) -> Setting {
        Setting::Text(Some(self.as_str().to_owned()))
    }
}

impl Value for Option<String> {
    fn read(raw: Raw<'_>) -> Result<Option<String>, Why> {
        raw.opt_text()
    }
    fn show(&self) -> Setting {
        Setting::Text(self.clone())
    }
}

impl Value for PathBuf {
    fn read(raw: Raw<'_>) -> Result<PathBuf, Why> {
        raw.text().map(PathBuf::from)
    }
    fn show(&self) -> Setting {
        Setting::Text(Some(self.display().to_string()))
    }
}

impl Value for Option<PathBuf> {
    fn read(raw: Raw<'_>) -> Result<Option<PathBuf>, Why> {
        raw.opt_text().map(|v| v.map(PathBuf::from))
    }
    fn show(&self) -> Setting {
        Setting::Text(self.as_ref().map(|p| p.display().to_string()))
    }
}

impl Value for SocketAddr {
    fn read(raw: Raw<'_>) -> Result<SocketAddr, Why> {
        raw.text()?.parse().map_err(|_| Why::Type)
    }
    fn show(&self) -> Setting {
        Setting::Text(Some(self.to_string()))
    }
}

impl Value for Vec<String> {
    fn read(raw: Raw<'_>) -> Result<Vec<String>, Why> {
        raw.list()
    }
    fn show(&self) -> Setting {
        Setting::List(self.clone())
    }
}

impl Value for Vec<Symbol> {
    fn read(raw: Raw<'_>) -> Result<Vec<Symbol>, Why> {
        raw.symbols()
    }
    fn show(&self) -> Setting {
        Setting::List(self.iter().map(|s| s.to_string()).collect())
    }
}

impl Value for Vec<Interval> {
    fn read(raw: Raw<'_>) -> Result<Vec<Interval>, Why> {
        raw.timeframes()
    }
    fn show(&self) -> Setting {
        Setting::List(self.iter().map(|t| t.to_string()).collect())
    }
}
