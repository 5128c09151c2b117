//! The reader against RFC 6455: its §5.7 examples, the frame rules (masking, reserved
//! bits and opcodes, control frames, lengths, fragments, close codes, UTF-8, limits),
//! and how it lends and keeps its buffer.

use super::*;

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
