//! A synthetic order book per symbol that stays consistent with the trade tape: every
//! aggregate trade at price `p` leaves `p` as the best ask (buyer taker) or best bid
//! (seller taker), consumed levels disappear, and makers add, change and cancel
//! levels. Each aggregate trade is one book update with its own update id, so diff
//! depth `U`/`u`, partial depth `lastUpdateId`, bookTicker `u` and the REST snapshot's
//! `lastUpdateId` all come from one sequence, as on Binance.
//!
//! Runs on: the simulator core (pure, no I/O). In: trades and a seeded random source.
//! Out: the list of changed levels of each update and book snapshots.

use std::collections::VecDeque;

use super::market::Rng;

/// Levels the book keeps on each side after every update; 100 is the default depth of
/// `GET /api/v3/depth`.
pub const BOOK_TARGET_LEVELS: usize = 100;
/// Levels beyond this are removed (and reported with quantity zero), so a book stays
/// small however far the price runs.
pub const BOOK_MAX_LEVELS: usize = 200;
/// Out of this many updates, one removes a resting level (a cancel), one inserts a new
/// level between two others; the rest change a quantity.
const MAKER_EVENT_ODDS: u64 = 8;

/// One price level, in units of 10^-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookLevel {
    pub price: i64,
    pub qty: i64,
}

/// One changed level of an update; `qty == 0` removes the level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookChange {
    pub is_bid: bool,
    pub price: i64,
    pub qty: i64,
}

/// Best bid and ask; what `@bookTicker` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Top {
    pub bid: i64,
    pub bid_qty: i64,
    pub ask: i64,
    pub ask_qty: i64,
}

#[derive(Debug, Clone)]
pub struct Book {
    /// Best (highest) first.
    bids: VecDeque<BookLevel>,
    /// Best (lowest) first.
    asks: VecDeque<BookLevel>,
    update_id: u64,
    tick: i64,
    step: i64,
    /// Levels sit 1..=gap_max ticks apart, scaled to the typical price move so that a
    /// trade consumes a few levels, not hundreds.
    gap_max_ticks: i64,
    level_qty_max_steps: i64,
}

impl Book {
    pub fn new(
        mid: i64,
        tick: i64,
        step: i64,
        gap_max_ticks: i64,
        level_qty_max_steps: i64,
        first_update_id: u64,
        rng: &mut Rng,
    ) -> Book {
        let mut book = Book {
            bids: VecDeque::with_capacity(BOOK_MAX_LEVELS + 4),
            asks: VecDeque::with_capacity(BOOK_MAX_LEVELS + 4),
            update_id: first_update_id,
            tick,
            step,
            gap_max_ticks: gap_max_ticks.max(1),
            level_qty_max_steps: level_qty_max_steps.max(1),
        };
        let bid_qty = book.random_qty(rng);
        let ask_qty = book.random_qty(rng);
        book.bids.push_back(BookLevel {
            price: mid.max(tick),
            qty: bid_qty,
        });
        book.asks.push_back(BookLevel {
            price: mid.max(tick) + tick,
            qty: ask_qty,
        });
        let mut ignored = Vec::new();
        book.refill(rng, &mut ignored);
        book
    }

    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    pub fn top(&self) -> Top {
        let bid = self
            .bids
            .front()
            .copied()
            .unwrap_or(BookLevel { price: 0, qty: 0 });
        let ask = self
            .asks
            .front()
            .copied()
            .unwrap_or(BookLevel { price: 0, qty: 0 });
        Top {
            bid: bid.price,
            bid_qty: bid.qty,
            ask: ask.price,
            ask_qty: ask.qty,
        }
    }

    pub fn bids(&self) -> impl Iterator<Item = &BookLevel> {
        self.bids.iter()
    }

    pub fn asks(&self) -> impl Iterator<Item = &BookLevel> {
        self.asks.iter()
    }

    fn random_qty(&self, rng: &mut Rng) -> i64 {
        (1 + rng.below(self.level_qty_max_steps as u64) as i64) * self.step
    }

    fn random_gap(&self, rng: &mut Rng) -> i64 {
        (1 + rng.below(self.gap_max_ticks as u64) as i64) * self.tick
    }

