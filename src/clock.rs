//! Time sources. Every stage stamps events with [`mono_ns`], a monotonic clock shared
//! by all cores of the process (one origin, read with the vDSO: no syscall), so stage
//! latencies compare across cores. Exchange times are wall-clock; [`wall_us`] reads ours,
//! and [`ClockBound`] says how far the exchange's may be from it (pure: both clocks'
//! readings are passed in).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// 2200-01-01T00:00:00Z in epoch ms: the latest time the tools accept or mean by "no
/// end" (simulated nanoseconds up to it stay inside `i64`).
pub const YEAR_2200_MS: i64 = 7_258_118_400_000;

/// Nanoseconds since the first call in this process (monotonic).
pub fn mono_ns() -> u64 {
    let origin = ORIGIN.get_or_init(Instant::now);
    origin.elapsed().as_nanos() as u64
}

/// Wall-clock nanoseconds since the Unix epoch (0 for a clock set before it). The one
/// reader of the wall clock: every other wall time derives from it.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Wall-clock microseconds since the Unix epoch.
pub fn wall_us() -> i64 {
    wall_ns() / 1_000
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    wall_us() / 1000
}

/// How far the exchange's clock may be from ours before its times are not believed.
///
/// A time far from our clock poisons state: a close in 2100 makes every later update of
/// its series stale, one in 1970 asks the backfill for millions of candles. So event
/// times (and the REST klines' open times) are checked against our wall clock: they
/// may differ from it by `max_skew_ms`, plus, for an exchange whose clock runs `speed`
/// times as fast as ours (an accelerated simulator), `(speed - 1)` times the time
/// since `since_mono_ns`. Pure: the caller passes both clocks' readings in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockBound {
    /// Largest distance (ms) between an exchange time and our wall clock; 0 checks
    /// nothing (replays of old captures).
    pub max_skew_ms: u64,
    /// How many times as fast as ours the exchange's clock may run; 1 for Binance.
    pub speed: f64,
    /// Monotonic time ([`mono_ns`]) from which a faster clock's lead grows: the start.
    pub since_mono_ns: u64,
}

/// Which side of our clock a rejected time was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skew {
    Future = 0,
    Past = 1,
}

impl Skew {
    /// Every reason, in the order of [`Skew::as_str`] labels (counter arrays use it).
    pub const ALL: [Skew; 2] = [Skew::Future, Skew::Past];

    pub fn as_str(self) -> &'static str {
        match self {
            Skew::Future => "future",
            Skew::Past => "past",
        }
    }
}

impl ClockBound {
    /// No check at all.
    pub const OFF: ClockBound = ClockBound {
        max_skew_ms: 0,
        speed: 1.0,
        since_mono_ns: 0,
    };

