//! A seeded past for a simulated symbol: closed candles before the market opens, so a
//! client's warm start (`GET /api/v3/klines`) finds history at once, as it would on
//! Binance, instead of a market listed a moment ago.
//!
//! Runs on: the simulator core, once per symbol when the market is built (pure).
//! In: the symbol's spec, the seed, the trade rate, the open time and how many candles
//! each interval should reach back. Out: per interval, the closed candles and the part
//! of the open candle that lies before the open time.
//!
//! The past is a random walk of "atoms" (candles of 1s, 1m, 1h or 1d) generated
//! backwards from the market's opening price, so the history ends exactly where the live
//! market begins and the live market is the same with or without it. Atoms are finest
//! near the open time and coarser further back; each interval's candles are sums of the
//! atoms inside them, so every interval tells the same story (a 1h candle's high is the
//! highest of its 1m candles). An interval reaches back `candles` candles where atoms
//! that divide it exist: 1s through 1000 seconds, 1m–30m through `candles` × 30 minutes,
//! 1h–12h through `candles` × 12 hours, and 1d–1M through `candles` months, but never
//! before 2017 (when Binance opened).
//!
//! Trade ids count down from the live market's first id (clamped at 0): REST klines do
//! not carry them, but the open candle's streamed `f` does.

use crate::market::Interval;

use super::spec::{mix64, Rng, SymbolSpec};
use super::{PRICE_BAND_FACTOR, UNIT, VOLATILITY_PER_SQRT_S};
use crate::simulator::kline::Kline;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// No history before 2017-01-01T00:00:00Z.
pub const HISTORY_FLOOR_MS: i64 = 1_483_228_800_000;
/// The most candles an interval may reach back (the simulator keeps at most its
/// `kline_history` anyway).
pub const MAX_HISTORY_CANDLES: usize = 10_000;
/// Separates the history's random stream from the live market's.
const HISTORY_STREAM: u64 = 0x4849_5354_4f52_5931;

/// One atom size and the longest interval built from it (how far back it must reach).
struct Tier {
    atom_ms: i64,
    longest_ms: i64,
}

/// Finest first. Each atom divides every interval of its tier and every atom size above.
const TIERS: [Tier; 4] = [
    Tier {
        atom_ms: SECOND_MS,
        longest_ms: SECOND_MS,
    },
    Tier {
        atom_ms: MINUTE_MS,
        longest_ms: 30 * MINUTE_MS,
    },
    Tier {
        atom_ms: HOUR_MS,
        longest_ms: 12 * HOUR_MS,
    },
    Tier {
        atom_ms: DAY_MS,
        longest_ms: 31 * DAY_MS,
    },
];

/// The tier whose atoms build `interval`.
fn tier_of(interval: Interval) -> usize {
    match interval {
        Interval::S1 => 0,
        Interval::M1 | Interval::M3 | Interval::M5 | Interval::M15 | Interval::M30 => 1,
        Interval::H1
        | Interval::H2
        | Interval::H4
        | Interval::H6
        | Interval::H8
        | Interval::H12 => 2,
        Interval::D1 | Interval::D3 | Interval::W1 | Interval::Mo1 => 3,
    }
}

/// One interval's seeded past.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesHistory {
    pub interval: Interval,
    /// Closed candles, oldest first, at most the `candles` asked for.
    pub closed: Vec<Kline>,
    /// The trades of the open candle before the market's open time (`None` when the open
    /// candle starts at the open time).
    pub open_part: Option<Kline>,
}

/// What the walk needs to know about the symbol.
pub struct HistorySpec<'a> {
    pub spec: &'a SymbolSpec,
    pub seed: u64,
    /// Trades per simulated second.
    pub trade_rate: f64,
    /// The market's open time (ms); the history ends at its second.
    pub open_ms: i64,
    /// The price the live market opens at: the last atom's close.
    pub open_price: i64,
    /// The live market's first trade id; the history's ids end just below it.
    pub first_trade_id: u64,
    /// The largest trade, in quantity steps.
    pub max_trade_steps: i64,
}

