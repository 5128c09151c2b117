//! The writer's on-disk spool: where write batches wait while the database is away.
//!
//! Runs on the writer thread only (one reader and one writer: the same thread). It owns
//! a directory of append-only segment files named by sequence number. In: batches the
//! database could not take. Out: the same batches, oldest first, for replay; a segment
//! file is deleted once every batch in it has been committed.
//!
//! Record format: `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`,
//! the payload being [`Batch::encode`]. A record whose length or checksum does not match
//! (a torn write at a crash, a damaged disk) ends its segment: it and anything after it
//! in that segment are skipped, counted and logged.
//!
//! Fsync policy: every appended record is followed by `fdatasync` before the writer
//! takes its next batch, and the directory is synced when a segment is created, so a
//! batch in the spool survives a crash of the process or the host. Replay is
//! at-least-once (a crash between a commit and the segment's deletion replays the
//! segment again), which the idempotent upserts turn into exactly-once rows.
//!
//! Bound: `spool_max_bytes`. When an append would pass it, the batch is refused
//! ([`Append::Full`]); the writer drops it, counts its rows and logs the loss.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::rows::Batch;

/// A segment is closed for appends at this size, so replay reads it whole and deletes
/// it promptly: small enough to hold in memory, large enough that files stay few.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// Bytes before each record's payload.
const RECORD_HEADER_BYTES: usize = 8;
/// Largest payload accepted when reading: a length beyond this is damage, not data
/// (the writer's batches are far smaller).
const MAX_RECORD_BYTES: usize = 256 << 20;
const SEGMENT_SUFFIX: &str = ".spool";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {dir}: {source}; set database.spool_dir to a writable directory")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "spool directory {dir} is in use by another running engine; give each instance \
         its own database.spool_dir (DATABASE_SPOOL_DIR)"
    )]
    InUse { dir: PathBuf },
    #[error("spool file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What became of an appended batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Append {
    Stored,
    /// The spool is at its bound; the batch was not stored.
    Full,
}

struct Segment {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    rows: u64,
}

/// The segment being replayed, read whole.
struct Loaded {
    seq: u64,
    data: Vec<u8>,
    pos: usize,
    /// Bytes and rows of the record at `pos`, once [`Spool::front`] has read it.
    front: Option<(usize, u64)>,
}

