//! The dashboard listener: HTTP/1.1 with keep-alive on the dashboard core.
//!
//! Runs on: the dashboard core's glommio executor. Owns: the listening socket and one
//! task per client connection. In: requests; read-only views of every role's counters
//! and the recent store. Out: JSON responses. Routes so far: `/healthz`, `/readyz`,
//! `/api/status`, `/api/candles`, `/api/signals`; the dashboard work grows this server (WebSocket,
//! signals, the page) on the same skeleton: [`serve`] takes its listener and stop flag
//! as arguments so tests pass their own.

pub mod http;
pub mod page;
pub mod status;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use self::http::{HeadError, Request, Response};
pub use self::status::StatusContext;
use crate::market::{Interval, Symbol};

/// A request head must arrive within this (slowloris protection).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent HTTP connections; more are refused with 503 until some close.
pub const MAX_HTTP_CONNECTIONS: usize = 4096;
/// Default and largest `limit` of list endpoints (DESIGN.md).
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// How often the accept loop checks the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Serves until `stop` is set.
pub async fn serve(listener: TcpListener, ctx: Arc<StatusContext>, stop: Arc<AtomicBool>) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    while !stop.load(Ordering::Relaxed) {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            glommio::timer::sleep(STOP_POLL).await;
            None
        })
        .await;
        let stream = match accepted {
            None => continue,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let open = open.clone();
        let stop = stop.clone();
        glommio::spawn_local(async move {
            if open.get() >= MAX_HTTP_CONNECTIONS {
                let mut stream = stream;
                let _ = stream
                    .write_all(&Response::error(503, "too many connections").to_bytes(false))
                    .await;
                return;
            }
            open.set(open.get() + 1);
            handle_connection(stream, &ctx, &stop).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn handle_connection(mut stream: TcpStream, ctx: &StatusContext, stop: &AtomicBool) {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head: an idle keep-alive connection may wait IDLE_TIMEOUT for
        // its next request; once the first byte is in, the head must complete within
        // HEAD_DEADLINE of it (slowloris).
        let idle_since = Instant::now();
        let mut first_byte_at: Option<Instant> = (!buf.is_empty()).then(Instant::now);
        let req = loop {
            match http::parse_head(&buf) {
                Ok(Some(req)) => break req,
                Ok(None) => {}
                Err(HeadError::TooLarge) => {
                    let _ = stream
                        .write_all(&Response::error(431, "request head too large").to_bytes(false))
                        .await;
                    return;
                }
                Err(HeadError::Malformed) => {
                    let _ = stream
                        .write_all(&Response::error(400, "malformed request").to_bytes(false))
                        .await;
                    return;
                }
            }
            let left = match first_byte_at {
                None => IDLE_TIMEOUT.saturating_sub(idle_since.elapsed()),
                Some(t) => HEAD_DEADLINE.saturating_sub(t.elapsed()),
            };
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                return;
            }
            let read = future::or(async { Some(stream.read(&mut chunk).await) }, async {
                glommio::timer::sleep(left.min(STOP_POLL * 10)).await;
                None
            })
            .await;
            match read {
                None => continue,
                Some(Ok(0)) | Some(Err(_)) => return,
                Some(Ok(n)) => {
                    first_byte_at.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        if req.content_length > 0 {
            // No route takes a body; refusing one (and closing) means no client can
            // hold a connection open by announcing a body it never sends.
            let _ = stream
                .write_all(&Response::error(413, "request bodies are not accepted").to_bytes(false))
                .await;
            return;
        }
        let response = route(&req, ctx);
        let bytes = if req.method == "HEAD" {
            response.head_bytes(req.keep_alive)
        } else {
            response.to_bytes(req.keep_alive)
        };
        if stream.write_all(&bytes).await.is_err() || !req.keep_alive {
            return;
        }
        buf.drain(..req.head_len.min(buf.len()));
    }
}

/// Maps a request to its response.
pub fn route(req: &Request, ctx: &StatusContext) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET is supported");
    }
    if let Some((content_type, body)) = page::asset(&req.path) {
        return Response {
            status: 200,
            content_type,
            body: body.to_vec(),
        };
    }
    match req.path.as_str() {
        "/healthz" => Response::json(200, &serde_json::json!({ "status": "ok" })),
        "/readyz" => {
            if ctx.ready() {
                Response::json(200, &serde_json::json!({ "status": "ready" }))
            } else {
                Response::json(503, &serde_json::json!({ "status": "starting" }))
            }
        }
        "/api/status" => Response::json(200, &ctx.snapshot()),
        "/api/performance" => Response::json(200, &ctx.performance(0, 0)),
        "/api/candles" => match list_params(&req.query) {
            Ok((symbol, interval, limit)) => {
                Response::json(200, &ctx.candles(symbol, interval, limit))
            }
            Err(resp) => resp,
        },
        "/api/signals" => match list_params(&req.query) {
            Ok((symbol, interval, limit)) => {
                Response::json(200, &ctx.signals(symbol, interval, limit))
            }
            Err(resp) => resp,
        },
        _ => Response::error(404, "not found"),
    }
}

type ListParams = (Option<Symbol>, Option<Interval>, usize);

/// Validates `symbol`, `timeframe` and `limit`; a bad one is a 400 naming it.
pub fn list_params(query: &str) -> Result<ListParams, Response> {
    let symbol = match http::query_param(query, "symbol") {
        Some(s) if !s.is_empty() => Some(
            Symbol::new(&s)
                .map_err(|e| Response::error(400, &format!("invalid parameter symbol: {e}")))?,
        ),
        _ => None,
    };
    let interval = match http::query_param(query, "timeframe") {
        Some(t) if !t.is_empty() => Some(
            Interval::parse(&t)
                .map_err(|e| Response::error(400, &format!("invalid parameter timeframe: {e}")))?,
        ),
        _ => None,
    };
    let limit = match http::query_param(query, "limit") {
        Some(l) if !l.is_empty() => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(Response::error(
                    400,
                    &format!(
                    "invalid parameter limit: expected a whole number from 1 to {MAX_LIST_LIMIT}"
                ),
                ))
            }
        },
        _ => DEFAULT_LIST_LIMIT,
    };
    Ok((symbol, interval, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_validate_and_name_the_parameter() {
        assert_eq!(list_params("").ok(), Some((None, None, 100)));
        let (s, i, l) = list_params("symbol=btcusdt&timeframe=1h&limit=1000")
            .ok()
            .unwrap();
        assert_eq!(s.unwrap().as_str(), "BTCUSDT");
        assert_eq!(i, Some(Interval::H1));
        assert_eq!(l, 1000);
        for (q, name) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("timeframe=7m", "timeframe"),
            ("symbol=a-b", "symbol"),
        ] {
            let r = list_params(q).err().unwrap();
            assert_eq!(r.status, 400);
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains(name), "{body}");
        }
    }
}
