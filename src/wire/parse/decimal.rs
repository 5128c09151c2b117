//! Exact decimal strings (`"0.01634790"`) to [`Decimal`], without `Decimal::from_str`.
//!
//! Runs on: every shard core, inside [`super::Parser`]. Owns: nothing. In: the text of
//! one JSON string. Out: a [`Decimal`] that keeps the scale it was written with.
//!
//! A kline carries eight prices and quantities, so this sits on the hottest path of the
//! parser. The digits are read eight at a time as one little-endian word (SWAR), and
//! the integer and fractional parts are joined into one mantissa with the scale set to
//! the number of fractional digits; nothing is rounded.
//!
//! Only a plain decimal is accepted: `-?[0-9]+(\.[0-9]+)?`. Binance never sends signs,
//! exponents, underscores or a bare `.`, so anything else is rejected rather than
//! guessed at (`Decimal::from_str` would accept `+1`, `1_000` and `.5`, and would round
//! away fractional digits beyond 28).

use rust_decimal::Decimal;

/// The largest scale a [`Decimal`] can hold.
pub(crate) const MAX_SCALE: usize = 28;

/// The largest number of digits that always fits in a `u64` (10^19 - 1 < 2^64).
const U64_SAFE_DIGITS: usize = 19;

/// A [`Decimal`] mantissa is 96 bits wide.
const MANTISSA_LIMIT: u128 = 1 << 96;

/// Why a decimal string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Not a plain decimal: empty, a sign other than a leading `-`, an exponent, a
    /// second dot, a missing digit on either side of the dot, or any other character.
    Invalid,
    /// A well-formed decimal that a [`Decimal`] cannot hold exactly: more than
    /// [`MAX_SCALE`] fractional digits, or a mantissa of 2^96 or more.
    OutOfRange,
}

const POW10: [u64; U64_SAFE_DIGITS + 1] = {
    let mut table = [1u64; U64_SAFE_DIGITS + 1];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Parses a plain decimal string exactly, keeping its scale (`"0.0010"` has scale 4).
pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, DecimalError> {
    parse_decimal_bytes(text.as_bytes())
}

/// [`parse_decimal`] on raw bytes; anything that is not ASCII is simply invalid.
#[inline]
pub(crate) fn parse_decimal_bytes(bytes: &[u8]) -> Result<Decimal, DecimalError> {
    let (negative, body) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    if let Some(decimal) = eight_fraction_digits(body, negative) {
        return decimal;
    }
    let (int_digits, frac_digits) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let frac = &body[dot + 1..];
            if frac.is_empty() {
                return Err(DecimalError::Invalid);
            }
            (&body[..dot], frac)
        }
        None => (body, &body[body.len()..]),
    };
    if int_digits.is_empty() {
        return Err(DecimalError::Invalid);
    }
    let scale = frac_digits.len();

    if int_digits.len() + scale <= U64_SAFE_DIGITS {
        // Both parts together have at most 19 digits, so the mantissa fits in a u64 and
        // `int * 10^scale + frac` cannot overflow.
        let int = digits_u64(int_digits).ok_or(DecimalError::Invalid)?;
        let frac = digits_u64(frac_digits).ok_or(DecimalError::Invalid)?;
        let mantissa = int * POW10[scale] + frac;
        // The scale is at most 19 here, within MAX_SCALE.
        return Ok(Decimal::from_parts(
            mantissa as u32,
            (mantissa >> 32) as u32,
            0,
            negative,
            scale as u32,
        ));
    }
    parse_long(int_digits, frac_digits, negative)
}

/// The fast path for Binance's spot format, eight fractional digits after at most eleven
/// integer digits (`"25877.00000000"`): the dot is found at its expected place instead of
/// by a scan, and the fraction is one eight-digit word. `None` if the text does not have
/// that form, so the general path decides.
#[inline(always)]
fn eight_fraction_digits(body: &[u8], negative: bool) -> Option<Result<Decimal, DecimalError>> {
    const INT_MAX_DIGITS: usize = U64_SAFE_DIGITS - 8;
    let dot = body.len().checked_sub(9)?;
    if dot == 0 || dot > INT_MAX_DIGITS || body[dot] != b'.' {
        return None;
    }
    let int = if dot <= 8 {
        // The body has at least ten bytes, so its first eight can be read as one word;
        // the integer digits are its low `dot` bytes. Shifting them to the top and
        // filling the bottom with '0' gives the same number with leading zeros.
        let head = u64::from_le_bytes(first_eight(body));
        let shift = 8 * (8 - dot as u32);
        let zeros = ASCII_ZEROS & ((1u64 << shift) - 1);
        eight_digits((head << shift) | zeros)
    } else {
        digits_u64(&body[..dot])
    };
    let frac = eight_digits(u64::from_le_bytes(first_eight(&body[dot + 1..])));
    let parsed = int.zip(frac);
    let Some((int, frac)) = parsed else {
        return Some(Err(DecimalError::Invalid));
    };
    // At most 19 digits in all, so this fits in a u64.
    let mantissa = int * POW10[8] + frac;
    Some(Ok(Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        0,
        negative,
        8,
    )))
}

