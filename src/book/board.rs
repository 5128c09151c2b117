//! The board: the latest published view of every local book, for the cores that show
//! or publish them (the dashboard, the Redis publisher).
//!
//! Runs on: written by the shard that owns each book, at most once per publication
//! period; read by the dashboard core and the Redis publisher. One short lock per
//! access guards an `Arc` swap, never a copy of levels: the shard builds the view, the
//! readers clone the pointer.

use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;

use super::{units_price, BookLevel, LocalBook};
use crate::market::Symbol;

/// One published book: its top levels and what they say.
#[derive(Clone, Debug, PartialEq)]
pub struct BookView {
    pub symbol: Symbol,
    /// `u` of the last event applied.
    pub last_update_id: u64,
    /// Exchange time of the last event applied, µs (0 before any).
    pub event_time_us: i64,
    /// False while the book synchronises: the levels are the last known, not current.
    pub valid: bool,
    /// Best first, at most the configured top.
    pub bids: Vec<BookLevel>,
    pub asks: Vec<BookLevel>,
}

/// What the top levels say: the features the signal rules and the page use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    pub spread: Decimal,
    pub mid: Decimal,
    /// Mid weighted by the opposite side's quantity at the top:
    /// `(bid·ask_qty + ask·bid_qty) / (bid_qty + ask_qty)`.
    pub microprice: Decimal,
    /// `(bid qty − ask qty) / (bid qty + ask qty)` over the published top levels, in
    /// [−1, 1]: positive when buyers rest more.
    pub imbalance: f64,
}

impl Features {
    /// The features of the levels given, best first; `None` when a side is empty.
    pub fn of<'a>(
        bids: impl Iterator<Item = &'a BookLevel>,
        asks: impl Iterator<Item = &'a BookLevel>,
    ) -> Option<Features> {
        let (mut bids, mut asks) = (bids.peekable(), asks.peekable());
        let (b, a) = (**bids.peek()?, **asks.peek()?);
        let (bid, ask) = (units_price(b.price), units_price(a.price));
        let top_qty = b.qty + a.qty;
        let microprice = if top_qty.is_zero() {
            (bid + ask) / Decimal::TWO
        } else {
            ((bid * a.qty + ask * b.qty) / top_qty).round_dp(8)
        };
        let bq: Decimal = bids.map(|l| l.qty).sum();
        let aq: Decimal = asks.map(|l| l.qty).sum();
        let total = bq + aq;
        let imbalance = if total.is_zero() {
            0.0
        } else {
            use rust_decimal::prelude::ToPrimitive;
            ((bq - aq) / total).to_f64().unwrap_or(0.0)
        };
        Some(Features {
            spread: ask - bid,
            mid: ((bid + ask) / Decimal::TWO).normalize(),
            microprice: microprice.normalize(),
            imbalance,
        })
    }
}

impl BookView {
    /// The top `depth` levels of `book`.
    pub fn of(book: &LocalBook, depth: usize) -> BookView {
        BookView {
            symbol: book.symbol,
            last_update_id: book.last_update_id(),
            event_time_us: book.event_time_us(),
            valid: book.is_valid(),
            bids: book.bids().iter_best_first().take(depth).copied().collect(),
            asks: book.asks().iter_best_first().take(depth).copied().collect(),
        }
    }

    /// Spread, mid, microprice and imbalance, when both sides have a level.
    pub fn features(&self) -> Option<Features> {
        Features::of(self.bids.iter(), self.asks.iter())
    }

    /// The view as one JSON object (the `book` message of the dashboard, the Redis
    /// channel's payload and `/api/book`'s answer): levels as Binance writes them,
    /// `[price, quantity]` strings, best first. `depth` cuts it shorter.
    pub fn write_json(&self, out: &mut Vec<u8>, depth: usize) {
        use std::io::Write;
        let _ = write!(
            out,
            r#"{{"type":"book","symbol":"{}","last_update_id":{},"event_time":{},"valid":{}"#,
            self.symbol,
            self.last_update_id,
            self.event_time_us / 1000,
            self.valid
        );
        write_sides(out, self.bids.iter(), self.asks.iter(), depth);
        match self.features() {
            Some(f) => {
                let _ = write!(
                    out,
                    r#","spread":"{}","mid":"{}","microprice":"{}","imbalance":{:.6}}}"#,
                    f.spread, f.mid, f.microprice, f.imbalance
                );
            }
            None => out.extend_from_slice(
                br#","spread":null,"mid":null,"microprice":null,"imbalance":null}"#,
            ),
        }
    }
}

