//! The capture manifest (`manifest.json` in the capture directory): what was captured,
//! from where, and every file with its counts and times. Pure data and its checks; the
//! writer replaces the file atomically (a temporary file renamed over it) each time it
//! changes, so a reader, or a capture killed at any moment, always finds a whole one.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The `format` field of every manifest.
pub const MANIFEST_FORMAT: &str = "alphapulse-capture";
/// The manifest's version; the record format inside the files has the same number.
pub const MANIFEST_VERSION: u32 = super::format::FORMAT_VERSION;
/// The manifest's file name inside a capture directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Largest manifest read: a manifest lists at most [`MAX_LISTED_DELETED`] deleted files
/// and as many files as fit the budget, far below this.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Deleted files the manifest names; older deletions are only counted
/// (`deleted_files_total`), so a capture that runs for months keeps a bounded manifest.
pub const MAX_LISTED_DELETED: usize = 10_000;

/// The state of one capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Being written; a capture that was killed leaves its last file so. Its counts may
    /// lag the file by up to one flush period, and it may end inside a record.
    Active,
    /// Finished: the zstd stream is complete and the counts are exact.
    Closed,
}

/// One capture file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the capture directory.
    pub name: String,
    pub state: FileState,
    /// Frames from the exchange recorded in it.
    pub frames: u64,
    /// Connection markers recorded in it.
    pub markers: u64,
    /// Receive times of its first and last record (`None` while it has none).
    pub first_wall_ns: Option<i64>,
    pub last_wall_ns: Option<i64>,
    pub first_mono_ns: Option<u64>,
    pub last_mono_ns: Option<u64>,
    /// Bytes of the frames as received (payloads only).
    pub frame_bytes: u64,
    /// Bytes of the records before compression (payloads and their framing).
    pub raw_bytes: u64,
    /// Bytes on disk (compressed), as of the last flush.
    pub bytes: u64,
    /// When the file was deleted to keep the disk budget (deleted files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_wall_ns: Option<i64>,
}

impl FileEntry {
    pub fn new(name: String) -> FileEntry {
        FileEntry {
            name,
            state: FileState::Active,
            frames: 0,
            markers: 0,
            first_wall_ns: None,
            last_wall_ns: None,
            first_mono_ns: None,
            last_mono_ns: None,
            frame_bytes: 0,
            raw_bytes: 0,
            bytes: 0,
            deleted_wall_ns: None,
        }
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The URL connected to (combined streams).
    pub url: String,
    /// The streams asked for, in the order of the URL.
    pub streams: Vec<String>,
    pub started_wall_ns: i64,
    /// Set when the capture stopped in order (`None`: running, or killed).
    pub ended_wall_ns: Option<i64>,
    /// The disk budget (bytes of all files) the capture kept.
    pub max_bytes: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// The files on disk, oldest first.
    pub files: Vec<FileEntry>,
    /// The newest files deleted to keep the budget, oldest first (at most
    /// [`MAX_LISTED_DELETED`]).
    pub deleted: Vec<FileEntry>,
    /// Every file deleted to keep the budget, listed or not.
    pub deleted_files_total: u64,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_MANIFEST_BYTES} bytes; not a capture manifest")]
    TooLarge { path: String },
    #[error("{path} is not a capture manifest: {why}")]
    Invalid { path: String, why: String },
    #[error("{path}: capture version {version} is not supported (this build reads version {MANIFEST_VERSION})")]
    Version { path: String, version: u32 },
}

impl Manifest {
    pub fn new(url: String, streams: Vec<String>, started_wall_ns: i64, max_bytes: u64) -> Self {
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            version: MANIFEST_VERSION,
            url,
            streams,
            started_wall_ns,
            ended_wall_ns: None,
            max_bytes,
            reconnects: 0,
            files: Vec::new(),
            deleted: Vec::new(),
            deleted_files_total: 0,
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and lists always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses and checks a manifest's text (`path` only names it in errors).
    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        let invalid = |why: String| ManifestError::Invalid {
            path: path.to_string(),
            why,
        };
        // The version is read first, so that a newer manifest names its version rather
        // than a field this build does not know.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(MANIFEST_FORMAT) {
            return Err(invalid(format!("no \"format\": \"{MANIFEST_FORMAT}\"")));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(MANIFEST_VERSION) => {}
            Some(v) => {
                return Err(ManifestError::Version {
                    path: path.to_string(),
                    version: u32::try_from(v).unwrap_or(u32::MAX),
                })
            }
            None => return Err(invalid("no \"version\"".into())),
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        for file in &manifest.files {
            if !is_file_name(&file.name) {
                return Err(invalid(format!("bad file name {:?}", file.name)));
            }
        }
        if manifest
            .files
            .iter()
            .rev()
            .skip(1)
            .any(|f| f.state == FileState::Active)
        {
            return Err(invalid("only the last file may be active".into()));
        }
        Ok(manifest)
    }

    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let shown = path.display().to_string();
        let io = |source| ManifestError::Io {
            path: shown.clone(),
            source,
        };
        if std::fs::metadata(&path).map_err(io)?.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        Manifest::parse(&text, &shown)
    }

    /// Frames in every file on disk.
    pub fn frames(&self) -> u64 {
        self.files.iter().map(|f| f.frames).sum()
    }

    /// Bytes on disk of every file.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// The name of the `index`-th capture file (`frames-000001.zst`, …).
pub fn file_name(index: u64) -> String {
    format!("frames-{index:06}.zst")
}

/// A name a manifest may list: a plain file name, never a path, so a manifest cannot
/// point a reader outside its directory.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(
            "ws://127.0.0.1:9443/stream?streams=btcusdt@kline_1m".into(),
            vec!["btcusdt@kline_1m".into()],
            1_700_000_000_000_000_000,
            1 << 30,
        );
        let mut closed = FileEntry::new(file_name(1));
        closed.state = FileState::Closed;
        closed.frames = 10;
        closed.first_wall_ns = Some(1_700_000_000_000_000_001);
        closed.last_mono_ns = Some(99);
        closed.bytes = 1234;
        m.files.push(closed);
        m.files.push(FileEntry::new(file_name(2)));
        let mut gone = FileEntry::new(file_name(0));
        gone.deleted_wall_ns = Some(5);
        m.deleted.push(gone);
        m.deleted_files_total = 1;
        m
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = sample();
        let text = m.to_json();
        assert_eq!(Manifest::parse(&text, "m").unwrap(), m);
        assert_eq!(m.frames(), 10);
        assert_eq!(m.bytes(), 1234);
        assert!(text.contains("\"state\": \"active\""), "{text}");
    }

    #[test]
    fn bad_manifests_are_named_not_panicked_on() {
        let err = |text: &str| {
            Manifest::parse(text, "dir/manifest.json")
                .unwrap_err()
                .to_string()
        };
        assert!(err("{").contains("is not a capture manifest"));
        assert!(err("[]").contains("no \"format\""));
        let newer = sample()
            .to_json()
            .replace("\"version\": 1", "\"version\": 7");
        assert!(
            err(&newer).contains("capture version 7 is not supported"),
            "{}",
            err(&newer)
        );
        let escaping = sample()
            .to_json()
            .replace("frames-000002.zst", "../etc/passwd");
        assert!(err(&escaping).contains("bad file name"));
        let mut two_active = sample();
        two_active.files[0].state = FileState::Active;
        assert!(err(&two_active.to_json()).contains("only the last file may be active"));
        let missing = sample().to_json().replace("\"streams\"", "\"strims\"");
        assert!(err(&missing).contains("streams"));
    }
}
