//! Streams split anywhere parse as whole, and no input, random or mutated, makes the
//! reader panic.

use super::*;
use proptest::prelude::*;

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
