//! Tests of the frame reader and writer: RFC 6455's rules, its examples, every way the
//! bytes may be split across reads, and random input.

use super::*;
use proptest::prelude::*;

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

// ---- RFC 6455 §5.7 examples ----

#[test]
fn reads_the_rfc_single_frame_unmasked_text() {
    let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(one(&bytes), Ok(Owned::Text("Hello".into())));
}

#[test]
fn reads_the_rfc_fragmented_unmasked_text() {
    let bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(one(&bytes), Ok(Owned::Text("Hello".into())));
}

#[test]
fn reads_the_rfc_unmasked_ping() {
    let bytes = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(one(&bytes), Ok(Owned::Ping(b"Hello".to_vec())));
}

#[test]
fn reads_the_rfc_256_byte_and_64_kib_binary_frames() {
    let small: Vec<u8> = (0..256).map(|i| i as u8).collect();
    let bytes = frame(0x82, &small);
    assert_eq!(bytes[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(one(&bytes), Ok(Owned::Binary(small)));

    let large: Vec<u8> = (0..65536).map(|i| (i * 7) as u8).collect();
    let bytes = frame(0x82, &large);
    assert_eq!(bytes[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(one(&bytes), Ok(Owned::Binary(large)));
}

// ---- frame rules ----

#[test]
fn refuses_masked_server_frames() {
    let rfc_masked_hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        whole(&rfc_masked_hello).1,
        Some(FrameError::Protocol("masked frame from the server"))
    );
    // Refused on the second byte, before the rest arrives.
    let mut r = reader();
    r.spare()[..2].copy_from_slice(&rfc_masked_hello[..2]);
    r.filled(2);
    assert!(matches!(r.next(), Err(FrameError::Protocol(_))));
}

#[test]
fn refuses_reserved_bits() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        assert!(protocol(&frame(0x81 | rsv, b"x")), "{rsv:#x}");
        assert!(protocol(&frame(0x89 | rsv, b"x")), "{rsv:#x}");
    }
}

#[test]
fn refuses_reserved_opcodes() {
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        assert!(protocol(&frame(FIN_BIT | opcode, b"x")), "{opcode:#x}");
        // Known from the first byte alone.
        let mut r = reader();
        r.spare()[0] = FIN_BIT | opcode;
        r.filled(1);
        assert!(matches!(r.next(), Err(FrameError::Protocol(_))));
    }
}

#[test]
fn control_frames_must_be_final_and_at_most_125_bytes() {
    let mut close_125 = 1000u16.to_be_bytes().to_vec();
    close_125.extend_from_slice(&[b'r'; 123]);
    for (first, full) in [
        (0x88, close_125),
        (0x89, vec![1; 125]),
        (0x8A, vec![2; 125]),
    ] {
        assert!(
            one(&frame(first, &full)).is_ok(),
            "{first:#x} with 125 bytes"
        );
        assert!(
            protocol(&frame(first & !FIN_BIT, b"")),
            "{first:#x} without FIN"
        );
        let mut over = full.clone();
        over.push(b'r');
        assert!(protocol(&frame(first, &over)), "{first:#x} with 126 bytes");
        assert!(
            protocol(&frame_with_form(first, b"", LEN_64)),
            "{first:#x} 64-bit"
        );
    }
}

#[test]
fn reads_extended_lengths_minimal_or_not() {
    for form in [0, LEN_16, LEN_64] {
        let bytes = frame_with_form(0x81, b"short", form);
        assert_eq!(one(&bytes), Ok(Owned::Text("short".into())), "form {form}");
    }
    let bytes = frame_with_form(0x82, &[9; 300], LEN_64);
    assert_eq!(one(&bytes), Ok(Owned::Binary(vec![9; 300])));
}

