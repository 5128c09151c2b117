//! The connection pool of one shard: one supervisor per connection slot keeps a live
//! connection for its share of the streams, reconnects with backoff, and rotates
//! make-before-break on `serverShutdown` or at the age limit.
//!
//! Runs on: the shard core's glommio executor. Owns: the slots' supervisors and the
//! shard's connection-attempt limiter. In: the stream assignment. Out: connection tasks
//! feeding the shard state; counters in [`crate::metrics::ShardStats`].
//!
//! Rotation: the replacement connects and subscribes while the old connection keeps
//! delivering; once the replacement is live (every subscription acknowledged) both run
//! for the overlap time, then the old one closes. Events seen on both are de-duplicated
//! by the shard on their natural keys, so nothing is lost or doubled.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_rustls::rustls;
use glommio::task::JoinHandle;

use super::connection::{self, ConnHandle, Endpoint, Phase, SessionCtx, SessionEnd};
use crate::backoff::{AttemptLimiter, Backoff};
use crate::consumer::Stop;
use crate::metrics::ShardStats;

/// A replacement that is not live within this is abandoned; the old connection stays.
const REPLACEMENT_DEADLINE: Duration = Duration::from_secs(30);

/// One live connection as the supervisor holds it.
struct Live {
    handle: Rc<ConnHandle>,
    task: JoinHandle<SessionEnd>,
}

/// Shared by the supervisors of one shard.
pub struct PoolCtx {
    pub session: SessionCtx,
    pub endpoint: Endpoint,
    pub tls: Arc<rustls::ClientConfig>,
    pub stop: Stop,
    /// Shared by every shard of the process: Binance counts attempts per IP. Locked
    /// only around a connection attempt (control path, never per message).
    limiter: Arc<Mutex<AttemptLimiter>>,
    next_conn_id: Cell<u64>,
}

impl PoolCtx {
    pub fn new(
        session: SessionCtx,
        endpoint: Endpoint,
        tls: Arc<rustls::ClientConfig>,
        limiter: Arc<Mutex<AttemptLimiter>>,
        stop: Stop,
    ) -> PoolCtx {
        PoolCtx {
            session,
            endpoint,
            tls,
            stop,
            limiter,
            next_conn_id: Cell::new(1),
        }
    }

    fn stats(&self) -> Arc<ShardStats> {
        self.session.shard.borrow().stats().clone()
    }

    fn stopping(&self) -> bool {
        self.stop.requested()
    }

    /// Sleeps for `total`, or until the stop is requested.
    async fn pause(&self, total: Duration) {
        self.stop.sleep(total).await;
    }

