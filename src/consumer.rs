//! The one consumer loop: how every role that drains rings waits for work.
//!
//! Runs on: each consumer's own thread ([`run_thread`]: the database writer, the Redis
//! publisher) or a task on its glommio executor ([`run_local`]: the dashboard). Owns:
//! the consumer's rings, their doorbells and the batch buffer. In: records from every
//! ring. Out: one [`Consume::turn`] per batch.
//!
//! Event-driven, not timed: after a turn, a consumer whose rings are empty parks on
//! their doorbells ([`crate::ring`]) until a producer rings, the handler's own deadline
//! comes ([`Next::At`]: a batch timeout, a reconnect) or the [`Stop`] is requested,
//! which wakes it wherever it waits: a thread and a glommio task alike have no poll. A
//! record's hop is one wake-up, not a timer period. With `busy_poll` (isolated cores
//! only) nothing sleeps, at the price of a whole core: a thread consumer spins on its
//! rings instead of parking, and a glommio consumer's executor spins in its reactor
//! (`spin_before_park`), where a doorbell's wake-up reaches it without a system call.
//!
//! Also here, for every task that waits: [`Stop`], a stop request that wakes its
//! waiters on any thread, and [`LocalEvent`], a wake-up between two tasks of one
//! executor (a feed connection and its supervisor).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock::mono_ns;
use crate::latency::{Recorder, Stage};
use crate::ring::{
    arm_all, arm_all_unless, disarm_all, doorbells_of, thread_waker, Consumer, Doorbell,
};

/// How long a glommio consumer parks with nothing to wait for but records and the stop
/// (which wakes it): its timer has to be set to something.
const NO_DEADLINE: Duration = Duration::from_secs(3600);

/// When the handler next needs a turn without new records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// At once: it has work of its own pending (a spool replay, a full batch).
    Now,
    /// At this time, or earlier if records come.
    At(Instant),
    /// Only when records come.
    Idle,
}

impl Next {
    /// The earlier of two.
    pub fn min(self, other: Next) -> Next {
        match (self, other) {
            (Next::Now, _) | (_, Next::Now) => Next::Now,
            (Next::At(a), Next::At(b)) => Next::At(a.min(b)),
            (Next::At(a), Next::Idle) | (Next::Idle, Next::At(a)) => Next::At(a),
            (Next::Idle, Next::Idle) => Next::Idle,
        }
    }
}

/// One turn of a consumer.
pub struct Turn<'a, T> {
    /// The records taken from the rings this time (none when a deadline or the stop
    /// woke the consumer).
    pub batch: &'a [T],
    /// The stop is requested; the loop ends once the rings are empty.
    pub stopping: bool,
    /// The consumer's stage latencies (its ring hops are recorded already).
    pub latency: Option<&'a mut Recorder>,
}

/// A consumer's handler.
pub trait Consume<T> {
    /// One turn; returns when the consumer next needs one without new records.
    fn turn(&mut self, turn: Turn<'_, T>) -> Next;
    /// The stop is requested and every ring is empty: flush and return.
    fn finish(&mut self) {}
}

/// What a ring message tells the loop about its journey.
pub trait Stamped {
    /// When it was put on the ring (monotonic ns, [`mono_ns`]); 0 when unknown (records
    /// of other instances, synthetic records): no ring hop is recorded.
    fn enqueued_ns(&self) -> u64;
}

/// A consumer's rings and what it needs to drain and wait on them.
pub struct Rings<T> {
    rings: Vec<Consumer<T>>,
    bells: Vec<Doorbell>,
    batch: Vec<T>,
    per_ring: usize,
    latency: Option<Recorder>,
    busy_poll: bool,
}

impl<T: Stamped> Rings<T> {
    /// `per_ring`: records taken from each ring per turn, so one busy producer cannot
    /// starve the others and a turn stays bounded. `latency`: where the ring hop of every
    /// record goes (`None`: the handler records it).
    pub fn new(
        rings: Vec<Consumer<T>>,
        per_ring: usize,
        latency: Option<Recorder>,
        busy_poll: bool,
    ) -> Rings<T> {
        let bells = doorbells_of(&rings);
        Rings {
            batch: Vec::with_capacity(per_ring.max(1) * rings.len().max(1)),
            rings,
            bells,
            per_ring: per_ring.max(1),
            latency,
            busy_poll,
        }
    }

