//! Market vocabulary shared by every role: symbols, kline intervals, exact decimals,
//! candles and the other owned, fixed-size records that cross core boundaries.
//!
//! Everything here is plain data: `Copy`, no heap, no I/O, so a value can be moved
//! through a lock-free ring as one fixed-size message.

use std::fmt;
use std::str::FromStr;

/// Prices and quantities: an exact decimal that keeps the scale it was received with,
/// so `"0.01634790"` prints back as `"0.01634790"` (never rounded through `f64`).
pub use rust_decimal::Decimal;

/// Longest symbol we accept. Binance spot symbols are at most 20 characters today;
/// 24 leaves room while keeping `Symbol` (and every message carrying it) small.
pub const SYMBOL_MAX_LEN: usize = 24;

/// A hash map for the per-record lookups (a symbol's slot, a series of the recent store,
/// a client's conflation key, the sinks' conflation and de-duplication keys): foldhash,
/// not the standard SipHash, which was about 5 % of the shard's time at 10,000
/// updates/s. Seeded per process; its keys are symbols, timeframes and ids from the
/// exchange's records (or another instance's signed ones), never what a dashboard
/// client sends.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set of the same kind (a batch's trade ids).
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// An exchange symbol such as `BTCUSDT`, stored inline (no heap), always upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_MAX_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol is empty")]
    Empty,
    #[error("symbol is longer than {SYMBOL_MAX_LEN} characters")]
    TooLong,
    #[error("symbol may contain only ASCII letters and digits")]
    BadChar,
}

impl Symbol {
    /// Parses a symbol in either case (stream names use lower case, events upper case).
    pub fn new(text: &str) -> Result<Symbol, SymbolError> {
        Symbol::from_ascii(text.as_bytes())
    }

    /// [`Symbol::new`] of bytes, which need no UTF-8 check first: only ASCII letters and
    /// digits are accepted. The parser takes a symbol straight from a frame's bytes.
    pub fn from_ascii(raw: &[u8]) -> Result<Symbol, SymbolError> {
        if raw.is_empty() {
            return Err(SymbolError::Empty);
        }
        if raw.len() > SYMBOL_MAX_LEN {
            return Err(SymbolError::TooLong);
        }
        let mut bytes = [0u8; SYMBOL_MAX_LEN];
        for (slot, &b) in bytes.iter_mut().zip(raw) {
            if !b.is_ascii_alphanumeric() {
                return Err(SymbolError::BadChar);
            }
            *slot = b.to_ascii_uppercase();
        }
        Ok(Symbol {
            len: raw.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored, so this cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The symbol's ASCII bytes: what the record writers copy, with no UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The lower-case form used in stream names (`btcusdt@kline_1m`).
    pub fn lower(&self) -> LowerSymbol {
        let mut out = *self;
        out.bytes[..out.len as usize].make_ascii_lowercase();
        LowerSymbol(out)
    }

    /// A stable hash (FNV-1a) used to spread symbols over shards and instances; stable
    /// across builds and platforms, unlike `std`'s randomised hasher.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &self.bytes[..self.len as usize] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// Lower-case rendering of a symbol for stream names.
#[derive(Clone, Copy)]
pub struct LowerSymbol(Symbol);

impl fmt::Display for LowerSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.0.bytes[..self.0.len as usize]).unwrap_or(""))
    }
}

impl FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Symbol::new(&text).map_err(serde::de::Error::custom)
    }
}

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-01 was a Thursday; Binance weeks open on Monday 00:00 UTC, four days later.
const WEEK_ORIGIN_MS: i64 = 4 * DAY_MS;

/// A Binance kline interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Interval {
    S1,
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    Mo1,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval; allowed: 1s,1m,3m,5m,15m,30m,1h,2h,4h,6h,8h,12h,1d,3d,1w,1M")]
pub struct IntervalError;

impl Interval {
    pub const ALL: [Interval; 16] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    pub fn parse(text: &str) -> Result<Interval, IntervalError> {
        Interval::from_bytes(text.as_bytes())
    }

    /// [`Interval::parse`] of bytes (the parser's, taken from a frame without a UTF-8
    /// check).
    pub fn from_bytes(raw: &[u8]) -> Result<Interval, IntervalError> {
        Interval::ALL
            .iter()
            .copied()
            .find(|i| i.as_str().as_bytes() == raw)
            .ok_or(IntervalError)
    }

