//! AlphaPulse: a thread-per-core Binance market-data and signal engine.
//!
//! # Layout
//! The modules stand in layers, bottom to top; a module uses only the modules listed
//! before it (`CONTRIBUTING.md` says why; `tests/layering.rs` checks every `crate::` path).
//!
//! **Vocabulary**
//! - [`alloc`]: per-thread allocation counting (the binary's global allocator).
//! - [`digits`]: integers written as decimal text into byte buffers.
//! - [`clock`]: the time sources (the monotonic stage clock, the one wall-clock reader).
//! - [`market`]: symbols, intervals, exact decimals, candles.
//! - [`backoff`]: capped, jittered retry delays.
//! - [`ring`]: bounded lock-free rings carrying fixed-size messages between cores, and
//!   the doorbells that wake their consumers.
//! - [`http`]: HTTP/1.x request heads, percent-decoding and query parameters, for the
//!   dashboard and the simulator.
//! - [`tls`]: PEM certificates and keys for every TLS user (feed, REST, dashboard).
//!
//! **Pure core** (plain data: no sockets, no threads)
//! - [`wire`]: the zero-copy simd-json parser for Binance frames.
//! - [`candle`]: live candle state, gap detection and completeness.
//! - [`book`]: local order books synchronised from diff depth events and snapshots, and
//!   the board of their published views.
//! - [`signals`]: the signal vocabulary, indicators, signal rules, their per-timeframe
//!   parameters.
//! - [`metrics`]: the counters each role publishes.
//! - [`latency`]: per-stage HDR histograms (lock-free recorders, the collector, reports).
//! - [`consumer`]: the one consumer loop every ring consumer waits in (park until rung).
//! - [`message`]: the messages between cores (`Envelope`, `Record`, `Outage`, which
//!   record kinds a ring carries) and the shard ↔ REST link (`Request`, `RestBatch`).
//! - [`record`]: the JSON record codec of the API, the WebSocket and Redis (writers and
//!   readers).
//! - [`store`]: the bounded in-memory store of recent closed candles and signals, and the
//!   list queries (`RecordSource`) it and the database answer.
//!
//! **Settings**
//! - [`config`]: one typed configuration, from TOML, environment and `.env` (one table
//!   row per setting).
//! - [`topology`]: shard maps, the role → core layout, host probing and the startup check.
//!
//! **Roles**
//! - [`shard`]: one shard core's state: candles, the signal gate, outlets, the REST link.
//! - [`feed`]: the Binance WebSocket client feeding a shard: subscription planner,
//!   frames, connections, the pool with make-before-break rotation.
//! - [`backfill`]: the REST thread and its scheduler: warm starts, gap backfill and
//!   catch-up within Binance's weight and Retry-After rules.
//! - [`sinks`]: the roles that drain the rings: the database writer and its query
//!   worker, the Redis publisher and its cross-instance bridge; the sink contract.
//! - [`dashboard`]: the HTTP/WebSocket server on the dashboard core: routes, the
//!   WebSocket protocol, one-write fan-out to bounded per-client outboxes, access checks,
//!   metrics.
//!
//! **Wiring**
//! - [`engine`]: starts and stops every role on its core.
//!
//! **Tools**
//! - [`capture`]: `alphapulse capture`: the exchange's raw frames recorded with their
//!   receive times into rotated zstd files and a manifest, and read back for replay.
//! - [`simulator`]: the Binance-compatible exchange simulator.
//! - [`harness`]: the `alphapulse bench` commands.
//! - [`tuning`]: `alphapulse tuning`: the host's low-latency settings checked against the
//!   layout, the plan `tuning/apply.sh` applies, the engine's systemd unit.
//! - [`demo`]: the self-contained demo (simulator and engine in one process).
//! - [`history`]: `alphapulse history`: past klines paged into the database within the
//!   REST weight budget, and stored candles exported as CSV or Parquet.
//! - [`cli`]: the `alphapulse` command line (argument parsing and dispatch).

pub mod alloc;
pub mod backfill;
pub mod backoff;
pub mod book;
pub mod candle;
pub mod capture;
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
pub mod history;
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
