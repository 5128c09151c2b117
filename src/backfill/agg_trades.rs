//! `GET /api/v3/aggTrades` answers as exact aggregate trades: the backfill of a hole in a
//! symbol's aggregate trade ids.
//!
//! Pure. An answer is `[{"a":id,"p":"price","q":"qty","f":first,"l":last,"T":ms,"m":bool,
//! "M":bool}, …]`, oldest first; prices and quantities are decimal strings kept exactly
//! as sent. REST rows carry no event time: a fetched trade's `event_time_us` is its trade
//! time.

use serde::Deserialize;

use crate::market::{AggTrade, Symbol};

use super::trades::{decimal, follow_one_by_one};
use crate::message::rest::MAX_STORED_ID;

/// Most rows one call returns (the exchange's `limit` maximum).
pub const MAX_LIMIT: u32 = crate::message::rest::TRADES_PAGE;
/// Request weight of one call (any limit up to 1000).
pub const WEIGHT: u32 = 4;

/// The URL of the page of `symbol`'s aggregate trades from id `from_id` on.
pub fn url(rest_url: &str, symbol: Symbol, from_id: u64) -> String {
    format!(
        "{}/api/v3/aggTrades?symbol={symbol}&fromId={from_id}&limit={MAX_LIMIT}",
        rest_url.trim_end_matches('/')
    )
}

#[derive(Deserialize)]
struct Row<'a> {
    a: u64,
    #[serde(borrow)]
    p: &'a str,
    #[serde(borrow)]
    q: &'a str,
    f: u64,
    l: u64,
    #[serde(rename = "T")]
    t: i64,
    m: bool,
}

/// Parses an answer into `symbol`'s aggregate trades, oldest first. The ids must rise
/// one by one (the exchange numbers them without holes), each trade's `f..=l` must be
/// a range, and every id must fit `i64`; anything else is malformed, not a partial page.
pub fn parse(body: &str, symbol: Symbol) -> Result<Vec<AggTrade>, String> {
    let rows: Vec<Row<'_>> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.a > MAX_STORED_ID || r.l > MAX_STORED_ID || r.f > r.l {
            return Err(format!("ids out of range: a {} f {} l {}", r.a, r.f, r.l));
        }
        if r.t < 0 {
            return Err(format!("negative trade time {}", r.t));
        }
        out.push(AggTrade {
            symbol,
            agg_trade_id: r.a,
            price: decimal(r.p)?,
            quantity: decimal(r.q)?,
            first_trade_id: r.f,
            last_trade_id: r.l,
            trade_time_ms: r.t,
            buyer_is_maker: r.m,
            event_time_us: r.t.saturating_mul(1000),
        });
    }
    follow_one_by_one(&out, |t| t.agg_trade_id)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> Symbol {
        Symbol::new("BNBBTC").unwrap()
    }

    const FIXTURE: &str = r#"[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true},{"a":26130,"p":"0.01633100","q":"0.10000000","f":27782,"l":27784,"T":1498793709160,"m":false,"M":true}]"#;

    #[test]
    fn the_documented_answer_parses_exactly() {
        let rows = parse(FIXTURE, sym()).unwrap();
        assert_eq!(rows.len(), 2);
        let a = rows[0];
        assert_eq!(a.agg_trade_id, 26129);
        assert_eq!(a.price.to_string(), "0.01633102");
        assert_eq!(a.quantity.to_string(), "4.70443515");
        assert_eq!((a.first_trade_id, a.last_trade_id), (27781, 27781));
        assert_eq!(a.trade_time_ms, 1_498_793_709_153);
        assert_eq!(a.event_time_us, 1_498_793_709_153_000);
        assert!(a.buyer_is_maker && !rows[1].buyer_is_maker);
        assert_eq!(rows[1].quantity.to_string(), "0.10000000", "scale kept");
        assert!(parse("[]", sym()).unwrap().is_empty());
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for body in [
            "",
            "{}",
            "[1]",
            r#"[{"a":1}]"#,
            r#"[{"a":1,"p":"x","q":"1","f":1,"l":1,"T":1,"m":true,"M":true}]"#,
            r#"[{"a":1,"p":"1","q":"1","f":2,"l":1,"T":1,"m":true,"M":true}]"#,
            r#"[{"a":1,"p":"1","q":"1","f":1,"l":1,"T":-1,"m":true,"M":true}]"#,
            r#"[{"a":18446744073709551615,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true,"M":true}]"#,
            r#"[{"a":-1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true,"M":true}]"#,
            // A hole inside a page.
            r#"[{"a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true,"M":true},{"a":3,"p":"1","q":"1","f":2,"l":2,"T":1,"m":true,"M":true}]"#,
        ] {
            assert!(parse(body, sym()).is_err(), "{body}");
        }
    }

    #[test]
    fn the_url_asks_a_full_page_from_an_id() {
        assert_eq!(
            url("http://x/", sym(), 7),
            "http://x/api/v3/aggTrades?symbol=BNBBTC&fromId=7&limit=1000"
        );
    }
}
