//! The rules a setting's value must follow, and the checks across settings that run
//! once every layer (TOML, `.env`, environment) has been applied.

use std::collections::HashSet;

use super::fields::Field;
use super::value::Setting;
use super::*;

impl Config {
    pub(super) fn check(&self, from_env: &HashSet<Field>) -> Result<(), ConfigError> {
        for &field in Field::ALL {
            let setting = field.get(self);
            if let Err(problem) = field.rule().check(&setting) {
                let expected = match (problem, field.limit_why()) {
                    (Why::Type, Some(why)) => format!("{} ({why})", field.rule().expected()),
                    (Why::Type, None) => field.rule().expected(),
                    (Why::Detail(detail), _) => detail,
                };
                return Err(ConfigError::Invalid {
                    key: field.name(from_env).to_owned(),
                    value: setting.render(field, from_env),
                    expected,
                });
            }
        }
        self.check_relations(from_env)
    }

    pub(super) fn check_relations(&self, from_env: &HashSet<Field>) -> Result<(), ConfigError> {
        let name = |f: Field| f.name(from_env);
        let engine = &self.engine;
        if engine.instance_index >= engine.instance_count {
            return Err(ConfigError::Invalid {
                key: name(Field::InstanceIndex).to_owned(),
                value: engine.instance_index.to_string(),
                expected: format!(
                    "expected less than {} ({}): instances are numbered from 0",
                    name(Field::InstanceCount),
                    engine.instance_count
                ),
            });
        }
        let feed = &self.feed;
        if feed.backoff_initial_ms > feed.backoff_max_ms {
            return Err(ConfigError::Invalid {
                key: name(Field::BackoffInitialMs).to_owned(),
                value: feed.backoff_initial_ms.to_string(),
                expected: format!(
                    "expected at most {} ({})",
                    name(Field::BackoffMaxMs),
                    feed.backoff_max_ms
                ),
            });
        }
        let db = &self.database;
        if db.retry_initial_ms > db.retry_max_ms {
            return Err(ConfigError::Invalid {
                key: name(Field::DbRetryInitialMs).to_owned(),
                value: db.retry_initial_ms.to_string(),
                expected: format!(
                    "expected at most {} ({})",
                    name(Field::DbRetryMaxMs),
                    db.retry_max_ms
                ),
            });
        }
        if feed.rotate_before_s >= feed.max_connection_age_s {
            return Err(ConfigError::Invalid {
                key: name(Field::RotateBeforeS).to_owned(),
                value: feed.rotate_before_s.to_string(),
                expected: format!(
                    "expected less than {} ({})",
                    name(Field::MaxConnectionAgeS),
                    feed.max_connection_age_s
                ),
            });
        }
        if feed.rotation_overlap_s >= feed.rotate_before_s {
            return Err(ConfigError::Invalid {
                key: name(Field::RotationOverlapS).to_owned(),
                value: feed.rotation_overlap_s.to_string(),
                expected: format!(
                    "expected less than {} ({}), so the old connection closes before Binance cuts it",
                    name(Field::RotateBeforeS),
                    feed.rotate_before_s
                ),
            });
        }
        if feed.streams.per_symbol(self.timeframes.len()) == 0 {
            return Err(ConfigError::Conflict {
                key: "feed.streams".to_owned(),
                problem: "no stream kind is enabled; set kline, trade, agg_trade or book_ticker \
                          to true, or set diff_depth_ms or partial_depth_levels"
                    .to_owned(),
            });
        }
        let dash = &self.dashboard;
        if dash.tls_cert_file.is_some() != dash.tls_key_file.is_some() {
            return Err(ConfigError::Conflict {
                key: name(Field::DashTlsCert).to_owned(),
                problem: format!(
                    "{} and {} must be set together (or neither, for plain HTTP)",
                    name(Field::DashTlsCert),
                    name(Field::DashTlsKey)
                ),
            });
        }
        self.check_books(&name)?;
        signals::validate(&self.signals)?;
        let needed = self.instance_stream_count();
        let capacity = self.binance_max_connections * feed.max_streams_per_connection;
        if needed > capacity {
            return Err(ConfigError::Conflict {
                key: name(Field::Symbols).to_owned(),
                problem: format!(
                    "this instance needs {needed} streams but {} ({}) x {} ({}) allow only \
                     {capacity}; raise either, split the symbols over more instances \
                     ({}), or subscribe fewer streams",
                    name(Field::BinanceMaxConnections),
                    self.binance_max_connections,
                    name(Field::MaxStreamsPerConnection),
                    feed.max_streams_per_connection,
                    name(Field::InstanceCount),
                ),
            });
        }
        // The store must hold every series of this instance: only what arrives beyond
        // them (over the Redis bridge) may be refused.
        let own_series = self.instance_symbols().len() * self.timeframes.len();
        if self.engine.max_series < own_series {
            return Err(ConfigError::Invalid {
                key: name(Field::MaxSeries).to_owned(),
                value: self.engine.max_series.to_string(),
                expected: format!(
                    "expected at least this instance's {own_series} series (its symbols x {})",
                    name(Field::Timeframes)
                ),
            });
        }
        Ok(())
    }

