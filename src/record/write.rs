//! Writes the JSON records of docs/api.md straight into a reused buffer.
//!
//! Pure. The writers produce byte for byte what `serde_json` makes of [`CandleRecord`]
//! and [`SignalRecord`] (tests hold them to it) without building those structs, whose
//! strings would cost an allocation per field per event.
//!
//! [`CandleRecord`]: super::CandleRecord
//! [`SignalRecord`]: super::SignalRecord

use std::io::Write;

use crate::digits::{push_i64, push_u64, MAX_U64_DIGITS};
use crate::market::{AggTrade, Candle, Decimal, Trade};
use crate::signals::{Signal, MAX_SIGNAL_INDICATORS};

/// Appends the candle record of `c`.
pub fn write_candle(out: &mut Vec<u8>, c: &Candle) {
    // Symbols are ASCII letters and digits, timeframes and decimals need no escaping.
    out.extend_from_slice(b"{\"type\":\"candle\",\"symbol\":\"");
    out.extend_from_slice(c.symbol.as_bytes());
    out.extend_from_slice(b"\",\"timeframe\":\"");
    out.extend_from_slice(c.interval.as_str().as_bytes());
    out.extend_from_slice(b"\",\"open_time\":");
    push_i64(out, c.open_time_ms);
    out.extend_from_slice(b",\"close_time\":");
    push_i64(out, c.close_time_ms);
    for (name, d) in [
        (&b",\"open\":\""[..], &c.open),
        (b"\",\"high\":\"", &c.high),
        (b"\",\"low\":\"", &c.low),
        (b"\",\"close\":\"", &c.close),
        (b"\",\"volume\":\"", &c.volume),
        (b"\",\"quote_volume\":\"", &c.quote_volume),
        (b"\",\"taker_buy_base\":\"", &c.taker_buy_base),
        (b"\",\"taker_buy_quote\":\"", &c.taker_buy_quote),
    ] {
        out.extend_from_slice(name);
        write_decimal(out, d);
    }
    out.extend_from_slice(b"\",\"trades\":");
    push_u64(out, c.trades);
    out.extend_from_slice(if c.closed {
        b",\"closed\":true,\"event_time\":"
    } else {
        b",\"closed\":false,\"event_time\":"
    });
    push_i64(out, c.event_time_us / 1000);
    out.push(b'}');
}

/// Appends the trade record of `t` (as `serde_json` writes [`super::TradeRecord`]).
pub fn write_trade(out: &mut Vec<u8>, t: &Trade) {
    out.extend_from_slice(b"{\"type\":\"trade\",\"symbol\":\"");
    out.extend_from_slice(t.symbol.as_bytes());
    out.extend_from_slice(b"\",\"trade_id\":");
    push_u64(out, t.trade_id);
    write_trade_tail(out, &t.price, &t.quantity, None, t.trade_time_ms);
    write_maker_and_event(out, t.buyer_is_maker, t.event_time_us);
}

/// Appends the aggregate trade record of `t` (as `serde_json` writes
/// [`super::AggTradeRecord`]).
pub fn write_agg_trade(out: &mut Vec<u8>, t: &AggTrade) {
    out.extend_from_slice(b"{\"type\":\"agg_trade\",\"symbol\":\"");
    out.extend_from_slice(t.symbol.as_bytes());
    out.extend_from_slice(b"\",\"agg_trade_id\":");
    push_u64(out, t.agg_trade_id);
    let ids = Some((t.first_trade_id, t.last_trade_id));
    write_trade_tail(out, &t.price, &t.quantity, ids, t.trade_time_ms);
    write_maker_and_event(out, t.buyer_is_maker, t.event_time_us);
}

/// `,"price":…,"quantity":…[,"first_trade_id":…,"last_trade_id":…],"trade_time":…`
fn write_trade_tail(
    out: &mut Vec<u8>,
    price: &Decimal,
    quantity: &Decimal,
    ids: Option<(u64, u64)>,
    trade_time_ms: i64,
) {
    out.extend_from_slice(b",\"price\":\"");
    write_decimal(out, price);
    out.extend_from_slice(b"\",\"quantity\":\"");
    write_decimal(out, quantity);
    out.push(b'"');
    if let Some((first, last)) = ids {
        out.extend_from_slice(b",\"first_trade_id\":");
        push_u64(out, first);
        out.extend_from_slice(b",\"last_trade_id\":");
        push_u64(out, last);
    }
    out.extend_from_slice(b",\"trade_time\":");
    push_i64(out, trade_time_ms);
}

fn write_maker_and_event(out: &mut Vec<u8>, buyer_is_maker: bool, event_time_us: i64) {
    out.extend_from_slice(if buyer_is_maker {
        b",\"buyer_is_maker\":true,\"event_time\":"
    } else {
        b",\"buyer_is_maker\":false,\"event_time\":"
    });
    push_i64(out, event_time_us / 1000);
    out.push(b'}');
}

