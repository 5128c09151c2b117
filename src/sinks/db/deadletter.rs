//! The dead-letter file: rows the database refuses (a CHECK, a trigger, a value out of
//! a column's range), kept where a person can read them and put them back by hand.
//!
//! Runs on the writer thread (a plain thread: the file writes block). In: the rows a
//! split batch isolated, with the server's SQLSTATE and message. Out:
//! `dead-letter.jsonl` in the spool directory, one JSON object per line:
//! `{"at_unix_ms", "table", "sqlstate", "reason", "row"}`, where `row` is the candle or
//! signal record of docs/api.md. The file is bounded (`database.dead_letter_max_bytes`):
//! past the bound rows are counted and logged, not written, so a flood of bad rows can
//! never fill the disk the spool needs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::rows::{Batch, SignalRow};
use crate::market::Candle;
use crate::record::CandleRecord;

/// The file's name in the spool directory (the spool reads only its segment files).
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";

/// One refused row, as it goes to the file.
pub struct DeadRow {
    pub table: &'static str,
    pub sqlstate: String,
    pub reason: String,
    pub row: Value,
}

impl DeadRow {
    /// The only row of a one-row `batch`, refused with `sqlstate` for `reason`.
    pub fn of_single(batch: &Batch, sqlstate: &str, reason: String) -> Option<DeadRow> {
        let (table, row) = match (
            batch.candles.first(),
            batch.signals.first(),
            batch.absences.first(),
        ) {
            (Some(c), _, _) => ("candles", candle_json(c)),
            (None, Some(s), _) => ("signals", signal_json(s)),
            (None, None, None) => match (batch.trades.first(), batch.agg_trades.first()) {
                (Some(t), _) => ("trades", crate::record::trade_json(t)),
                (None, Some(t)) => ("agg_trades", crate::record::agg_trade_json(t)),
                (None, None) => return None,
            },
            (None, None, Some(g)) => (
                "candle_absences",
                json!({
                    "symbol": g.symbol.as_str(),
                    "timeframe": g.interval.as_str(),
                    "from_open_time": g.from_open_ms,
                    "to_open_time": g.to_open_ms,
                }),
            ),
        };
        Some(DeadRow {
            table,
            sqlstate: sqlstate.to_string(),
            reason,
            row,
        })
    }

    fn line(&self, at_unix_ms: i64) -> String {
        let mut line = json!({
            "at_unix_ms": at_unix_ms,
            "table": self.table,
            "sqlstate": self.sqlstate,
            "reason": self.reason,
            "row": self.row,
        })
        .to_string();
        line.push('\n');
        line
    }
}

fn candle_json(c: &Candle) -> Value {
    serde_json::to_value(CandleRecord::from(c)).unwrap_or(Value::Null)
}

fn signal_json(s: &SignalRow) -> Value {
    let indicators: Value = serde_json::from_str(&s.indicators_json).unwrap_or(Value::Null);
    json!({
        "type": "signal",
        "timestamp": s.timestamp_ms,
        "symbol": s.symbol.as_str(),
        "timeframe": s.interval.as_str(),
        "kind": s.kind.as_str(),
        "direction": s.direction.as_str(),
        "confidence": s.confidence,
        "price": s.price.to_string(),
        "indicators": indicators,
        "event_time": s.event_time_us / 1000,
    })
}

/// What [`DeadLetter::write`] did with the rows it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows now in the file.
    pub kept: u64,
    /// Rows left out: the file is at its bound, or the disk refused the write.
    pub left_out: u64,
}

/// The bounded, append-only dead-letter file.
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    bytes: u64,
    file: Option<File>,
}

impl DeadLetter {
    /// The file in `dir`, bounded at `max_bytes`; opened (and its size read) at the
    /// first write, so a writer that never refuses a row never creates it.
    pub fn new(dir: &Path, max_bytes: u64) -> DeadLetter {
        let path = dir.join(DEAD_LETTER_FILE);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        DeadLetter {
            path,
            max_bytes,
            bytes,
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one line per row while they fit the bound, and syncs the file.
    pub fn write(&mut self, rows: &[DeadRow], at_unix_ms: i64) -> Written {
        let mut text = String::new();
        let mut kept = 0u64;
        for row in rows {
            let line = row.line(at_unix_ms);
            if self.bytes + (text.len() + line.len()) as u64 > self.max_bytes {
                break;
            }
            text.push_str(&line);
            kept += 1;
        }
        let all = rows.len() as u64;
        if kept == 0 {
            return Written {
                kept: 0,
                left_out: all,
            };
        }
        match self.append(text.as_bytes()) {
            Ok(()) => {
                self.bytes += text.len() as u64;
                Written {
                    kept,
                    left_out: all - kept,
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot write the dead-letter file");
                self.file = None;
                Written {
                    kept: 0,
                    left_out: all,
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.bytes = file.metadata()?.len();
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(bytes)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::testing::candle;

    fn refused(batch: &Batch) -> DeadRow {
        DeadRow::of_single(batch, "23514", "violates check".into()).expect("a row")
    }

    #[test]
    fn rows_are_json_lines_until_the_bound() {
        let dir = std::env::temp_dir().join(format!("alphapulse-dead-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 60_000, 60_000_001, true));
        let row = refused(&b);
        let one = row.line(7).len() as u64;
        let mut dl = DeadLetter::new(&dir, one * 2 + 1);
        let rows = [refused(&b), refused(&b), refused(&b)];
        assert_eq!(
            dl.write(&rows, 7),
            Written {
                kept: 2,
                left_out: 1
            }
        );
        assert_eq!(
            dl.write(&rows[..1], 7),
            Written {
                kept: 0,
                left_out: 1
            }
        );
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["sqlstate"], "23514");
        assert_eq!(lines[0]["table"], "candles");
        assert_eq!(lines[0]["row"]["symbol"], "BTCUSDT");
        assert_eq!(lines[0]["row"]["open_time"], 60_000);
        assert_eq!(lines[0]["reason"], "violates check");
        // A new writer on the same file counts what is there already.
        assert_eq!(DeadLetter::new(&dir, 1 << 20).bytes(), one * 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