    /// Fixed length in milliseconds; `None` for the calendar month.
    pub fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Interval::S1 => SECOND_MS,
            Interval::M1 => MINUTE_MS,
            Interval::M3 => 3 * MINUTE_MS,
            Interval::M5 => 5 * MINUTE_MS,
            Interval::M15 => 15 * MINUTE_MS,
            Interval::M30 => 30 * MINUTE_MS,
            Interval::H1 => HOUR_MS,
            Interval::H2 => 2 * HOUR_MS,
            Interval::H4 => 4 * HOUR_MS,
            Interval::H6 => 6 * HOUR_MS,
            Interval::H8 => 8 * HOUR_MS,
            Interval::H12 => 12 * HOUR_MS,
            Interval::D1 => DAY_MS,
            Interval::D3 => 3 * DAY_MS,
            Interval::W1 => 7 * DAY_MS,
            Interval::Mo1 => return None,
        })
    }

    /// Open time (ms) of the candle that contains `t_ms`.
    pub fn open_time(self, t_ms: i64) -> i64 {
        match self {
            Interval::W1 => {
                let w = 7 * DAY_MS;
                (t_ms - WEEK_ORIGIN_MS).div_euclid(w) * w + WEEK_ORIGIN_MS
            }
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
            other => {
                let len = other.fixed_ms().unwrap_or(MINUTE_MS);
                t_ms.div_euclid(len) * len
            }
        }
    }

    /// Open time (ms) of the candle after the one opening at `open_ms`.
    pub fn next_open(self, open_ms: i64) -> i64 {
        match self.fixed_ms() {
            Some(len) => open_ms.saturating_add(len),
            None => {
                let (y, m, _) = civil_from_days(open_ms.div_euclid(DAY_MS));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1) * DAY_MS
            }
        }
    }

    /// Binance's close time: one millisecond before the next open.
    pub fn close_time(self, open_ms: i64) -> i64 {
        self.next_open(open_ms) - 1
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::parse(s)
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Interval::parse(&text).map_err(serde::de::Error::custom)
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain), for month boundaries.
/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One kline (candle) as Binance defines it; identified by (symbol, interval, open_time_ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    pub symbol: Symbol,
    pub interval: Interval,
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub quote_volume: Decimal,
    pub taker_buy_base: Decimal,
    pub taker_buy_quote: Decimal,
    pub trades: u64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    /// `x` in the kline event: this is the final update of the candle.
    pub closed: bool,
    /// Exchange event time of the update that produced this state, microseconds.
    pub event_time_us: i64,
}

/// A single trade (`<symbol>@trade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub symbol: Symbol,
    pub trade_id: u64,
    pub price: Decimal,
    pub quantity: Decimal,
    pub trade_time_ms: i64,
    pub buyer_is_maker: bool,
    pub event_time_us: i64,
}

/// The symbol part of a diff depth stream's name, as written: `<symbol>@depth` and
/// `<symbol>@depth@100ms`, not the partial depth `<symbol>@depth20`.
pub fn diff_depth_stream_symbol(stream: &str) -> Option<&str> {
    let (symbol, kind) = stream.split_once('@')?;
    (kind == "depth" || kind.starts_with("depth@")).then_some(symbol)
}

/// An aggregated trade (`<symbol>@aggTrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggTrade {
    pub symbol: Symbol,
    pub agg_trade_id: u64,
    pub price: Decimal,
    pub quantity: Decimal,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub trade_time_ms: i64,
    pub buyer_is_maker: bool,
    pub event_time_us: i64,
}

/// Best bid and offer (`<symbol>@bookTicker`); spot carries no event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookTicker {
    pub symbol: Symbol,
    pub update_id: u64,
    pub bid_price: Decimal,
    pub bid_qty: Decimal,
    pub ask_price: Decimal,
    pub ask_qty: Decimal,
}

/// One price level of an order book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Level {
    pub price: Decimal,
    pub quantity: Decimal,
}

