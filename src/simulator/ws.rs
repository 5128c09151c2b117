//! Server-side WebSocket protocol (RFC 6455) without a socket: frame encoding straight
//! into a connection's output buffer, and a decoder for the masked frames clients send.
//!
//! Runs on: the simulator core (pure). In: bytes read from a client. Out: whole client
//! messages ([`Incoming`]) and encoded server frames. The opening handshake is checked
//! in `http.rs`; the accept key comes from tungstenite.
//!
//! The simulator frames its own output instead of going through a WebSocket library so
//! that thousands of small frames can be rendered into one buffer and written with one
//! `send` call.

/// Largest client message accepted (a SUBSCRIBE with 1024 stream names is ~30 KB).
pub const MAX_INCOMING_MESSAGE_BYTES: usize = 64 * 1024;
/// Control frames carry at most 125 bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes used by the simulator.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Appends a frame header (FIN set, unmasked: servers never mask).
pub fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a whole frame.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    push_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with a status code and a reason (cut to fit a control frame).
pub fn push_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = truncate_utf8(reason, MAX_CONTROL_PAYLOAD - 2);
    push_header(out, OP_CLOSE, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One complete client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Status code (if any) and reason.
    Close(Option<u16>, Vec<u8>),
}

/// Why a client's bytes are not acceptable; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("client frame is not masked")]
    Unmasked,
    #[error("reserved bits set or unknown opcode {0:#x}")]
    BadOpcode(u8),
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControl,
    #[error("continuation without a message in progress, or a new message inside one")]
    BadContinuation,
    #[error("message of {0} bytes exceeds the limit")]
    TooBig(u64),
    #[error("text message is not valid UTF-8")]
    NotUtf8,
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig(_) => CLOSE_TOO_BIG,
            WsError::NotUtf8 => 1007,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// Reassembles client messages from frames.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Opcode and payload of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    /// Takes one complete message off the front of `buf` (consuming the bytes), or
    /// `None` if more bytes are needed.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Incoming>, WsError> {
        loop {
            let Some((header_len, payload_len, fin, opcode, mask)) = parse_header(buf)? else {
                return Ok(None);
            };
            let total = header_len + payload_len;
            if buf.len() < total {
                return Ok(None);
            }
            let mut payload: Vec<u8> = buf[header_len..total].to_vec();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            buf.drain(..total);
            match opcode {
                OP_PING => return Ok(Some(Incoming::Ping(payload))),
                OP_PONG => return Ok(Some(Incoming::Pong(payload))),
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = payload.get(2..).map(<[u8]>::to_vec).unwrap_or_default();
                    return Ok(Some(Incoming::Close(code, reason)));
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(WsError::BadContinuation);
                    }
                    if fin {
                        return finish(opcode, payload).map(Some);
                    }
                    self.partial = Some((opcode, payload));
                }
                _ => {
                    // OP_CONTINUATION: parse_header rejected every other opcode.
                    let Some((first_opcode, mut data)) = self.partial.take() else {
                        return Err(WsError::BadContinuation);
                    };
                    data.extend_from_slice(&payload);
                    if data.len() > MAX_INCOMING_MESSAGE_BYTES {
                        return Err(WsError::TooBig(data.len() as u64));
                    }
                    if fin {
                        return finish(first_opcode, data).map(Some);
                    }
                    self.partial = Some((first_opcode, data));
                }
            }
        }
    }
}

fn finish(opcode: u8, payload: Vec<u8>) -> Result<Incoming, WsError> {
    if opcode == OP_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(WsError::NotUtf8);
        }
        Ok(Incoming::Text(payload))
    } else {
        Ok(Incoming::Binary(payload))
    }
}

/// Header length, payload length, FIN, opcode and mask, once the header is complete.
#[allow(clippy::type_complexity)]
fn parse_header(buf: &[u8]) -> Result<Option<(usize, usize, bool, u8, [u8; 4])>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err(WsError::BadOpcode(buf[0]));
    }
    let opcode = buf[0] & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(WsError::BadOpcode(opcode));
    }
    if buf[1] & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let (len, mut at) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(raw), 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(WsError::BadControl);
    }
    if len > MAX_INCOMING_MESSAGE_BYTES as u64 {
        return Err(WsError::TooBig(len));
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    Ok(Some((at, len as usize, fin, opcode, mask)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        let mut out = Vec::new();
        push_header(&mut out, OP_TEXT, 125);
        push_header(&mut out, OP_TEXT, 126);
        push_header(&mut out, OP_TEXT, 70_000);
        assert_eq!(out[..2], [0x81, 125]);
        assert_eq!(out[2..6], [0x81, 126, 0, 126]);
        assert_eq!(out[6..8], [0x81, 127]);
        assert_eq!(u64::from_be_bytes(out[8..16].try_into().unwrap()), 70_000);
    }

    #[test]
    fn decodes_messages_split_anywhere() {
        let big = vec![b'a'; 300];
        let mut stream = masked(0x81, b"hello");
        stream.extend(masked(0x89, b"p"));
        stream.extend(masked(0x01, &big[..100]));
        stream.extend(masked(0x8A, b""));
        stream.extend(masked(0x80, &big[100..]));
        stream.extend(masked(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
        let mut decoder = Decoder::default();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for byte in stream {
            buf.push(byte);
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                Incoming::Text(b"hello".to_vec()),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Pong(Vec::new()),
                Incoming::Text(big),
                Incoming::Close(Some(1000), b"bye".to_vec()),
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_protocol_violations() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&mut vec![0x81, 0x01, b'x']),
            Err(WsError::Unmasked)
        );
        assert_eq!(d.decode(&mut masked(0x83, b"")), Err(WsError::BadOpcode(3)));
        assert_eq!(d.decode(&mut masked(0x09, b"")), Err(WsError::BadControl));
        assert_eq!(
            d.decode(&mut masked(0x80, b"x")),
            Err(WsError::BadContinuation)
        );
        assert_eq!(d.decode(&mut masked(0x81, &[0xFF])), Err(WsError::NotUtf8));
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(d.decode(&mut huge), Err(WsError::TooBig(_))));
    }

    #[test]
    fn close_reason_is_cut_to_fit() {
        let mut out = Vec::new();
        push_close(&mut out, CLOSE_POLICY_VIOLATION, &"é".repeat(100));
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