/// `,"bids":[…],"asks":[…]`: up to `depth` levels a side, best first, as Binance writes
/// them (`[price, quantity]` strings, prices with 8 decimals).
pub fn write_sides<'a>(
    out: &mut Vec<u8>,
    bids: impl Iterator<Item = &'a BookLevel>,
    asks: impl Iterator<Item = &'a BookLevel>,
    depth: usize,
) {
    use std::io::Write;
    let bids: &mut dyn Iterator<Item = &'a BookLevel> = &mut bids.take(depth);
    let asks: &mut dyn Iterator<Item = &'a BookLevel> = &mut asks.take(depth);
    for (name, side) in [("bids", bids), ("asks", asks)] {
        let _ = write!(out, r#","{name}":["#);
        for (i, l) in side.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, r#"["{}","{}"]"#, units_price(l.price), l.qty);
        }
        out.push(b']');
    }
}

/// The latest view of each book, by symbol.
#[derive(Debug, Default)]
pub struct Board {
    slots: Vec<(Symbol, Mutex<Option<Arc<BookView>>>)>,
}

impl Board {
    /// A board for the books of `symbols`.
    pub fn new(symbols: &[Symbol]) -> Board {
        Board {
            slots: symbols.iter().map(|s| (*s, Mutex::new(None))).collect(),
        }
    }

    /// The symbols with a book.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.slots.iter().map(|(s, _)| *s)
    }

    pub fn has(&self, symbol: Symbol) -> bool {
        self.slots.iter().any(|(s, _)| *s == symbol)
    }

    /// Publishes `view` as its symbol's latest.
    pub fn publish(&self, view: Arc<BookView>) {
        if let Some((_, slot)) = self.slots.iter().find(|(s, _)| *s == view.symbol) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
        }
    }

    /// The latest view of `symbol`, if one was published.
    pub fn latest(&self, symbol: Symbol) -> Option<Arc<BookView>> {
        let (_, slot) = self.slots.iter().find(|(s, _)| *s == symbol)?;
        slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(price: i64, qty: &str) -> BookLevel {
        BookLevel {
            price,
            qty: qty.parse().unwrap(),
        }
    }

    #[test]
    fn features_and_json_of_a_view() {
        let view = BookView {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            last_update_id: 42,
            event_time_us: 1_700_000_000_123_456,
            valid: true,
            bids: vec![lv(10_000_000_000, "3"), lv(9_900_000_000, "1")],
            asks: vec![lv(10_100_000_000, "1.000")],
        };
        let f = view.features().unwrap();
        assert_eq!(f.spread.to_string(), "1.00000000");
        assert_eq!(f.mid.to_string(), "100.5");
        // (100·1 + 101·3) / 4 = 100.75: the price leans to the ask, buyers rest more.
        assert_eq!(f.microprice.to_string(), "100.75");
        assert!((f.imbalance - 0.6).abs() < 1e-12);
        let mut out = Vec::new();
        view.write_json(&mut out, 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["last_update_id"], 42);
        assert_eq!(v["event_time"], 1_700_000_000_123i64);
        assert_eq!(v["bids"], serde_json::json!([["100.00000000", "3"]]));
        assert_eq!(v["asks"], serde_json::json!([["101.00000000", "1.000"]]));
        assert_eq!(v["microprice"], "100.75");
        let empty = BookView {
            bids: Vec::new(),
            ..view
        };
        assert!(empty.features().is_none());
        let mut out = Vec::new();
        empty.write_json(&mut out, 10);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["mid"].is_null());
    }

    #[test]
    fn the_board_keeps_the_latest_view_per_symbol() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let board = Board::new(&[btc]);
        assert!(board.latest(btc).is_none());
        let view = |id| BookView {
            symbol: btc,
            last_update_id: id,
            event_time_us: 0,
            valid: false,
            bids: Vec::new(),
            asks: Vec::new(),
        };
        board.publish(Arc::new(view(1)));
        board.publish(Arc::new(view(2)));
        assert_eq!(board.latest(btc).unwrap().last_update_id, 2);
        // A symbol without a book is ignored.
        board.publish(Arc::new(BookView {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            ..view(3)
        }));
        assert!(!board.has(Symbol::new("ETHUSDT").unwrap()));
    }
}
