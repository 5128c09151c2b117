//! HTTP/1.x request heads, for every server of the process (the dashboard and the
//! exchange simulator): the httparse call and its bounds, the request target split into
//! path and query, percent-decoding and query parameters.
//!
//! Pure: bytes in, borrowed views out; no sockets. Each server keeps its own request
//! type, limits, response framing and error answers, and reads the headers it needs
//! from the [`Head`] this module hands it.

use std::borrow::Cow;

/// Why a head cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// `max_head_bytes` arrived without a complete head.
    TooLarge,
    /// More headers than the caller allows.
    TooManyHeaders,
    /// Not an HTTP/1.x request head.
    Malformed(httparse::Error),
}

/// A complete request head, borrowed from the buffer it was parsed from.
pub struct Head<'h, 'b> {
    pub method: Option<&'b str>,
    /// The request target before `?` (`/` when absent), not decoded.
    pub path: &'b str,
    /// The request target after `?` (empty when none), not decoded.
    pub query: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: Option<u8>,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the buffer the head used.
    pub len: usize,
}

/// Parses the head at the start of `buf` with room for `MAX_HEADERS` headers and hands
/// it to `read`: `Ok(None)` when more bytes are needed and fewer than `max_head_bytes`
/// have come.
pub fn parse_head<const MAX_HEADERS: usize, T>(
    buf: &[u8],
    max_head_bytes: usize,
    read: impl FnOnce(&Head<'_, '_>) -> T,
) -> Result<Option<T>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            Ok(Some(read(&Head {
                method: req.method,
                path,
                query,
                version: req.version,
                headers: req.headers,
                len,
            })))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(e)),
    }
}

/// A header value as trimmed text (invalid UTF-8 replaced).
pub fn text(value: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(value) {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    }
}

/// A `Content-Length` value, or `None` when it is not a number.
pub fn content_length(value: &[u8]) -> Option<usize> {
    text(value).parse().ok()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in a query);
/// invalid escapes stay as they are.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `key=value` piece of a query, decoded (a piece without `=` has an empty value).
pub fn query_pair(pair: &str) -> (String, String) {
    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
    (percent_decode(k, true), percent_decode(v, true))
}

/// The value of query parameter `name` (its first occurrence), decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = query_pair(pair);
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(buf: &[u8]) -> Result<Option<(String, String, usize)>, HeadError> {
        parse_head::<4, _>(buf, 64, |h| {
            (h.path.to_string(), h.query.to_string(), h.len)
        })
    }

    #[test]
    fn splits_the_target_and_waits_for_the_rest() {
        let full = b"GET /a%20b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\nnext";
        assert_eq!(
            path_of(full),
            Ok(Some(("/a%20b".into(), "x=1&y".into(), full.len() - 4)))
        );
        assert_eq!(path_of(&full[..10]), Ok(None));
    }

    #[test]
    fn bounds_the_head_and_the_headers() {
        let mut long = b"GET /".to_vec();
        long.resize(63, b'a');
        assert_eq!(path_of(&long), Ok(None));
        long.push(b'a');
        assert_eq!(path_of(&long), Err(HeadError::TooLarge));
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n";
        assert_eq!(
            parse_head::<4, _>(many, 1024, |_| ()),
            Err(HeadError::TooManyHeaders)
        );
        assert!(matches!(
            path_of(b"\x00\x01 / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn decodes_escapes_and_queries() {
        assert_eq!(percent_decode("a+%41%4", false), "a+A%4");
        assert_eq!(percent_decode("a+%41%zz", true), "a A%zz");
        assert_eq!(query_param("a=1&b=%41+c&b=2", "b").as_deref(), Some("A c"));
        assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(query_pair("k%3D=v=w"), ("k=".into(), "v=w".into()));
        assert_eq!(content_length(b" 12 "), Some(12));
        assert_eq!(content_length(b"x"), None);
        assert_eq!(text(b"  v \t"), "v");
    }
}
