//! AlphaPulse: a thread-per-core Binance market-data and signal engine.
//!
//! # Layout
//! - [`market`]: the shared vocabulary (symbols, intervals, exact decimals, candles).
//! - [`wire`]: the zero-copy simd-json parser for Binance frames (pure).
//! - [`config`]: one typed configuration, from TOML, environment and `.env`.
//! - [`topology`]: shard maps, core layout planning and startup host checks.
//! - [`feed`]: Binance WebSocket client: subscription planner, backoff, connections,
//!   the connection pool with make-before-break rotation.
//! - [`candle`]: live candle state and gap detection (pure).
//! - [`ring`]: bounded lock-free rings carrying fixed-size messages between cores.
//! - [`shard`]: one shard core: its feed, parser and candle state.
//! - [`store`]: the bounded in-memory store of recent closed candles.
//! - [`dashboard`]: the HTTP/WebSocket listener on the dashboard core.
//! - [`simulator`]: the Binance-compatible exchange simulator.
//! - [`engine`]: starts and stops every role on its core.
//! - [`harness`]: the `alphapulse bench` commands.

pub mod market;
pub mod wire;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod harness;
pub mod simulator;
pub mod topology;
