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
        span_candles(self.interval, self.from_open_ms, self.to_open_ms)
    }
}

/// Upper bound for [`Gap::candles`] over calendar months.
pub const MAX_GAP_CANDLES_COUNTED: u64 = 100_000;

/// Open gaps remembered per (symbol, interval) until the backfill fills them (or the
/// exchange confirms them absent). Past this the oldest is forgotten: its candles stay
/// counted as missing (completeness never claims them), and a late copy of one is
/// treated as a duplicate.
pub const MAX_OPEN_GAPS: usize = 64;

/// How far a candle's open time may lie after its event time before the kline is
/// rejected as implausible (exchange clocks do not run ahead of their own candles).
pub const MAX_OPEN_AFTER_EVENT_MS: i64 = 60_000;

/// How far a kline's event time may lie after its candle closed. Binance sends a
/// candle's last update within a second or so of its close, and only the current
/// candle's updates: a kline of a candle long closed (a 1970 open time in a frame of
/// today) would make the series reach back for millions of candles.
pub const MAX_EVENT_AFTER_CLOSE_MS: i64 = 60_000;

/// True when a kline's times are consistent: the open time on the interval's grid, the
/// close time Binance's (next open − 1 ms), and the event time from shortly before the
/// open to shortly after the close. With the event time bound to our clock (see
/// `crate::clock::ClockBound`), so is the open time.
pub fn plausible(c: &Candle) -> bool {
    let event_ms = c.event_time_us / 1000;
    c.open_time_ms >= 0
        && c.interval.open_time(c.open_time_ms) == c.open_time_ms
        && c.close_time_ms == c.interval.close_time(c.open_time_ms)
        && c.open_time_ms <= event_ms.saturating_add(MAX_OPEN_AFTER_EVENT_MS)
        && event_ms <= c.close_time_ms.saturating_add(1 + MAX_EVENT_AFTER_CLOSE_MS)
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

/// A gap not filled yet: open times `[from, to)`, and whether the backfill was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenGap {
    pub from: i64,
    pub to: i64,
    pub requested: bool,
}

/// Completeness figures of one series (see [`CandleTrack::completeness`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completeness {
    /// Candles that should exist from the first to the newest closed one, less those
    /// the exchange confirmed it does not have.
    pub expected: u64,
    /// Of those, candles not seen (open gaps, and gaps forgotten past the bound).
    pub missing: u64,
    pub open_gaps: u64,
    pub confirmed_absent: u64,
    pub gaps_detected: u64,
    /// Gap spans closed (filled or confirmed absent); a gap filled from the middle
    /// counts its two remaining pieces.
    pub gaps_filled: u64,
    /// Candles that arrived into a gap (backfilled, or late from another connection).
    pub candles_filled: u64,
    /// Closed candles accepted in all (live, backfilled, history).
    pub closed: u64,
}

/// State of one (symbol, interval).
#[derive(Clone, Debug, Default)]
pub struct CandleTrack {
    live: Option<Candle>,
    first_closed_open_ms: Option<i64>,
    last_closed_open_ms: Option<i64>,
    /// Gaps not yet filled, oldest first (bounded).
    open_gaps: Vec<OpenGap>,
    /// Set when a gap was recorded that the backfill has not been asked for.
    unrequested: bool,
    figures: Completeness,
    /// Missing candles of gaps forgotten past [`MAX_OPEN_GAPS`].
    forgotten: u64,
}

impl CandleTrack {
    pub fn live(&self) -> Option<&Candle> {
        self.live.as_ref()
    }

