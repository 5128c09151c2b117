//! The client side of the WebSocket protocol (RFC 6455) without a socket: frames from the
//! exchange parsed in place in one reused read buffer, client frames encoded (masked)
//! into an output buffer, and the opening handshake's request and response.
//!
//! Runs on: a shard core, inside its connection task (pure: no I/O, no clock). In: bytes
//! read from the exchange's socket. Out: whole messages ([`Frame`]) borrowed from the
//! read buffer, and encoded client frames appended to the caller's output buffer.
//!
//! # Why in place
//! A general-purpose WebSocket library zero-fills its read buffer before every socket
//! read (which dominated a busy shard's profile) and copies every text message into an
//! allocation of its own. [`FrameReader`] allocates its buffer once (with `vec![0; n]`,
//! which the allocator can serve from pages the kernel already zeroed) and never clears
//! it again: the socket reads into the free space behind the buffered bytes
//! ([`FrameReader::spare`]), and [`FrameReader::next`] hands out each payload where it
//! lies. Text payloads are lent mutably so that simd-json can parse them in place. The
//! exchange sends every event as one unfragmented text frame, so the common path copies
//! nothing at all; fragmented messages are the rare path and are assembled by copying.
//!
//! ```text
//! loop {
//!     let n = socket.read(reader.spare())?;      // 0: end of stream
//!     reader.filled(n);
//!     while let Some(frame) = reader.next()? {   // Ok(None): read more
//!         match frame { Frame::Text(json) => parse_in_place(json), .. }
//!     }
//! }
//! ```
//!
//! The handshake response can be read into the same buffer: read into `spare()` until
//! [`parse_handshake_response`] over [`FrameReader::pending`] returns the head's length,
//! then [`FrameReader::discard`] it; the bytes after it are the first frames.
//!
//! # Limits, and what happens at each
//! - A frame whose payload is over `max_frame_bytes`, or a message (all its fragments)
//!   over `max_message_bytes`: [`FrameError::Capacity`] as soon as the frame's header is
//!   read, before any of its payload is waited for or buffered.
//! - A frame within the limits but larger than the buffer: the buffer is reallocated
//!   (doubling, at most to the largest frame the limits allow plus its header) and keeps
//!   that size. Only the new allocation is zeroed, once.
//! - A fragmented message is copied into a second buffer, which keeps its capacity (at
//!   most `max_message_bytes`) for the next one.
//! - Control frames (close, ping, pong) carry at most 125 bytes and are never fragmented;
//!   they may arrive between the fragments of a message.
//! - A handshake response head over 16 KiB: [`HandshakeError::TooLarge`].
//! - Every [`FrameError`] is final: the reader returns the same error from then on, and
//!   the caller closes the connection ([`FrameError::close_code`] names the status to
//!   send) and [`FrameReader::reset`]s the reader before reusing it.
//!
//! Not supported: extensions (permessage-deflate) and subprotocols. The request offers
//! none, so frames with reserved bits set are protocol errors, and a response that selects
//! either is refused.

use std::fmt;
use std::ops::Range;

/// The FIN bit of a frame's first byte: the last frame of a message.
const FIN_BIT: u8 = 0x80;
/// RSV1-3 in a frame's first byte; they mean something only under a negotiated extension.
const RSV_BITS: u8 = 0x70;
/// The opcode in a frame's first byte.
const OPCODE_BITS: u8 = 0x0F;
/// The MASK bit of a frame's second byte: set on every client frame, never on a server's.
const MASK_BIT: u8 = 0x80;
/// The 7-bit length in a frame's second byte.
const LEN7_BITS: u8 = 0x7F;
/// 7-bit length values that announce a 16-bit and a 64-bit extended length.
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;
/// Largest header of a frame from the server: 2 bytes and a 64-bit length (no mask key).
const MAX_SERVER_HEADER_BYTES: usize = 10;
/// Largest header of a client frame: 2 bytes, a 64-bit length and a 4-byte mask key.
const MAX_CLIENT_HEADER_BYTES: usize = 14;
/// Control frames carry at most 125 bytes (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// A close reason fits in a control frame after the 2-byte status code.
pub const MAX_CLOSE_REASON_BYTES: usize = MAX_CONTROL_PAYLOAD - 2;

