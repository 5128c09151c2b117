//! Kline state: one candle's aggregate, and the bounded per-interval history that both
//! the kline streams and `GET /api/v3/klines` read.
//!
//! Runs on: the simulator core (pure, no I/O). In: fills (price, quantity, side, trade
//! ids) from the market model and second boundaries. Out: candles, open and closed.
//!
//! Prices and quantities are integers in units of 10^-8 ([`crate::simulator::market::UNIT_SCALE`]);
//! volumes are `i128` so that no realistic run can overflow them.

use std::collections::VecDeque;

use crate::market::{Candle, Decimal, Interval, Symbol};

use super::market::UNIT_SCALE;

const DAY_MS: i64 = 86_400_000;

/// Closed candles kept per (symbol, interval) unless configured otherwise. Beyond it the
/// oldest candle is dropped; `GET /api/v3/klines` then returns nothing for those open
/// times, as Binance does for periods it has no data for. 10,000 keeps a week of 1m
/// candles (and 2.7 hours of 1s candles) in about 1.3 MB per (symbol, interval).
pub const DEFAULT_KLINE_HISTORY: usize = 10_000;

/// The most candles of room a seed reserves in a history (1.4 MB): the whole of a
/// default one. A larger `--kline-history` (which has no upper bound) grows past it by
/// doubling, so that a big one reserves nothing it may never use.
pub const SEED_ROOM: usize = DEFAULT_KLINE_HISTORY;

/// One candle in exact integer units. A candle without trades has
/// `open = high = low = close =` the previous close, zero volumes and trade ids `-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kline {
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i128,
    pub quote_volume: i128,
    pub taker_buy_base: i128,
    pub taker_buy_quote: i128,
    pub trades: u64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
}

impl Kline {
    /// An empty candle opening at `open_time_ms`, carrying the previous close.
    pub fn empty(interval: Interval, open_time_ms: i64, previous_close: i64) -> Kline {
        Kline {
            open_time_ms,
            close_time_ms: interval.close_time(open_time_ms),
            open: previous_close,
            high: previous_close,
            low: previous_close,
            close: previous_close,
            volume: 0,
            quote_volume: 0,
            taker_buy_base: 0,
            taker_buy_quote: 0,
            trades: 0,
            first_trade_id: -1,
            last_trade_id: -1,
        }
    }

    /// Adds `count` consecutive trades (ids `first_id..=last_id`) at one price.
    /// `quantity` is their summed quantity; `quote` its value in the quote asset.
    pub fn add_fill(&mut self, fill: &Fill) {
        if self.trades == 0 {
            self.open = fill.price;
            self.high = fill.price;
            self.low = fill.price;
            self.first_trade_id = fill.first_id;
        } else {
            self.high = self.high.max(fill.price);
            self.low = self.low.min(fill.price);
        }
        self.close = fill.price;
        self.volume += fill.quantity;
        self.quote_volume += fill.quote;
        if fill.taker_is_buyer {
            self.taker_buy_base += fill.quantity;
            self.taker_buy_quote += fill.quote;
        }
        self.trades += fill.count;
        self.last_trade_id = fill.last_id;
    }

    /// Appends a later, adjacent sub-candle (e.g. a closed 1s candle into its minute).
    pub fn merge(&mut self, later: &Kline) {
        if later.trades == 0 {
            return;
        }
        if self.trades == 0 {
            self.open = later.open;
            self.high = later.high;
            self.low = later.low;
            self.first_trade_id = later.first_trade_id;
        } else {
            self.high = self.high.max(later.high);
            self.low = self.low.min(later.low);
        }
        self.close = later.close;
        self.volume += later.volume;
        self.quote_volume += later.quote_volume;
        self.taker_buy_base += later.taker_buy_base;
        self.taker_buy_quote += later.taker_buy_quote;
        self.trades += later.trades;
        self.last_trade_id = later.last_trade_id;
    }

    /// The candle in the crate's shared vocabulary (what the engine's parser produces
    /// from the same frame).
    pub fn to_candle(
        self,
        symbol: Symbol,
        interval: Interval,
        closed: bool,
        event_time_us: i64,
    ) -> Candle {
        let dec = |v: i128| Decimal::from_i128_with_scale(v, UNIT_SCALE);
        Candle {
            symbol,
            interval,
            open_time_ms: self.open_time_ms,
            close_time_ms: self.close_time_ms,
            open: dec(i128::from(self.open)),
            high: dec(i128::from(self.high)),
            low: dec(i128::from(self.low)),
            close: dec(i128::from(self.close)),
            volume: dec(self.volume),
            quote_volume: dec(self.quote_volume),
            taker_buy_base: dec(self.taker_buy_base),
            taker_buy_quote: dec(self.taker_buy_quote),
            trades: self.trades,
            first_trade_id: self.first_trade_id,
            last_trade_id: self.last_trade_id,
            closed,
            event_time_us,
        }
    }
}

