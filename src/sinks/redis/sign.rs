//! Signed bridge records: an HMAC-SHA256 over each published payload, with a key shared
//! by the instances of a deployment (`ALPHAPULSE_BRIDGE_KEY`).
//!
//! Runs on: the publisher thread (signing) and the bridge thread (verifying); pure
//! functions over byte buffers, no allocation once the buffers are warm.
//!
//! How the signature travels: the record's JSON object gets one more field, last,
//! `"sig":"<64 lowercase hex digits>"`. The HMAC is computed over the record exactly as
//! it is published unsigned (the same bytes), so a verifier removes the fixed-length
//! field and checks the rest; a plain subscriber sees the record it knows plus a field
//! it may ignore. Without a key nothing is appended: unsigned payloads are byte for
//! byte what they always were.

use ring::hmac;

/// What precedes the hex digits of the signature.
const FIELD_HEAD: &[u8] = b",\"sig\":\"";
/// Hex digits of an HMAC-SHA256.
const HEX_LEN: usize = 64;
/// What follows them: the field's closing quote and the object's closing brace.
const FIELD_TAIL: &[u8] = b"\"}";
/// Bytes the signature adds to a payload.
pub const SIGNATURE_BYTES: usize = FIELD_HEAD.len() + HEX_LEN + FIELD_TAIL.len() - 1;

/// The shared key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct BridgeKey(hmac::Key);

impl std::fmt::Debug for BridgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeKey(<redacted>)")
    }
}

/// Why a payload's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature field at the end of the record")]
    Missing,
    #[error("the signature is not 64 hex digits")]
    Malformed,
    #[error("the signature does not match the record")]
    Mismatch,
}

impl BridgeKey {
    pub fn new(secret: &[u8]) -> BridgeKey {
        BridgeKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Appends the signature field to `payload`, a JSON object.
    pub fn sign(&self, payload: &mut Vec<u8>) {
        let tag = hmac::sign(&self.0, payload);
        if payload.last() != Some(&b'}') {
            // Every record is an object; anything else is published as it is.
            return;
        }
        payload.pop();
        payload.extend_from_slice(FIELD_HEAD);
        for b in tag.as_ref() {
            payload.push(HEX[usize::from(b >> 4)]);
            payload.push(HEX[usize::from(b & 0xf)]);
        }
        payload.extend_from_slice(FIELD_TAIL);
    }

    /// Checks the signature of a signed `payload` (in constant time) and returns the
    /// record as it was before signing, rebuilt in `scratch`.
    pub fn verify<'a>(
        &self,
        payload: &[u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], SignatureError> {
        let field_len = FIELD_HEAD.len() + HEX_LEN + FIELD_TAIL.len();
        let Some(cut) = payload.len().checked_sub(field_len) else {
            return Err(SignatureError::Missing);
        };
        let (body, field) = payload.split_at(cut);
        if !field.starts_with(FIELD_HEAD) || !field.ends_with(FIELD_TAIL) {
            return Err(SignatureError::Missing);
        }
        let hex = &field[FIELD_HEAD.len()..FIELD_HEAD.len() + HEX_LEN];
        let mut tag = [0u8; HEX_LEN / 2];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => tag[i] = (hi << 4) | lo,
                _ => return Err(SignatureError::Malformed),
            }
        }
        scratch.clear();
        scratch.extend_from_slice(body);
        scratch.push(b'}');
        hmac::verify(&self.0, scratch, &tag).map_err(|_| SignatureError::Mismatch)?;
        Ok(scratch)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_record_verifies_to_its_unsigned_bytes_and_any_change_is_refused() {
        let key = BridgeKey::new(b"0123456789abcdef0123456789abcdef");
        let record = br#"{"type":"candle","symbol":"ETHUSDT","close":"1.5"}"#.to_vec();
        let mut signed = record.clone();
        key.sign(&mut signed);
        assert_eq!(signed.len(), record.len() + SIGNATURE_BYTES);
        // Still one JSON object, the record's fields first, "sig" last.
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        assert_eq!(v["symbol"], "ETHUSDT");
        assert_eq!(v["sig"].as_str().unwrap().len(), 64);
        let mut scratch = Vec::new();
        assert_eq!(
            key.verify(&signed, &mut scratch).unwrap(),
            record.as_slice()
        );
        // RFC 4231 case 2 pins the HMAC itself: key "Jefe".
        let jefe = BridgeKey::new(b"Jefe");
        let tag = hmac::sign(&jefe.0, b"what do ya want for nothing?");
        assert_eq!(
            tag.as_ref()[..4],
            [0x5b, 0xdc, 0xc1, 0x46],
            "HMAC-SHA256 (RFC 4231 test case 2)"
        );

        // A changed price, another key, a missing or broken signature: all refused.
        let forged = String::from_utf8(signed.clone())
            .unwrap()
            .replace("1.5", "9.5");
        assert_eq!(
            key.verify(forged.as_bytes(), &mut scratch),
            Err(SignatureError::Mismatch)
        );
        let other = BridgeKey::new(b"another key of thirty-two bytes!");
        assert_eq!(
            other.verify(&signed, &mut scratch),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(&record, &mut scratch),
            Err(SignatureError::Missing)
        );
        assert_eq!(key.verify(b"}", &mut scratch), Err(SignatureError::Missing));
        let mut upper = signed.clone();
        let at = upper.len() - 3;
        upper[at] = b'G';
        assert_eq!(
            key.verify(&upper, &mut scratch),
            Err(SignatureError::Malformed)
        );
        assert_eq!(format!("{key:?}"), "BridgeKey(<redacted>)");
    }
}
