//! The bounded in-memory store of recent candles, signals and recorded gaps, and the
//! API's list reads ([`ListQuery`]) over any [`RecordSource`].
//!
//! Kept by the dashboard core (one lock per drained batch of its ring, which carries
//! every record kind) and by the Redis bridge for other instances' symbols; read by the
//! dashboard's API handlers and status. Bounded: `recent_candles` closed candles and as many signals per
//! (symbol, timeframe), one live candle each, and the last [`MAX_GAPS_KEPT`] gaps; older
//! entries are evicted and counted. The series themselves are bounded too
//! (`engine.max_series`): past the bound a record of a new series is refused and
//! counted, while the series already held keep updating, so records from outside (the
//! bridge) can never grow the store without limit nor push out this instance's own.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;

use crate::candle::Gap;
use crate::market::{Candle, Interval, Symbol};
use crate::message::{Outage, Record};
use crate::record::{CandleRecord, SignalRecord};
use crate::signals::Signal;

/// Gaps kept for the status API (the backfill consumes them from the ring later).
pub const MAX_GAPS_KEPT: usize = 10_000;

/// Default bound of the series count (`engine.max_series`): 4096 symbols (a
/// configuration's most) at four timeframes. Each series holds at most
/// `recent_candles` candles and as many signals.
pub const DEFAULT_MAX_SERIES: usize = 16_384;

/// A list read of the API (`/api/candles`, `/api/signals`, the WebSocket `get_signals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub symbol: Option<Symbol>,
    pub interval: Option<Interval>,
    /// 1..=1000 (validated by the caller).
    pub limit: usize,
    /// Inclusive time range in ms (open time of candles, timestamp of signals).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl ListQuery {
    /// Whether `t_ms` lies in the query's inclusive time range.
    pub fn in_range(&self, t_ms: i64) -> bool {
        self.from_ms.is_none_or(|f| t_ms >= f) && self.to_ms.is_none_or(|t| t_ms <= t)
    }
}

/// Why a list read failed (the API answers 503 with this text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ListError(pub String);

/// What answers the API's list reads: the in-memory store (behind its lock), or the
/// database query worker's client when a database is configured. Records come newest
/// first, at most `limit`, within the query's time range. The reads are futures so that
/// a source on another thread is awaited without blocking the dashboard's executor.
pub trait RecordSource {
    /// Closed candles.
    fn candles(&self, q: ListQuery) -> impl Future<Output = Result<Vec<CandleRecord>, ListError>>;

    /// Signals.
    fn signals(&self, q: ListQuery) -> impl Future<Output = Result<Vec<SignalRecord>, ListError>>;
}

/// The in-memory answer, ready at once (the lock is held only while copying).
impl RecordSource for Mutex<RecentStore> {
    async fn candles(&self, q: ListQuery) -> Result<Vec<CandleRecord>, ListError> {
        let store = self.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = store.closed(q.symbol, q.interval, 1000.max(q.limit));
        out.retain(|c| q.in_range(c.open_time_ms));
        out.truncate(q.limit);
        Ok(out.iter().map(CandleRecord::from).collect())
    }

    async fn signals(&self, q: ListQuery) -> Result<Vec<SignalRecord>, ListError> {
        let store = self.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = store.signals(q.symbol, q.interval, 1000.max(q.limit));
        out.retain(|x| q.in_range(x.timestamp_ms));
        out.truncate(q.limit);
        Ok(out.iter().map(SignalRecord::from).collect())
    }
}

#[derive(Default)]
struct Series {
    closed: VecDeque<Candle>,
    live: Option<Candle>,
    /// In (timestamp, kind) order.
    signals: VecDeque<Signal>,
}

