//! Tests of the frame reader and writer: RFC 6455's rules, its examples, every way the
//! bytes may be split across reads, and random input. This file holds the helpers the
//! topics share; each topic is a file in `tests/`.

mod client;
mod handshake;
mod reader;
mod split;

use super::*;

/// Frame and message limit of the tests' readers.
const LIMIT: usize = 1 << 20;
/// The RFC 6455 §1.3 example key and its accept value.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const RFC_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn reader() -> FrameReader {
    FrameReader::new(MIN_BUFFER_BYTES, LIMIT, LIMIT)
}

/// A server frame (unmasked) with the shortest length form.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let form = match payload.len() {
        0..=125 => 0,
        126..=65535 => LEN_16,
        _ => LEN_64,
    };
    frame_with_form(first, payload, form)
}

/// A server frame whose length is in the given form: 0 for 7 bits, else 126 or 127.
fn frame_with_form(first: u8, payload: &[u8], form: u8) -> Vec<u8> {
    let mut out = vec![first];
    match form {
        LEN_16 => {
            out.push(LEN_16);
            out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        }
        LEN_64 => {
            out.push(LEN_64);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        _ => out.push(u8::try_from(payload.len()).unwrap()),
    }
    out.extend_from_slice(payload);
    out
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(0x88, &payload)
}

/// A client frame made into the server frame it would be without its mask.
fn unmask(client: &[u8]) -> Vec<u8> {
    assert_ne!(client[1] & MASK_BIT, 0, "client frames are masked");
    let at = match client[1] & LEN7_BITS {
        LEN_16 => 4,
        LEN_64 => 10,
        _ => 2,
    };
    let mask: [u8; 4] = client[at..at + 4].try_into().unwrap();
    let mut out = client[..at].to_vec();
    out[1] &= !MASK_BIT;
    let mut payload = client[at + 4..].to_vec();
    apply_mask(&mut payload, mask);
    out.extend_from_slice(&payload);
    out
}

/// A frame copied out of the reader, to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn own(frame: Frame<'_>) -> Owned {
    match frame {
        Frame::Text(t) => Owned::Text(String::from_utf8(t.to_vec()).unwrap()),
        Frame::Binary(b) => Owned::Binary(b.to_vec()),
        Frame::Ping(p) => Owned::Ping(p.to_vec()),
        Frame::Pong(p) => Owned::Pong(p.to_vec()),
        Frame::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.to_string()))),
    }
}

/// Feeds `stream` in reads of `chunk()` bytes (cut to what `spare` offers), taking
/// every frame after each read, until the stream ends or an error.
fn feed(
    reader: &mut FrameReader,
    stream: &[u8],
    mut chunk: impl FnMut() -> usize,
) -> (Vec<Owned>, Option<FrameError>) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        loop {
            match reader.next() {
                Ok(Some(f)) => frames.push(own(f)),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(reader.next(), Err(e), "errors are final");
                    return (frames, Some(e));
                }
            }
        }
        if at == stream.len() {
            return (frames, None);
        }
        let spare = reader.spare();
        assert!(
            !spare.is_empty(),
            "spare() is empty after next() asked for more"
        );
        let n = chunk().clamp(1, spare.len()).min(stream.len() - at);
        spare[..n].copy_from_slice(&stream[at..at + n]);
        reader.filled(n);
        at += n;
    }
}

/// The frames of `stream` read in one read (the buffer holds it all).
fn whole(stream: &[u8]) -> (Vec<Owned>, Option<FrameError>) {
    let mut reader = FrameReader::new(stream.len(), LIMIT, LIMIT);
    feed(&mut reader, stream, || usize::MAX)
}

/// The one message (or error) that `bytes` hold.
fn one(bytes: &[u8]) -> Result<Owned, FrameError> {
    match whole(bytes) {
        (_, Some(e)) => Err(e),
        (frames, None) => {
            assert_eq!(frames.len(), 1, "{frames:?}");
            Ok(frames[0].clone())
        }
    }
}