/// Largest handshake response head accepted. A real one is a few hundred bytes; the limit
/// stops a misbehaving peer from making the client buffer headers forever.
pub const MAX_HANDSHAKE_HEAD_BYTES: usize = 16 * 1024;
/// Header lines parsed in a handshake response (httparse needs a fixed array; a real
/// response has about ten). More is a [`HandshakeError::Malformed`].
const MAX_HANDSHAKE_HEADERS: usize = 64;
/// Bytes of a refused handshake's body kept in [`HandshakeError::Status`] for the log.
const ERROR_BODY_BYTES: usize = 200;

/// The read buffer is never smaller than this, so that a whole handshake response head
/// (the largest thing read before frames) fits in it with room to spare, and a control
/// frame never makes it grow.
pub const MIN_BUFFER_BYTES: usize = 2 * MAX_HANDSHAKE_HEAD_BYTES;
/// [`FrameReader::spare`] moves the buffered bytes to the front when less than this is
/// free behind them: a read into a smaller space costs a system call for a few bytes,
/// while the bytes moved are normally the start of one frame.
const MIN_READ_BYTES: usize = 4096;
/// Limits are lowered to this, so that a buffer size computed from one (limit plus a
/// header) neither overflows nor exceeds what a `Vec` can hold.
const MAX_LIMIT: usize = isize::MAX as usize - MAX_CLIENT_HEADER_BYTES;

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The client is going away (shutting down, rotating connections).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A text message or close reason was not UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// A frame or message was over the limits.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode's 4 bits, as in a frame's first byte.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode with these 4 bits; `None` for the reserved ones (0x3-0x7, 0xB-0xF).
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Whether a close frame may carry `code`. RFC 6455 §7.4 defines 1000-1003 and
/// 1007-1011 and leaves 3000-4999 to libraries and applications; 1012-1014 (service
/// restart, try again later, bad gateway) were registered with IANA after the RFC and
/// are what servers send when they restart, so they are accepted too. 1004-1006 and 1015
/// must never be sent; everything else is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// One whole message from the server, borrowed from the reader until its next call.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text message, validated as UTF-8; mutable so that it can be parsed in place.
    Text(&'a mut [u8]),
    Binary(&'a [u8]),
    /// To be answered with a pong carrying the same bytes.
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// `None`: the close frame carried no status code.
    Close(Option<CloseInfo<'a>>),
}

/// The status code and reason of a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo<'a> {
    /// A valid code ([`is_valid_close_code`]).
    pub code: u16,
    pub reason: &'a str,
}

/// Why the server's bytes are not acceptable. Each is final for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("WebSocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("WebSocket frame or message of {size} bytes is over the {limit}-byte limit")]
    Capacity { size: usize, limit: usize },
    #[error("WebSocket text message or close reason is not valid UTF-8")]
    Utf8,
}

impl FrameError {
    /// The status to send in the close frame that answers this error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => CLOSE_PROTOCOL_ERROR,
            FrameError::Capacity { .. } => CLOSE_TOO_BIG,
            FrameError::Utf8 => CLOSE_INVALID_PAYLOAD,
        }
    }
}

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// What a frame does, given the message state when its header arrives.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// A data frame: the first of a message (text or binary opcode) or a continuation.
    Data {
        kind: DataKind,
        first: bool,
    },
    Close,
    Ping,
    Pong,
}

/// A validated message ready to be lent out: payload positions in the read buffer, or
/// the assembly buffer for a fragmented message.
#[derive(Debug)]
enum Ready {
    Text(Range<usize>),
    Binary(Range<usize>),
    Assembled(DataKind),
    Close(Range<usize>),
    Ping(Range<usize>),
    Pong(Range<usize>),
}

/// A frame header, or how many bytes it needs.
#[derive(Debug, Clone, Copy)]
enum HeaderParse {
    Complete(Header),
    /// The header is this many bytes, not all buffered yet.
    Incomplete(usize),
}

/// A complete frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: OpCode,
    /// Header bytes, 2 to 10.
    len: usize,
    /// Payload bytes, as announced (below 2^63).
    payload: u64,
}

