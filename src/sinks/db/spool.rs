//! The writer's on-disk spool: where write batches wait while the database is away.
//!
//! Runs on the writer thread only (one reader and one writer: the same thread). It owns
//! a directory of append-only segment files named by sequence number. In: batches the
//! database could not take. Out: the same batches, oldest first, for replay; a segment
//! file is deleted once every batch in it has been committed.
//!
//! Record format: `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`,
//! the payload being [`Batch::encode`]. A record whose checksum does not match but whose
//! length fits in its segment (a damaged disk) is skipped alone, counted and logged; a
//! record cut short (a torn write at a crash) or with an impossible length ends its
//! segment, since nothing after it can be framed. A segment that cannot be read at all
//! is renamed aside (`<name>.bad`), counted and logged once, and replay goes on with the
//! next: it never wedges the writer.
//!
//! Fsync policy: every appended record is followed by `fdatasync` before the writer
//! takes its next batch, and the directory is synced when a segment is created, so a
//! batch in the spool survives a crash of the process or the host. Replay is
//! at-least-once (a crash between a commit and the segment's deletion replays the
//! segment again), which the idempotent upserts turn into exactly-once rows.
//!
//! A failed append (a full disk, an I/O error in `write` or `fdatasync`) cuts the
//! segment back to its last good record, or seals it when even that fails, so no record
//! is ever appended after a torn one. The batch is then held in memory, in order, and
//! written ahead of the next batch once the disk takes writes again; replay serves held
//! batches after the segments, so a database that comes back first drains them too.
//!
//! Bound: `spool_max_bytes` covers the segments and the held batches together, and
//! [`MAX_HELD_BYTES`] the held ones alone. When an append would pass either, the batch
//! is refused ([`Append::Full`], or the disk's error once the memory is full); the
//! writer drops it, counts its rows and logs the loss.

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
/// Added to the name of a segment that cannot be read, which is then left aside.
const QUARANTINE_SUFFIX: &str = ".bad";
/// Memory for batches the disk refused, while it refuses them: a few of the largest
/// batches, so a brief `ENOSPC` loses nothing, yet a disk that stays full cannot take
/// the process's memory with it.
pub const MAX_HELD_BYTES: u64 = 64 << 20;

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
    /// The disk refused the write (counted in [`Spool::append_failures`], logged once per
    /// episode); the record was cut back and the batch is held in memory until the disk
    /// takes writes again or replay takes it.
    Held,
    /// The spool is at its bound; the batch was not stored.
    Full,
}

/// A batch the disk refused: its encoded record, waiting to be written.
struct Held {
    record: Vec<u8>,
    rows: u64,
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
    /// Whether a damaged record was met (and logged) in this segment.
    damaged: bool,
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
    /// Batches the disk refused, oldest first; always newer than every segment's.
    held: VecDeque<Held>,
    held_bytes: u64,
    /// Whether [`Spool::front`] returned the first held batch (not a segment's).
    held_served: bool,
    next_seq: u64,
    /// Bytes of the segments.
    bytes: u64,
    /// Rows waiting, on disk and held.
    rows: u64,
    /// Damaged records skipped since start.
    pub corrupt_records: u64,
    /// Appends the disk refused since start (each cut back; the batch held).
    pub append_failures: u64,
    /// Unreadable segments renamed aside since start.
    pub quarantined_segments: u64,
    scratch: Vec<u8>,
    /// Write faults the next appends meet, one per record written (tests only).
    #[cfg(test)]
    faults: VecDeque<Option<Fault>>,
}

/// A write fault injected by the tests, in place of a full or failing disk.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Half the record reaches the file, then `ENOSPC`.
    Torn,
    /// As `Torn`, and cutting the file back fails too.
    TornUncut,
    /// The whole record reaches the file, then `fdatasync` fails with `EIO`.
    Sync,
}

