//! Bounded lock-free rings between cores, carrying fixed-size messages.
//!
//! One ring per (shard core → sink core) pair: the shard is the only producer and the
//! sink the only consumer. Each ring counts pushes, refusals when full, and its
//! high-water mark; a full ring never blocks the producer: the caller decides, per loss
//! class, whether to hold the message and retry (never-lost data) or drop and count it
//! (conflated data).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

/// Counters of one ring, readable from any core (relaxed: figures, not synchronisation).
#[derive(Debug, Default)]
pub struct RingStats {
    pub pushed: CachePadded<AtomicU64>,
    pub full: CachePadded<AtomicU64>,
    pub high_water: CachePadded<AtomicU64>,
    pub popped: CachePadded<AtomicU64>,
}

struct Shared<T> {
    queue: ArrayQueue<T>,
    stats: RingStats,
    name: String,
}

/// The producing end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
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

/// Creates a ring of `capacity` messages (at least 1).
pub fn ring<T>(name: impl Into<String>, capacity: usize) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        stats: RingStats::default(),
        name: name.into(),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl<T> Producer<T> {
    /// Pushes `msg`, or hands it back when the ring is full (counted).
    pub fn push(&self, msg: T) -> Result<(), T> {
        match self.shared.queue.push(msg) {
            Ok(()) => {
                let s = &self.shared.stats;
                s.pushed.fetch_add(1, Ordering::Relaxed);
                let depth = self.shared.queue.len() as u64;
                if depth > s.high_water.load(Ordering::Relaxed) {
                    s.high_water.store(depth, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(msg) => {
                self.shared.stats.full.fetch_add(1, Ordering::Relaxed);
                Err(msg)
            }
        }
    }

    pub fn view(&self) -> RingView<T> {
        RingView {
            shared: self.shared.clone(),
        }
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
        self.shared
            .stats
            .popped
            .fetch_add(n as u64, Ordering::Relaxed);
        n
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < n && std::time::Instant::now() < deadline {
                if tx.push(i).is_ok() {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            i
        });
        let mut expect = 0;
        while expect < n && std::time::Instant::now() < deadline {
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
}
