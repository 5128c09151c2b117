//! `GET /api/v3/depth`: the URL of a snapshot request and the answer read into a
//! [`Snapshot`], every price and quantity exact.
//!
//! Runs on the REST thread.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::book::{price_units, BookLevel, Snapshot};
use crate::message::rest::BookRequest;

/// The URL of `req` on the exchange at `rest_url`.
pub fn depth_url(rest_url: &str, req: &BookRequest) -> String {
    format!(
        "{}/api/v3/depth?symbol={}&limit={}",
        rest_url.trim_end_matches('/'),
        req.symbol,
        req.limit
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    last_update_id: u64,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Reads a depth answer; the error says what was wrong with it.
pub fn parse(body: &str, req: &BookRequest) -> Result<Snapshot, String> {
    let answer: Answer<'_> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let side = |levels: &[[&str; 2]]| -> Result<Vec<BookLevel>, String> {
        levels
            .iter()
            .map(|[p, q]| {
                let price: Decimal = p.parse().map_err(|_| format!("bad price {p:?}"))?;
                let qty: Decimal = q.parse().map_err(|_| format!("bad quantity {q:?}"))?;
                let price = price_units(price)
                    .ok_or_else(|| format!("price {p:?} has more than 8 decimals"))?;
                if qty.is_sign_negative() {
                    return Err(format!("negative quantity {q:?}"));
                }
                Ok(BookLevel { price, qty })
            })
            .collect()
    };
    let bids = side(&answer.bids)?;
    let asks = side(&answer.asks)?;
    // Best first on both sides, as Binance sends them; anything else is not a book.
    if bids.windows(2).any(|w| w[0].price <= w[1].price)
        || asks.windows(2).any(|w| w[0].price >= w[1].price)
    {
        return Err("levels are not in book order".into());
    }
    Ok(Snapshot {
        symbol: req.symbol,
        last_update_id: answer.last_update_id,
        bids,
        asks,
        limit: req.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Symbol;

    fn req() -> BookRequest {
        BookRequest {
            symbol: Symbol::new("BNBBTC").unwrap(),
            limit: 100,
            weight: 5,
        }
    }

    #[test]
    fn reads_binance_documented_answer() {
        // The example of Binance's REST documentation for `GET /api/v3/depth`.
        let body = include_str!("../../tests/data/binance/rest_depth_response.json");
        let s = parse(body, &req()).unwrap();
        assert_eq!(s.last_update_id, 1027024);
        assert_eq!(s.bids[0].price, 400_000_000);
        assert_eq!(s.bids[0].qty.to_string(), "431.00000000");
        assert_eq!(s.asks[0].price, 400_000_200);
        assert_eq!(s.limit, 100);
        assert_eq!(
            depth_url("http://x/", &req()),
            "http://x/api/v3/depth?symbol=BNBBTC&limit=100"
        );
    }

    #[test]
    fn refuses_what_is_not_an_exact_book() {
        for (body, why) in [
            (r#"{"bids":[],"asks":[]}"#, "lastUpdateId"),
            (
                r#"{"lastUpdateId":1,"bids":[["x","1"]],"asks":[]}"#,
                "bad price",
            ),
            (
                r#"{"lastUpdateId":1,"bids":[["1.000000001","1"]],"asks":[]}"#,
                "8 decimals",
            ),
            (
                r#"{"lastUpdateId":1,"bids":[["1","-1"]],"asks":[]}"#,
                "negative",
            ),
            (
                r#"{"lastUpdateId":1,"bids":[["1","1"],["2","1"]],"asks":[]}"#,
                "book order",
            ),
        ] {
            let e = parse(body, &req()).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}
