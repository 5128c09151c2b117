//! `GET /api/v3/historicalTrades` answers as exact raw trades (the backfill of a hole in
//! a symbol's trade ids), and how a page of either kind of trade walks a range of ids.
//!
//! Pure. An answer is `[{"id":id,"price":"price","qty":"qty","quoteQty":"quote",
//! "time":ms,"isBuyerMaker":bool,"isBestMatch":bool}, …]`, oldest first; prices and
//! quantities are decimal strings kept exactly as sent. REST rows carry no event time:
//! a fetched trade's `event_time_us` is its trade time.

use serde::Deserialize;

use crate::market::{Decimal, Symbol, Trade};
use crate::message::rest::{MAX_STORED_ID, TRADES_PAGE};

/// Most rows one call returns (the exchange's `limit` maximum).
pub const MAX_LIMIT: u32 = TRADES_PAGE;
/// Request weight of one call (any limit up to 1000), as Binance charges it.
pub const WEIGHT: u32 = 25;

/// The URL of the page of `symbol`'s raw trades from id `from_id` on.
pub fn url(rest_url: &str, symbol: Symbol, from_id: u64) -> String {
    format!(
        "{}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit={MAX_LIMIT}",
        rest_url.trim_end_matches('/')
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    id: u64,
    #[serde(borrow)]
    price: &'a str,
    #[serde(borrow)]
    qty: &'a str,
    time: i64,
    is_buyer_maker: bool,
}

/// Parses an answer into `symbol`'s raw trades, oldest first. The ids must rise one by
/// one (the exchange numbers them without holes) and fit `i64`; anything else is
/// malformed, not a partial page.
pub fn parse(body: &str, symbol: Symbol) -> Result<Vec<Trade>, String> {
    let rows: Vec<Row<'_>> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.id > MAX_STORED_ID {
            return Err(format!("id out of range: {}", r.id));
        }
        if r.time < 0 {
            return Err(format!("negative trade time {}", r.time));
        }
        out.push(Trade {
            symbol,
            trade_id: r.id,
            price: decimal(r.price)?,
            quantity: decimal(r.qty)?,
            trade_time_ms: r.time,
            buyer_is_maker: r.is_buyer_maker,
            event_time_us: r.time.saturating_mul(1000),
        });
    }
    follow_one_by_one(&out, |t| t.trade_id)?;
    Ok(out)
}

/// An exchange decimal string, exactly; an error names it.
pub(super) fn decimal(text: &str) -> Result<Decimal, String> {
    text.parse().map_err(|_| format!("bad decimal {text:?}"))
}

/// The ids of a page must rise one by one (the exchange numbers trades without holes):
/// anything else is a malformed page, not a partial one.
pub(super) fn follow_one_by_one<T>(rows: &[T], id: impl Fn(&T) -> u64) -> Result<(), String> {
    match rows.windows(2).find(|w| id(&w[1]) != id(&w[0]) + 1) {
        Some(w) => Err(format!(
            "ids do not follow each other: {} then {}",
            id(&w[0]),
            id(&w[1])
        )),
        None => Ok(()),
    }
}

/// What a page of a backfill of ids `[from_id, to_id)` means: the rows to deliver (those
/// inside the range) and where the next page starts, if the range goes on. A page that
/// does not start at `from_id` lacks ids the exchange no longer has: the rows are still
/// delivered, and the ids before them stay missing. An empty page ends the backfill.
/// `id` reads a row's id (aggregate or raw).
pub fn page<T>(
    rows: &mut Vec<T>,
    id: impl Fn(&T) -> u64,
    from_id: u64,
    to_id: Option<u64>,
) -> Option<u64> {
    rows.retain(|t| id(t) >= from_id && to_id.is_none_or(|to| id(t) < to));
    let next = id(rows.last()?) + 1;
    let full = rows.len() >= TRADES_PAGE as usize;
    match to_id {
        Some(to) if next < to => Some(next),
        Some(_) => None,
        // Open-ended (a restart's catch-up): on until a page is not full, the present.
        None => full.then_some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> Symbol {
        Symbol::new("BNBBTC").unwrap()
    }

    /// Binance's documented example answer.
    const FIXTURE: &str = r#"[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true},{"id":28458,"price":"4.00000200","qty":"0.50000000","quoteQty":"2.000001","time":1499865549591,"isBuyerMaker":false,"isBestMatch":true}]"#;

    #[test]
    fn the_documented_answer_parses_exactly() {
        let rows = parse(FIXTURE, sym()).unwrap();
        assert_eq!(rows.len(), 2);
        let t = rows[0];
        assert_eq!(t.trade_id, 28457);
        assert_eq!(t.price.to_string(), "4.00000100");
        assert_eq!(t.quantity.to_string(), "12.00000000", "scale kept");
        assert_eq!(t.trade_time_ms, 1_499_865_549_590);
        assert_eq!(t.event_time_us, 1_499_865_549_590_000);
        assert!(t.buyer_is_maker && !rows[1].buyer_is_maker);
        assert!(parse("[]", sym()).unwrap().is_empty());
        assert_eq!(
            url("http://x/", sym(), 7),
            "http://x/api/v3/historicalTrades?symbol=BNBBTC&fromId=7&limit=1000"
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let row = |id: &str, price: &str, time: &str| {
            format!(
                r#"{{"id":{id},"price":"{price}","qty":"1","quoteQty":"1","time":{time},"isBuyerMaker":true,"isBestMatch":true}}"#
            )
        };
        for body in [
            "".to_owned(),
            "{}".to_owned(),
            "[1]".to_owned(),
            r#"[{"id":1}]"#.to_owned(),
            format!("[{}]", row("1", "x", "1")),
            format!("[{}]", row("1", "1", "-1")),
            format!("[{}]", row("-1", "1", "1")),
            format!("[{}]", row("18446744073709551615", "1", "1")),
            // A hole inside a page.
            format!("[{},{}]", row("1", "1", "1"), row("3", "1", "1")),
        ] {
            assert!(parse(&body, sym()).is_err(), "{body}");
        }
    }

    fn rows(ids: std::ops::Range<u64>) -> Vec<u64> {
        ids.collect()
    }

    #[test]
    fn pages_walk_a_range_and_stop_at_its_end() {
        let id = |t: &u64| *t;
        // A bounded hole [10, 15): the page holds it and more; only the hole is kept.
        let mut r = rows(10..20);
        assert_eq!(page(&mut r, id, 10, Some(15)), None);
        assert_eq!(r, [10, 11, 12, 13, 14]);
        // A page that ends inside the range goes on after its last row.
        let mut r = rows(10..12);
        assert_eq!(page(&mut r, id, 10, Some(15)), Some(12));
        // Open-ended: a full page goes on, a short one is the present.
        let mut r = rows(100..1100);
        assert_eq!(page(&mut r, id, 100, None), Some(1100));
        let mut r = rows(100..150);
        assert_eq!(page(&mut r, id, 100, None), None);
        // Nothing (the exchange has no such ids yet, or no more): the end.
        let mut r = Vec::new();
        assert_eq!(page(&mut r, id, 100, Some(200)), None);
    }
}
