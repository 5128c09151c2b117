//! Bounded lock-free rings between cores, carrying fixed-size messages, and the
//! doorbells that wake a consumer when its rings get work.
//!
//! One ring per (shard core → sink core) pair: the shard is the only producer and the
//! sink the only consumer. Each ring counts pushes, refusals when full, and its
//! high-water mark; a full ring never blocks the producer: the caller decides, per loss
//! class, whether to hold the message and retry (never-lost data) or drop and count it
//! (conflated data).
//!
//! Doorbells instead of timers: a consumer that finds its rings empty arms the doorbell
//! of each ring and parks (a plain thread on a futex, a glommio task on its executor,
//! which sleeps in io_uring until a foreign wake-up writes its eventfd). A producer
//! that pushes checks one flag: while the consumer is awake that is one atomic load and
//! no system call; only a push that finds the consumer parked wakes it. The shard
//! pushes a whole socket read's records with [`Producer::push_deferred`] and rings once
//! at the end ([`Producer::ring`]), so a burst is one wake-up per consumer, not one per
//! record. Several rings may share one [`Doorbell`] (every shard's ring to one sink).
//!
//! No lost wake-up: the consumer registers its waker, sets `parked` (SeqCst), then
//! looks at its rings again before it sleeps; the producer pushes, then (after a SeqCst
//! fence) reads `parked`. In the single total order of those operations either the
//! consumer sees the record or the producer sees `parked`, and whoever sees `parked`
//! wakes a waker registered before it was set. Spurious wake-ups are harmless.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;

/// Counters of one ring, readable from any core (relaxed: figures, not synchronisation).
#[derive(Debug, Default)]
pub struct RingStats {
    pub pushed: CachePadded<AtomicU64>,
    pub full: CachePadded<AtomicU64>,
    pub high_water: CachePadded<AtomicU64>,
    pub popped: CachePadded<AtomicU64>,
}

#[derive(Default)]
struct Bell {
    /// Set by a consumer about to sleep; cleared by whoever wakes it.
    parked: CachePadded<AtomicBool>,
    waker: AtomicWaker,
    /// Wake-ups sent to a parked consumer (not pushes: a busy consumer gets none).
    wakeups: AtomicU64,
}

/// Wakes the consumer of one or more rings. Cloning shares it.
#[derive(Clone, Default)]
pub struct Doorbell {
    bell: Arc<Bell>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell")
            .field("parked", &self.bell.parked.load(Ordering::Relaxed))
            .field("wakeups", &self.wakeups())
            .finish()
    }
}

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell::default()
    }

    /// Wakes the consumer if it is parked. One fence and one load when it is awake.
    #[inline]
    pub fn ring(&self) {
        // Orders the producer's pushes before the read of `parked` (see the module
        // docs): without it the load could pass the push, and both sides could miss
        // each other.
        fence(Ordering::SeqCst);
        if self.bell.parked.load(Ordering::Relaxed)
            && self.bell.parked.swap(false, Ordering::AcqRel)
        {
            self.bell.wakeups.fetch_add(1, Ordering::Relaxed);
            self.bell.waker.wake();
        }
    }

    /// Wakes the consumer whether or not it is parked (stop requests, tests).
    pub fn wake_now(&self) {
        self.bell.parked.store(false, Ordering::SeqCst);
        self.bell.waker.wake();
    }

    /// Wake-ups sent to the parked consumer so far.
    pub fn wakeups(&self) -> u64 {
        self.bell.wakeups.load(Ordering::Relaxed)
    }

    /// Consumer side: registers `waker` and marks the consumer parked. The caller must
    /// look at its rings again afterwards and [`Doorbell::disarm`] if any has work.
    pub fn arm(&self, waker: &Waker) {
        self.bell.waker.register(waker);
        self.bell.parked.store(true, Ordering::SeqCst);
    }

    /// Consumer side: awake again (after finding work, or after waking).
    pub fn disarm(&self) {
        self.bell.parked.store(false, Ordering::Relaxed);
    }

    fn same(&self, other: &Doorbell) -> bool {
        Arc::ptr_eq(&self.bell, &other.bell)
    }
}

/// A waker that unparks a plain thread: how sink threads sleep on their doorbell.
pub fn thread_waker() -> Waker {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

struct Shared<T> {
    queue: ArrayQueue<T>,
    stats: RingStats,
    name: String,
    bell: Doorbell,
}

/// The producing end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Pushed with [`Producer::push_deferred`] since the last [`Producer::ring`].
    unrung: Cell<bool>,
}

/// The consuming end.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// A read-only view for status pages.
#[derive(Clone)]
pub struct RingView<T> {
    shared: Arc<Shared<T>>,
}

/// Creates a ring of `capacity` messages (at least 1) with a doorbell of its own.
pub fn ring<T>(name: impl Into<String>, capacity: usize) -> (Producer<T>, Consumer<T>) {
    ring_with(name, capacity, &Doorbell::new())
}