/// The rare path for more than 19 digits: digit by digit into a u128, every character
/// still validated so that garbage is reported as `Invalid` before any range problem.
#[cold]
fn parse_long(
    int_digits: &[u8],
    frac_digits: &[u8],
    negative: bool,
) -> Result<Decimal, DecimalError> {
    let mut mantissa: u128 = 0;
    let mut overflow = false;
    for &b in int_digits.iter().chain(frac_digits) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(DecimalError::Invalid);
        }
        if !overflow {
            // mantissa < 2^96 here, so neither step can overflow a u128.
            mantissa = mantissa * 10 + u128::from(digit);
            overflow = mantissa >= MANTISSA_LIMIT;
        }
    }
    if overflow || frac_digits.len() > MAX_SCALE {
        return Err(DecimalError::OutOfRange);
    }
    Ok(Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        (mantissa >> 64) as u32,
        negative,
        frac_digits.len() as u32,
    ))
}

/// Eight '0' characters as one word.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// The first eight bytes of a slice the caller knows to be at least that long.
#[inline(always)]
fn first_eight(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    word
}

/// Reads up to 19 ASCII digits as a number; `None` if any byte is not a digit.
#[inline(always)]
fn digits_u64(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut chunks = digits.chunks_exact(8);
    for chunk in &mut chunks {
        value = value * 100_000_000 + eight_digits(u64::from_le_bytes(first_eight(chunk)))?;
    }
    for &b in chunks.remainder() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    Some(value)
}