    /// Applies one aggregate trade at `price` and the maker activity around it as one
    /// update; `changes` receives the changed levels.
    pub fn apply_trade(
        &mut self,
        price: i64,
        taker_is_buyer: bool,
        rng: &mut Rng,
        changes: &mut Vec<BookChange>,
    ) {
        changes.clear();
        let residual = self.random_qty(rng);
        let spread = self.random_gap(rng);
        if taker_is_buyer {
            take_side(&mut self.asks, false, price, residual, changes, |l| {
                l < price
            });
            clear_crossing(&mut self.bids, true, changes, |l| l >= price);
            let far = self.gap_max_ticks * self.tick;
            if self.bids.front().is_none_or(|l| price - l.price > far) && price - spread > 0 {
                let qty = self.random_qty(rng);
                self.bids.push_front(BookLevel {
                    price: price - spread,
                    qty,
                });
                changes.push(BookChange {
                    is_bid: true,
                    price: price - spread,
                    qty,
                });
            }
        } else {
            take_side(&mut self.bids, true, price, residual, changes, |l| {
                l > price
            });
            clear_crossing(&mut self.asks, false, changes, |l| l <= price);
            let far = self.gap_max_ticks * self.tick;
            if self.asks.front().is_none_or(|l| l.price - price > far) {
                let qty = self.random_qty(rng);
                self.asks.push_front(BookLevel {
                    price: price + spread,
                    qty,
                });
                changes.push(BookChange {
                    is_bid: false,
                    price: price + spread,
                    qty,
                });
            }
        }
        self.maker_event(rng, changes);
        self.refill(rng, changes);
        self.update_id += 1;
    }

    /// A resting order changes: a quantity moves, a level is cancelled or a new level
    /// appears in a gap. The best level of each side is only ever resized, so the book
    /// never crosses.
    fn maker_event(&mut self, rng: &mut Rng, changes: &mut Vec<BookChange>) {
        let is_bid = rng.below(2) == 0;
        let qty = self.random_qty(rng);
        let roll = rng.below(MAKER_EVENT_ODDS);
        let pick = rng.next_u64();
        let tick = self.tick;
        let side = if is_bid {
            &mut self.bids
        } else {
            &mut self.asks
        };
        if side.is_empty() {
            return;
        }
        let index = (pick % side.len() as u64) as usize;
        match roll {
            0 if index > 0 => {
                if let Some(level) = side.remove(index) {
                    changes.push(BookChange {
                        is_bid,
                        price: level.price,
                        qty: 0,
                    });
                }
            }
            1 if index + 1 < side.len() => {
                let (near, far) = (side[index].price, side[index + 1].price);
                if (near - far).abs() > tick {
                    let price = if is_bid { near - tick } else { near + tick };
                    side.insert(index + 1, BookLevel { price, qty });
                    changes.push(BookChange { is_bid, price, qty });
                }
            }
            _ => {
                side[index].qty = qty;
                changes.push(BookChange {
                    is_bid,
                    price: side[index].price,
                    qty,
                });
            }
        }
    }

    /// Brings each side back to [`BOOK_TARGET_LEVELS`] and trims it to
    /// [`BOOK_MAX_LEVELS`].
    fn refill(&mut self, rng: &mut Rng, changes: &mut Vec<BookChange>) {
        while self.bids.len() < BOOK_TARGET_LEVELS {
            let last = self.bids.back().map_or(self.tick, |l| l.price);
            let price = last - self.random_gap(rng);
            if price <= 0 {
                break;
            }
            let qty = self.random_qty(rng);
            self.bids.push_back(BookLevel { price, qty });
            changes.push(BookChange {
                is_bid: true,
                price,
                qty,
            });
        }
        while self.asks.len() < BOOK_TARGET_LEVELS {
            let last = self.asks.back().map_or(self.tick, |l| l.price);
            let price = last + self.random_gap(rng);
            let qty = self.random_qty(rng);
            self.asks.push_back(BookLevel { price, qty });
            changes.push(BookChange {
                is_bid: false,
                price,
                qty,
            });
        }
        for (side, is_bid) in [(&mut self.bids, true), (&mut self.asks, false)] {
            while side.len() > BOOK_MAX_LEVELS {
                if let Some(level) = side.pop_back() {
                    changes.push(BookChange {
                        is_bid,
                        price: level.price,
                        qty: 0,
                    });
                }
            }
        }
    }
}

