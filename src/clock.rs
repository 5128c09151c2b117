//! Time sources. Every stage stamps events with [`mono_ns`], a monotonic clock shared
//! by all cores of the process (one origin, read with the vDSO: no syscall), so stage
//! latencies compare across cores. Exchange times are wall-clock; [`wall_us`] reads ours.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

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