#[test]
fn refuses_a_64_bit_length_with_the_top_bit_set() {
    let mut bytes = vec![0x82, LEN_64];
    bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    assert_eq!(
        whole(&bytes).1,
        Some(FrameError::Protocol(
            "64-bit payload length with its most significant bit set"
        ))
    );
}

#[test]
fn reads_text_at_the_length_form_boundaries() {
    for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let text = "a".repeat(len);
        let bytes = frame(0x81, text.as_bytes());
        assert_eq!(bytes.len(), header + len);
        assert_eq!(one(&bytes), Ok(Owned::Text(text)), "{len}");
    }
}

#[test]
fn reads_zero_length_frames() {
    let mut stream = frame(0x81, b"");
    stream.extend(frame(0x82, b""));
    stream.extend(frame(0x89, b""));
    stream.extend(frame(0x01, b""));
    stream.extend(frame(0x80, b""));
    stream.extend(frame(0x88, b""));
    assert_eq!(
        whole(&stream),
        (
            vec![
                Owned::Text(String::new()),
                Owned::Binary(vec![]),
                Owned::Ping(vec![]),
                Owned::Text(String::new()),
                Owned::Close(None),
            ],
            None
        )
    );
}

#[test]
fn assembles_fragments_with_control_frames_between() {
    let euro = "€".as_bytes(); // Cut inside the character below.
    let mut stream = frame(0x01, b"{\"p\":\"1");
    stream.extend(frame(0x89, b"ping"));
    stream.extend(frame(0x00, &euro[..1]));
    stream.extend(frame(0x8A, b"pong"));
    stream.extend(frame(0x00, b""));
    stream.extend(frame(0x80, &[&euro[1..], b"\"}"].concat()));
    stream.extend(frame(0x02, &[1, 2]));
    stream.extend(close_frame(1001, b"mid-message"));
    stream.extend(frame(0x80, &[3]));
    stream.extend(frame(0x81, b"after"));
    assert_eq!(
        whole(&stream),
        (
            vec![
                Owned::Ping(b"ping".to_vec()),
                Owned::Pong(b"pong".to_vec()),
                Owned::Text("{\"p\":\"1€\"}".into()),
                Owned::Close(Some((1001, "mid-message".into()))),
                Owned::Binary(vec![1, 2, 3]),
                Owned::Text("after".into()),
            ],
            None
        )
    );
}

#[test]
fn refuses_a_continuation_without_a_message() {
    let expected = Some(FrameError::Protocol(
        "a continuation frame without a fragmented message to continue",
    ));
    assert_eq!(whole(&frame(0x80, b"x")).1, expected);
    assert_eq!(whole(&frame(0x00, b"x")).1, expected);
    // Also after a fragmented message has finished.
    let mut stream = frame(0x01, b"a");
    stream.extend(frame(0x80, b"b"));
    stream.extend(frame(0x80, b"c"));
    assert_eq!(whole(&stream), (vec![Owned::Text("ab".into())], expected));
}

#[test]
fn refuses_a_new_message_inside_a_fragmented_one() {
    for (first, second) in [(0x01, 0x81), (0x01, 0x02), (0x02, 0x82), (0x02, 0x01)] {
        let mut stream = frame(first, b"a");
        stream.extend(frame(second, b"b"));
        assert!(protocol(&stream), "{first:#x} then {second:#x}");
    }
}

#[test]
fn reads_and_validates_close_frames() {
    assert_eq!(one(&frame(0x88, b"")), Ok(Owned::Close(None)));
    assert_eq!(
        one(&close_frame(1000, "done ✓".as_bytes())),
        Ok(Owned::Close(Some((1000, "done ✓".into()))))
    );
    assert_eq!(
        one(&frame(0x88, &[0x03])),
        Err(FrameError::Protocol("close frame with a 1-byte payload"))
    );
    assert_eq!(
        one(&close_frame(1000, &[0xff, 0xfe])),
        Err(FrameError::Utf8)
    );
    assert_eq!(
        one(&close_frame(1005, b"")),
        Err(FrameError::Protocol("invalid close code"))
    );
}

