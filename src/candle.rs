//! Live candle state, closed-candle emission and gap detection, per (symbol, interval).
//!
//! Runs on: shard cores. Pure: no clocks, no I/O. In: kline updates as parsed (possibly
//! duplicated by overlapping connections during a rotation, possibly out of order across
//! connections). Out: each closed candle exactly once, the latest live state, and a
//! [`Gap`] whenever closed candles are missing between two that arrived.
//!
//! Time comes only from the exchange's own fields (open time, event time): the local
//! clock is never assumed to equal exchange time, so accelerated simulations work.

use crate::market::{Candle, Interval, Symbol};

/// A span of candles that should have closed but were not seen: open times in
/// `[from_open_ms, to_open_ms)`. Recorded for the backfill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub symbol: Symbol,
    pub interval: Interval,
    pub from_open_ms: i64,
    pub to_open_ms: i64,
}

impl Gap {
    /// How many candles the gap spans.
    pub fn candles(&self) -> u64 {
        let span = self.to_open_ms.saturating_sub(self.from_open_ms).max(0);
        if let Some(len) = self.interval.fixed_ms() {
            return (span as u64).div_ceil(len as u64);
        }
        // Calendar months: walk them, bounded (the cap only guards corrupt times).
        let mut n = 0u64;
        let mut t = self.from_open_ms;
        while t < self.to_open_ms && n < MAX_GAP_CANDLES_COUNTED {
            t = self.interval.next_open(t);
            n += 1;
        }
        n
    }
}

/// Upper bound for [`Gap::candles`] over calendar months.
pub const MAX_GAP_CANDLES_COUNTED: u64 = 100_000;

/// Open gaps remembered per (symbol, interval), so a close that arrives late (from the
/// lagging connection of a rotation) still fills its place. Older gaps are left to the
/// backfill, which has them recorded.
pub const MAX_OPEN_GAPS: usize = 16;

/// How far a candle's open time may lie after its event time before the kline is
/// rejected as implausible (exchange clocks do not run ahead of their own candles).
pub const MAX_OPEN_AFTER_EVENT_MS: i64 = 60_000;

/// True when a kline's times are consistent: the open time on the interval's grid, the
/// close time Binance's (next open − 1 ms), and the open not after the event time.
pub fn plausible(c: &Candle) -> bool {
    c.open_time_ms >= 0
        && c.interval.open_time(c.open_time_ms) == c.open_time_ms
        && c.close_time_ms == c.interval.close_time(c.open_time_ms)
        && c.open_time_ms <= (c.event_time_us / 1000).saturating_add(MAX_OPEN_AFTER_EVENT_MS)
}

/// What one kline update did to the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlineOutcome {
    /// The in-progress candle changed; latest value wins downstream.
    Live,
    /// A candle closed, seen for the first time; `gap` is set when candles before it
    /// are missing.
    Closed { gap: Option<Gap> },
    /// Already seen (an overlapping connection, or a replay): ignored.
    Duplicate,
    /// Older than what we hold: ignored.
    Stale,
}

/// State of one (symbol, interval).
#[derive(Clone, Debug, Default)]
pub struct CandleTrack {
    live: Option<Candle>,
    last_closed_open_ms: Option<i64>,
    /// Gaps not yet filled, `[from, to)` open times, oldest first (bounded).
    open_gaps: Vec<(i64, i64)>,
}

impl CandleTrack {
    pub fn live(&self) -> Option<&Candle> {
        self.live.as_ref()
    }

    pub fn last_closed_open_ms(&self) -> Option<i64> {
        self.last_closed_open_ms
    }

