//! Reconnect pacing: capped, jittered exponential backoff, and Binance's limit on
//! connection attempts per IP.
//!
//! Pure: the caller passes the time and a random source, so every rule is tested
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Capped exponential backoff with "equal jitter": each delay is uniformly drawn from
/// `[d/2, d]` where `d = min(max, initial · 2^attempt)`. Half the delay is guaranteed,
/// so a crowd of clients spreads out without any of them hammering the server.
///
/// The attempt counter resets only after a connection has stayed up for `stable`,
/// so a server that accepts and immediately drops us still sees growing delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    stable: Duration,
    attempt: u32,
}

/// Exponent cap: 2^16 times the initial delay is far beyond any sane maximum.
const MAX_EXPONENT: u32 = 16;

impl Backoff {
    pub fn new(initial: Duration, max: Duration, stable: Duration) -> Backoff {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            stable,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self.attempt.min(MAX_EXPONENT);
        let ceiling = self.initial.saturating_mul(1u32 << exp).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        // NaN survives `clamp` and would make `mul_f64` panic: treat it as no jitter.
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        half + half.mul_f64(unit)
    }

    /// Reports that the connection that was established at `connected_at` ended at
    /// `now`; resets the exponent only if it had been stable long enough.
    pub fn connection_ended(&mut self, connected_at: Instant, now: Instant) {
        if now.saturating_duration_since(connected_at) >= self.stable {
            self.attempt = 0;
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Binance allows 300 connection attempts per 5 minutes per IP. This sliding window
/// keeps one process under a configured share of that.
#[derive(Debug)]
pub struct AttemptLimiter {
    window: Duration,
    limit: usize,
    attempts: VecDeque<Instant>,
}

/// Binance's window for counting connection attempts.
pub const BINANCE_ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// Our default share of Binance's 300 attempts per window, leaving room for restarts
/// and other tools on the same IP.
pub const DEFAULT_ATTEMPT_LIMIT: usize = 200;

impl AttemptLimiter {
    pub fn new(window: Duration, limit: usize) -> AttemptLimiter {
        AttemptLimiter {
            window,
            limit: limit.max(1),
            attempts: VecDeque::with_capacity(limit.max(1)),
        }
    }

    /// How long to wait before another attempt is allowed (zero: allowed now).
    pub fn delay(&mut self, now: Instant) -> Duration {
        while let Some(&t) = self.attempts.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.attempts.pop_front();
            } else {
                break;
            }
        }
        if self.attempts.len() < self.limit {
            return Duration::ZERO;
        }
        match self.attempts.front() {
            Some(&oldest) => self.window - now.saturating_duration_since(oldest),
            None => Duration::ZERO,
        }
    }

    pub fn record(&mut self, now: Instant) {
        if self.attempts.len() >= self.limit {
            self.attempts.pop_front();
        }
        self.attempts.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut b = Backoff::new(ms(250), ms(30_000), Duration::from_secs(60));
        let expected_ceilings = [250u64, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
        for ceiling in expected_ceilings {
            let lo = b.clone().next_delay(0.0);
            let hi = b.clone().next_delay(0.999_999);
            assert_eq!(lo, ms(ceiling / 2));
            assert!(
                hi <= ms(ceiling) && hi > ms(ceiling) - ms(1),
                "{hi:?} vs {ceiling}"
            );
            b.next_delay(0.5);
        }
        // Far past the exponent cap it stays at the maximum, no overflow.
        for _ in 0..100 {
            assert!(b.next_delay(1.0) <= ms(30_000));
        }
    }

    #[test]
    fn resets_only_after_a_stable_connection() {
        let t0 = Instant::now();
        let mut b = Backoff::new(ms(100), ms(10_000), Duration::from_secs(60));
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        b.connection_ended(t0, t0 + Duration::from_secs(59));
        assert_eq!(
            b.attempts(),
            5,
            "a short-lived connection keeps the backoff"
        );
        b.connection_ended(t0, t0 + Duration::from_secs(60));
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(0.0), ms(50));
    }

    #[test]
    fn attempt_limiter_holds_the_window() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(Duration::from_secs(300), 3);
        for i in 0..3 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(l.delay(now), Duration::ZERO);
            l.record(now);
        }
        assert_eq!(
            l.delay(t0 + Duration::from_secs(10)),
            Duration::from_secs(290)
        );
        assert_eq!(l.delay(t0 + Duration::from_secs(300)), Duration::ZERO);
    }
}