#[test]
fn close_codes_follow_the_registry() {
    for code in 0..=u16::MAX {
        let valid = (1000..=1003).contains(&code)
            || (1007..=1014).contains(&code)
            || (3000..=4999).contains(&code);
        assert_eq!(is_valid_close_code(code), valid, "{code}");
        let read = one(&close_frame(code, b""));
        if valid {
            assert_eq!(read, Ok(Owned::Close(Some((code, String::new())))));
        } else {
            assert_eq!(
                read,
                Err(FrameError::Protocol("invalid close code")),
                "{code}"
            );
        }
    }
}

#[test]
fn refuses_text_that_is_not_utf8() {
    assert_eq!(one(&frame(0x81, &[b'a', 0xC3])), Err(FrameError::Utf8));
    assert_eq!(
        one(&frame(0x81, &[0xED, 0xA0, 0x80])),
        Err(FrameError::Utf8)
    );
    // Binary is not checked.
    assert_eq!(one(&frame(0x82, &[0xff])), Ok(Owned::Binary(vec![0xff])));
    // A fragmented text that ends inside a character.
    let mut stream = frame(0x01, b"ok");
    stream.extend(frame(0x80, &"€".as_bytes()[..2]));
    assert_eq!(whole(&stream).1, Some(FrameError::Utf8));
}

#[test]
fn refuses_a_frame_over_the_limit_on_its_header() {
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, 100_000, LIMIT);
    let capacity = r.capacity();
    let header = &frame(0x81, &vec![b'a'; 100_001])[..10];
    r.spare()[..10].copy_from_slice(header);
    r.filled(10);
    let refused = Err(FrameError::Capacity {
        size: 100_001,
        limit: 100_000,
    });
    assert_eq!(r.next(), refused);
    assert_eq!(r.next(), refused);
    assert_eq!(r.capacity(), capacity, "nothing was buffered for it");

    let mut huge = vec![0x82, LEN_64];
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    assert!(matches!(
        whole(&huge).1,
        Some(FrameError::Capacity { limit: LIMIT, .. })
    ));
}

#[test]
fn refuses_a_message_over_the_limit() {
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, 5000, 1000);
    let (_, e) = feed(&mut r, &frame(0x81, &[b'a'; 1001]), || usize::MAX);
    let over = FrameError::Capacity {
        size: 1001,
        limit: 1000,
    };
    assert_eq!(e, Some(over));

    let mut stream = frame(0x01, &[b'a'; 600]);
    stream.extend(frame(0x89, b""));
    stream.extend(frame(0x80, &[b'a'; 600]));
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, 5000, 1000);
    let (frames, e) = feed(&mut r, &stream, || usize::MAX);
    assert_eq!(frames, vec![Owned::Ping(vec![])]);
    assert_eq!(
        e,
        Some(FrameError::Capacity {
            size: 1200,
            limit: 1000
        })
    );

    // Exactly at the limit is fine.
    let mut stream = frame(0x01, &[b'a'; 500]);
    stream.extend(frame(0x80, &[b'a'; 500]));
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, 5000, 1000);
    let (frames, e) = feed(&mut r, &stream, || usize::MAX);
    assert_eq!((frames, e), (vec![Owned::Text("a".repeat(1000))], None));
}

#[test]
fn grows_the_buffer_for_a_frame_larger_than_it() {
    let limit = 100_000;
    let text = "b".repeat(limit);
    let mut stream = frame(0x81, b"first");
    stream.extend(frame(0x81, text.as_bytes()));
    stream.extend(frame(0x81, b"last"));
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, limit, limit);
    let mut rng = fastrand::Rng::with_seed(7);
    let (frames, e) = feed(&mut r, &stream, || rng.usize(1..9000));
    assert_eq!(e, None);
    assert_eq!(
        frames,
        vec![
            Owned::Text("first".into()),
            Owned::Text(text),
            Owned::Text("last".into())
        ]
    );
    assert!(r.capacity() >= limit + MAX_SERVER_HEADER_BYTES);
    assert!(
        r.capacity() <= limit + MAX_SERVER_HEADER_BYTES,
        "bounded by the limit"
    );
}

