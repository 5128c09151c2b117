//! The client frames: masking, length forms, the helpers, round trips through the
//! reader.

use super::*;

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
