//! How a sink thread waits when its rings are empty: spin briefly, then yield, then
//! sleep in growing steps up to a bound.
//!
//! A sink that always sleeps adds its sleep to every record's ring hop; one that always
//! spins burns a core that, on small hosts, the shards need. Spinning for a short while
//! after the last record keeps the hop to microseconds during bursts (records come in
//! bursts: a socket read carries many), and the growing sleep makes an idle sink free.

use std::time::{Duration, Instant};

/// Spin this long after the last record before yielding the core.
pub const SPIN_FOR: Duration = Duration::from_micros(50);
/// Then yield (let another thread on the core run) this long before sleeping.
pub const YIELD_FOR: Duration = Duration::from_micros(500);
/// The first sleep, doubled each idle round up to [`MAX_SLEEP`].
const MIN_SLEEP: Duration = Duration::from_micros(20);
/// The longest sleep: bounds the ring hop of the first record after a quiet spell.
pub const MAX_SLEEP: Duration = Duration::from_micros(500);

/// The waiting state of one sink loop.
pub struct Idle {
    last_work: Instant,
    sleep: Duration,
}

impl Default for Idle {
    fn default() -> Self {
        Idle::new()
    }
}

impl Idle {
    pub fn new() -> Idle {
        Idle {
            last_work: Instant::now(),
            sleep: MIN_SLEEP,
        }
    }

    /// The loop found work: the next wait starts by spinning again.
    pub fn worked(&mut self) {
        self.last_work = Instant::now();
        self.sleep = MIN_SLEEP;
    }

    /// The loop found nothing: wait a little, longer the longer it has been idle.
    pub fn wait(&mut self) {
        let idle = self.last_work.elapsed();
        if idle < SPIN_FOR {
            std::hint::spin_loop();
        } else if idle < SPIN_FOR + YIELD_FOR {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(MAX_SLEEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_loop_backs_off_to_the_bound_and_work_resets_it() {
        let mut idle = Idle::new();
        let t = Instant::now();
        let mut rounds = 0;
        while t.elapsed() < Duration::from_millis(20) && rounds < 1_000_000 {
            idle.wait();
            rounds += 1;
        }
        assert_eq!(idle.sleep, MAX_SLEEP);
        idle.worked();
        assert_eq!(idle.sleep, MIN_SLEEP);
    }
}