pub struct Spool {
    dir: PathBuf,
    /// Holds the directory's lock (see [`lock_dir`]) while the spool is open.
    _lock: File,
    max_bytes: u64,
    segments: VecDeque<Segment>,
    /// Open for appends: always the last segment.
    active: Option<File>,
    loaded: Option<Loaded>,
    next_seq: u64,
    bytes: u64,
    rows: u64,
    /// Damaged records skipped since start.
    pub corrupt_records: u64,
    scratch: Vec<u8>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and takes stock of the segments a
    /// previous run left, which replay first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir_err = |source| SpoolError::Dir {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let lock = lock_dir(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push(seq);
        }
        found.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_owned(),
            _lock: lock,
            max_bytes,
            segments: VecDeque::new(),
            active: None,
            loaded: None,
            next_seq: found.last().map_or(0, |s| s + 1),
            bytes: 0,
            rows: 0,
            corrupt_records: 0,
            scratch: Vec::new(),
        };
        for seq in found {
            let path = spool.segment_path(seq);
            let data = std::fs::read(&path).map_err(|source| SpoolError::File {
                path: path.clone(),
                source,
            })?;
            let (rows, _) = scan(&data);
            spool.bytes += data.len() as u64;
            spool.rows += rows;
            spool.segments.push_back(Segment {
                seq,
                path,
                bytes: data.len() as u64,
                rows,
            });
        }
        Ok(spool)
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
    /// Rows waiting (distinct rows of the spooled batches).
    pub fn rows(&self) -> u64 {
        self.rows
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Appends `batch` durably (written and `fdatasync`ed), or refuses it at the bound.
    pub fn append(&mut self, batch: &Batch) -> Result<Append, SpoolError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        batch.encode(&mut self.scratch);
        let payload_len = self.scratch.len() - RECORD_HEADER_BYTES;
        let crc = crc32fast::hash(&self.scratch[RECORD_HEADER_BYTES..]);
        self.scratch[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.scratch[4..8].copy_from_slice(&crc.to_le_bytes());
        let len = self.scratch.len() as u64;
        if self.bytes + len > self.max_bytes {
            return Ok(Append::Full);
        }
        let needs_new = match (self.segments.back(), &self.active) {
            (Some(last), Some(_)) => last.bytes + len > SEGMENT_BYTES && last.bytes > 0,
            _ => true,
        };
        if needs_new {
            self.start_segment()?;
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            unreachable!("start_segment leaves an active segment");
        };
        let io = |source| SpoolError::File {
            path: seg.path.clone(),
            source,
        };
        file.write_all(&self.scratch).map_err(io)?;
        file.sync_data().map_err(io)?;
        seg.bytes += len;
        seg.rows += batch.rows() as u64;
        self.bytes += len;
        self.rows += batch.rows() as u64;
        Ok(Append::Stored)
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.segment_path(seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SpoolError::File {
                path: path.clone(),
                source,
            })?;
        // The new name must be durable too, or a crash could lose the whole file.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.active = Some(file);
        self.segments.push_back(Segment {
            seq,
            path,
            bytes: 0,
            rows: 0,
        });
        Ok(())
    }

    /// The oldest spooled batch, without removing it; call [`Spool::commit_front`] once
    /// the database has it.
    pub fn front(&mut self) -> Result<Option<Batch>, SpoolError> {
        loop {
            let Some(seg) = self.segments.front() else {
                return Ok(None);
            };
            if self.loaded.as_ref().map(|l| l.seq) != Some(seg.seq) {
                if self.segments.len() == 1 {
                    // Replaying the segment being appended to: seal it, so later
                    // appends go to a new segment that this read does not miss.
                    self.active = None;
                }
                let data = std::fs::read(&seg.path).map_err(|source| SpoolError::File {
                    path: seg.path.clone(),
                    source,
                })?;
                self.loaded = Some(Loaded {
                    seq: seg.seq,
                    data,
                    pos: 0,
                    front: None,
                });
            }
            let Some(loaded) = self.loaded.as_mut() else {
                return Ok(None);
            };
            match read_record(&loaded.data[loaded.pos..]) {
                Record::Batch(batch, len) => {
                    loaded.front = Some((len, batch.rows() as u64));
                    return Ok(Some(batch));
                }
                Record::End => self.drop_front_segment(),
                Record::Damaged => {
                    self.corrupt_records += 1;
                    tracing::error!(
                        segment = %seg.path.display(),
                        offset = loaded.pos,
                        "spool: damaged record (torn write or disk damage); skipping the rest of this segment"
                    );
                    self.drop_front_segment();
                }
            }
        }
    }

    /// Removes the batch [`Spool::front`] returned; deletes its segment when empty.
    pub fn commit_front(&mut self) {
        let Some(loaded) = self.loaded.as_mut() else {
            return;
        };
        if let Some((len, rows)) = loaded.front.take() {
            loaded.pos += len;
            self.rows = self.rows.saturating_sub(rows);
            if let Some(seg) = self.segments.front_mut() {
                seg.rows = seg.rows.saturating_sub(rows);
            }
            if loaded.pos >= loaded.data.len() {
                self.drop_front_segment();
            }
        }
    }

    fn drop_front_segment(&mut self) {
        self.loaded = None;
        if let Some(seg) = self.segments.pop_front() {
            self.bytes = self.bytes.saturating_sub(seg.bytes);
            self.rows = self.rows.saturating_sub(seg.rows);
            if self.segments.is_empty() {
                self.active = None;
            }
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(segment = %seg.path.display(), error = %e, "spool: cannot delete a replayed segment");
            }
        }
    }
}

