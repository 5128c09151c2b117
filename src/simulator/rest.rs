//! The REST endpoints (`/api/v3/ping`, `time`, `exchangeInfo`, `klines`, `depth`,
//! `aggTrades`, `historicalTrades`) with
//! Binance's shapes, request weights, error codes and the per-IP weight budget.
//!
//! Runs on: the simulator core (pure: the caller advances the market to "now" first and
//! passes the clocks in). In: a parsed request. Out: a [`Response`] without the weight
//! headers, which the caller adds after charging the budget.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::market::{Interval, Symbol};
use crate::wire::TimeUnit;

use super::http::{query_get, query_pairs, Response};
use super::kline::{select, time_zone_base, Kline};
use super::market::{Market, SymbolMarket};
use super::render::{
    push_rest_agg_trade, push_rest_kline, push_rest_trade, render_depth_snapshot, time_in,
    units_string,
};

/// `limit` of `/api/v3/klines`: default and maximum (larger values are capped, as on
/// Binance).
pub const KLINES_DEFAULT_LIMIT: usize = 500;
pub const KLINES_MAX_LIMIT: usize = 1000;
/// `limit` of `/api/v3/depth`: default and maximum (capped likewise).
pub const DEPTH_DEFAULT_LIMIT: usize = 100;
pub const DEPTH_MAX_LIMIT: usize = 5000;
/// `limit` of `/api/v3/aggTrades`: default and maximum (capped likewise).
pub const AGG_TRADES_DEFAULT_LIMIT: usize = 500;
pub const AGG_TRADES_MAX_LIMIT: usize = 1000;
/// `limit` of `/api/v3/historicalTrades`: default and maximum (capped likewise).
pub const TRADES_DEFAULT_LIMIT: usize = 500;
pub const TRADES_MAX_LIMIT: usize = 1000;
/// Weight windows remembered before old ones are pruned (one per client IP).
const MAX_TRACKED_IPS: usize = 4096;
const MINUTE_MS: i64 = 60_000;
/// Longest `symbol` parameter Binance's syntax check lets through.
const MAX_SYMBOL_LEN: usize = 20;
/// The smallest time parameter read as microseconds: the first of 16 digits.
const MIN_MICROSECOND_TIME: i64 = 1_000_000_000_000_000;

/// The request weight Binance charges for a path (and, for depth, its limit).
pub fn request_weight(path: &str, query: &str) -> u32 {
    match path {
        "/api/v3/ping" | "/api/v3/time" => 1,
        "/api/v3/klines" => 2,
        "/api/v3/aggTrades" => 4,
        "/api/v3/exchangeInfo" => 20,
        "/api/v3/historicalTrades" => 25,
        "/api/v3/depth" => {
            let pairs = query_pairs(query);
            let limit = query_get(&pairs, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(DEPTH_DEFAULT_LIMIT)
                .min(DEPTH_MAX_LIMIT);
            // Binance's weight steps, the ones the engine's book requests are sized by.
            crate::book::snapshot_limit(limit).1
        }
        _ => 1,
    }
}

/// The per-IP request weight used in the current wall-clock minute, as Binance counts it
/// (`X-MBX-USED-WEIGHT-1M`); the window resets at each minute boundary.
#[derive(Debug)]
pub struct WeightLimiter {
    limit: u32,
    windows: HashMap<IpAddr, (i64, u32)>,
}

/// A request over the budget: the weight used and the seconds until the window resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub used: u32,
    pub retry_after_s: u64,
}

impl WeightLimiter {
    pub fn new(limit: u32) -> WeightLimiter {
        WeightLimiter {
            limit,
            windows: HashMap::new(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Charges `weight`; returns the weight used in this minute, or the refusal. A
    /// refused request is not charged.
    pub fn charge(&mut self, ip: IpAddr, weight: u32, now_ms: i64) -> Result<u32, OverLimit> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        if self.windows.len() >= MAX_TRACKED_IPS && !self.windows.contains_key(&ip) {
            self.windows.retain(|_, (m, _)| *m == minute);
        }
        let window = self.windows.entry(ip).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1.saturating_add(weight) > self.limit {
            let next_minute_ms = (minute + 1) * MINUTE_MS;
            let retry_after_s = ((next_minute_ms - now_ms) as u64).div_ceil(1000).max(1);
            return Err(OverLimit {
                used: window.1,
                retry_after_s,
            });
        }
        window.1 += weight;
        Ok(window.1)
    }
}

/// Answers a GET on a REST path at simulated time `now_ns`, with time fields in `unit`
/// (`X-MBX-TIME-UNIT`). `market` is `None` in replay mode (no symbols).
pub fn respond(
    path: &str,
    query: &str,
    unit: TimeUnit,
    market: Option<&Market>,
    now_ns: i64,
    weight_limit: u32,
) -> Response {
    let pairs = query_pairs(query);
    let now = time_in(unit, now_ns);
    let result = match path {
        "/api/v3/ping" => Ok(Response::json(200, "{}")),
        "/api/v3/time" => Ok(Response::json(200, format!("{{\"serverTime\":{now}}}"))),
        "/api/v3/exchangeInfo" => exchange_info(&pairs, market, now, weight_limit),
        "/api/v3/klines" => klines(&pairs, market, unit),
        "/api/v3/depth" => depth(&pairs, market),
        "/api/v3/aggTrades" => agg_trades(&pairs, market, unit),
        "/api/v3/historicalTrades" => historical_trades(&pairs, market, unit),
        _ => Err(Response::error(404, -1000, "Unknown endpoint.")),
    };
    result.unwrap_or_else(|error| error)
}

pub(super) fn mandatory<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str, Response> {
    match query_get(pairs, key) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Response::error(
            400,
            -1102,
            &format!("Mandatory parameter '{key}' was not sent, was empty/null, or malformed."),
        )),
    }
}

