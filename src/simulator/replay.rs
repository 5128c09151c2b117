//! Captures to replay instead of the synthetic market (`--replay PATH`).
//!
//! Runs on: the caller's thread for opening (a capture file is loaded; a capture
//! directory's manifest and first file are checked), a `replay-reader` thread that
//! decompresses a capture directory into a bounded queue, then the simulator core for
//! pacing (pure: it never blocks on the queue). In: a capture. Out: frames with their
//! recorded time, stream name and payload.
//!
//! A capture directory (`alphapulse capture --out DIR`: `manifest.json` and zstd files,
//! see `crate::capture`) is streamed: at most [`REPLAY_QUEUE_FRAMES`] frames are held,
//! whatever its size. Its frames are paced by their monotonic receive times; connection
//! markers and frames that are not combined-stream frames (replies) are skipped. A
//! killed capture's last file is served up to its last whole frame; damage anywhere
//! else stops the replay with an error in the log (the first file is checked before the
//! simulator starts, so a path that is not a capture fails at once).
//!
//! Two line formats are accepted in a single file, one frame per line, mixed freely:
//! - the public sample format: `<epoch seconds, fractional>: <combined frame>`; a first
//!   line naming the URL (`wss://… <-> <epoch seconds>`) is skipped;
//! - AlphaPulse's own capture format: `<epoch microseconds> <combined frame>`, where the
//!   frame is one combined-stream JSON object `{"stream":"…","data":{…}}` on one line.
//!
//! Empty lines and lines starting with `#` are ignored; any other line that is not one
//! of the two formats makes loading fail with its line number.

use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

use crate::capture;

/// Largest capture file loaded into memory; a larger file is refused rather than
/// exhausting it (a capture directory is streamed instead).
pub const MAX_CAPTURE_BYTES: u64 = 1 << 30;
/// Frames of a capture directory decoded ahead of the replay: bounds the memory of a
/// streamed replay (a few MB of Binance frames) while keeping the core fed.
pub const REPLAY_QUEUE_FRAMES: usize = 8_192;

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// When it was received, microseconds on the capture's clock: epoch for the line
    /// formats, the capture process's monotonic clock for a capture directory. Only
    /// differences are used (pacing).
    pub at_us: i64,
    /// Canonical stream name (the `stream` field).
    pub stream: String,
    /// The whole combined frame, as recorded.
    pub frame: String,
    /// Where the `data` payload sits inside `frame` (what a raw `/ws` client receives).
    pub data: Range<usize>,
}