    /// Applies one kline update.
    pub fn apply(&mut self, c: &Candle) -> KlineOutcome {
        if let Some(last) = self.last_closed_open_ms {
            if c.open_time_ms <= last {
                if !c.closed {
                    return KlineOutcome::Stale;
                }
                return if self.fill_gap(c) {
                    KlineOutcome::Closed { gap: None }
                } else {
                    KlineOutcome::Duplicate
                };
            }
        }
        if !c.closed {
            if let Some(live) = &self.live {
                if c.open_time_ms < live.open_time_ms {
                    return KlineOutcome::Stale;
                }
                if c.open_time_ms == live.open_time_ms {
                    if c.event_time_us < live.event_time_us {
                        return KlineOutcome::Stale;
                    }
                    if c.event_time_us == live.event_time_us {
                        return KlineOutcome::Duplicate;
                    }
                }
            }
            self.live = Some(*c);
            return KlineOutcome::Live;
        }
        let gap = self.last_closed_open_ms.and_then(|last| {
            let expected = c.interval.next_open(last);
            (c.open_time_ms > expected).then_some(Gap {
                symbol: c.symbol,
                interval: c.interval,
                from_open_ms: expected,
                to_open_ms: c.open_time_ms,
            })
        });
        if let Some(g) = gap {
            if self.open_gaps.len() >= MAX_OPEN_GAPS {
                self.open_gaps.remove(0);
            }
            self.open_gaps.push((g.from_open_ms, g.to_open_ms));
        }
        self.last_closed_open_ms = Some(c.open_time_ms);
        if self.live.is_some_and(|l| l.open_time_ms <= c.open_time_ms) {
            self.live = None;
        }
        KlineOutcome::Closed { gap }
    }

    /// A closed candle older than the newest close: accepted once if it lies in an open
    /// gap (which then shrinks or splits), otherwise it is a duplicate.
    fn fill_gap(&mut self, c: &Candle) -> bool {
        let t = c.open_time_ms;
        let Some(i) = self
            .open_gaps
            .iter()
            .position(|&(from, to)| from <= t && t < to)
        else {
            return false;
        };
        let (from, to) = self.open_gaps.remove(i);
        let after = c.interval.next_open(t);
        if after < to {
            self.open_gaps.insert(i, (after, to));
        }
        if from < t {
            self.open_gaps.insert(i, (from, t));
        }
        true
    }

    /// Gaps not filled yet, `[from, to)` open times.
    pub fn open_gaps(&self) -> &[(i64, i64)] {
        &self.open_gaps
    }
}

/// A monotonic sequence gate: accepts each id once, in increasing order. Trades,
/// aggregate trades, depth diffs and book tickers carry ids that only grow per symbol,
/// so this de-duplicates the overlap of two connections during a rotation.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqGate {
    last: Option<u64>,
}

