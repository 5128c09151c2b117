//! The record format inside a capture file, once zstd is undone. Pure: bytes in, bytes
//! out.
//!
//! A file starts with the line `alphapulse-capture 1` (the format and its version), then
//! holds records, each a header line and the payload's exact bytes:
//!
//! ```text
//! F <wall_ns> <mono_ns> <len>\n<len bytes: the text frame exactly as received>\n
//! M <wall_ns> <mono_ns> <len>\n<len bytes: a marker, one JSON object>\n
//! ```
//!
//! `wall_ns` is the receive time in epoch nanoseconds, `mono_ns` the monotonic clock in
//! nanoseconds since the capture process started (pacing uses it: a step of the wall
//! clock does not stretch a replay). The length prefix keeps any payload exact, a line
//! break inside a frame included; the trailing `\n` makes `zstdcat` output readable and
//! lets a reader check it is still in step. Markers say what happened to the connection
//! (`connected`, `disconnected`) and carry no market data.

use std::io::{self, BufRead, Read, Write};

/// The first line of every capture file, without its line break.
pub const FILE_MAGIC: &str = "alphapulse-capture";
/// The version of the record format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest payload a record may claim. Binance frames are far smaller (the feed allows
/// at most its 1 MiB frame limit); a larger length means the file is not a capture, and
/// is refused before anything is allocated for it.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Longest header line: a kind, two 20-digit numbers, a length and three spaces.
const MAX_HEADER_BYTES: usize = 80;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text frame from the exchange, exactly as received.
    Frame,
    /// A note of the capture about its connection (JSON).
    Marker,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Frame => b'F',
            Kind::Marker => b'M',
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// Receive time, epoch nanoseconds.
    pub wall_ns: i64,
    /// Receive time on the capture's monotonic clock, nanoseconds.
    pub mono_ns: u64,
    pub payload: Vec<u8>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The input ended inside a record (a capture killed mid-write ends so).
    #[error("the file ends inside a record")]
    Truncated,
    #[error("not a capture file (it does not start with `{FILE_MAGIC} {FORMAT_VERSION}`)")]
    NotCapture,
    #[error(
        "capture format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    Version(String),
    #[error("bad record header {0:?}")]
    Header(String),
    #[error("a record claims {0} bytes, more than the {MAX_RECORD_BYTES} a capture allows")]
    TooLarge(usize),
    #[error("a record does not end with a line break (the file is damaged)")]
    Unterminated,
    #[error(transparent)]
    Io(io::Error),
}

impl FormatError {
    /// Truncation shows up as our own `Truncated` or as the decompressor's early end.
    pub fn is_truncation(&self) -> bool {
        match self {
            FormatError::Truncated => true,
            FormatError::Io(e) => e.kind() == io::ErrorKind::UnexpectedEof,
            _ => false,
        }
    }
}

impl From<io::Error> for FormatError {
    fn from(e: io::Error) -> FormatError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FormatError::Truncated
        } else {
            FormatError::Io(e)
        }
    }
}

/// Writes the file's first line.
pub fn write_file_header(out: &mut impl Write) -> io::Result<usize> {
    let line = format!("{FILE_MAGIC} {FORMAT_VERSION}\n");
    out.write_all(line.as_bytes())?;
    Ok(line.len())
}

/// Writes one record; returns the bytes written.
pub fn write_record(
    out: &mut impl Write,
    kind: Kind,
    wall_ns: i64,
    mono_ns: u64,
    payload: &[u8],
) -> io::Result<usize> {
    // Formatted on the stack: no allocation per record.
    let mut head = [0u8; MAX_HEADER_BYTES];
    let mut cursor = io::Cursor::new(&mut head[..]);
    writeln!(
        cursor,
        "{} {wall_ns} {mono_ns} {}",
        kind.letter() as char,
        payload.len()
    )?;
    let head_len = cursor.position() as usize;
    out.write_all(&head[..head_len])?;
    out.write_all(payload)?;
    out.write_all(b"\n")?;
    Ok(head_len + payload.len() + 1)
}