    /// Takes the next batch, records its ring hops and hands the histograms over when due;
    /// true when it took any.
    fn take(&mut self) -> bool {
        self.batch.clear();
        for ring in &self.rings {
            ring.drain_into(&mut self.batch, self.per_ring);
        }
        if let Some(rec) = &mut self.latency {
            let now = mono_ns();
            for m in &self.batch {
                let at = m.enqueued_ns();
                if at != 0 {
                    rec.record_span(Stage::RingHop, at, now);
                }
            }
            rec.maybe_handoff(now);
        }
        !self.batch.is_empty()
    }

    /// Takes the next batch and hands it to `consume`: (took any, its answer).
    fn turn<C: Consume<T>>(&mut self, consume: &mut C, stopping: bool) -> (bool, Next) {
        let took = self.take();
        let next = consume.turn(Turn {
            batch: &self.batch,
            stopping,
            latency: self.latency.as_mut(),
        });
        (took, next)
    }

    fn all_empty(&self) -> bool {
        self.rings.iter().all(Consumer::is_empty)
    }
}

/// Runs `consume` on this thread until `stop` is requested and the rings are empty.
/// Idle, the thread parks until a ring, its own deadline or the stop wakes it: no
/// stop poll.
pub fn run_thread<T: Stamped, C: Consume<T>>(mut rings: Rings<T>, stop: &Stop, consume: &mut C) {
    let waker = thread_waker();
    // Registered once for the loop's life: the request unparks this thread whenever it
    // comes (a park after it returns at once), and one that came before is seen here.
    let mut stop_wait = std::pin::pin!(stop.wait());
    let _ = stop_wait.as_mut().poll(&mut Context::from_waker(&waker));
    loop {
        let stopping = stop.requested();
        let (took, next) = rings.turn(consume, stopping);
        // A stopping consumer ends once its rings are empty, even with work of its own
        // pending (a spool replay): `finish` bounds what it still does.
        if stopping && !took && rings.all_empty() {
            consume.finish();
            return;
        }
        if took || next == Next::Now {
            continue;
        }
        if rings.busy_poll {
            std::hint::spin_loop();
            continue;
        }
        let deadline = match next {
            Next::At(t) if t <= Instant::now() => continue,
            Next::At(t) => Some(t),
            _ => None,
        };
        if arm_all(&rings.bells, &rings.rings, &waker) {
            match deadline {
                Some(t) => std::thread::park_timeout(t.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
            disarm_all(&rings.bells);
        }
    }
}

/// Runs `consume` as a task on the current glommio executor until `stop` is requested
/// and the rings are empty. After a turn with records it yields, so the executor's other
/// tasks (the dashboard's client writers) run between batches. Idle, it sleeps until a
/// ring, its own deadline or the stop wakes it: no stop poll.
pub async fn run_local<T: Stamped, C: Consume<T>>(
    mut rings: Rings<T>,
    stop: &Stop,
    consume: &mut C,
) {
    let mut park = LocalPark::new();
    loop {
        let stopping = stop.requested();
        let (took, next) = rings.turn(consume, stopping);
        if stopping && !took && rings.all_empty() {
            consume.finish();
            return;
        }
        if took || next == Next::Now {
            futures_lite::future::yield_now().await;
            continue;
        }
        // Parks even with `busy_poll`: the executor itself spins then
        // (`spin_before_park`), reaping sockets, timers and wake-ups from other threads
        // while it does. A task that spun by yielding would keep its queue from
        // emptying, and the executor would reap socket completions only at preemption.
        let wait = match next {
            Next::At(t) => t.saturating_duration_since(Instant::now()),
            _ => NO_DEADLINE,
        };
        let Rings { bells, rings, .. } = &rings;
        let has_work = || rings.iter().any(|r| !r.is_empty());
        park.wait(bells, has_work, wait, stop).await;
    }
}

/// How a glommio task sleeps on doorbells: until one rings or `wait` passes.
pub struct LocalPark {
    // One timer for the task's life, re-armed only when it fired or must fire sooner:
    // arming and cancelling an io_uring timeout per park would cost more than the work.
    timer: glommio::timer::Timer,
    timer_at: Instant,
}

impl Default for LocalPark {
    fn default() -> Self {
        LocalPark::new()
    }
}

impl LocalPark {
    pub fn new() -> LocalPark {
        LocalPark {
            timer: glommio::timer::Timer::new(NO_DEADLINE),
            timer_at: Instant::now() + NO_DEADLINE,
        }
    }

    /// Sleeps until a doorbell of `bells` rings, `wait` passes or the stop is requested;
    /// returns at once when `has_work` says there is work (checked after arming, so no
    /// ring is missed).
    pub async fn wait(
        &mut self,
        bells: &[Doorbell],
        has_work: impl Fn() -> bool,
        wait: Duration,
        stop: &Stop,
    ) {
        if wait.is_zero() {
            return;
        }
        let now = Instant::now();
        if self.timer_at <= now || self.timer_at > now + wait {
            self.timer_at = now + wait;
            self.timer.reset(wait);
        }
        let mut armed = false;
        let woken = futures_lite::future::poll_fn(|cx| {
            if armed || !arm_all_unless(bells, cx.waker(), &has_work) {
                return Poll::Ready(());
            }
            armed = true;
            Poll::Pending
        });
        let timer = &mut self.timer;
        let fired = futures_lite::future::or(
            async {
                futures_lite::future::or(woken, stop.wait()).await;
                false
            },
            async {
                timer.await;
                true
            },
        )
        .await;
        disarm_all(bells);
        if fired {
            self.timer_at = Instant::now();
        }
    }
}

/// A stop request that wakes whoever waits for it, on any executor or thread: tasks
/// wait for it instead of polling a flag on a timer.
///
/// No lost wake-up: [`Stop::request`] sets the flag and then takes the waiters under
/// the lock; a waiter registers under the lock and then reads the flag. Either the
/// request finds the waiter registered, or the waiter's read comes after the request's
/// store (the lock orders them) and sees it.
#[derive(Clone, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    waiters: Arc<Mutex<Waiters>>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    wakers: Vec<(u64, Waker)>,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("requested", &self.requested())
            .finish()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Whether the stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The flag alone, for loops that look at it between units of work (a plain thread
    /// with its own wake-up). Setting it directly would wake nobody: use
    /// [`Stop::request`].
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    /// Requests the stop and wakes every waiter.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut self.lock().wakers);
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// On a glommio executor: sleeps for `d` unless the stop comes first; true when the
    /// whole time passed.
    pub async fn sleep(&self, d: Duration) -> bool {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(d).await;
                true
            },
            async {
                self.wait().await;
                false
            },
        )
        .await
    }

    /// Completes once the stop is requested.
    pub fn wait(&self) -> StopWait<'_> {
        StopWait {
            stop: self,
            id: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The future of [`Stop::wait`]; dropping it unregisters its waker.
pub struct StopWait<'a> {
    stop: &'a Stop,
    id: Option<u64>,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.requested() {
            return Poll::Ready(());
        }
        {
            let mut waiters = self.stop.lock();
            let slot = self
                .id
                .and_then(|id| waiters.wakers.iter_mut().find(|(i, _)| *i == id));
            match slot {
                Some((_, waker)) => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
                None => {
                    let id = waiters.next_id;
                    waiters.next_id += 1;
                    waiters.wakers.push((id, cx.waker().clone()));
                    self.id = Some(id);
                }
            }
        }
        if self.stop.requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.stop.lock().wakers.retain(|(i, _)| *i != id);
        }
    }
}