impl SeqGate {
    /// True when `id` is new (greater than every id accepted so far).
    pub fn accept(&mut self, id: u64) -> bool {
        match self.last {
            Some(last) if id <= last => false,
            _ => {
                self.last = Some(id);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(open: i64, event_us: i64, closed: bool) -> Candle {
        crate::market::testing::candle("BTCUSDT", open, event_us, closed)
    }

    const M: i64 = 60_000;

    #[test]
    fn closes_once_and_clears_live() {
        let mut t = CandleTrack::default();
        assert_eq!(t.apply(&candle(0, 1, false)), KlineOutcome::Live);
        assert_eq!(t.apply(&candle(0, 2, false)), KlineOutcome::Live);
        assert_eq!(t.apply(&candle(0, 2, false)), KlineOutcome::Duplicate);
        assert_eq!(t.apply(&candle(0, 1, false)), KlineOutcome::Stale);
        assert_eq!(
            t.apply(&candle(0, 3, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert!(t.live().is_none());
        assert_eq!(t.apply(&candle(0, 3, true)), KlineOutcome::Duplicate);
        assert_eq!(t.apply(&candle(0, 4, false)), KlineOutcome::Stale);
        assert_eq!(t.apply(&candle(M, 5, false)), KlineOutcome::Live);
        assert_eq!(
            t.apply(&candle(M, 6, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert_eq!(t.last_closed_open_ms(), Some(M));
    }

    #[test]
    fn detects_gaps_between_closed_candles() {
        let mut t = CandleTrack::default();
        t.apply(&candle(0, 1, true));
        let out = t.apply(&candle(4 * M, 2, true));
        let gap = match out {
            KlineOutcome::Closed { gap: Some(g) } => g,
            other => panic!("expected a gap, got {other:?}"),
        };
        assert_eq!((gap.from_open_ms, gap.to_open_ms), (M, 4 * M));
        assert_eq!(gap.candles(), 3);
        // A close that arrives late (the lagging connection of a rotation) fills its
        // place in the gap once; a second copy is a duplicate.
        assert_eq!(
            t.apply(&candle(2 * M, 3, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert_eq!(t.apply(&candle(2 * M, 3, true)), KlineOutcome::Duplicate);
        assert_eq!(t.open_gaps(), &[(M, 2 * M), (3 * M, 4 * M)]);
        assert_eq!(
            t.apply(&candle(M, 4, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert_eq!(
            t.apply(&candle(3 * M, 4, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert!(t.open_gaps().is_empty());
        // Outside any gap, an old close is a duplicate.
        assert_eq!(t.apply(&candle(0, 5, true)), KlineOutcome::Duplicate);
    }

    #[test]
    fn open_gaps_are_bounded() {
        let mut t = CandleTrack::default();
        for i in 0..(MAX_OPEN_GAPS as i64 + 5) {
            t.apply(&candle(i * 2 * M, 1, true));
        }
        assert_eq!(t.open_gaps().len(), MAX_OPEN_GAPS);
        // The oldest gaps were dropped (left to the backfill): their candles are duplicates.
        assert_eq!(t.apply(&candle(M, 2, true)), KlineOutcome::Duplicate);
    }

    #[test]
    fn implausible_kline_times_are_rejected() {
        let ok = candle(2 * M, 2 * M * 1000 + 5, false);
        assert!(plausible(&ok));
        let mut off_grid = ok;
        off_grid.open_time_ms += 1;
        off_grid.close_time_ms += 1;
        assert!(!plausible(&off_grid));
        let mut bad_close = ok;
        bad_close.close_time_ms += 1;
        assert!(!plausible(&bad_close));
        let mut future = ok;
        future.open_time_ms += 10 * M;
        future.close_time_ms += 10 * M;
        assert!(!plausible(&future));
        let mut negative = ok;
        negative.open_time_ms = -M;
        assert!(!plausible(&negative));
        let far = candle(i64::MAX / 4 / M * M, i64::MAX, true);
        assert!(!plausible(&far) || far.open_time_ms <= i64::MAX / 1000);
    }

    #[test]
    fn gap_counts_use_arithmetic_for_fixed_intervals() {
        let g = Gap {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            interval: Interval::M1,
            from_open_ms: 0,
            to_open_ms: 1_000_000 * M,
        };
        assert_eq!(g.candles(), 1_000_000);
    }

    #[test]
    fn live_update_of_newer_candle_keeps_close_of_older_valid() {
        // During a rotation the new connection may show candle 1 live before the old
        // one delivers candle 0's close: the close must still count.
        let mut t = CandleTrack::default();
        t.apply(&candle(0, 1, false));
        assert_eq!(t.apply(&candle(M, 2, false)), KlineOutcome::Live);
        assert_eq!(
            t.apply(&candle(0, 3, true)),
            KlineOutcome::Closed { gap: None }
        );
        assert_eq!(
            t.live().map(|c| c.open_time_ms),
            Some(M),
            "newer live candle kept"
        );
    }

    #[test]
    fn seq_gate_accepts_each_id_once() {
        let mut g = SeqGate::default();
        assert!(g.accept(5));
        assert!(!g.accept(5));
        assert!(!g.accept(4));
        assert!(g.accept(9));
    }
}
