//! The Binance frame parser, on any bytes: what the feed calls on every text frame.
//!
//! Besides "never panics, never reads out of bounds" (ASan), it checks the parser's own
//! promise that its two paths agree: a frame the fast path decodes must decode to the
//! same message through simd-json.

#![no_main]

use alphapulse::wire::{Parser, TimeUnit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the connection's time unit; the rest is the frame.
    let Some((&flags, frame)) = data.split_first() else {
        return;
    };
    let unit = if flags & 1 == 0 {
        TimeUnit::Millisecond
    } else {
        TimeUnit::Microsecond
    };
    let mut fast = Parser::new(unit);
    let mut general = Parser::new(unit);
    general.set_fast_path(false);

    let mut a = frame.to_vec();
    let mut b = frame.to_vec();
    let by_fast = fast.parse(&mut a);
    let by_general = general.parse(&mut b);
    if let Ok(message) = &by_fast {
        if let Ok(other) = &by_general {
            assert_eq!(message, other, "the fast path and simd-json disagree");
        } else {
            panic!(
                "the fast path decoded a frame simd-json refuses: {by_general:?} vs {message:?}"
            );
        }
    }
    let fast_was_ok = by_fast.is_ok();
    drop(by_fast);
    drop(by_general);

    // A parser is reused frame after frame: parsing again with the warm scratch gives
    // the same outcome.
    let mut c = frame.to_vec();
    assert_eq!(
        fast.parse(&mut c).is_ok(),
        fast_was_ok,
        "a warm parser changed its mind"
    );
    assert!(fast.stats.errors <= fast.stats.frames);
});