/// Reads the server's frames in place from one reused buffer. See the module docs.
pub struct FrameReader {
    /// The read buffer. Bytes before `start` were consumed, `start..end` are buffered and
    /// not yet parsed, `end..` is free. Never cleared after allocation.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Buffered bytes the frame at `start` needs before it can be parsed (its header, or
    /// its header and payload), as found by the last `next` that returned `Ok(None)`; 0
    /// when unknown.
    need: usize,
    max_frame_bytes: usize,
    max_message_bytes: usize,
    /// The kind of the fragmented message in progress, if any.
    partial: Option<DataKind>,
    /// The fragments received so far; after a fragmented message was returned, that
    /// message until the next fragmented one starts.
    assembly: Vec<u8>,
    /// The error already returned, returned again by every later `next`.
    failed: Option<FrameError>,
}

impl fmt::Debug for FrameReader {
    /// Positions and state; not the buffer's contents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("capacity", &self.buf.len())
            .field("start", &self.start)
            .field("end", &self.end)
            .field("need", &self.need)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("partial", &self.partial)
            .field("assembled_bytes", &self.assembly.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl FrameReader {
    /// A reader with a `capacity`-byte buffer (at least [`MIN_BUFFER_BYTES`]). A frame
    /// with a payload over `max_frame_bytes`, or a message over `max_message_bytes`, is a
    /// [`FrameError::Capacity`].
    pub fn new(capacity: usize, max_frame_bytes: usize, max_message_bytes: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; capacity.clamp(MIN_BUFFER_BYTES, MAX_LIMIT)],
            start: 0,
            end: 0,
            need: 0,
            max_frame_bytes: max_frame_bytes.min(MAX_LIMIT),
            max_message_bytes: max_message_bytes.min(MAX_LIMIT),
            partial: None,
            assembly: Vec::new(),
            failed: None,
        }
    }

