//! Access checks and limits of the dashboard: the token, WebSocket origins, the
//! non-loopback rule, the inbound rate limit.
//!
//! Pure: decisions on values, no sockets or clocks (times are passed in), so each rule
//! is tested directly. The listener ([`super::serve`]) applies them.

use std::time::Instant;

use crate::config::Config;

/// Why the dashboard must not start as configured.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    #[error(
        "DASHBOARD_ADDR={addr} is reachable from other machines but DASHBOARD_TOKEN is not set: \
         set DASHBOARD_TOKEN, bind 127.0.0.1, or set DASHBOARD_ALLOW_PUBLIC=true \
         (dashboard.allow_public_without_token) if a proxy in front authenticates"
    )]
    PublicWithoutToken { addr: std::net::SocketAddr },
}

/// A non-loopback dashboard without a token would serve the API to anyone who can
/// reach the port: refused unless explicitly allowed.
pub fn check_exposure(config: &Config) -> Result<(), ExposureError> {
    let addr = config.dashboard_addr;
    if !addr.ip().is_loopback()
        && config.dashboard_token.is_none()
        && !config.dashboard.allow_public_without_token
    {
        return Err(ExposureError::PublicWithoutToken { addr });
    }
    Ok(())
}

/// Compares in time that depends only on the lengths, so the response time does not
/// tell an attacker how many leading bytes of a guess were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Does the request carry the token (bearer header or `token` query parameter)?
pub fn token_ok(
    expected: Option<&str>,
    bearer: Option<&str>,
    query_token: Option<&str>,
    session: Option<&str>,
) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    // Every candidate is compared, always, so timing does not reveal which was used.
    let header = bearer.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
    let query = query_token.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
    let cookie =
        session.is_some_and(|s| constant_time_eq(s.as_bytes(), session_value(expected).as_bytes()));
    header | query | cookie
}

/// The session cookie's value for `token`: an HMAC-SHA256 of a fixed label under the
/// token, in hex. It opens what the token opens, but a copied cookie does not reveal
/// the token (which may be used elsewhere, e.g. by scripts and Prometheus).
pub fn session_value(token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, b"alphapulse dashboard session v1");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// May a WebSocket be opened from `origin`? Non-browser clients send none; a browser
/// sends the page's origin, which must be the dashboard itself (`Host`) or one of the
/// allowed origins.
pub fn origin_ok(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    match (origin.split_once("://"), host) {
        (Some((scheme, rest)), Some(host)) => {
            matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
                && rest.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// May a request naming `host` be answered? With a token, always (a page cannot
/// know it). Without one, only when `Host` is an IP address, `localhost` (or a name
/// under it), one of `allowed_hosts` or the host of an allowed origin: a DNS-rebinding
/// page reaches a loopback dashboard under its own name, which is none of these. A
/// request without `Host` (HTTP/1.0 tools; browsers always send one) is answered.
pub fn host_ok(
    host: Option<&str>,
    token: bool,
    allowed_hosts: &[String],
    allowed_origins: &[String],
) -> bool {
    if token {
        return true;
    }
    let Some(host) = host else {
        return true;
    };
    let host = host.trim();
    if host.starts_with('[') {
        // An IPv6 literal, with or without a port.
        return host
            .split_once(']')
            .is_some_and(|(ip, _)| ip[1..].parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
        || allowed_origins.iter().any(|origin| {
            let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
            let origin_host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            origin_host.eq_ignore_ascii_case(name)
        })
}

/// A token bucket: `rate` per second, bursts up to `burst`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate_per_s: u32, now: Instant) -> RateLimit {
        // A page opening subscribes to several topics at once: allow a burst of twice
        // the steady rate.
        let burst = f64::from(rate_per_s.max(1)) * 2.0;
        RateLimit {
            rate_per_s: f64::from(rate_per_s.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; false when the client is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let t = Some("0123456789abcdef");
        assert!(token_ok(None, None, None, None));
        assert!(!token_ok(t, None, None, None));
        assert!(token_ok(t, Some("0123456789abcdef"), None, None));
        assert!(token_ok(t, None, Some("0123456789abcdef"), None));
        assert!(!token_ok(t, Some("0123456789abcdeF"), Some("x"), None));
        // The session cookie stands for the token, and is not the token itself.
        let session = session_value("0123456789abcdef");
        assert_eq!(session.len(), 64);
        assert!(token_ok(t, None, None, Some(&session)));
        assert!(!token_ok(t, None, None, Some("0123456789abcdef")));
        assert!(!token_ok(
            t,
            None,
            None,
            Some(&session_value("another-token-0000"))
        ));
    }

    #[test]
    fn hosts_without_a_token() {
        let none: &[String] = &[];
        let ok = |host: Option<&str>| host_ok(host, false, none, none);
        for good in [
            None,
            Some("127.0.0.1:8000"),
            Some("10.1.2.3"),
            Some("[::1]:8000"),
            Some("[fe80::1]"),
            Some("localhost:8000"),
            Some("LOCALHOST"),
            Some("localhost.:8000"),
            Some("dash.localhost:8000"),
        ] {
            assert!(ok(good), "{good:?}");
        }
        for bad in [
            Some("attacker.example:8000"),
            Some("attacker.example"),
            Some("127.0.0.1.attacker.example"),
            Some("localhost.attacker.example"),
            Some(""),
            Some(":8000"),
            Some("[::1"),
            Some("[nothost]:80"),
            Some("localhost:80x"),
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        let hosts = vec!["engine".to_owned()];
        let origins = vec!["https://dash.example.com:8443".to_owned()];
        assert!(host_ok(Some("engine:8000"), false, &hosts, none));
        assert!(host_ok(Some("ENGINE"), false, &hosts, none));
        assert!(host_ok(
            Some("dash.example.com:8000"),
            false,
            none,
            &origins
        ));
        assert!(!host_ok(Some("other.example.com"), false, &hosts, &origins));
        // With a token every Host is answered: the token is what protects.
        assert!(host_ok(Some("attacker.example"), true, none, none));
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://dash.example.com".to_string()];
        assert!(origin_ok(None, Some("h:1"), &allowed));
        assert!(origin_ok(
            Some("http://127.0.0.1:8000"),
            Some("127.0.0.1:8000"),
            &[]
        ));
        assert!(origin_ok(
            Some("https://dash.example.com"),
            Some("x"),
            &allowed
        ));
        assert!(!origin_ok(
            Some("https://evil.example"),
            Some("127.0.0.1:8000"),
            &allowed
        ));
        assert!(!origin_ok(Some("null"), Some("127.0.0.1:8000"), &allowed));
    }

    #[test]
    fn public_binding_needs_a_token_or_an_explicit_allowance() {
        let mut c = Config::default();
        assert!(check_exposure(&c).is_ok());
        c.dashboard_addr = "0.0.0.0:8000".parse().unwrap();
        let e = check_exposure(&c).unwrap_err().to_string();
        assert!(e.contains("DASHBOARD_TOKEN"), "{e}");
        c.dashboard.allow_public_without_token = true;
        assert!(check_exposure(&c).is_ok());
        c.dashboard.allow_public_without_token = false;
        c.dashboard_token = Some("0123456789abcdef".into());
        assert!(check_exposure(&c).is_ok());
    }

    #[test]
    fn rate_limit_allows_bursts_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(5, t0);
        assert_eq!((0..20).filter(|_| r.allow(t0)).count(), 10);
        assert!(!r.allow(t0));
        assert!(r.allow(t0 + Duration::from_millis(200)));
        assert!(!r.allow(t0 + Duration::from_millis(200)));
    }
}
