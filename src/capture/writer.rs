//! The capture directory's writer: records into zstd files, rotation by size and age,
//! periodic flushes, the manifest kept current, and the disk budget.
//!
//! Runs on: the capture's one thread. Owns: the active file's encoder and the manifest.
//! In: records with their receive times ([`Stamp`], passed in, so rotation, flushes and
//! the budget are tested without a clock). Out: files and `manifest.json` in the
//! directory.
//!
//! What a reader can rely on at any moment, even after a `kill -9`: the manifest is
//! whole (it is replaced by rename) and lists every file on disk; every file but the
//! last is closed with exact counts; the last one decodes up to its last flush (each
//! flush ends a zstd block), so at most one flush period of frames is lost.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::format::{self, Kind};
use super::manifest::{self, FileEntry, FileState, Manifest, MANIFEST_FILE, MAX_LISTED_DELETED};

/// Receive time of a record: wall (epoch ns) and monotonic (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub wall_ns: i64,
    pub mono_ns: u64,
}

/// How the writer rotates, flushes and bounds its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// A file is closed once it holds this many bytes on disk. Compressed bytes reach
    /// the disk when zstd ends a block (every 128 KiB of records) or at a flush, so a
    /// file may pass this by what one flush period adds.
    pub rotate_bytes: u64,
    /// … or once it has been open this long (monotonic).
    pub rotate_after: Duration,
    /// Bytes on disk of all files; past it the oldest closed files are deleted.
    pub max_bytes: u64,
    /// How often the active file is flushed and the manifest rewritten.
    pub flush_every: Duration,
    /// zstd compression level.
    pub level: i32,
}

/// Why the writer cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} already holds a capture; give a new or empty directory")]
    Exists { path: String },
    #[error("--max-bytes ({max}) must be at least twice --rotate-bytes ({rotate}): the active file is never deleted, so the budget must hold it and more")]
    Budget { max: u64, rotate: u64 },
}

/// Counts the bytes that reach the file.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Encoder = zstd::stream::write::Encoder<'static, Counting<BufWriter<File>>>;

struct Active {
    encoder: Encoder,
    opened_mono_ns: u64,
    path: PathBuf,
}

/// Writes one capture directory.
pub struct Writer {
    dir: PathBuf,
    settings: Settings,
    manifest: Manifest,
    active: Option<Active>,
    next_index: u64,
    last_flush_mono_ns: u64,
}