/// Creates a ring of `capacity` messages (at least 1) that rings `bell`: the consumer
/// of several rings gives them all the same doorbell.
pub fn ring_with<T>(
    name: impl Into<String>,
    capacity: usize,
    bell: &Doorbell,
) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        stats: RingStats::default(),
        name: name.into(),
        bell: bell.clone(),
    });
    (
        Producer {
            shared: shared.clone(),
            unrung: Cell::new(false),
        },
        Consumer { shared },
    )
}

impl<T> Producer<T> {
    /// Pushes `msg` and wakes the consumer if it sleeps, or hands the message back when
    /// the ring is full (counted).
    pub fn push(&self, msg: T) -> Result<(), T> {
        self.push_deferred(msg)?;
        self.ring();
        Ok(())
    }

    /// Pushes `msg` without waking the consumer: the caller rings ([`Producer::ring`])
    /// once after a batch. Hands the message back when the ring is full (counted).
    pub fn push_deferred(&self, msg: T) -> Result<(), T> {
        match self.shared.queue.push(msg) {
            Ok(()) => {
                let s = &self.shared.stats;
                s.pushed.fetch_add(1, Ordering::Relaxed);
                let depth = self.shared.queue.len() as u64;
                if depth > s.high_water.load(Ordering::Relaxed) {
                    s.high_water.store(depth, Ordering::Relaxed);
                }
                self.unrung.set(true);
                Ok(())
            }
            Err(msg) => {
                self.shared.stats.full.fetch_add(1, Ordering::Relaxed);
                Err(msg)
            }
        }
    }

    /// Wakes the consumer if anything was pushed since the last ring and it sleeps.
    #[inline]
    pub fn ring(&self) {
        if self.unrung.replace(false) {
            self.shared.bell.ring();
        }
    }

    pub fn view(&self) -> RingView<T> {
        RingView {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Nothing pushed is left unannounced, whatever path dropped the producer.
        self.ring();
    }
}

impl<T> Consumer<T> {
    pub fn pop(&self) -> Option<T> {
        let msg = self.shared.queue.pop();
        if msg.is_some() {
            self.shared.stats.popped.fetch_add(1, Ordering::Relaxed);
        }
        msg
    }

