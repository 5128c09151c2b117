//! JSON rendering of market events in Binance's exact shapes, into reusable buffers.
//!
//! Runs on: the simulator core (pure). In: an [`Event`] and how the connection wants it
//! (combined envelope or raw, milliseconds or microseconds). Out: bytes appended to a
//! caller's buffer. No serde and no allocation per event: numbers are formatted by hand,
//! decimals from exact integers in units of 10^-8.

pub use crate::digits::{push_i64, push_u64};
use crate::wire::TimeUnit;

use super::book::BookLevel;
use super::kline::Kline;
use super::market::{AggTradeEvent, Event, TradeEvent, UNIT, UNIT_SCALE};

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_US: i64 = 1_000;

/// Appends `v × 10^-8` with exactly 8 decimals, as Binance prints prices and amounts
/// (`"60000.01000000"`).
pub fn push_units(out: &mut Vec<u8>, v: i128) {
    if v < 0 {
        out.push(b'-');
    }
    let magnitude = v.unsigned_abs();
    let scale = 10u128.pow(UNIT_SCALE);
    let whole = magnitude / scale;
    let frac = (magnitude % scale) as u64;
    if whole <= u128::from(u64::MAX) {
        push_u64(out, whole as u64);
    } else {
        out.extend_from_slice(whole.to_string().as_bytes());
    }
    out.push(b'.');
    let mut digits = [b'0'; UNIT_SCALE as usize];
    let mut rest = frac;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

/// `v × 10^-8` as a string (for REST bodies and tests).
pub fn units_string(v: i128) -> String {
    let mut out = Vec::with_capacity(24);
    push_units(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

fn push_quoted_units(out: &mut Vec<u8>, v: i128) {
    out.push(b'"');
    push_units(out, v);
    out.push(b'"');
}

fn push_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A simulated instant (ns) in the connection's time unit.
pub fn time_in(unit: TimeUnit, time_ns: i64) -> i64 {
    match unit {
        TimeUnit::Millisecond => time_ns.div_euclid(NS_PER_MS),
        TimeUnit::Microsecond => time_ns.div_euclid(NS_PER_US),
    }
}

/// Kline open time in the connection's unit.
fn open_time_in(unit: TimeUnit, open_ms: i64) -> i64 {
    match unit {
        TimeUnit::Millisecond => open_ms,
        TimeUnit::Microsecond => open_ms * 1_000,
    }
}

/// Kline close time in the connection's unit: one unit before the next open.
fn close_time_in(unit: TimeUnit, close_ms: i64) -> i64 {
    match unit {
        TimeUnit::Millisecond => close_ms,
        TimeUnit::Microsecond => close_ms * 1_000 + 999,
    }
}

fn push_levels(out: &mut Vec<u8>, levels: &[BookLevel]) {
    out.push(b'[');
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        push_quoted_units(out, i128::from(level.price));
        out.push(b',');
        push_quoted_units(out, i128::from(level.qty));
        out.push(b']');
    }
    out.push(b']');
}

/// Appends one event's JSON. With `stream` the payload is wrapped in the combined
/// envelope `{"stream":…,"data":…}`. `symbol` is the upper-case symbol.
pub fn render_event(
    out: &mut Vec<u8>,
    event: &Event<'_>,
    symbol: &str,
    stream: Option<&str>,
    unit: TimeUnit,
) {
    if let Some(name) = stream {
        out.extend_from_slice(b"{\"stream\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"data\":");
    }
    match event {
        Event::Trade(t) => {
            out.extend_from_slice(b"{\"e\":\"trade\",\"E\":");
            push_i64(out, time_in(unit, t.time_ns));
            push_symbol(out, symbol);
            out.extend_from_slice(b",\"t\":");
            push_u64(out, t.trade_id);
            out.extend_from_slice(b",\"p\":");
            push_quoted_units(out, i128::from(t.price));
            out.extend_from_slice(b",\"q\":");
            push_quoted_units(out, i128::from(t.qty));
            out.extend_from_slice(b",\"T\":");
            push_i64(out, time_in(unit, t.time_ns));
            out.extend_from_slice(b",\"m\":");
            push_bool(out, t.buyer_is_maker);
            out.extend_from_slice(b",\"M\":true}");
        }
        Event::AggTrade(a) => {
            out.extend_from_slice(b"{\"e\":\"aggTrade\",\"E\":");
            push_i64(out, time_in(unit, a.time_ns));
            push_symbol(out, symbol);
            out.push(b',');
            push_agg_trade_fields(out, a, unit);
        }
        Event::BookTicker(b) => {
            out.extend_from_slice(b"{\"u\":");
            push_u64(out, b.update_id);
            push_symbol(out, symbol);
            out.extend_from_slice(b",\"b\":");
            push_quoted_units(out, i128::from(b.top.bid));
            out.extend_from_slice(b",\"B\":");
            push_quoted_units(out, i128::from(b.top.bid_qty));
            out.extend_from_slice(b",\"a\":");
            push_quoted_units(out, i128::from(b.top.ask));
            out.extend_from_slice(b",\"A\":");
            push_quoted_units(out, i128::from(b.top.ask_qty));
            out.push(b'}');
        }
        Event::Kline(k) => {
            out.extend_from_slice(b"{\"e\":\"kline\",\"E\":");
            push_i64(out, time_in(unit, k.time_ns));
            push_symbol(out, symbol);
            out.extend_from_slice(b",\"k\":");
            push_kline_body(out, &k.kline, symbol, k.interval.as_str(), k.closed, unit);
            out.push(b'}');
        }
        Event::DepthDiff(d) => {
            out.extend_from_slice(b"{\"e\":\"depthUpdate\",\"E\":");
            push_i64(out, time_in(unit, d.time_ns));
            push_symbol(out, symbol);
            out.extend_from_slice(b",\"U\":");
            push_u64(out, d.first_update_id);
            out.extend_from_slice(b",\"u\":");
            push_u64(out, d.last_update_id);
            out.extend_from_slice(b",\"b\":");
            push_levels(out, d.bids);
            out.extend_from_slice(b",\"a\":");
            push_levels(out, d.asks);
            out.push(b'}');
        }
        Event::PartialDepth(p) => {
            out.extend_from_slice(b"{\"lastUpdateId\":");
            push_u64(out, p.last_update_id);
            out.extend_from_slice(b",\"bids\":");
            push_levels(out, p.bids);
            out.extend_from_slice(b",\"asks\":");
            push_levels(out, p.asks);
            out.push(b'}');
        }
    }
    if stream.is_some() {
        out.push(b'}');
    }
}

fn push_symbol(out: &mut Vec<u8>, symbol: &str) {
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(symbol.as_bytes());
    out.push(b'"');
}

fn push_kline_body(
    out: &mut Vec<u8>,
    k: &Kline,
    symbol: &str,
    interval: &str,
    closed: bool,
    unit: TimeUnit,
) {
    out.extend_from_slice(b"{\"t\":");
    push_i64(out, open_time_in(unit, k.open_time_ms));
    out.extend_from_slice(b",\"T\":");
    push_i64(out, close_time_in(unit, k.close_time_ms));
    push_symbol(out, symbol);
    out.extend_from_slice(b",\"i\":\"");
    out.extend_from_slice(interval.as_bytes());
    out.extend_from_slice(b"\",\"f\":");
    push_i64(out, k.first_trade_id);
    out.extend_from_slice(b",\"L\":");
    push_i64(out, k.last_trade_id);
    out.extend_from_slice(b",\"o\":");
    push_quoted_units(out, i128::from(k.open));
    out.extend_from_slice(b",\"c\":");
    push_quoted_units(out, i128::from(k.close));
    out.extend_from_slice(b",\"h\":");
    push_quoted_units(out, i128::from(k.high));
    out.extend_from_slice(b",\"l\":");
    push_quoted_units(out, i128::from(k.low));
    out.extend_from_slice(b",\"v\":");
    push_quoted_units(out, k.volume);
    out.extend_from_slice(b",\"n\":");
    push_u64(out, k.trades);
    out.extend_from_slice(b",\"x\":");
    push_bool(out, closed);
    out.extend_from_slice(b",\"q\":");
    push_quoted_units(out, k.quote_volume);
    out.extend_from_slice(b",\"V\":");
    push_quoted_units(out, k.taker_buy_base);
    out.extend_from_slice(b",\"Q\":");
    push_quoted_units(out, k.taker_buy_quote);
    out.extend_from_slice(b",\"B\":\"0\"}");
}

/// One kline as the 12-element array of `GET /api/v3/klines`.
/// One aggregate trade of a REST `aggTrades` answer: the stream event's fields without
/// the event type, time and symbol.
pub fn push_rest_agg_trade(out: &mut Vec<u8>, a: &AggTradeEvent, unit: TimeUnit) {
    out.push(b'{');
    push_agg_trade_fields(out, a, unit);
}

/// One trade of a REST `historicalTrades` (or `trades`) answer:
/// `{"id":…,"price":"…","qty":"…","quoteQty":"…","time":…,"isBuyerMaker":…,"isBestMatch":true}`.
pub fn push_rest_trade(out: &mut Vec<u8>, t: &TradeEvent, unit: TimeUnit) {
    out.extend_from_slice(b"{\"id\":");
    push_u64(out, t.trade_id);
    out.extend_from_slice(b",\"price\":");
    push_quoted_units(out, i128::from(t.price));
    out.extend_from_slice(b",\"qty\":");
    push_quoted_units(out, i128::from(t.qty));
    out.extend_from_slice(b",\"quoteQty\":");
    // Tick and step decimals add up to at most 8: the quote value is exact.
    push_quoted_units(
        out,
        i128::from(t.price) * i128::from(t.qty) / i128::from(UNIT),
    );
    out.extend_from_slice(b",\"time\":");
    push_i64(out, time_in(unit, t.time_ns));
    out.extend_from_slice(b",\"isBuyerMaker\":");
    push_bool(out, t.buyer_is_maker);
    out.extend_from_slice(b",\"isBestMatch\":true}");
}

/// `"a":…,"M":true}`: the fields an aggregate trade has on the stream and over REST.
fn push_agg_trade_fields(out: &mut Vec<u8>, a: &AggTradeEvent, unit: TimeUnit) {
    out.extend_from_slice(b"\"a\":");
    push_u64(out, a.agg_id);
    out.extend_from_slice(b",\"p\":");
    push_quoted_units(out, i128::from(a.price));
    out.extend_from_slice(b",\"q\":");
    push_quoted_units(out, i128::from(a.qty));
    out.extend_from_slice(b",\"f\":");
    push_u64(out, a.first_trade_id);
    out.extend_from_slice(b",\"l\":");
    push_u64(out, a.last_trade_id);
    out.extend_from_slice(b",\"T\":");
    push_i64(out, time_in(unit, a.time_ns));
    out.extend_from_slice(b",\"m\":");
    push_bool(out, a.buyer_is_maker);
    out.extend_from_slice(b",\"M\":true}");
}

pub fn push_rest_kline(out: &mut Vec<u8>, k: &Kline, unit: TimeUnit) {
    out.push(b'[');
    push_i64(out, open_time_in(unit, k.open_time_ms));
    out.push(b',');
    push_quoted_units(out, i128::from(k.open));
    out.push(b',');
    push_quoted_units(out, i128::from(k.high));
    out.push(b',');
    push_quoted_units(out, i128::from(k.low));
    out.push(b',');
    push_quoted_units(out, i128::from(k.close));
    out.push(b',');
    push_quoted_units(out, k.volume);
    out.push(b',');
    push_i64(out, close_time_in(unit, k.close_time_ms));
    out.push(b',');
    push_quoted_units(out, k.quote_volume);
    out.push(b',');
    push_u64(out, k.trades);
    out.push(b',');
    push_quoted_units(out, k.taker_buy_base);
    out.push(b',');
    push_quoted_units(out, k.taker_buy_quote);
    out.extend_from_slice(b",\"0\"]");
}

/// `serverShutdown`, raw or in the combined envelope.
pub fn render_server_shutdown(out: &mut Vec<u8>, combined: bool, event_time: i64) {
    if combined {
        out.extend_from_slice(b"{\"stream\":\"!serverShutdown\",\"data\":");
    }
    out.extend_from_slice(b"{\"e\":\"serverShutdown\",\"E\":");
    push_i64(out, event_time);
    out.push(b'}');
    if combined {
        out.push(b'}');
    }
}

/// Partial-depth-shaped order book body (`GET /api/v3/depth`).
pub fn render_depth_snapshot(
    out: &mut Vec<u8>,
    last_update_id: u64,
    bids: &[BookLevel],
    asks: &[BookLevel],
) {
    out.extend_from_slice(b"{\"lastUpdateId\":");
    push_u64(out, last_update_id);
    out.extend_from_slice(b",\"bids\":");
    push_levels(out, bids);
    out.extend_from_slice(b",\"asks\":");
    push_levels(out, asks);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Interval;
    use crate::simulator::book::Top;
    use crate::simulator::market::{
        AggTradeEvent, BookTickerEvent, DepthDiffEvent, KlineEvent, PartialDepthEvent, TradeEvent,
    };

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_format_exactly() {
        assert_eq!(text(|o| push_i64(o, -1)), "-1");
        assert_eq!(text(|o| push_u64(o, u64::MAX)), "18446744073709551615");
        assert_eq!(units_string(1_634_790), "0.01634790");
        assert_eq!(units_string(6_000_001_000_000), "60000.01000000");
        assert_eq!(units_string(0), "0.00000000");
        assert_eq!(units_string(-5), "-0.00000005");
        assert_eq!(units_string(i128::MAX).len(), 39 + 1);
    }

    #[test]
    fn events_have_binance_shapes() {
        let trade = TradeEvent {
            symbol_index: 0,
            time_ns: 1_672_515_782_136_123_456,
            trade_id: 12345,
            price: 100_000,
            qty: 10_000_000_000,
            buyer_is_maker: true,
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::Trade(&trade),
                "BNBBTC",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.00100000","q":"100.00000000","T":1672515782136,"m":true,"M":true}"#
        );
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::Trade(&trade),
                "BNBBTC",
                Some("bnbbtc@trade"),
                TimeUnit::Microsecond
            )),
            r#"{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136123,"s":"BNBBTC","t":12345,"p":"0.00100000","q":"100.00000000","T":1672515782136123,"m":true,"M":true}}"#
        );
        let agg = AggTradeEvent {
            symbol_index: 0,
            time_ns: 1_672_515_782_136_000_000,
            agg_id: 12345,
            price: 100_000,
            qty: 10_000_000_000,
            first_trade_id: 100,
            last_trade_id: 105,
            buyer_is_maker: true,
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::AggTrade(&agg),
                "BNBBTC",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.00100000","q":"100.00000000","f":100,"l":105,"T":1672515782136,"m":true,"M":true}"#
        );
        let ticker = BookTickerEvent {
            symbol_index: 0,
            update_id: 400_900_217,
            top: Top {
                bid: 2_535_190_000,
                bid_qty: 3_121_000_000,
                ask: 2_536_520_000,
                ask_qty: 4_066_000_000,
            },
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::BookTicker(&ticker),
                "BNBUSDT",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#
        );
        let mut kline = Kline::empty(Interval::M1, 1_672_515_780_000, 100_000);
        kline.trades = 3;
        kline.first_trade_id = 100;
        kline.last_trade_id = 102;
        let event = KlineEvent {
            symbol_index: 0,
            time_ns: 1_672_515_782_136_000_000,
            interval: Interval::M1,
            kline,
            closed: false,
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::Kline(&event),
                "BNBBTC",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":102,"o":"0.00100000","c":"0.00100000","h":"0.00100000","l":"0.00100000","v":"0.00000000","n":3,"x":false,"q":"0.00000000","V":"0.00000000","Q":"0.00000000","B":"0"}}"#
        );
        let micro = text(|o| {
            render_event(
                o,
                &Event::Kline(&event),
                "BNBBTC",
                None,
                TimeUnit::Microsecond,
            )
        });
        assert!(
            micro.contains(r#""t":1672515780000000,"T":1672515839999999"#),
            "{micro}"
        );
        let bids = [BookLevel {
            price: 240_000,
            qty: 1_000_000_000,
        }];
        let asks = [BookLevel {
            price: 260_000,
            qty: 10_000_000_000,
        }];
        let diff = DepthDiffEvent {
            symbol_index: 0,
            time_ns: 1_672_515_782_136_000_000,
            first_update_id: 157,
            last_update_id: 160,
            bids: &bids,
            asks: &asks,
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::DepthDiff(&diff),
                "BNBBTC",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.00240000","10.00000000"]],"a":[["0.00260000","100.00000000"]]}"#
        );
        let partial = PartialDepthEvent {
            symbol_index: 0,
            last_update_id: 160,
            bids: &bids,
            asks: &[],
        };
        assert_eq!(
            text(|o| render_event(
                o,
                &Event::PartialDepth(&partial),
                "BNBBTC",
                None,
                TimeUnit::Millisecond
            )),
            r#"{"lastUpdateId":160,"bids":[["0.00240000","10.00000000"]],"asks":[]}"#
        );
        assert_eq!(
            text(|o| render_server_shutdown(o, true, 1_770_123_456_789)),
            r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#
        );
    }
}
