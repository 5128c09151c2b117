//! The dashboard's WebSocket protocol (docs/api.md): client
//! commands in, JSON messages out.
//!
//! Pure: parses command text and renders messages, never touches a socket, so every
//! command and every error is tested directly. The connection driver
//! ([`super::ws`]) owns the sockets.

use serde_json::{json, Value};

use super::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use crate::market::{Interval, Symbol};
use crate::store::ListQuery;

/// What a client can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Signals,
    /// Live and closed candles.
    Candles,
    Status,
    /// Local order books: their views as published, and their tops as they change.
    Book,
    /// Trades and aggregate trades, as received (a trade tape).
    Trades,
}

impl Topic {
    /// How many topics there are: [`Topic::index`] is below it (checked below against
    /// the last variant).
    pub const COUNT: usize = 5;

    /// A dense index, for per-topic tables.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Signals => "signals",
            Topic::Candles => "candles",
            Topic::Status => "status",
            Topic::Book => "book",
            Topic::Trades => "trades",
        }
    }

    fn parse(s: &str) -> Option<Topic> {
        match s {
            "signals" => Some(Topic::Signals),
            "candles" => Some(Topic::Candles),
            "status" => Some(Topic::Status),
            "book" => Some(Topic::Book),
            "trades" => Some(Topic::Trades),
            _ => None,
        }
    }
}

const _: () = assert!(Topic::Trades as usize + 1 == Topic::COUNT);

/// One subscription: a topic, optionally narrowed to a symbol and a timeframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Filter {
    pub topic: Topic,
    pub symbol: Option<Symbol>,
    pub interval: Option<Interval>,
}

impl Filter {
    pub fn all(topic: Topic) -> Filter {
        Filter {
            topic,
            symbol: None,
            interval: None,
        }
    }

    /// Does a message of `topic` about (`symbol`, `interval`) pass this filter? Status
    /// messages are about no symbol and pass any status subscription.
    pub fn matches(
        &self,
        topic: Topic,
        symbol: Option<Symbol>,
        interval: Option<Interval>,
    ) -> bool {
        self.topic == topic
            && (self.symbol.is_none() || symbol.is_none() || self.symbol == symbol)
            && (self.interval.is_none() || interval.is_none() || self.interval == interval)
    }

    /// The subscription as echoed back in `subscribed` / `unsubscribed`.
    pub fn to_json(&self, kind: &str) -> Value {
        json!({
            "type": kind,
            "subscription": self.topic.as_str(),
            "symbol": self.symbol.map(|s| s.to_string()),
            "timeframe": self.interval.map(|i| i.as_str()),
        })
    }
}

/// A parsed client command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Subscribe(Filter),
    /// Removes every subscription of the topic that the given symbol and timeframe
    /// cover (left out: any).
    Unsubscribe(Filter),
    GetSignals(ListQuery),
    /// `id`, if the client sent one, is echoed in the pong.
    Ping(Option<Value>),
}

/// Parses one text message; the error is the text of the `error` reply.
pub fn parse_command(text: &str) -> Result<Command, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("malformed JSON command: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("a command is a JSON object with a \"type\"".into());
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or("missing \"type\": expected subscribe, unsubscribe, get_signals or ping")?;
    match kind {
        "subscribe" | "unsubscribe" => {
            let topic = match obj.get("subscription").and_then(Value::as_str) {
                Some(t) => Topic::parse(t).ok_or_else(|| {
                    format!("unknown subscription {t:?}: expected signals, candles, status, book or trades")
                })?,
                None => {
                    return Err(
                        "missing \"subscription\": expected signals, candles, status, book or trades"
                            .into(),
                    )
                }
            };
            let filter = Filter {
                topic,
                symbol: symbol_of(obj)?,
                interval: interval_of(obj)?,
            };
            Ok(if kind == "subscribe" {
                Command::Subscribe(filter)
            } else {
                Command::Unsubscribe(filter)
            })
        }
        "get_signals" => {
            let limit = match obj.get("limit") {
                None | Some(Value::Null) => DEFAULT_LIST_LIMIT,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_LIST_LIMIT as u64).contains(&n) => n as usize,
                    _ => {
                        return Err(format!(
                            "invalid limit: expected a whole number from 1 to {MAX_LIST_LIMIT}"
                        ))
                    }
                },
            };
            Ok(Command::GetSignals(ListQuery {
                symbol: symbol_of(obj)?,
                interval: interval_of(obj)?,
                limit,
                from_ms: time_of(obj, "from")?,
                to_ms: time_of(obj, "to")?,
            }))
        }
        "ping" => Ok(Command::Ping(obj.get("id").cloned())),
        other => Err(format!(
            "unknown command type {other:?}: expected subscribe, unsubscribe, get_signals or ping"
        )),
    }
}

