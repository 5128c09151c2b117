//! The fast path: Binance's own frames, read in the exact layout Binance writes them.
//!
//! Runs on: every shard core, inside [`super::Parser`], before simd-json. Owns: nothing.
//! In: a frame, read-only. Out: a [`Fast`] decoding, or `None` to hand the frame to the
//! general simd-json path.
//!
//! Binance writes each event type with the same keys in the same order, compact, with
//! plain ASCII strings. For such a frame, building simd-json's tape and then looking the
//! keys up again costs more than everything else together (about 350 ns of a 480 ns
//! combined kline on the reference machine). This reader instead walks the frame once,
//! matching each expected key and separator as a literal and decoding each value where
//! it stands.
//!
//! It is strict by construction, so the general path stays the single authority: any
//! byte that differs from the expected layout (another key order, whitespace, an escape
//! or non-ASCII byte in a string, a float, an unknown field, a number out of range, …)
//! returns `None`, and the general path then decodes the frame or reports the error.
//! Everything consumed is validated (literals byte for byte, strings as printable ASCII
//! without escapes, integers as JSON integers), and the whole frame must be consumed, so
//! a frame accepted here is valid JSON that the general path decodes to the same message
//! (`tests/wire.rs` checks both on the capture, the fixtures and damaged frames).

use std::ops::Range;

use super::decimal::parse_decimal_bytes;
use super::{event_time_us, record_time_ms};
use crate::market::{AggTrade, BookTicker, Candle, Decimal, Interval, Level, Symbol, Trade};
use crate::wire::TimeUnit;

/// A frame decoded by the fast path. Strings are returned as byte ranges of the frame so
/// that the frame is not borrowed when the fast path declines it.
pub(super) struct Fast {
    /// The combined-stream name, if the frame had the envelope.
    pub stream: Option<Range<usize>>,
    pub event: FastEvent,
}

pub(super) enum FastEvent {
    Kline(Candle),
    Trade(Trade),
    AggTrade(AggTrade),
    BookTicker(BookTicker),
    /// A diff; its levels were appended to the level scratch, bids first.
    DepthUpdate {
        symbol: Symbol,
        event_time_us: i64,
        first_update_id: u64,
        final_update_id: u64,
        bid_count: usize,
    },
    /// A partial book; its levels were appended to the level scratch, bids first.
    PartialDepth {
        last_update_id: u64,
        bid_count: usize,
    },
}

/// Decodes `frame` if it has one of Binance's exact layouts. `levels` must be empty.
#[inline(always)]
pub(super) fn read(frame: &[u8], time_unit: TimeUnit, levels: &mut Vec<Level>) -> Option<Fast> {
    let mut r = Reader {
        bytes: frame,
        at: 0,
    };
    let stream = if r.literal(br#"{"stream":""#) {
        let name = r.string()?;
        r.expect(br#","data":"#)?;
        Some(name)
    } else {
        None
    };
    let event = r.event(time_unit, levels)?;
    if stream.is_some() {
        r.expect(b"}")?;
    }
    r.end()?;
    Some(Fast { stream, event })
}

/// A cursor over the frame; every method either consumes what it expects or declines.
struct Reader<'f> {
    bytes: &'f [u8],
    at: usize,
}