#[cfg(test)]
fn write_faulty(file: &mut File, record: &[u8], fault: Option<Fault>) -> std::io::Result<()> {
    match fault {
        None => {
            file.write_all(record)?;
            file.sync_data()
        }
        Some(Fault::Torn | Fault::TornUncut) => {
            file.write_all(&record[..record.len() / 2])?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
        Some(Fault::Sync) => {
            file.write_all(record)?;
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        }
    }
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
            held: VecDeque::new(),
            held_bytes: 0,
            held_served: false,
            next_seq: found.last().map_or(0, |s| s + 1),
            bytes: 0,
            rows: 0,
            corrupt_records: 0,
            append_failures: 0,
            quarantined_segments: 0,
            scratch: Vec::new(),
            #[cfg(test)]
            faults: VecDeque::new(),
        };
        for seq in found {
            let path = spool.segment_path(seq);
            let data = match std::fs::read(&path) {
                Ok(data) => data,
                Err(e) => {
                    spool.quarantined_segments += 1;
                    set_aside(&path, &e, None);
                    continue;
                }
            };
            let rows = scan(&data).rows;
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
        self.segments.is_empty() && self.held.is_empty()
    }
    /// Rows waiting (distinct rows of the spooled batches, held ones included).
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// Bytes waiting, on disk and held.
    pub fn bytes(&self) -> u64 {
        self.bytes + self.held_bytes
    }
    /// Rows of the batches held in memory because the disk refused them.
    pub fn held_rows(&self) -> u64 {
        self.held.iter().map(|h| h.rows).sum()
    }
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Appends `batch` durably (written and `fdatasync`ed), holds it in memory when the
    /// disk refuses it, or refuses it at the bound. An `Err` is the disk's error for a
    /// batch that found no room in memory either: it was not stored.
    pub fn append(&mut self, batch: &Batch) -> Result<Append, SpoolError> {
        let mut record = std::mem::take(&mut self.scratch);
        record.clear();
        record.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        batch.encode(&mut record);
        let payload_len = record.len() - RECORD_HEADER_BYTES;
        let crc = crc32fast::hash(&record[RECORD_HEADER_BYTES..]);
        record[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        let stored = self.append_record(&record, batch.rows() as u64);
        self.scratch = record;
        stored
    }

    fn append_record(&mut self, record: &[u8], rows: u64) -> Result<Append, SpoolError> {
        let len = record.len() as u64;
        if self.bytes() + len > self.max_bytes {
            return Ok(Append::Full);
        }
        let was_holding = !self.held.is_empty();
        let written = self
            .flush_held()
            .and_then(|()| self.write_record(record, rows));
        if written.is_err() {
            self.append_failures += 1;
        }
        match written {
            Ok(()) => {
                self.rows += rows;
                if was_holding {
                    tracing::info!("spool: the disk takes writes again; held batches written");
                }
                Ok(Append::Stored)
            }
            Err(e) if self.held_bytes + len <= MAX_HELD_BYTES => {
                if !was_holding {
                    tracing::error!(
                        error = %e,
                        "spool: the disk refused a write; holding batches in memory until it takes writes again (counted in sinks.spool.append_failures)"
                    );
                }
                self.held.push_back(Held {
                    record: record.to_vec(),
                    rows,
                });
                self.held_bytes += len;
                self.rows += rows;
                Ok(Append::Held)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the held batches to disk, oldest first, stopping at the first the disk
    /// refuses. The writer calls it at shutdown; appends call it before their own.
    pub fn flush_held(&mut self) -> Result<(), SpoolError> {
        while let Some(held) = self.held.pop_front() {
            if let Err(e) = self.write_record(&held.record, held.rows) {
                self.held.push_front(held);
                return Err(e);
            }
            self.held_bytes -= held.record.len() as u64;
            self.held_served = false;
        }
        Ok(())
    }

    /// Writes one record at the end of the active segment (starting one when due) and
    /// syncs it. On failure the segment is cut back to its last good record, or sealed
    /// when it cannot be cut, so a torn record never has a record after it.
    fn write_record(&mut self, record: &[u8], rows: u64) -> Result<(), SpoolError> {
        let len = record.len() as u64;
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
        #[cfg(test)]
        let (written, cut) = {
            let fault = self.faults.pop_front().flatten();
            let written = write_faulty(file, record, fault);
            let cut = match fault {
                Some(Fault::TornUncut) => Err(std::io::Error::from_raw_os_error(libc::EIO)),
                _ => Ok(()),
            };
            (written, cut)
        };
        #[cfg(not(test))]
        let (written, cut) = (
            file.write_all(record).and_then(|()| file.sync_data()),
            Ok(()),
        );
        if let Err(source) = written {
            // The file is opened for appends, so once cut the next record goes where
            // the torn one began.
            if let Err(e) = cut.and_then(|()| file.set_len(seg.bytes)) {
                tracing::error!(
                    segment = %seg.path.display(),
                    error = %e,
                    "spool: cannot cut a failed write back; sealing the segment (later batches go to a new one)"
                );
                self.active = None;
            }
            return Err(SpoolError::File {
                path: seg.path.clone(),
                source,
            });
        }
        seg.bytes += len;
        seg.rows += rows;
        self.bytes += len;
        Ok(())
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
    /// the database has it. Segments come first, then the batches held in memory.
    pub fn front(&mut self) -> Option<Batch> {
        loop {
            let Some(seg) = self.segments.front() else {
                return self.held_front();
            };
            if self.loaded.as_ref().map(|l| l.seq) != Some(seg.seq) {
                if self.segments.len() == 1 {
                    // Replaying the segment being appended to: seal it, so later
                    // appends go to a new segment that this read does not miss.
                    self.active = None;
                }
                let mut data = match std::fs::read(&seg.path) {
                    Ok(data) => data,
                    Err(e) => {
                        self.quarantined_segments += 1;
                        set_aside(&seg.path, &e, Some(seg.rows));
                        self.forget_front_segment();
                        continue;
                    }
                };
                // Past what this run knows was written whole is a failed write that
                // could not be cut back.
                data.truncate(seg.bytes as usize);
                self.loaded = Some(Loaded {
                    seq: seg.seq,
                    data,
                    pos: 0,
                    front: None,
                    damaged: false,
                });
            }
            let loaded = self.loaded.as_mut()?;
            let record = read_record(&loaded.data[loaded.pos..]);
            if matches!(record, Record::Damaged(_) | Record::Torn) {
                self.corrupt_records += 1;
                if !std::mem::replace(&mut loaded.damaged, true) {
                    tracing::error!(
                        segment = %seg.path.display(),
                        offset = loaded.pos,
                        "spool: damaged record (torn write or disk damage) skipped; counted in sinks.spool.corrupt_records"
                    );
                }
            }
            match record {
                Record::Batch(batch, len) => {
                    loaded.front = Some((len, batch.rows() as u64));
                    return Some(*batch);
                }
                Record::Damaged(len) => {
                    loaded.pos += len;
                    if loaded.pos >= loaded.data.len() {
                        self.drop_front_segment();
                    }
                }
                Record::End | Record::Torn => self.drop_front_segment(),
            }
        }
    }

    fn held_front(&mut self) -> Option<Batch> {
        let held = self.held.front()?;
        let Record::Batch(batch, _) = read_record(&held.record) else {
            unreachable!("a held record is one this spool encoded");
        };
        self.held_served = true;
        Some(*batch)
    }

    /// Removes the batch [`Spool::front`] returned; deletes its segment when empty.
    pub fn commit_front(&mut self) {
        if let Some(loaded) = self.loaded.as_mut() {
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
        } else if std::mem::take(&mut self.held_served) {
            if let Some(held) = self.held.pop_front() {
                self.rows = self.rows.saturating_sub(held.rows);
                self.held_bytes -= held.record.len() as u64;
            }
        }
    }

    fn drop_front_segment(&mut self) {
        if let Some(seg) = self.forget_front_segment() {
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(segment = %seg.path.display(), error = %e, "spool: cannot delete a replayed segment");
            }
        }
    }

    /// Takes the oldest segment out of the spool's accounts, leaving its file alone.
    fn forget_front_segment(&mut self) -> Option<Segment> {
        self.loaded = None;
        let seg = self.segments.pop_front()?;
        self.bytes = self.bytes.saturating_sub(seg.bytes);
        self.rows = self.rows.saturating_sub(seg.rows);
        if self.segments.is_empty() {
            self.active = None;
        }
        Some(seg)
    }
}

/// Renames an unreadable segment to `<name>.bad`, where no replay looks, and says so
/// once: what it held is lost to replay but kept for inspection.
fn set_aside(path: &Path, error: &std::io::Error, rows: Option<u64>) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(QUARANTINE_SUFFIX);
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::error!(
            segment = %path.display(),
            moved_to = %aside.display(),
            error = %error,
            rows = ?rows,
            "spool: unreadable segment set aside, going on with the next (counted in sinks.spool.quarantined_segments)"
        ),
        Err(e) => tracing::error!(
            segment = %path.display(),
            error = %error,
            rename_error = %e,
            rows = ?rows,
            "spool: unreadable segment skipped and cannot be renamed aside; the next start tries it again"
        ),
    }
}

/// One record read from the front of a segment's bytes.
#[derive(Debug)]
pub enum Record {
    /// A batch and the bytes its record took.
    Batch(Box<Batch>, usize),
    /// No bytes left.
    End,
    /// A whole record whose checksum or payload is wrong: skip these bytes and go on.
    Damaged(usize),
    /// A record cut short or with an impossible length: nothing after it can be framed.
    Torn,
}

/// Reads the record at the start of `data`.
pub fn read_record(data: &[u8]) -> Record {
    if data.is_empty() {
        return Record::End;
    }
    if data.len() < RECORD_HEADER_BYTES {
        return Record::Torn;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if len > MAX_RECORD_BYTES || data.len() - RECORD_HEADER_BYTES < len {
        return Record::Torn;
    }
    let payload = &data[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    let batch = (crc32fast::hash(payload) == crc)
        .then(|| Batch::decode(payload))
        .flatten();
    match batch {
        Some(batch) => Record::Batch(Box::new(batch), RECORD_HEADER_BYTES + len),
        None => Record::Damaged(RECORD_HEADER_BYTES + len),
    }
}

/// What a segment's bytes hold, read as replay reads them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub rows: u64,
    pub records: u64,
    pub damaged: u64,
    /// Bytes framed as records (good or damaged); the rest is a torn tail.
    pub framed_bytes: usize,
}

/// Reads a segment's records as replay does: damaged ones skipped, a torn one ending it.
pub fn scan(data: &[u8]) -> Scan {
    let mut out = Scan::default();
    loop {
        match read_record(&data[out.framed_bytes..]) {
            Record::Batch(batch, len) => {
                out.rows += batch.rows() as u64;
                out.records += 1;
                out.framed_bytes += len;
            }
            Record::Damaged(len) => {
                out.damaged += 1;
                out.framed_bytes += len;
            }
            Record::End | Record::Torn => return out,
        }
    }
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
        while let Some(b) = spool.front() {
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
        let first = s.front().unwrap();
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

    #[test]
    fn a_failed_append_loses_no_later_batch() {
        for fault in [Fault::Torn, Fault::Sync, Fault::TornUncut] {
            let dir = temp_dir(&format!("append-{fault:?}"));
            let mut s = Spool::open(&dir, 1 << 20).unwrap();
            s.append(&batch(0)).unwrap();
            // The disk refuses batch 1 twice (it stays held), then takes writes again.
            s.faults.extend([Some(fault), Some(fault)]);
            let _ = s.append(&batch(1));
            let _ = s.append(&batch(2));
            assert_eq!(s.append_failures, 2, "{fault:?}");
            assert_eq!((s.held_rows(), s.rows()), (2, 3), "{fault:?}");
            s.append(&batch(3)).unwrap();
            s.append(&batch(4)).unwrap();
            assert_eq!((s.held_rows(), s.rows()), (0, 5), "{fault:?}");
            drop(s);
            let mut s = Spool::open(&dir, 1 << 20).unwrap();
            assert_eq!(drain(&mut s), [0, 1, 2, 3, 4], "{fault:?}");
            // A segment that could not be cut back is sealed with its torn record at
            // the end: one per refused write here.
            let torn = if matches!(fault, Fault::TornUncut) {
                2
            } else {
                0
            };
            assert_eq!(s.corrupt_records, torn, "{fault:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn batches_the_disk_refuses_are_held_and_replayed_from_memory() {
        let dir = temp_dir("held");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        s.append(&batch(0)).unwrap();
        s.faults.extend([Some(Fault::Torn), Some(Fault::Torn)]);
        assert_eq!(s.append(&batch(1)).unwrap(), Append::Held);
        assert_eq!(s.append(&batch(2)).unwrap(), Append::Held);
        assert!(s.bytes() > s.bytes);
        // The database is back before the disk: the segment replays, then memory.
        assert_eq!(drain(&mut s), [0, 1, 2]);
        assert!(s.is_empty());
        assert_eq!((s.rows(), s.bytes(), s.held_rows()), (0, 0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn held_batches_are_bounded() {
        let dir = temp_dir("held-bound");
        let mut s = Spool::open(&dir, u64::MAX).unwrap();
        // Large batches, so that the bound is reached in a few hundred appends.
        let mut big = Batch::new();
        for i in 0..2000 {
            big.push_candle(candle("BTCUSDT", i, i * 1000 + 1, true));
        }
        let mut record = Vec::new();
        big.encode(&mut record);
        let fits = MAX_HELD_BYTES / (record.len() + RECORD_HEADER_BYTES) as u64;
        s.faults.extend((0..=fits).map(|_| Some(Fault::Torn)));
        for _ in 0..fits {
            assert_eq!(s.append(&big).unwrap(), Append::Held);
        }
        assert!(s.append(&big).is_err(), "no room left in memory");
        assert_eq!(s.held_rows(), fits * 2000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scan_frames_damaged_records_and_stops_at_a_torn_one() {
        let mut data = Vec::new();
        for i in 0..3 {
            let mut payload = Vec::new();
            batch(i).encode(&mut payload);
            data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            data.extend_from_slice(&payload);
        }
        let record = data.len() / 3;
        data[RECORD_HEADER_BYTES] ^= 1;
        data.truncate(data.len() - 1);
        let scan = scan(&data);
        assert_eq!((scan.records, scan.damaged, scan.rows), (1, 1, 1));
        assert_eq!(scan.framed_bytes, 2 * record);
    }

    #[test]
    fn a_bad_checksum_skips_one_record() {
        let dir = temp_dir("crc");
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        for i in 0..3 {
            s.append(&batch(i)).unwrap();
        }
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        let mut data = std::fs::read(&path).unwrap();
        // Three records of one size: flip the last payload byte of the second.
        let record = data.len() / 3;
        data[2 * record - 1] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.rows(), 2);
        assert_eq!(drain(&mut s), [0, 2]);
        assert_eq!(s.corrupt_records, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Replaces a segment file by a directory of its name: reading it fails (`EISDIR`)
    /// whatever the user, root included.
    fn make_unreadable(path: &Path) {
        std::fs::remove_file(path).unwrap();
        std::fs::create_dir(path).unwrap();
    }

    /// Two segments: batch 0 in the first, batch 1 in the second.
    fn two_segments(dir: &Path) -> PathBuf {
        let mut s = Spool::open(dir, 1 << 20).unwrap();
        s.append(&batch(0)).unwrap();
        let first = s.segments.back().unwrap().path.clone();
        drop(s);
        let mut s = Spool::open(dir, 1 << 20).unwrap();
        s.append(&batch(1)).unwrap();
        assert_eq!(s.segments(), 2);
        first
    }

    #[test]
    fn an_unreadable_segment_is_set_aside_during_replay() {
        let dir = temp_dir("unreadable");
        let first = two_segments(&dir);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        make_unreadable(&first);
        assert_eq!(drain(&mut s), [1]);
        assert!(s.is_empty());
        let mut aside = first.clone().into_os_string();
        aside.push(".bad");
        assert!(Path::new(&aside).exists());
        assert!(!first.exists());
        drop(s);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert!(s.is_empty(), "a set-aside segment is not replayed again");
        assert_eq!(drain(&mut s), [] as [i64; 0]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unreadable_segment_is_set_aside_at_open() {
        let dir = temp_dir("unreadable-open");
        let first = two_segments(&dir);
        make_unreadable(&first);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!((s.segments(), s.rows()), (1, 1));
        assert_eq!(drain(&mut s), [1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