fn number(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, Response> {
    match query_get(pairs, key) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<i64>().map(Some).map_err(|_| illegal_chars(key))
        }
        Some(_) => Err(illegal_chars(key)),
    }
}

/// Which way a microsecond time becomes a millisecond bound: a start rounds up and an
/// end down, so that both keep exactly the candles opening inside the µs range.
#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

/// A time parameter in epoch ms. Binance takes ms or µs: a value of 16 digits or more
/// (from 10^15, year 33658 in ms) is microseconds.
fn time_param(
    pairs: &[(String, String)],
    key: &str,
    rounding: Rounding,
) -> Result<Option<i64>, Response> {
    Ok(
        number(pairs, key)?.map(|t| match (t >= MIN_MICROSECOND_TIME, rounding) {
            (false, _) => t,
            (true, Rounding::Up) => -(-t).div_euclid(1_000),
            (true, Rounding::Down) => t.div_euclid(1_000),
        }),
    )
}

/// `startTime` and `endTime` (ms or µs, either may be absent); a start after the end is
/// refused as Binance refuses it.
fn time_range(pairs: &[(String, String)]) -> Result<(Option<i64>, Option<i64>), Response> {
    let start = time_param(pairs, "startTime", Rounding::Up)?;
    let end = time_param(pairs, "endTime", Rounding::Down)?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(Response::error(
                400,
                -1023,
                "Start time is greater than end time.",
            ));
        }
    }
    Ok((start, end))
}

fn illegal_chars(key: &str) -> Response {
    Response::error(
        400,
        -1100,
        &format!(
            "Illegal characters found in parameter '{key}'; legal range is '^[0-9]{{1,20}}$'."
        ),
    )
}

pub(super) fn limit_param(
    pairs: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<usize, Response> {
    match number(pairs, "limit")? {
        None => Ok(default),
        Some(0) => Err(Response::error(
            400,
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        )),
        Some(n) => Ok((n as usize).min(max)),
    }
}

fn symbol_index(pairs: &[(String, String)], market: Option<&Market>) -> Result<usize, Response> {
    let text = mandatory(pairs, "symbol")?;
    let invalid = || Response::error(400, -1121, "Invalid symbol.");
    // Binance checks the syntax before looking the symbol up: a lower-case symbol is
    // refused as illegal characters, not as an unknown symbol.
    let legal = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if text.len() > MAX_SYMBOL_LEN || !text.bytes().all(legal) {
        return Err(Response::error(
            400,
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        ));
    }
    let symbol = Symbol::new(text).map_err(|_| invalid())?;
    market
        .and_then(|m| m.symbol_index(symbol))
        .ok_or_else(invalid)
}

/// The market of the `symbol` parameter, checked as [`symbol_index`] does.
fn symbol_market<'m>(
    pairs: &[(String, String)],
    market: Option<&'m Market>,
) -> Result<&'m SymbolMarket, Response> {
    let index = symbol_index(pairs, market)?;
    market
        .map(|m| &m.symbols()[index])
        .ok_or_else(|| Response::error(400, -1121, "Invalid symbol."))
}

fn klines(
    pairs: &[(String, String)],
    market: Option<&Market>,
    unit: TimeUnit,
) -> Result<Response, Response> {
    let symbol = symbol_market(pairs, market)?;
    let interval = Interval::parse(mandatory(pairs, "interval")?)
        .map_err(|_| Response::error(400, -1120, "Invalid interval."))?;
    let (start, end) = time_range(pairs)?;
    let limit = limit_param(pairs, KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT)?;
    let offset_ms = match query_get(pairs, "timeZone") {
        None => 0,
        Some(text) => time_zone_offset_ms(text).ok_or_else(|| {
            Response::error(
                400,
                -1130,
                "Data sent for parameter 'timeZone' is not valid.",
            )
        })?,
    };
    let mut selected: Vec<Kline> = Vec::with_capacity(limit.min(KLINES_MAX_LIMIT));
    match time_zone_base(interval, offset_ms) {
        None => symbol.series(interval).select(
            symbol.current_kline(interval),
            start,
            end,
            limit,
            &mut selected,
        ),
        Some(base) => {
            let shifted =
                symbol
                    .series(base)
                    .shifted(symbol.current_kline(base), interval, offset_ms);
            select(shifted.iter(), start, end, limit, &mut selected);
        }
    }
    Ok(json_array(&selected, 200, |out, k| {
        push_rest_kline(out, k, unit)
    }))
}