    /// Sleeps until one of `handles` has something for its supervisor to look at (see
    /// [`ConnHandle::changed`]), `deadline` passes or the stop is requested.
    async fn watch(&self, handles: &[&ConnHandle], deadline: Option<Instant>) {
        let changed = future::poll_fn(|cx| {
            if handles.iter().any(|h| h.changed.poll_wait(cx).is_ready()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let timer_or_stop = async {
            match deadline {
                Some(at) => {
                    self.stop
                        .sleep(at.saturating_duration_since(Instant::now()))
                        .await;
                }
                None => self.stop.wait().await,
            }
        };
        future::or(changed, timer_or_stop).await;
    }

    /// One connection attempt (respecting the attempt limiter); spawns its session.
    async fn open(self: &Rc<Self>, streams: &[String]) -> Result<Live, connection::FeedError> {
        let stats = self.stats();
        let mut warned = false;
        loop {
            if self.stopping() {
                return Err(connection::FeedError::Stopped);
            }
            let wait = {
                let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                let wait = limiter.delay(Instant::now());
                if wait.is_zero() {
                    limiter.record(Instant::now());
                }
                wait
            };
            if wait.is_zero() {
                break;
            }
            if !warned {
                tracing::warn!(?wait, "connection attempts at their limit; waiting");
                warned = true;
            }
            self.pause(wait).await;
        }
        stats.connection_attempts.inc();
        let ws = connection::connect(&self.endpoint, &self.session.feed, &self.tls).await?;
        let id = self.next_conn_id.get();
        self.next_conn_id.set(id + 1);
        let handle = Rc::new(ConnHandle::new(id));
        stats.connections_active.inc();
        let ctx = self.clone();
        let h = handle.clone();
        let streams = streams.to_vec();
        let task = glommio::spawn_local(async move {
            let end = connection::run_session(ws, streams, &ctx.session, &h).await;
            ctx.stats().connections_active.dec();
            end
        })
        .detach();
        Ok(Live { handle, task })
    }
}

/// Keeps one slot's streams on a live connection until `stop` is set.
pub async fn supervise(ctx: Rc<PoolCtx>, slot: usize, streams: Vec<String>) {
    let feed = &ctx.session.feed;
    let stats = ctx.stats();
    let mut backoff = Backoff::new(
        Duration::from_millis(feed.backoff_initial_ms),
        Duration::from_millis(feed.backoff_max_ms),
        Duration::from_secs_f64(feed.backoff_stable_s),
    );
    let overlap = Duration::from_secs_f64(feed.rotation_overlap_s);
    let mut current: Option<Live> = None;
    let mut ever_connected = false;
    // The connection that ended had announced `serverShutdown` before the replacement
    // was up: its successor is a rotation the exchange started, not a reconnect.
    let mut shutdown_rotation = false;
    // Exchange time of the last event before a connection was lost, until the next
    // connection delivers its first event and the outage span can be recorded.
    let mut outage_from_us: Option<i64> = None;

    while !ctx.stopping() {
        let Some(live) = current.as_ref() else {
            match ctx.open(&streams).await {
                Ok(live) => {
                    if shutdown_rotation {
                        stats.rotations.inc();
                    } else if ever_connected {
                        stats.reconnects.inc();
                    }
                    shutdown_rotation = false;
                    ever_connected = true;
                    tracing::info!(
                        slot,
                        conn = live.handle.id,
                        streams = streams.len(),
                        "connected"
                    );
                    current = Some(live);
                }
                Err(e) => {
                    stats.connect_failures.inc();
                    let delay = backoff.next_delay(fastrand::f64());
                    tracing::warn!(slot, error = %e, ?delay, "connect failed; retrying");
                    ctx.pause(delay).await;
                }
            }
            continue;
        };

        if let Some(from) = outage_from_us {
            let to = live.handle.first_event_us.get();
            if to != 0 {
                let now_ns = crate::clock::mono_ns();
                ctx.session
                    .shard
                    .borrow_mut()
                    .record_outage(slot, from, to, now_ns);
                outage_from_us = None;
            }
        }

        if live.handle.phase.get() == Phase::Ended {
            let end = live.handle.end.borrow().clone();
            let last = live.handle.last_event_us.get();
            if outage_from_us.is_none() && last != 0 {
                outage_from_us = Some(last);
            }
            // Diff events may be lost until the next connection's first one: the
            // books of its depth streams resynchronise.
            ctx.session
                .shard
                .borrow_mut()
                .depth_streams_lost(&streams, crate::clock::mono_ns());
            tracing::warn!(
                slot,
                conn = live.handle.id,
                ?end,
                "connection ended; reconnecting"
            );
            let announced = live.handle.server_shutdown.get();
            let connected_at = live.handle.connected_at;
            current = None;
            if announced {
                // The exchange said it would close this connection (`serverShutdown`)
                // and did so before the replacement was live: replace it at once, and
                // count a rotation. Its outage, if any, is backfilled as usual.
                shutdown_rotation = true;
                continue;
            }
            backoff.connection_ended(connected_at, Instant::now());
            let delay = backoff.next_delay(fastrand::f64());
            ctx.pause(delay).await;
            continue;
        }

        if let Some(reason) = live.handle.rotate.get() {
            tracing::info!(slot, conn = live.handle.id, ?reason, "rotating connection");
            match rotate(&ctx, live, &streams, overlap).await {
                Rotation::Replaced(next) => {
                    stats.rotations.inc();
                    if let Some(old) = current.replace(next) {
                        old.handle.request_close();
                        let _ = old.task.await;
                    }
                }
                Rotation::OldEnded(next) => {
                    // The old connection went before the replacement was ready: its
                    // last event starts an outage that the replacement's first ends.
                    stats.rotations.inc();
                    if let Some(old) = current.replace(next) {
                        let last = old.handle.last_event_us.get();
                        if outage_from_us.is_none() && last != 0 {
                            outage_from_us = Some(last);
                        }
                        let _ = old.task.await;
                    }
                }
                Rotation::Failed => {
                    // No replacement could be made live: keep the old connection until
                    // it ends (then reconnect as usual); try again after a backoff.
                    live.handle.rotation_failed();
                    ctx.pause(backoff.next_delay(fastrand::f64())).await;
                }
            }
            continue;
        }
        // Nothing to do until the connection has news (it ended, asks for a rotation,
        // delivered its first event) or the stop comes.
        ctx.watch(&[&live.handle], None).await;
    }

    if let Some(live) = current {
        live.handle.request_close();
        let _ = live.task.await;
    }
}

/// How a rotation ended.
enum Rotation {
    /// The replacement is live and overlapped with the old connection.
    Replaced(Live),
    /// The old connection ended first; the replacement takes over at once.
    OldEnded(Live),
    /// No replacement became live in time (it was closed).
    Failed,
}

/// Opens a replacement, waits until it is live (every subscription acknowledged), then
/// lets both connections overlap. Watches the old connection throughout.
async fn rotate(ctx: &Rc<PoolCtx>, old: &Live, streams: &[String], overlap: Duration) -> Rotation {
    let next = match ctx.open(streams).await {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "replacement connection failed");
            return Rotation::Failed;
        }
    };
    let deadline = Instant::now() + REPLACEMENT_DEADLINE;
    while next.handle.phase.get() == Phase::Subscribing
        && Instant::now() < deadline
        && !ctx.stopping()
    {
        if old.handle.phase.get() == Phase::Ended {
            return Rotation::OldEnded(next);
        }
        ctx.watch(&[&next.handle, &old.handle], Some(deadline))
            .await;
    }
    if next.handle.phase.get() != Phase::Live {
        next.handle.request_close();
        let _ = next.task.await;
        return Rotation::Failed;
    }
    ctx.pause(overlap).await;
    match (next.handle.phase.get(), old.handle.phase.get()) {
        (Phase::Live, Phase::Ended) => Rotation::OldEnded(next),
        (Phase::Live, _) => Rotation::Replaced(next),
        _ => {
            // The replacement died during the overlap: keep the old one.
            let _ = next.task.await;
            Rotation::Failed
        }
    }
}