#[test]
fn returns_every_frame_of_one_read_without_reading_again() {
    let mut stream = Vec::new();
    for i in 0..1000 {
        stream.extend(frame(0x81, format!("{{\"n\":{i}}}").as_bytes()));
    }
    let mut r = reader();
    r.spare()[..stream.len()].copy_from_slice(&stream);
    r.filled(stream.len());
    for i in 0..1000 {
        let Ok(Some(Frame::Text(t))) = r.next() else {
            panic!("frame {i}");
        };
        assert_eq!(t, format!("{{\"n\":{i}}}").as_bytes());
    }
    assert_eq!(r.next(), Ok(None));
    assert_eq!(r.buffered(), 0);
}

#[test]
fn lends_text_in_place_and_mutably() {
    let mut stream = frame(0x81, b"{\"a\":1}");
    stream.extend(frame(0x81, b"{\"b\":2}"));
    stream.extend(&frame(0x81, b"{\"c\":3}")[..4]);
    let mut r = reader();
    r.spare()[..stream.len()].copy_from_slice(&stream);
    r.filled(stream.len());
    let buffer = r.buf.as_ptr_range();
    let Ok(Some(Frame::Text(first))) = r.next() else {
        panic!("no first frame");
    };
    assert!(buffer.contains(&first.as_ptr()), "not copied");
    first.fill(b'#'); // As an in-place parser may.
    assert_eq!(r.next(), Ok(Some(Frame::Text(&mut b"{\"b\":2}".to_vec()))));
    assert_eq!(r.next(), Ok(None));
    assert_eq!(r.buffered(), 4, "the partial third frame");
}

#[test]
fn spare_does_not_clear_consumed_bytes() {
    let stream = frame(0x82, &[0xAB; 64]);
    let mut r = reader();
    r.spare()[..stream.len()].copy_from_slice(&stream);
    r.filled(stream.len());
    assert!(matches!(r.next(), Ok(Some(Frame::Binary(_)))));
    assert_eq!(r.next(), Ok(None));
    // Everything was consumed: the next read starts at the front, over the old bytes.
    assert_eq!(r.spare()[..stream.len()], stream[..]);
}

#[test]
fn spare_moves_a_partial_frame_to_the_front() {
    let mut r = reader();
    let capacity = r.capacity();
    // Fill the buffer with whole frames and the first 3 bytes of another.
    let filler = frame(0x82, &vec![0; capacity - 4 - 3]); // 16-bit length: 4-byte header.
    let next = frame(0x81, b"moved");
    let mut stream = filler;
    stream.extend(&next[..3]);
    assert_eq!(stream.len(), capacity);
    r.spare().copy_from_slice(&stream);
    r.filled(capacity);
    assert!(matches!(r.next(), Ok(Some(Frame::Binary(_)))));
    assert_eq!(r.next(), Ok(None));
    let spare = r.spare();
    assert_eq!(spare.len(), capacity - 3);
    spare[..next.len() - 3].copy_from_slice(&next[3..]);
    r.filled(next.len() - 3);
    assert_eq!(r.next(), Ok(Some(Frame::Text(&mut b"moved".to_vec()))));
}

#[test]
fn errors_are_final_until_reset() {
    let mut r = reader();
    let mut stream = frame(0xC1, b"rsv1");
    stream.extend(frame(0x81, b"valid"));
    r.spare()[..stream.len()].copy_from_slice(&stream);
    r.filled(stream.len());
    let e = r.next().map(|_| ()).unwrap_err();
    assert!(matches!(e, FrameError::Protocol(_)));
    assert_eq!(r.next(), Err(e));
    r.reset();
    assert_eq!(r.buffered(), 0);
    let (frames, e) = feed(&mut r, &frame(0x81, b"again"), || usize::MAX);
    assert_eq!((frames, e), (vec![Owned::Text("again".into())], None));
}

