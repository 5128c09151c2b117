//! `GET /api/v3/klines` answers as exact candles, and the ranges they leave out.
//!
//! Pure. A row is `[openTime, open, high, low, close, volume, closeTime, quoteVolume,
//! trades, takerBuyBase, takerBuyQuote, ignore]`; prices and quantities are decimal
//! strings kept exactly as sent. REST rows carry no event time: a fetched candle's
//! `event_time_us` is its close time (the instant it became final).

use crate::clock::Skew;
use crate::market::{Candle, Decimal, Interval, Symbol};
use crate::message::rest::Want;

/// Most rows one call returns (the exchange's `limit` maximum).
pub const MAX_LIMIT: u32 = 1000;
/// Latest open time an answer may carry: the start of 9999-12-01 UTC. Later ones are
/// no candle of any exchange, and past about 2.9e17 ms a month's end no longer fits an
/// `i64` (the calendar arithmetic would overflow).
pub const MAX_OPEN_TIME_MS: i64 = 253_399_622_400_000;

/// Parses an answer into candles of `symbol`/`interval`, oldest first. Every row is
/// returned, including a last one that may still be open; see [`closed_before`].
pub fn parse(body: &str, symbol: Symbol, interval: Interval) -> Result<Vec<Candle>, String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let cell = |i: usize| row.get(i).ok_or_else(|| format!("row without field {i}"));
        let dec = |i: usize| -> Result<Decimal, String> {
            super::trades::decimal(cell(i)?.as_str().ok_or("a price is not a string")?)
        };
        let int = |i: usize| -> Result<i64, String> {
            cell(i)?
                .as_i64()
                .ok_or_else(|| format!("field {i} is not an integer"))
        };
        let open_time_ms = int(0)?;
        let close_time_ms = int(6)?;
        if !(0..=MAX_OPEN_TIME_MS).contains(&open_time_ms) {
            return Err(format!("open time {open_time_ms} is out of range"));
        }
        if interval.open_time(open_time_ms) != open_time_ms {
            return Err(format!(
                "open time {open_time_ms} is off the {interval} grid"
            ));
        }
        if close_time_ms != interval.close_time(open_time_ms) {
            return Err(format!(
                "close time {close_time_ms} does not end the candle opened at {open_time_ms}"
            ));
        }
        out.push(Candle {
            symbol,
            interval,
            open_time_ms,
            close_time_ms,
            open: dec(1)?,
            high: dec(2)?,
            low: dec(3)?,
            close: dec(4)?,
            volume: dec(5)?,
            quote_volume: dec(7)?,
            trades: u64::try_from(int(8)?).map_err(|_| "negative trade count")?,
            taker_buy_base: dec(9)?,
            taker_buy_quote: dec(10)?,
            first_trade_id: -1,
            last_trade_id: -1,
            closed: true,
            event_time_us: close_time_ms.saturating_mul(1000),
        });
    }
    if out
        .windows(2)
        .any(|w| w[1].open_time_ms <= w[0].open_time_ms)
    {
        return Err("rows are not in open-time order".into());
    }
    Ok(out)
}

/// The open times (ms, both ends included) an answer to `want` may hold: what was
/// asked, and no further from our clock than `clock` (`[low, high]` from
/// [`crate::clock::ClockBound::window_ms`]; `None`: unchecked). A warm start without an
/// end asks for the newest `candles`, so its rows reach back at most that many
/// (calendar months counted as 31 days) from the earliest time the exchange's clock
/// may read.
pub fn asked_window(want: &Want, interval: Interval, clock: Option<(i64, i64)>) -> (i64, i64) {
    let (clock_low, clock_high) = clock.unwrap_or((i64::MIN, i64::MAX));
    let span = |candles: u32| {
        let longest = interval.fixed_ms().unwrap_or(31 * 86_400_000);
        longest.saturating_mul(i64::from(candles) + 1)
    };
    match *want {
        Want::Warm {
            candles,
            end_open_ms: Some(end),
        } => (end.saturating_sub(span(candles)), end.min(clock_high)),
        Want::Warm {
            candles,
            end_open_ms: None,
        } => (clock_low.saturating_sub(span(candles)), clock_high),
        Want::Range {
            from_open_ms,
            to_open_ms,
        } => (
            from_open_ms,
            to_open_ms.map_or(clock_high, |to| (to - 1).min(clock_high)),
        ),
        // No klines are asked for aggregate trades.
        Want::Trades { .. } => (clock_low, clock_high),
    }
}

/// Keeps the rows whose open time is in `[low, high]`; returns how many were
/// dropped after it (future) and before it (past), in [`crate::clock::Skew`] order.
pub fn keep_window(rows: &mut Vec<Candle>, (low, high): (i64, i64)) -> [u64; 2] {
    let mut dropped = [0u64; 2];
    rows.retain(|c| {
        let side = if c.open_time_ms > high {
            Skew::Future
        } else if c.open_time_ms < low {
            Skew::Past
        } else {
            return true;
        };
        dropped[side as usize] += 1;
        false
    });
    dropped
}

/// How many of `candles` (oldest first) had closed before `now_ms`, exchange time.
pub fn closed_before(candles: &[Candle], now_ms: i64) -> usize {
    candles.partition_point(|c| c.close_time_ms < now_ms)
}

