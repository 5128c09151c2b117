//! WebSocket control requests (`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`,
//! `SET_PROPERTY`, `GET_PROPERTY`) and Binance's replies to them.
//!
//! Runs on: the simulator core (pure). In: the text of one client message. Out: a typed
//! [`Request`] or the [`ControlError`] Binance would answer with; reply rendering.
//! Control messages are rare (at most 5 a second per connection), so they are parsed
//! with serde_json; its error texts ("expected value at line 1 column 2") are the ones
//! Binance's own server sends.

use serde_json::Value;

/// Longest string request id Binance accepts (a UUID with its dashes).
const MAX_STRING_ID_LEN: usize = 36;
/// The method names, in Binance's error text order.
const METHODS: &str =
    "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`";

/// A valid control request. `id` is the request id as JSON text, echoed verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe { id: String, streams: Vec<String> },
    Unsubscribe { id: String, streams: Vec<String> },
    ListSubscriptions { id: String },
    SetCombined { id: String, combined: bool },
    GetCombined { id: String },
}

/// An error reply: `{"error":{"code":…,"msg":"…"},"id":…}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control error {code}: {msg}")]
pub struct ControlError {
    /// The request id as JSON text (`null` when it was missing or invalid).
    pub id: String,
    pub code: i64,
    pub msg: String,
}

impl ControlError {
    pub fn new(id: &str, code: i64, msg: impl Into<String>) -> ControlError {
        ControlError {
            id: id.to_string(),
            code,
            msg: msg.into(),
        }
    }

    /// Code 2 with Binance's "Invalid request: …" prefix.
    pub fn invalid_request(id: &str, what: &str) -> ControlError {
        ControlError::new(id, 2, format!("Invalid request: {what}"))
    }
}

/// Parses one control message.
pub fn parse_request(text: &str) -> Result<Request, ControlError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ControlError::new("null", 3, format!("Invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ControlError::invalid_request(
            "null",
            &format!(
                "invalid type: expected struct Request at line 1 column {}",
                text.len()
            ),
        ));
    };
    let method = match map.get("method") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => {
            return Err(ControlError::invalid_request(
                "null",
                &format!(
                    "invalid type: expected a method name at line 1 column {}",
                    text.len()
                ),
            ))
        }
        None => {
            return Err(ControlError::invalid_request(
                "null",
                &format!("missing field `method` at line 1 column {}", text.len()),
            ))
        }
    };
    let id = match map.get("id") {
        Some(Value::Null) => "null".to_string(),
        Some(Value::Number(n)) if n.is_i64() => n.to_string(),
        Some(Value::String(s)) if valid_string_id(s) => Value::String(s.clone()).to_string(),
        _ => {
            return Err(ControlError::invalid_request(
                "null",
                "request ID must be an unsigned integer",
            ))
        }
    };
    let params = map.get("params");
    match method.as_str() {
        "SUBSCRIBE" | "UNSUBSCRIBE" => {
            let streams = stream_params(&id, params)?;
            Ok(if method == "SUBSCRIBE" {
                Request::Subscribe { id, streams }
            } else {
                Request::Unsubscribe { id, streams }
            })
        }
        "LIST_SUBSCRIPTIONS" => match params {
            None | Some(Value::Null) => Ok(Request::ListSubscriptions { id }),
            Some(Value::Array(a)) if a.is_empty() => Ok(Request::ListSubscriptions { id }),
            Some(_) => Err(ControlError::invalid_request(&id, "too many parameters")),
        },
        "SET_PROPERTY" => {
            let params = property_params(&id, params)?;
            if params.len() > 2 {
                return Err(ControlError::invalid_request(&id, "too many parameters"));
            }
            check_property_name(&id, params.first())?;
            match params.get(1) {
                Some(Value::Bool(combined)) => Ok(Request::SetCombined {
                    id,
                    combined: *combined,
                }),
                _ => Err(ControlError::new(
                    &id,
                    1,
                    "Invalid value type: expected Boolean",
                )),
            }
        }
        "GET_PROPERTY" => {
            let params = property_params(&id, params)?;
            if params.len() > 1 {
                return Err(ControlError::invalid_request(&id, "too many parameters"));
            }
            check_property_name(&id, params.first())?;
            Ok(Request::GetCombined { id })
        }
        other => {
            let column = text
                .find(other)
                .map_or(text.len(), |at| at + other.len() + 1);
            Err(ControlError::invalid_request(
                "null",
                &format!("unknown variant `{other}`, expected one of {METHODS} at line 1 column {column}"),
            ))
        }
    }
}