/// `GET /api/v3/aggTrades`: aggregate trades, oldest first, at most `limit`. With
/// `fromId`, from that id on; with `startTime` and/or `endTime` (ms or µs, inclusive),
/// those traded in the range, from its oldest; with `fromId` and times, both apply;
/// with none of them, the newest `limit`. Answers from the aggregate trades the market
/// keeps ([`super::market::agg_trade_history_per_symbol`]); older ones are gone, as
/// klines past `kline_history` are.
fn agg_trades(
    pairs: &[(String, String)],
    market: Option<&Market>,
    unit: TimeUnit,
) -> Result<Response, Response> {
    let symbol = symbol_market(pairs, market)?;
    let from_id = number(pairs, "fromId")?;
    let (start, end) = time_range(pairs)?;
    let limit = limit_param(pairs, AGG_TRADES_DEFAULT_LIMIT, AGG_TRADES_MAX_LIMIT)?;
    let kept = symbol.agg_trades();
    let time_ms = |a: &super::market::AggTradeEvent| a.time_ns.div_euclid(1_000_000);
    let in_range = |a: &&super::market::AggTradeEvent| {
        start.is_none_or(|s| time_ms(a) >= s) && end.is_none_or(|e| time_ms(a) <= e)
    };
    let selected: Vec<&super::market::AggTradeEvent> =
        if from_id.is_none() && start.is_none() && end.is_none() {
            kept.iter().skip(kept.len().saturating_sub(limit)).collect()
        } else {
            // Ids are contiguous: `fromId` is an offset into the kept trades.
            let skip = match (from_id, kept.front()) {
                (Some(id), Some(first)) => (id as u64).saturating_sub(first.agg_id) as usize,
                _ => 0,
            };
            kept.iter()
                .skip(skip)
                .filter(in_range)
                .take(limit)
                .collect()
        };
    Ok(json_array(&selected, 120, |out, a| {
        push_rest_agg_trade(out, a, unit)
    }))
}

/// `GET /api/v3/historicalTrades`: raw trades, oldest first, at most `limit`; from id
/// `fromId` on, or the newest `limit` without it. Answers from the raw trades of the
/// aggregate trades the market keeps; older ones are gone.
fn historical_trades(
    pairs: &[(String, String)],
    market: Option<&Market>,
    unit: TimeUnit,
) -> Result<Response, Response> {
    let symbol = symbol_market(pairs, market)?;
    let from_id = number(pairs, "fromId")?;
    let limit = limit_param(pairs, TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT)?;
    let trades = symbol.trades(from_id.map(|id| id as u64), limit);
    Ok(json_array(&trades, 140, |out, t| {
        push_rest_trade(out, t, unit)
    }))
}

/// A 200 answer holding `items` as a JSON array, each written by `push` (about
/// `bytes_each` bytes).
fn json_array<T>(items: &[T], bytes_each: usize, push: impl Fn(&mut Vec<u8>, &T)) -> Response {
    let mut body = Vec::with_capacity(items.len() * bytes_each + 2);
    body.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        push(&mut body, item);
    }
    body.push(b']');
    Response::json(200, body)
}

/// A `timeZone` of klines as an offset east of UTC: hours (`8`, `-3`) or hours and
/// minutes (`05:45`, `-1:00`), optionally signed, from -12:00 to +14:00 inclusive.
fn time_zone_offset_ms(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "00"));
    let digits = |s: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hours, 1..=2) || !digits(minutes, 2..=2) {
        return None;
    }
    let minutes: i64 = minutes.parse().ok().filter(|m| *m < 60)?;
    let total = sign * (hours.parse::<i64>().ok()? * 60 + minutes);
    (-12 * 60..=14 * 60)
        .contains(&total)
        .then_some(total * MINUTE_MS)
}

fn depth(pairs: &[(String, String)], market: Option<&Market>) -> Result<Response, Response> {
    let symbol = symbol_market(pairs, market)?;
    let limit = limit_param(pairs, DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)?;
    let book = symbol.book();
    let bids: Vec<_> = book.bids().take(limit).copied().collect();
    let asks: Vec<_> = book.asks().take(limit).copied().collect();
    let mut body = Vec::with_capacity((bids.len() + asks.len()) * 40 + 64);
    render_depth_snapshot(&mut body, book.update_id(), &bids, &asks);
    Ok(Response::json(200, body))
}

fn exchange_info(
    pairs: &[(String, String)],
    market: Option<&Market>,
    now: i64,
    weight_limit: u32,
) -> Result<Response, Response> {
    let all: Vec<usize> = market.map_or(Vec::new(), |m| (0..m.symbols().len()).collect());
    let chosen = if query_get(pairs, "symbol").is_some() {
        vec![symbol_index(pairs, market)?]
    } else if let Some(list) = query_get(pairs, "symbols") {
        let names: Vec<String> = serde_json::from_str(list).map_err(|_| {
            Response::error(
                400,
                -1100,
                "Illegal characters found in parameter 'symbols'.",
            )
        })?;
        let mut chosen = Vec::with_capacity(names.len());
        for name in names {
            let one = vec![("symbol".to_string(), name)];
            chosen.push(symbol_index(&one, market)?);
        }
        chosen
    } else {
        all
    };
    let symbols: Vec<String> = match market {
        Some(m) => chosen.iter().map(|&i| symbol_info(m, i)).collect(),
        None => Vec::new(),
    };
    let body = format!(
        concat!(
            "{{\"timezone\":\"UTC\",\"serverTime\":{now},\"rateLimits\":[",
            "{{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":{limit}}},",
            "{{\"rateLimitType\":\"ORDERS\",\"interval\":\"SECOND\",\"intervalNum\":10,\"limit\":100}},",
            "{{\"rateLimitType\":\"ORDERS\",\"interval\":\"DAY\",\"intervalNum\":1,\"limit\":200000}},",
            "{{\"rateLimitType\":\"RAW_REQUESTS\",\"interval\":\"MINUTE\",\"intervalNum\":5,\"limit\":61000}}",
            "],\"exchangeFilters\":[],\"symbols\":[{symbols}]}}"
        ),
        now = now,
        limit = weight_limit,
        symbols = symbols.join(",")
    );
    Ok(Response::json(200, body))
}

