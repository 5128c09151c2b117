//! The feed's WebSocket client path: bytes from the exchange through tungstenite's frame
//! decoder, with the feed's limits, into what a session does with each message
//! (`feed::connection::receive`: parse text, count binary, answer pings, end on close).

#![no_main]

use std::io::{self, Read, Write};

use alphapulse::config::FeedConfig;
use alphapulse::feed::connection::{receive, ws_config, Received};
use alphapulse::wire::{Parser, TimeUnit};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

/// The exchange's bytes to read; what the client writes (pongs) is dropped.
struct Wire<'a> {
    input: &'a [u8],
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// More messages than any input of the fuzzer's maximum length can hold.
const MAX_MESSAGES: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let mut feed = FeedConfig::default();
    // A small limit, so the fuzzer reaches the size checks with small inputs.
    feed.max_frame_bytes = 4096;
    let mut ws =
        WebSocket::from_raw_socket(Wire { input: data }, Role::Client, Some(ws_config(&feed)));
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut buf = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let Ok(msg) = ws.read() else {
            // Input ended, or tungstenite refused a frame: the session would end here.
            break;
        };
        match receive(&mut parser, &mut buf, &msg) {
            Received::Frame(_) | Received::Binary | Received::Ignored => {}
            Received::Ping => {
                if ws.flush().is_err() {
                    break;
                }
            }
            Received::Close => break,
        }
    }
    assert!(parser.stats.errors <= parser.stats.frames);
});