/// The taker side: levels better than `price` were consumed; `price` keeps a residual.
fn take_side(
    side: &mut VecDeque<BookLevel>,
    is_bid: bool,
    price: i64,
    residual: i64,
    changes: &mut Vec<BookChange>,
    consumed: impl Fn(i64) -> bool,
) {
    while let Some(level) = side.front().copied() {
        if !consumed(level.price) {
            break;
        }
        side.pop_front();
        changes.push(BookChange {
            is_bid,
            price: level.price,
            qty: 0,
        });
    }
    match side.front_mut() {
        Some(level) if level.price == price => level.qty = residual,
        _ => side.push_front(BookLevel {
            price,
            qty: residual,
        }),
    }
    changes.push(BookChange {
        is_bid,
        price,
        qty: residual,
    });
}

/// The other side must stay strictly behind the trade price.
fn clear_crossing(
    side: &mut VecDeque<BookLevel>,
    is_bid: bool,
    changes: &mut Vec<BookChange>,
    crosses: impl Fn(i64) -> bool,
) {
    while let Some(level) = side.front().copied() {
        if !crosses(level.price) {
            break;
        }
        side.pop_front();
        changes.push(BookChange {
            is_bid,
            price: level.price,
            qty: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sorted(book: &Book) {
        let bids: Vec<i64> = book.bids().map(|l| l.price).collect();
        let asks: Vec<i64> = book.asks().map(|l| l.price).collect();
        assert!(
            bids.windows(2).all(|w| w[0] > w[1]),
            "bids sorted: {bids:?}"
        );
        assert!(
            asks.windows(2).all(|w| w[0] < w[1]),
            "asks sorted: {asks:?}"
        );
        assert!(bids[0] < asks[0], "book crossed");
        assert!(bids.len() <= BOOK_MAX_LEVELS && asks.len() <= BOOK_MAX_LEVELS);
        assert!(book.bids().chain(book.asks()).all(|l| l.qty > 0));
    }

    #[test]
    fn trades_set_the_touch_and_changes_replay_the_book() {
        let mut rng = Rng::new(7);
        let mut book = Book::new(1_000_000, 100, 10, 5, 50, 1, &mut rng);
        check_sorted(&book);
        // A mirror built only from the reported changes must equal the book.
        let mut mirror_bids: std::collections::BTreeMap<i64, i64> =
            book.bids().map(|l| (l.price, l.qty)).collect();
        let mut mirror_asks: std::collections::BTreeMap<i64, i64> =
            book.asks().map(|l| (l.price, l.qty)).collect();
        let mut changes = Vec::new();
        let mut price = 1_000_000;
        for i in 0..5_000 {
            let buyer = rng.below(2) == 0;
            price += (rng.below(11) as i64 - 5) * 100;
            let before = book.update_id();
            book.apply_trade(price, buyer, &mut rng, &mut changes);
            assert_eq!(book.update_id(), before + 1);
            check_sorted(&book);
            let top = book.top();
            if buyer {
                assert_eq!(top.ask, price, "trade {i}");
            } else {
                assert_eq!(top.bid, price, "trade {i}");
            }
            for c in &changes {
                let side = if c.is_bid {
                    &mut mirror_bids
                } else {
                    &mut mirror_asks
                };
                if c.qty == 0 {
                    side.remove(&c.price);
                } else {
                    side.insert(c.price, c.qty);
                }
            }
            let bids: Vec<(i64, i64)> = book.bids().map(|l| (l.price, l.qty)).collect();
            let mirror: Vec<(i64, i64)> = mirror_bids.iter().rev().map(|(p, q)| (*p, *q)).collect();
            assert_eq!(bids, mirror, "bids after trade {i}");
            let asks: Vec<(i64, i64)> = book.asks().map(|l| (l.price, l.qty)).collect();
            let mirror: Vec<(i64, i64)> = mirror_asks.iter().map(|(p, q)| (*p, *q)).collect();
            assert_eq!(asks, mirror, "asks after trade {i}");
        }
    }
}
