//! The Binance WebSocket client of one shard.
//!
//! - [`protocol`]: stream names, assignment to connections, SUBSCRIBE batches, pacing,
//!   acknowledgements (pure).
//! - [`crate::backoff`] (below the feed, shared with the sinks): reconnect delays and the
//!   connection-attempt limit (pure).
//! - [`connection`]: one socket: connect, subscribe, read, parse, hand events to the shard.
//! - [`pool`]: supervisors that reconnect and rotate connections make-before-break.

pub mod connection;
pub mod frames;
pub mod pool;
pub mod protocol;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::market::Symbol;
use crate::shard::ShardState;

pub use connection::FeedError;

/// Plans this shard's connections: which streams go on which connection.
pub fn plan_connections(
    config: &Config,
    symbols: &[Symbol],
    connections_allowed: usize,
) -> Result<Vec<Vec<String>>, protocol::CapacityError> {
    let streams = protocol::streams_for(symbols, &config.timeframes, &config.feed.streams);
    protocol::assign_streams(
        &streams,
        config.feed.max_streams_per_connection,
        connections_allowed.max(1),
    )
}

/// Runs the feed of one shard until the stop is requested: one supervisor per connection slot,
/// all on the calling glommio executor.
pub async fn run(
    config: &Config,
    shard: Rc<RefCell<ShardState>>,
    assignments: Vec<Vec<String>>,
    tls: Arc<futures_rustls::rustls::ClientConfig>,
    limiter: Arc<std::sync::Mutex<crate::backoff::AttemptLimiter>>,
    stop: crate::consumer::Stop,
) -> Result<(), FeedError> {
    let endpoint =
        connection::Endpoint::new(&config.binance_ws_url, config.feed.time_unit_microsecond)?;
    let session = connection::SessionCtx {
        shard,
        feed: config.feed.clone(),
        time_unit: endpoint.time_unit,
        next_request_id: Rc::new(Cell::new(1)),
    };
    let ctx = Rc::new(pool::PoolCtx::new(session, endpoint, tls, limiter, stop));
    let tasks: Vec<_> = assignments
        .into_iter()
        .enumerate()
        .map(|(slot, streams)| glommio::spawn_local(pool::supervise(ctx.clone(), slot, streams)))
        .collect();
    for t in tasks {
        t.await;
    }
    Ok(())
}
