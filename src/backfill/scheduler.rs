//! The REST scheduler: which request goes next, and when, for every REST user of the
//! process (warm start, gap backfill, catch-up after a reconnect or a restart).
//!
//! Pure: no clocks, no I/O. The caller passes two times in milliseconds, the wall
//! clock's and a monotonic one, and reports each answer; the scheduler keeps Binance's
//! rules:
//! - request weight per calendar minute (`X-MBX-USED-WEIGHT-1M`, which counts every
//!   client behind the same IP) stays under this process's configured share of the
//!   6,000 limit; the minutes are the wall clock's, as the exchange's are;
//! - after a 429 or 418, nothing is sent until `Retry-After` has passed (a 418 is an IP
//!   ban: the same rule, usually a longer wait), timed on the monotonic clock, so a
//!   step of the wall clock neither shortens nor stretches the wait;
//! - weight is added and compared saturating: a header of 2^32 − 1 (or more) holds the
//!   budget for the minute rather than wrapping it;
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
    /// Weight of a request pushed without its own ([`Scheduler::push`]).
    weight: u32,
    /// The calendar minute `used` belongs to (ms / 60,000).
    minute: u64,
    /// Weight used in `minute`, as the exchange last reported it (or as we counted).
    used: u32,
    /// No request before this monotonic time (ms), after a 429/418.
    blocked_until_mono_ms: u64,
    /// Jobs with their request weight, per priority.
    queues: [VecDeque<(J, u32)>; 2],
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
            blocked_until_mono_ms: 0,
            queues: [VecDeque::new(), VecDeque::new()],
        }
    }

    pub fn share_1m(&self) -> u32 {
        self.share_1m
    }

    /// Queues a job of the default weight unless the same job is already waiting;
    /// false when it was.
    pub fn push(&mut self, job: J, priority: Priority) -> bool {
        self.push_weighted(job, priority, self.weight)
    }

    /// [`Scheduler::push`] of a request of `weight`.
    pub fn push_weighted(&mut self, job: J, priority: Priority, weight: u32) -> bool {
        if self.queues.iter().any(|q| q.iter().any(|(j, _)| *j == job)) {
            return false;
        }
        self.queues[priority as usize].push_back((job, weight));
        true
    }

    /// Puts a job back at the front of its queue (its request was refused by a 429/418
    /// and must be sent again first).
    pub fn push_front(&mut self, job: J, priority: Priority) {
        self.push_front_weighted(job, priority, self.weight);
    }

    /// [`Scheduler::push_front`] of a request of `weight`.
    pub fn push_front_weighted(&mut self, job: J, priority: Priority, weight: u32) {
        self.queues[priority as usize].push_front((job, weight));
    }

    /// The weight of the request that goes next.
    fn next_weight(&self) -> u32 {
        self.queues
            .iter()
            .find_map(|q| q.front().map(|(_, w)| *w))
            .unwrap_or(self.weight)
    }

    /// Jobs waiting, per priority.
    pub fn queued(&self) -> [usize; 2] {
        [self.queues[0].len(), self.queues[1].len()]
    }

    /// Weight used in the current minute (wall time `wall_ms`) as far as we know.
    pub fn used(&self, wall_ms: u64) -> u32 {
        if wall_ms / 60_000 == self.minute {
            self.used
        } else {
            0
        }
    }

    /// Why nothing may be sent at wall time `wall_ms`, monotonic time `mono_ms`, if so.
    pub fn hold(&self, wall_ms: u64, mono_ms: u64) -> Hold {
        if mono_ms < self.blocked_until_mono_ms {
            Hold::RetryAfter
        } else if self.used(wall_ms) > self.share_1m.saturating_sub(self.next_weight()) {
            Hold::Budget
        } else {
            Hold::None
        }
    }

    /// What to do at wall time `wall_ms`, monotonic time `mono_ms`. A `Send` takes the
    /// job off its queue and counts its weight at once (before the answer, so that a
    /// lost answer cannot let the budget be overrun).
    pub fn next(&mut self, wall_ms: u64, mono_ms: u64) -> Next<J> {
        if self.queues.iter().all(VecDeque::is_empty) {
            return Next::Idle;
        }
        match self.hold(wall_ms, mono_ms) {
            Hold::RetryAfter => return Next::Wait(self.blocked_until_mono_ms - mono_ms),
            Hold::Budget => return Next::Wait(60_000 - wall_ms % 60_000),
            Hold::None => {}
        }
        let (job, weight) = match self.queues[0].pop_front() {
            Some(j) => j,
            None => match self.queues[1].pop_front() {
                Some(j) => j,
                None => return Next::Idle,
            },
        };
        let used = self.used(wall_ms);
        self.minute = wall_ms / 60_000;
        self.used = used.saturating_add(weight);
        Next::Send(job)
    }

    /// Reports an answer received at wall time `wall_ms`, monotonic time `mono_ms`: its
    /// HTTP status, its `X-MBX-USED-WEIGHT-1M` and its `Retry-After` (seconds), as
    /// present.
    pub fn on_answer(
        &mut self,
        wall_ms: u64,
        mono_ms: u64,
        status: u16,
        used_weight_1m: Option<u32>,
        retry_after_s: Option<u64>,
    ) {
        if let Some(w) = used_weight_1m {
            // The exchange's count includes other clients of the same IP: trust it
            // when it is higher; when lower (a new minute began), it is the truth too.
            self.minute = wall_ms / 60_000;
            self.used = w;
        }
        if status == 429 || status == 418 {
            let wait_s = retry_after_s
                .unwrap_or(DEFAULT_RETRY_AFTER_S)
                .min(MAX_RETRY_AFTER_S);
            let until = mono_ms.saturating_add(wait_s * 1000);
            self.blocked_until_mono_ms = self.blocked_until_mono_ms.max(until);
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
        assert_eq!(s.next(0, 0), Next::Send("gap b"));
        assert_eq!(s.next(0, 0), Next::Send("warm a"));
        assert_eq!(s.next(0, 0), Next::Idle);
    }

    #[test]
    fn the_share_of_the_minute_is_never_exceeded() {
        // 0.001 of 6000 = 6: three requests of weight 2 per minute.
        let mut s = Scheduler::new(0.001, 2);
        for i in 0..5 {
            s.push(i, Priority::Normal);
        }
        let t = 120_000 + 10;
        assert_eq!(s.next(t, t), Next::Send(0));
        assert_eq!(s.next(t, t), Next::Send(1));
        assert_eq!(s.next(t, t), Next::Send(2));
        assert_eq!(s.next(t, t), Next::Wait(60_000 - 10));
        assert_eq!(s.hold(t, t), Hold::Budget);
        assert_eq!(s.next(180_000, 180_000), Next::Send(3));
    }

    #[test]
    fn a_heavy_request_waits_for_room_for_its_own_weight() {
        // 0.01 of 6000 = 60 a minute: a depth snapshot of 50 after eight klines of 2
        // would pass 60, so it waits for the next minute; light ones behind it wait too
        // (first in, first out).
        let mut s = Scheduler::new(0.01, 2);
        for i in 0..8 {
            s.push(i, Priority::Normal);
        }
        assert!(s.push_weighted(9, Priority::Normal, 50));
        assert!(!s.push_weighted(9, Priority::Normal, 50));
        s.push(10, Priority::Normal);
        let t = 60_000;
        for i in 0..8 {
            assert_eq!(s.next(t, t), Next::Send(i));
        }
        assert_eq!(s.hold(t, t), Hold::Budget);
        assert_eq!(s.next(t + 60_000, t + 60_000), Next::Send(9));
        assert_eq!(s.used(t + 60_000), 50);
        assert_eq!(s.next(t + 60_000, t + 60_000), Next::Send(10));
    }

    #[test]
    fn the_exchange_count_overrides_ours() {
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        s.push(2, Priority::Normal);
        assert_eq!(s.next(1000, 1000), Next::Send(1));
        // Another client behind the same IP used most of the minute.
        s.on_answer(1001, 1001, 200, Some(2999), None);
        assert_eq!(s.next(1002, 1002), Next::Wait(58_998));
        assert_eq!(s.next(60_000, 60_000), Next::Send(2));
    }

    #[test]
    fn retry_after_is_obeyed_for_every_job() {
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        assert_eq!(s.next(0, 0), Next::Send(1));
        s.on_answer(5, 5, 429, Some(10), Some(7));
        s.push_front(1, Priority::Normal);
        s.push(9, Priority::Urgent);
        assert_eq!(s.hold(6, 6), Hold::RetryAfter);
        assert_eq!(s.next(6, 6), Next::Wait(6_999));
        assert_eq!(s.next(7_005, 7_005), Next::Send(9));
        // A 418 without Retry-After waits the default.
        s.on_answer(7_010, 7_010, 418, None, None);
        assert_eq!(
            s.next(7_011, 7_011),
            Next::Wait(DEFAULT_RETRY_AFTER_S * 1000 - 1)
        );
    }

    #[test]
    fn a_huge_weight_header_holds_the_minute_instead_of_wrapping() {
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        s.push(2, Priority::Normal);
        assert_eq!(s.next(1000, 1000), Next::Send(1));
        // 2^32 - 1: adding a request's weight must not wrap to a small number.
        s.on_answer(1001, 1001, 200, Some(u32::MAX), None);
        assert_eq!(s.used(1002), u32::MAX);
        assert_eq!(s.hold(1002, 1002), Hold::Budget);
        assert_eq!(s.next(1002, 1002), Next::Wait(58_998));
        // The next minute starts afresh.
        assert_eq!(s.next(60_000, 60_000), Next::Send(2));
        // Our own count saturates too.
        let mut own = Scheduler::new(1.0, u32::MAX);
        own.push(3, Priority::Normal);
        own.push(4, Priority::Normal);
        assert_eq!(own.next(0, 0), Next::Send(3));
        assert_eq!(own.used(0), u32::MAX);
        assert_eq!(own.next(1, 1), Next::Wait(59_999));
    }

    #[test]
    fn a_wall_clock_step_neither_shortens_nor_stretches_a_ban() {
        const HOUR: u64 = 3_600_000;
        let wall = 1_764_900_000_000;
        let mono = 50_000;
        let mut s = Scheduler::new(0.5, 2);
        s.push(1, Priority::Normal);
        assert_eq!(s.next(wall, mono), Next::Send(1));
        s.on_answer(wall, mono, 418, None, Some(10));
        s.push_front(1, Priority::Normal);
        // The wall clock jumps an hour ahead one second later: the ban still runs.
        assert_eq!(s.hold(wall + HOUR, mono + 1_000), Hold::RetryAfter);
        assert_eq!(s.next(wall + HOUR, mono + 1_000), Next::Wait(9_000));
        // Then an hour back (behind where it started): the ban does not grow.
        assert_eq!(s.next(wall - HOUR, mono + 2_000), Next::Wait(8_000));
        // It ends ten monotonic seconds after the answer, whatever the wall says.
        assert_eq!(s.next(wall - HOUR, mono + 9_999), Next::Wait(1));
        assert_eq!(s.next(wall - HOUR, mono + 10_000), Next::Send(1));
        // A 429's Retry-After likewise.
        s.push(2, Priority::Normal);
        s.on_answer(wall, mono + 10_001, 429, None, Some(5));
        assert_eq!(s.next(wall + HOUR, mono + 10_002), Next::Wait(4_999));
        assert_eq!(s.next(wall + 2 * HOUR, mono + 15_001), Next::Send(2));
    }
}