impl CapturedFrame {
    pub fn data(&self) -> &str {
        &self.frame[self.data.clone()]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read capture {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("capture {path} is larger than {MAX_CAPTURE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("capture line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("capture has no frames")]
    Empty,
    #[error("cannot replay the capture directory: {0}")]
    Capture(#[from] capture::ReadError),
    #[error("cannot start the replay reader: {0}")]
    Thread(std::io::Error),
}

/// A capture to replay.
pub enum Source {
    /// A capture file, loaded.
    Frames(Vec<CapturedFrame>),
    /// A capture directory, streamed.
    Directory(Box<capture::Reader>),
}

/// Opens `path`: a capture directory (streamed) or a capture file (loaded).
pub fn open(path: &Path) -> Result<Source, ReplayError> {
    if path.is_dir() {
        Ok(Source::Directory(Box::new(capture::Reader::open(path)?)))
    } else {
        Ok(Source::Frames(load(path)?))
    }
}

/// A capture directory's record as a frame to serve; `None` for markers and frames that
/// are not combined-stream frames. A depth snapshot marker comes as a note: a frame
/// with no stream, whose text is the marker (the replay's books start from it, see
/// `replay_books`; it is never sent).
fn to_frame(record: capture::Record) -> Option<CapturedFrame> {
    if record.kind == capture::Kind::Marker {
        let note = String::from_utf8(record.payload).ok()?;
        if !note.starts_with(r#"{"event":"depth_snapshot""#) {
            return None;
        }
        return Some(CapturedFrame {
            at_us: i64::try_from(record.mono_ns / 1_000).ok()?,
            stream: String::new(),
            frame: note,
            data: 0..0,
        });
    }
    if record.kind != capture::Kind::Frame {
        return None;
    }
    let frame = String::from_utf8(record.payload).ok()?;
    let (stream, data) = locate(&frame)?;
    Some(CapturedFrame {
        at_us: i64::try_from(record.mono_ns / 1_000).ok()?,
        stream,
        frame,
        data,
    })
}

/// Reads and parses a capture file.
pub fn load(path: &Path) -> Result<Vec<CapturedFrame>, ReplayError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ReplayError::Io {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_CAPTURE_BYTES {
        return Err(ReplayError::TooLarge { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Io {
        path: shown,
        source,
    })?;
    parse(&text)
}

/// Parses capture text.
pub fn parse(text: &str) -> Result<Vec<CapturedFrame>, ReplayError> {
    let mut frames = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if number == 0 && line.contains(" <-> ") {
            continue;
        }
        let fail = |reason: &str| ReplayError::Line {
            line: number + 1,
            reason: reason.to_string(),
        };
        let (time, frame) = line
            .split_once(' ')
            .ok_or_else(|| fail("no space after the time"))?;
        let at_us = match time.strip_suffix(':') {
            Some(seconds) => parse_seconds_us(seconds).ok_or_else(|| fail("bad epoch seconds"))?,
            None => time
                .parse::<i64>()
                .map_err(|_| fail("bad epoch microseconds"))?,
        };
        let frame = frame.trim();
        let (stream, data) = locate(frame).ok_or_else(|| fail("not a combined-stream frame"))?;
        frames.push(CapturedFrame {
            at_us,
            stream,
            frame: frame.to_string(),
            data,
        });
    }
    if frames.is_empty() {
        return Err(ReplayError::Empty);
    }
    Ok(frames)
}

/// `1633998512.0633569` → microseconds, exactly (no float rounding).
fn parse_seconds_us(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut micros: i64 = 0;
    for i in 0..6 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        micros = micros * 10 + digit;
    }
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(micros)
}

/// Finds the stream name and the `data` payload range of a combined frame. The fast path
/// reads Binance's field order (`{"stream":"…","data":…}`); anything else is checked
/// with a full JSON parse.
fn locate(frame: &str) -> Option<(String, Range<usize>)> {
    const HEAD: &str = "{\"stream\":\"";
    if let Some(rest) = frame.strip_prefix(HEAD) {
        let name_end = rest.find('"')?;
        let name = &rest[..name_end];
        let after = &rest[name_end..];
        if let Some(data) = after.strip_prefix("\",\"data\":") {
            if frame.ends_with('}') && !name.contains('\\') {
                let start = frame.len() - data.len();
                return Some((name.to_string(), start..frame.len() - 1));
            }
        }
    }
    // Other field orders: re-serialise the payload so raw clients still get its text.
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let name = value.get("stream")?.as_str()?.to_string();
    let data = value.get("data")?.to_string();
    let start = frame.find(&data)?;
    Some((name, start..start + data.len()))
}

/// Where the frames come from.
enum Feed {
    Memory(std::vec::IntoIter<CapturedFrame>),
    /// The reader thread's queue; `Err` ends the replay with the reader's error.
    Stream(mpsc::Receiver<Result<CapturedFrame, String>>),
}

/// What the next frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Due this many µs after the replay started.
    Due(i64),
    /// The reader has not decoded it yet: ask again shortly.
    Wait,
    /// Nothing left.
    Done,
}

/// Paces a capture: a frame is due `(at_us - first at_us) / speed` after the start, so
/// receive times become send times.
pub struct Playback {
    /// Replay speed; 0 sends everything as fast as possible.
    speed: f64,
    names: Vec<String>,
    feed: Feed,
    pending: Option<CapturedFrame>,
    first_us: Option<i64>,
    done: bool,
}

impl Playback {
    /// Paces frames held in memory.
    pub fn new(frames: Vec<CapturedFrame>, speed: f64) -> Playback {
        let mut names: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for f in &frames {
            if seen.insert(f.stream.as_str()) {
                names.push(f.stream.clone());
            }
        }
        Playback {
            speed,
            names,
            feed: Feed::Memory(frames.into_iter()),
            pending: None,
            first_us: None,
            done: false,
        }
    }

    /// Paces a source; a capture directory gets its reader thread.
    pub fn from_source(source: Source, speed: f64) -> Result<Playback, ReplayError> {
        let mut reader = match source {
            Source::Frames(frames) => return Ok(Playback::new(frames, speed)),
            Source::Directory(reader) => reader,
        };
        let names = reader.manifest().streams.clone();
        let (tx, rx) = mpsc::sync_channel(REPLAY_QUEUE_FRAMES);
        std::thread::Builder::new()
            .name("replay-reader".into())
            .spawn(move || {
                for record in reader.by_ref() {
                    let item = match record {
                        Ok(r) => match to_frame(r) {
                            Some(frame) => Ok(frame),
                            None => continue,
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    let failed = item.is_err();
                    // A send fails once the simulator has stopped: nothing to do then.
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                }
                if let Some(name) = reader.truncated() {
                    tracing::warn!(file = name,
                        "replay: the capture's last file ends inside a record (an interrupted capture); served up to its last whole frame");
                }
            })
            .map_err(ReplayError::Thread)?;
        Ok(Playback {
            speed,
            names,
            feed: Feed::Stream(rx),
            pending: None,
            first_us: None,
            done: false,
        })
    }

    /// Stream names known before the replay starts (the capture's).
    pub fn stream_names(&self) -> &[String] {
        &self.names
    }

    /// When the next frame is due; never blocks.
    pub fn next_due(&mut self) -> Next {
        if self.pending.is_none() && !self.done {
            let next = match &mut self.feed {
                Feed::Memory(frames) => frames.next(),
                Feed::Stream(rx) => match rx.try_recv() {
                    Ok(Ok(frame)) => Some(frame),
                    Ok(Err(why)) => {
                        tracing::error!(error = %why, "replay stopped");
                        None
                    }
                    Err(mpsc::TryRecvError::Empty) => return Next::Wait,
                    Err(mpsc::TryRecvError::Disconnected) => None,
                },
            };
            self.done = next.is_none();
            self.pending = next;
        }
        let Some(frame) = &self.pending else {
            return Next::Done;
        };
        let first = *self.first_us.get_or_insert(frame.at_us);
        if self.speed <= 0.0 {
            return Next::Due(0);
        }
        Next::Due(((frame.at_us - first).max(0) as f64 / self.speed) as i64)
    }

    /// Takes the frame [`Playback::next_due`] looked at.
    pub fn take(&mut self) -> Option<CapturedFrame> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats() {
        let text = concat!(
            "wss://stream.binance.com:9443/stream?streams=a@trade <-> 1633998511.159679\n",
            "1633998512.0633569: {\"stream\":\"nknusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"U\":1}}\n",
            "\n# comment\n",
            "1633998512564785 {\"data\":{\"u\":5},\"stream\":\"nknusdt@bookTicker\"}\n",
        );
        let frames = parse(text).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].at_us, 1_633_998_512_063_356);
        assert_eq!(frames[0].stream, "nknusdt@depth@100ms");
        assert_eq!(frames[0].data(), "{\"e\":\"depthUpdate\",\"U\":1}");
        assert_eq!(frames[1].at_us, 1_633_998_512_564_785);
        assert_eq!(frames[1].data(), "{\"u\":5}");
        let mut p = Playback::new(frames, 2.0);
        assert_eq!(p.next_due(), Next::Due(0));
        assert!(p.take().is_some());
        assert_eq!(p.next_due(), Next::Due((564_785 - 63_356) / 2));
        assert!(p.take().is_some());
        assert_eq!(p.next_due(), Next::Done);
        assert!(matches!(
            parse("12 notjson"),
            Err(ReplayError::Line { line: 1, .. })
        ));
        assert!(matches!(parse("\n"), Err(ReplayError::Empty)));
    }

    #[test]
    fn a_capture_directory_streams_its_frames_paced_by_receive_time() {
        use crate::capture::{Kind, Settings, Stamp, Writer};
        let dir = std::env::temp_dir().join(format!(
            "alphapulse-replay-dir-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let settings = Settings {
            rotate_bytes: 4096,
            rotate_after: std::time::Duration::from_secs(60),
            max_bytes: 1 << 30,
            flush_every: std::time::Duration::from_secs(1),
            level: 1,
        };
        let at = |i: u64| Stamp {
            wall_ns: 1_700_000_000_000_000_000 + i as i64,
            mono_ns: 1_000_000 + i * 2_000_000,
        };
        let mut w = Writer::create(
            &dir,
            settings,
            "ws://x/stream".into(),
            vec!["a@trade".into()],
            at(0),
        )
        .unwrap();
        w.record(Kind::Marker, at(0), b"{\"event\":\"connected\"}")
            .unwrap();
        w.record(Kind::Frame, at(0), b"{\"result\":null,\"id\":1}")
            .unwrap();
        let total = 3 * REPLAY_QUEUE_FRAMES as u64;
        for i in 0..total {
            let frame = format!("{{\"stream\":\"a@trade\",\"data\":{{\"t\":{i}}}}}");
            w.record(Kind::Frame, at(i), frame.as_bytes()).unwrap();
            if i % 1000 == 0 {
                w.flush(at(i)).unwrap();
            }
        }
        w.finish(at(total)).unwrap();
        let mut p = Playback::from_source(open(&dir).unwrap(), 2.0).unwrap();
        assert_eq!(p.stream_names(), ["a@trade"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut got = 0u64;
        loop {
            match p.next_due() {
                Next::Wait => {
                    assert!(std::time::Instant::now() < deadline, "the reader stalls");
                    std::thread::yield_now();
                }
                Next::Done => break,
                Next::Due(due) => {
                    // Receive times 2 ms apart, served twice as fast: 1 ms apart.
                    assert_eq!(due, got as i64 * 1_000);
                    let f = p.take().unwrap();
                    assert_eq!(f.data(), format!("{{\"t\":{got}}}"));
                    got += 1;
                }
            }
        }
        assert_eq!(got, total, "every frame, markers and replies skipped");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(open(&dir), Err(ReplayError::Io { .. })));
    }
}
