use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;
use crate::market::{Interval, Symbol};

fn request(want: Want) -> Request {
    Request {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        interval: Interval::M1,
        want,
    }
}

/// Answers one connection with `response` and returns the URL to ask.
fn serve_once(response: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(response.as_bytes());
    });
    format!("http://{addr}/api/v3/klines")
}

fn answer(status_line: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn urls_ask_for_what_each_want_needs() {
    let base = "https://api.example/";
    let url = |want| klines_url(base, &request(want));
    let prefix = "https://api.example/api/v3/klines?symbol=BTCUSDT&interval=1m";
    assert_eq!(
        url(Want::Warm {
            candles: 50,
            end_open_ms: Some(120_000)
        }),
        format!("{prefix}&endTime=120000&limit=50")
    );
    // Without an end, one more row: the open candle, dropped on arrival.
    assert_eq!(
        url(Want::Warm {
            candles: 50,
            end_open_ms: None
        }),
        format!("{prefix}&limit=51")
    );
    assert_eq!(
        url(Want::Warm {
            candles: 5000,
            end_open_ms: None
        }),
        format!("{prefix}&limit={}", klines::MAX_LIMIT)
    );
    // The end is exclusive in a Want and inclusive on the exchange.
    assert_eq!(
        url(Want::Range {
            from_open_ms: 60_000,
            to_open_ms: Some(180_000)
        }),
        format!("{prefix}&startTime=60000&endTime=179999&limit=1000")
    );
    assert_eq!(
        url(Want::Range {
            from_open_ms: 60_000,
            to_open_ms: None
        }),
        format!("{prefix}&startTime=60000&limit=1000")
    );
}

#[test]
fn rate_headers_are_read_leniently_and_capped() {
    let mut h = ureq::http::HeaderMap::new();
    assert_eq!(rate_headers(&h), (None, None));
    h.insert("X-MBX-USED-WEIGHT-1M", " 1200 ".parse().unwrap());
    h.insert("Retry-After", "7".parse().unwrap());
    assert_eq!(rate_headers(&h), (Some(1200), Some(7)));
    h.insert("x-mbx-used-weight-1m", "99999999999".parse().unwrap());
    h.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(rate_headers(&h), (Some(u32::MAX), None));
    // 2^32 - 1 and past u64: the most there is, never a wrapped or ignored count.
    h.insert("x-mbx-used-weight-1m", "4294967295".parse().unwrap());
    assert_eq!(rate_headers(&h).0, Some(u32::MAX));
    let huge = "9".repeat(40);
    h.insert("x-mbx-used-weight-1m", huge.parse().unwrap());
    h.insert("retry-after", huge.parse().unwrap());
    assert_eq!(rate_headers(&h), (Some(u32::MAX), Some(u64::MAX)));
    for bad in ["-1", "", "12a", "+5"] {
        h.insert("x-mbx-used-weight-1m", bad.parse().unwrap());
        assert_eq!(rate_headers(&h).0, None, "{bad:?}");
    }
    assert!(is_rate_limited(429) && is_rate_limited(418));
    assert!(!is_rate_limited(200) && !is_rate_limited(500));
}

#[test]
fn a_non_200_body_is_an_error_quoting_its_start() {
    assert_eq!(body_of("u", 200, "[]".into()).unwrap(), "[]");
    match body_of("u", 503, "x".repeat(500)) {
        Err(RestError::Status { url, status, body }) => {
            assert_eq!((url.as_str(), status), ("u", 503));
            assert_eq!(body, "x".repeat(200));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_get_reads_the_status_headers_and_body() {
    let client = Client::new(agent(None).unwrap());
    let url = serve_once(answer("200 OK", "X-MBX-USED-WEIGHT-1M: 12\r\n", "[]"));
    let a = client.get(&url).unwrap();
    assert_eq!(
        (a.status, a.used_weight_1m, a.retry_after_s),
        (200, Some(12), None)
    );
    assert_eq!(a.body.unwrap().unwrap(), "[]");

    let url = serve_once(answer(
        "429 Too Many Requests",
        "Retry-After: 30\r\nX-MBX-USED-WEIGHT-1M: 6100\r\n",
        "{\"code\":-1003}",
    ));
    let a = client.get(&url).unwrap();
    assert_eq!(
        (a.status, a.used_weight_1m, a.retry_after_s),
        (429, Some(6100), Some(30))
    );
    assert!(a.body.is_none(), "a rate-limited answer's body is not read");

    let url = serve_once(answer("500 Internal Server Error", "", "down"));
    let a = client.get(&url).unwrap();
    assert!(matches!(
        a.body,
        Some(Err(RestError::Status { status: 500, ref body, .. })) if body == "down"
    ));
}

#[test]
fn no_answer_is_an_http_error_naming_the_url() {
    // A port nothing listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/api/v3/klines");
    let client = Client::new(agent(None).unwrap());
    match client.get(&url) {
        Err(e @ RestError::Http { .. }) => assert!(e.to_string().contains(&url), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let path = std::env::temp_dir().join(format!("alphapulse-rest-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate\n").unwrap();
    match agent(Some(&path)) {
        Err(RestError::CaFile { why, .. }) => assert_eq!(why, "no certificates in the file"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let _ = std::fs::remove_file(&path);
}
