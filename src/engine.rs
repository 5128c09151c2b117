//! Starts every role on its core and stops them cleanly.
//!
//! Runs on: the main thread (control plane). Owns: the role threads and executors.
//! Shard cores each get a glommio executor (pinned when the layout pins) running their
//! feed; each sink role (see [`SinkRole`]) drains its own ring from every shard on a
//! plain thread pinned to its core; the dashboard gets a glommio executor on its core
//! and keeps the recent store. Roles talk only through the rings (each carrying only
//! the record kinds its consumer takes, each consumer woken by one doorbell) and
//! read-only views.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::backfill::{self, RestPlan, RestStats, ShardLink, TradeKind};
use crate::config::Config;
use crate::consumer::{LocalPark, Stop};
use crate::dashboard::status::{ShardView, StatusContext};
use crate::feed;
use crate::latency::{Collector, Registry, Snapshot};
use crate::message::{Envelope, RecordKinds};
use crate::metrics::ShardStats;
use crate::ring::{self, Consumer, Doorbell, Producer};
use crate::shard::ShardState;
use crate::sinks::SinkStatus;
use crate::store::RecentStore;
use crate::topology::Layout;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("shard {shard}: {source}")]
    Capacity {
        shard: usize,
        source: feed::protocol::CapacityError,
    },
    #[error(
        "the shards need {needed} exchange connections but BINANCE_MAX_CONNECTIONS={allowed}: \
         raise it, raise feed.max_streams_per_connection (at most 1024), or use fewer shards"
    )]
    TooManyConnections { needed: usize, allowed: usize },
    #[error("cannot start the {role} executor: {why}")]
    Executor { role: String, why: String },
    #[error("cannot listen on {addr}: {why}; set DASHBOARD_ADDR to a free address")]
    Listen { addr: SocketAddr, why: String },
    #[error("cannot start the {role} thread: {source}")]
    Thread {
        role: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    #[error(transparent)]
    Database(#[from] crate::sinks::db::DbError),
    #[error("REST client: {0}")]
    Rest(#[from] backfill::RestError),
}

/// How long a stopping shard waits for the sink to take its last records.
const SHUTDOWN_HANDOVER: Duration = Duration::from_secs(10);

/// How often a shard retries records waiting for ring space (a sink fell behind).
const OVERFLOW_RETRY: Duration = Duration::from_millis(1);
/// How often a quiet shard does its housekeeping (hold timers, gap retries, its books)
/// while any of that has a deadline ([`ShardState::has_timed_work`]), when no REST
/// delivery wakes it sooner.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(250);
/// How often it does with none: its latency hand-off and its clock offset, which the
/// feed also does after every read while records come.
const IDLE_HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

pub use crate::sinks::{SinkIo, SinkRole, SinkRun};

/// A running engine.
pub struct Engine {
    stop: Stop,
    shards: Vec<ExecutorJoinHandle<()>>,
    dashboard: Option<ExecutorJoinHandle<()>>,
    sinks: Vec<std::thread::JoinHandle<()>>,
    /// The REST thread (warm starts and backfill).
    rest: Option<std::thread::JoinHandle<()>>,
    /// Stops the sinks; requested only after the shards have handed everything over.
    sink_stop: Option<Stop>,
    dashboard_addr: SocketAddr,
    status: Arc<StatusContext>,
    collector: Option<std::thread::JoinHandle<()>>,
    collector_stop: Arc<AtomicBool>,
    /// What settles every role's latency recorders and has the collector merge now.
    merge_asker: crate::latency::MergeAsker,
    dashboard_stats: Arc<crate::dashboard::fanout::DashboardStats>,
}

/// With busy polling, an idle executor spins this long before it sleeps in io_uring:
/// on an isolated core, a socket read or a doorbell then costs no wake-up.
const BUSY_SPIN: Duration = Duration::from_secs(1);

/// Whether consumers and executors spin: asked by the configuration or the shard map.
fn busy_poll(config: &Config, layout: &Layout) -> bool {
    config.engine.busy_poll || layout.busy_poll
}

fn spin_before_park(config: &Config, layout: &Layout) -> Duration {
    if busy_poll(config, layout) {
        BUSY_SPIN
    } else {
        Duration::ZERO
    }
}

fn placement(layout: &Layout, core: Option<usize>) -> Placement {
    match core {
        Some(c) if layout.pinned => Placement::Fixed(c),
        _ => Placement::Unbound,
    }
}

/// The stream table of a shard: every stream its connections subscribe, a kline
/// stream tied to its series (symbols × timeframes, in the shard state's order).
fn stream_table(
    streams: &[String],
    symbols: &[crate::market::Symbol],
    timeframes: &[crate::market::Interval],
) -> Box<[crate::metrics::StreamStats]> {
    let series: Vec<String> = symbols
        .iter()
        .flat_map(|s| {
            timeframes
                .iter()
                .map(move |tf| format!("{}@kline_{}", s.lower(), tf))
        })
        .collect();
    crate::metrics::StreamStats::table(streams, |name| series.iter().position(|s| s == name))
}

/// The streams of each shard's connections: as few connections as each shard's
/// streams need, together within `BINANCE_MAX_CONNECTIONS`. A configuration error
/// otherwise (checked by `config check` as well as at startup).
pub fn plan_connections(
    config: &Config,
    layout: &Layout,
) -> Result<Vec<Vec<Vec<String>>>, EngineError> {
    let mut out = Vec::with_capacity(layout.shards.len());
    for plan in &layout.shards {
        let assignments =
            feed::plan_connections(config, &plan.symbols, config.binance_max_connections).map_err(
                |source| EngineError::Capacity {
                    shard: plan.index,
                    source,
                },
            )?;
        out.push(assignments);
    }
    let needed: usize = out.iter().map(Vec::len).sum();
    if needed > config.binance_max_connections {
        return Err(EngineError::TooManyConnections {
            needed,
            allowed: config.binance_max_connections,
        });
    }
    Ok(out)
}

impl Engine {
    pub fn start(config: &Config, layout: &Layout) -> Result<Engine, EngineError> {
        Engine::start_with_remote(config, layout, Vec::new())
    }

    /// [`Engine::start`], with extra dashboard feeds: rings of records from other
    /// instances (`shard == REMOTE_SHARD`), which the dashboard broadcasts like its own.
    pub fn start_with_remote(
        config: &Config,
        layout: &Layout,
        remote_feeds: Vec<Consumer<Envelope>>,
    ) -> Result<Engine, EngineError> {
        // TLS files of the dashboard are read here, on the control plane.
        let dashboard_options = crate::dashboard::Options::from_config(config)?;
        let mut dashboard_feeds = remote_feeds;
        // Validate the URL before any thread starts, so a typo is one clear error.
        feed::connection::Endpoint::new(&config.binance_ws_url, config.feed.time_unit_microsecond)?;
        // TLS settings (and any extra CA file) are read here, on the control plane:
        // file reads never run on a shard's executor.
        let tls = feed::connection::tls_config(config.feed.tls_ca_file.as_deref())?;
        let stop = Stop::new();
        let store = Arc::new(Mutex::new(
            RecentStore::new(config.engine.recent_candles)
                .with_max_series(config.engine.max_series),
        ));
        // Binance counts connection attempts per IP: one limiter for every shard, and
        // each instance of a scale-out deployment takes its share.
        let limiter = Arc::new(Mutex::new(crate::backoff::AttemptLimiter::new(
            crate::backoff::BINANCE_ATTEMPT_WINDOW,
            crate::backoff::DEFAULT_ATTEMPT_LIMIT / config.engine.instance_count.max(1) as usize,
        )));

        // Every local book's latest view: written by its shard, read by the dashboard
        // and the Redis publisher.
        let book_symbols: Vec<_> = config
            .books
            .symbols
            .iter()
            .copied()
            .filter(|s| config.instance_symbols().contains(s))
            .collect();
        let book_board = Arc::new(crate::book::board::Board::new(&book_symbols));

        let latency = Registry::new();
        let collector = Collector::new(latency.clone());
        let latency_snapshot: Arc<Mutex<Snapshot>> = collector.snapshot();
        let collector_stop = Arc::new(AtomicBool::new(false));
        let (collector, merge_asker) =
            collector
                .spawn(collector_stop.clone())
                .map_err(|source| EngineError::Thread {
                    role: "latency collector",
                    source,
                })?;
        // The dashboard core drains every shard's dashboard ring (and the bridge's) and
        // is woken by one doorbell; it keeps the recent store, so its rings carry every
        // record kind.
        let dashboard_bell = Doorbell::new();
        let roles = sink_roles(
            config,
            layout,
            &store,
            &book_board,
            &mut dashboard_feeds,
            &dashboard_bell,
        )?;
        let role_bells: Vec<Doorbell> = roles.iter().map(|_| Doorbell::new()).collect();
        // The query worker shares the writer core: both are control-plane database work.
        let queries = match &config.database_url {
            Some(url) => Some(
                crate::sinks::db::query::QueryClient::spawn_holding(
                    url.clone(),
                    layout.writer_core.filter(|_| layout.pinned),
                    config.database.hold_connections,
                )
                .map_err(|source| EngineError::Thread {
                    role: "db-query",
                    source,
                })?,
            ),
            None => None,
        };

        // REST: one control-plane thread for warm starts, gap backfill and catch-up,
        // delivering through bounded queues the shards drain.
        let warm_candles = if config.signals.enabled {
            config.signals.warm_candles
        } else {
            0
        };
        // One bound on the exchange's times for the shards and the REST thread; a
        // faster exchange's lead is allowed to grow from now.
        let clock = config.feed.clock_bound(crate::clock::mono_ns());
        let rest_agent = backfill::agent(config.feed.tls_ca_file.as_deref())?;
        // The kinds of trades received and stored: holes in their ids and the ones made
        // while no engine ran are fetched over REST.
        let stored = config.database.store_trades && config.database_url.is_some();
        let stored_trades: Vec<TradeKind> = [
            (TradeKind::Aggregate, config.feed.streams.agg_trade),
            (TradeKind::Raw, config.feed.streams.trade),
        ]
        .into_iter()
        .filter_map(|(kind, received)| (received && stored).then_some(kind))
        .collect();
        let rest_stats = Arc::new(RestStats::default());
        let mut rest_plan = RestPlan {
            rest_url: config.binance_rest_url.clone(),
            warm_candles,
            weight_share: config.feed.rest_weight_per_minute as f64
                / f64::from(backfill::scheduler::EXCHANGE_WEIGHT_1M),
            // Its one startup query opens and closes its own connection.
            database: config.database_url.clone().map(|url| {
                Box::new(crate::sinks::db::rest::RestDb::new(url))
                    as Box<dyn backfill::RestDatabase>
            }),
            shards: Vec::new(),
            clock,
            trade_catch_up: stored_trades.clone(),
        };

        let mut views = Vec::new();
        let mut consumers: Vec<Vec<Consumer<Envelope>>> =
            roles.iter().map(|_| Vec::new()).collect();
        let mut plans = Vec::new();
        let connection_plan = plan_connections(config, layout)?;
        for (plan, assignments) in layout.shards.iter().zip(connection_plan) {
            let mut producers: Vec<(Producer<Envelope>, RecordKinds)> = Vec::new();
            let mut lossy: Vec<RecordKinds> = Vec::new();
            for ((role, rings), bell) in roles.iter().zip(&mut consumers).zip(&role_bells) {
                let (tx, rx) = ring::ring_with::<Envelope>(
                    format!("shard{}->{}", plan.index, role.name),
                    config.max_queue_size,
                    bell,
                );
                producers.push((tx, role.kinds));
                lossy.push(role.lossy);
                rings.push(rx);
            }
            // The dashboard drains its rings on its own executor (not on a sink thread):
            // one more ring per shard, made here rather than as a SinkRole.
            let (tx, rx) = ring::ring_with::<Envelope>(
                format!("shard{}->dashboard", plan.index),
                config.max_queue_size,
                &dashboard_bell,
            );
            // Trades reach the dashboard at most once: never held for it.
            producers.push((tx, RecordKinds::ALL));
            lossy.push(RecordKinds::TRADES);
            dashboard_feeds.push(rx);
            let stats = Arc::new(ShardStats::default());
            let _ = stats.streams.set(stream_table(
                &assignments.concat(),
                &plan.symbols,
                &config.timeframes,
            ));
            views.push(ShardView {
                index: plan.index,
                core: if layout.pinned { plan.core } else { None },
                symbols: plan.symbols.clone(),
                slots: assignments.len(),
                streams: assignments.iter().map(Vec::len).sum(),
                stats: stats.clone(),
                rings: producers.iter().map(|(p, _)| p.view()).collect(),
            });
            let link = ShardLink::default();
            let series = plan
                .symbols
                .iter()
                .flat_map(|s| config.timeframes.iter().map(|tf| (*s, *tf)))
                .collect();
            rest_plan.shards.push((series, link.clone()));
            plans.push((plan.clone(), assignments, (producers, lossy), stats, link));
        }

        // Room for every series now, while no feed is connected: the first burst then
        // does not grow and rehash the recent store's map; its memory is allocated here,
        // on the control plane.
        let series: usize =
            plans.iter().map(|p| p.0.symbols.len()).sum::<usize>() * config.timeframes.len();
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve_series(series);
        let sink_status: Vec<Arc<dyn SinkStatus>> =
            roles.iter().filter_map(|r| r.status.clone()).collect();
        let sink_stop = Stop::new();
        let mut sinks = Vec::new();
        for (role, rings) in roles.into_iter().zip(consumers) {
            let io = SinkIo {
                rings,
                stop: sink_stop.clone(),
                latency: latency.recorder(role.name),
                busy_poll: busy_poll(config, layout),
            };
            let (core, run) = (role.core, role.run);
            let handle = std::thread::Builder::new()
                .name(format!("{}-sink", role.name))
                .spawn(move || {
                    if let Some(id) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id });
                    }
                    run(io);
                })
                .map_err(|source| EngineError::Thread {
                    role: role.name,
                    source,
                })?;
            sinks.push(handle);
        }

        let status = Arc::new(StatusContext {
            started: Instant::now(),
            shards: views,
            store,
            timeframes: config.timeframes.clone(),
            database_state: if queries.is_some() {
                "postgres"
            } else {
                "memory"
            },
            redis_state: "off",
            sink_status,
            latency: latency_snapshot,
            queries,
            rest: rest_stats.clone(),
            stream_silence_ns: (config.feed.stream_silence_s * 1e9) as u64,
            exchange_speed: config.feed.exchange_speed,
            books: book_board.clone(),
        });
        let dashboard_stats = Arc::new(crate::dashboard::fanout::DashboardStats::default());
        let mut dashboard_options = dashboard_options;
        dashboard_options.latency = Some(latency.clone());
        dashboard_options.busy_poll = busy_poll(config, layout);
        let (addr_tx, addr_rx) = mpsc::channel();
        let dashboard_job = DashboardJob {
            addr: config.dashboard_addr,
            status: status.clone(),
            feeds: dashboard_feeds,
            options: dashboard_options,
            stats: dashboard_stats.clone(),
            stop: stop.clone(),
            bound: addr_tx,
        };
        // With `engine.dashboard_on_shard` (as the layout resolved it) the dashboard runs
        // on the first shard's executor: its records then reach it without a wake-up
        // across cores.
        let (mut cohosted, own_dashboard) =
            if layout.dashboard_on_shard && !layout.shards.is_empty() {
                (Some(dashboard_job), None)
            } else {
                (None, Some(dashboard_job))
            };

        let mut shards = Vec::new();
        for (plan, assignments, (tx, lossy), stats, rest_link) in plans {
            let recorder = latency.recorder(format!("shard{}", plan.index));
            let spin = spin_before_park(config, layout);
            let config = config.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            let limiter = limiter.clone();
            let name = format!("shard-{}", plan.index);
            let board = book_board.clone();
            let stored_trades = stored_trades.clone();
            let dashboard_here = if plan.index == 0 {
                cohosted.take()
            } else {
                None
            };
            let handle = LocalExecutorBuilder::new(placement(layout, plan.core))
                .name(&name)
                .spin_before_park(spin)
                .io_memory(crate::topology::ENGINE_IO_MEMORY_BYTES)
                .spawn(move || async move {
                    let dashboard = dashboard_here.map(|job| glommio::spawn_local(job.run()));
                    let deliveries = rest_link.clone();
                    let mut state = ShardState::with_outlets(
                        plan.index as u16,
                        &plan.symbols,
                        &config.timeframes,
                        tx,
                        stats,
                    )
                    .with_signals(&config.signals)
                    .with_rest(rest_link)
                    .with_books(&config.books, board, crate::clock::mono_ns());
                    for kind in TradeKind::ALL {
                        state = state.with_trade_backfill(kind, stored_trades.contains(&kind));
                    }
                    state.set_lossy_kinds(&lossy);
                    state.set_hold(Duration::from_secs_f64(config.feed.backfill_hold_s));
                    state.set_latency(recorder);
                    state.set_clock_bound(clock, crate::shard::wall_offset_us());
                    let state = Rc::new(RefCell::new(state));
                    // The sockets' reads flush the rings as they go; this task applies
                    // REST deliveries as they are rung in, retries records waiting for
                    // ring space, and does the housekeeping of a quiet shard.
                    let flusher = {
                        let state = state.clone();
                        let stop = stop.clone();
                        glommio::spawn_local(async move {
                            let mut park = LocalPark::new();
                            let bells = [deliveries.delivered.clone()];
                            let mut waiting = 0;
                            while !stop.requested() {
                                let wait = if waiting > 0 {
                                    OVERFLOW_RETRY
                                } else if state.borrow().has_timed_work() {
                                    HOUSEKEEPING_EVERY
                                } else {
                                    IDLE_HOUSEKEEPING_EVERY
                                };
                                // Deliveries the outlets have no room for wait
                                // (for the next flush), not wake this loop.
                                let ready = || state.borrow().rest_deliveries_ready();
                                park.wait(&bells, ready, wait, &stop).await;
                                let mut state = state.borrow_mut();
                                state.apply_rest_deliveries(crate::clock::mono_ns());
                                waiting = state.flush(crate::clock::mono_ns());
                                state
                                    .stats()
                                    .allocations
                                    .set(crate::alloc::thread_allocations());
                            }
                        })
                    };
                    if let Err(e) =
                        feed::run(&config, state.clone(), assignments, tls, limiter, stop).await
                    {
                        tracing::error!(shard = plan.index, error = %e, "feed stopped");
                    }
                    flusher.await;
                    // Hand over anything still waiting for ring space before exiting;
                    // the sink keeps draining until every shard has stopped.
                    let deadline = std::time::Instant::now() + SHUTDOWN_HANDOVER;
                    let mut left = state.borrow_mut().flush(crate::clock::mono_ns());
                    while left > 0 && std::time::Instant::now() < deadline {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        left = state.borrow_mut().flush(crate::clock::mono_ns());
                    }
                    if left > 0 {
                        tracing::error!(
                            shard = plan.index,
                            records = left,
                            "shutdown: records still waiting for the sink were dropped"
                        );
                    }
                    if let Some(dashboard) = dashboard {
                        dashboard.await;
                    }
                })
                .map_err(|e| EngineError::Executor {
                    role: name.clone(),
                    why: e.to_string(),
                })?;
            shards.push(handle);
        }

        let rest = Some(backfill::spawn(
            rest_plan,
            rest_agent,
            rest_stats,
            stop.flag().clone(),
        )?);

        let dashboard = match own_dashboard {
            Some(job) => Some(
                LocalExecutorBuilder::new(placement(layout, layout.dashboard_core))
                    .name("dashboard")
                    .spin_before_park(spin_before_park(config, layout))
                    .io_memory(crate::topology::ENGINE_IO_MEMORY_BYTES)
                    .spawn(move || job.run())
                    .map_err(|e| EngineError::Executor {
                        role: "dashboard".into(),
                        why: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let bound = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let mut engine = Engine {
            stop,
            shards,
            dashboard,
            sinks,
            rest,
            sink_stop: Some(sink_stop),
            dashboard_addr: config.dashboard_addr,
            status,
            collector: Some(collector),
            collector_stop,
            merge_asker,
            dashboard_stats,
        };
        match bound {
            Ok(addr) => {
                engine.dashboard_addr = addr;
                Ok(engine)
            }
            Err(why) => {
                engine.shutdown();
                Err(EngineError::Listen {
                    addr: config.dashboard_addr,
                    why,
                })
            }
        }
    }

    pub fn dashboard_addr(&self) -> SocketAddr {
        self.dashboard_addr
    }

    pub fn status(&self) -> &Arc<StatusContext> {
        &self.status
    }

    /// The dashboard's client and fan-out counters.
    pub fn dashboard_stats(&self) -> &Arc<crate::dashboard::fanout::DashboardStats> {
        &self.dashboard_stats
    }

    /// Brings every value the roles have recorded into the latency snapshot now
    /// ([`crate::latency::MergeAsker::settle`]): a measurement's window edge. False when
    /// a role still held values or the merge did not run within `timeout`.
    pub fn settle_latency(&self, timeout: std::time::Duration) -> bool {
        self.merge_asker.settle(timeout)
    }

    /// Asks every role to stop (returns at once).
    pub fn request_stop(&self) {
        self.stop.request();
    }

    /// Stops every role and waits for them: shards first, then the sink drains the rings.
    pub fn shutdown(&mut self) {
        self.request_stop();
        for h in self.shards.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.dashboard.take() {
            let _ = h.join();
        }
        if let Some(h) = self.rest.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        if let Some(s) = self.sink_stop.take() {
            s.request();
        }
        for h in self.sinks.drain(..) {
            let _ = h.join();
        }
        // Last: the roles handed their final figures over as they stopped.
        self.collector_stop.store(true, Ordering::Release);
        if let Some(h) = self.collector.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// The dashboard server and what it needs, run on its own executor or on the first
/// shard's (`engine.dashboard_on_shard`).
struct DashboardJob {
    addr: SocketAddr,
    status: Arc<StatusContext>,
    feeds: Vec<Consumer<Envelope>>,
    options: crate::dashboard::Options,
    stats: Arc<crate::dashboard::fanout::DashboardStats>,
    stop: Stop,
    /// Where the bound address (or why binding failed) goes.
    bound: mpsc::Sender<Result<SocketAddr, String>>,
}

impl DashboardJob {
    async fn run(self) {
        match glommio::net::TcpListener::bind(self.addr) {
            Ok(listener) => {
                let _ = self
                    .bound
                    .send(listener.local_addr().map_err(|e| e.to_string()));
                crate::dashboard::serve(
                    listener,
                    self.status,
                    self.feeds,
                    self.options,
                    self.stats,
                    self.stop,
                )
                .await;
            }
            Err(e) => {
                let _ = self.bound.send(Err(e.to_string()));
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sink roles the configuration asks for (the recent in-memory view is kept by the
/// dashboard core).
fn sink_roles(
    config: &Config,
    layout: &Layout,
    store: &Arc<Mutex<RecentStore>>,
    books: &Arc<crate::book::board::Board>,
    dashboard_feeds: &mut Vec<Consumer<Envelope>>,
    dashboard_bell: &Doorbell,
) -> Result<Vec<SinkRole>, EngineError> {
    let mut roles = Vec::new();
    if let Some(role) = crate::sinks::db::writer_role(config, layout)? {
        roles.push(role);
    }
    if let Some(settings) = crate::sinks::redis::RedisSettings::from_config(config) {
        // The bridge updates the shared store (the API reads it) and hands other
        // instances' records to the dashboard core for its WebSocket clients.
        let (to_dashboard, from_bridge) =
            ring::ring_with::<Envelope>("bridge->dashboard", config.max_queue_size, dashboard_bell);
        dashboard_feeds.push(from_bridge);
        roles.push(crate::sinks::redis::role(
            settings,
            layout,
            store.clone(),
            Some(to_dashboard),
            books.clone(),
        ));
    }
    Ok(roles)
}

/// Set by SIGINT/SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// The pipe the signal handler writes a byte to (read end, write end; -1 until it
/// exists), so a thread waiting for the signal sleeps in `poll` instead of polling the
/// flag: an idle engine's main thread does not wake at all.
static SIGNAL_PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
/// How often [`wait_for_signal`] looks at the flag when the pipe could not be made.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

extern "C" fn on_signal(_: libc::c_int) {
    let first = !SIGNALLED.swap(true, Ordering::Relaxed);
    let fd = SIGNAL_PIPE[1].load(Ordering::Relaxed);
    if first && fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the descriptor is the pipe's write end,
        // non-blocking, so a full pipe cannot stall the handler. The interrupted code's
        // errno is put back, as a handler must.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, b"!".as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
    if !first {
        // A second Ctrl-C: the operator will not wait for the orderly stop.
        const NOTE: &[u8] = b"second signal: exiting at once (unwritten records stay in the rings; the next start backfills them)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, NOTE.as_ptr().cast(), NOTE.len());
            libc::_exit(130);
        }
    }
}

/// Routes SIGINT and SIGTERM to a flag that [`wait_for_signal`] watches.
pub fn install_signal_handlers() {
    if SIGNAL_PIPE[0].load(Ordering::Relaxed) < 0 {
        let mut fds = [-1; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
            SIGNAL_PIPE[1].store(fds[1], Ordering::Relaxed);
            SIGNAL_PIPE[0].store(fds[0], Ordering::Relaxed);
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only swaps an atomic and calls write(2) and _exit(2), all
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// Sleeps until SIGINT or SIGTERM arrives (true) or `timeout` passes (false; a timeout
/// past `poll`'s range, about 24 days, is cut to it: `Duration::MAX` waits). A signal
/// that came before the call, or between the look at the flag and the sleep, left its
/// byte in the pipe: the sleep then ends at once.
pub fn wait_for_signal(timeout: Duration) -> bool {
    if signalled() {
        return true;
    }
    let fd = SIGNAL_PIPE[0].load(Ordering::Relaxed);
    if fd < 0 {
        std::thread::sleep(timeout.min(SIGNAL_POLL));
        return signalled();
    }
    let mut wake = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; an interrupted or failed poll just returns early.
    unsafe { libc::poll(&mut wake, 1, ms) };
    signalled()
}

/// Startup notes about optional services (docs/api.md, "Configuration").
pub fn log_sink_modes(config: &Config) {
    if config.database_url.is_none() {
        tracing::info!("no DATABASE_URL: keeping recent candles in memory");
    } else {
        tracing::info!(
            spool_dir = %config.database.spool_dir.display(),
            live_candles = config.database.live_candles,
            "DATABASE_URL is set: writing candles and signals to the database"
        );
    }
    match &config.redis_url {
        None => tracing::info!("no REDIS_URL: publishing nowhere"),
        Some(url) => match crate::sinks::redis::resp::Target::parse(url) {
            Ok(_) => tracing::info!(
                prefix = %config.redis_channel_prefix,
                "REDIS_URL is set: publishing signals and candles on Redis, showing other instances' symbols"
            ),
            Err(e) => {
                tracing::error!(error = %e, "REDIS_URL is set but unusable: publishing nowhere")
            }
        },
    }
}

/// Plans the layout for this host and checks the host can run it (io_uring, locked
/// memory, cores); logs the sink modes. Shared by `run` and `demo`.
pub fn prepare(config: &Config) -> anyhow::Result<Layout> {
    let layout = crate::topology::plan_for_host(config)?;
    let report = crate::topology::check_host(&layout)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(layout = %layout, "core layout");
    log_sink_modes(config);
    Ok(layout)
}

/// `alphapulse run`: the engine until SIGINT/SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    let layout = prepare(&config)?;
    install_signal_handlers();
    let mut engine = Engine::start(&config, &layout)?;
    tracing::info!(dashboard = %engine.dashboard_addr(), shards = layout.shards.len(), "engine running");
    while !wait_for_signal(Duration::MAX) {}
    tracing::info!("stopping (Ctrl-C again to exit at once)");
    let before = engine.status().snapshot();
    engine.shutdown();
    let after = engine.status().snapshot();
    tracing::info!("{}", shutdown_summary(&before, &after));
    tracing::info!("stopped");
    Ok(())
}

/// What the orderly stop did, from `/api/status` before and after it: rows written to
/// the database and records published while stopping, rows left in the spool for the
/// next start, and everything dropped in the whole run.
pub fn shutdown_summary(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value, pointer: &str| v.pointer(pointer).and_then(|x| x.as_u64());
    let grew = |pointer: &str| {
        n(after, pointer).map(|a| a.saturating_sub(n(before, pointer).unwrap_or(0)))
    };
    let mut parts = Vec::new();
    if let Some(rows) = grew("/sinks/database/rows_committed") {
        parts.push(format!("flushed {rows} rows to the database"));
    }
    if let Some(published) = grew("/sinks/redis/published") {
        parts.push(format!("published {published} records on Redis"));
    }
    if parts.is_empty() {
        parts.push("nothing to flush (no database, no Redis)".to_owned());
    }
    if let Some(rows) = n(after, "/sinks/spool/rows") {
        parts.push(format!(
            "{rows} rows left in the spool for the next start to write"
        ));
    }
    let dropped: Vec<String> = [
        ("/sinks/spool/dropped_rows", "spool rows (spool full)"),
        (
            "/sinks/dead_letter/rows_refused",
            "rows refused by the database (dead-letter file)",
        ),
        ("/sinks/redis/dropped", "Redis records"),
    ]
    .iter()
    .filter_map(|(pointer, what)| match n(after, pointer) {
        Some(d) if d > 0 => Some(format!("{d} {what}")),
        _ => None,
    })
    .collect();
    parts.push(if dropped.is_empty() {
        "dropped nothing".to_owned()
    } else {
        format!("dropped in this run: {}", dropped.join(", "))
    });
    format!("while stopping: {}", parts.join("; "))
}

#[cfg(test)]
mod shutdown_tests {
    use super::shutdown_summary;
    use serde_json::json;

    #[test]
    fn the_summary_says_what_was_flushed_spooled_and_dropped() {
        let before = json!({"sinks": {
            "database": {"rows_committed": 100},
            "spool": {"rows": 0, "dropped_rows": 0},
            "redis": {"published": 40, "dropped": 0},
        }});
        let after = json!({"sinks": {
            "database": {"rows_committed": 130},
            "spool": {"rows": 7, "dropped_rows": 2},
            "dead_letter": {"rows_refused": 0},
            "redis": {"published": 45, "dropped": 3},
        }});
        assert_eq!(
            shutdown_summary(&before, &after),
            "while stopping: flushed 30 rows to the database; published 5 records on Redis; \
             7 rows left in the spool for the next start to write; dropped in this run: \
             2 spool rows (spool full), 3 Redis records"
        );
        let bare = json!({"sinks": {"memory": {}}});
        assert_eq!(
            shutdown_summary(&bare, &bare),
            "while stopping: nothing to flush (no database, no Redis); dropped nothing"
        );
    }
}
