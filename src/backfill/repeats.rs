//! One log line per cause, with a count: the REST thread's failures collapsed.
//!
//! Offline or against an exchange that refuses it, every series' request fails the same
//! way in every retry round: one line per (symbol, timeframe) per round buries the log.
//! [`Repeats`] lets the first failure of a cause through, counts the rest for a window,
//! and says at the window's end how many more there were. Pure: time is passed in.

use std::time::{Duration, Instant};

/// How long the same cause is counted, not logged, after it was logged.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Causes remembered at once; a new cause beyond them is logged, not counted (a bound
/// that errors with changing text cannot grow past).
pub const MAX_CAUSES: usize = 64;

/// The causes seen recently: when each was last logged and what was held back since.
#[derive(Debug, Default)]
pub struct Repeats {
    causes: Vec<Cause>,
}

#[derive(Debug)]
struct Cause {
    text: String,
    logged_at: Instant,
    held_back: u64,
}

impl Repeats {
    /// A failure of `cause` at `now`: true when it should be logged (the cause's first,
    /// or its first after a window), false when it is counted instead.
    pub fn note(&mut self, cause: &str, now: Instant) -> bool {
        let full = self.causes.len() >= MAX_CAUSES;
        match self.causes.iter_mut().find(|c| c.text == cause) {
            Some(c) if now.saturating_duration_since(c.logged_at) < WINDOW => {
                c.held_back += 1;
                false
            }
            Some(c) => {
                c.logged_at = now;
                true
            }
            None if full => true,
            None => {
                self.causes.push(Cause {
                    text: cause.to_owned(),
                    logged_at: now,
                    held_back: 0,
                });
                true
            }
        }
    }

    /// The causes whose window ended by `now` with failures held back: each once, as
    /// (cause, how many). Causes quiet for a whole window are forgotten.
    pub fn ended(&mut self, now: Instant) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.causes.retain_mut(|c| {
            if now.saturating_duration_since(c.logged_at) < WINDOW {
                return true;
            }
            if c.held_back > 0 {
                out.push((c.text.clone(), std::mem::take(&mut c.held_back)));
                // The next failure of this cause starts a new window, logged.
                c.logged_at = now - WINDOW;
                return true;
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_cause_is_logged_the_rest_counted_then_reported_once() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        assert!(r.note("refused", t0));
        for i in 1..12 {
            assert!(!r.note("refused", t0 + Duration::from_millis(i)));
        }
        assert!(r.note("HTTP 500", t0), "another cause has its own line");
        assert!(
            r.ended(t0 + WINDOW / 2).is_empty(),
            "the window is still open"
        );
        let ended = r.ended(t0 + WINDOW);
        assert_eq!(ended, vec![("refused".to_owned(), 11)]);
        assert!(r.ended(t0 + WINDOW * 2).is_empty(), "reported once");
        // Once reported, the cause's next failure is logged again.
        assert!(r.note("refused", t0 + WINDOW * 2));
        // A cause quiet for a whole window is forgotten.
        assert!(r.ended(t0 + WINDOW * 4).is_empty());
        assert!(r.causes.is_empty());
    }

    #[test]
    fn causes_beyond_the_bound_are_logged_not_remembered() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        for n in 0..MAX_CAUSES + 10 {
            assert!(
                r.note(&format!("cause {n}"), t0),
                "every new cause is logged"
            );
        }
        assert_eq!(r.causes.len(), MAX_CAUSES);
        assert!(
            r.note(&format!("cause {}", MAX_CAUSES + 1), t0),
            "not counted: logged"
        );
    }
}