impl Reader<'_> {
    #[inline(always)]
    fn event(&mut self, time_unit: TimeUnit, levels: &mut Vec<Level>) -> Option<FastEvent> {
        // The most frequent shapes first.
        if self.literal(br#"{"e":"depthUpdate","E":"#) {
            return self.depth_update(time_unit, levels);
        }
        if self.literal(br#"{"u":"#) {
            return self.book_ticker();
        }
        if self.literal(br#"{"e":"aggTrade","E":"#) {
            return self.agg_trade(time_unit);
        }
        if self.literal(br#"{"e":"trade","E":"#) {
            return self.trade(time_unit);
        }
        if self.literal(br#"{"e":"kline","E":"#) {
            return self.kline(time_unit);
        }
        if self.literal(br#"{"lastUpdateId":"#) {
            return self.partial_depth(levels);
        }
        None
    }

    /// `{"e":"kline","E":…,"s":"…","k":{"t":…,…,"B":"…"}}` (after `"E":`).
    #[inline(always)]
    fn kline(&mut self, time_unit: TimeUnit) -> Option<FastEvent> {
        let event_time = self.i64()?;
        self.expect(br#","s":""#)?;
        let symbol = self.symbol()?;
        self.expect(br#","k":{"t":"#)?;
        let open_time = self.i64()?;
        self.expect(br#","T":"#)?;
        let close_time = self.i64()?;
        self.expect(br#","s":""#)?;
        self.string()?;
        self.expect(br#","i":""#)?;
        let interval = Interval::from_bytes(self.bytes.get(self.string()?)?).ok()?;
        self.expect(br#","f":"#)?;
        let first_trade_id = self.i64()?;
        self.expect(br#","L":"#)?;
        let last_trade_id = self.i64()?;
        self.expect(br#","o":""#)?;
        let open = self.decimal()?;
        self.expect(br#","c":""#)?;
        let close = self.decimal()?;
        self.expect(br#","h":""#)?;
        let high = self.decimal()?;
        self.expect(br#","l":""#)?;
        let low = self.decimal()?;
        self.expect(br#","v":""#)?;
        let volume = self.decimal()?;
        self.expect(br#","n":"#)?;
        let trades = self.u64()?;
        self.expect(br#","x":"#)?;
        let closed = self.bool()?;
        self.expect(br#","q":""#)?;
        let quote_volume = self.decimal()?;
        self.expect(br#","V":""#)?;
        let taker_buy_base = self.decimal()?;
        self.expect(br#","Q":""#)?;
        let taker_buy_quote = self.decimal()?;
        self.expect(br#","B":""#)?;
        self.string()?;
        self.expect(b"}}")?;
        Some(FastEvent::Kline(Candle {
            symbol,
            interval,
            open_time_ms: record_time_ms(open_time, time_unit)?,
            close_time_ms: record_time_ms(close_time, time_unit)?,
            open,
            high,
            low,
            close,
            volume,
            quote_volume,
            taker_buy_base,
            taker_buy_quote,
            trades,
            first_trade_id,
            last_trade_id,
            closed,
            event_time_us: event_time_us(event_time, time_unit)?,
        }))
    }

    /// `{"e":"trade","E":…,"s":"…","t":…,"p":"…","q":"…","T":…,"m":…,"M":…}`.
    #[inline(always)]
    fn trade(&mut self, time_unit: TimeUnit) -> Option<FastEvent> {
        let event_time = self.i64()?;
        self.expect(br#","s":""#)?;
        let symbol = self.symbol()?;
        self.expect(br#","t":"#)?;
        let trade_id = self.u64()?;
        self.expect(br#","p":""#)?;
        let price = self.decimal()?;
        self.expect(br#","q":""#)?;
        let quantity = self.decimal()?;
        self.expect(br#","T":"#)?;
        let trade_time = self.i64()?;
        self.expect(br#","m":"#)?;
        let buyer_is_maker = self.bool()?;
        self.expect(br#","M":"#)?;
        self.bool()?;
        self.expect(b"}")?;
        Some(FastEvent::Trade(Trade {
            symbol,
            trade_id,
            price,
            quantity,
            trade_time_ms: record_time_ms(trade_time, time_unit)?,
            buyer_is_maker,
            event_time_us: event_time_us(event_time, time_unit)?,
        }))
    }

    /// `{"e":"aggTrade","E":…,"s":"…","a":…,"p":"…","q":"…","f":…,"l":…,"T":…,"m":…,"M":…}`.
    #[inline(always)]
    fn agg_trade(&mut self, time_unit: TimeUnit) -> Option<FastEvent> {
        let event_time = self.i64()?;
        self.expect(br#","s":""#)?;
        let symbol = self.symbol()?;
        self.expect(br#","a":"#)?;
        let agg_trade_id = self.u64()?;
        self.expect(br#","p":""#)?;
        let price = self.decimal()?;
        self.expect(br#","q":""#)?;
        let quantity = self.decimal()?;
        self.expect(br#","f":"#)?;
        let first_trade_id = self.u64()?;
        self.expect(br#","l":"#)?;
        let last_trade_id = self.u64()?;
        self.expect(br#","T":"#)?;
        let trade_time = self.i64()?;
        self.expect(br#","m":"#)?;
        let buyer_is_maker = self.bool()?;
        self.expect(br#","M":"#)?;
        self.bool()?;
        self.expect(b"}")?;
        Some(FastEvent::AggTrade(AggTrade {
            symbol,
            agg_trade_id,
            price,
            quantity,
            first_trade_id,
            last_trade_id,
            trade_time_ms: record_time_ms(trade_time, time_unit)?,
            buyer_is_maker,
            event_time_us: event_time_us(event_time, time_unit)?,
        }))
    }

    /// `{"u":…,"s":"…","b":"…","B":"…","a":"…","A":"…"}` (after `{"u":`).
    #[inline(always)]
    fn book_ticker(&mut self) -> Option<FastEvent> {
        let update_id = self.u64()?;
        self.expect(br#","s":""#)?;
        let symbol = self.symbol()?;
        self.expect(br#","b":""#)?;
        let bid_price = self.decimal()?;
        self.expect(br#","B":""#)?;
        let bid_qty = self.decimal()?;
        self.expect(br#","a":""#)?;
        let ask_price = self.decimal()?;
        self.expect(br#","A":""#)?;
        let ask_qty = self.decimal()?;
        self.expect(b"}")?;
        Some(FastEvent::BookTicker(BookTicker {
            symbol,
            update_id,
            bid_price,
            bid_qty,
            ask_price,
            ask_qty,
        }))
    }

    /// `{"e":"depthUpdate","E":…,"s":"…","U":…,"u":…,"b":[…],"a":[…]}`.
    #[inline(always)]
    fn depth_update(&mut self, time_unit: TimeUnit, levels: &mut Vec<Level>) -> Option<FastEvent> {
        let event_time = self.i64()?;
        self.expect(br#","s":""#)?;
        let symbol = self.symbol()?;
        self.expect(br#","U":"#)?;
        let first_update_id = self.u64()?;
        self.expect(br#","u":"#)?;
        let final_update_id = self.u64()?;
        self.expect(br#","b":"#)?;
        self.levels(levels)?;
        let bid_count = levels.len();
        self.expect(br#","a":"#)?;
        self.levels(levels)?;
        self.expect(b"}")?;
        Some(FastEvent::DepthUpdate {
            symbol,
            event_time_us: event_time_us(event_time, time_unit)?,
            first_update_id,
            final_update_id,
            bid_count,
        })
    }

    /// `{"lastUpdateId":…,"bids":[…],"asks":[…]}` (after `{"lastUpdateId":`).
    #[inline(always)]
    fn partial_depth(&mut self, levels: &mut Vec<Level>) -> Option<FastEvent> {
        let last_update_id = self.u64()?;
        self.expect(br#","bids":"#)?;
        self.levels(levels)?;
        let bid_count = levels.len();
        self.expect(br#","asks":"#)?;
        self.levels(levels)?;
        self.expect(b"}")?;
        Some(FastEvent::PartialDepth {
            last_update_id,
            bid_count,
        })
    }

    /// `[["price","qty"],…]`, appended to `out`.
    #[inline(always)]
    fn levels(&mut self, out: &mut Vec<Level>) -> Option<()> {
        self.expect(b"[")?;
        if self.literal(b"]") {
            return Some(());
        }
        loop {
            self.expect(br#"[""#)?;
            let price = self.decimal()?;
            self.expect(br#",""#)?;
            let quantity = self.decimal()?;
            self.expect(b"]")?;
            out.push(Level { price, quantity });
            if self.literal(b"]") {
                return Some(());
            }
            self.expect(b",")?;
        }
    }

    /// Consumes `expected` if the frame continues with it.
    #[inline(always)]
    fn literal(&mut self, expected: &[u8]) -> bool {
        let end = self.at + expected.len();
        if self.bytes.get(self.at..end) == Some(expected) {
            self.at = end;
            true
        } else {
            false
        }
    }

    #[inline(always)]
    fn expect(&mut self, expected: &[u8]) -> Option<()> {
        self.literal(expected).then_some(())
    }

    /// The rest of a string whose opening quote was consumed, through its closing quote.
    /// Only printable ASCII without escapes is accepted: exactly the strings that JSON
    /// and simd-json leave as they are.
    #[inline(always)]
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        // Eight bytes at a time while the frame has them, then byte by byte; either way
        // the first byte that is not plain string content must be the closing quote.
        let mut len = 0;
        let mut words = rest.chunks_exact(8);
        for word in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let special = special_bytes(u64::from_le_bytes(bytes));
            if special != 0 {
                len += (special.trailing_zeros() / 8) as usize;
                return self.close_string(start, len);
            }
            len += 8;
        }
        for &b in words.remainder() {
            if !is_plain(b) {
                return self.close_string(start, len);
            }
            len += 1;
        }
        None
    }

    /// Ends the string at `start + len` if the byte there is its closing quote.
    #[inline(always)]
    fn close_string(&mut self, start: usize, len: usize) -> Option<Range<usize>> {
        let end = start + len;
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some(start..end)
    }

    /// A symbol, taken from its bytes: [`Self::string`] let only printable ASCII through
    /// and the symbol's own check lets only letters and digits, so no UTF-8 pass is
    /// needed (it was 2 % of the shard's time at 10,000 updates/s).
    #[inline(always)]
    fn symbol(&mut self) -> Option<Symbol> {
        Symbol::from_ascii(self.bytes.get(self.string()?)?).ok()
    }

    /// A price or quantity; a negative one is left to the general path, which
    /// rejects it.
    #[inline(always)]
    fn decimal(&mut self) -> Option<Decimal> {
        let text = self.bytes.get(self.string()?)?;
        if text.first() == Some(&b'-') {
            return None;
        }
        parse_decimal_bytes(text).ok()
    }

    /// A JSON integer without sign or leading zeros that fits a u64.
    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        let rest = self.bytes.get(self.at..)?;
        let mut value: u64 = 0;
        let mut digits = 0;
        for &b in rest {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            // Only a 20th digit can overflow a u64; a 21st always does.
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
            digits += 1;
        }
        // JSON forbids leading zeros.
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        self.at += digits;
        Some(value)
    }

    /// A JSON integer that fits an i64; `-0` is left to the general path.
    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        if self.literal(b"-") {
            let magnitude = self.u64()?;
            return (magnitude != 0)
                .then(|| 0i64.checked_sub_unsigned(magnitude))
                .flatten();
        }
        i64::try_from(self.u64()?).ok()
    }

    #[inline(always)]
    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// Only JSON whitespace may follow the last closing brace.
    #[inline(always)]
    fn end(&self) -> Option<()> {
        self.bytes
            .get(self.at..)?
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .then_some(())
    }
}

/// Plain string content: printable ASCII other than the quote and the backslash.
#[inline(always)]
fn is_plain(b: u8) -> bool {
    (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\'
}

/// A mask with the high bit set in the byte lanes of `word` (first byte lowest) that are
/// not plain string content (see [`is_plain`]). Lanes above the lowest flagged one may
/// be flagged wrongly (borrows propagate upwards), so only the lowest is meaningful.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The classic "has a zero byte" test on `word` xor the quote and xor the backslash;
    // the same subtraction by 0x20 for control characters; the low seven bits plus one
    // reaching the high bit for 0x7F; and the high bit itself for non-ASCII bytes.
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let delete = (word & !HIGHS).wrapping_add(ONES) & !word;
    (quote | backslash | control | delete | word) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &str) -> Reader<'_> {
        Reader {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    #[test]
    fn integers_follow_json_and_their_type() {
        assert_eq!(reader("0,").u64(), Some(0));
        assert_eq!(reader("18446744073709551615}").u64(), Some(u64::MAX));
        assert_eq!(reader("18446744073709551616}").u64(), None);
        assert_eq!(reader("99999999999999999999}").u64(), None);
        assert_eq!(reader("012").u64(), None);
        assert_eq!(reader("-1").u64(), None);
        assert_eq!(reader(",").u64(), None);
        assert_eq!(reader("-1,").i64(), Some(-1));
        assert_eq!(reader("-9223372036854775808,").i64(), Some(i64::MIN));
        assert_eq!(reader("-9223372036854775809,").i64(), None);
        assert_eq!(reader("9223372036854775808,").i64(), None);
        assert_eq!(reader("-0,").i64(), None);
        assert_eq!(reader("-,").i64(), None);
    }

    #[test]
    fn strings_must_be_plain_printable_ascii() {
        let mut r = reader(r#"BNBBTC","#);
        assert_eq!(r.string(), Some(0..6));
        assert_eq!(r.at, 7);
        for text in [
            "a\\nb\"",
            "a\\\"b\"",
            "\u{e9}\"",
            "tab\there\"",
            "del\u{7f}\"",
            "no end",
        ] {
            assert_eq!(reader(text).string(), None, "{text:?}");
        }
    }

    #[test]
    fn the_word_scan_finds_the_first_special_byte_exactly() {
        // Every byte value in every lane, behind plain bytes and with arbitrary bytes
        // after it, against the byte-by-byte definition.
        let mut rng = fastrand::Rng::with_seed(3);
        for lane in 0..8 {
            for value in 0..=255u8 {
                for _ in 0..4 {
                    let mut bytes = [0u8; 8];
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = if i < lane {
                            rng.u8(0x20..0x7F)
                        } else {
                            rng.u8(..)
                        };
                    }
                    bytes[lane] = value;
                    let expected = bytes.iter().position(|&b| !is_plain(b));
                    let mask = special_bytes(u64::from_le_bytes(bytes));
                    let found = (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize);
                    assert_eq!(found, expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn strings_shorter_and_longer_than_a_word() {
        for len in 0..40 {
            let content = "x".repeat(len);
            let text = format!(r#"{content}","#);
            let mut r = reader(&text);
            assert_eq!(r.string(), Some(0..len), "{len}");
            assert_eq!(r.at, len + 1);
            // Damage at every position is found, in the word loop or the tail loop.
            for at in 0..len {
                let mut damaged = text.clone().into_bytes();
                damaged[at] = b'\\';
                let mut r = Reader {
                    bytes: &damaged,
                    at: 0,
                };
                assert_eq!(r.string(), None, "{len} {at}");
            }
        }
    }

    #[test]
    fn only_whitespace_may_follow() {
        let mut r = reader("{} \r\n\t");
        assert!(r.literal(b"{}"));
        assert_eq!(r.end(), Some(()));
        let mut r = reader("{} x");
        assert!(r.literal(b"{}"));
        assert_eq!(r.end(), None);
    }
}