    /// Books need their symbols followed and the diff depth stream subscribed, and a
    /// published top within the levels kept.
    fn check_books(&self, name: &dyn Fn(Field) -> &'static str) -> Result<(), ConfigError> {
        let books = &self.books;
        if books.symbols.is_empty() {
            return Ok(());
        }
        if let Some(s) = books.symbols.iter().find(|s| !self.symbols.contains(s)) {
            return Err(ConfigError::Conflict {
                key: name(Field::BookSymbols).to_owned(),
                problem: format!("{s} has a book but is not in {}", name(Field::Symbols)),
            });
        }
        if self.feed.streams.diff_depth_ms.is_none() {
            return Err(ConfigError::Conflict {
                key: name(Field::BookSymbols).to_owned(),
                problem: format!(
                    "books are kept from the diff depth stream: set {} to 100 or 1000",
                    name(Field::StreamDiffDepthMs)
                ),
            });
        }
        if books.top_levels > books.max_levels {
            return Err(ConfigError::Invalid {
                key: name(Field::BookTopLevels).to_owned(),
                value: books.top_levels.to_string(),
                expected: format!(
                    "expected at most {} ({})",
                    name(Field::BookMaxLevels),
                    books.max_levels
                ),
            });
        }
        Ok(())
    }
}

pub(super) const WS_SCHEMES: &[&str] = &["ws", "wss"];
pub(super) const HTTP_SCHEMES: &[&str] = &["http", "https"];
pub(super) const POSTGRES_SCHEMES: &[&str] = &["postgres", "postgresql"];
pub(super) const REDIS_SCHEMES: &[&str] = &["redis", "rediss", "redis+unix", "unix"];
/// Binance offers diff depth every 100 ms or every second.
pub(super) const DIFF_DEPTH_MS: &[u32] = &[100, 1000];
/// Binance offers partial book depth with 5, 10 or 20 levels.
pub(super) const PARTIAL_DEPTH_LEVELS: &[u32] = &[5, 10, 20];

/// Why a value was refused: the wrong type (the rule's description says what is
/// allowed), or a specific problem described in full.
pub(super) enum Why {
    Type,
    Detail(String),
}

/// What a setting may hold.
#[derive(Clone, Copy)]
pub(super) enum Rule {
    Count {
        min: u64,
        max: u64,
    },
    Seconds {
        min: f64,
        max: f64,
    },
    Flag,
    /// A flag or `auto` ([`super::Switch`]).
    Switch,
    /// A URL with one of `schemes`. `host_port` asks for a plain `host[:port][/path]`
    /// authority (the Binance endpoints); database and Redis URLs may carry user info,
    /// several hosts or socket paths, so only their scheme is checked.
    Url {
        schemes: &'static [&'static str],
        optional: bool,
        host_port: bool,
    },
    Symbols,
    /// Like [`Rule::Symbols`], but empty is allowed (none).
    BookSymbols,
    Timeframes,
    Addr,
    Path,
    Token,
    /// A shared secret read from the environment only: refused in the TOML file, never
    /// printed or logged.
    Key,
    Origins,
    /// Host names (letters, digits, '-', '.'), distinct.
    Hosts,
    Prefix,
    Choice(&'static [u32]),
    /// One of a few names.
    OneOf(&'static [&'static str]),
}

impl Rule {
    pub(super) fn expected(&self) -> String {
        match self {
            Rule::Count { min, max } => format!("expected a whole number from {min} to {max}"),
            Rule::Seconds { min, max } => format!("expected seconds from {min} to {max}"),
            Rule::Flag => "expected true or false".to_owned(),
            Rule::Switch => "expected true, false or auto".to_owned(),
            Rule::Url { schemes, .. } => {
                let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                format!("expected a URL starting with {}", list.join(" or "))
            }
            Rule::Symbols => format!(
                "expected 1 to {MAX_SYMBOLS} distinct symbols of ASCII letters and digits, \
                 such as BTCUSDT,ETHUSDT"
            ),
            Rule::BookSymbols => format!(
                "expected up to {MAX_SYMBOLS} distinct symbols of ASCII letters and digits, \
                 among the followed symbols, such as BTCUSDT,ETHUSDT"
            ),
            Rule::Timeframes => {
                let all: Vec<&str> = Interval::ALL.iter().map(|i| i.as_str()).collect();
                format!("expected distinct intervals from {}", all.join(","))
            }
            Rule::Addr => "expected an IP address and port such as 127.0.0.1:8000".to_owned(),
            Rule::Path => "expected a file path".to_owned(),
            Rule::Token => format!(
                "expected {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} printable ASCII characters \
                 without spaces"
            ),
            Rule::Key => format!(
                "expected {MIN_KEY_LEN} to {MAX_TOKEN_LEN} printable ASCII characters \
                 without spaces"
            ),
            Rule::Origins => "expected distinct origins such as https://dash.example.com \
                              (scheme http or https, host, optional port, no path)"
                .to_owned(),
            Rule::Hosts => "expected distinct host names such as dash.example.com \
                            (letters, digits, '-' and '.', no scheme or port)"
                .to_owned(),
            Rule::Prefix => format!(
                "expected 1 to {MAX_CHANNEL_PREFIX_LEN} ASCII letters, digits, '_', '-' or '.'"
            ),
            Rule::OneOf(names) => format!("expected one of {}", names.join(", ")),
            Rule::Choice(options) => {
                let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
                format!(
                    "expected one of {} (leave the key out to disable)",
                    list.join(", ")
                )
            }
        }
    }