/// Constructors for unit tests across the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A 1m candle of `symbol` with every price and quantity 1, opening at `open_ms`.
    pub fn candle(symbol: &str, open_ms: i64, event_time_us: i64, closed: bool) -> Candle {
        let one = Decimal::new(1, 0);
        Candle {
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::M1,
            open_time_ms: open_ms,
            close_time_ms: Interval::M1.close_time(open_ms),
            open: one,
            high: one,
            low: one,
            close: one,
            volume: one,
            quote_volume: one,
            taker_buy_base: one,
            taker_buy_quote: one,
            trades: 1,
            first_trade_id: 1,
            last_trade_id: 1,
            closed,
            event_time_us,
        }
    }

    /// A trade of `symbol` with id `id`: price 100.5, quantity 0.250, at `id` seconds.
    pub fn trade(symbol: &str, id: u64) -> Trade {
        Trade {
            symbol: Symbol::new(symbol).unwrap(),
            trade_id: id,
            price: Decimal::new(1005, 1),
            quantity: Decimal::new(250, 3),
            trade_time_ms: id as i64 * 1000,
            buyer_is_maker: id % 2 == 0,
            event_time_us: id as i64 * 1_000_000 + 7,
        }
    }

    /// An aggregate trade of `symbol` with id `id`, of trades `2 id` and `2 id + 1`.
    pub fn agg_trade(symbol: &str, id: u64) -> AggTrade {
        AggTrade {
            symbol: Symbol::new(symbol).unwrap(),
            agg_trade_id: id,
            price: Decimal::new(1005, 1),
            quantity: Decimal::new(250, 3),
            first_trade_id: 2 * id,
            last_trade_id: 2 * id + 1,
            trade_time_ms: id as i64 * 1000,
            buyer_is_maker: id % 2 == 1,
            event_time_us: id as i64 * 1_000_000 + 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_round_trips_and_lowers() {
        let s = Symbol::new("btcUSDT").unwrap();
        assert_eq!(s.as_str(), "BTCUSDT");
        assert_eq!(s.lower().to_string(), "btcusdt");
        assert_eq!(Symbol::new(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::new("BTC-USDT"), Err(SymbolError::BadChar));
        assert_eq!(Symbol::new(&"A".repeat(25)), Err(SymbolError::TooLong));
        // From bytes, as the parser takes it: the same checks, and bytes that are not
        // ASCII (here "É" in UTF-8, and a lone continuation byte) are refused.
        assert_eq!(Symbol::from_ascii(b"btcusdt"), Ok(s));
        assert_eq!(s.as_bytes(), b"BTCUSDT");
        assert_eq!(
            Symbol::from_ascii(b"BTC\xC3\x89"),
            Err(SymbolError::BadChar)
        );
        assert_eq!(Symbol::from_ascii(b"\x80"), Err(SymbolError::BadChar));
        assert_eq!(Symbol::from_ascii(b""), Err(SymbolError::Empty));
    }

    #[test]
    fn interval_names_round_trip() {
        for i in Interval::ALL {
            assert_eq!(Interval::parse(i.as_str()), Ok(i));
        }
        assert!(Interval::parse("2m").is_err());
        assert_eq!(Interval::from_bytes(b"1M"), Ok(Interval::Mo1));
        assert!(Interval::from_bytes(b"1m\xFF").is_err());
        assert!(Interval::from_bytes(b"").is_err());
    }

    #[test]
    fn interval_boundaries_match_binance() {
        // 2023-01-01T00:03:02.136Z, a Sunday.
        let t = 1_672_531_382_136;
        assert_eq!(Interval::M1.open_time(t), 1_672_531_380_000);
        assert_eq!(
            Interval::M1.close_time(1_672_531_380_000),
            1_672_531_439_999
        );
        assert_eq!(Interval::H1.open_time(t), 1_672_531_200_000);
        // The week containing Sunday 2023-01-01 opened Monday 2022-12-26.
        assert_eq!(Interval::W1.open_time(t), 1_672_012_800_000);
        assert_eq!(Interval::Mo1.open_time(t), 1_672_531_200_000);
        // February 2024 (leap year) closes at the end of the 29th.
        let feb = 1_706_745_600_000; // 2024-02-01
        assert_eq!(Interval::Mo1.next_open(feb), 1_709_251_200_000); // 2024-03-01
        assert_eq!(
            Interval::Mo1.next_open(1_701_388_800_000),
            1_704_067_200_000
        ); // Dec→Jan
    }

    #[test]
    fn decimals_keep_their_scale() {
        let d: Decimal = "0.01634790".parse().unwrap();
        assert_eq!(d.to_string(), "0.01634790");
        let d: Decimal = "148976.11427815".parse().unwrap();
        assert_eq!(d.to_string(), "148976.11427815");
    }
}