/// The seeded past of every interval, `candles` deep (see the module's notes for how far
/// each interval reaches).
pub fn generate(h: &HistorySpec<'_>, candles: usize) -> Vec<SeriesHistory> {
    let candles = candles.min(MAX_HISTORY_CANDLES);
    if candles == 0 {
        return Vec::new();
    }
    let end_ms = h.open_ms.div_euclid(SECOND_MS) * SECOND_MS;
    let starts = tier_starts(end_ms, candles as i64);
    let atoms = walk_back(h, end_ms, &starts);
    Interval::ALL
        .iter()
        .map(|&interval| build_series(interval, &atoms, starts[tier_of(interval)], end_ms, candles))
        .collect()
}

/// Where each tier's atoms begin: tier `k`'s atoms cover `[starts[k], starts[k - 1])`
/// (the finest up to the open). A start is aligned to the next coarser atom, so atoms of
/// different tiers never overlap an atom of a coarser tier, and never precedes
/// [`HISTORY_FLOOR_MS`].
fn tier_starts(end_ms: i64, candles: i64) -> [i64; 4] {
    let mut starts = [end_ms; 4];
    let mut later = end_ms;
    for (k, tier) in TIERS.iter().enumerate() {
        let coarser = TIERS.get(k + 1).map_or(DAY_MS, |t| t.atom_ms);
        let reach = end_ms.saturating_sub(candles.saturating_mul(tier.longest_ms));
        let start = reach.div_euclid(coarser) * coarser;
        let floor = HISTORY_FLOOR_MS.min(later);
        starts[k] = start.max(floor - floor.rem_euclid(coarser)).min(later);
        later = starts[k];
    }
    starts
}

/// The atoms from the oldest tier's start to `end_ms`, oldest first, generated backwards
/// from the open price.
fn walk_back(h: &HistorySpec<'_>, end_ms: i64, starts: &[i64; 4]) -> Vec<Kline> {
    let mut rng = Rng::new(mix64(h.seed ^ h.spec.symbol.stable_hash() ^ HISTORY_STREAM));
    let tick = h.spec.tick();
    let step = h.spec.step();
    let initial = h.spec.initial_price;
    let (low_band, high_band) = (initial / PRICE_BAND_FACTOR, initial * PRICE_BAND_FACTOR);
    let mean_qty_steps = 1.0 + h.max_trade_steps as f64 / 4.0;
    let mut atoms = Vec::new();
    let mut close = h.open_price;
    let mut next_id = h.first_trade_id as i64;
    let mut tier_end = end_ms;
    for (k, tier) in TIERS.iter().enumerate() {
        let mut t = tier_end;
        while t > starts[k] {
            let open_time = t - tier.atom_ms;
            let seconds = tier.atom_ms as f64 / 1_000.0;
            let sigma = VOLATILITY_PER_SQRT_S * seconds.sqrt() * close as f64;
            let mut delta = ((rng.normal() * sigma) / tick as f64).round() as i64 * tick;
            if close - delta < low_band || close - delta > high_band {
                delta = -delta;
            }
            let open = (close - delta).max(tick);
            let wick =
                |rng: &mut Rng| ((rng.normal().abs() * sigma * 0.5) / tick as f64) as i64 * tick;
            let high = open.max(close) + wick(&mut rng);
            let low = (open.min(close) - wick(&mut rng)).max(tick);
            // Trades in the atom: the rate ± 50 %, rounded.
            let expected = h.trade_rate * seconds * (0.5 + rng.unit());
            let trades = expected.round().max(0.0) as u64;
            let mut atom = Kline::empty(interval_of_atom(tier.atom_ms), open_time, close);
            if trades > 0 {
                let steps = (trades as f64 * mean_qty_steps * (0.5 + rng.unit())).max(1.0);
                let volume = i128::from(steps as i64) * i128::from(step);
                let buy = volume * i128::from(30 + rng.below(41) as i64) / 100;
                let buy = buy - buy % i128::from(step);
                // Traded, on average, between the low and the high, on the tick grid.
                let vwap = low + ((high - low) / tick / 2) * tick;
                let quote = |qty: i128| qty * i128::from(vwap) / i128::from(UNIT);
                let last_id = (next_id - 1).max(0);
                let first_id = (last_id - trades as i64 + 1).max(0);
                next_id = first_id;
                atom = Kline {
                    open,
                    high,
                    low,
                    close,
                    volume,
                    quote_volume: quote(volume),
                    taker_buy_base: buy,
                    taker_buy_quote: quote(buy),
                    trades,
                    first_trade_id: first_id,
                    last_trade_id: last_id,
                    ..atom
                };
            }
            atoms.push(atom);
            close = atom.open;
            t = open_time;
        }
        tier_end = starts[k];
    }
    atoms.reverse();
    atoms
}

