//! Values as the user wrote them ([`Raw`]) and as a setting holds them ([`Setting`]),
//! with the redaction of secrets for errors and `config print`.

use std::collections::HashSet;

use super::checks::{Rule, Why};
use super::fields::Field;
use crate::market::{Interval, Symbol};

/// Replaces the password of `scheme://user:password@host` and any `password=` query
/// parameter with `REDACTED`.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme_end, rest)) = url.split_once("://").map(|(s, r)| (s.len() + 3, r)) else {
        return url.to_owned();
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
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
        Rule::Token => "<redacted>".to_owned(),
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