    /// Range and format checks on a typed value.
    pub(super) fn check(&self, setting: &Setting) -> Result<(), Why> {
        let ok_if = |good: bool| if good { Ok(()) } else { Err(Why::Type) };
        match (self, setting) {
            (Rule::Count { min, max }, Setting::Count(n)) => ok_if((*min..=*max).contains(n)),
            (Rule::Seconds { min, max }, Setting::Seconds(s)) => {
                ok_if(s.is_finite() && *min <= *s && *s <= *max)
            }
            (Rule::Flag, Setting::Flag(_)) | (Rule::Switch, Setting::Flag(_)) => Ok(()),
            (Rule::Switch, Setting::Text(Some(text))) => ok_if(text == "auto"),
            (
                Rule::Url {
                    schemes,
                    optional,
                    host_port,
                },
                Setting::Text(text),
            ) => match text {
                None => ok_if(*optional),
                Some(url) => ok_if(url_ok(url, schemes, *host_port)),
            },
            (Rule::Symbols, Setting::List(items)) => {
                if items.is_empty() || items.len() > MAX_SYMBOLS {
                    return Err(Why::Type);
                }
                distinct(items)
            }
            (Rule::BookSymbols, Setting::List(items)) => {
                if items.len() > MAX_SYMBOLS {
                    return Err(Why::Type);
                }
                distinct(items)
            }
            (Rule::Timeframes, Setting::List(items)) => {
                if items.is_empty() {
                    return Err(Why::Type);
                }
                distinct(items)
            }
            (Rule::Addr, Setting::Text(Some(_))) | (Rule::Path, Setting::Text(_)) => Ok(()),
            (Rule::Token, Setting::Text(token)) => match token {
                None => Ok(()),
                Some(t) => ok_if(
                    (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len())
                        && t.bytes().all(|b| b.is_ascii_graphic()),
                ),
            },
            (Rule::Key, Setting::Text(key)) => match key {
                None => Ok(()),
                Some(k) => ok_if(
                    (MIN_KEY_LEN..=MAX_TOKEN_LEN).contains(&k.len())
                        && k.bytes().all(|b| b.is_ascii_graphic()),
                ),
            },
            (Rule::Origins, Setting::List(items)) => {
                for item in items {
                    if !origin_ok(item) {
                        return Err(Why::Detail(format!(
                            "{item:?} is not an origin; {}",
                            self.expected()
                        )));
                    }
                }
                distinct(items)
            }
            (Rule::Hosts, Setting::List(items)) => {
                for item in items {
                    if !host_name_ok(item) {
                        return Err(Why::Detail(format!(
                            "{item:?} is not a host name; {}",
                            self.expected()
                        )));
                    }
                }
                distinct(items)
            }
            (Rule::Prefix, Setting::Text(Some(p))) => ok_if(
                (1..=MAX_CHANNEL_PREFIX_LEN).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')),
            ),
            (Rule::OneOf(names), Setting::Text(Some(name))) => {
                ok_if(names.contains(&name.as_str()))
            }
            (Rule::Choice(options), Setting::Choice(choice)) => match choice {
                None => Ok(()),
                Some(v) => ok_if(options.contains(v)),
            },
            _ => Err(Why::Type),
        }
    }
}

pub(super) fn distinct(items: &[String]) -> Result<(), Why> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(Why::Detail(format!("{item} is listed twice; list it once")));
        }
    }
    Ok(())
}

/// Splits `scheme://rest`, with the scheme lower-cased.
pub(super) fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

pub(super) fn url_ok(url: &str, schemes: &[&str], host_port: bool) -> bool {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return false;
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return false;
    };
    if !schemes.contains(&scheme.as_str()) {
        return false;
    }
    if !host_port {
        return !rest.is_empty();
    }
    if rest.contains(['?', '#', '@']) {
        return false;
    }
    let authority = rest.split('/').next().unwrap_or("");
    host_port_ok(authority)
}

/// `host[:port]` or `[v6]:port`, with a non-empty host and a valid port if present.
pub(super) fn host_port_ok(authority: &str) -> bool {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, tail)) => match tail {
                "" => (host, None),
                _ => match tail.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return false,
                },
            },
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    !host.is_empty() && port_ok
}

/// A DNS host name: 1 to 253 characters, labels of letters, digits and '-'.
pub(super) fn host_name_ok(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn origin_ok(origin: &str) -> bool {
    let Some((scheme, rest)) = split_scheme(origin) else {
        return false;
    };
    HTTP_SCHEMES.contains(&scheme.as_str())
        && !rest.contains(['/', '?', '#', '@'])
        && !rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && host_port_ok(rest)
}