/// Eight ASCII digits loaded little-endian (first digit in the low byte) to their value,
/// or `None` if any byte is not `'0'..='9'` (the check and the arithmetic are from
/// simdjson's `parse_eight_digits_unrolled`).
#[inline(always)]
fn eight_digits(word: u64) -> Option<u64> {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A byte is a digit exactly when its high nibble is 3 and adding 6 keeps it there.
    let high = word & HIGH_NIBBLES;
    let carried = (word.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) >> 4;
    if high | carried != 0x3333_3333_3333_3333 {
        return None;
    }
    let mut v = word - ASCII_ZEROS;
    // Pairs of digits, then all eight; the products deliberately wrap, keeping only
    // the lanes that hold the combined value.
    v = v.wrapping_mul(10) + (v >> 8);
    let high_pairs = (v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32));
    let low_pairs = ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32));
    v = high_pairs.wrapping_add(low_pairs) >> 32;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn exact(text: &str) -> Decimal {
        match parse_decimal(text) {
            Ok(d) => d,
            Err(e) => panic!("{text:?} was rejected: {e:?}"),
        }
    }

    /// Same value, same scale and same sign bit as `Decimal::from_str`.
    fn assert_matches_std(text: &str) {
        let ours = exact(text);
        let std = Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(
            ours.serialize(),
            std.serialize(),
            "{text:?}: {ours} vs {std}"
        );
        assert_eq!(ours.to_string(), std.to_string(), "{text:?}");
    }

    #[test]
    fn keeps_the_scale_it_was_written_with() {
        assert_eq!(exact("0.0010").to_string(), "0.0010");
        assert_eq!(exact("0.0010").scale(), 4);
        assert_eq!(exact("148976.11427815").to_string(), "148976.11427815");
        assert_eq!(exact("100").scale(), 0);
        assert_eq!(exact("25877.00000000").to_string(), "25877.00000000");
    }

    #[test]
    fn edge_cases_match_from_str() {
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.00000000",
            "1",
            "-1",
            "9",
            "00000001",
            "007.50",
            "12345678",
            "123456789",
            "1234567812345678",
            "0.12345678",
            "12345678.12345678",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "1234567890123456789.1",
            "0.0000000000000000000000000001",
            "0.1234567890123456789012345678",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7922816251426433759354395033.5",
            "7.9228162514264337593543950335",
            "0000000000000000000000000000000000000000012",
            "0.35270000",
            "20.46240000",
        ] {
            assert_matches_std(text);
        }
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for text in [
            "",
            "-",
            ".",
            "-.",
            ".5",
            "5.",
            "-.5",
            "1.2.3",
            "1..2",
            "1e5",
            "1E5",
            "1.5e-3",
            "+1",
            "--1",
            "1-",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "NaN",
            "inf",
            "１",
            "1.2a",
            "a1.2",
            "12345678a",
            "1234567/",
            "1234567:",
            "0.1234567/",
            "/2345678",
            ":2345678",
            "12345678901234567890.x",
        ] {
            assert_eq!(parse_decimal(text), Err(DecimalError::Invalid), "{text:?}");
        }
    }

    #[test]
    fn rejects_what_a_decimal_cannot_hold() {
        for text in [
            "79228162514264337593543950336",
            "-79228162514264337593543950336",
            "7922816251426433759354395033.6",
            "100000000000000000000000000000",
            "0.12345678901234567890123456789",
            "0.00000000000000000000000000000",
            "1.00000000000000000000000000000",
        ] {
            assert_eq!(
                parse_decimal(text),
                Err(DecimalError::OutOfRange),
                "{text:?}"
            );
        }
        // Garbage is reported as such even when the string is also far too long.
        assert_eq!(
            parse_decimal("0.1234567890123456789012345678901234x"),
            Err(DecimalError::Invalid)
        );
    }

    #[test]
    fn every_eight_byte_window_is_validated() {
        // A non-digit in each position of an 8-digit chunk, and the bytes just outside
        // the digit range, must all be caught by the word-at-a-time check.
        for pos in 0..8 {
            for bad in [b'/', b':', b' ', b'.', 0x00, 0x80, 0xFF] {
                let mut digits = *b"12345678";
                digits[pos] = bad;
                assert_eq!(digits_u64(&digits), None, "{digits:?}");
            }
        }
        assert_eq!(digits_u64(b"00000000"), Some(0));
        assert_eq!(digits_u64(b"99999999"), Some(99_999_999));
        assert_eq!(
            digits_u64(b"1234567890123456789"),
            Some(1_234_567_890_123_456_789)
        );
    }

    /// The independent judge for a generated string: is it a plain decimal, and does
    /// its mantissa and scale fit a `Decimal`?
    fn classify(text: &str) -> Result<(), DecimalError> {
        let body = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = match body.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (body, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(DecimalError::Invalid);
        }
        let frac = frac.unwrap_or("");
        let digits = format!("{int}{frac}");
        let significant = digits.trim_start_matches('0');
        let fits = significant.len() < 29
            || (significant.len() == 29 && significant <= "79228162514264337593543950335");
        if frac.len() > MAX_SCALE || !fits {
            return Err(DecimalError::OutOfRange);
        }
        Ok(())
    }

    fn generated(rng: &mut fastrand::Rng) -> String {
        const JUNK: &[char] = &['e', 'E', '+', '-', '.', ' ', '_', 'x', '/', ':', '\u{e9}'];
        let mut text = String::new();
        if rng.u8(..) < 40 {
            text.push('-');
        }
        // Mostly Binance-like lengths, sometimes long enough to reach the u128 path.
        let int_len = if rng.bool() {
            rng.usize(1..=6)
        } else {
            rng.usize(0..=31)
        };
        for _ in 0..int_len {
            text.push(char::from(b'0' + rng.u8(0..10)));
        }
        if rng.u8(..) < 200 {
            text.push('.');
            let frac_len = if rng.bool() { 8 } else { rng.usize(0..=31) };
            for _ in 0..frac_len {
                text.push(char::from(b'0' + rng.u8(0..10)));
            }
        }
        // One string in eight gets a junk character somewhere.
        if rng.u8(..) < 32 {
            let mut chars: Vec<char> = text.chars().collect();
            let at = rng.usize(0..=chars.len());
            chars.insert(at, JUNK[rng.usize(0..JUNK.len())]);
            text = chars.into_iter().collect();
        }
        text
    }

    #[test]
    fn agrees_with_from_str_on_generated_strings() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_dec1);
        let (mut accepted, mut invalid, mut out_of_range) = (0u32, 0u32, 0u32);
        for _ in 0..300_000 {
            let text = generated(&mut rng);
            let ours = parse_decimal(&text);
            assert_eq!(ours.map(|_| ()), classify(&text), "{text:?}");
            match ours {
                Ok(d) => {
                    accepted += 1;
                    let std = Decimal::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!(d.serialize(), std.serialize(), "{text:?}");
                }
                Err(DecimalError::Invalid) => invalid += 1,
                Err(DecimalError::OutOfRange) => out_of_range += 1,
            }
        }
        // The generator must exercise every outcome, or the test proves little.
        assert!(accepted > 100_000, "{accepted}");
        assert!(invalid > 20_000, "{invalid}");
        assert!(out_of_range > 10_000, "{out_of_range}");
    }
}