fn interval_of_atom(atom_ms: i64) -> Interval {
    match atom_ms {
        SECOND_MS => Interval::S1,
        MINUTE_MS => Interval::M1,
        HOUR_MS => Interval::H1,
        _ => Interval::D1,
    }
}

/// `interval`'s candles from the atoms at or after `from_ms` (those that divide it):
/// the last `candles` closed ones and the open one's part before `end_ms`.
fn build_series(
    interval: Interval,
    atoms: &[Kline],
    from_ms: i64,
    end_ms: i64,
    candles: usize,
) -> SeriesHistory {
    let first = atoms.partition_point(|a| a.open_time_ms < from_ms);
    let mut built: Vec<Kline> = Vec::new();
    for atom in &atoms[first..] {
        let open = interval.open_time(atom.open_time_ms);
        match built.last_mut() {
            Some(candle) if candle.open_time_ms == open => candle.merge(atom),
            _ => {
                let mut candle = Kline::empty(interval, open, atom.open);
                candle.merge(atom);
                built.push(candle);
            }
        }
    }
    // A first candle that opens before the atoms begin would be partial.
    if built.first().is_some_and(|c| c.open_time_ms < from_ms) {
        built.remove(0);
    }
    let open_now = interval.open_time(end_ms);
    let open_part = match built.last() {
        Some(c) if c.open_time_ms == open_now => built.pop(),
        _ => None,
    };
    let skip = built.len().saturating_sub(candles);
    SeriesHistory {
        interval,
        closed: built.split_off(skip),
        open_part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Symbol;

    /// 2026-12-05T21:17:30.250Z, a Saturday in the middle of a month.
    const OPEN_MS: i64 = 1_796_505_450_250;

    fn history(candles: usize, open_ms: i64) -> Vec<SeriesHistory> {
        let spec = SymbolSpec::for_symbol(Symbol::new("BTCUSDT").unwrap());
        let open_price = spec.initial_price - spec.initial_price % spec.tick();
        generate(
            &HistorySpec {
                spec: &spec,
                seed: 7,
                trade_rate: 5.0,
                open_ms,
                open_price,
                first_trade_id: 50_000_000,
                max_trade_steps: 1_000,
            },
            candles,
        )
    }

    fn series(all: &[SeriesHistory], interval: Interval) -> &SeriesHistory {
        all.iter().find(|s| s.interval == interval).unwrap()
    }

    #[test]
    fn every_interval_reaches_back_the_candles_asked_for_without_holes() {
        let all = history(1000, OPEN_MS);
        assert_eq!(all.len(), Interval::ALL.len());
        for s in &all {
            // Weekly and monthly candles would reach back before 2017: they stop there.
            let first = s.closed.first().unwrap().open_time_ms;
            if matches!(s.interval, Interval::W1 | Interval::Mo1) {
                assert!(s.closed.len() < 1000, "{:?}", s.interval);
                let second = s.interval.next_open(s.interval.next_open(HISTORY_FLOOR_MS));
                assert!(
                    first >= HISTORY_FLOOR_MS && first < second,
                    "{:?}",
                    s.interval
                );
            } else {
                assert_eq!(s.closed.len(), 1000, "{:?}", s.interval);
            }
            for pair in s.closed.windows(2) {
                assert_eq!(
                    pair[1].open_time_ms,
                    s.interval.next_open(pair[0].open_time_ms),
                    "{:?}: candles follow each other",
                    s.interval
                );
                assert_eq!(
                    pair[1].open, pair[0].close,
                    "{:?}: opens at the last close",
                    s.interval
                );
            }
            let last = s.closed.last().unwrap();
            assert!(
                last.close_time_ms < OPEN_MS,
                "{:?}: closed before the open",
                s.interval
            );
            let open_now = s.interval.open_time(OPEN_MS);
            assert_eq!(
                last.close_time_ms + 1,
                open_now,
                "{:?}: no hole before the open candle",
                s.interval
            );
            match &s.open_part {
                Some(p) => assert_eq!(p.open_time_ms, open_now),
                None => assert_eq!(open_now, OPEN_MS - OPEN_MS % 1000),
            }
            for k in &s.closed {
                assert!(k.low <= k.open.min(k.close) && k.high >= k.open.max(k.close));
                assert!(k.low > 0 && k.taker_buy_base <= k.volume);
            }
        }
    }

    #[test]
    fn the_history_ends_at_the_live_opening_price() {
        let all = history(1000, OPEN_MS);
        let spec = SymbolSpec::for_symbol(Symbol::new("BTCUSDT").unwrap());
        let open_price = spec.initial_price - spec.initial_price % spec.tick();
        for s in &all {
            let last = s.open_part.as_ref().or(s.closed.last()).unwrap();
            assert_eq!(last.close, open_price, "{:?}", s.interval);
        }
    }

    #[test]
    fn intervals_agree_with_each_other() {
        let all = history(1000, OPEN_MS);
        let minutes = &series(&all, Interval::M1).closed;
        for coarse in [Interval::M5, Interval::M15, Interval::H1] {
            for candle in &series(&all, coarse).closed {
                let inside: Vec<&Kline> = minutes
                    .iter()
                    .filter(|m| coarse.open_time(m.open_time_ms) == candle.open_time_ms)
                    .collect();
                let per = (coarse.fixed_ms().unwrap() / MINUTE_MS) as usize;
                if inside.len() != per {
                    continue;
                }
                assert_eq!(candle.open, inside[0].open);
                assert_eq!(candle.close, inside[per - 1].close);
                assert_eq!(candle.high, inside.iter().map(|m| m.high).max().unwrap());
                assert_eq!(candle.low, inside.iter().map(|m| m.low).min().unwrap());
                assert_eq!(candle.volume, inside.iter().map(|m| m.volume).sum::<i128>());
                assert_eq!(candle.trades, inside.iter().map(|m| m.trades).sum::<u64>());
            }
        }
        let days = &series(&all, Interval::D1).closed;
        let weeks = &series(&all, Interval::W1).closed;
        let week = weeks.last().unwrap();
        let in_week: Vec<&Kline> = days
            .iter()
            .filter(|d| Interval::W1.open_time(d.open_time_ms) == week.open_time_ms)
            .collect();
        assert_eq!(in_week.len(), 7);
        assert_eq!(week.high, in_week.iter().map(|d| d.high).max().unwrap());
    }

    #[test]
    fn the_same_seed_gives_the_same_past_and_none_reaches_before_2017() {
        assert_eq!(history(300, OPEN_MS), history(300, OPEN_MS));
        // Opened in mid-2017: the monthly candles stop at January 2017.
        let all = history(1000, 1_500_000_000_000);
        let months = &series(&all, Interval::Mo1).closed;
        assert!(months.first().unwrap().open_time_ms >= HISTORY_FLOOR_MS);
        assert!(months.len() < 12);
        assert_eq!(series(&all, Interval::M1).closed.len(), 1000);
        assert!(history(0, OPEN_MS).is_empty());
    }
}
