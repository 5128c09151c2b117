//! Depth snapshots for the books of a capture: the first diff depth event of a symbol on
//! each connection is followed, in the capture, by the REST snapshot taken right after
//! it (`GET /api/v3/depth`), as a marker
//! `{"event":"depth_snapshot","symbol":…,"limit":…,"answer":{…}}`.
//!
//! A diff stream alone cannot rebuild a book: Binance's procedure starts from a
//! snapshot. With one recorded after the first buffered event, a replay holds
//! everything a book needs: the simulator's `--replay` keeps a book from these markers
//! and the frames it sends, and answers `/api/v3/depth` from it, so an engine run
//! against the replay synchronises its books as the live run did.
//!
//! Runs on the capture thread (blocking HTTP is fine there: it is a tool, not a core).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::format::Kind;
use super::writer::{WriteError, Writer};

/// The snapshot limit asked: deep enough for any book the engine keeps by default.
pub const SNAPSHOT_LIMIT: u32 = 1000;
/// After a failed snapshot, the next diff of the symbol asks again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Rate limited (429/418) without a `Retry-After`: no snapshot is asked for this long
/// (the rest of Binance's one-minute weight window).
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(60);
/// The longest wait taken from a `Retry-After` (Binance's longest IP ban, 3 days).
const MAX_RATE_LIMITED_WAIT: Duration = Duration::from_secs(3 * 24 * 3600);

/// The symbols of this connection that have their snapshot, and when a failed one may
/// be asked again.
pub struct DepthSnapshots {
    rest_url: String,
    client: Option<crate::backfill::Client>,
    done: HashMap<String, Option<Instant>>,
    /// Rate limited by the exchange: no snapshot is asked before this.
    blocked_until: Option<Instant>,
    /// Snapshots recorded, and failures (recorded as markers too).
    pub taken: u64,
    pub failed: u64,
}

impl DepthSnapshots {
    /// Snapshots from the exchange at `rest_url`; `client` `None` records none.
    pub fn new(rest_url: &str, client: Option<crate::backfill::Client>) -> DepthSnapshots {
        DepthSnapshots {
            rest_url: rest_url.trim_end_matches('/').to_string(),
            client,
            done: HashMap::new(),
            blocked_until: None,
            taken: 0,
            failed: 0,
        }
    }

    /// A new connection: every book starts over.
    pub fn reset(&mut self) {
        self.done.clear();
    }

    /// After a frame was recorded: the first diff depth event of a symbol on this
    /// connection is followed by its snapshot.
    pub fn after_frame(&mut self, text: &str, writer: &mut Writer) -> Result<(), WriteError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let Some(symbol) = diff_depth_symbol(text) else {
            return Ok(());
        };
        match self.done.get(symbol) {
            Some(None) => return Ok(()),
            Some(Some(retry_at)) if Instant::now() < *retry_at => return Ok(()),
            _ => {}
        }
        if self.blocked_until.is_some_and(|t| Instant::now() < t) {
            // Asked again with a later diff, once the exchange allows it.
            return Ok(());
        }
        let symbol = symbol.to_ascii_uppercase();
        let Ok(book_symbol) = crate::market::Symbol::new(&symbol) else {
            return Ok(());
        };
        let request = crate::message::rest::BookRequest {
            symbol: book_symbol,
            limit: SNAPSHOT_LIMIT,
            weight: 0,
        };
        let url = crate::backfill::depth::depth_url(&self.rest_url, &request);
        let answer = client.get(&url).map_err(|e| e.to_string()).and_then(|a| {
            if a.body.is_none() {
                // Rate limited: every symbol waits as the exchange asks.
                let wait = a
                    .retry_after_s
                    .map_or(RATE_LIMITED_WAIT, Duration::from_secs)
                    .min(MAX_RATE_LIMITED_WAIT);
                self.blocked_until = Some(Instant::now() + wait);
            }
            match a.body {
                // Kept as the exchange wrote it, once it is known to be one JSON value.
                Some(Ok(body)) => serde_json::from_str::<serde::de::IgnoredAny>(&body)
                    .map(|_| body)
                    .map_err(|e| format!("not JSON: {e}")),
                Some(Err(e)) => Err(e.to_string()),
                None => Err(format!("rate limited ({})", a.status)),
            }
        });
        let at = super::now();
        let key = symbol.to_ascii_lowercase();
        match answer {
            Ok(answer) => {
                // The event first, so a replay finds these notes by their first bytes.
                let note = format!(
                    r#"{{"event":"depth_snapshot","symbol":"{symbol}","limit":{SNAPSHOT_LIMIT},"answer":{}}}"#,
                    answer.trim()
                );
                writer.record(Kind::Marker, at, note.as_bytes())?;
                self.done.insert(key, None);
                self.taken += 1;
            }
            Err(why) => {
                tracing::warn!(%symbol, error = %why, "capture: depth snapshot failed; asked again with a later diff");
                let note = serde_json::json!({
                    "event": "depth_snapshot_failed",
                    "symbol": symbol,
                    "error": why,
                });
                writer.record(Kind::Marker, at, note.to_string().as_bytes())?;
                self.done.insert(key, Some(Instant::now() + RETRY_AFTER));
                self.failed += 1;
            }
        }
        Ok(())
    }
}

/// The (lowercase) symbol of a combined-stream frame of a diff depth stream
/// (`<symbol>@depth` or `<symbol>@depth@100ms`), read from its leading `stream` field.
pub fn diff_depth_symbol(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix("{\"stream\":\"")?;
    crate::market::diff_depth_stream_symbol(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_diff_depth_frames_only() {
        let f = |s: &str| format!("{{\"stream\":\"{s}\",\"data\":{{}}}}");
        assert_eq!(
            diff_depth_symbol(&f("btcusdt@depth@100ms")),
            Some("btcusdt")
        );
        assert_eq!(diff_depth_symbol(&f("ethusdt@depth")), Some("ethusdt"));
        assert_eq!(diff_depth_symbol(&f("btcusdt@depth20@100ms")), None);
        assert_eq!(diff_depth_symbol(&f("btcusdt@kline_1m")), None);
        assert_eq!(diff_depth_symbol("{\"result\":null,\"id\":1}"), None);
    }
}
