//! HTTP routes: a request head to its response, and the list endpoints' parameters.

use serde_json::json;

use crate::market::{Interval, Symbol};
use crate::record::CandleRecord;
use crate::store::ListQuery;

use super::http::{self, Request, Response};
use super::{metrics, page, security, Options, Server, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};

pub(super) fn authorized(req: &Request, opts: &Options) -> bool {
    let query_token = http::query_param(&req.query, "token");
    security::token_ok(
        opts.token.as_deref(),
        req.bearer.as_deref(),
        query_token.as_deref(),
        req.session.as_deref(),
    )
}

/// Maps a request to its response.
pub(crate) async fn route(req: &Request, server: &Server) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET is supported");
    }
    if let Some((content_type, body)) = page::asset(&req.path) {
        return Response {
            status: 200,
            content_type,
            body: body.to_vec(),
            set_cookie: None,
        };
    }
    let protected = req.path.starts_with("/api/") || req.path == "/metrics";
    if protected && !authorized(req, &server.opts) {
        server.hub.stats.unauthorized.inc();
        return Response::error(401, "missing or wrong token");
    }
    let ctx = &server.ctx;
    match req.path.as_str() {
        // The page trades the token (in a header, never in the address) for a cookie
        // the browser keeps out of scripts' reach and sends with every request and
        // WebSocket upgrade of this origin.
        "/api/session" => {
            let mut r = Response::json(200, &serde_json::json!({ "session": "ok" }));
            r.set_cookie = server.opts.token.as_deref().map(|t| {
                format!(
                    "{}={}; Path=/; HttpOnly; SameSite=Strict{}",
                    http::SESSION_COOKIE,
                    security::session_value(t),
                    if server.opts.tls.is_some() {
                        "; Secure"
                    } else {
                        ""
                    }
                )
            });
            r
        }
        "/healthz" => Response::json(200, &serde_json::json!({ "status": "ok" })),
        "/readyz" => {
            let not_live = ctx.readiness();
            if not_live.is_empty() {
                Response::json(200, &serde_json::json!({ "status": "ready" }))
            } else {
                // Names every stream that keeps the engine from being ready, and why.
                let list: Vec<_> = not_live.iter().map(|n| n.to_json()).collect();
                Response::json(
                    503,
                    &serde_json::json!({ "status": "starting", "not_live": list }),
                )
            }
        }
        "/api/status" => Response::json(200, &server.status_json()),
        "/api/performance" => Response::json(200, &server.performance_json()),
        "/metrics" => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(ctx, &server.hub.stats),
        ),
        "/api/candles" => match list_query(&req.query).and_then(|q| followed(q, server)) {
            Ok(q) => match ctx.list_candles(q).await {
                Ok(candles) => {
                    let live: Vec<CandleRecord> = {
                        let store = ctx.store.lock().unwrap_or_else(|p| p.into_inner());
                        store
                            .live(q.symbol, q.interval)
                            .iter()
                            .map(CandleRecord::from)
                            .collect()
                    };
                    Response::json(200, &json!({ "candles": candles, "live": live }))
                }
                Err(e) => Response::error(503, &format!("candles unavailable: {e}")),
            },
            Err(resp) => resp,
        },
        "/api/signals" => match list_query(&req.query).and_then(|q| followed(q, server)) {
            Ok(q) => match ctx.list_signals(q).await {
                Ok(signals) => Response::json(200, &json!({ "signals": signals })),
                Err(e) => Response::error(503, &format!("signals unavailable: {e}")),
            },
            Err(resp) => resp,
        },
        "/api/book" => match book_params(&req.query, server) {
            Ok((symbol, depth)) => match ctx.books.latest(symbol) {
                Some(view) => {
                    let mut body = Vec::with_capacity(64 + 64 * depth.min(view.bids.len()) * 2);
                    view.write_json(&mut body, depth);
                    Response {
                        status: 200,
                        content_type: "application/json",
                        body,
                        set_cookie: None,
                    }
                }
                None => Response::error(503, &format!("the book of {symbol} is not ready yet")),
            },
            Err(resp) => resp,
        },
        _ => Response::error(404, "not found"),
    }
}

/// `symbol` (required, a symbol with a book) and `depth` (levels per side, 1 to
/// `books.top_levels`; default all published).
fn book_params(query: &str, server: &Server) -> Result<(Symbol, usize), Response> {
    let books = &server.ctx.books;
    let symbol = match http::query_param(query, "symbol") {
        Some(s) if !s.is_empty() => Symbol::new(&s)
            .map_err(|e| Response::error(400, &format!("invalid parameter symbol: {e}")))?,
        _ => return Err(Response::error(400, "missing parameter symbol")),
    };
    if !books.has(symbol) {
        let list: Vec<String> = books.symbols().map(|s| s.to_string()).collect();
        let kept = if list.is_empty() {
            "none: set books.symbols".to_owned()
        } else {
            list.join(",")
        };
        return Err(Response::error(
            404,
            &format!("no book is kept for {symbol} (books are kept for {kept})"),
        ));
    }
    let depth = match http::query_param(query, "depth") {
        Some(d) if !d.is_empty() => match d.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(Response::error(
                    400,
                    "invalid parameter depth: expected a whole number of levels, at least 1",
                ))
            }
        },
        _ => usize::MAX,
    };
    Ok((symbol, depth))
}

/// A list read for a symbol or timeframe this engine does not follow is a 404 naming
/// what it does follow, not an empty list that looks like a quiet market.
fn followed(q: ListQuery, server: &Server) -> Result<ListQuery, Response> {
    if let Some(symbol) = q.symbol {
        let symbols = &server.opts.symbols;
        if !symbols.contains(&symbol) {
            let list: Vec<&str> = symbols.iter().map(Symbol::as_str).collect();
            return Err(Response::error(
                404,
                &format!(
                    "symbol {symbol} is not followed by this engine (it follows {})",
                    list.join(",")
                ),
            ));
        }
    }
    if let Some(interval) = q.interval {
        let timeframes = &server.ctx.timeframes;
        if !timeframes.contains(&interval) {
            let list: Vec<&str> = timeframes.iter().map(|t| t.as_str()).collect();
            return Err(Response::error(
                404,
                &format!(
                    "timeframe {interval} is not followed by this engine (it follows {})",
                    list.join(",")
                ),
            ));
        }
    }
    Ok(q)
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

/// [`list_params`] plus the optional `from` / `to` times (ms); a bad one is a 400
/// naming it.
pub fn list_query(query: &str) -> Result<ListQuery, Response> {
    let (symbol, interval, limit) = list_params(query)?;
    let time = |name: &str| -> Result<Option<i64>, Response> {
        match http::query_param(query, name) {
            Some(t) if !t.is_empty() => t.parse::<i64>().map(Some).map_err(|_| {
                Response::error(
                    400,
                    &format!("invalid parameter {name}: expected a time in milliseconds"),
                )
            }),
            _ => Ok(None),
        }
    };
    Ok(ListQuery {
        symbol,
        interval,
        limit,
        from_ms: time("from")?,
        to_ms: time("to")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_reads_the_time_range() {
        let q = list_query("from=5&to=9").ok().unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.limit), (Some(5), Some(9), 100));
        for (q, name) in [("from=x", "from"), ("to=1.5", "to")] {
            let body = String::from_utf8(list_query(q).err().unwrap().body).unwrap();
            assert!(body.contains(name), "{body}");
        }
    }

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