    pub fn first_closed_open_ms(&self) -> Option<i64> {
        self.first_closed_open_ms
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
                if self.fill_gap(c) || self.extend_back(c) {
                    self.figures.closed += 1;
                    return KlineOutcome::Closed { gap: None };
                }
                return KlineOutcome::Duplicate;
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
            self.record_gap(g.from_open_ms, g.to_open_ms, c.interval);
        }
        self.last_closed_open_ms = Some(c.open_time_ms);
        if self.first_closed_open_ms.is_none() {
            self.first_closed_open_ms = Some(c.open_time_ms);
        }
        self.figures.closed += 1;
        if self.live.is_some_and(|l| l.open_time_ms <= c.open_time_ms) {
            self.live = None;
        }
        KlineOutcome::Closed { gap }
    }

    fn record_gap(&mut self, from: i64, to: i64, interval: Interval) {
        self.make_room(interval);
        let at = self.open_gaps.partition_point(|g| g.from < from);
        self.open_gaps.insert(
            at,
            OpenGap {
                from,
                to,
                requested: false,
            },
        );
        self.unrequested = true;
        self.figures.gaps_detected += 1;
    }

    /// Keeps the open gaps under [`MAX_OPEN_GAPS`] with room for one more: the oldest
    /// are forgotten, their candles still counted as missing.
    fn make_room(&mut self, interval: Interval) {
        while self.open_gaps.len() >= MAX_OPEN_GAPS {
            let old = self.open_gaps.remove(0);
            self.forgotten += span_candles(interval, old.from, old.to);
        }
    }

    /// A closed candle older than the first one seen (history from a warm start or a
    /// catch-up after a restart): the series now starts there, and the candles between
    /// it and the old first one, if any, are a gap.
    fn extend_back(&mut self, c: &Candle) -> bool {
        let Some(first) = self.first_closed_open_ms else {
            return false;
        };
        if c.open_time_ms >= first {
            return false;
        }
        let after = c.interval.next_open(c.open_time_ms);
        if after < first {
            self.record_gap(after, first, c.interval);
        }
        self.first_closed_open_ms = Some(c.open_time_ms);
        true
    }

    /// A closed candle older than the newest close: accepted once if it lies in an open
    /// gap (which then shrinks or splits), otherwise it is a duplicate.
    fn fill_gap(&mut self, c: &Candle) -> bool {
        let t = c.open_time_ms;
        let Some(i) = self.open_gaps.iter().position(|g| g.from <= t && t < g.to) else {
            return false;
        };
        let after = c.interval.next_open(t);
        self.cut(i, t, after);
        self.figures.candles_filled += 1;
        if self.open_gaps.len() > MAX_OPEN_GAPS {
            // A fill inside a gap split it in two: one gap too many.
            let old = self.open_gaps.remove(0);
            self.forgotten += span_candles(c.interval, old.from, old.to);
        }
        true
    }

    /// Takes `[from, to)` out of open gap `i`, keeping the pieces on either side.
    fn cut(&mut self, i: usize, from: i64, to: i64) {
        let g = self.open_gaps.remove(i);
        let mut pieces = 0;
        if to < g.to {
            self.open_gaps.insert(i, OpenGap { from: to, ..g });
            pieces += 1;
        }
        if g.from < from {
            self.open_gaps.insert(i, OpenGap { to: from, ..g });
            pieces += 1;
        }
        if pieces == 0 {
            self.figures.gaps_filled += 1;
        }
    }

    /// The exchange has no candles with open times in `[from, to)`: what of it was an
    /// open gap is closed and counted as confirmed absent (not missing). Returns the
    /// candles newly confirmed.
    pub fn confirm_absent(&mut self, interval: Interval, from: i64, to: i64) -> u64 {
        let mut confirmed = 0;
        let mut i = 0;
        while i < self.open_gaps.len() {
            let g = self.open_gaps[i];
            let (lo, hi) = (g.from.max(from), g.to.min(to));
            if lo >= hi {
                i += 1;
                continue;
            }
            confirmed += span_candles(interval, lo, hi);
            let before = self.open_gaps.len();
            self.cut(i, lo, hi);
            // Skip the piece kept before the cut, if any.
            i += 1 + self.open_gaps.len() - before;
        }
        self.figures.confirmed_absent += confirmed;
        confirmed
    }

    /// Gaps the backfill has not been asked for, now marked as asked.
    pub fn take_unrequested(&mut self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let any = std::mem::take(&mut self.unrequested);
        self.open_gaps
            .iter_mut()
            .filter(move |g| any && !g.requested)
            .map(|g| {
                g.requested = true;
                (g.from, g.to)
            })
    }

    /// Marks the open gaps overlapping `[from, to)` as not asked for (the request
    /// failed); they are asked again at the next [`Self::take_unrequested`].
    pub fn unrequest(&mut self, from: i64, to: i64) {
        for g in &mut self.open_gaps {
            if g.from < to && from < g.to {
                g.requested = false;
                self.unrequested = true;
            }
        }
    }

    pub fn has_unrequested(&self) -> bool {
        self.unrequested
    }

    /// Gaps not filled yet.
    pub fn open_gaps(&self) -> &[OpenGap] {
        &self.open_gaps
    }

    /// The series' completeness now.
    pub fn completeness(&self, interval: Interval) -> Completeness {
        let mut f = self.figures;
        f.open_gaps = self.open_gaps.len() as u64;
        f.missing = self.forgotten
            + self
                .open_gaps
                .iter()
                .map(|g| span_candles(interval, g.from, g.to))
                .sum::<u64>();
        f.expected = match (self.first_closed_open_ms, self.last_closed_open_ms) {
            (Some(first), Some(last)) => span_candles(interval, first, interval.next_open(last))
                .saturating_sub(f.confirmed_absent),
            _ => 0,
        };
        f
    }
}

