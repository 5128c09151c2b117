//! Captures to replay instead of the synthetic market (`--replay FILE`).
//!
//! Runs on: the caller's thread for loading (file I/O happens before the executor
//! starts), then the simulator core for pacing (pure). In: a capture file. Out: frames
//! with their recorded time, stream name and payload.
//!
//! Two line formats are accepted, one frame per line, mixed freely:
//! - the public sample format: `<epoch seconds, fractional>: <combined frame>`; a first
//!   line naming the URL (`wss://… <-> <epoch seconds>`) is skipped;
//! - AlphaPulse's own capture format: `<epoch microseconds> <combined frame>`, where the
//!   frame is one combined-stream JSON object `{"stream":"…","data":{…}}` on one line.
//!
//! Empty lines and lines starting with `#` are ignored; any other line that is not one
//! of the two formats makes loading fail with its line number.

use std::ops::Range;
use std::path::Path;

/// Largest capture loaded into memory; a larger file is refused rather than exhausting it.
pub const MAX_CAPTURE_BYTES: u64 = 1 << 30;

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// When it was received, epoch microseconds.
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

/// Paces a capture: frame `i` is due `(at_us[i] - at_us[0]) / speed` after the start.
#[derive(Debug)]
pub struct Playback {
    pub frames: Vec<CapturedFrame>,
    /// Index of the next frame to send.
    pub next: usize,
    /// Replay speed; 0 sends everything as fast as possible.
    pub speed: f64,
}

impl Playback {
    pub fn new(frames: Vec<CapturedFrame>, speed: f64) -> Playback {
        Playback {
            frames,
            next: 0,
            speed,
        }
    }

    /// Wall-clock offset (µs since the replay started) at which frame `index` is due.
    pub fn due_us(&self, index: usize) -> Option<i64> {
        let frame = self.frames.get(index)?;
        if self.speed <= 0.0 {
            return Some(0);
        }
        let first = self.frames.first().map_or(frame.at_us, |f| f.at_us);
        Some(((frame.at_us - first).max(0) as f64 / self.speed) as i64)
    }

    pub fn finished(&self) -> bool {
        self.next >= self.frames.len()
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
        let p = Playback::new(frames, 2.0);
        assert_eq!(p.due_us(1), Some((564_785 - 63_356) / 2));
        assert!(matches!(
            parse("12 notjson"),
            Err(ReplayError::Line { line: 1, .. })
        ));
        assert!(matches!(parse("\n"), Err(ReplayError::Empty)));
    }
}
