//! The REST scheduler: which request goes next, and when, for every REST user of the
//! process (warm start, gap backfill, catch-up after a reconnect or a restart).
//!
//! Pure: no clocks, no I/O. The caller passes wall time in milliseconds and reports
//! each answer; the scheduler keeps Binance's rules:
//! - request weight per calendar minute (`X-MBX-USED-WEIGHT-1M`, which counts every
//!   client behind the same IP) stays under this process's configured share of the
//!   6,000 limit;
//! - after a 429 or 418, nothing is sent until `Retry-After` has passed (a 418 is an IP
//!   ban: the same rule, usually a longer wait);
//! - urgent work (filling a gap that live data has already passed) goes before normal
//!   work (warm starts), and each queue is first in, first out;
//! - a job already queued is not queued twice.

use std::collections::VecDeque;

/// Binance's request weight limit per minute per IP (spot).
pub const EXCHANGE_WEIGHT_1M: u32 = 6000;
/// Retry-After assumed when a 429/418 answer carries none.
pub const DEFAULT_RETRY_AFTER_S: u64 = 60;
/// Longest wait obeyed from one answer (a day): guards against a corrupt header.
pub const MAX_RETRY_AFTER_S: u64 = 86_400;

/// How soon a job must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Candles the live stream has already passed: dashboards and the database are
    /// incomplete until they come.
    Urgent = 0,
    /// Warm starts and catch-up at startup.
    Normal = 1,
}

/// What the scheduler says to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<J> {
    /// Send this job's request now.
    Send(J),
    /// Work is queued, but nothing may be sent for this many milliseconds.
    Wait(u64),
    /// Nothing is queued.
    Idle,
}

/// Why the scheduler is waiting, for the status API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    None,
    /// The minute's weight share is used up.
    Budget,
    /// The exchange asked us to stay away (429/418).
    RetryAfter,
}

#[derive(Debug)]
pub struct Scheduler<J> {
    /// Weight this process may see used per minute (its share of the exchange limit).
    share_1m: u32,
    /// Weight of one request.
    weight: u32,
    /// The calendar minute `used` belongs to (ms / 60,000).
    minute: u64,
    /// Weight used in `minute`, as the exchange last reported it (or as we counted).
    used: u32,
    /// No request before this wall time (ms), after a 429/418.
    blocked_until_ms: u64,
    queues: [VecDeque<J>; 2],
}

impl<J: PartialEq + Clone> Scheduler<J> {
    /// A scheduler allowed `share` (0 < share <= 1) of the exchange's weight per minute,
    /// for requests of `weight` each.
    pub fn new(share: f64, weight: u32) -> Scheduler<J> {
        let share_1m = (f64::from(EXCHANGE_WEIGHT_1M) * share.clamp(0.0, 1.0)).floor() as u32;
        Scheduler {
            share_1m: share_1m.max(weight),
            weight,
            minute: 0,
            used: 0,
            blocked_until_ms: 0,
            queues: [VecDeque::new(), VecDeque::new()],
        }
    }

    pub fn share_1m(&self) -> u32 {
        self.share_1m
    }

    /// Queues a job unless the same job is already waiting; false when it was.
    pub fn push(&mut self, job: J, priority: Priority) -> bool {
        if self.queues.iter().any(|q| q.contains(&job)) {
            return false;
        }
        self.queues[priority as usize].push_back(job);
        true
    }

    /// Puts a job back at the front of its queue (its request was refused by a 429/418
    /// and must be sent again first).
    pub fn push_front(&mut self, job: J, priority: Priority) {
        self.queues[priority as usize].push_front(job);
    }

    /// Jobs waiting, per priority.
    pub fn queued(&self) -> [usize; 2] {
        [self.queues[0].len(), self.queues[1].len()]
    }

    /// Weight used in the current minute as far as we know.
    pub fn used(&self, now_ms: u64) -> u32 {
        if now_ms / 60_000 == self.minute {
            self.used
        } else {
            0
        }
    }

    /// Why nothing may be sent at `now_ms`, if so.
    pub fn hold(&self, now_ms: u64) -> Hold {
        if now_ms < self.blocked_until_ms {
            Hold::RetryAfter
        } else if self.used(now_ms) + self.weight > self.share_1m {
            Hold::Budget
        } else {
            Hold::None
        }
    }