/// Binance's string ids: alphanumeric, at most 36 characters; dashes are accepted too,
/// so that a UUID (the official SDKs' default id) passes.
fn valid_string_id(id: &str) -> bool {
    (1..=MAX_STRING_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn stream_params(id: &str, params: Option<&Value>) -> Result<Vec<String>, ControlError> {
    match params {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ControlError::invalid_request(id, "invalid stream")),
            })
            .collect(),
        Some(_) => Err(ControlError::invalid_request(id, "invalid stream")),
    }
}

fn property_params<'a>(id: &str, params: Option<&'a Value>) -> Result<&'a [Value], ControlError> {
    match params {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(ControlError::invalid_request(
            id,
            "property name must be a string",
        )),
    }
}

fn check_property_name(id: &str, name: Option<&Value>) -> Result<(), ControlError> {
    match name {
        Some(Value::String(n)) if n == "combined" => Ok(()),
        Some(Value::String(_)) => Err(ControlError::new(id, 0, "Unknown property")),
        _ => Err(ControlError::invalid_request(
            id,
            "property name must be a string",
        )),
    }
}

/// `{"result":null,"id":…}`.
pub fn reply_null(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"{\"result\":null,\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.push(b'}');
}

/// `{"result":true,"id":…}`.
pub fn reply_bool(out: &mut Vec<u8>, id: &str, value: bool) {
    out.extend_from_slice(b"{\"result\":");
    out.extend_from_slice(if value { b"true" } else { b"false" });
    out.extend_from_slice(b",\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.push(b'}');
}

/// `{"result":["btcusdt@aggTrade",…],"id":…}`.
pub fn reply_list<'a>(out: &mut Vec<u8>, id: &str, names: impl Iterator<Item = &'a str>) {
    out.extend_from_slice(b"{\"result\":[");
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(name.to_string()).to_string().as_bytes());
    }
    out.extend_from_slice(b"],\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.push(b'}');
}