enum Record {
    /// A batch and the bytes its record took.
    Batch(Batch, usize),
    End,
    Damaged,
}

fn read_record(data: &[u8]) -> Record {
    if data.is_empty() {
        return Record::End;
    }
    if data.len() < RECORD_HEADER_BYTES {
        return Record::Damaged;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if len > MAX_RECORD_BYTES || data.len() < RECORD_HEADER_BYTES + len {
        return Record::Damaged;
    }
    let payload = &data[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if crc32fast::hash(payload) != crc {
        return Record::Damaged;
    }
    match Batch::decode(payload) {
        Some(batch) => Record::Batch(batch, RECORD_HEADER_BYTES + len),
        None => Record::Damaged,
    }
}

/// Rows and records in a segment, up to its first damaged record.
fn scan(mut data: &[u8]) -> (u64, u64) {
    let (mut rows, mut records) = (0, 0);
    while let Record::Batch(batch, len) = read_record(data) {
        rows += batch.rows() as u64;
        records += 1;
        data = &data[len..];
    }
    (rows, records)
}

/// Locks `dir` for this spool: two engines sharing a directory (two instances started
/// in one working directory with the default `spool`) would each replay and delete the
/// other's segments. The lock is a `flock` on the directory itself, so it adds no file
/// and ends with the process however the process ends.
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let dir_err = |source| SpoolError::Dir {
        dir: dir.to_owned(),
        source,
    };
    let file = File::open(dir).map_err(dir_err)?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            SpoolError::InUse {
                dir: dir.to_owned(),
            }
        } else {
            dir_err(e)
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::testing::candle;

    fn batch(open_ms: i64) -> Batch {
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", open_ms, open_ms * 1000 + 1, true));
        b
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("alphapulse-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn drain(spool: &mut Spool) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(b) = spool.front().unwrap() {
            out.push(b.candles[0].open_time_ms);
            spool.commit_front();
        }
        out
    }

    #[test]
    fn replays_in_order_across_reopen_and_interleaved_appends() {
        let dir = temp_dir("order");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        for i in 0..3 {
            assert_eq!(s.append(&batch(i)).unwrap(), Append::Stored);
        }
        assert_eq!(s.rows(), 3);
        drop(s);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!((s.rows(), s.segments()), (3, 1));
        let first = s.front().unwrap().unwrap();
        assert_eq!(first.candles[0].open_time_ms, 0);
        s.commit_front();
        // An append during replay lands after everything already spooled.
        s.append(&batch(3)).unwrap();
        assert_eq!(drain(&mut s), [1, 2, 3]);
        assert!(s.is_empty());
        assert_eq!((s.rows(), s.bytes()), (0, 0));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_skipped_and_counted() {
        let dir = temp_dir("torn");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.append(&batch(0)).unwrap();
        s.append(&batch(1)).unwrap();
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.rows(), 1);
        assert_eq!(drain(&mut s), [0]);
        assert_eq!(s.corrupt_records, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_serves_one_open_spool_at_a_time() {
        let dir = temp_dir("lock");
        let first = Spool::open(&dir, 1 << 20).unwrap();
        let second = Spool::open(&dir, 1 << 20)
            .err()
            .expect("the directory is in use");
        assert!(matches!(second, SpoolError::InUse { .. }), "{second}");
        assert!(
            second.to_string().contains("DATABASE_SPOOL_DIR"),
            "{second}"
        );
        drop(first);
        Spool::open(&dir, 1 << 20).expect("free again once the first spool closed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_batches_past_its_bound() {
        let dir = temp_dir("bound");
        let mut s = Spool::open(&dir, 400).unwrap();
        let mut stored = 0;
        while s.append(&batch(stored)).unwrap() == Append::Stored {
            stored += 1;
            assert!(stored < 100);
        }
        assert!(stored >= 1 && s.bytes() <= 400);
        assert_eq!(drain(&mut s).len() as i64, stored);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
