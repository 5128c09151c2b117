//! The feed's WebSocket client path: bytes from the exchange through the feed's own frame
//! reader (`feed::frames::FrameReader`, with the feed's limits), into what a session does
//! with each message (`feed::connection::receive`: parse text in place, count binary,
//! queue the pong of a ping, end on close). The input arrives in reads of varying size,
//! taken from its first byte, so frames split across reads are exercised too.

#![no_main]

use alphapulse::config::FeedConfig;
use alphapulse::feed::connection::{frame_reader, receive, Received};
use alphapulse::wire::{Parser, TimeUnit};
use libfuzzer_sys::fuzz_target;

/// More messages than any input of the fuzzer's maximum length can hold.
const MAX_MESSAGES: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, mut input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut feed = FeedConfig::default();
    // A small limit, so the fuzzer reaches the size checks with small inputs.
    feed.max_frame_bytes = 4096;
    let mut reader = frame_reader(&feed);
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut out = Vec::new();
    let mut messages = 0;
    'reads: while !input.is_empty() && messages < MAX_MESSAGES {
        let spare = reader.spare();
        let n = chunk.min(spare.len()).min(input.len());
        spare[..n].copy_from_slice(&input[..n]);
        input = &input[n..];
        reader.filled(n);
        loop {
            // A refused frame ends the session here.
            let Ok(Some(frame)) = reader.next() else {
                if reader.next().is_err() {
                    break 'reads;
                }
                break;
            };
            messages += 1;
            out.clear();
            match receive(&mut parser, frame, &mut out) {
                Received::Frame(_) | Received::Binary | Received::Ignored => {}
                Received::Ping => assert!(!out.is_empty()),
                Received::Close => break 'reads,
            }
        }
    }
    assert!(parser.stats.errors <= parser.stats.frames);
});
