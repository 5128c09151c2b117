//! The dashboard's HTTP request-head parser (httparse underneath), with what the
//! listener does next with a parsed head: query parameters, list queries, and the
//! WebSocket handshake's accept key.

#![no_main]

use alphapulse::dashboard::http::{parse_head, query_param, MAX_HEAD_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some(req)) => {
            assert!(req.head_len <= data.len());
            // The listener parses again as bytes arrive: the complete head alone gives
            // the same request.
            assert_eq!(parse_head(&data[..req.head_len]), Ok(Some(req.clone())));
            let _ = query_param(&req.query, "symbol");
            let _ = query_param(&req.query, "token");
            let _ = alphapulse::dashboard::list_query(&req.query);
            if let Some(key) = &req.ws_key {
                let _ = tungstenite::handshake::derive_accept_key(key.as_bytes());
            }
        }
        // Waiting for more bytes is only allowed below the head limit.
        Ok(None) => assert!(data.len() < MAX_HEAD_BYTES),
        Err(_) => {}
    }
});