/// A wake-up between two tasks of one executor: [`LocalEvent::notify`] wakes the task
/// waiting in [`LocalEvent::wait`], and a notification given while nobody waits is kept
/// for the next wait (so a waiter that looks, then waits, misses nothing).
#[derive(Default)]
pub struct LocalEvent {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl std::fmt::Debug for LocalEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEvent")
            .field("pending", &self.pending.get())
            .finish()
    }
}

impl LocalEvent {
    pub fn new() -> LocalEvent {
        LocalEvent::default()
    }

    /// Wakes the waiter, or the next one to wait.
    pub fn notify(&self) {
        self.pending.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Completes at the first notification since the last wait completed.
    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// [`LocalEvent::wait`] as a poll, for a task that waits on several events at once.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.replace(false) {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ring_with;
    use std::sync::Arc;

    impl Stamped for u64 {
        fn enqueued_ns(&self) -> u64 {
            0
        }
    }

    struct Collect {
        got: Vec<u64>,
        turns: u64,
        finished: bool,
    }

    impl Consume<u64> for Collect {
        fn turn(&mut self, turn: Turn<'_, u64>) -> Next {
            self.turns += 1;
            self.got.extend_from_slice(turn.batch);
            Next::Idle
        }
        fn finish(&mut self) {
            self.finished = true;
        }
    }

    /// A glommio consumer (woken across threads through its executor's eventfd) gets
    /// every record from producer threads that push with random pauses, and never
    /// sleeps through a push: it has no poll, so each turn after a park must come from a
    /// ring (or, at the end, the stop).
    #[test]
    fn a_glommio_consumer_is_woken_by_pushes_from_other_threads() {
        const PRODUCERS: u64 = 4;
        const MESSAGES: u64 = 5_000;
        let bell = Doorbell::new();
        let mut rings = Vec::new();
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let (tx, rx) = ring_with::<u64>(format!("p{p}"), 8, &bell);
            rings.push(rx);
            producers.push(tx);
        }
        let stop = Stop::new();
        let consumer = {
            let stop = stop.clone();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("consumer-test")
                .spawn(move || async move {
                    let mut c = Collect {
                        got: Vec::new(),
                        turns: 0,
                        finished: false,
                    };
                    run_local(Rings::new(rings, 4, None, false), &stop, &mut c).await;
                    c
                })
                .unwrap()
        };
        let started = Instant::now();
        let threads: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(p, tx)| {
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(p as u64);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut i = 0;
                    while i < MESSAGES && Instant::now() < deadline {
                        if tx.push(p as u64 * MESSAGES + i).is_ok() {
                            i += 1;
                        } else {
                            std::thread::yield_now();
                        }
                        if rng.u8(0..20) == 0 {
                            std::thread::sleep(Duration::from_micros(rng.u64(1..300)));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The request alone wakes the parked consumer (it has no stop poll).
        stop.request();
        let c = consumer.join().unwrap();
        let elapsed = started.elapsed();
        let mut got = c.got.clone();
        got.sort_unstable();
        assert_eq!(got, (0..PRODUCERS * MESSAGES).collect::<Vec<_>>());
        assert!(c.finished);
        // About 1,000 pauses of up to 300 µs per producer: well under a second of
        // pausing. A consumer that slept through a push would sleep until the next one,
        // and through the last push until the stop: the producers, their rings full,
        // would wait out their 60 s deadline and the records would be missing.
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
        assert!(bell.wakeups() > 0);
    }

    /// A busy-polling consumer on a glommio executor leaves the executor's socket I/O
    /// to run. The executor spins in its own reactor (`spin_before_park`), which reaps
    /// socket completions, timers and wake-ups from other threads; a consumer that spun
    /// by yielding instead would keep its task queue from ever emptying, and the
    /// executor would reap a socket's completion only when its preemption timer fired
    /// (100 ms by default), as the shard's feed read did with the dashboard on its
    /// executor.
    #[test]
    fn a_busy_polling_consumer_leaves_socket_io_to_run() {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        use std::io::{Read, Write};
        const ROUNDS: usize = 50;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut b = [0u8; 1];
            for _ in 0..ROUNDS {
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
            }
        });
        let bell = Doorbell::new();
        let (_tx, rx) = ring_with::<u64>("idle", 8, &bell);
        let stop = Stop::new();
        let took = {
            let stop = stop.clone();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("busy-consumer-test")
                .spin_before_park(Duration::from_secs(1))
                .spawn(move || async move {
                    let consumer = glommio::spawn_local({
                        let stop = stop.clone();
                        async move {
                            let mut c = Collect {
                                got: Vec::new(),
                                turns: 0,
                                finished: false,
                            };
                            run_local(Rings::new(vec![rx], 4, None, true), &stop, &mut c).await;
                        }
                    });
                    let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
                    let started = Instant::now();
                    let mut b = [7u8; 1];
                    for _ in 0..ROUNDS {
                        s.write_all(&b).await.unwrap();
                        s.read_exact(&mut b).await.unwrap();
                    }
                    let took = started.elapsed();
                    stop.request();
                    consumer.await;
                    took
                })
                .unwrap()
                .join()
                .unwrap()
        };
        echo.join().unwrap();
        // 50 loopback round trips take milliseconds; with each read reaped only at a
        // preemption, they took seconds.
        assert!(
            took < Duration::from_millis(1_500),
            "{ROUNDS} round trips took {took:?}"
        );
    }

    /// Every waiter of a stop wakes when it is requested, wherever it waits: tasks on
    /// two glommio executors and a plain thread. A wait begun after the request
    /// completes at once, and a dropped wait leaves no waker behind.
    #[test]
    fn a_stop_request_wakes_every_waiter_on_every_thread() {
        let stop = Stop::new();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut executors = Vec::new();
        for n in 0..2 {
            let stop = stop.clone();
            let done = done_tx.clone();
            executors.push(
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .name(&format!("stop-test-{n}"))
                    .spawn(move || async move {
                        let tasks: Vec<_> = (0..3)
                            .map(|_| {
                                let stop = stop.clone();
                                let done = done.clone();
                                glommio::spawn_local(async move {
                                    stop.wait().await;
                                    done.send(()).unwrap();
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await;
                        }
                    })
                    .unwrap(),
            );
        }
        let thread = {
            let stop = stop.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                futures_lite::future::block_on(stop.wait());
                done.send(()).unwrap();
            })
        };
        // A wait polled once and dropped unregisters itself.
        {
            let mut wait = std::pin::pin!(stop.wait());
            let waker = crate::ring::thread_waker();
            let polled = wait.as_mut().poll(&mut Context::from_waker(&waker));
            assert!(polled.is_pending());
        }
        // Every waiter is registered before the request (7 = 6 tasks and the thread).
        let deadline = Instant::now() + Duration::from_secs(10);
        while stop.lock().wakers.len() < 7 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            stop.lock().wakers.len(),
            7,
            "the dropped wait left its waker"
        );
        assert!(
            done_rx.try_recv().is_err(),
            "nobody wakes before the request"
        );
        stop.request();
        for n in 0..7 {
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("waiter {n} of 7 was not woken"));
        }
        for e in executors {
            e.join().unwrap();
        }
        thread.join().unwrap();
        assert!(stop.lock().wakers.is_empty());
        futures_lite::future::block_on(stop.wait());
    }