/// Consecutive trades at one price from one taker order (one aggTrade).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub price: i64,
    pub quantity: i128,
    pub quote: i128,
    pub taker_is_buyer: bool,
    pub count: u64,
    pub first_id: i64,
    pub last_id: i64,
}

/// The candles of one (symbol, interval): the one being built and the closed ones.
///
/// For every interval but `1s`, `building` holds the closed 1-second candles of the
/// current period; the live 1-second candle is merged in when the candle is viewed, so
/// a trade updates one candle, not sixteen.
#[derive(Debug, Clone)]
pub struct KlineSeries {
    pub interval: Interval,
    pub building: Kline,
    history: VecDeque<Kline>,
    history_limit: usize,
}

impl KlineSeries {
    pub fn new(interval: Interval, start_ms: i64, price: i64, history_limit: usize) -> Self {
        KlineSeries {
            interval,
            building: Kline::empty(interval, interval.open_time(start_ms), price),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
        }
    }

    /// Starts from a seeded past: `closed` (oldest first; the newest `history_limit`
    /// are kept) and the part of the open candle before the market opened.
    ///
    /// The history gets its room now, up to [`SEED_ROOM`]. Filled to the brim by the
    /// seed, it would double at its first close, and every symbol's series of an
    /// interval closes at the same instant: at the first minute after the start, 100
    /// symbols' 1m histories grew at once (a copy and fresh pages each), which held the
    /// simulator's sends for 90-170 ms. Untouched, the room costs address space, not
    /// memory.
    pub fn seed(&mut self, closed: &[Kline], open_part: Option<Kline>) {
        let keep = closed.len().saturating_sub(self.history_limit);
        let room = self.history_limit.min(SEED_ROOM);
        self.history
            .reserve_exact(room.saturating_sub(self.history.len()));
        self.history.extend(closed[keep..].iter().copied());
        if let Some(part) = open_part {
            self.building.merge(&part);
        }
    }

    /// Closes `building`, stores it, starts the next one; returns the closed candle.
    pub fn close_building(&mut self) -> Kline {
        let closed = self.building;
        if self.history.len() == self.history_limit {
            self.history.pop_front();
        }
        self.history.push_back(closed);
        let next_open = self.interval.next_open(closed.open_time_ms);
        self.building = Kline::empty(self.interval, next_open, closed.close);
        closed
    }

    /// Closed candles, oldest first.
    pub fn history(&self) -> &VecDeque<Kline> {
        &self.history
    }

    /// The candles `GET /api/v3/klines` returns (see [`select`]). `current` is the open
    /// candle.
    pub fn select(
        &self,
        current: Kline,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: usize,
        out: &mut Vec<Kline>,
    ) {
        let first = self
            .history
            .partition_point(|k| k.open_time_ms < start_ms.unwrap_or(i64::MIN));
        let candles = self.history.range(first..).chain(std::iter::once(&current));
        select(candles, start_ms, end_ms, limit, out);
    }

    /// The candles of `interval` in a time zone `offset_ms` east of UTC, aggregated from
    /// this finer series (see [`time_zone_base`]), oldest first; the last one is open.
    /// `current` is this series' open candle. A candle whose start is no longer in this
    /// series' history is left out rather than returned partial.
    pub fn shifted(&self, current: Kline, interval: Interval, offset_ms: i64) -> Vec<Kline> {
        let open_of = |t_ms: i64| interval.open_time(t_ms + offset_ms) - offset_ms;
        let trimmed = self.history.len() == self.history_limit;
        let first_open = self.history.front().unwrap_or(&current).open_time_ms;
        let mut out: Vec<Kline> = Vec::new();
        for part in self.history.iter().chain(std::iter::once(&current)) {
            let open = open_of(part.open_time_ms);
            match out.last_mut() {
                Some(candle) if candle.open_time_ms == open => candle.merge(part),
                _ => {
                    let mut candle = Kline::empty(interval, open, part.open);
                    candle.close_time_ms = interval.close_time(open + offset_ms) - offset_ms;
                    candle.merge(part);
                    out.push(candle);
                }
            }
        }
        if trimmed && out.first().is_some_and(|c| c.open_time_ms < first_open) {
            out.remove(0);
        }
        out
    }
}

