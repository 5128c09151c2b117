use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::*;

fn sym() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

/// Prices in cents: 2 decimals, as `Level`s carry them.
fn level(cents: i64, qty: i64) -> Level {
    Level {
        price: Decimal::new(cents, 2),
        quantity: Decimal::new(qty, 3),
    }
}

/// The exchange's side of the test: a book and the diff events that change it, each
/// covering one or more update ids.
struct Exchange {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    update_id: u64,
    rng: u64,
}

struct Event {
    first: u64,
    last: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

impl Exchange {
    fn new(seed: u64) -> Exchange {
        let mut x = Exchange {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            update_id: 1000,
            rng: seed | 1,
        };
        for i in 1..=30 {
            x.bids.insert(10_000 - i * 5, i * 7);
            x.asks.insert(10_000 + i * 5, i * 11);
        }
        x
    }

    fn next(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// One event: a few level changes on each side that never cross the book.
    fn step(&mut self) -> Event {
        let first = self.update_id + 1;
        self.update_id += 1 + self.next(3);
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for _ in 0..1 + self.next(4) {
            let bid = self.next(2) == 0;
            let best_ask = *self.asks.keys().next().unwrap_or(&20_000);
            let best_bid = *self.bids.keys().next_back().unwrap_or(&1);
            let qty = if self.next(4) == 0 {
                0
            } else {
                1 + self.next(500) as i64
            };
            if bid {
                let price = best_ask - 1 - self.next(200) as i64;
                apply(&mut self.bids, price, qty);
                bids.push(level(price, qty));
            } else {
                let price = best_bid + 1 + self.next(200) as i64;
                apply(&mut self.asks, price, qty);
                asks.push(level(price, qty));
            }
        }
        Event {
            first,
            last: self.update_id,
            bids,
            asks,
        }
    }

    fn snapshot(&self, limit: u32) -> Snapshot {
        let lv = |(p, q): (&i64, &i64)| BookLevel {
            price: price_units(Decimal::new(*p, 2)).unwrap(),
            qty: Decimal::new(*q, 3),
        };
        Snapshot {
            symbol: sym(),
            last_update_id: self.update_id,
            bids: self
                .bids
                .iter()
                .rev()
                .take(limit as usize)
                .map(lv)
                .collect(),
            asks: self.asks.iter().take(limit as usize).map(lv).collect(),
            limit,
        }
    }
}

fn apply(side: &mut BTreeMap<i64, i64>, price: i64, qty: i64) {
    if qty == 0 {
        side.remove(&price);
    } else {
        side.insert(price, qty);
    }
}

fn assert_same(book: &LocalBook, x: &Exchange) {
    let want = x.snapshot(u32::MAX);
    let bids: Vec<BookLevel> = book.bids().iter_best_first().copied().collect();
    let asks: Vec<BookLevel> = book.asks().iter_best_first().copied().collect();
    assert_eq!(book.last_update_id(), x.update_id);
    assert_eq!(bids, want.bids, "bids at {}", x.update_id);
    assert_eq!(asks, want.asks, "asks at {}", x.update_id);
}

fn feed(book: &mut LocalBook, e: &Event, now: u64) -> Applied {
    book.on_diff(e.first, e.last, 7, &e.bids, &e.asks, now)
}

/// A book of `max` levels a side (needing `min`), synchronised from `x` with a
/// snapshot of `limit`.
fn synced(x: &mut Exchange, max: usize, min: usize, limit: u32) -> LocalBook {
    let mut book = LocalBook::new(sym(), max, min, 0);
    feed(&mut book, &x.step(), 0);
    book.snapshot_asked();
    book.on_snapshot(&x.snapshot(limit), 0);
    assert!(book.is_valid());
    book
}

/// One diff event of a single level, right after the book's last update.
fn one_level(
    book: &mut LocalBook,
    bid: bool,
    price: Decimal,
    quantity: Decimal,
    now: u64,
) -> Applied {
    let id = book.last_update_id() + 1;
    let level = [Level { price, quantity }];
    let (bids, asks): (&[Level], &[Level]) = if bid { (&level, &[]) } else { (&[], &level) };
    book.on_diff(id, id, 0, bids, asks, now)
}

#[test]
fn prices_become_exact_units_or_nothing() {
    assert_eq!(price_units(Decimal::new(12345, 2)), Some(12_345_000_000));
    assert_eq!(price_units("0.00000001".parse().unwrap()), Some(1));
    assert_eq!(price_units("0.000000010".parse().unwrap()), Some(1));
    assert_eq!(price_units("0.000000011".parse().unwrap()), None);
    assert_eq!(price_units("-1".parse().unwrap()), None);
    assert_eq!(price_units("100000000000000".parse().unwrap()), None);
    assert_eq!(units_price(150_000_000).to_string(), "1.50000000");
    assert_eq!(snapshot_limit(1), (100, 5));
    assert_eq!(snapshot_limit(1000), (1000, 50));
    assert_eq!(snapshot_limit(1001), (5000, 250));
}

#[test]
fn buffered_events_older_than_the_snapshot_are_dropped_and_the_rest_applied() {
    let mut x = Exchange::new(3);
    let mut book = LocalBook::new(sym(), 1000, 10, 0);
    assert!(
        !book.wants_snapshot(),
        "asks only once an event is buffered"
    );
    let early: Vec<Event> = (0..5).map(|_| x.step()).collect();
    for e in &early {
        assert_eq!(feed(&mut book, e, 1), Applied::Buffered);
    }
    assert!(book.wants_snapshot());
    book.snapshot_asked();
    assert!(!book.wants_snapshot());
    // The snapshot is taken after two more events, which are buffered too.
    let later: Vec<Event> = (0..2).map(|_| x.step()).collect();
    let snap = x.snapshot(1000);
    let after: Vec<Event> = (0..3).map(|_| x.step()).collect();
    for e in later.iter().chain(&after) {
        feed(&mut book, e, 2);
    }
    assert_eq!(
        book.on_snapshot(&snap, 1_000),
        SnapshotOutcome::Synced { invalid_ns: 1_000 }
    );
    assert!(book.is_valid());
    assert_same(&book, &x);
    for _ in 0..500 {
        let e = x.step();
        assert!(matches!(feed(&mut book, &e, 3), Applied::Live { .. }));
        assert_same(&book, &x);
    }
}

#[test]
fn a_snapshot_older_than_the_buffer_is_refused() {
    let mut x = Exchange::new(5);
    let mut book = LocalBook::new(sym(), 1000, 10, 0);
    let snap = x.snapshot(1000);
    x.step(); // never seen: the stream started after it
    let e = x.step();
    feed(&mut book, &e, 1);
    book.snapshot_asked();
    assert_eq!(book.on_snapshot(&snap, 2), SnapshotOutcome::TooOld);
    assert!(book.wants_snapshot(), "asks again");
    book.snapshot_asked();
    assert_eq!(
        book.on_snapshot(&x.snapshot(1000), 3),
        SnapshotOutcome::Synced { invalid_ns: 3 }
    );
    assert_same(&book, &x);
    // A late answer to a request no longer waited for changes nothing.
    assert_eq!(book.on_snapshot(&snap, 4), SnapshotOutcome::Unwanted);
    assert_same(&book, &x);
}

#[test]
fn a_skipped_event_invalidates_and_repeats_are_skipped() {
    let mut x = Exchange::new(9);
    let mut book = synced(&mut x, 1000, 10, 1000);
    let e = x.step();
    assert!(matches!(feed(&mut book, &e, 1), Applied::Live { .. }));
    assert_eq!(feed(&mut book, &e, 1), Applied::Repeat);
    x.step(); // lost
    let e = x.step();
    assert_eq!(feed(&mut book, &e, 50), Applied::Invalidated(Resync::Gap));
    assert!(!book.is_valid());
    assert_eq!(book.invalid_since_ns(), Some(50));
    assert!(book.wants_snapshot());
    book.snapshot_asked();
    let e = x.step();
    assert_eq!(feed(&mut book, &e, 60), Applied::Buffered);
    assert_eq!(
        book.on_snapshot(&x.snapshot(1000), 80),
        SnapshotOutcome::Synced { invalid_ns: 30 }
    );
    assert_same(&book, &x);
}

#[test]
fn random_losses_and_repeats_never_leave_a_wrong_valid_book() {
    for seed in 1..20u64 {
        let mut x = Exchange::new(seed * 7919);
        let mut book = LocalBook::new(sym(), 1000, 10, 0);
        let mut valid_checks = 0;
        let mut previous: Option<Event> = None;
        for step in 0..3_000u64 {
            let e = x.step();
            match x.next(40) {
                0 => continue, // lost
                1 => {
                    if let Some(p) = &previous {
                        feed(&mut book, p, step); // repeated
                    }
                }
                _ => {}
            }
            feed(&mut book, &e, step);
            if book.wants_snapshot() && x.next(3) == 0 {
                book.snapshot_asked();
                // Answered now or after a few more events.
                let snap = x.snapshot(1000);
                for _ in 0..x.next(4) {
                    let e = x.step();
                    feed(&mut book, &e, step);
                }
                book.on_snapshot(&snap, step);
            }
            if book.is_valid() {
                assert_same(&book, &x);
                valid_checks += 1;
            }
            previous = Some(e);
        }
        assert!(
            valid_checks > 1_000,
            "seed {seed}: valid only {valid_checks} times"
        );
    }
}

#[test]
fn a_cut_book_refills_when_its_top_runs_short_and_a_crossed_one_resyncs() {
    let mut x = Exchange::new(11);
    // Keeps 12 levels a side, needs 10: the exchange has 30, so both sides are cut.
    let mut book = synced(&mut x, 12, 10, 100);
    assert!(book.bids().truncated() && book.asks().truncated());
    // Remove bids from the top: the third removal leaves 9 of the 10 needed.
    for i in 0..3 {
        let l = *book.bids().iter_best_first().next().unwrap();
        let outcome = one_level(&mut book, true, units_price(l.price), Decimal::ZERO, 10 + i);
        if i < 2 {
            assert!(
                matches!(outcome, Applied::Live { top: true }),
                "{outcome:?}"
            );
        } else {
            assert_eq!(outcome, Applied::Invalidated(Resync::Refill));
        }
    }
    assert!(!book.is_valid());

    // A bid at the best ask crosses the book.
    let mut book = synced(&mut x, 1000, 10, 1000);
    let ask = units_price(book.asks().best().unwrap().price);
    assert_eq!(
        one_level(&mut book, true, ask, Decimal::ONE, 5),
        Applied::Invalidated(Resync::Crossed)
    );
}

#[test]
fn a_price_finer_than_eight_decimals_resyncs_rather_than_rounds() {
    let mut x = Exchange::new(13);
    let mut book = synced(&mut x, 1000, 10, 1000);
    let odd = "1.000000001".parse().unwrap();
    assert_eq!(
        one_level(&mut book, true, odd, Decimal::ONE, 1),
        Applied::Invalidated(Resync::BadPrice)
    );
}

#[test]
fn the_buffer_is_bounded() {
    let mut x = Exchange::new(17);
    let mut book = LocalBook::new(sym(), 1000, 10, 0);
    for _ in 0..MAX_BUFFERED_EVENTS + 10 {
        feed(&mut book, &x.step(), 0);
    }
    assert_eq!(book.buffer_drops, 10);
    book.snapshot_asked();
    book.on_snapshot(&x.snapshot(1000), 0);
    assert_same(&book, &x);
}

#[test]
fn a_crossed_snapshot_is_refused_even_with_no_event_after_it() {
    // Only events older than the snapshot buffered: the snapshot alone is the book,
    // and it is checked like any other.
    let mut x = Exchange::new(19);
    let mut book = LocalBook::new(sym(), 1000, 1, 0);
    feed(&mut book, &x.step(), 0);
    book.snapshot_asked();
    let units = |cents: i64| cents * 1_000_000;
    let crossed = Snapshot {
        symbol: sym(),
        last_update_id: u64::MAX / 2,
        bids: vec![BookLevel {
            price: units(10_100),
            qty: Decimal::ONE,
        }],
        asks: vec![BookLevel {
            price: units(10_000),
            qty: Decimal::ONE,
        }],
        limit: 1000,
    };
    assert_eq!(
        book.on_snapshot(&crossed, 0),
        SnapshotOutcome::Invalidated(Resync::Crossed)
    );
    assert!(!book.is_valid());
}
