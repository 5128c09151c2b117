//! One side of a local order book: price levels sorted with the best last, so the
//! levels that change most (near the top) move the fewest others, bounded to a fixed
//! depth with everything beyond it marked unknown.

use std::collections::VecDeque;

use rust_decimal::Decimal;

/// One price level: the price in units of 10^-8 (see [`super::price_units`]) and the
/// quantity exactly as the exchange sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookLevel {
    pub price: i64,
    pub qty: Decimal,
}

/// What applying one level change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The level was set, added or removed.
    Applied { top: bool },
    /// A removal of a level the book does not have: nothing to do.
    Absent,
    /// Beyond the depth the book knows (after a trim or a partial snapshot): ignored.
    Beyond,
}

/// Levels sorted by rank (price for bids, minus price for asks), best last.
#[derive(Clone, Debug)]
pub struct Side {
    bid: bool,
    levels: VecDeque<BookLevel>,
    max_levels: usize,
    /// When the side has been cut: the rank of its worst known level. Levels ranked
    /// below it exist on the exchange as far as we know, but are not tracked.
    floor: Option<i64>,
}

impl Side {
    pub fn new(bid: bool, max_levels: usize) -> Side {
        Side {
            bid,
            levels: VecDeque::with_capacity(max_levels + 1),
            max_levels: max_levels.max(1),
            floor: None,
        }
    }

    #[inline]
    fn rank(&self, price: i64) -> i64 {
        if self.bid {
            price
        } else {
            -price
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Whether levels beyond the tracked ones may exist (the side was cut).
    pub fn truncated(&self) -> bool {
        self.floor.is_some()
    }

    /// The best level.
    pub fn best(&self) -> Option<&BookLevel> {
        self.levels.back()
    }

    /// Levels from the best outwards.
    pub fn iter_best_first(&self) -> impl Iterator<Item = &BookLevel> {
        self.levels.iter().rev()
    }

    pub fn clear(&mut self) {
        self.levels.clear();
        self.floor = None;
    }

    /// Loads a snapshot side given best first; `cut` says the exchange may have more
    /// levels beyond the last one given (the answer was as long as the limit asked).
    pub fn load(&mut self, best_first: &[BookLevel], cut: bool) {
        self.clear();
        let kept = best_first.len().min(self.max_levels);
        for level in best_first[..kept].iter().rev() {
            if !level.qty.is_zero() {
                self.levels.push_back(*level);
            }
        }
        if cut || kept < best_first.len() {
            self.floor = self.levels.front().map(|l| self.rank(l.price));
        }
    }

    /// Sets the quantity at `price` (zero removes the level).
    #[inline]
    pub fn apply(&mut self, price: i64, qty: Decimal) -> LevelChange {
        let rank = self.rank(price);
        if self.floor.is_some_and(|floor| rank < floor) {
            return LevelChange::Beyond;
        }
        let bid = self.bid;
        let found = self
            .levels
            .binary_search_by(|l| (if bid { l.price } else { -l.price }).cmp(&rank));
        let len = self.levels.len();
        match found {
            Ok(i) if qty.is_zero() => {
                self.levels.remove(i);
                LevelChange::Applied { top: i + 1 == len }
            }
            Ok(i) => {
                self.levels[i].qty = qty;
                LevelChange::Applied { top: i + 1 == len }
            }
            Err(_) if qty.is_zero() => LevelChange::Absent,
            Err(i) => {
                self.levels.insert(i, BookLevel { price, qty });
                if self.levels.len() > self.max_levels {
                    // The worst level goes; from the next one outwards the side is unknown.
                    self.levels.pop_front();
                    self.floor = self.levels.front().map(|l| self.rank(l.price));
                    return LevelChange::Applied {
                        top: i == self.levels.len(),
                    };
                }
                LevelChange::Applied { top: i == len }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(price: i64, qty: i64) -> BookLevel {
        BookLevel {
            price,
            qty: Decimal::from(qty),
        }
    }

    fn prices(side: &Side) -> Vec<i64> {
        side.iter_best_first().map(|l| l.price).collect()
    }

    #[test]
    fn bids_descend_and_asks_ascend_from_the_best() {
        let mut bids = Side::new(true, 10);
        let mut asks = Side::new(false, 10);
        for p in [5, 9, 7, 1] {
            bids.apply(p, Decimal::ONE);
            asks.apply(p + 100, Decimal::ONE);
        }
        assert_eq!(prices(&bids), [9, 7, 5, 1]);
        assert_eq!(prices(&asks), [101, 105, 107, 109]);
        assert_eq!(bids.best().unwrap().price, 9);
        assert_eq!(asks.best().unwrap().price, 101);
    }

    #[test]
    fn zero_removes_changes_set_and_the_top_is_reported() {
        let mut bids = Side::new(true, 10);
        assert_eq!(
            bids.apply(5, Decimal::ONE),
            LevelChange::Applied { top: true }
        );
        assert_eq!(
            bids.apply(3, Decimal::ONE),
            LevelChange::Applied { top: false }
        );
        assert_eq!(
            bids.apply(3, Decimal::TWO),
            LevelChange::Applied { top: false }
        );
        assert_eq!(bids.apply(4, Decimal::ZERO), LevelChange::Absent);
        assert_eq!(
            bids.apply(5, Decimal::ZERO),
            LevelChange::Applied { top: true }
        );
        assert_eq!(
            bids.iter_best_first().copied().collect::<Vec<_>>(),
            [lv(3, 2)]
        );
    }

    #[test]
    fn a_full_side_drops_its_worst_and_ignores_what_lies_beyond() {
        let mut asks = Side::new(false, 3);
        for p in [10, 11, 12] {
            asks.apply(p, Decimal::ONE);
        }
        assert!(!asks.truncated());
        asks.apply(9, Decimal::ONE);
        assert_eq!(prices(&asks), [9, 10, 11]);
        assert!(asks.truncated());
        // 12 was dropped: beyond 11 nothing is known any more.
        assert_eq!(asks.apply(12, Decimal::ZERO), LevelChange::Beyond);
        assert_eq!(asks.apply(13, Decimal::ONE), LevelChange::Beyond);
        // The worst known level itself is still tracked.
        assert_eq!(
            asks.apply(11, Decimal::TWO),
            LevelChange::Applied { top: false }
        );
        // Inserting past a full side at the very end is beyond, not a new worst.
        asks.apply(10, Decimal::ZERO);
        assert_eq!(prices(&asks), [9, 11]);
        assert_eq!(asks.apply(12, Decimal::ONE), LevelChange::Beyond);
    }

    #[test]
    fn a_snapshot_as_long_as_its_limit_is_cut_at_its_last_level() {
        let mut bids = Side::new(true, 100);
        bids.load(&[lv(9, 1), lv(8, 1), lv(7, 1)], true);
        assert!(bids.truncated());
        assert_eq!(bids.apply(6, Decimal::ONE), LevelChange::Beyond);
        bids.load(&[lv(9, 1), lv(8, 1), lv(7, 1)], false);
        assert!(!bids.truncated());
        assert_eq!(
            bids.apply(6, Decimal::ONE),
            LevelChange::Applied { top: false }
        );
        // Longer than the side holds: cut at the depth kept.
        let mut small = Side::new(true, 2);
        small.load(&[lv(9, 1), lv(8, 1), lv(7, 1)], false);
        assert_eq!(prices(&small), [9, 8]);
        assert!(small.truncated());
    }
}