/// The selection of `GET /api/v3/klines`, following Binance: with `start_ms`, the first
/// `limit` candles opening at or after it; otherwise the last `limit` opening at or
/// before `end_ms` (or the latest ones). `candles` are in time order.
pub fn select<'a>(
    candles: impl Iterator<Item = &'a Kline> + Clone,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: usize,
    out: &mut Vec<Kline>,
) {
    out.clear();
    let in_range = |k: &&Kline| {
        start_ms.is_none_or(|s| k.open_time_ms >= s) && end_ms.is_none_or(|e| k.open_time_ms <= e)
    };
    if start_ms.is_some() {
        out.extend(candles.filter(in_range).take(limit).copied());
    } else {
        let total = candles.clone().filter(in_range).count();
        out.extend(
            candles
                .filter(in_range)
                .skip(total.saturating_sub(limit))
                .copied(),
        );
    }
}

/// The series to aggregate `interval` from in a time zone `offset_ms` east of UTC:
/// the coarsest fixed interval whose boundaries are boundaries of both the shifted and
/// the UTC candles. `None` when the offset does not move `interval`'s boundaries (a
/// multiple of its length), so the UTC series answers as it is.
pub fn time_zone_base(interval: Interval, offset_ms: i64) -> Option<Interval> {
    if offset_ms == 0 {
        return None;
    }
    // Weeks and months are made of whole UTC days, shifted or not.
    let whole = interval.fixed_ms().filter(|_| interval != Interval::W1);
    if whole.is_some_and(|len| offset_ms % len == 0) {
        return None;
    }
    let span = whole.unwrap_or(DAY_MS);
    Interval::ALL
        .iter()
        .rev()
        .copied()
        .filter(|b| *b != interval)
        .find(|b| {
            b.fixed_ms()
                .is_some_and(|len| len <= span && span % len == 0 && offset_ms % len == 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(price: i64, qty: i128, buyer: bool, first: i64, count: u64) -> Fill {
        Fill {
            price,
            quantity: qty,
            quote: i128::from(price) * qty / 100_000_000,
            taker_is_buyer: buyer,
            count,
            first_id: first,
            last_id: first + count as i64 - 1,
        }
    }

    #[test]
    fn empty_candle_carries_previous_close() {
        let k = Kline::empty(Interval::M1, 60_000, 123);
        assert_eq!((k.open, k.high, k.low, k.close), (123, 123, 123, 123));
        assert_eq!((k.trades, k.first_trade_id, k.last_trade_id), (0, -1, -1));
        assert_eq!(k.close_time_ms, 119_999);
    }

    #[test]
    fn merge_equals_direct_aggregation() {
        let fills = [
            fill(100, 5, true, 1, 2),
            fill(90, 7, false, 3, 1),
            fill(120, 1, true, 4, 3),
            fill(95, 2, false, 7, 1),
        ];
        let mut direct = Kline::empty(Interval::M1, 0, 50);
        for f in &fills {
            direct.add_fill(f);
        }
        // The same fills split over two seconds with an empty second in between.
        let mut a = Kline::empty(Interval::S1, 0, 50);
        a.add_fill(&fills[0]);
        a.add_fill(&fills[1]);
        let gap = Kline::empty(Interval::S1, 1000, a.close);
        let mut b = Kline::empty(Interval::S1, 2000, a.close);
        b.add_fill(&fills[2]);
        b.add_fill(&fills[3]);
        let mut merged = Kline::empty(Interval::M1, 0, 50);
        for part in [&gap, &a, &gap, &b] {
            merged.merge(part);
        }
        // Merging an empty part first must not change the open of later trades.
        assert_eq!(merged, direct);
        assert_eq!(
            (direct.open, direct.high, direct.low, direct.close),
            (100, 120, 90, 95)
        );
        assert_eq!(direct.trades, 7);
        assert_eq!((direct.first_trade_id, direct.last_trade_id), (1, 7));
        assert_eq!(direct.volume, 15);
        assert_eq!(direct.taker_buy_base, 6);
    }

    #[test]
    fn converts_to_the_shared_candle_exactly() {
        let mut k = Kline::empty(Interval::M1, 60_000, 6_000_001_000_000);
        k.add_fill(&fill(6_000_001_000_000, 125_000, true, 9, 2));
        let c = k.to_candle(Symbol::new("BTCUSDT").unwrap(), Interval::M1, true, 5);
        assert_eq!(c.open.to_string(), "60000.01000000");
        assert_eq!(c.volume.to_string(), "0.00125000");
        assert_eq!(c.quote_volume.to_string(), "75.00001250");
        assert_eq!(
            (c.trades, c.first_trade_id, c.last_trade_id, c.closed),
            (2, 9, 10, true)
        );
    }

    /// A seeded history never grows when a candle closes: its room was made at the seed.
    #[test]
    fn a_seeded_history_takes_its_closes_without_growing() {
        let past: Vec<Kline> = (0..600)
            .map(|i| Kline::empty(Interval::M1, i * 60_000, 10))
            .collect();
        let mut s = KlineSeries::new(Interval::M1, 600 * 60_000, 10, 1_000);
        s.seed(&past, None);
        let room = s.history.capacity();
        assert!(room >= 1_000, "{room}");
        for _ in 0..1_500 {
            s.close_building();
            assert_eq!(s.history.capacity(), room, "the history grew");
        }
        assert_eq!(s.history().len(), 1_000);
        // A history far larger than the default reserves at most `SEED_ROOM`.
        let mut big = KlineSeries::new(Interval::M1, 600 * 60_000, 10, 100 * SEED_ROOM);
        big.seed(&past, None);
        assert_eq!(big.history.capacity(), SEED_ROOM);
    }

    #[test]
    fn history_is_bounded_and_selection_follows_binance() {
        let mut s = KlineSeries::new(Interval::M1, 0, 10, 3);
        for _ in 0..5 {
            s.close_building();
        }
        let opens: Vec<i64> = s.history().iter().map(|k| k.open_time_ms).collect();
        assert_eq!(opens, vec![120_000, 180_000, 240_000]);
        let current = s.building;
        assert_eq!(current.open_time_ms, 300_000);
        let mut out = Vec::new();
        s.select(current, None, None, 2, &mut out);
        assert_eq!(
            out.iter().map(|k| k.open_time_ms).collect::<Vec<_>>(),
            vec![240_000, 300_000]
        );
        s.select(current, Some(170_000), None, 2, &mut out);
        assert_eq!(
            out.iter().map(|k| k.open_time_ms).collect::<Vec<_>>(),
            vec![180_000, 240_000]
        );
        s.select(current, None, Some(200_000), 10, &mut out);
        assert_eq!(
            out.iter().map(|k| k.open_time_ms).collect::<Vec<_>>(),
            vec![120_000, 180_000]
        );
        s.select(current, Some(0), Some(60_000), 10, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn time_zone_bases_are_the_coarsest_common_boundaries() {
        let hour = 3_600_000;
        for (interval, offset, base) in [
            (Interval::D1, 8 * hour, Some(Interval::H8)),
            (Interval::D1, -hour, Some(Interval::H1)),
            (Interval::H4, 8 * hour, None),
            (Interval::H1, 5 * hour + hour * 3 / 4, Some(Interval::M15)),
            (Interval::M30, 5 * hour + hour * 3 / 4, Some(Interval::M15)),
            (Interval::M15, 5 * hour + hour * 3 / 4, None),
            (Interval::W1, 14 * hour, Some(Interval::H2)),
            (Interval::Mo1, -12 * hour, Some(Interval::H12)),
            (Interval::D3, 8 * hour, Some(Interval::H8)),
            (Interval::W1, 0, None),
            (Interval::Mo1, 0, None),
        ] {
            assert_eq!(
                time_zone_base(interval, offset),
                base,
                "{interval} {offset}"
            );
        }
    }

    #[test]
    fn shifted_candles_aggregate_and_skip_a_trimmed_start() {
        let mut s = KlineSeries::new(Interval::M1, 0, 10, 3);
        for _ in 0..5 {
            s.close_building();
        }
        // History 120k, 180k, 240k; open 300k. 3m candles shifted by one minute open
        // at 120k and 300k; the first is whole.
        let opens = |v: Vec<Kline>| v.iter().map(|k| k.open_time_ms).collect::<Vec<_>>();
        assert_eq!(
            opens(s.shifted(s.building, Interval::M3, 60_000)),
            vec![120_000, 300_000]
        );
        let shifted = s.shifted(s.building, Interval::M3, 60_000);
        assert_eq!(shifted[0].close_time_ms, 299_999);
        // Shifted by two minutes they open at 60k and 240k: the 60k one lost its first
        // minute to the history limit and is left out.
        assert_eq!(
            opens(s.shifted(s.building, Interval::M3, 120_000)),
            vec![240_000]
        );
        // Untrimmed history keeps a partial first candle (the market opened inside it).
        let s = KlineSeries::new(Interval::M1, 60_000, 10, 3);
        assert_eq!(
            opens(s.shifted(s.building, Interval::M3, 120_000)),
            vec![60_000]
        );
    }
}