    /// Forgets everything buffered and any error, keeping the buffers, for a new
    /// connection.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.need = 0;
        self.partial = None;
        self.assembly.clear();
        self.failed = None;
    }

    /// The free space to read socket bytes into. First moves the buffered bytes to the
    /// front if too little is free behind them, and grows the buffer if the frame being
    /// received does not fit in it. Never zero-fills.
    ///
    /// Not empty whenever the last [`next`](Self::next) returned `Ok(None)`; empty only if
    /// the buffer is full of frames not yet taken with `next`.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let buffered = self.end - self.start;
        // A `need` at or below what is buffered is stale (frames were filled but not
        // parsed yet): only `next` knows what the bytes at `start` are.
        let need = if self.need > buffered { self.need } else { 0 };
        if need > self.buf.len() {
            // `next` only asks for frames within the limits, so `need <= largest`.
            let largest =
                self.max_frame_bytes.min(self.max_message_bytes) + MAX_SERVER_HEADER_BYTES;
            let size = self.buf.len().saturating_mul(2).min(largest).max(need);
            let mut grown = vec![0; size];
            grown[..buffered].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = grown;
            self.start = 0;
            self.end = buffered;
        } else if self.start > 0
            && (self.start + need > self.buf.len() || self.buf.len() - self.end < MIN_READ_BYTES)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into the start of [`spare`](Self::spare). More
    /// than `spare` held is a bug in the caller; the excess is ignored.
    pub fn filled(&mut self, n: usize) {
        debug_assert!(
            n <= self.buf.len() - self.end,
            "filled more than spare() lent"
        );
        self.end += n.min(self.buf.len() - self.end);
    }

    /// The next whole message, or `Ok(None)` when more bytes are needed. Parses every
    /// frame buffered, so many frames from one read come out of successive calls without
    /// another read; fragments are assembled, and control frames between them returned
    /// as they come. Text is validated as UTF-8.
    ///
    /// The frame's bytes belong to the reader again at the next call to any of its
    /// methods. After an error every later call returns the same error.
    // Each frame borrows the reader, which `Iterator::next` cannot express.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.advance() {
            Ok(Some(ready)) => Ok(Some(self.lend(ready))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// Bytes in the read buffer not yet parsed (a partial frame's, or frames not yet
    /// taken with [`next`](Self::next)).
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The bytes read but not yet consumed, for parsing the handshake response in place.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` pending bytes (at most all of them): the handshake response
    /// head, once [`parse_handshake_response`] found its end.
    pub fn discard(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
        self.need = 0;
    }

    /// The read buffer's size in bytes (grows only for a frame larger than it).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Parses and validates buffered frames until one completes a message, consuming
    /// them; `Ok(None)` with `need` set when the buffer ends first.
    fn advance(&mut self) -> Result<Option<Ready>, FrameError> {
        loop {
            let available = &self.buf[self.start..self.end];
            let header = match parse_header(available)? {
                HeaderParse::Complete(header) => header,
                HeaderParse::Incomplete(header_bytes) => {
                    self.need = header_bytes;
                    return Ok(None);
                }
            };
            // Limits and message state are checked on the header alone, so that a frame
            // that will be refused is never waited for nor buffered.
            let len = usize::try_from(header.payload).unwrap_or(usize::MAX);
            if len > self.max_frame_bytes {
                return Err(FrameError::Capacity {
                    size: len,
                    limit: self.max_frame_bytes,
                });
            }
            let role = self.role(header.opcode)?;
            if let Role::Data { first, .. } = role {
                let message = if first {
                    len
                } else {
                    self.assembly.len().saturating_add(len)
                };
                if message > self.max_message_bytes {
                    return Err(FrameError::Capacity {
                        size: message,
                        limit: self.max_message_bytes,
                    });
                }
            }
            // Within MAX_LIMIT + MAX_SERVER_HEADER_BYTES: cannot overflow.
            let total = header.len + len;
            if available.len() < total {
                self.need = total;
                return Ok(None);
            }
            let payload = self.start + header.len..self.start + total;
            self.start += total;
            self.need = 0;
            match role {
                Role::Data { kind, first: true } if header.fin => {
                    return Ok(Some(match kind {
                        DataKind::Text => {
                            check_utf8(&self.buf[payload.clone()])?;
                            Ready::Text(payload)
                        }
                        DataKind::Binary => Ready::Binary(payload),
                    }));
                }
                Role::Data { kind, first } => {
                    if first {
                        self.assembly.clear();
                        self.partial = Some(kind);
                    }
                    self.assembly.extend_from_slice(&self.buf[payload]);
                    if header.fin {
                        self.partial = None;
                        if kind == DataKind::Text {
                            check_utf8(&self.assembly)?;
                        }
                        return Ok(Some(Ready::Assembled(kind)));
                    }
                }
                Role::Close => {
                    parse_close(&self.buf[payload.clone()])?;
                    return Ok(Some(Ready::Close(payload)));
                }
                Role::Ping => return Ok(Some(Ready::Ping(payload))),
                Role::Pong => return Ok(Some(Ready::Pong(payload))),
            }
        }
    }

    /// What a frame with this opcode does now, or why it may not come now.
    fn role(&self, opcode: OpCode) -> Result<Role, FrameError> {
        let first = |kind| match self.partial {
            None => Ok(Role::Data { kind, first: true }),
            Some(_) => Err(FrameError::Protocol(
                "a new data message started before the fragmented one finished",
            )),
        };
        match opcode {
            OpCode::Text => first(DataKind::Text),
            OpCode::Binary => first(DataKind::Binary),
            OpCode::Continuation => match self.partial {
                Some(kind) => Ok(Role::Data { kind, first: false }),
                None => Err(FrameError::Protocol(
                    "a continuation frame without a fragmented message to continue",
                )),
            },
            OpCode::Close => Ok(Role::Close),
            OpCode::Ping => Ok(Role::Ping),
            OpCode::Pong => Ok(Role::Pong),
        }
    }

    /// Lends a message that `advance` validated.
    fn lend(&mut self, ready: Ready) -> Frame<'_> {
        match ready {
            Ready::Text(range) => Frame::Text(&mut self.buf[range]),
            Ready::Binary(range) => Frame::Binary(&self.buf[range]),
            Ready::Assembled(DataKind::Text) => Frame::Text(&mut self.assembly),
            Ready::Assembled(DataKind::Binary) => Frame::Binary(&self.assembly),
            // Validated by `advance`, so never the fallback; parsing again (at most 125
            // bytes, once a connection) keeps this free of both panics and unsafe code.
            Ready::Close(range) => Frame::Close(parse_close(&self.buf[range]).unwrap_or(None)),
            Ready::Ping(range) => Frame::Ping(&self.buf[range]),
            Ready::Pong(range) => Frame::Pong(&self.buf[range]),
        }
    }
}

/// Parses the header of a server frame at the start of `bytes`. Every check that the
/// bytes seen so far allow is made before waiting for more.
fn parse_header(bytes: &[u8]) -> Result<HeaderParse, FrameError> {
    let Some(&first) = bytes.first() else {
        return Ok(HeaderParse::Incomplete(2));
    };
    if first & RSV_BITS != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set, but no extension was negotiated",
        ));
    }
    let Some(opcode) = OpCode::from_bits(first & OPCODE_BITS) else {
        return Err(FrameError::Protocol("reserved opcode"));
    };
    let fin = first & FIN_BIT != 0;
    if opcode.is_control() && !fin {
        return Err(FrameError::Protocol("fragmented control frame"));
    }
    let Some(&second) = bytes.get(1) else {
        return Ok(HeaderParse::Incomplete(2));
    };
    if second & MASK_BIT != 0 {
        return Err(FrameError::Protocol("masked frame from the server"));
    }
    let len7 = second & LEN7_BITS;
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(FrameError::Protocol("control frame over 125 bytes"));
    }
    // Longer encodings than needed (a 16-bit length under 126, a 64-bit one under 65536)
    // are accepted: RFC 6455 requires the minimal form but nothing is gained by refusing.
    let (payload, len) = match len7 {
        LEN_16 => {
            let Some(&[hi, lo]) = bytes.get(2..4) else {
                return Ok(HeaderParse::Incomplete(4));
            };
            (u64::from(u16::from_be_bytes([hi, lo])), 4)
        }
        LEN_64 => {
            let Some(raw) = bytes.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return Ok(HeaderParse::Incomplete(MAX_SERVER_HEADER_BYTES));
            };
            let payload = u64::from_be_bytes(raw);
            if payload >> 63 != 0 {
                return Err(FrameError::Protocol(
                    "64-bit payload length with its most significant bit set",
                ));
            }
            (payload, MAX_SERVER_HEADER_BYTES)
        }
        short => (u64::from(short), 2),
    };
    Ok(HeaderParse::Complete(Header {
        fin,
        opcode,
        len,
        payload,
    }))
}

/// Validates a close frame's payload: empty, or a valid status code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<CloseInfo<'_>>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::Utf8)?;
            Ok(Some(CloseInfo { code, reason }))
        }
    }
}

fn check_utf8(text: &[u8]) -> Result<(), FrameError> {
    std::str::from_utf8(text)
        .map(drop)
        .map_err(|_| FrameError::Utf8)
}

/// Appends one client frame (FIN set) carrying `payload` masked with `mask`. A client
/// must mask every frame (RFC 6455 §5.3); [`new_mask`] makes a mask.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.reserve(MAX_CLIENT_HEADER_BYTES + payload.len());
    out.push(FIN_BIT | opcode.bits());
    let len = payload.len();
    if len < usize::from(LEN_16) {
        out.push(MASK_BIT | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(MASK_BIT | LEN_16);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(MASK_BIT | LEN_64);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let at = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[at..], mask);
}

/// XORs `bytes` with the repeated mask (masking and unmasking are the same operation).
fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    let mut words = bytes.chunks_exact_mut(4);
    for word in &mut words {
        for (b, m) in word.iter_mut().zip(mask) {
            *b ^= m;
        }
    }
    for (b, m) in words.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// A fresh masking key. RFC 6455 wants it unpredictable so that scripts in a browser
/// cannot choose the bytes a proxy sees; this client sends only its own messages, so a
/// fast non-cryptographic generator is enough.
pub fn new_mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Appends a text frame.
pub fn text(out: &mut Vec<u8>, message: &str) {
    encode_client_frame(out, OpCode::Text, message.as_bytes(), new_mask());
}

/// Appends the pong that answers a ping with `payload` (cut to 125 bytes; a ping that
/// [`FrameReader`] returned never has more).
pub fn pong(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    encode_client_frame(out, OpCode::Pong, payload, new_mask());
}

/// Appends a close frame with a status code (one that [`is_valid_close_code`] accepts)
/// and a reason, cut at a character boundary to fit a control frame.
pub fn close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = truncate_utf8(reason, MAX_CLOSE_REASON_BYTES).as_bytes();
    let mut body = [0u8; MAX_CONTROL_PAYLOAD];
    body[..2].copy_from_slice(&code.to_be_bytes());
    body[2..2 + reason.len()].copy_from_slice(reason);
    encode_client_frame(out, OpCode::Close, &body[..2 + reason.len()], new_mask());
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why a handshake response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not 101; `body`: the start of the body already received (at most 200 bytes,
    /// decoded lossily), often the server's reason.
    #[error("the server answered HTTP {code} instead of 101: {body:?}")]
    Status { code: u16, body: String },
    #[error("the handshake response head is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed handshake response: {0}")]
    Malformed(#[from] httparse::Error),
    #[error("handshake response refused: {0}")]
    Invalid(&'static str),
}

/// The opening handshake's request (RFC 6455 §4.1) for `path_and_query` (`/` if empty)
/// on `host_header` (with the port when it is not the scheme's default), offering no
/// extension and no subprotocol. The arguments come from configuration and must not
/// contain CR or LF.
pub fn client_handshake_request(host_header: &str, path_and_query: &str, key: &str) -> Vec<u8> {
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host_header}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    )
    .into_bytes()
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (24 characters).
pub fn new_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// Checks the server's answer to [`client_handshake_request`] sent with `key`, given the
/// bytes received so far: `Ok(None)` until the head is complete, then `Ok(Some(n))`, the
/// head's length. The bytes after it are the first frames and must be kept.
///
/// Refused: a status other than 101, `Upgrade` other than `websocket`, `Connection`
/// without the `upgrade` token (both case-insensitive), a wrong `Sec-WebSocket-Accept`,
/// an extension or subprotocol the request did not offer, and a head over 16 KiB.
pub fn parse_handshake_response(buf: &[u8], key: &str) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HANDSHAKE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > MAX_HANDSHAKE_HEAD_BYTES => {
            return Err(HandshakeError::TooLarge {
                limit: MAX_HANDSHAKE_HEAD_BYTES,
            })
        }
        httparse::Status::Partial => return Ok(None),
    };
    if head_len > MAX_HANDSHAKE_HEAD_BYTES {
        return Err(HandshakeError::TooLarge {
            limit: MAX_HANDSHAKE_HEAD_BYTES,
        });
    }
    let Some(code) = response.code else {
        return Err(HandshakeError::Invalid("no status code"));
    };
    if code != 101 {
        let body = buf.get(head_len..).unwrap_or_default();
        let body = body.get(..ERROR_BODY_BYTES).unwrap_or(body);
        return Err(HandshakeError::Status {
            code,
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }
    let values = |name: &'static str| {
        response
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    if !values("Upgrade").any(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(HandshakeError::Invalid("no `Upgrade: websocket`"));
    }
    if !values("Connection").any(|v| {
        v.split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    }) {
        return Err(HandshakeError::Invalid("no `upgrade` in `Connection`"));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut accepts = values("Sec-WebSocket-Accept");
    match (accepts.next(), accepts.next()) {
        (Some(accept), None) if accept == expected.as_bytes() => {}
        (None, _) => return Err(HandshakeError::Invalid("no `Sec-WebSocket-Accept`")),
        _ => return Err(HandshakeError::Invalid("wrong `Sec-WebSocket-Accept`")),
    }
    if values("Sec-WebSocket-Extensions").any(|v| !v.is_empty()) {
        return Err(HandshakeError::Invalid("an extension that was not offered"));
    }
    if values("Sec-WebSocket-Protocol").any(|v| !v.is_empty()) {
        return Err(HandshakeError::Invalid(
            "a subprotocol that was not offered",
        ));
    }
    Ok(Some(head_len))
}

#[cfg(test)]
mod tests;
