//! The simulated clock: simulated time runs `speed` times the wall clock from an anchor.
//!
//! Runs on: any thread (plain `Copy` data over `Instant`). In: a wall-clock instant. Out:
//! simulated epoch nanoseconds, and back. At speed 1 with the default start time the
//! anchor is the wall-clock instant of the start time itself, so simulated time equals
//! real epoch time and latency measured from event times `E` is real latency.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    anchor: Instant,
    start_ns: i64,
    speed: f64,
}

/// Wall-clock epoch milliseconds (REST rate-limit windows use real minutes).
pub use crate::clock::wall_ms as wall_epoch_ms;
use crate::clock::wall_ns as wall_epoch_ns;

impl SimClock {
    /// `start_ms`: the simulated time at the anchor. Without an explicit start time the
    /// simulator starts at "now truncated to the second" and, at speed 1, anchors at
    /// that real instant, so the clock tracks real time exactly.
    pub fn new(start_ms: Option<i64>, speed: f64) -> SimClock {
        let now = Instant::now();
        let now_ns = wall_epoch_ns();
        let now_ms = now_ns.div_euclid(1_000_000);
        match start_ms {
            Some(start) => SimClock {
                anchor: now,
                start_ns: start.saturating_mul(1_000_000),
                speed,
            },
            None => {
                let start = now_ms - now_ms.rem_euclid(1_000);
                // At speed 1 simulated time is wall time, to the nanosecond: event times
                // are the intended send times the latency harness measures from, so the
                // anchor must not lose the sub-millisecond part of "now".
                let anchor = if speed == 1.0 {
                    now.checked_sub(Duration::from_nanos(
                        (now_ns - start.saturating_mul(1_000_000)).max(0) as u64,
                    ))
                    .unwrap_or(now)
                } else {
                    now
                };
                SimClock {
                    anchor,
                    start_ns: start.saturating_mul(1_000_000),
                    speed,
                }
            }
        }
    }

    /// How many times as fast as the wall clock simulated time runs.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Simulated epoch nanoseconds at the simulator's start.
    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    pub fn sim_at(&self, wall: Instant) -> i64 {
        let elapsed = wall.saturating_duration_since(self.anchor).as_nanos();
        let scaled = if self.speed == 1.0 {
            elapsed as i64
        } else {
            (elapsed as f64 * self.speed) as i64
        };
        self.start_ns.saturating_add(scaled)
    }

    pub fn sim_now_ns(&self) -> i64 {
        self.sim_at(Instant::now())
    }

    pub fn sim_now_ms(&self) -> i64 {
        self.sim_now_ns().div_euclid(1_000_000)
    }

    /// The wall-clock instant at which simulated time reaches `sim_ns`.
    pub fn wall_at(&self, sim_ns: i64) -> Instant {
        let ahead = sim_ns.saturating_sub(self.start_ns).max(0) as f64 / self.speed;
        self.anchor + Duration::from_nanos(ahead.min(u64::MAX as f64 / 2.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_start_tracks_real_time_at_speed_one() {
        let clock = SimClock::new(None, 1.0);
        let real = wall_epoch_ms();
        assert_eq!(clock.start_ns() % 1_000_000_000, 0);
        assert!((clock.sim_now_ms() - real).abs() < 50);
        // To well under a millisecond: the latency harness measures from these times.
        let closest_ns = (0..50)
            .map(|_| (clock.sim_now_ns() - wall_epoch_ns()).abs())
            .min()
            .unwrap();
        assert!(
            closest_ns < 200_000,
            "simulated time is {closest_ns} ns off"
        );
    }

    #[test]
    fn speed_scales_time_both_ways() {
        let clock = SimClock::new(Some(1_000), 60.0);
        let t = clock.wall_at(1_000_000_000 + 60_000_000_000);
        assert!(t.duration_since(clock.anchor) == Duration::from_secs(1));
        assert_eq!(clock.sim_at(t), 61_000_000_000);
    }
}