/// `{"error":{"code":…,"msg":"…"},"id":…}`.
pub fn reply_error(out: &mut Vec<u8>, error: &ControlError) {
    out.extend_from_slice(b"{\"error\":{\"code\":");
    out.extend_from_slice(error.code.to_string().as_bytes());
    out.extend_from_slice(b",\"msg\":");
    out.extend_from_slice(Value::String(error.msg.clone()).to_string().as_bytes());
    out.extend_from_slice(b"},\"id\":");
    out.extend_from_slice(error.id.as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ControlError {
        parse_request(text).unwrap_err()
    }

    #[test]
    fn parses_the_documented_requests() {
        assert_eq!(
            parse_request(
                r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth"],"id":1}"#
            ),
            Ok(Request::Subscribe {
                id: "1".into(),
                streams: vec!["btcusdt@aggTrade".into(), "btcusdt@depth".into()]
            })
        );
        assert_eq!(
            parse_request(r#"{"method":"LIST_SUBSCRIPTIONS","id":"abc"}"#),
            Ok(Request::ListSubscriptions {
                id: "\"abc\"".into()
            })
        );
        assert_eq!(
            parse_request(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":null}"#),
            Ok(Request::SetCombined {
                id: "null".into(),
                combined: true
            })
        );
        assert_eq!(
            parse_request(r#"{"method":"GET_PROPERTY","params":["combined"],"id":-2}"#),
            Ok(Request::GetCombined { id: "-2".into() })
        );
    }

    /// Binance: "a 64-bit signed integer, an alphanumeric string of up to 36 characters
    /// (UUIDs with dashes are accepted), or null", echoed as given.
    #[test]
    fn request_ids_follow_binance() {
        let id = |text: &str| {
            parse_request(&format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{text}}}"#))
                .map(|r| match r {
                    Request::ListSubscriptions { id } => id,
                    other => panic!("{other:?}"),
                })
                .map_err(|e| (e.code, e.id, e.msg))
        };
        for ok in [
            "0",
            "-9223372036854775808",
            "9223372036854775807",
            "null",
            r#""ab12""#,
            r#""123""#,
            r#""f47ac10b-58cc-4372-a567-0e02b2c3d479""#,
            r#""abcdefghijklmnopqrstuvwxyz0123456789""#,
        ] {
            assert_eq!(id(ok), Ok(ok.to_string()), "{ok}");
        }
        let refused = || {
            Err((
                2,
                "null".to_string(),
                "Invalid request: request ID must be an unsigned integer".to_string(),
            ))
        };
        for bad in [
            "9223372036854775808",
            "18446744073709551615",
            "1e3",
            "1.0",
            "true",
            "[1]",
            r#""""#,
            r#""abcdefghijklmnopqrstuvwxyz01234567890""#,
            r#""a b""#,
            r#""a_b""#,
            r#""é""#,
        ] {
            assert_eq!(id(bad), refused(), "{bad}");
        }
    }

    #[test]
    fn errors_match_binance() {
        let e = err("{bad");
        assert_eq!((e.code, e.id.as_str()), (3, "null"));
        assert!(e.msg.starts_with("Invalid JSON: "), "{}", e.msg);
        let e = err(r#"{"method":"FOO","id":1}"#);
        assert_eq!(e.code, 2);
        assert!(e
            .msg
            .starts_with("Invalid request: unknown variant `FOO`, expected one of `SUBSCRIBE`"));
        assert_eq!(err(r#"{"params":[],"id":1}"#).code, 2);
        assert!(err(r#"{"params":[],"id":1}"#)
            .msg
            .contains("missing field `method`"));
        assert_eq!(
            err(r#"{"method":"SUBSCRIBE","params":[]}"#).msg,
            "Invalid request: request ID must be an unsigned integer"
        );
        assert_eq!(
            err(r#"{"method":"SUBSCRIBE","params":[],"id":1.5}"#).msg,
            "Invalid request: request ID must be an unsigned integer"
        );
        let e = err(r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":4}"#);
        assert_eq!(
            (e.code, e.msg.as_str(), e.id.as_str()),
            (1, "Invalid value type: expected Boolean", "4")
        );
        let e = err(r#"{"method":"GET_PROPERTY","params":["colour"],"id":4}"#);
        assert_eq!((e.code, e.msg.as_str()), (0, "Unknown property"));
        let e = err(r#"{"method":"GET_PROPERTY","params":[5],"id":4}"#);
        assert_eq!(e.msg, "Invalid request: property name must be a string");
        let e = err(r#"{"method":"SET_PROPERTY","params":["combined",true,1],"id":4}"#);
        assert_eq!(e.msg, "Invalid request: too many parameters");
        let e = err(r#"{"method":"LIST_SUBSCRIPTIONS","params":["x"],"id":4}"#);
        assert_eq!(e.msg, "Invalid request: too many parameters");
        let e = err(r#"{"method":"SUBSCRIBE","params":[1],"id":4}"#);
        assert_eq!(e.msg, "Invalid request: invalid stream");
    }

    #[test]
    fn replies_render() {
        let mut out = Vec::new();
        reply_null(&mut out, "1");
        reply_bool(&mut out, "2", true);
        reply_list(&mut out, "3", ["btcusdt@aggTrade"].into_iter());
        reply_error(
            &mut out,
            &ControlError::new("null", 3, "Invalid JSON: \"x\""),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"result":null,"id":1}{"result":true,"id":2}{"result":["btcusdt@aggTrade"],"id":3}{"error":{"code":3,"msg":"Invalid JSON: \"x\""},"id":null}"#
        );
    }
}
