//! The books of a replay: rebuilt from a capture's depth snapshots
//! (`{"event":"depth_snapshot",…}` markers, [`crate::capture::snapshots`]) and the diff
//! depth frames as they are sent, so `GET /api/v3/depth` answers what the exchange
//! would have answered at that point of the capture.
//!
//! Runs on: the simulator core (pure: JSON in, JSON out). A book is kept with the
//! engine's own synchronisation ([`crate::book::LocalBook`]): a capture that lost diffs
//! (a reconnect) leaves it invalid until the next snapshot marker, and then the depth
//! endpoint answers an error rather than a wrong book.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::book::LocalBook;
use crate::market::{Level, Symbol};
use crate::message::rest::BookRequest;

/// Levels kept per side: Binance's deepest snapshot.
const MAX_LEVELS: usize = super::rest::DEPTH_MAX_LIMIT;

#[derive(Deserialize)]
struct Note<'a> {
    event: &'a str,
    symbol: Option<&'a str>,
    limit: Option<u32>,
    answer: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Diff<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "U")]
    first: u64,
    #[serde(rename = "u")]
    last: u64,
    #[serde(rename = "b", borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(rename = "a", borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// The replay's books, by symbol.
#[derive(Default)]
pub struct ReplayBooks {
    books: HashMap<Symbol, LocalBook>,
    levels: (Vec<Level>, Vec<Level>),
}

impl ReplayBooks {
    /// A capture note: a depth snapshot (re)starts its symbol's book.
    pub fn on_note(&mut self, text: &str) {
        let Ok(note) = serde_json::from_str::<Note<'_>>(text) else {
            return;
        };
        let (Some(symbol), Some(answer)) = (note.symbol, note.answer) else {
            return;
        };
        if note.event != "depth_snapshot" {
            return;
        }
        let Ok(symbol) = Symbol::new(symbol) else {
            return;
        };
        let request = BookRequest {
            symbol,
            limit: note
                .limit
                .unwrap_or(crate::capture::snapshots::SNAPSHOT_LIMIT),
            weight: 0,
        };
        let Ok(snapshot) = crate::backfill::depth::parse(&answer.to_string(), &request) else {
            tracing::warn!(%symbol, "replay: a depth snapshot of the capture does not read; its book stays as it was");
            return;
        };
        let mut book = LocalBook::new(symbol, MAX_LEVELS, 0, 0);
        book.snapshot_asked();
        book.on_snapshot(&snapshot, 0);
        self.books.insert(symbol, book);
    }

    /// A frame being sent on `stream`: a diff depth event moves its symbol's book.
    pub fn on_frame(&mut self, stream: &str, data: &str) {
        if self.books.is_empty() {
            return;
        }
        if crate::market::diff_depth_stream_symbol(stream).is_none() {
            return;
        }
        let Ok(diff) = serde_json::from_str::<Diff<'_>>(data) else {
            return;
        };
        let Ok(symbol) = Symbol::new(diff.symbol) else {
            return;
        };
        let Some(book) = self.books.get_mut(&symbol) else {
            return;
        };
        let read = |levels: &[[&str; 2]], out: &mut Vec<Level>| {
            out.clear();
            for [p, q] in levels {
                match (p.parse::<Decimal>(), q.parse::<Decimal>()) {
                    (Ok(price), Ok(quantity)) => out.push(Level { price, quantity }),
                    _ => return false,
                }
            }
            true
        };
        let (bids, asks) = &mut self.levels;
        if !(read(&diff.bids, bids) && read(&diff.asks, asks)) {
            // A damaged event: the book cannot follow it.
            book.invalidate(0);
            return;
        }
        book.on_diff(diff.first, diff.last, diff.event_time * 1000, bids, asks, 0);
    }

    /// `GET /api/v3/depth` of the replay: `Some(Ok(body))` from a valid book,
    /// `Some(Err(why))` for a symbol whose book is not known or not valid at this point
    /// of the capture, `None` for a symbol the capture has no book of.
    pub fn depth(&self, symbol: Symbol, limit: usize) -> Option<Result<Vec<u8>, String>> {
        let book = self.books.get(&symbol)?;
        if !book.is_valid() {
            return Some(Err(format!(
                "the capture lost {symbol}'s diffs here; its book returns with the next snapshot"
            )));
        }
        let mut out = Vec::with_capacity(64 + 48 * limit.min(book.bids().len()) * 2);
        use std::io::Write;
        let _ = write!(out, r#"{{"lastUpdateId":{}"#, book.last_update_id());
        crate::book::board::write_sides(
            &mut out,
            book.bids().iter_best_first(),
            book.asks().iter_best_first(),
            limit,
        );
        out.push(b'}');
        Some(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_note_and_the_diffs_sent_after_it_make_the_depth_answer() {
        let mut books = ReplayBooks::default();
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert!(books.depth(btc, 10).is_none());
        books.on_note(
            r#"{"event":"depth_snapshot","symbol":"BTCUSDT","limit":1000,"answer":{"lastUpdateId":10,"bids":[["100.00","1.5"]],"asks":[["101.00","2"]]}}"#,
        );
        // A diff already in the snapshot, then the next one.
        let diff = |u0: u64, u1: u64, bid: &str| {
            format!(
                r#"{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{u0},"u":{u1},"b":[["99.50","{bid}"]],"a":[]}}"#
            )
        };
        books.on_frame("btcusdt@depth@100ms", &diff(9, 10, "7"));
        books.on_frame("btcusdt@depth@100ms", &diff(11, 12, "3"));
        books.on_frame("btcusdt@kline_1m", "{}");
        let body = String::from_utf8(books.depth(btc, 10).unwrap().unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"lastUpdateId":12,"bids":[["100.00000000","1.5"],["99.50000000","3"]],"asks":[["101.00000000","2"]]}"#
        );
        let top = String::from_utf8(books.depth(btc, 1).unwrap().unwrap()).unwrap();
        assert!(top.contains(r#""bids":[["100.00000000","1.5"]]"#), "{top}");
        // A lost diff: no answer until the next snapshot.
        books.on_frame("btcusdt@depth@100ms", &diff(20, 21, "1"));
        assert!(books.depth(btc, 10).unwrap().is_err());
        books.on_note(
            r#"{"event":"depth_snapshot","symbol":"BTCUSDT","limit":1000,"answer":{"lastUpdateId":30,"bids":[],"asks":[]}}"#,
        );
        assert!(books.depth(btc, 10).unwrap().is_ok());
    }
}
