//! The REST klines answer (`GET /api/v3/klines`) on any text: what the backfill reads
//! from the exchange, or from anything that answers in its place.
//!
//! The first byte picks the interval, the rest is the body. Besides "never panics,
//! never reads out of bounds" (ASan), it checks what the backfill relies on: parsed
//! candles are closed, on the interval's grid, end where their interval ends and come
//! in strictly increasing open time; `closed_before` is a prefix count; the runs
//! `missing_runs` reports are in order, inside the range, and hold no parsed candle.

#![no_main]

use alphapulse::backfill::klines::{closed_before, missing_runs, parse};
use alphapulse::market::{Interval, Symbol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let interval = Interval::ALL[pick as usize % Interval::ALL.len()];
    let symbol = Symbol::new("BTCUSDT").expect("a valid symbol");
    let Ok(candles) = parse(body, symbol, interval) else {
        return;
    };
    for c in &candles {
        assert!(c.closed);
        assert_eq!(interval.open_time(c.open_time_ms), c.open_time_ms);
        assert_eq!(interval.close_time(c.open_time_ms), c.close_time_ms);
    }
    assert!(candles.windows(2).all(|w| w[0].open_time_ms < w[1].open_time_ms));
    if let (Some(first), Some(last)) = (candles.first(), candles.last()) {
        let n = closed_before(&candles, last.close_time_ms);
        assert_eq!(n, candles.len() - 1);
        assert_eq!(closed_before(&candles, first.close_time_ms.saturating_add(1)), 1);
        let (from, to) = (first.open_time_ms, interval.next_open(last.open_time_ms));
        let runs = missing_runs(&candles, interval, from, to);
        let mut at = from;
        for &(a, b) in &runs {
            assert!(at <= a && a < b && b <= to);
            assert!(!candles.iter().any(|c| c.open_time_ms >= a && c.open_time_ms < b));
            at = b;
        }
    }
});