/// Reads the file's first line; `Ok(false)` when the input is empty (a file created by a
/// capture killed before it wrote anything).
pub fn read_file_header(input: &mut impl BufRead) -> Result<bool, FormatError> {
    let Some(line) = read_line(input)? else {
        return Ok(false);
    };
    let text = std::str::from_utf8(&line).map_err(|_| FormatError::NotCapture)?;
    let version = text
        .strip_prefix(FILE_MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(FormatError::NotCapture)?;
    if version != FORMAT_VERSION.to_string() {
        return Err(FormatError::Version(version.chars().take(20).collect()));
    }
    Ok(true)
}

/// Reads the next record; `Ok(None)` at a clean end of the input.
pub fn read_record(input: &mut impl BufRead) -> Result<Option<Record>, FormatError> {
    let Some(line) = read_line(input)? else {
        return Ok(None);
    };
    let shown = || FormatError::Header(String::from_utf8_lossy(&line).into_owned());
    let text = std::str::from_utf8(&line).map_err(|_| shown())?;
    let mut parts = text.split(' ');
    let kind = match parts.next() {
        Some("F") => Kind::Frame,
        Some("M") => Kind::Marker,
        _ => return Err(shown()),
    };
    let wall_ns = parts.next().and_then(|p| p.parse::<i64>().ok());
    let mono_ns = parts.next().and_then(|p| p.parse::<u64>().ok());
    let len = parts.next().and_then(|p| p.parse::<usize>().ok());
    let (Some(wall_ns), Some(mono_ns), Some(len), None) = (wall_ns, mono_ns, len, parts.next())
    else {
        return Err(shown());
    };
    if len > MAX_RECORD_BYTES {
        return Err(FormatError::TooLarge(len));
    }
    let mut payload = vec![0; len + 1];
    input.read_exact(&mut payload)?;
    if payload.pop() != Some(b'\n') {
        return Err(FormatError::Unterminated);
    }
    Ok(Some(Record {
        kind,
        wall_ns,
        mono_ns,
        payload,
    }))
}

/// One header line without its break; `None` at a clean end. A line longer than any
/// header is refused without reading on (the input is not a capture or is damaged).
fn read_line(input: &mut impl BufRead) -> Result<Option<Vec<u8>>, FormatError> {
    let mut line = Vec::with_capacity(MAX_HEADER_BYTES);
    let mut limited = Read::take(input, MAX_HEADER_BYTES as u64 + 1);
    limited.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_HEADER_BYTES {
            FormatError::Header(String::from_utf8_lossy(&line[..MAX_HEADER_BYTES]).into_owned())
        } else {
            FormatError::Truncated
        });
    }
    line.pop();
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[(Kind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        write_file_header(&mut out).unwrap();
        for (i, (kind, payload)) in records.iter().enumerate() {
            write_record(&mut out, *kind, 1_000 + i as i64, 7 + i as u64, payload).unwrap();
        }
        out
    }

    #[test]
    fn records_round_trip_exactly_line_breaks_included() {
        let frames: [(Kind, &[u8]); 3] = [
            (Kind::Frame, b"{\"stream\":\"a\",\"data\":{}}"),
            (Kind::Marker, b"{\"event\":\"disconnected\"}"),
            (Kind::Frame, b"two\nlines \xe2\x82\xac"),
        ];
        let bytes = encoded(&frames);
        let mut input = &bytes[..];
        assert!(read_file_header(&mut input).unwrap());
        for (i, (kind, payload)) in frames.iter().enumerate() {
            let r = read_record(&mut input).unwrap().unwrap();
            assert_eq!(r.kind, *kind);
            assert_eq!(r.payload, *payload);
            assert_eq!((r.wall_ns, r.mono_ns), (1_000 + i as i64, 7 + i as u64));
        }
        assert!(read_record(&mut input).unwrap().is_none());
    }

    #[test]
    fn every_cut_is_truncation_or_a_clean_end_never_a_wrong_record() {
        let bytes = encoded(&[(Kind::Frame, b"abc"), (Kind::Frame, b"defgh")]);
        for cut in 0..bytes.len() {
            let mut input = &bytes[..cut];
            let mut read: Vec<Vec<u8>> = Vec::new();
            let end = match read_file_header(&mut input) {
                Ok(false) => Ok(()),
                Ok(true) => loop {
                    match read_record(&mut input) {
                        Ok(Some(record)) => read.push(record.payload),
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                },
                Err(e) => Err(e),
            };
            match end {
                Ok(()) => assert!([0, 21, 36].contains(&cut), "cut {cut}"),
                Err(e) => assert!(e.is_truncation(), "cut {cut}: {e}"),
            }
            // What was read back is exactly the records written, in order, up to the cut.
            let written: [&[u8]; 2] = [b"abc", b"defgh"];
            assert!(read.len() <= written.len(), "cut {cut}");
            assert!(
                read.iter().zip(written).all(|(r, w)| r.as_slice() == w),
                "cut {cut}: {read:?}"
            );
        }
    }

    #[test]
    fn bad_input_is_named() {
        let mut other = &b"hello world\n"[..];
        assert!(matches!(
            read_file_header(&mut other),
            Err(FormatError::NotCapture)
        ));
        let mut newer = &b"alphapulse-capture 9\n"[..];
        let e = read_file_header(&mut newer).unwrap_err();
        assert!(e.to_string().contains("version 9 is not supported"), "{e}");
        let mut bad = &b"X 1 2 3\nabc\n"[..];
        assert!(matches!(read_record(&mut bad), Err(FormatError::Header(_))));
        let mut huge = &b"F 1 2 999999999999\n"[..];
        assert!(matches!(
            read_record(&mut huge),
            Err(FormatError::TooLarge(_))
        ));
        let mut long = vec![b'F'; 500];
        long.push(b'\n');
        assert!(matches!(
            read_record(&mut &long[..]),
            Err(FormatError::Header(_))
        ));
        let mut unterminated = &b"F 1 2 3\nabcd"[..];
        assert!(matches!(
            read_record(&mut unterminated),
            Err(FormatError::Unterminated)
        ));
    }
}
