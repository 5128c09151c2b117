//! The HTTP side of the REST thread: the agent (TLS roots, timeouts), the klines URL
//! of a request, and one GET read into what the thread needs: the status, the weight
//! and Retry-After headers, and the body of a 200 or why there is none.
//!
//! Runs on the REST thread; blocking. The thread decides what to do with an answer
//! ([`super::thread`]); this module only speaks HTTP.

use std::sync::Arc;

use super::{klines, RestError, Want, MAX_BODY_BYTES, REQUEST_TIMEOUT};
use crate::message::rest::{Request, TradeKind};

/// The HTTP agent: rustls trusting the webpki roots, plus the certificates of
/// `feed.tls_ca_file` when set (as the WebSocket feed does).
pub fn agent(extra_ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, RestError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

    let roots = match extra_ca_file {
        None => RootCerts::WebPki,
        Some(path) => {
            let extra = crate::tls::certificates(path).map_err(|e| RestError::CaFile {
                path: e.path.display().to_string(),
                why: e.why,
            })?;
            let certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .chain(&extra)
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            RootCerts::Specific(Arc::new(certs))
        }
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into())
}

/// The URL of `req` on the exchange at `rest_url`.
pub fn klines_url(rest_url: &str, req: &Request) -> String {
    if let Want::Trades { kind, from_id, .. } = req.want {
        return match kind {
            TradeKind::Aggregate => super::agg_trades::url(rest_url, req.symbol, from_id),
            TradeKind::Raw => super::trades::url(rest_url, req.symbol, from_id),
        };
    }
    let base = format!(
        "{}/api/v3/klines?symbol={}&interval={}",
        rest_url.trim_end_matches('/'),
        req.symbol,
        req.interval
    );
    match req.want {
        Want::Warm {
            candles,
            end_open_ms: Some(end),
        } => format!(
            "{base}&endTime={end}&limit={}",
            candles.clamp(1, klines::MAX_LIMIT)
        ),
        // One more than asked: the newest row is the open candle, left out.
        Want::Warm {
            candles,
            end_open_ms: None,
        } => format!("{base}&limit={}", (candles + 1).clamp(1, klines::MAX_LIMIT)),
        Want::Range {
            from_open_ms,
            to_open_ms: Some(to),
        } => format!(
            "{base}&startTime={from_open_ms}&endTime={}&limit={}",
            to - 1,
            klines::MAX_LIMIT
        ),
        Want::Range {
            from_open_ms,
            to_open_ms: None,
        } => format!(
            "{base}&startTime={from_open_ms}&limit={}",
            klines::MAX_LIMIT
        ),
        Want::Trades { .. } => base,
    }
}

/// What one GET came back with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// `X-MBX-USED-WEIGHT-1M` (capped at `u32::MAX`).
    pub used_weight_1m: Option<u32>,
    /// `Retry-After`, in seconds.
    pub retry_after_s: Option<u64>,
    /// The body of a 200, or why not; `None` when rate limited (the body is not read).
    pub body: Option<Result<String, RestError>>,
}

/// True for the answers that say "stay away" (429 rate limited, 418 banned).
pub(super) fn is_rate_limited(status: u16) -> bool {
    status == 429 || status == 418
}

/// A numeric header value (surrounding spaces allowed), saturating at `u64::MAX`: a
/// count or a wait too large to hold is the most there is, not nothing. Anything but
/// digits is ignored.
fn number(value: Option<&ureq::http::HeaderValue>) -> Option<u64> {
    let digits = value.and_then(|v| v.to_str().ok())?.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// The weight and Retry-After headers of an answer.
pub(super) fn rate_headers(headers: &ureq::http::HeaderMap) -> (Option<u32>, Option<u64>) {
    let used =
        number(headers.get("x-mbx-used-weight-1m")).map(|w| u32::try_from(w).unwrap_or(u32::MAX));
    (used, number(headers.get("retry-after")))
}

/// The body of an answer: the text of a 200; any other status is an error that quotes
/// the start of the body.
pub(super) fn body_of(url: &str, status: u16, body: String) -> Result<String, RestError> {
    if status != 200 {
        return Err(RestError::Status {
            url: url.to_owned(),
            status,
            body: body.chars().take(200).collect(),
        });
    }
    Ok(body)
}

/// The REST thread's HTTP client (and `alphapulse history`'s).
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new(agent: ureq::Agent) -> Client {
        Client { agent }
    }

    /// One GET; `Err` when no answer came (connection, TLS, timeout).
    pub fn get(&self, url: &str) -> Result<Answer, RestError> {
        let http = |source| RestError::Http {
            url: url.to_owned(),
            source,
        };
        let mut resp = self.agent.get(url).call().map_err(http)?;
        let (used_weight_1m, retry_after_s) = rate_headers(resp.headers());
        let status = resp.status().as_u16();
        let body = (!is_rate_limited(status)).then(|| {
            resp.body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .read_to_string()
                .map_err(http)
                .and_then(|body| body_of(url, status, body))
        });
        Ok(Answer {
            status,
            used_weight_1m,
            retry_after_s,
            body,
        })
    }
}

#[cfg(test)]
mod tests;
