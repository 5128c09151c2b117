//! HTTP/1.1 on the simulator's single port: request heads (parsed by [`crate::http`],
//! shared with the dashboard), query strings, WebSocket upgrade checks and response
//! rendering.
//!
//! Runs on: the simulator core (pure). In: bytes read from a client. Out: a parsed
//! [`RequestHead`] and response bytes. Bodies are not supported (every endpoint is a
//! GET); a body announced with `Content-Length` is skipped.

use crate::wire::TimeUnit;

/// Largest request head accepted; a longer one gets 431 and the connection is closed.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers accepted per request.
const MAX_HEADERS: usize = 64;
/// Largest request body skipped on a keep-alive connection.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The parts of a request the simulator uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    pub method: String,
    /// Path without the query, percent-decoded.
    pub path: String,
    /// The raw query (after `?`), not decoded.
    pub query: String,
    /// `Upgrade: websocket` and `Connection: upgrade` were sent.
    pub wants_websocket: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
    /// The client asked to close after this response (or spoke HTTP/1.0).
    pub close: bool,
    pub content_length: usize,
    /// Time fields of a REST answer: `X-MBX-TIME-UNIT: MICROSECOND` asks for µs.
    pub time_unit: TimeUnit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head exceeds {MAX_HEAD_BYTES} bytes")]
    TooLarge,
}

/// Parses a request head at the front of `buf`. Returns the head and its length in
/// bytes, or `None` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    // A head may fill `MAX_HEAD_BYTES` exactly and still wait for its end.
    match crate::http::parse_head::<MAX_HEADERS, _>(buf, MAX_HEAD_BYTES + 1, read_head) {
        Ok(head) => head.transpose(),
        Err(crate::http::HeadError::TooLarge) => Err(HttpError::TooLarge),
        Err(crate::http::HeadError::TooManyHeaders) => Err(HttpError::Malformed(
            httparse::Error::TooManyHeaders.to_string(),
        )),
        Err(crate::http::HeadError::Malformed(e)) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// The simulator's reading of a complete head.
fn read_head(request: &crate::http::Head<'_, '_>) -> Result<(RequestHead, usize), HttpError> {
    let mut head = RequestHead {
        method: request.method.unwrap_or("GET").to_string(),
        path: percent_decode(request.path),
        query: request.query.to_string(),
        close: request.version == Some(0),
        ..RequestHead::default()
    };
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in request.headers {
        let value = crate::http::text(h.value);
        let value = &*value;
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("upgrade") {
                    connection_upgrade = true;
                } else if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            head.websocket_version = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("x-mbx-time-unit") {
            if value.eq_ignore_ascii_case("microsecond") {
                head.time_unit = TimeUnit::Microsecond;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = crate::http::content_length(h.value)
                .ok_or_else(|| HttpError::Malformed("bad Content-Length".into()))?;
        }
    }
    head.wants_websocket = upgrade && connection_upgrade;
    Ok((head, request.len))
}

/// Decodes `%XX` escapes; invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    crate::http::percent_decode(text, false)
}

/// Query parameters in order, decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(crate::http::query_pair)
        .collect()
}

/// The first value of a query parameter.
pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A response to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Extra headers (name, value).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Binance's error body `{"code":…,"msg":"…"}`.
    pub fn error(status: u16, code: i64, msg: &str) -> Response {
        let body = format!(
            "{{\"code\":{code},\"msg\":{}}}",
            serde_json::Value::String(msg.to_string())
        );
        Response::json(status, body)
    }

    /// Appends the whole response (head and body).
    pub fn write_to(&self, out: &mut Vec<u8>, close: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(
            b"\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: ",
        );
        out.extend_from_slice(self.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if close {
            b"Connection: close\r\n\r\n".as_slice()
        } else {
            b"Connection: keep-alive\r\n\r\n".as_slice()
        });
        out.extend_from_slice(&self.body);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The 101 response accepting a WebSocket upgrade.
pub fn write_upgrade(out: &mut Vec<u8>, key: &str) {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest_and_upgrade_requests() {
        let raw = b"GET /api/v3/klines?symbol=BTCUSDT&interval=1m HTTP/1.1\r\nHost: x\r\n\r\nGET";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 3);
        assert_eq!(head.path, "/api/v3/klines");
        assert_eq!(head.query, "symbol=BTCUSDT&interval=1m");
        assert!(!head.wants_websocket && !head.close);
        let raw = b"GET /stream?streams=btcusdt@trade HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert!(head.wants_websocket);
        assert_eq!(
            head.websocket_key.as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        let mut out = Vec::new();
        write_upgrade(&mut out, "dGhlIHNhbXBsZSBub25jZQ==");
        // The RFC 6455 example key and answer.
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(head.time_unit, TimeUnit::Millisecond);
        // Binance's REST time unit header: name and value in either case.
        for header in [
            "X-MBX-TIME-UNIT: MICROSECOND",
            "x-mbx-time-unit: microsecond",
        ] {
            let raw = format!("GET /api/v3/time HTTP/1.1\r\n{header}\r\n\r\n");
            let (head, _) = parse_head(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(head.time_unit, TimeUnit::Microsecond, "{header}");
        }
        let raw = b"GET /api/v3/time HTTP/1.1\r\nX-MBX-TIME-UNIT: MILLISECOND\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.time_unit, TimeUnit::Millisecond);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n").unwrap(), None);
        assert!(parse_head(b"\x01\x02 / HTTP/1.1\r\n\r\n").is_err());
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(parse_head(&long), Err(HttpError::TooLarge));
    }

    #[test]
    fn decodes_queries() {
        let pairs = query_pairs("symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D&limit=5&x");
        assert_eq!(
            query_get(&pairs, "symbols"),
            Some(r#"["BTCUSDT","ETHUSDT"]"#)
        );
        assert_eq!(query_get(&pairs, "limit"), Some("5"));
        assert_eq!(query_get(&pairs, "x"), Some(""));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn renders_responses() {
        let mut out = Vec::new();
        let mut r = Response::error(400, -1121, "Invalid symbol.");
        r.headers.push(("X-MBX-USED-WEIGHT-1M", "2".into()));
        r.write_to(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("X-MBX-USED-WEIGHT-1M: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"code\":-1121,\"msg\":\"Invalid symbol.\"}"));
    }
}
