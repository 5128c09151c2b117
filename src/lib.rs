//! AlphaPulse: a thread-per-core Binance market-data and signal engine.
//!
//! # Layout
//! - [`alloc`]: per-thread allocation counting (the binary's global allocator).
//! - [`backoff`]: reconnect pacing: capped, jittered backoff and the connection-attempt
//!   limit (pure; the feed and the sinks reconnect with it).
//! - [`digits`]: integers written as decimal text into byte buffers (pure).
//! - [`market`]: the shared vocabulary (symbols, intervals, exact decimals, candles).
//! - [`http`]: HTTP/1.x request heads, percent-decoding and query parameters (pure),
//!   for the dashboard and the simulator.
//! - [`tls`]: PEM certificates and keys for every TLS user (feed, REST, dashboard).
//! - [`message`]: the messages between cores (`Envelope`, `Record`, `Outage`, which
//!   record kinds a ring carries) and the shard ↔ REST link (`Request`, `RestBatch`).
//! - [`wire`]: the zero-copy simd-json parser for Binance frames (pure).
//! - [`config`]: one typed configuration, from TOML, environment and `.env`.
//! - [`topology`]: shard maps, core layout planning and startup host checks.
//! - [`feed`]: Binance WebSocket client: subscription planner, connections,
//!   the connection pool with make-before-break rotation.
//! - [`candle`]: live candle state, gap detection and completeness (pure).
//! - [`backfill`]: the REST thread and its scheduler: warm starts, gap backfill and
//!   catch-up within Binance's weight and Retry-After rules.
//! - [`ring`]: bounded lock-free rings carrying fixed-size messages between cores, and
//!   the doorbells that wake their consumers.
//! - [`consumer`]: the one consumer loop every ring consumer waits in (park until rung).
//! - [`shard`]: one shard core: its feed, parser and candle state.
//! - [`signals`]: the signal vocabulary, indicators, signal rules, their per-timeframe
//!   settings.
//! - [`store`]: the bounded in-memory store of recent closed candles (kept by the
//!   dashboard core), and the API's list reads behind `RecordSource` (answered by it or
//!   by the database query worker).
//! - [`dashboard`]: the HTTP/WebSocket server on the dashboard core: routes, the
//!   WebSocket protocol, fan-out to bounded per-client outboxes, access checks, metrics.
//! - [`simulator`]: the Binance-compatible exchange simulator.
//! - [`engine`]: starts and stops every role on its core.
//! - [`harness`]: the `alphapulse bench` commands.
//! - [`cli`]: the `alphapulse` command line (argument parsing and dispatch).
//! - [`record`]: the one codec of the JSON records served on the API, WebSocket and Redis
//!   (the serde shapes, the allocation-light writers, the reader).
//! - [`sinks`]: the roles that drain the rings: the database writer and its query
//!   worker, the Redis publisher and its cross-instance bridge.
//! - [`metrics`]: counters each role publishes; [`clock`]: time sources.
//! - [`latency`]: per-stage HDR histograms (lock-free recorders, the collector, reports).
//! - [`tuning`]: `alphapulse tuning`: the host's low-latency settings checked against the
//!   layout, the plan `tuning/apply.sh` applies, the engine's systemd unit.

pub mod alloc;
pub mod backfill;
pub mod backoff;
pub mod candle;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod demo;
pub mod digits;
pub mod engine;
pub mod feed;
pub mod harness;
pub mod http;
pub mod latency;
pub mod market;
pub mod message;
pub mod metrics;
pub mod record;
pub mod ring;
pub mod shard;
pub mod signals;
pub mod simulator;
pub mod sinks;
pub mod store;
pub mod tls;
pub mod topology;
pub mod tuning;
pub mod wire;