#[test]
fn errors_map_to_close_codes() {
    assert_eq!(FrameError::Protocol("x").close_code(), 1002);
    assert_eq!(FrameError::Utf8.close_code(), 1007);
    let e = FrameError::Capacity { size: 2, limit: 1 };
    assert_eq!(e.close_code(), 1009);
}

// ---- streams split anywhere ----

#[test]
fn a_stream_read_one_byte_at_a_time_parses_as_whole() {
    let mut rng = fastrand::Rng::with_seed(1);
    let (mut stream, mut expected) = mixed_stream(&mut rng, 150);
    // Frames at the length-form edges, in the middle of the stream.
    let mut edges = Vec::new();
    for len in [125, 126, 65535, 65536] {
        edges.extend(frame(0x81, "e".repeat(len).as_bytes()));
        expected.insert(expected.len() - 1, Owned::Text("e".repeat(len)));
    }
    let close_at = stream.len() - close_frame(CLOSE_NORMAL, b"bye").len();
    stream.splice(close_at..close_at, edges);

    assert_eq!(whole(&stream), (expected.clone(), None));
    let mut r = reader();
    assert_eq!(feed(&mut r, &stream, || 1), (expected, None));
    assert_eq!(r.buffered(), 0);
}

#[test]
fn a_stream_read_in_random_chunks_parses_as_whole() {
    for seed in 0..40 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (stream, expected) = mixed_stream(&mut rng, 200);
        assert_eq!(whole(&stream), (expected.clone(), None), "seed {seed}");
        let mut r = reader();
        let max_chunk = [7, 100, 3000, MIN_BUFFER_BYTES][seed as usize % 4];
        let got = feed(&mut r, &stream, || rng.usize(1..=max_chunk));
        assert_eq!(got, (expected, None), "seed {seed}");
    }
}

#[test]
fn every_split_of_two_frames_parses_the_same() {
    let mut stream = frame(0x01, "fragmented €".as_bytes());
    stream.extend(frame(0x89, b"p"));
    stream.extend(frame_with_form(0x80, b" text", LEN_64));
    stream.extend(close_frame(4000, b"app"));
    let expected = whole(&stream);
    for split in 0..=stream.len() {
        let mut r = reader();
        let mut sizes = [split, usize::MAX].into_iter();
        let got = feed(&mut r, &stream, || sizes.next().unwrap_or(usize::MAX));
        assert_eq!(got, expected, "split at {split}");
    }
}

// ---- no panics on any input ----

/// Feeds `bytes` in random chunks to a reader with small limits; checks the
/// invariants on the way. Returns whether it ended in an error.
fn survive(bytes: &[u8], rng: &mut fastrand::Rng) -> bool {
    let limit = 3 * MIN_BUFFER_BYTES;
    let mut r = FrameReader::new(MIN_BUFFER_BYTES, limit, limit);
    let (frames, e) = feed(&mut r, bytes, || rng.usize(1..200));
    assert!(r.capacity() <= limit + MAX_SERVER_HEADER_BYTES);
    assert!(frames.len() <= bytes.len() / 2);
    e.is_some()
}