    /// The times (ms) an exchange time may lie in when our wall clock reads
    /// `now_wall_ms` at monotonic `now_mono_ns`: `[low, high]`, or `None` when the
    /// check is off.
    pub fn window_ms(&self, now_wall_ms: i64, now_mono_ns: u64) -> Option<(i64, i64)> {
        if self.max_skew_ms == 0 {
            return None;
        }
        let elapsed_ms = now_mono_ns.saturating_sub(self.since_mono_ns) as f64 / 1e6;
        // Saturating float-to-int casts: a huge speed cannot overflow the sum.
        let lead_ms = (elapsed_ms * (self.speed - 1.0).max(0.0)) as i64;
        let allowance = i64::try_from(self.max_skew_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(lead_ms);
        Some((
            now_wall_ms.saturating_sub(allowance),
            now_wall_ms.saturating_add(allowance),
        ))
    }

    /// Whether the exchange time `t_ms` is believable at (`now_wall_ms`, `now_mono_ns`).
    pub fn check(&self, t_ms: i64, now_wall_ms: i64, now_mono_ns: u64) -> Result<(), Skew> {
        match self.window_ms(now_wall_ms, now_mono_ns) {
            Some((low, _)) if t_ms < low => Err(Skew::Past),
            Some((_, high)) if t_ms > high => Err(Skew::Future),
            _ => Ok(()),
        }
    }
}

/// Longest duration a command-line setting takes (about 31 years): deadlines computed
/// from it stay far inside what `Instant` can represent.
pub const MAX_SETTING_SECONDS: f64 = 1e9;

/// A duration setting in seconds (fractions allowed), at most [`MAX_SETTING_SECONDS`];
/// zero only when `zero_ok`.
pub fn parse_seconds(text: &str, zero_ok: bool) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(v) if (v > 0.0 || (zero_ok && v == 0.0)) && v <= MAX_SETTING_SECONDS => {
            std::time::Duration::try_from_secs_f64(v).map_err(|e| e.to_string())
        }
        _ if zero_ok => Err("expected seconds, from 0 to 1000000000".into()),
        _ => Err("expected seconds, more than 0 and at most 1000000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_764_900_000_000;

    fn bound(max_skew_ms: u64, speed: f64) -> ClockBound {
        ClockBound {
            max_skew_ms,
            speed,
            since_mono_ns: 5_000_000_000,
        }
    }

    #[test]
    fn times_beyond_the_skew_are_refused_on_either_side() {
        let b = bound(60_000, 1.0);
        let mono = 9_000_000_000;
        assert_eq!(b.check(NOW_MS, NOW_MS, mono), Ok(()));
        assert_eq!(b.check(NOW_MS + 60_000, NOW_MS, mono), Ok(()));
        assert_eq!(b.check(NOW_MS - 60_000, NOW_MS, mono), Ok(()));
        assert_eq!(b.check(NOW_MS + 60_001, NOW_MS, mono), Err(Skew::Future));
        assert_eq!(b.check(NOW_MS - 60_001, NOW_MS, mono), Err(Skew::Past));
        // 2100 and 1970.
        assert_eq!(b.check(4_102_444_800_000, NOW_MS, mono), Err(Skew::Future));
        assert_eq!(b.check(0, NOW_MS, mono), Err(Skew::Past));
        assert_eq!(b.check(i64::MIN, NOW_MS, mono), Err(Skew::Past));
        assert_eq!(b.check(i64::MAX, NOW_MS, mono), Err(Skew::Future));
    }

    #[test]
    fn a_faster_exchange_may_lead_by_what_its_speed_adds() {
        // Speed 60, 10 s after the start: 590 s of lead on top of the skew.
        let b = bound(1_000, 60.0);
        let mono = b.since_mono_ns + 10_000_000_000;
        assert_eq!(b.check(NOW_MS + 591_000, NOW_MS, mono), Ok(()));
        assert_eq!(b.check(NOW_MS + 591_001, NOW_MS, mono), Err(Skew::Future));
        // At the start only the skew is allowed.
        let start = b.since_mono_ns;
        assert_eq!(b.check(NOW_MS + 1_001, NOW_MS, start), Err(Skew::Future));
        // A monotonic reading before the start counts as the start.
        assert_eq!(b.check(NOW_MS + 1_001, NOW_MS, 0), Err(Skew::Future));
        // A slower speed never narrows the skew.
        let slow = bound(1_000, 0.5);
        assert_eq!(slow.check(NOW_MS - 1_000, NOW_MS, mono), Ok(()));
        // Absurd speeds saturate rather than overflow.
        let wild = bound(1_000, f64::MAX);
        assert_eq!(wild.check(i64::MAX, NOW_MS, mono), Ok(()));
    }

    #[test]
    fn zero_skew_checks_nothing() {
        assert_eq!(ClockBound::OFF.window_ms(NOW_MS, 0), None);
        assert_eq!(ClockBound::OFF.check(0, NOW_MS, 0), Ok(()));
        assert_eq!(ClockBound::OFF.check(i64::MAX, NOW_MS, 0), Ok(()));
    }
}