    /// A stop's sleep runs its whole time when nobody stops it, and ends at the request.
    #[test]
    fn a_stop_sleep_ends_at_its_time_or_at_the_request() {
        let stop = Stop::new();
        let (first_done, first) = std::sync::mpsc::channel();
        let sleeper = {
            let stop = stop.clone();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("sleep-test")
                .spawn(move || async move {
                    first_done
                        .send(stop.sleep(Duration::from_millis(5)).await)
                        .unwrap();
                    let started = Instant::now();
                    let cut = !stop.sleep(Duration::from_secs(60)).await;
                    (cut, started.elapsed())
                })
                .unwrap()
        };
        let full = first.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(full, "nobody stopped the first sleep");
        std::thread::sleep(Duration::from_millis(20));
        stop.request();
        let (cut, slept) = sleeper.join().unwrap();
        assert!(cut, "the request ended the second");
        assert!(slept < Duration::from_secs(30), "{slept:?}");
    }

    /// Requests racing with waits that are just registering, with random pauses on both
    /// sides: no wait sleeps through its request.
    #[test]
    fn no_wait_sleeps_through_a_racing_stop_request() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..300 {
            let stop = Stop::new();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let waiter = {
                let stop = stop.clone();
                let pause = rng.u64(0..50);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(pause));
                    futures_lite::future::block_on(stop.wait());
                    done_tx.send(()).unwrap();
                })
            };
            std::thread::sleep(Duration::from_micros(rng.u64(0..50)));
            stop.request();
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("round {round}: the waiter slept through the stop"));
            waiter.join().unwrap();
        }
    }

    /// A local event wakes its waiter, keeps a notification given while nobody waits,
    /// and folds repeated notifications into one wake-up.
    #[test]
    fn a_local_event_wakes_its_waiter_and_keeps_an_early_notification() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("event-test")
            .spawn(|| async {
                let event = std::rc::Rc::new(LocalEvent::new());
                // Given before the wait: kept.
                event.notify();
                event.wait().await;
                // Given while the waiter sleeps: wakes it.
                let notifier = {
                    let event = event.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                        event.notify();
                        event.notify();
                    })
                };
                event.wait().await;
                notifier.await;
                // The two notifications were one: the next wait sleeps until the timer.
                let woken = futures_lite::future::or(
                    async {
                        event.wait().await;
                        true
                    },
                    async {
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                        false
                    },
                )
                .await;
                assert!(!woken, "a consumed notification woke the waiter again");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn next_min_takes_the_earlier() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert_eq!(Next::Idle.min(Next::At(t)), Next::At(t));
        assert_eq!(Next::At(later).min(Next::At(t)), Next::At(t));
        assert_eq!(Next::At(t).min(Next::Now), Next::Now);
        assert_eq!(Next::Idle.min(Next::Idle), Next::Idle);
    }

    /// A parked thread consumer is woken by each push, sleeps while idle (no turn at all:
    /// it has no poll), drains everything at stop, and is woken by the stop request
    /// alone.
    #[test]
    fn a_thread_consumer_wakes_on_push_and_sleeps_when_idle() {
        let bell = Doorbell::new();
        let (a, ra) = ring_with::<u64>("a", 64, &bell);
        let (b, rb) = ring_with::<u64>("b", 64, &bell);
        let stop = Stop::new();
        let turns = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (done_tx, done) = std::sync::mpsc::channel();
        {
            let (stop, turns) = (stop.clone(), turns.clone());
            std::thread::spawn(move || {
                struct Counted(Collect, Arc<std::sync::atomic::AtomicU64>);
                impl Consume<u64> for Counted {
                    fn turn(&mut self, turn: Turn<'_, u64>) -> Next {
                        self.1.fetch_add(1, Ordering::Relaxed);
                        self.0.turn(turn)
                    }
                    fn finish(&mut self) {
                        self.0.finish()
                    }
                }
                let mut c = Counted(
                    Collect {
                        got: Vec::new(),
                        turns: 0,
                        finished: false,
                    },
                    turns,
                );
                run_thread(Rings::new(vec![ra, rb], 16, None, false), &stop, &mut c);
                done_tx.send(c.0).unwrap();
            });
        }
        // 50 ms to settle after its last turn, then none in `window`: it has no poll.
        let stays_idle = |window: u64| {
            std::thread::sleep(Duration::from_millis(50));
            let from = turns.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(window));
            assert_eq!(
                turns.load(Ordering::Relaxed),
                from,
                "an idle consumer turned"
            );
        };
        stays_idle(300);
        let woken_before = bell.wakeups();
        for i in 0..100u64 {
            let target = if i % 2 == 0 { &a } else { &b };
            target.push(i).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        // Idle again, then the request alone (no doorbell) ends it.
        stays_idle(100);
        stop.request();
        let c = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the stop request woke the parked consumer");
        assert!(c.finished);
        let mut got = c.got.clone();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        // Most pushes found the consumer parked (5 ms apart) and woke it.
        assert!(
            bell.wakeups() - woken_before >= 50,
            "{} wake-ups for 100 pushes",
            bell.wakeups() - woken_before
        );
        // 100 pushes: about as many turns, not a spinning loop's or a timer's.
        assert!(c.turns < 400, "{} turns", c.turns);
    }
}