    /// Pops up to `max` messages into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.shared.queue.pop() {
                Some(m) => {
                    out.push(m);
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            self.shared
                .stats
                .popped
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// The doorbell the producer rings.
    pub fn doorbell(&self) -> &Doorbell {
        &self.shared.bell
    }

    pub fn view(&self) -> RingView<T> {
        RingView {
            shared: self.shared.clone(),
        }
    }
}

impl<T> RingView<T> {
    pub fn name(&self) -> &str {
        &self.shared.name
    }
    pub fn depth(&self) -> usize {
        self.shared.queue.len()
    }
    pub fn capacity(&self) -> usize {
        self.shared.queue.capacity()
    }
    pub fn stats(&self) -> &RingStats {
        &self.shared.stats
    }
    /// Wake-ups the ring's doorbell sent (shared with the consumer's other rings).
    pub fn wakeups(&self) -> u64 {
        self.shared.bell.wakeups()
    }
}

/// The distinct doorbells of a consumer's rings (usually one).
pub fn doorbells_of<T>(rings: &[Consumer<T>]) -> Vec<Doorbell> {
    let mut bells: Vec<Doorbell> = Vec::new();
    for r in rings {
        if !bells.iter().any(|b| b.same(r.doorbell())) {
            bells.push(r.doorbell().clone());
        }
    }
    bells
}

/// Arms every doorbell with `waker`, then looks at the rings once more: true when the
/// consumer may sleep (every ring is still empty), false (and disarmed) when work came
/// in meanwhile.
pub fn arm_all<T>(bells: &[Doorbell], rings: &[Consumer<T>], waker: &Waker) -> bool {
    arm_all_unless(bells, waker, || rings.iter().any(|r| !r.is_empty()))
}

/// Arms every doorbell with `waker`, then asks `has_work` once more: true when the
/// consumer may sleep, false (and disarmed) when work came in meanwhile. `has_work`
/// must read what the producers publish before they ring (a queue's length).
pub fn arm_all_unless(bells: &[Doorbell], waker: &Waker, has_work: impl Fn() -> bool) -> bool {
    for b in bells {
        b.arm(waker);
    }
    if !has_work() {
        return true;
    }
    disarm_all(bells);
    false
}

/// Marks the consumer awake on every doorbell.
pub fn disarm_all(bells: &[Doorbell]) {
    for b in bells {
        b.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn bounded_counts_and_hands_back_when_full() {
        let (tx, rx) = ring::<u32>("t", 3);
        for i in 0..3 {
            tx.push(i).unwrap();
        }
        assert_eq!(tx.push(9), Err(9));
        let v = tx.view();
        assert_eq!(v.depth(), 3);
        assert_eq!(v.stats().full.load(Ordering::Relaxed), 1);
        assert_eq!(v.stats().high_water.load(Ordering::Relaxed), 3);
        let mut out = Vec::new();
        assert_eq!(rx.drain_into(&mut out, 2), 2);
        assert_eq!(out, [0, 1]);
        assert_eq!(rx.pop(), Some(2));
        assert_eq!(rx.pop(), None);
        assert_eq!(v.stats().popped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn crosses_threads_in_order() {
        let (tx, rx) = ring::<u64>("t", 64);
        let n = 200_000u64;
        // Both sides give up at the deadline, so a failure can never hang the test.
        let deadline = Instant::now() + Duration::from_secs(60);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < n && Instant::now() < deadline {
                if tx.push(i).is_ok() {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            i
        });
        let mut expect = 0;
        while expect < n && Instant::now() < deadline {
            if let Some(v) = rx.pop() {
                assert_eq!(v, expect);
                expect += 1;
            } else {
                std::thread::yield_now();
            }
        }
        assert_eq!(producer.join().unwrap(), n);
        assert_eq!(expect, n);
    }

    #[test]
    fn a_deferred_push_wakes_only_when_rung_and_only_a_parked_consumer() {
        let bell = Doorbell::new();
        let (tx, rx) = ring_with::<u32>("t", 8, &bell);
        let waker = thread_waker();
        // Awake consumer: pushes and rings cost no wake-up.
        tx.push(1).unwrap();
        assert_eq!(bell.wakeups(), 0);
        // Parked on an empty ring: a deferred push alone does not wake it, the ring does,
        // once; a second ring without a push does nothing.
        assert_eq!(rx.pop(), Some(1));
        let bells = doorbells_of(std::slice::from_ref(&rx));
        assert!(arm_all(&bells, std::slice::from_ref(&rx), &waker));
        tx.push_deferred(2).unwrap();
        assert_eq!(bell.wakeups(), 0);
        tx.ring();
        assert_eq!(bell.wakeups(), 1);
        tx.ring();
        assert_eq!(bell.wakeups(), 1);
        // Arming with work waiting refuses to sleep.
        assert!(!arm_all(&bells, std::slice::from_ref(&rx), &waker));
        tx.push(3).unwrap();
        assert_eq!(bell.wakeups(), 1, "the consumer was disarmed: awake");
    }

    /// Many producer/consumer pairs with random pauses on both sides: every message
    /// arrives, and no consumer sleeps through a push (a lost wake-up would leave it
    /// parked until the test's deadline, far beyond the bounded waits below).
    #[test]
    fn no_lost_wakeup_under_stress() {
        const PAIRS: usize = 8;
        const MESSAGES: u64 = 20_000;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut handles = Vec::new();
        for pair in 0..PAIRS {
            let bell = Doorbell::new();
            let (tx, rx) = ring_with::<u64>(format!("p{pair}"), 16, &bell);
            let producer = std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(pair as u64);
                let mut i = 0;
                while i < MESSAGES && Instant::now() < deadline {
                    // Bursts of deferred pushes with one ring, or single pushes.
                    let burst = rng.u64(1..8).min(MESSAGES - i);
                    let mut sent = 0;
                    while sent < burst && Instant::now() < deadline {
                        if tx.push_deferred(i + sent).is_ok() {
                            sent += 1;
                        } else {
                            tx.ring();
                            std::thread::yield_now();
                        }
                    }
                    tx.ring();
                    i += sent;
                    match rng.u8(0..10) {
                        0 => std::thread::sleep(Duration::from_micros(rng.u64(1..200))),
                        1 => std::thread::yield_now(),
                        _ => {}
                    }
                }
                i
            });
            let consumer = std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(1000 + pair as u64);
                let rings = [rx];
                let bells = doorbells_of(&rings);
                let waker = thread_waker();
                let mut expect = 0u64;
                let mut longest_park = Duration::ZERO;
                while expect < MESSAGES && Instant::now() < deadline {
                    let mut got = false;
                    while let Some(v) = rings[0].pop() {
                        assert_eq!(v, expect);
                        expect += 1;
                        got = true;
                    }
                    if got {
                        if rng.u8(0..10) == 0 {
                            std::thread::sleep(Duration::from_micros(rng.u64(1..200)));
                        }
                        continue;
                    }
                    if arm_all(&bells, &rings, &waker) {
                        let t = Instant::now();
                        // Long enough that a lost wake-up shows as a stall of seconds.
                        std::thread::park_timeout(Duration::from_secs(5));
                        longest_park = longest_park.max(t.elapsed());
                        disarm_all(&bells);
                    }
                }
                (expect, longest_park)
            });
            handles.push((producer, consumer));
        }
        for (p, c) in handles {
            assert_eq!(p.join().unwrap(), MESSAGES);
            let (got, longest) = c.join().unwrap();
            assert_eq!(got, MESSAGES);
            assert!(
                longest < Duration::from_secs(4),
                "a consumer slept {longest:?} with work waiting: a lost wake-up"
            );
        }
    }
}