fn symbol_info(market: &Market, index: usize) -> String {
    let spec = &market.symbols()[index].spec;
    format!(
        concat!(
            "{{\"symbol\":\"{symbol}\",\"status\":\"TRADING\",\"baseAsset\":\"{base}\",\"baseAssetPrecision\":8,",
            "\"quoteAsset\":\"{quote}\",\"quotePrecision\":8,\"quoteAssetPrecision\":8,",
            "\"baseCommissionPrecision\":8,\"quoteCommissionPrecision\":8,",
            "\"orderTypes\":[\"LIMIT\",\"LIMIT_MAKER\",\"MARKET\",\"STOP_LOSS_LIMIT\",\"TAKE_PROFIT_LIMIT\"],",
            "\"icebergAllowed\":true,\"ocoAllowed\":true,\"otoAllowed\":true,",
            "\"quoteOrderQtyMarketAllowed\":true,\"allowTrailingStop\":true,\"cancelReplaceAllowed\":true,",
            "\"isSpotTradingAllowed\":true,\"isMarginTradingAllowed\":false,",
            "\"filters\":[",
            "{{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"{tick}\",\"maxPrice\":\"{max_price}\",\"tickSize\":\"{tick}\"}},",
            "{{\"filterType\":\"LOT_SIZE\",\"minQty\":\"{step}\",\"maxQty\":\"{max_qty}\",\"stepSize\":\"{step}\"}},",
            "{{\"filterType\":\"ICEBERG_PARTS\",\"limit\":10}},",
            "{{\"filterType\":\"MARKET_LOT_SIZE\",\"minQty\":\"0.00000000\",\"maxQty\":\"{max_market_qty}\",\"stepSize\":\"0.00000000\"}},",
            "{{\"filterType\":\"TRAILING_DELTA\",\"minTrailingAboveDelta\":10,\"maxTrailingAboveDelta\":2000,",
            "\"minTrailingBelowDelta\":10,\"maxTrailingBelowDelta\":2000}},",
            "{{\"filterType\":\"PERCENT_PRICE_BY_SIDE\",\"bidMultiplierUp\":\"5\",\"bidMultiplierDown\":\"0.2\",",
            "\"askMultiplierUp\":\"5\",\"askMultiplierDown\":\"0.2\",\"avgPriceMins\":5}},",
            "{{\"filterType\":\"NOTIONAL\",\"minNotional\":\"5.00000000\",\"applyMinToMarket\":true,",
            "\"maxNotional\":\"9000000.00000000\",\"applyMaxToMarket\":false,\"avgPriceMins\":5}},",
            "{{\"filterType\":\"MAX_NUM_ORDERS\",\"maxNumOrders\":200}},",
            "{{\"filterType\":\"MAX_NUM_ALGO_ORDERS\",\"maxNumAlgoOrders\":5}}",
            "],\"permissions\":[],\"permissionSets\":[[\"SPOT\"]],",
            "\"defaultSelfTradePreventionMode\":\"EXPIRE_MAKER\",",
            "\"allowedSelfTradePreventionModes\":[\"EXPIRE_TAKER\",\"EXPIRE_MAKER\",\"EXPIRE_BOTH\"]}}"
        ),
        symbol = spec.symbol,
        base = spec.base_asset,
        quote = spec.quote_asset,
        tick = units_string(i128::from(spec.tick())),
        step = units_string(i128::from(spec.step())),
        max_price = units_string(1_000_000 * i128::from(super::market::UNIT)),
        max_qty = units_string(9_000_000 * i128::from(super::market::UNIT)),
        max_market_qty = units_string(100 * i128::from(super::market::UNIT)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::market::{MarketConfig, NullSink};

    fn market() -> Market {
        let mut m = Market::new(&MarketConfig {
            symbols: vec![Symbol::new("BTCUSDT").unwrap()],
            seed: 1,
            trade_rate: 20.0,
            start_time_ms: 1_700_000_000_000,
            kline_push_ms: 2_000,
            kline_phase: Default::default(),
            history_limit: 100,
            history_candles: 0,
        });
        m.advance_to(
            1_700_000_000_000_000_000 + 300 * 1_000_000_000,
            &mut NullSink,
        );
        m
    }

    fn get(m: &Market, path: &str, query: &str) -> (u16, serde_json::Value) {
        get_in(TimeUnit::Millisecond, m, path, query)
    }

    fn get_in(unit: TimeUnit, m: &Market, path: &str, query: &str) -> (u16, serde_json::Value) {
        let r = respond(path, query, unit, Some(m), NOW_NS, 6000);
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    /// Server time of the requests: 1_700_000_300_123.456 ms.
    const NOW_NS: i64 = 1_700_000_300_123_456_789;

    #[test]
    fn microsecond_header_turns_every_time_field_into_microseconds() {
        let m = market();
        let query = "symbol=BTCUSDT&interval=1m&limit=3";
        let (_, ms) = get(&m, "/api/v3/klines", query);
        let (_, us) = get_in(TimeUnit::Microsecond, &m, "/api/v3/klines", query);
        for (a, b) in ms.as_array().unwrap().iter().zip(us.as_array().unwrap()) {
            assert_eq!(b[0].as_i64().unwrap(), a[0].as_i64().unwrap() * 1_000);
            assert_eq!(b[6].as_i64().unwrap(), a[6].as_i64().unwrap() * 1_000 + 999);
            assert_eq!(a.as_array().unwrap()[1..6], b.as_array().unwrap()[1..6]);
        }
        let (_, t) = get(&m, "/api/v3/time", "");
        assert_eq!(t["serverTime"], 1_700_000_300_123i64);
        let (_, t) = get_in(TimeUnit::Microsecond, &m, "/api/v3/time", "");
        assert_eq!(t["serverTime"], 1_700_000_300_123_456i64);
        let (_, info) = get_in(TimeUnit::Microsecond, &m, "/api/v3/exchangeInfo", "");
        assert_eq!(info["serverTime"], 1_700_000_300_123_456i64);
    }

    #[test]
    fn klines_follow_binance_parameters() {
        let m = market();
        let (status, body) = get(&m, "/api/v3/klines", "symbol=BTCUSDT&interval=1m");
        assert_eq!(status, 200);
        let rows = body.as_array().unwrap();
        // Five closed minutes and the open sixth.
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].as_array().unwrap().len(), 12);
        assert_eq!(
            rows[0][0],
            1_700_000_000_000i64 - 1_700_000_000_000 % 60_000
        );
        let (_, body) = get(&m, "/api/v3/klines", "symbol=BTCUSDT&interval=1m&limit=2");
        assert_eq!(body.as_array().unwrap().len(), 2);
        let (_, body) = get(
            &m,
            "/api/v3/klines",
            "symbol=BTCUSDT&interval=1s&limit=5000",
        );
        // 100 kept closed seconds and the open one; the limit is capped at 1000.
        assert_eq!(body.as_array().unwrap().len(), 101);
        for (query, code) in [
            ("symbol=NOPE&interval=1m", -1121),
            ("symbol=btcusdt&interval=1m", -1100),
            ("symbol=BTC%24USDT&interval=1m", -1100),
            ("symbol=ABCDEFGHIJKLMNOPQRSTU&interval=1m", -1100),
            ("symbol=BTC-USDT&interval=1m", -1121),
            ("symbol=BTCUSDT&interval=2m", -1120),
            ("interval=1m", -1102),
            ("symbol=BTCUSDT", -1102),
            ("symbol=BTCUSDT&interval=1m&startTime=abc", -1100),
            ("symbol=BTCUSDT&interval=1m&startTime=5&endTime=4", -1023),
            ("symbol=BTCUSDT&interval=1m&limit=0", -1130),
        ] {
            let (status, body) = get(&m, "/api/v3/klines", query);
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(code)),
                "{query}"
            );
        }
    }

    fn ids(body: &serde_json::Value) -> Vec<i64> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|a| a["a"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn agg_trades_follow_binance_parameters_and_make_up_the_klines() {
        let m = market();
        assert_eq!(request_weight("/api/v3/aggTrades", "symbol=BTCUSDT"), 4);
        let kept = m.symbols()[0].agg_trades();
        assert!(kept.len() > 2000, "{} kept", kept.len());
        let (first, newest) = (kept[0].agg_id as i64, kept[kept.len() - 1].agg_id as i64);
        // None of fromId, startTime, endTime: the newest 500, oldest first.
        let (status, body) = get(&m, "/api/v3/aggTrades", "symbol=BTCUSDT");
        assert_eq!(status, 200);
        assert_eq!(ids(&body), (newest - 499..=newest).collect::<Vec<_>>());
        let one = &body[0];
        let keys: Vec<&str> = one
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 8, "{one}");
        for k in ["a", "p", "q", "f", "l", "T", "m", "M"] {
            assert!(one.get(k).is_some(), "{k} in {one}");
        }
        assert!(one["p"].is_string() && one["q"].is_string());
        // fromId: from that id, inclusive; the limit is capped at 1000.
        let q = format!("symbol=BTCUSDT&fromId={}&limit=3", first + 10);
        assert_eq!(
            ids(&get(&m, "/api/v3/aggTrades", &q).1),
            [first + 10, first + 11, first + 12]
        );
        let q = format!("symbol=BTCUSDT&fromId={first}&limit=5000");
        let page = get(&m, "/api/v3/aggTrades", &q).1;
        assert_eq!(ids(&page), (first..first + 1000).collect::<Vec<_>>());
        // Each aggregate trade starts at the trade after the previous one's last.
        for w in page.as_array().unwrap().windows(2) {
            assert_eq!(w[1]["f"].as_i64(), Some(w[0]["l"].as_i64().unwrap() + 1));
        }
        let q = format!("symbol=BTCUSDT&fromId={}", newest + 1);
        assert!(ids(&get(&m, "/api/v3/aggTrades", &q).1).is_empty());
        // A time range (inclusive at both ends) holds exactly the trades of a 1m kline:
        // their count, volume and quote volume, as exact decimals.
        let (_, klines) = get(&m, "/api/v3/klines", "symbol=BTCUSDT&interval=1m&limit=3");
        let k = &klines[1];
        let (open, close) = (k[0].as_i64().unwrap(), k[6].as_i64().unwrap());
        let q = format!("symbol=BTCUSDT&startTime={open}&endTime={close}&limit=1000");
        let (_, body) = get(&m, "/api/v3/aggTrades", &q);
        let rows = body.as_array().unwrap();
        assert!(!rows.is_empty() && rows.len() < 1000);
        assert!(rows
            .iter()
            .all(|a| (open..=close).contains(&a["T"].as_i64().unwrap())));
        let dec = |v: &serde_json::Value| {
            v.as_str()
                .unwrap()
                .parse::<crate::market::Decimal>()
                .unwrap()
        };
        let trades: i64 = rows
            .iter()
            .map(|a| a["l"].as_i64().unwrap() - a["f"].as_i64().unwrap() + 1)
            .sum();
        let volume: crate::market::Decimal = rows.iter().map(|a| dec(&a["q"])).sum();
        let quote: crate::market::Decimal = rows.iter().map(|a| dec(&a["p"]) * dec(&a["q"])).sum();
        assert_eq!(trades, k[8].as_i64().unwrap());
        assert_eq!(volume, dec(&k[5]));
        assert_eq!(quote.normalize(), dec(&k[7]).normalize());
        // Microseconds: the times in µs, the rest unchanged.
        let (_, us) = get_in(TimeUnit::Microsecond, &m, "/api/v3/aggTrades", &q);
        assert_eq!(us[0]["a"], body[0]["a"]);
        let t_us = us[0]["T"].as_i64().unwrap();
        assert_eq!(t_us.div_euclid(1000), body[0]["T"].as_i64().unwrap());
        for (query, code) in [
            ("symbol=NOPE", -1121),
            ("symbol=btcusdt", -1100),
            ("", -1102),
            ("symbol=BTCUSDT&fromId=abc", -1100),
            ("symbol=BTCUSDT&fromId=-1", -1100),
            ("symbol=BTCUSDT&startTime=5&endTime=4", -1023),
            ("symbol=BTCUSDT&limit=0", -1130),
        ] {
            let (status, body) = get(&m, "/api/v3/aggTrades", query);
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(code)),
                "{query}"
            );
        }
    }

    #[test]
    fn historical_trades_follow_binance_parameters_and_make_up_the_aggregates() {
        let m = market();
        let path = "/api/v3/historicalTrades";
        assert_eq!(request_weight(path, "symbol=BTCUSDT"), 25);
        let aggs = m.symbols()[0].agg_trades();
        let (first, newest) = (
            aggs[0].first_trade_id as i64,
            aggs[aggs.len() - 1].last_trade_id as i64,
        );
        let trade_ids = |body: &serde_json::Value| -> Vec<i64> {
            body.as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap())
                .collect()
        };
        // No fromId: the newest 500, oldest first, in Binance's shape.
        let (status, body) = get(&m, path, "symbol=BTCUSDT");
        assert_eq!(status, 200);
        assert_eq!(
            trade_ids(&body),
            (newest - 499..=newest).collect::<Vec<_>>()
        );
        let keys: Vec<&str> = body[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        // (The parsed object lists its keys sorted.)
        assert_eq!(
            keys,
            [
                "id",
                "isBestMatch",
                "isBuyerMaker",
                "price",
                "qty",
                "quoteQty",
                "time"
            ]
        );
        // fromId, inclusive; the limit capped at 1000; nothing past the newest.
        let q = format!("symbol=BTCUSDT&fromId={}&limit=3", first + 5);
        assert_eq!(
            trade_ids(&get(&m, path, &q).1),
            [first + 5, first + 6, first + 7]
        );
        let q = format!("symbol=BTCUSDT&fromId={first}&limit=5000");
        let page = get(&m, path, &q).1;
        assert_eq!(trade_ids(&page), (first..first + 1000).collect::<Vec<_>>());
        let q = format!("symbol=BTCUSDT&fromId={}", newest + 1);
        assert!(trade_ids(&get(&m, path, &q).1).is_empty());
        // The raw trades of each aggregate trade: its price, time and side, and
        // quantities that add up to its quantity; quoteQty is price × qty.
        let dec = |v: &serde_json::Value| {
            v.as_str()
                .unwrap()
                .parse::<crate::market::Decimal>()
                .unwrap()
        };
        let rows = page.as_array().unwrap();
        for a in aggs
            .iter()
            .take_while(|a| (a.last_trade_id as i64) < first + 1000)
        {
            let of: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|t| {
                    (a.first_trade_id..=a.last_trade_id).contains(&(t["id"].as_u64().unwrap()))
                })
                .collect();
            assert_eq!(of.len() as u64, a.last_trade_id - a.first_trade_id + 1);
            let qty: crate::market::Decimal = of.iter().map(|t| dec(&t["qty"])).sum();
            assert_eq!(
                qty,
                dec(&serde_json::Value::from(super::units_string(i128::from(
                    a.qty
                ))))
            );
            for t in of {
                assert_eq!(
                    dec(&t["price"]),
                    dec(&serde_json::Value::from(super::units_string(i128::from(
                        a.price
                    ))))
                );
                assert_eq!(t["time"].as_i64(), Some(a.time_ns.div_euclid(1_000_000)));
                assert_eq!(t["isBuyerMaker"].as_bool(), Some(a.buyer_is_maker));
                assert_eq!(
                    dec(&t["quoteQty"]).normalize(),
                    (dec(&t["price"]) * dec(&t["qty"])).normalize()
                );
            }
        }
        for (query, code) in [
            ("symbol=NOPE", -1121),
            ("", -1102),
            ("symbol=BTCUSDT&fromId=abc", -1100),
            ("symbol=BTCUSDT&limit=0", -1130),
        ] {
            let (status, body) = get(&m, path, query);
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(code)),
                "{query}"
            );
        }
    }

    #[test]
    fn agg_trade_history_is_bounded_for_the_whole_market() {
        use crate::simulator::market::agg_trade_history_per_symbol as kept;
        assert_eq!(kept(1), 100_000);
        assert_eq!(kept(1000), 2_000);
        assert_eq!(kept(1_000_000), 1_000);
        assert!((1..5000).all(|n| kept(n) * n <= 2_000_000 || kept(n) == 1_000));
    }

    /// Binance takes `startTime`/`endTime` in ms or µs: 16 digits are microseconds.
    #[test]
    fn klines_accept_microsecond_start_and_end_times() {
        let m = market();
        let minute = 1_700_000_000_000i64 - 1_700_000_000_000 % 60_000;
        let opens = |query: &str| -> Vec<i64> {
            let (status, body) = get(&m, "/api/v3/klines", query);
            assert_eq!(status, 200, "{query}: {body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|k| k[0].as_i64().unwrap())
                .collect()
        };
        let (start, end) = (minute + 60_000, minute + 180_000);
        let in_ms = opens(&format!(
            "symbol=BTCUSDT&interval=1m&startTime={start}&endTime={end}"
        ));
        assert_eq!(in_ms, vec![start, start + 60_000, end]);
        let in_us = opens(&format!(
            "symbol=BTCUSDT&interval=1m&startTime={}&endTime={}",
            start * 1_000,
            end * 1_000 + 999
        ));
        assert_eq!(in_us, in_ms);
        // A start a microsecond after an open excludes that open; an end a microsecond
        // before one excludes it.
        let in_us = opens(&format!(
            "symbol=BTCUSDT&interval=1m&startTime={}&endTime={}",
            start * 1_000 + 1,
            end * 1_000 - 1
        ));
        assert_eq!(in_us, vec![start + 60_000]);
        assert_eq!(
            opens(&format!(
                "symbol=BTCUSDT&interval=1m&endTime={}",
                start * 1_000
            )),
            vec![minute, start]
        );
        // Units may be mixed; the order is checked after conversion.
        let (status, body) = get(
            &m,
            "/api/v3/klines",
            &format!(
                "symbol=BTCUSDT&interval=1m&startTime={}&endTime={start}",
                (start + 1) * 1_000
            ),
        );
        assert_eq!((status, body["code"].as_i64()), (400, Some(-1023)));
    }

    /// Binance: "If timeZone provided, kline intervals are interpreted in that timezone
    /// instead of UTC"; hours (`8`) or hours and minutes (`-1:00`, `05:45`) from -12:00
    /// to +14:00; startTime and endTime stay UTC.
    #[test]
    fn klines_time_zone_shifts_the_intervals() {
        let m = market();
        // The market runs 2023-11-14 22:13:20 to 22:18:20 UTC.
        let day = 1_699_920_000_000i64;
        let hour = 3_600_000i64;
        let rows = |query: &str| -> Vec<serde_json::Value> {
            let (status, body) = get(&m, "/api/v3/klines", query);
            assert_eq!(status, 200, "{query}: {body}");
            body.as_array().unwrap().clone()
        };
        let utc = rows("symbol=BTCUSDT&interval=1d");
        assert_eq!(utc.len(), 1);
        assert_eq!(utc[0][0], day);
        for (query, open, close) in [
            (
                "interval=1d&timeZone=8",
                day + 16 * hour,
                day + 40 * hour - 1,
            ),
            (
                "interval=1d&timeZone=%2B08:00",
                day + 16 * hour,
                day + 40 * hour - 1,
            ),
            (
                "interval=1d&timeZone=-1:00",
                day + hour,
                day + 25 * hour - 1,
            ),
            (
                "interval=12h&timeZone=8",
                day + 16 * hour,
                day + 28 * hour - 1,
            ),
            (
                "interval=1w&timeZone=14",
                1_699_783_200_000,
                1_700_387_999_999,
            ),
            (
                "interval=1M&timeZone=-12:00",
                1_698_840_000_000,
                1_701_431_999_999,
            ),
            // Intervals the offset is a multiple of are unchanged.
            (
                "interval=4h&timeZone=8",
                day + 20 * hour,
                day + 24 * hour - 1,
            ),
            ("interval=1d&timeZone=0", day, day + 24 * hour - 1),
        ] {
            let got = rows(&format!("symbol=BTCUSDT&{query}"));
            assert_eq!(got.len(), 1, "{query}");
            assert_eq!(
                (got[0][0].as_i64(), got[0][6].as_i64()),
                (Some(open), Some(close)),
                "{query}"
            );
            // All five minutes fall into the one candle either way: same prices and sums.
            for field in [1, 2, 3, 4, 5, 7, 8, 9, 10] {
                assert_eq!(got[0][field], utc[0][field], "{query} field {field}");
            }
        }
        // 05:45 moves hours to a quarter past: the run at 22:15 splits, two candles.
        for interval in ["1h", "30m"] {
            let got = rows(&format!(
                "symbol=BTCUSDT&interval={interval}&timeZone=05:45"
            ));
            assert_eq!(got.len(), 2, "{interval}");
            assert_eq!(got[1][0], day + 22 * hour + hour / 4, "{interval}");
            assert_eq!(got[0][6], day + 22 * hour + hour / 4 - 1, "{interval}");
            assert_eq!(got[0][1], utc[0][1]);
            assert_eq!(got[1][4], utc[0][4]);
            let trades = got[0][8].as_i64().unwrap() + got[1][8].as_i64().unwrap();
            assert_eq!(Some(trades), utc[0][8].as_i64());
        }
        assert_eq!(
            rows("symbol=BTCUSDT&interval=1h&timeZone=05:45")[0][0],
            day + 21 * hour + hour / 4
        );
        // Shifted candles are filtered by UTC start and end times.
        let later = rows(&format!(
            "symbol=BTCUSDT&interval=1h&timeZone=05:45&startTime={}",
            day + 22 * hour
        ));
        assert_eq!(later.len(), 1);
        let quarter = rows("symbol=BTCUSDT&interval=1m&timeZone=05:45&startTime=1700000040000&endTime=1700000100000");
        assert_eq!(quarter.len(), 2);
        for bad in [
            "15", "-12:01", "14:01", "abc", "8:60", "8:5", "", "+", "1.5",
        ] {
            let (status, body) = get(
                &m,
                "/api/v3/klines",
                &format!("symbol=BTCUSDT&interval=1d&timeZone={bad}"),
            );
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(-1130)),
                "{bad:?}: {body}"
            );
        }
    }

    #[test]
    fn a_symbol_outside_binance_syntax_is_illegal_characters() {
        let m = market();
        for path in ["/api/v3/klines", "/api/v3/depth", "/api/v3/exchangeInfo"] {
            let (status, body) = get(&m, path, "symbol=btcusdt&interval=1m");
            assert_eq!(status, 400, "{path}");
            assert_eq!(
                body,
                serde_json::json!({"code": -1100, "msg": "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."}),
                "{path}"
            );
        }
    }

    /// Every spot symbol on Binance carries these filters, in this order and shape.
    #[test]
    fn exchange_info_lists_binance_spot_filters() {
        let m = market();
        let (_, info) = get(&m, "/api/v3/exchangeInfo", "symbol=BTCUSDT");
        let filters = info["symbols"][0]["filters"].as_array().unwrap();
        let types: Vec<&str> = filters
            .iter()
            .map(|f| f["filterType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PRICE_FILTER",
                "LOT_SIZE",
                "ICEBERG_PARTS",
                "MARKET_LOT_SIZE",
                "TRAILING_DELTA",
                "PERCENT_PRICE_BY_SIDE",
                "NOTIONAL",
                "MAX_NUM_ORDERS",
                "MAX_NUM_ALGO_ORDERS",
            ]
        );
        let keys = |f: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = f.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let expect = [
            ("ICEBERG_PARTS", vec!["filterType", "limit"]),
            (
                "MARKET_LOT_SIZE",
                vec!["filterType", "maxQty", "minQty", "stepSize"],
            ),
            (
                "TRAILING_DELTA",
                vec![
                    "filterType",
                    "maxTrailingAboveDelta",
                    "maxTrailingBelowDelta",
                    "minTrailingAboveDelta",
                    "minTrailingBelowDelta",
                ],
            ),
            (
                "PERCENT_PRICE_BY_SIDE",
                vec![
                    "askMultiplierDown",
                    "askMultiplierUp",
                    "avgPriceMins",
                    "bidMultiplierDown",
                    "bidMultiplierUp",
                    "filterType",
                ],
            ),
            (
                "NOTIONAL",
                vec![
                    "applyMaxToMarket",
                    "applyMinToMarket",
                    "avgPriceMins",
                    "filterType",
                    "maxNotional",
                    "minNotional",
                ],
            ),
            ("MAX_NUM_ORDERS", vec!["filterType", "maxNumOrders"]),
            (
                "MAX_NUM_ALGO_ORDERS",
                vec!["filterType", "maxNumAlgoOrders"],
            ),
        ];
        for (filter, (name, fields)) in filters[2..].iter().zip(expect) {
            assert_eq!(filter["filterType"], name);
            assert_eq!(keys(filter), fields, "{name}");
        }
        let notional = &filters[6];
        assert_eq!(notional["minNotional"], "5.00000000");
        assert_eq!(notional["applyMinToMarket"], true);
        assert_eq!(notional["applyMaxToMarket"], false);
        assert!(notional["avgPriceMins"].is_u64());
        assert!(filters[2]["limit"].is_u64());
        assert!(filters[5]["bidMultiplierUp"].is_string());
        assert!(filters[7]["maxNumOrders"].is_u64());
        assert_eq!(filters[3]["minQty"], "0.00000000");
    }

    #[test]
    fn depth_and_exchange_info() {
        let m = market();
        let (status, body) = get(&m, "/api/v3/depth", "symbol=BTCUSDT&limit=5");
        assert_eq!(status, 200);
        assert_eq!(body["bids"].as_array().unwrap().len(), 5);
        assert!(body["lastUpdateId"].as_u64().unwrap() > 0);
        let (_, info) = get(&m, "/api/v3/exchangeInfo", "");
        let s = &info["symbols"][0];
        assert_eq!(s["symbol"], "BTCUSDT");
        assert_eq!(s["status"], "TRADING");
        assert_eq!(s["filters"][0]["tickSize"], "0.01000000");
        assert_eq!(s["filters"][1]["stepSize"], "0.00001000");
        let (_, info) = get(&m, "/api/v3/exchangeInfo", "symbols=%5B%22BTCUSDT%22%5D");
        assert_eq!(info["symbols"].as_array().unwrap().len(), 1);
        let (status, _) = get(&m, "/api/v3/exchangeInfo", "symbol=XYZ");
        assert_eq!(status, 400);
        assert_eq!(request_weight("/api/v3/depth", "symbol=X&limit=1000"), 50);
        assert_eq!(request_weight("/api/v3/depth", "symbol=X&limit=9999"), 250);
        assert_eq!(request_weight("/api/v3/klines", ""), 2);
    }

    #[test]
    fn weight_budget_resets_each_minute() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut w = WeightLimiter::new(10);
        assert_eq!(w.charge(ip, 4, 120_500), Ok(4));
        assert_eq!(w.charge(ip, 6, 121_000), Ok(10));
        assert_eq!(
            w.charge(ip, 1, 150_200),
            Err(OverLimit {
                used: 10,
                retry_after_s: 30
            })
        );
        assert_eq!(w.charge(ip, 1, 180_000), Ok(1));
    }
}