fn protocol(bytes: &[u8]) -> bool {
    matches!(whole(bytes).1, Some(FrameError::Protocol(_)))
}

fn random_text(rng: &mut fastrand::Rng, chars: usize) -> String {
    const ALPHABET: [char; 12] = ['{', '}', '"', ':', ',', 'a', 'Z', '7', '.', 'é', '€', '𝄞'];
    (0..chars)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
        .collect()
}

fn random_bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Cuts `bytes` into `parts` pieces at random places (pieces may be empty).
fn cut(rng: &mut fastrand::Rng, bytes: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = (1..parts).map(|_| rng.usize(..=bytes.len())).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in points.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[from..to].to_vec());
        from = to;
    }
    pieces
}

/// A stream of `count` mixed frames ending with a close, and the messages it holds.
fn mixed_stream(rng: &mut fastrand::Rng, count: usize) -> (Vec<u8>, Vec<Owned>) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..count {
        match rng.u8(..10) {
            0..=2 => {
                let t = {
                    let n = rng.usize(..400);
                    random_text(rng, n)
                };
                stream.extend(frame(0x81, t.as_bytes()));
                expected.push(Owned::Text(t));
            }
            3 => {
                let b = {
                    let n = rng.usize(..300);
                    random_bytes(rng, n)
                };
                stream.extend(frame(0x82, &b));
                expected.push(Owned::Binary(b));
            }
            4 => {
                let p = {
                    let n = rng.usize(..=MAX_CONTROL_PAYLOAD);
                    random_bytes(rng, n)
                };
                let (first, owned) = if rng.bool() {
                    (0x89, Owned::Ping(p.clone()))
                } else {
                    (0x8A, Owned::Pong(p.clone()))
                };
                stream.extend(frame(first, &p));
                expected.push(owned);
            }
            5 | 6 => {
                // Fragmented, cut anywhere (inside characters too), pings between.
                let text = rng.bool();
                let payload = if text {
                    {
                        let n = rng.usize(..600);
                        random_text(rng, n)
                    }
                    .into_bytes()
                } else {
                    {
                        let n = rng.usize(..600);
                        random_bytes(rng, n)
                    }
                };
                let parts = rng.usize(2..6);
                let pieces = cut(rng, &payload, parts);
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => 0x1,
                        (0, false) => 0x2,
                        _ => 0x0,
                    };
                    let fin = if i == last { FIN_BIT } else { 0 };
                    stream.extend(frame(fin | opcode, piece));
                    if i != last && rng.bool() {
                        stream.extend(frame(0x89, b"between"));
                        expected.push(Owned::Ping(b"between".to_vec()));
                    }
                }
                expected.push(if text {
                    Owned::Text(String::from_utf8(payload).unwrap())
                } else {
                    Owned::Binary(payload)
                });
            }
            7 => {
                // Longer length forms than needed.
                let t = {
                    let n = rng.usize(..100);
                    random_text(rng, n)
                };
                let form = if rng.bool() { LEN_16 } else { LEN_64 };
                stream.extend(frame_with_form(0x81, t.as_bytes(), form));
                expected.push(Owned::Text(t));
            }
            8 => {
                stream.extend(frame(0x81, b""));
                expected.push(Owned::Text(String::new()));
            }
            _ => {
                // Now and then one larger than the buffer's minimum size.
                let len = if rng.u8(..8) == 0 {
                    rng.usize(MIN_BUFFER_BYTES..3 * MIN_BUFFER_BYTES)
                } else {
                    rng.usize(..5000)
                };
                let t = "x".repeat(len);
                stream.extend(frame(0x81, t.as_bytes()));
                expected.push(Owned::Text(t));
            }
        }
    }
    stream.extend(close_frame(CLOSE_NORMAL, "bye".as_bytes()));
    expected.push(Owned::Close(Some((CLOSE_NORMAL, "bye".to_string()))));
    (stream, expected)
}