impl Writer {
    /// Creates the directory if needed (it must not hold a capture yet) and writes the
    /// first manifest.
    pub fn create(
        dir: &Path,
        settings: Settings,
        url: String,
        streams: Vec<String>,
        now: Stamp,
    ) -> Result<Writer, WriteError> {
        if settings.max_bytes < settings.rotate_bytes.saturating_mul(2) {
            return Err(WriteError::Budget {
                max: settings.max_bytes,
                rotate: settings.rotate_bytes,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(MANIFEST_FILE);
        if path.exists() {
            return Err(WriteError::Exists {
                path: dir.display().to_string(),
            });
        }
        let manifest = Manifest::new(url, streams, now.wall_ns, settings.max_bytes);
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            settings,
            manifest,
            active: None,
            next_index: 1,
            last_flush_mono_ns: now.mono_ns,
        };
        writer.save_manifest()?;
        Ok(writer)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Notes a new connection after the first.
    pub fn reconnected(&mut self) {
        self.manifest.reconnects += 1;
    }

    /// Appends a record, rotating and flushing as due.
    pub fn record(&mut self, kind: Kind, at: Stamp, payload: &[u8]) -> Result<(), WriteError> {
        if self.active.is_none() {
            self.open(at)?;
        }
        let (Some(active), Some(entry)) = (self.active.as_mut(), self.manifest.files.last_mut())
        else {
            return Ok(());
        };
        let written =
            format::write_record(&mut active.encoder, kind, at.wall_ns, at.mono_ns, payload)
                .map_err(|e| io_error(&active.path, e))?;
        match kind {
            Kind::Frame => {
                entry.frames += 1;
                entry.frame_bytes += payload.len() as u64;
            }
            Kind::Marker => entry.markers += 1,
        }
        entry.raw_bytes += written as u64;
        entry.first_wall_ns.get_or_insert(at.wall_ns);
        entry.first_mono_ns.get_or_insert(at.mono_ns);
        entry.last_wall_ns = Some(at.wall_ns);
        entry.last_mono_ns = Some(at.mono_ns);
        entry.bytes = active.encoder.get_ref().bytes;
        self.tick(at)
    }

    /// Rotates and flushes as due; call it when no record comes too.
    pub fn tick(&mut self, now: Stamp) -> Result<(), WriteError> {
        if let Some(active) = &self.active {
            let age = now.mono_ns.saturating_sub(active.opened_mono_ns);
            let size = active.encoder.get_ref().bytes;
            if size >= self.settings.rotate_bytes
                || age >= self.settings.rotate_after.as_nanos() as u64
            {
                self.close_active()?;
                self.enforce_budget(now)?;
                return self.save_manifest();
            }
        }
        if now.mono_ns.saturating_sub(self.last_flush_mono_ns)
            >= self.settings.flush_every.as_nanos() as u64
        {
            self.flush(now)?;
        }
        Ok(())
    }

    /// Makes everything written so far readable and rewrites the manifest.
    pub fn flush(&mut self, now: Stamp) -> Result<(), WriteError> {
        self.last_flush_mono_ns = now.mono_ns;
        if let Some(active) = self.active.as_mut() {
            active
                .encoder
                .flush()
                .map_err(|e| io_error(&active.path, e))?;
            if let Some(entry) = self.manifest.files.last_mut() {
                entry.bytes = active.encoder.get_ref().bytes;
            }
        }
        self.enforce_budget(now)?;
        self.save_manifest()
    }

    /// Closes the active file and marks the capture ended.
    pub fn finish(mut self, now: Stamp) -> Result<Manifest, WriteError> {
        self.close_active()?;
        self.manifest.ended_wall_ns = Some(now.wall_ns);
        self.enforce_budget(now)?;
        self.save_manifest()?;
        Ok(self.manifest)
    }

    fn open(&mut self, at: Stamp) -> Result<(), WriteError> {
        let name = manifest::file_name(self.next_index);
        self.next_index += 1;
        let path = self.dir.join(&name);
        let file = File::create_new(&path).map_err(|e| io_error(&path, e))?;
        let counting = Counting {
            inner: BufWriter::new(file),
            bytes: 0,
        };
        let mut encoder =
            Encoder::new(counting, self.settings.level).map_err(|e| io_error(&path, e))?;
        let header = format::write_file_header(&mut encoder).map_err(|e| io_error(&path, e))?;
        let mut entry = FileEntry::new(name);
        entry.raw_bytes = header as u64;
        self.manifest.files.push(entry);
        self.active = Some(Active {
            encoder,
            opened_mono_ns: at.mono_ns,
            path,
        });
        // Listed before a frame is in it: a capture killed from here on leaves a file
        // its manifest names.
        self.save_manifest()
    }

    fn close_active(&mut self) -> Result<(), WriteError> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let path = active.path;
        let io = |e| io_error(&path, e);
        let mut counting = active.encoder.finish().map_err(io)?;
        counting.flush().map_err(io)?;
        let file = counting
            .inner
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        if let Some(entry) = self.manifest.files.last_mut() {
            entry.bytes = counting.bytes;
            entry.state = FileState::Closed;
        }
        Ok(())
    }

    /// Deletes the oldest closed files while the files on disk exceed the budget; the
    /// newest file (the active one) is never deleted.
    fn enforce_budget(&mut self, now: Stamp) -> Result<(), WriteError> {
        while self.manifest.bytes() > self.settings.max_bytes {
            // The newest file stays, active or just closed: it holds the latest frames.
            if self.manifest.files.len() < 2 {
                break;
            }
            let mut gone = self.manifest.files.remove(0);
            let path = self.dir.join(&gone.name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
            tracing::info!(file = %gone.name, bytes = gone.bytes, "capture budget: deleted the oldest file");
            gone.deleted_wall_ns = Some(now.wall_ns);
            self.manifest.deleted.push(gone);
            if self.manifest.deleted.len() > MAX_LISTED_DELETED {
                self.manifest.deleted.remove(0);
            }
            self.manifest.deleted_files_total += 1;
        }
        Ok(())
    }

    fn save_manifest(&mut self) -> Result<(), WriteError> {
        let path = self.dir.join(MANIFEST_FILE);
        let temp = self.dir.join(format!("{MANIFEST_FILE}.tmp"));
        std::fs::write(&temp, self.manifest.to_json()).map_err(|e| io_error(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| io_error(&path, e))
    }
}

fn io_error(path: &Path, source: io::Error) -> WriteError {
    WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}
