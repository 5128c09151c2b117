//! HTTP/1.1 request parsing and response framing for the dashboard listener.
//!
//! Pure: works on byte buffers, never on a socket, so limits and edge cases are tested
//! directly. The listener ([`super::serve`]) owns the sockets. The head itself is
//! parsed by [`crate::http`], shared with the simulator; the limits, the request type
//! and the answers are the dashboard's.

pub use crate::http::query_param;

/// Largest request head (request line + headers) accepted; bigger is refused with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 48;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub keep_alive: bool,
    /// Body bytes announced by `Content-Length` (GET bodies are read and discarded).
    pub content_length: usize,
    /// Bytes of the buffer the head used.
    pub head_len: usize,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub websocket: bool,
    /// `Sec-WebSocket-Key`, for the handshake answer.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version` (13 is the only one there is).
    pub ws_version: Option<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
    /// The token of `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// The value of the `alphapulse_session` cookie (see `GET /api/session`).
    pub session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than [`MAX_HEAD_BYTES`] or has too many headers.
    TooLarge,
    /// Not HTTP/1.x.
    Malformed,
}

/// Parses the head at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    match crate::http::parse_head::<MAX_HEADERS, _>(buf, MAX_HEAD_BYTES, read_head) {
        Ok(head) => head.transpose(),
        Err(crate::http::HeadError::TooLarge | crate::http::HeadError::TooManyHeaders) => {
            Err(HeadError::TooLarge)
        }
        Err(crate::http::HeadError::Malformed(_)) => Err(HeadError::Malformed),
    }
}

/// The dashboard's reading of a complete head.
fn read_head(req: &crate::http::Head<'_, '_>) -> Result<Request, HeadError> {
    use crate::http::text;
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut content_length = 0usize;
    let (mut upgrade, mut connection_upgrade) = (false, false);
    let (mut ws_key, mut ws_version, mut origin, mut host, mut bearer) =
        (None, None, None, None, None);
    let mut session = None;
    for h in req.headers {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = text(h.value).eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = Some(text(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            ws_version = Some(text(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("origin") {
            origin = Some(text(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("host") {
            host = Some(text(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("cookie") {
            let v = text(h.value);
            let value = v
                .split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(name, _)| *name == SESSION_COOKIE)
                .map(|(_, value)| value.trim().to_string());
            session = session.or(value);
        } else if h.name.eq_ignore_ascii_case("authorization") {
            let v = text(h.value);
            if let Some((scheme, token)) = v.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    bearer = Some(token.trim().to_string());
                }
            }
        }
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            connection_upgrade = v.split(',').any(|t| t.trim() == "upgrade");
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_length = crate::http::content_length(h.value).ok_or(HeadError::Malformed)?;
        }
    }
    Ok(Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.to_string(),
        query: req.query.to_string(),
        keep_alive,
        content_length,
        head_len: req.len,
        websocket: upgrade && connection_upgrade,
        ws_key,
        ws_version,
        origin,
        host,
        bearer,
        session,
    })
}

/// The cookie `GET /api/session` sets, which stands for the token afterwards.
pub const SESSION_COOKIE: &str = "alphapulse_session";

/// A response ready to write.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A `Set-Cookie` header's value.
    pub set_cookie: Option<String>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
            set_cookie: None,
        }
    }

    /// `{"error": message}` with the given status.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// `text/plain` (Prometheus exposition format).
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
            set_cookie: None,
        }
    }

    /// Serialises the status line, headers and body.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = self.head_bytes(keep_alive);
        out.extend_from_slice(&self.body);
        out
    }

    /// The status line and headers alone (a HEAD response: `Content-Length` still
    /// names the body a GET would get).
    pub fn head_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 160);
        let cookie = self
            .set_cookie
            .as_ref()
            .map(|c| format!("Set-Cookie: {c}\r\n"))
            .unwrap_or_default();
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{cookie}Connection: {}\r\n\r\n",
                self.status,
                reason(self.status),
                self.content_type,
                self.body.len(),
                if keep_alive { "keep-alive" } else { "close" }
            )
            .as_bytes(),
        );
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        101 => "Switching Protocols",
        401 => "Unauthorized",
        403 => "Forbidden",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_incrementally() {
        let full = b"GET /api/candles?symbol=BTCUSDT&limit=5 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_head(&full[..20]), Ok(None));
        let r = parse_head(full).unwrap().unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/candles");
        assert_eq!(query_param(&r.query, "symbol").as_deref(), Some("BTCUSDT"));
        assert_eq!(query_param(&r.query, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(&r.query, "timeframe"), None);
        assert!(r.keep_alive);
        assert_eq!(r.head_len, full.len());
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let r = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn refuses_oversized_and_malformed_heads() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD_BYTES {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(query_param("a=%41%42+c", "a").as_deref(), Some("AB c"));
        assert_eq!(query_param("a=%4", "a").as_deref(), Some("%4"));
        assert_eq!(query_param("a=%zz", "a").as_deref(), Some("%zz"));
        assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
    }

    #[test]
    fn responses_frame_correctly() {
        let r = Response::error(404, "not found");
        let text = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 21\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("{\"error\":\"not found\"}"));
        let head = String::from_utf8(r.head_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 21\r\n"));
    }
}