/// Recent candles per (symbol, timeframe).
pub struct RecentStore {
    per_series: usize,
    max_series: usize,
    series: crate::market::FastMap<(Symbol, Interval), Series>,
    gaps: VecDeque<Gap>,
    absences: VecDeque<Gap>,
    pub absences_total: u64,
    outages: VecDeque<Outage>,
    pub outages_total: u64,
    pub closed_total: u64,
    pub signals_total: u64,
    pub duplicates_ignored: u64,
    pub evicted: u64,
    pub gaps_total: u64,
    /// Records refused because they would have opened a series past `max_series`.
    pub series_refused: u64,
}

impl RecentStore {
    pub fn new(per_series: usize) -> RecentStore {
        RecentStore {
            per_series: per_series.max(1),
            max_series: DEFAULT_MAX_SERIES,
            series: Default::default(),
            gaps: VecDeque::new(),
            absences: VecDeque::new(),
            absences_total: 0,
            outages: VecDeque::new(),
            outages_total: 0,
            closed_total: 0,
            signals_total: 0,
            duplicates_ignored: 0,
            evicted: 0,
            gaps_total: 0,
            series_refused: 0,
        }
    }

    /// Bounds the number of series at `max_series` (at least 1).
    pub fn with_max_series(mut self, max_series: usize) -> RecentStore {
        self.max_series = max_series.max(1);
        self
    }

    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Makes room for `series` more series (within `max_series`) now, so that the
    /// first updates of a newly connected feed do not grow and rehash the map, and
    /// touch its fresh memory, while a burst waits behind them. The engine reserves its
    /// symbols × timeframes at start, before any feed connects.
    pub fn reserve_series(&mut self, series: usize) {
        let room = self.max_series.saturating_sub(self.series.len());
        self.series.reserve(series.min(room));
    }