    /// What to do at wall time `now_ms`. A `Send` takes the job off its queue and
    /// counts its weight at once (before the answer, so that a lost answer cannot let
    /// the budget be overrun).
    pub fn next(&mut self, now_ms: u64) -> Next<J> {
        if self.queues.iter().all(VecDeque::is_empty) {
            return Next::Idle;
        }
        match self.hold(now_ms) {
            Hold::RetryAfter => return Next::Wait(self.blocked_until_ms - now_ms),
            Hold::Budget => return Next::Wait(60_000 - now_ms % 60_000),
            Hold::None => {}
        }
        let job = match self.queues[0].pop_front() {
            Some(j) => j,
            None => match self.queues[1].pop_front() {
                Some(j) => j,
                None => return Next::Idle,
            },
        };
        let used = self.used(now_ms);
        self.minute = now_ms / 60_000;
        self.used = used + self.weight;
        Next::Send(job)
    }

    /// Reports an answer received at `now_ms`: its HTTP status, its
    /// `X-MBX-USED-WEIGHT-1M` and its `Retry-After` (seconds), as present.
    pub fn on_answer(
        &mut self,
        now_ms: u64,
        status: u16,
        used_weight_1m: Option<u32>,
        retry_after_s: Option<u64>,
    ) {
        if let Some(w) = used_weight_1m {
            // The exchange's count includes other clients of the same IP: trust it
            // when it is higher; when lower (a new minute began), it is the truth too.
            self.minute = now_ms / 60_000;
            self.used = w;
        }
        if status == 429 || status == 418 {
            let wait_s = retry_after_s
                .unwrap_or(DEFAULT_RETRY_AFTER_S)
                .min(MAX_RETRY_AFTER_S);
            self.blocked_until_ms = self.blocked_until_ms.max(now_ms + wait_s * 1000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_work_goes_first_and_duplicates_are_refused() {
        let mut s = Scheduler::new(0.5, 2);
        assert!(s.push("warm a", Priority::Normal));
        assert!(s.push("gap b", Priority::Urgent));
        assert!(!s.push("warm a", Priority::Normal));
        assert!(!s.push("warm a", Priority::Urgent));
        assert_eq!(s.next(0), Next::Send("gap b"));
        assert_eq!(s.next(0), Next::Send("warm a"));
        assert_eq!(s.next(0), Next::Idle);
    }

    #[test]
    fn the_share_of_the_minute_is_never_exceeded() {
        // 0.001 of 6000 = 6: three requests of weight 2 per minute.
        let mut s = Scheduler::new(0.001, 2);
        for i in 0..5 {
            s.push(i, Priority::Normal);
        }
        let t = 120_000 + 10;
        assert_eq!(s.next(t), Next::Send(0));
        assert_eq!(s.next(t), Next::Send(1));
        assert_eq!(s.next(t), Next::Send(2));
        assert_eq!(s.next(t), Next::Wait(60_000 - 10));
        assert_eq!(s.hold(t), Hold::Budget);
        assert_eq!(s.next(180_000), Next::Send(3));
    }

    #[test]
    fn the_exchange_count_overrides_ours() {
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        s.push(2, Priority::Normal);
        assert_eq!(s.next(1000), Next::Send(1));
        // Another client behind the same IP used most of the minute.
        s.on_answer(1001, 200, Some(2999), None);
        assert_eq!(s.next(1002), Next::Wait(58_998));
        assert_eq!(s.next(60_000), Next::Send(2));
    }

    #[test]
    fn retry_after_is_obeyed_for_every_job() {
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        assert_eq!(s.next(0), Next::Send(1));
        s.on_answer(5, 429, Some(10), Some(7));
        s.push_front(1, Priority::Normal);
        s.push(9, Priority::Urgent);
        assert_eq!(s.hold(6), Hold::RetryAfter);
        assert_eq!(s.next(6), Next::Wait(6_999));
        assert_eq!(s.next(7_005), Next::Send(9));
        // A 418 without Retry-After waits the default.
        s.on_answer(7_010, 418, None, None);
        assert_eq!(s.next(7_011), Next::Wait(DEFAULT_RETRY_AFTER_S * 1000 - 1));
    }
}
