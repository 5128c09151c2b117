//! The opening handshake: the request, the key, and every way a response may
//! accept or refuse the upgrade.

use super::*;

// ---- handshake ----

fn response(status: &str, headers: &[&str]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn rfc_response() -> Vec<u8> {
    response(
        "101 Switching Protocols",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        ],
    )
}

#[test]
fn builds_the_handshake_request() {
    let request = client_handshake_request(
        "stream.binance.com:9443",
        "/stream?timeUnit=MICROSECOND",
        RFC_KEY,
    );
    let expected = "GET /stream?timeUnit=MICROSECOND HTTP/1.1\r\n\
                    Host: stream.binance.com:9443\r\n\
                    Upgrade: websocket\r\n\
                    Connection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(String::from_utf8(request.clone()).unwrap(), expected);

    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&request).unwrap();
    assert_eq!(status, httparse::Status::Complete(request.len()));
    assert_eq!(parsed.method, Some("GET"));

    let root = client_handshake_request("localhost", "", RFC_KEY);
    assert!(root.starts_with(b"GET / HTTP/1.1\r\n"));
}

#[test]
fn new_keys_are_16_random_bytes_in_base64() {
    let key = new_key();
    assert_eq!(key.len(), 24);
    assert!(key.ends_with("=="));
    assert!(key[..22]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    assert_ne!(key, new_key());
}

#[test]
fn accepts_the_rfc_handshake_response() {
    assert_eq!(
        tungstenite::handshake::derive_accept_key(RFC_KEY.as_bytes()),
        RFC_ACCEPT
    );
    let head = rfc_response();
    assert_eq!(
        parse_handshake_response(&head, RFC_KEY),
        Ok(Some(head.len()))
    );
    for end in 0..head.len() {
        assert_eq!(parse_handshake_response(&head[..end], RFC_KEY), Ok(None));
    }
}

#[test]
fn accepts_header_names_and_values_in_any_case() {
    let head = response(
        "101 Switching Protocols",
        &[
            "upgrade: WebSocket",
            "CONNECTION: keep-alive, UPGRADE",
            "sec-websocket-accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  ",
            "Sec-WebSocket-Extensions: ",
        ],
    );
    assert_eq!(
        parse_handshake_response(&head, RFC_KEY),
        Ok(Some(head.len()))
    );
}

#[test]
fn keeps_the_frames_after_the_handshake_in_the_reader() {
    let mut bytes = rfc_response();
    let head = bytes.len();
    bytes.extend(frame(0x81, b"{\"result\":null,\"id\":1}"));
    bytes.extend(&frame(0x81, b"second")[..3]);

    let mut r = reader();
    r.spare()[..bytes.len()].copy_from_slice(&bytes);
    r.filled(bytes.len());
    assert_eq!(
        parse_handshake_response(r.pending(), RFC_KEY),
        Ok(Some(head))
    );
    r.discard(head);
    let Ok(Some(Frame::Text(reply))) = r.next() else {
        panic!("the first frame was lost");
    };
    assert_eq!(reply, b"{\"result\":null,\"id\":1}");
    assert_eq!(r.next(), Ok(None));
    assert_eq!(r.pending(), &frame(0x81, b"second")[..3]);
}

#[test]
fn refuses_a_response_without_the_upgrade() {
    let refused = |headers: &[&str]| {
        let head = response("101 Switching Protocols", headers);
        match parse_handshake_response(&head, RFC_KEY) {
            Err(HandshakeError::Invalid(why)) => why,
            other => panic!("{headers:?}: {other:?}"),
        }
    };
    let upgrade = "Upgrade: websocket";
    let connection = "Connection: Upgrade";
    let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    assert_eq!(refused(&[connection, accept]), "no `Upgrade: websocket`");
    assert_eq!(
        refused(&["Upgrade: h2c", connection, accept]),
        "no `Upgrade: websocket`"
    );
    assert_eq!(refused(&[upgrade, accept]), "no `upgrade` in `Connection`");
    assert_eq!(
        refused(&[upgrade, "Connection: keep-alive", accept]),
        "no `upgrade` in `Connection`"
    );
    assert_eq!(refused(&[upgrade, connection]), "no `Sec-WebSocket-Accept`");
    assert_eq!(
        refused(&[upgrade, connection, "Sec-WebSocket-Accept: AAAA"]),
        "wrong `Sec-WebSocket-Accept`"
    );
    assert_eq!(
        refused(&[upgrade, connection, accept, accept]),
        "wrong `Sec-WebSocket-Accept`"
    );
    assert_eq!(
        refused(&[
            upgrade,
            connection,
            accept,
            "Sec-WebSocket-Extensions: permessage-deflate"
        ]),
        "an extension that was not offered"
    );
    assert_eq!(
        refused(&[upgrade, connection, accept, "Sec-WebSocket-Protocol: chat"]),
        "a subprotocol that was not offered"
    );
    // The accept value belongs to another key.
    let head = rfc_response();
    assert_eq!(
        parse_handshake_response(&head, "AQIDBAUGBwgJCgsMDQ4PEA=="),
        Err(HandshakeError::Invalid("wrong `Sec-WebSocket-Accept`"))
    );
}

#[test]
fn reports_a_refused_upgrade_with_its_status_and_body() {
    let mut bytes = response("429 Too Many Requests", &["Content-Length: 300"]);
    bytes.extend("x".repeat(300).bytes());
    assert_eq!(
        parse_handshake_response(&bytes, RFC_KEY),
        Err(HandshakeError::Status {
            code: 429,
            body: "x".repeat(200)
        })
    );
    let bytes = response("403 Forbidden", &["Content-Length: 0"]);
    assert_eq!(
        parse_handshake_response(&bytes, RFC_KEY),
        Err(HandshakeError::Status {
            code: 403,
            body: String::new()
        })
    );
}

#[test]
fn refuses_a_head_over_16_kib_and_malformed_ones() {
    let pad = format!("X-Pad: {}", "p".repeat(MAX_HANDSHAKE_HEAD_BYTES));
    let head = response("101 Switching Protocols", &[&pad]);
    let too_large = Err(HandshakeError::TooLarge {
        limit: MAX_HANDSHAKE_HEAD_BYTES,
    });
    assert_eq!(parse_handshake_response(&head, RFC_KEY), too_large);
    let unfinished = &head[..head.len() - 4];
    assert_eq!(parse_handshake_response(unfinished, RFC_KEY), too_large);
    // Still incomplete but within the limit: wait for more.
    let within = &head[..MAX_HANDSHAKE_HEAD_BYTES];
    assert_eq!(parse_handshake_response(within, RFC_KEY), Ok(None));

    assert!(matches!(
        parse_handshake_response(b"SSH-2.0-OpenSSH\r\n\r\n", RFC_KEY),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn a_handshake_head_fits_the_smallest_buffer() {
    let mut r = FrameReader::new(0, LIMIT, LIMIT);
    assert!(r.capacity() > MAX_HANDSHAKE_HEAD_BYTES);
    assert!(r.spare().len() > MAX_HANDSHAKE_HEAD_BYTES);
}