    /// The series of `key`, opened if there is room; `None` (counted) when it is new
    /// and the store already holds `max_series`.
    fn series_mut(&mut self, key: (Symbol, Interval)) -> Option<&mut Series> {
        let len = self.series.len();
        match self.series.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                if len >= self.max_series {
                    self.series_refused += 1;
                    None
                } else {
                    Some(e.insert(Series::default()))
                }
            }
        }
    }

    /// Keeps one record of any kind; `false` when its series was refused (see
    /// [`RecentStore::insert_closed`]).
    pub fn apply(&mut self, record: &Record) -> bool {
        match record {
            Record::ClosedCandle(c) => self.insert_closed(c),
            Record::LiveCandle(c) => self.update_live(c),
            Record::Signal(x) => self.insert_signal(x),
            Record::Gap(g) => {
                self.record_gap(g);
                true
            }
            Record::Outage(o) => {
                self.record_outage(o);
                true
            }
            Record::Absent(g) => {
                self.record_absent(g);
                true
            }
            // The store keeps candles and signals only: books live on the board.
            Record::Trade(_) | Record::AggTrade(_) | Record::Book(_) => true,
        }
    }

    /// Adds a closed candle; a candle already present (same open time) is ignored, so
    /// replays and rotations never double a row. `false` when the candle would open a
    /// series past the bound: it is refused and counted in `series_refused`.
    pub fn insert_closed(&mut self, c: &Candle) -> bool {
        let per_series = self.per_series;
        let Some(s) = self.series_mut((c.symbol, c.interval)) else {
            return false;
        };
        // The series is kept in open-time order, so one binary search finds both a
        // duplicate and the place of a late candle (gap fill, backfill).
        let pos = match s
            .closed
            .binary_search_by_key(&c.open_time_ms, |x| x.open_time_ms)
        {
            Ok(_) => {
                self.duplicates_ignored += 1;
                return true;
            }
            Err(pos) => pos,
        };
        s.closed.insert(pos, *c);
        if s.live.is_some_and(|l| l.open_time_ms <= c.open_time_ms) {
            s.live = None;
        }
        let mut evicted = 0;
        while s.closed.len() > per_series {
            s.closed.pop_front();
            evicted += 1;
        }
        self.closed_total += 1;
        self.evicted += evicted;
        true
    }

    /// Adds a signal; one already present (same timestamp and kind) is ignored. `false`
    /// when its series was refused, as for [`RecentStore::insert_closed`].
    pub fn insert_signal(&mut self, sig: &Signal) -> bool {
        let per_series = self.per_series;
        let Some(s) = self.series_mut((sig.symbol, sig.interval)) else {
            return false;
        };
        let key = |x: &Signal| (x.timestamp_ms, x.kind);
        let pos = match s.signals.binary_search_by_key(&key(sig), key) {
            Ok(_) => {
                self.duplicates_ignored += 1;
                return true;
            }
            Err(pos) => pos,
        };
        s.signals.insert(pos, *sig);
        let mut evicted = 0;
        while s.signals.len() > per_series {
            s.signals.pop_front();
            evicted += 1;
        }
        self.signals_total += 1;
        self.evicted += evicted;
        true
    }

    /// Keeps the newest live candle of its series; `false` when its series was refused.
    pub fn update_live(&mut self, c: &Candle) -> bool {
        let Some(s) = self.series_mut((c.symbol, c.interval)) else {
            return false;
        };
        let newer_than_closed = s
            .closed
            .back()
            .is_none_or(|x| x.open_time_ms < c.open_time_ms);
        if newer_than_closed
            && s.live.is_none_or(|l| {
                (l.open_time_ms, l.event_time_us) <= (c.open_time_ms, c.event_time_us)
            })
        {
            s.live = Some(*c);
        }
        true
    }

    pub fn record_gap(&mut self, g: &Gap) {
        self.gaps_total += 1;
        if self.gaps.len() >= MAX_GAPS_KEPT {
            self.gaps.pop_front();
        }
        self.gaps.push_back(*g);
    }

    /// A span the exchange confirmed it has no candles for.
    pub fn record_absent(&mut self, g: &Gap) {
        self.absences_total += 1;
        if self.absences.len() >= MAX_GAPS_KEPT {
            self.absences.pop_front();
        }
        self.absences.push_back(*g);
    }

    pub fn absences(&self) -> impl DoubleEndedIterator<Item = &Gap> {
        self.absences.iter()
    }

    pub fn record_outage(&mut self, o: &Outage) {
        self.outages_total += 1;
        if self.outages.len() >= MAX_GAPS_KEPT {
            self.outages.pop_front();
        }
        self.outages.push_back(*o);
    }

    pub fn outages(&self) -> impl DoubleEndedIterator<Item = &Outage> {
        self.outages.iter()
    }

    /// Closed candles, newest first, optionally filtered, at most `limit`.
    pub fn closed(
        &self,
        symbol: Option<Symbol>,
        interval: Option<Interval>,
        limit: usize,
    ) -> Vec<Candle> {
        self.newest(
            symbol,
            interval,
            limit,
            |s| &s.closed,
            |c| (c.open_time_ms, c.symbol, c.interval),
        )
    }

    /// Signals, newest first, optionally filtered, at most `limit`.
    pub fn signals(
        &self,
        symbol: Option<Symbol>,
        interval: Option<Interval>,
        limit: usize,
    ) -> Vec<Signal> {
        self.newest(
            symbol,
            interval,
            limit,
            |s| &s.signals,
            |x| (x.timestamp_ms, x.symbol, x.interval, x.kind),
        )
    }

    /// The newest `limit` items of the matching series, each series kept in ascending
    /// `key` order. Work and memory stay O(limit) per series visited: one series is looked
    /// up directly, and across series the candidates are cut back to `limit` as they
    /// accumulate.
    fn newest<T: Copy, K: Ord>(
        &self,
        symbol: Option<Symbol>,
        interval: Option<Interval>,
        limit: usize,
        items: impl Fn(&Series) -> &VecDeque<T>,
        key: impl Fn(&T) -> K,
    ) -> Vec<T> {
        if let (Some(s), Some(i)) = (symbol, interval) {
            return self
                .series
                .get(&(s, i))
                .map(|series| items(series).iter().rev().take(limit).copied().collect())
                .unwrap_or_default();
        }
        let newest_first = |a: &T, b: &T| key(b).cmp(&key(a));
        let mut out: Vec<T> = Vec::new();
        for ((s, i), series) in &self.series {
            if symbol.is_some_and(|x| x != *s) || interval.is_some_and(|x| x != *i) {
                continue;
            }
            out.extend(items(series).iter().rev().take(limit).copied());
            if out.len() > limit.saturating_mul(2) {
                out.sort_by(newest_first);
                out.truncate(limit);
            }
        }
        out.sort_by(newest_first);
        out.truncate(limit);
        out
    }

    /// The newest closed candle of one series.
    pub fn last_closed(&self, symbol: Symbol, interval: Interval) -> Option<Candle> {
        self.series
            .get(&(symbol, interval))
            .and_then(|s| s.closed.back().copied())
    }

    pub fn live(&self, symbol: Option<Symbol>, interval: Option<Interval>) -> Vec<Candle> {
        let mut out: Vec<Candle> = self
            .series
            .iter()
            .filter(|((s, i), _)| {
                symbol.is_none_or(|x| x == *s) && interval.is_none_or(|x| x == *i)
            })
            .filter_map(|(_, series)| series.live)
            .collect();
        out.sort_by_key(|c| (c.symbol, c.interval));
        out
    }

    pub fn gaps(&self) -> impl DoubleEndedIterator<Item = &Gap> {
        self.gaps.iter()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Series the map holds before it must grow.
    #[cfg(test)]
    fn series_capacity(&self) -> usize {
        self.series.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(open: i64, closed: bool) -> Candle {
        crate::market::testing::candle("ETHUSDT", open, open * 1000, closed)
    }

    #[test]
    fn bounded_ordered_and_idempotent() {
        let mut s = RecentStore::new(3);
        for i in [0, 1, 3, 2, 2, 4] {
            s.insert_closed(&c(i * 60_000, true));
        }
        assert_eq!(s.duplicates_ignored, 1);
        assert_eq!(s.evicted, 2);
        let got: Vec<_> = s
            .closed(None, None, 10)
            .iter()
            .map(|x| x.open_time_ms / 60_000)
            .collect();
        assert_eq!(got, [4, 3, 2]);
        assert_eq!(s.closed(None, Some(Interval::H1), 10).len(), 0);
        assert_eq!(s.closed(None, None, 1).len(), 1);
    }

    /// A store that reserved its series takes them all without its map growing, and
    /// reserves no more than `max_series` allows.
    #[test]
    fn a_reserved_store_takes_its_series_without_growing() {
        let mut s = RecentStore::new(10);
        s.reserve_series(300);
        let capacity = s.series_capacity();
        assert!(capacity >= 300, "{capacity}");
        for i in 0..300u32 {
            let mut k = c(60_000, false);
            k.symbol = format!("S{i}USDT").parse().unwrap();
            assert!(s.update_live(&k));
        }
        assert_eq!(s.series_count(), 300);
        assert_eq!(s.series_capacity(), capacity);
        let mut small = RecentStore::new(10).with_max_series(2);
        small.reserve_series(300);
        assert!(small.series_capacity() < 300, "{}", small.series_capacity());
    }

    #[test]
    fn old_duplicates_are_found_anywhere_in_the_series() {
        let mut s = RecentStore::new(100);
        for i in 0..50 {
            s.insert_closed(&c(i * 60_000, true));
        }
        s.insert_closed(&c(3 * 60_000, true));
        assert_eq!(s.duplicates_ignored, 1);
        assert_eq!(s.closed_total, 50);
        let last = s
            .last_closed("ETHUSDT".parse().unwrap(), Interval::M1)
            .unwrap();
        assert_eq!(last.open_time_ms, 49 * 60_000);
        // Unfiltered queries over many series stay bounded by the limit.
        let mut many = RecentStore::new(100);
        for sym in ["AAAUSDT", "BBBUSDT", "CCCUSDT"] {
            for i in 0..40 {
                let mut k = c(i * 60_000, true);
                k.symbol = sym.parse().unwrap();
                many.insert_closed(&k);
            }
        }
        let got = many.closed(None, None, 5);
        assert_eq!(got.len(), 5);
        assert!(got
            .iter()
            .all(|k| k.open_time_ms == 39 * 60_000 || k.open_time_ms == 38 * 60_000));
    }

    #[test]
    fn signals_are_bounded_deduplicated_and_newest_first() {
        use crate::signals::{Direction, IndicatorValues, SignalKind};
        let sig = |sym: &str, t: i64, kind| Signal {
            symbol: sym.parse().unwrap(),
            interval: Interval::M1,
            kind,
            direction: Direction::Buy,
            confidence: 0.5,
            price: "1.5".parse().unwrap(),
            timestamp_ms: t,
            event_time_us: t * 1000,
            indicators: IndicatorValues::new(),
        };
        let mut s = RecentStore::new(3);
        for t in [1, 3, 2, 2, 4] {
            s.insert_signal(&sig("BTCUSDT", t, SignalKind::Rsi));
        }
        s.insert_signal(&sig("BTCUSDT", 4, SignalKind::EmaCross));
        s.insert_signal(&sig("ETHUSDT", 5, SignalKind::Rsi));
        assert_eq!(s.duplicates_ignored, 1);
        assert_eq!(s.signals_total, 6);
        let got: Vec<_> = s
            .signals(Some("BTCUSDT".parse().unwrap()), Some(Interval::M1), 10)
            .iter()
            .map(|x| (x.timestamp_ms, x.kind))
            .collect();
        assert_eq!(
            got,
            [
                (4, SignalKind::Rsi),
                (4, SignalKind::EmaCross),
                (3, SignalKind::Rsi)
            ]
        );
        let all = s.signals(None, None, 2);
        assert_eq!(all[0].symbol.as_str(), "ETHUSDT");
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn past_the_series_bound_new_series_are_refused_and_old_ones_keep_updating() {
        let mut s = RecentStore::new(10).with_max_series(2);
        let on = |sym: &str, open: i64, closed: bool| {
            let mut k = c(open, closed);
            k.symbol = sym.parse().unwrap();
            k
        };
        assert!(s.insert_closed(&on("AAAUSDT", 0, true)));
        assert!(s.update_live(&on("BBBUSDT", 0, false)));
        // A third series, of any record kind, is refused and counted.
        assert!(!s.insert_closed(&on("CCCUSDT", 0, true)));
        assert!(!s.update_live(&on("CCCUSDT", 60_000, false)));
        let sig = crate::record::tests::signal("CCCUSDT", 60_000, crate::signals::SignalKind::Rsi);
        assert!(!s.insert_signal(&sig));
        assert_eq!(s.series_refused, 3);
        assert_eq!(s.series_count(), 2);
        assert!(s
            .closed(Some("CCCUSDT".parse().unwrap()), None, 10)
            .is_empty());
        // The two series held keep taking records of every kind.
        assert!(s.insert_closed(&on("AAAUSDT", 60_000, true)));
        assert!(s.insert_closed(&on("BBBUSDT", 0, true)));
        let sig = crate::record::tests::signal("AAAUSDT", 60_000, crate::signals::SignalKind::Rsi);
        assert!(s.apply(&Record::Signal(sig)));
        assert_eq!(s.closed(None, None, 10).len(), 3);
        assert_eq!(s.series_refused, 3);
        assert_eq!(s.max_series(), 2);
    }

    #[test]
    fn live_is_replaced_by_close() {
        let mut s = RecentStore::new(10);
        s.update_live(&c(60_000, false));
        assert_eq!(s.live(None, None).len(), 1);
        s.insert_closed(&c(60_000, true));
        assert!(s.live(None, None).is_empty());
        s.update_live(&c(0, false));
        assert!(s.live(None, None).is_empty(), "older than the last close");
    }
}