/// The runs of open times in `[from, to)` that `candles` (oldest first, all inside the
/// range) do not have, as `[from, to)` spans.
pub fn missing_runs(candles: &[Candle], interval: Interval, from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut runs = Vec::new();
    let mut expected = from;
    for c in candles {
        if c.open_time_ms < expected || c.open_time_ms >= to {
            continue;
        }
        if c.open_time_ms > expected {
            runs.push((expected, c.open_time_ms));
        }
        expected = interval.next_open(c.open_time_ms);
    }
    if expected < to {
        runs.push((expected, to));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64, close: &str) -> String {
        format!(
            "[{t},\"1.0\",\"2.0\",\"0.5\",\"{close}\",\"10.50\",{},\"12.25\",3,\"4.0\",\"5.0\",\"0\"]",
            t + 59_999
        )
    }

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    #[test]
    fn rows_become_exact_candles() {
        let body = format!("[{},{}]", row(0, "1.50"), row(60_000, "1.25"));
        let c = parse(&body, btc(), Interval::M1).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].close.to_string(), "1.50");
        assert_eq!(c[0].volume.to_string(), "10.50");
        assert_eq!(c[1].quote_volume.to_string(), "12.25");
        assert_eq!(c[1].trades, 3);
        assert_eq!(c[1].close_time_ms, 119_999);
        assert!(c[1].closed);
        assert_eq!(closed_before(&c, 119_999), 1);
        assert_eq!(closed_before(&c, 120_000), 2);
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(parse("{}", btc(), Interval::M1).is_err());
        assert!(parse("[[1,2]]", btc(), Interval::M1).is_err());
        let off_grid = row(7, "1");
        assert!(parse(&format!("[{off_grid}]"), btc(), Interval::M1).is_err());
        let unordered = format!("[{},{}]", row(60_000, "1"), row(0, "1"));
        assert!(parse(&unordered, btc(), Interval::M1).is_err());
        assert!(parse("[]", btc(), Interval::M1).unwrap().is_empty());
        // A month candle at the end of time: an error, not an overflow.
        let far = Interval::Mo1.open_time(i64::MAX / 2);
        let row = format!("[{far},\"1\",\"1\",\"1\",\"1\",\"1\",0,\"1\",1,\"1\",\"1\",\"0\"]");
        assert!(parse(&format!("[{row}]"), btc(), Interval::Mo1).is_err());
        let last = Interval::Mo1.open_time(MAX_OPEN_TIME_MS);
        assert_eq!(last, MAX_OPEN_TIME_MS);
    }

    #[test]
    fn rows_outside_what_was_asked_or_far_from_our_clock_are_dropped() {
        let m = 60_000;
        let now = 1_764_900_000_000;
        let clock = Some((now - 5 * m, now + 5 * m));
        let y2100 = 4_102_444_800_000;
        let body = format!(
            "[{},{},{},{}]",
            row(0, "1"),
            row(now - 2 * m, "1"),
            row(now - m, "1"),
            row(y2100, "1")
        );
        let parsed = parse(&body, btc(), Interval::M1).unwrap();
        // The newest 10 candles: a 1970 and a 2100 row are not among them.
        let warm = Want::Warm {
            candles: 10,
            end_open_ms: None,
        };
        let window = asked_window(&warm, Interval::M1, clock);
        assert_eq!(window, (now - 5 * m - 11 * m, now + 5 * m));
        let mut rows = parsed.clone();
        assert_eq!(keep_window(&mut rows, window), [1, 1]);
        let opens: Vec<i64> = rows.iter().map(|c| c.open_time_ms).collect();
        assert_eq!(opens, vec![now - 2 * m, now - m]);
        // History before a stored candle ends at it, whatever the clock allows.
        let before = Want::Warm {
            candles: 1,
            end_open_ms: Some(now - 2 * m),
        };
        let mut rows = parsed.clone();
        let window = asked_window(&before, Interval::M1, clock);
        assert_eq!(keep_window(&mut rows, window), [2, 1]);
        assert_eq!(rows.len(), 1);
        // A range keeps its own ends, and the clock's.
        let range = Want::Range {
            from_open_ms: now - m,
            to_open_ms: None,
        };
        let mut rows = parsed.clone();
        assert_eq!(
            keep_window(&mut rows, asked_window(&range, Interval::M1, clock)),
            [1, 2]
        );
        let bounded = Want::Range {
            from_open_ms: now - 2 * m,
            to_open_ms: Some(now - m),
        };
        let mut rows = parsed.clone();
        assert_eq!(
            keep_window(&mut rows, asked_window(&bounded, Interval::M1, clock)),
            [2, 1]
        );
        // Without a clock check a range still keeps to what was asked.
        let mut rows = parsed;
        assert_eq!(
            keep_window(&mut rows, asked_window(&range, Interval::M1, None)),
            [0, 2]
        );
        // A month-long interval at the extremes does not overflow.
        let w = asked_window(&warm, Interval::Mo1, Some((i64::MIN, i64::MAX)));
        assert_eq!(w, (i64::MIN, i64::MAX));
    }

    #[test]
    fn missing_runs_cover_exactly_the_absent_opens() {
        let m = 60_000;
        let body = format!("[{},{}]", row(2 * m, "1"), row(3 * m, "1"));
        let c = parse(&body, btc(), Interval::M1).unwrap();
        assert_eq!(
            missing_runs(&c, Interval::M1, 0, 6 * m),
            vec![(0, 2 * m), (4 * m, 6 * m)]
        );
        assert_eq!(missing_runs(&c, Interval::M1, 2 * m, 4 * m), vec![]);
        assert_eq!(missing_runs(&[], Interval::M1, 0, m), vec![(0, m)]);
    }
}
