//! Fault injection: periodic drops of every connection, periodic stalls of all output,
//! a seeded fraction of malformed data frames, and streams whose SUBSCRIBE is refused
//! (for a while) or acknowledged and then never served.
//!
//! Runs on: the simulator core (pure: times are passed in as the wall-clock time since
//! the simulator started). In: the fault settings. Out: decisions ("drop now", "stalled",
//! "this frame is malformed") and the damaged frame bytes.

use std::time::Duration;

use super::market::mix64;

/// Fault settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Close every WebSocket connection abruptly (no close frame) this often.
    pub drop_every: Option<Duration>,
    /// Stop all output (data and pings) this often …
    pub stall_every: Option<Duration>,
    /// … for this long.
    pub stall_for: Duration,
    /// Fraction of data frames sent damaged, in [0, 1].
    pub malformed_rate: f64,
    pub seed: u64,
    /// A SUBSCRIBE naming any of these streams is refused as a whole, as Binance refuses
    /// a request with an invalid stream name (none of its streams are subscribed) …
    pub reject_streams: Vec<String>,
    /// … until this long after the simulator started (`None`: always).
    pub reject_for: Option<Duration>,
    /// These streams are acknowledged and then never sent, as Binance does with a
    /// well-formed stream of a symbol it does not list.
    pub silent_streams: Vec<String>,
}

impl FaultPlan {
    /// Whether a SUBSCRIBE of `streams` at `elapsed` is refused.
    pub fn refuses(&self, streams: &[String], elapsed: Duration) -> bool {
        self.reject_for.is_none_or(|d| elapsed < d)
            && streams.iter().any(|s| {
                self.reject_streams
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(s))
            })
    }

    /// Whether `stream` is acknowledged but never served.
    pub fn silent(&self, stream: &str) -> bool {
        self.silent_streams
            .iter()
            .any(|s| s.eq_ignore_ascii_case(stream))
    }

    /// How many drops are due by `elapsed` (drops happen at every multiple of the period).
    pub fn drops_due(&self, elapsed: Duration) -> u64 {
        match self.drop_every {
            Some(every) if !every.is_zero() => (elapsed.as_nanos() / every.as_nanos()) as u64,
            _ => 0,
        }
    }

    /// Whether output is stalled at `elapsed`: stalls run from each multiple of the
    /// period (from the first one on) for `stall_for`.
    pub fn stalled(&self, elapsed: Duration) -> bool {
        match self.stall_every {
            Some(every) if !every.is_zero() && !self.stall_for.is_zero() => {
                let cycles = elapsed.as_nanos() / every.as_nanos();
                let into = elapsed.as_nanos() % every.as_nanos();
                cycles >= 1 && into < self.stall_for.as_nanos()
            }
            _ => false,
        }
    }

    /// Whether data frame number `frame` of connection number `connection` is damaged;
    /// a pure function of the seed and the two counters.
    pub fn malformed(&self, connection: u64, frame: u64) -> Option<Damage> {
        if self.malformed_rate <= 0.0 {
            return None;
        }
        let h = mix64(self.seed ^ mix64(connection.wrapping_add(0x5151)) ^ mix64(frame));
        let threshold = (self.malformed_rate.min(1.0) * u64::MAX as f64) as u64;
        if h > threshold && self.malformed_rate < 1.0 {
            return None;
        }
        Some(match mix64(h) % 3 {
            0 => Damage::Truncate,
            1 => Damage::DropLastByte,
            _ => Damage::Garbage,
        })
    }
}

/// How a frame is damaged; every variant stays valid UTF-8 (the WebSocket text frame
/// itself is fine, only its JSON is broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Cut in half.
    Truncate,
    /// The final `}` is missing.
    DropLastByte,
    /// A stray `]` after the opening brace.
    Garbage,
}

impl Damage {
    /// Appends the damaged form of `payload` to `out`.
    pub fn apply(self, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Damage::Truncate => out.extend_from_slice(&payload[..payload.len() / 2]),
            Damage::DropLastByte => {
                out.extend_from_slice(&payload[..payload.len().saturating_sub(1)])
            }
            Damage::Garbage => {
                let split = payload.len().min(1);
                out.extend_from_slice(&payload[..split]);
                out.push(b']');
                out.extend_from_slice(&payload[split..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan {
            drop_every: Some(Duration::from_secs(2)),
            stall_every: Some(Duration::from_secs(10)),
            stall_for: Duration::from_secs(3),
            malformed_rate: 0.1,
            seed: 9,
            reject_streams: vec!["btcusdt@kline_3m".into()],
            reject_for: Some(Duration::from_secs(5)),
            silent_streams: vec!["ethusdt@kline_1m".into()],
        }
    }

    #[test]
    fn refused_and_silent_streams() {
        let p = plan();
        let req = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let s = Duration::from_secs;
        assert!(p.refuses(&req(&["btcusdt@kline_1m", "BTCUSDT@kline_3m"]), s(4)));
        assert!(!p.refuses(&req(&["btcusdt@kline_1m", "ethusdt@kline_3m"]), s(4)));
        assert!(
            !p.refuses(&req(&["btcusdt@kline_3m"]), s(5)),
            "accepted from then on"
        );
        let always = FaultPlan {
            reject_for: None,
            ..plan()
        };
        assert!(always.refuses(&req(&["btcusdt@kline_3m"]), s(1_000_000)));
        assert!(p.silent("ethusdt@kline_1m"));
        assert!(!p.silent("ethusdt@kline_3m"));
    }

    #[test]
    fn schedules() {
        let p = plan();
        assert_eq!(p.drops_due(Duration::from_millis(1_999)), 0);
        assert_eq!(p.drops_due(Duration::from_millis(4_100)), 2);
        assert!(!p.stalled(Duration::from_secs(2)));
        assert!(p.stalled(Duration::from_millis(10_500)));
        assert!(!p.stalled(Duration::from_millis(13_500)));
    }

    #[test]
    fn malformed_frames_follow_the_rate_and_the_seed() {
        let p = plan();
        let hits = (0..100_000)
            .filter(|&f| p.malformed(3, f).is_some())
            .count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        let again = (0..100_000)
            .filter(|&f| p.malformed(3, f).is_some())
            .count();
        assert_eq!(hits, again);
        let payload = br#"{"a":1}"#;
        for damage in [Damage::Truncate, Damage::DropLastByte, Damage::Garbage] {
            let mut out = Vec::new();
            damage.apply(payload, &mut out);
            assert!(
                serde_json::from_slice::<serde_json::Value>(&out).is_err(),
                "{damage:?}"
            );
        }
        let all = FaultPlan {
            malformed_rate: 1.0,
            ..plan()
        };
        assert!((0..1000).all(|f| all.malformed(1, f).is_some()));
    }
}