#[test]
fn mutated_streams_never_panic() {
    let mut rng = fastrand::Rng::with_seed(99);
    let mut errors = 0;
    for _ in 0..300 {
        let (mut stream, _) = mixed_stream(&mut rng, 20);
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..stream.len());
            stream[at] = rng.u8(..);
        }
        errors += usize::from(survive(&stream, &mut rng));
    }
    assert!(errors > 0, "the mutations reached the checks");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        seed in any::<u64>(),
    ) {
        survive(&bytes, &mut fastrand::Rng::with_seed(seed));
    }

    #[test]
    fn arbitrary_frames_read_whole_or_split_the_same(
        frames in proptest::collection::vec(
            (prop_oneof![Just(0x81u8), Just(0x82), Just(0x89), Just(0x8A)],
             proptest::collection::vec(any::<u8>(), 0..=125)),
            0..20,
        ),
        seed in any::<u64>(),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|(first, p)| frame(*first, p)).collect();
        let expected = whole(&stream);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut r = reader();
        prop_assert_eq!(feed(&mut r, &stream, || rng.usize(1..64)), expected);
    }
}

// ---- client frames ----

#[test]
fn masks_like_the_rfc_examples() {
    let mut out = Vec::new();
    encode_client_frame(&mut out, OpCode::Text, b"Hello", RFC_MASK);
    let masked_hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(out, masked_hello);
    assert_eq!(unmask(&out), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

    out.clear();
    encode_client_frame(&mut out, OpCode::Pong, b"Hello", RFC_MASK);
    let masked_pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(out, masked_pong);
}

#[test]
fn encodes_the_rfc_256_byte_and_64_kib_lengths() {
    let mut out = Vec::new();
    encode_client_frame(&mut out, OpCode::Binary, &[0; 256], RFC_MASK);
    assert_eq!(out[..4], [0x82, 0xFE, 0x01, 0x00]);
    assert_eq!(out[4..8], RFC_MASK);
    assert_eq!(out.len(), 8 + 256);
    assert_eq!(unmask(&out), frame(0x82, &[0; 256]));

    out.clear();
    encode_client_frame(&mut out, OpCode::Binary, &vec![0; 65536], RFC_MASK);
    assert_eq!(out[..10], [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(out.len(), 14 + 65536);
    assert_eq!(unmask(&out), frame(0x82, &vec![0; 65536]));
}

#[test]
fn client_frames_round_trip_through_the_reader() {
    let mut rng = fastrand::Rng::with_seed(5);
    for len in [0, 1, 3, 4, 5, 8, 125, 126, 127, 65535, 65536, 70001] {
        for (opcode, control) in [
            (OpCode::Text, false),
            (OpCode::Binary, false),
            (OpCode::Ping, true),
            (OpCode::Pong, true),
        ] {
            if control && len > MAX_CONTROL_PAYLOAD {
                continue;
            }
            let payload = if opcode == OpCode::Text {
                "t".repeat(len).into_bytes()
            } else {
                random_bytes(&mut rng, len)
            };
            let mut out = vec![0xEE]; // Appends, keeping what was there.
            encode_client_frame(&mut out, opcode, &payload, new_mask());
            assert_eq!(out[0], 0xEE);
            let read = one(&unmask(&out[1..])).unwrap();
            let expected = match opcode {
                OpCode::Text => Owned::Text(String::from_utf8(payload).unwrap()),
                OpCode::Binary => Owned::Binary(payload),
                OpCode::Ping => Owned::Ping(payload),
                _ => Owned::Pong(payload),
            };
            assert_eq!(read, expected, "{opcode:?} {len}");
        }
    }
}

#[test]
fn text_pong_and_close_helpers() {
    let mut out = Vec::new();
    text(&mut out, "{\"method\":\"SUBSCRIBE\"}");
    assert_eq!(
        one(&unmask(&out)),
        Ok(Owned::Text("{\"method\":\"SUBSCRIBE\"}".into()))
    );

    out.clear();
    pong(&mut out, &[7; 200]);
    assert_eq!(
        one(&unmask(&out)),
        Ok(Owned::Pong(vec![7; 125])),
        "cut to 125"
    );

    out.clear();
    close(&mut out, CLOSE_GOING_AWAY, "rotating");
    assert_eq!(
        one(&unmask(&out)),
        Ok(Owned::Close(Some((1001, "rotating".into()))))
    );

    out.clear();
    close(&mut out, CLOSE_NORMAL, &"é".repeat(100));
    let Ok(Owned::Close(Some((1000, reason)))) = one(&unmask(&out)) else {
        panic!("no close");
    };
    assert_eq!(reason, "é".repeat(61), "cut at a character boundary");
}

#[test]
fn op_codes_round_trip_through_their_bits() {
    for bits in 0..=0xF {
        if let Some(op) = OpCode::from_bits(bits) {
            assert_eq!(op.bits(), bits);
            assert_eq!(op.is_control(), bits >= 8);
        }
    }
    assert_eq!((0..=0xF).filter_map(OpCode::from_bits).count(), 6);
}

// ---- handshake ----

fn response(status: &str, headers: &[&str]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn rfc_response() -> Vec<u8> {
    response(
        "101 Switching Protocols",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        ],
    )
}

#[test]
fn builds_the_handshake_request() {
    let request = client_handshake_request(
        "stream.binance.com:9443",
        "/stream?timeUnit=MICROSECOND",
        RFC_KEY,
    );
    let expected = "GET /stream?timeUnit=MICROSECOND HTTP/1.1\r\n\
                    Host: stream.binance.com:9443\r\n\
                    Upgrade: websocket\r\n\
                    Connection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                    Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(String::from_utf8(request.clone()).unwrap(), expected);

    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&request).unwrap();
    assert_eq!(status, httparse::Status::Complete(request.len()));
    assert_eq!(parsed.method, Some("GET"));

    let root = client_handshake_request("localhost", "", RFC_KEY);
    assert!(root.starts_with(b"GET / HTTP/1.1\r\n"));
}

#[test]
fn new_keys_are_16_random_bytes_in_base64() {
    let key = new_key();
    assert_eq!(key.len(), 24);
    assert!(key.ends_with("=="));
    assert!(key[..22]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
    assert_ne!(key, new_key());
}

#[test]
fn accepts_the_rfc_handshake_response() {
    assert_eq!(
        tungstenite::handshake::derive_accept_key(RFC_KEY.as_bytes()),
        RFC_ACCEPT
    );
    let head = rfc_response();
    assert_eq!(
        parse_handshake_response(&head, RFC_KEY),
        Ok(Some(head.len()))
    );
    for end in 0..head.len() {
        assert_eq!(parse_handshake_response(&head[..end], RFC_KEY), Ok(None));
    }
}

#[test]
fn accepts_header_names_and_values_in_any_case() {
    let head = response(
        "101 Switching Protocols",
        &[
            "upgrade: WebSocket",
            "CONNECTION: keep-alive, UPGRADE",
            "sec-websocket-accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  ",
            "Sec-WebSocket-Extensions: ",
        ],
    );
    assert_eq!(
        parse_handshake_response(&head, RFC_KEY),
        Ok(Some(head.len()))
    );
}

#[test]
fn keeps_the_frames_after_the_handshake_in_the_reader() {
    let mut bytes = rfc_response();
    let head = bytes.len();
    bytes.extend(frame(0x81, b"{\"result\":null,\"id\":1}"));
    bytes.extend(&frame(0x81, b"second")[..3]);

    let mut r = reader();
    r.spare()[..bytes.len()].copy_from_slice(&bytes);
    r.filled(bytes.len());
    assert_eq!(
        parse_handshake_response(r.pending(), RFC_KEY),
        Ok(Some(head))
    );
    r.discard(head);
    let Ok(Some(Frame::Text(reply))) = r.next() else {
        panic!("the first frame was lost");
    };
    assert_eq!(reply, b"{\"result\":null,\"id\":1}");
    assert_eq!(r.next(), Ok(None));
    assert_eq!(r.pending(), &frame(0x81, b"second")[..3]);
}

#[test]
fn refuses_a_response_without_the_upgrade() {
    let refused = |headers: &[&str]| {
        let head = response("101 Switching Protocols", headers);
        match parse_handshake_response(&head, RFC_KEY) {
            Err(HandshakeError::Invalid(why)) => why,
            other => panic!("{headers:?}: {other:?}"),
        }
    };
    let upgrade = "Upgrade: websocket";
    let connection = "Connection: Upgrade";
    let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    assert_eq!(refused(&[connection, accept]), "no `Upgrade: websocket`");
    assert_eq!(
        refused(&["Upgrade: h2c", connection, accept]),
        "no `Upgrade: websocket`"
    );
    assert_eq!(refused(&[upgrade, accept]), "no `upgrade` in `Connection`");
    assert_eq!(
        refused(&[upgrade, "Connection: keep-alive", accept]),
        "no `upgrade` in `Connection`"
    );
    assert_eq!(refused(&[upgrade, connection]), "no `Sec-WebSocket-Accept`");
    assert_eq!(
        refused(&[upgrade, connection, "Sec-WebSocket-Accept: AAAA"]),
        "wrong `Sec-WebSocket-Accept`"
    );
    assert_eq!(
        refused(&[upgrade, connection, accept, accept]),
        "wrong `Sec-WebSocket-Accept`"
    );
    assert_eq!(
        refused(&[
            upgrade,
            connection,
            accept,
            "Sec-WebSocket-Extensions: permessage-deflate"
        ]),
        "an extension that was not offered"
    );
    assert_eq!(
        refused(&[upgrade, connection, accept, "Sec-WebSocket-Protocol: chat"]),
        "a subprotocol that was not offered"
    );
    // The accept value belongs to another key.
    let head = rfc_response();
    assert_eq!(
        parse_handshake_response(&head, "AQIDBAUGBwgJCgsMDQ4PEA=="),
        Err(HandshakeError::Invalid("wrong `Sec-WebSocket-Accept`"))
    );
}

#[test]
fn reports_a_refused_upgrade_with_its_status_and_body() {
    let mut bytes = response("429 Too Many Requests", &["Content-Length: 300"]);
    bytes.extend("x".repeat(300).bytes());
    assert_eq!(
        parse_handshake_response(&bytes, RFC_KEY),
        Err(HandshakeError::Status {
            code: 429,
            body: "x".repeat(200)
        })
    );
    let bytes = response("403 Forbidden", &["Content-Length: 0"]);
    assert_eq!(
        parse_handshake_response(&bytes, RFC_KEY),
        Err(HandshakeError::Status {
            code: 403,
            body: String::new()
        })
    );
}

#[test]
fn refuses_a_head_over_16_kib_and_malformed_ones() {
    let pad = format!("X-Pad: {}", "p".repeat(MAX_HANDSHAKE_HEAD_BYTES));
    let head = response("101 Switching Protocols", &[&pad]);
    let too_large = Err(HandshakeError::TooLarge {
        limit: MAX_HANDSHAKE_HEAD_BYTES,
    });
    assert_eq!(parse_handshake_response(&head, RFC_KEY), too_large);
    let unfinished = &head[..head.len() - 4];
    assert_eq!(parse_handshake_response(unfinished, RFC_KEY), too_large);
    // Still incomplete but within the limit: wait for more.
    let within = &head[..MAX_HANDSHAKE_HEAD_BYTES];
    assert_eq!(parse_handshake_response(within, RFC_KEY), Ok(None));

    assert!(matches!(
        parse_handshake_response(b"SSH-2.0-OpenSSH\r\n\r\n", RFC_KEY),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn a_handshake_head_fits_the_smallest_buffer() {
    let mut r = FrameReader::new(0, LIMIT, LIMIT);
    assert!(r.capacity() > MAX_HANDSHAKE_HEAD_BYTES);
    assert!(r.spare().len() > MAX_HANDSHAKE_HEAD_BYTES);
}