/// Candles with open times in `[from, to)`.
pub fn span_candles(interval: Interval, from: i64, to: i64) -> u64 {
    let span = to.saturating_sub(from).max(0);
    if let Some(len) = interval.fixed_ms() {
        return (span as u64).div_ceil(len as u64);
    }
    // Calendar months: walk them, bounded (the cap only guards corrupt times).
    let mut n = 0u64;
    let mut t = from;
    while t < to && n < MAX_GAP_CANDLES_COUNTED {
        t = interval.next_open(t);
        n += 1;
    }
    n
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
        self.admit(id) != SeqOutcome::Duplicate
    }

    /// Whether `id` is new, and for ids that must follow each other without holes
    /// (trade ids, aggregate trade ids), the ids skipped before it. The first id seen
    /// has nothing to follow: no gap.
    pub fn admit(&mut self, id: u64) -> SeqOutcome {
        match self.last {
            Some(last) if id <= last => SeqOutcome::Duplicate,
            last => {
                self.last = Some(id);
                match last {
                    Some(last) if id > last + 1 => SeqOutcome::After {
                        from: last + 1,
                        missing: id - last - 1,
                    },
                    _ => SeqOutcome::Next,
                }
            }
        }
    }

    /// The greatest id accepted so far (the tests read it).
    #[cfg(test)]
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Takes every id up to `id` as seen (ids fetched another way, e.g. over REST): a
    /// later id after a hole is then a gap from here, and an earlier one a duplicate.
    pub fn raise(&mut self, id: u64) {
        self.last = Some(self.last.map_or(id, |last| last.max(id)));
    }
}

/// What [`SeqGate::admit`] made of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqOutcome {
    /// The id after the last one (or the first one seen).
    Next,
    /// A new id after a hole: `missing` ids from `from` on were never seen.
    After { from: u64, missing: u64 },
    /// Not greater than an id already accepted.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(open: i64, event_us: i64, closed: bool) -> Candle {
        crate::market::testing::candle("BTCUSDT", open, event_us, closed)
    }

    const M: i64 = 60_000;

    fn spans(t: &CandleTrack) -> Vec<(i64, i64)> {
        t.open_gaps().iter().map(|g| (g.from, g.to)).collect()
    }

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
        assert_eq!(spans(&t), [(M, 2 * M), (3 * M, 4 * M)]);
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
        // The oldest gaps were forgotten: their candles stay missing, and a late copy is
        // a duplicate.
        assert_eq!(t.apply(&candle(M, 2, true)), KlineOutcome::Duplicate);
        let c = t.completeness(Interval::M1);
        assert_eq!(c.missing, MAX_OPEN_GAPS as u64 + 5 - 1);
        assert_eq!(c.open_gaps, MAX_OPEN_GAPS as u64);
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
    fn a_kline_of_a_candle_long_closed_is_implausible() {
        // Today's event time on a 1970 candle: the open is far behind the event.
        let now_us = 1_764_900_000_000_000;
        assert!(!plausible(&candle(0, now_us, true)));
        // The close pushed at (or a minute after) the boundary is fine; later is not.
        let close = candle(2 * M, 3 * M * 1000, true);
        assert!(plausible(&close));
        let late = candle(2 * M, (3 * M + MAX_EVENT_AFTER_CLOSE_MS) * 1000, true);
        assert!(plausible(&late));
        let too_late = candle(2 * M, (3 * M + MAX_EVENT_AFTER_CLOSE_MS + 1) * 1000, true);
        assert!(!plausible(&too_late));
        // A calendar month: an update at the end of a 31-day month is inside it.
        let jan = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let mut month = candle(jan, (jan + 31 * 86_400_000 - 1) * 1000, false);
        month.interval = Interval::Mo1;
        month.close_time_ms = Interval::Mo1.close_time(jan);
        assert!(plausible(&month));
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

    #[test]
    fn seq_gate_reports_the_ids_a_gap_skipped() {
        let mut g = SeqGate::default();
        assert_eq!(
            g.admit(100),
            SeqOutcome::Next,
            "the first id follows nothing"
        );
        assert_eq!(g.admit(101), SeqOutcome::Next);
        assert_eq!(g.admit(101), SeqOutcome::Duplicate);
        assert_eq!(g.admit(99), SeqOutcome::Duplicate);
        assert_eq!(
            g.admit(105),
            SeqOutcome::After {
                from: 102,
                missing: 3
            }
        );
        assert_eq!(g.last(), Some(105));
        assert_eq!(g.admit(106), SeqOutcome::Next);
        assert_eq!(
            g.admit(u64::MAX),
            SeqOutcome::After {
                from: 107,
                missing: u64::MAX - 107
            }
        );
        assert_eq!(g.admit(u64::MAX), SeqOutcome::Duplicate);
        let mut g = SeqGate::default();
        g.raise(10);
        assert_eq!(g.admit(10), SeqOutcome::Duplicate);
        assert_eq!(
            g.admit(12),
            SeqOutcome::After {
                from: 11,
                missing: 1
            }
        );
        g.raise(5);
        assert_eq!(g.last(), Some(12), "raising never lowers");
    }
}
