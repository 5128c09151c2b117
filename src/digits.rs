//! Integers written as decimal text straight into a byte buffer: what the simulator's
//! frames, the record writers and the RESP encoder all need per event, without the
//! formatter and its temporary string.

/// "00" to "99": the digits of a number are made two per division (half the dependent
/// divisions of one per digit; a candle record has about 150 digits).
const PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes `v` in decimal into `buf`, its last digit at `end - 1`, and returns where its
/// first digit is. `buf[..end]` must have room for its digits (`end >=
/// digit_count(v)`); a slice too short panics, it is never written past.
#[inline]
pub fn write_u64_before(buf: &mut [u8], end: usize, mut v: u64) -> usize {
    let mut i = end;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    i
}

/// The most decimal digits a `u64` has (`u64::MAX` is 18446744073709551615).
pub const MAX_U64_DIGITS: usize = 20;

/// The number of decimal digits of `v` (one for 0).
#[inline]
pub fn digit_count(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Appends an unsigned integer in decimal.
///
/// The buffer grows by a fixed [`MAX_U64_DIGITS`] bytes (copied inline, with no call) and the digits are
/// written where they belong, then the rest is cut off: appending a number of unknown
/// length from a scratch array was a call to `memmove` per number, a tenth of the
/// dashboard's record writing (`cargo bench --bench records`).
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let at = out.len();
    let n = digit_count(v);
    out.extend_from_slice(&[0u8; MAX_U64_DIGITS]);
    write_u64_before(&mut out[at..], n, v);
    out.truncate(at + n);
}

/// Appends a length or count in decimal.
pub fn push_usize(out: &mut Vec<u8>, n: usize) {
    push_u64(out, n as u64);
}

/// Appends a signed integer in decimal.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_display_at_the_edges() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            1_633_998_523_963,
            i64::MAX,
            i64::MIN,
            -1,
            -42,
        ] {
            let mut out = Vec::new();
            push_i64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
        let mut out = Vec::new();
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().into_bytes());
    }

    #[test]
    fn every_digit_count_and_pair_matches_display() {
        let mut rng = fastrand::Rng::with_seed(7);
        let powers = (0..20).map(|e| 10u64.pow(e));
        let around = powers.flat_map(|p| [p - 1, p, p + 1, p.saturating_mul(5)]);
        let values = (0..10_000)
            .chain(around)
            .chain((0..10_000).map(|_| rng.u64(..)));
        for v in values {
            let mut out = b"x".to_vec();
            push_u64(&mut out, v);
            assert_eq!(&out[1..], v.to_string().as_bytes(), "{v}");
        }
    }
}