fn symbol_of(obj: &serde_json::Map<String, Value>) -> Result<Option<Symbol>, String> {
    match obj.get("symbol") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Symbol::new(s)
            .map(Some)
            .map_err(|e| format!("invalid symbol: {e}")),
        Some(_) => Err("invalid symbol: expected a string such as \"BTCUSDT\"".into()),
    }
}

fn interval_of(obj: &serde_json::Map<String, Value>) -> Result<Option<Interval>, String> {
    match obj.get("timeframe") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Interval::parse(s)
            .map(Some)
            .map_err(|e| format!("invalid timeframe: {e}")),
        Some(_) => Err("invalid timeframe: expected a string such as \"1h\"".into()),
    }
}

fn time_of(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("invalid {key}: expected a time in milliseconds")),
    }
}

/// `{"type":"error","error":…}`.
pub fn error_message(why: &str) -> String {
    json!({ "type": "error", "error": why }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse_command(r#"{"type":"subscribe","subscription":"signals"}"#),
            Ok(Command::Subscribe(Filter::all(Topic::Signals)))
        );
        assert_eq!(
            parse_command(
                r#"{"type":"unsubscribe","subscription":"candles","symbol":"ethusdt","timeframe":"1m"}"#
            ),
            Ok(Command::Unsubscribe(Filter {
                topic: Topic::Candles,
                symbol: Some(sym("ETHUSDT")),
                interval: Some(Interval::M1),
            }))
        );
        assert_eq!(
            parse_command(
                r#"{"type":"get_signals","symbol":"BTCUSDT","timeframe":"1h","limit":5,"from":1,"to":2}"#
            ),
            Ok(Command::GetSignals(ListQuery {
                symbol: Some(sym("BTCUSDT")),
                interval: Some(Interval::H1),
                limit: 5,
                from_ms: Some(1),
                to_ms: Some(2),
            }))
        );
        assert_eq!(
            parse_command(r#"{"type":"ping","id":7}"#),
            Ok(Command::Ping(Some(json!(7))))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, needle) in [
            ("not json", "malformed JSON"),
            ("[1]", "JSON object"),
            (r#"{"kind":"x"}"#, "missing \"type\""),
            (r#"{"type":"dance"}"#, "unknown command type"),
            (r#"{"type":"subscribe"}"#, "missing \"subscription\""),
            (
                r#"{"type":"subscribe","subscription":"orders"}"#,
                "unknown subscription",
            ),
            (
                r#"{"type":"subscribe","subscription":"signals","symbol":"a-b"}"#,
                "invalid symbol",
            ),
            (
                r#"{"type":"subscribe","subscription":"signals","timeframe":"7m"}"#,
                "invalid timeframe",
            ),
            (r#"{"type":"get_signals","limit":0}"#, "invalid limit"),
            (r#"{"type":"get_signals","limit":1001}"#, "invalid limit"),
            (r#"{"type":"get_signals","from":"x"}"#, "invalid from"),
        ] {
            let e = parse_command(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn filters_match_topic_symbol_and_timeframe() {
        let f = Filter {
            topic: Topic::Candles,
            symbol: Some(sym("BTCUSDT")),
            interval: None,
        };
        assert!(f.matches(Topic::Candles, Some(sym("BTCUSDT")), Some(Interval::M1)));
        assert!(!f.matches(Topic::Candles, Some(sym("ETHUSDT")), Some(Interval::M1)));
        assert!(!f.matches(Topic::Signals, Some(sym("BTCUSDT")), Some(Interval::M1)));
        // Trades are about a symbol and no timeframe.
        let t = Filter {
            topic: Topic::Trades,
            symbol: Some(sym("BTCUSDT")),
            interval: None,
        };
        assert!(t.matches(Topic::Trades, Some(sym("BTCUSDT")), None));
        assert!(!t.matches(Topic::Trades, Some(sym("ETHUSDT")), None));
        assert!(!t.matches(Topic::Candles, Some(sym("BTCUSDT")), None));
        assert_eq!(
            parse_command(r#"{"type":"subscribe","subscription":"trades","symbol":"btcusdt"}"#),
            Ok(Command::Subscribe(t))
        );
        assert!(Filter::all(Topic::Status).matches(Topic::Status, None, None));
    }
}