/// Appends `d` exactly as its `Display` writes it (scale kept: `42000.10` stays so).
/// `Display` went through a formatter and a temporary string per field and was most of
/// the publisher's time (measured with `bench redis`).
///
/// Every price and quantity of the exchange fits a `u64` mantissa with at most 19
/// decimals; such a decimal is written in place: the buffer grows by a fixed block of
/// `'0'`s (copied inline; they are also the fraction's leading zeros), the fraction and
/// then the integer part are written right to left, and the rest is cut off. Larger ones
/// take the general path.
pub fn write_decimal(out: &mut Vec<u8>, d: &Decimal) {
    // The sign bit, as `Display` reads it: a negative zero is written `-0`.
    let negative = d.is_sign_negative();
    let magnitude = d.mantissa().unsigned_abs();
    let scale = d.scale() as usize;
    let m = match u64::try_from(magnitude) {
        Ok(m) if scale <= MAX_IN_PLACE_SCALE => m,
        _ => return write_wide_decimal(out, negative, magnitude, scale),
    };
    let sign = usize::from(negative);
    let digits = crate::digits::digit_count(m);
    let len = sign
        + match scale {
            0 => digits,
            _ if digits > scale => digits + 1,
            _ => scale + 2,
        };
    let at = out.len();
    out.extend_from_slice(&[b'0'; DECIMAL_ROOM]);
    let text = &mut out[at..at + len];
    if sign == 1 {
        text[0] = b'-';
    }
    if scale == 0 {
        crate::digits::write_u64_before(text, len, m);
    } else {
        let point = len - scale - 1;
        let (int, frac) = split_at_scale(m, scale);
        crate::digits::write_u64_before(text, len, frac);
        text[point] = b'.';
        crate::digits::write_u64_before(text, point, int);
    }
    out.truncate(at + len);
}

/// The largest scale written in place: 10^19 is the largest power of ten in a `u64`.
const MAX_IN_PLACE_SCALE: usize = 19;

/// Room for a decimal written in place: the longer of a sign, a `u64`'s digits and a
/// point, and a sign, `0.` and the largest scale's decimals (22 bytes either way).
const DECIMAL_ROOM: usize = {
    let (integer, fraction) = (1 + MAX_U64_DIGITS + 1, 1 + 2 + MAX_IN_PLACE_SCALE);
    if integer > fraction {
        integer
    } else {
        fraction
    }
};

/// `m`'s integer part and fraction at `scale` (1 to 19). Each scale is an arm of its
/// own so that its division is by a constant, which the compiler turns into a
/// multiplication: a division by a variable took a third of the writer's time.
#[inline(always)]
fn split_at_scale(m: u64, scale: usize) -> (u64, u64) {
    macro_rules! by_constant {
        ($($s:literal)*) => {
            match scale {
                $($s => (m / 10u64.pow($s), m % 10u64.pow($s)),)*
                // Not reached (scale 0 has no point, larger ones take the wide path);
                // kept exact rather than a panic.
                _ => {
                    let unit = 10u64.saturating_pow(scale as u32);
                    (m / unit, m % unit)
                }
            }
        };
    }
    by_constant!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19)
}

/// [`write_decimal`] for a mantissa beyond `u64` or a scale beyond 19.
#[cold]
fn write_wide_decimal(out: &mut Vec<u8>, negative: bool, magnitude: u128, scale: usize) {
    if negative {
        out.push(b'-');
    }
    // A 96-bit mantissa has at most 29 digits.
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut m = magnitude;
    // u128 division is a library call: only the top part of a big mantissa takes it.
    while m > u128::from(u64::MAX) {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    let i = crate::digits::write_u64_before(&mut digits, i, m as u64);
    let digits = &digits[i..];
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

/// Appends the signal record of `s`.
pub fn write_signal(out: &mut Vec<u8>, s: &Signal) {
    let _ = write!(
        out,
        "{{\"type\":\"signal\",\"timestamp\":{},\"symbol\":\"{}\",\"timeframe\":\"{}\",\
         \"kind\":\"{}\",\"direction\":\"{}\",\"confidence\":",
        s.timestamp_ms,
        s.symbol.as_str(),
        s.interval.as_str(),
        s.kind.as_str(),
        s.direction.as_str(),
    );
    write_number(out, s.confidence);
    out.extend_from_slice(b",\"price\":\"");
    write_decimal(out, &s.price);
    out.extend_from_slice(b"\",\"indicators\":{");
    // serde_json's map is ordered by key, and a repeated name keeps its last value:
    // the same here, on a stack array (at most MAX_SIGNAL_INDICATORS entries).
    let mut items = [("", 0.0); MAX_SIGNAL_INDICATORS];
    let mut n = 0;
    for (name, v) in s.indicators.iter().filter(|(_, v)| v.is_finite()) {
        match items[..n].iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = v,
            None => {
                items[n] = (name, v);
                n += 1;
            }
        }
    }
    items[..n].sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, v)) in items[..n].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        write_number(out, *v);
    }
    let _ = write!(out, "}},\"event_time\":{}}}", s.event_time_us / 1000);
}

/// A number as serde_json writes an f64 (`null` when not finite).
fn write_number(out: &mut Vec<u8>, v: f64) {
    let _ = serde_json::to_writer(&mut *out, &v);
}
