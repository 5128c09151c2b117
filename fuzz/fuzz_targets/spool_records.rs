//! The database spool's record reader and batch decoder, on any bytes: what replay reads
//! from a segment file after a crash, a full disk or a damaged sector.
//!
//! Besides "never panics, never reads out of bounds" (ASan), it checks the reader's
//! framing (records never run past the data; a damaged record is skipped by its length,
//! so the walk always moves forward) and that a batch it decodes encodes back to a
//! record that reads to the same batch.

#![no_main]

use alphapulse::sinks::db::spool::{read_record, scan, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let summary = scan(data);
    assert!(summary.framed_bytes <= data.len());

    // Walk the records as replay does and check each against the summary.
    let (mut pos, mut records, mut damaged, mut rows) = (0, 0, 0, 0);
    loop {
        match read_record(&data[pos..]) {
            Record::Batch(batch, len) => {
                assert!(len > 0 && pos + len <= data.len());
                round_trips(&batch);
                records += 1;
                rows += batch.rows() as u64;
                pos += len;
            }
            Record::Damaged(len) => {
                assert!(len > 0 && pos + len <= data.len());
                damaged += 1;
                pos += len;
            }
            Record::End | Record::Torn => break,
        }
    }
    assert_eq!(
        (summary.records, summary.damaged, summary.rows, summary.framed_bytes),
        (records, damaged, rows, pos)
    );
});

/// The batch, framed as the spool frames it, reads back to the same batch.
fn round_trips(batch: &alphapulse::sinks::db::rows::Batch) {
    let mut payload = Vec::new();
    batch.encode(&mut payload);
    let mut record = Vec::with_capacity(payload.len() + 8);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    let Record::Batch(again, len) = read_record(&record) else {
        panic!("a record the spool's framing wrote does not read back");
    };
    assert_eq!(len, record.len());
    let mut payload_again = Vec::new();
    again.encode(&mut payload_again);
    assert_eq!(payload, payload_again);
}
