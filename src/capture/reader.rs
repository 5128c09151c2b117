//! Reads a capture directory back, one record at a time: the files in the manifest's
//! order, each decompressed as a stream, so memory stays at a few buffers whatever the
//! capture's size.
//!
//! A capture that was killed leaves its last file active and possibly cut inside a
//! record (or inside a zstd block): that file is read up to its last whole record and
//! the reader ends there, noting it in [`Reader::truncated`]. The same damage in a
//! closed file, or anything else that does not decode, is an error naming the file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::format::{self, FormatError, Record};
use super::manifest::{FileState, Manifest, ManifestError};

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("capture file {path}: {source}")]
    File { path: String, source: FormatError },
    #[error("capture file {path} is listed in the manifest but cannot be opened: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

type Decoding = BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>;

/// Iterates the records of a capture directory.
pub struct Reader {
    dir: PathBuf,
    manifest: Manifest,
    /// Index in `manifest.files` of the file being read next or now.
    file: usize,
    current: Option<Decoding>,
    truncated: Option<String>,
    failed: bool,
}

impl Reader {
    /// Reads the manifest and checks the first file's header, so a directory that is not
    /// a capture fails here rather than in the middle of a replay.
    pub fn open(dir: &Path) -> Result<Reader, ReadError> {
        let manifest = Manifest::load(dir)?;
        let mut reader = Reader {
            dir: dir.to_path_buf(),
            manifest,
            file: 0,
            current: None,
            truncated: None,
            failed: false,
        };
        if !reader.manifest.files.is_empty() {
            reader.current = reader.open_file(0)?;
        }
        Ok(reader)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The name of a last file that ended inside a record (a killed capture), once read.
    pub fn truncated(&self) -> Option<&str> {
        self.truncated.as_deref()
    }

    fn path(&self, index: usize) -> PathBuf {
        self.dir.join(&self.manifest.files[index].name)
    }

    fn interrupted(&self, index: usize) -> bool {
        index + 1 == self.manifest.files.len()
            && self.manifest.files[index].state == FileState::Active
    }

    /// Opens file `index` and reads its header; `None` for an interrupted file that is
    /// still empty.
    fn open_file(&mut self, index: usize) -> Result<Option<Decoding>, ReadError> {
        let path = self.path(index);
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|source| ReadError::Open {
            path: shown.clone(),
            source,
        })?;
        let fail = |source| ReadError::File {
            path: shown.clone(),
            source,
        };
        let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| fail(e.into()))?;
        let mut input = BufReader::new(decoder);
        match format::read_file_header(&mut input) {
            Ok(true) => Ok(Some(input)),
            Ok(false) if self.interrupted(index) => Ok(None),
            Ok(false) => Err(fail(FormatError::NotCapture)),
            Err(e) if e.is_truncation() && self.interrupted(index) => {
                self.truncated = Some(self.manifest.files[index].name.clone());
                Ok(None)
            }
            Err(e) => Err(fail(classify(e))),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            if let Some(input) = self.current.as_mut() {
                match format::read_record(input) {
                    Ok(Some(record)) => return Ok(Some(record)),
                    Ok(None) => self.current = None,
                    Err(e) if e.is_truncation() && self.interrupted(self.file) => {
                        self.truncated = Some(self.manifest.files[self.file].name.clone());
                        self.current = None;
                    }
                    Err(e) => {
                        let source = classify(e);
                        return Err(ReadError::File {
                            path: self.path(self.file).display().to_string(),
                            source,
                        });
                    }
                }
            }
            self.file += 1;
            if self.file >= self.manifest.files.len() {
                return Ok(None);
            }
            self.current = self.open_file(self.file)?;
        }
    }
}

/// A closed file that ends early was cut after the capture closed it: say so plainly.
fn classify(e: FormatError) -> FormatError {
    if e.is_truncation() {
        FormatError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file ends early, but the manifest says it was closed whole (damaged or cut)",
        ))
    } else {
        e
    }
}

impl Iterator for Reader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_record() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
