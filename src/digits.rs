//! Integers written as decimal text straight into a byte buffer: what the simulator's
//! frames, the record writers and the RESP encoder all need per event, without the
//! formatter and its temporary string.

/// Appends an unsigned integer in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
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
}
