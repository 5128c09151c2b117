//! The link between a shard and the REST thread ([`crate::backfill`]): what a shard
//! asks for, what comes back, and the two bounded queues that carry them.
//!
//! Vocabulary, below both roles: the shard makes [`Request`]s and applies
//! [`RestBatch`]es, the REST thread answers them, and neither needs the other to read
//! these types.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::market::{AggTrade, Candle, Interval, Symbol};

/// Requests a shard may have waiting for the thread; past this a request is dropped
/// and counted (the gap stays open and is asked again on the next reconnect).
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// Batches waiting for a shard to take them. The thread waits for room rather than
/// dropping one: a shard drains its queue every few milliseconds.
pub const MAX_PENDING_BATCHES: usize = 64;

/// Most aggregate trades one REST `aggTrades` page holds (the exchange's `limit`
/// maximum): a shorter page of a catch-up is its last.
pub const AGG_TRADES_PAGE: u32 = 1000;

/// What a shard asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Recent closed candles as indicator history (they make no signals), `candles`
    /// of them, ending with the candle opened at `end_open_ms` (or the newest closed).
    Warm {
        candles: u32,
        end_open_ms: Option<i64>,
    },
    /// Closed candles with open times in `[from_open_ms, to_open_ms)`; without an end,
    /// every candle closed so far.
    Range {
        from_open_ms: i64,
        to_open_ms: Option<i64>,
    },
    /// Aggregate trades with ids in `[from_id, to_id)` (a hole the stream skipped);
    /// without an end, every one from `from_id` to the present (a restart's catch-up).
    /// The request's interval means nothing here.
    AggTrades { from_id: u64, to_id: Option<u64> },
}

/// One series' request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub symbol: Symbol,
    pub interval: Interval,
    pub want: Want,
}

/// One answered page (or the end of a request that failed).
#[derive(Clone, Debug, PartialEq)]
pub struct RestBatch {
    pub request: Request,
    /// Closed candles, oldest first.
    pub candles: Vec<Candle>,
    /// Spans `[from, to)` of the requested range the exchange has no candles for.
    pub absent: Vec<(i64, i64)>,
    /// The request failed for good (after [`crate::backfill::MAX_ATTEMPTS`]); `candles` is empty.
    pub failed: bool,
    /// Aggregate trades of a [`Want::AggTrades`] request, oldest first.
    pub agg_trades: Vec<AggTrade>,
}

impl RestBatch {
    /// True when these candles are indicator history (a warm start).
    pub fn is_history(&self) -> bool {
        matches!(self.request.want, Want::Warm { .. })
    }
}

/// The two bounded queues between one shard and the REST thread.
#[derive(Clone)]
pub struct ShardLink {
    /// Shard → thread.
    pub requests: Arc<ArrayQueue<Request>>,
    /// Thread → shard.
    pub deliveries: Arc<ArrayQueue<RestBatch>>,
    /// Rung after each delivery: wakes the shard's flusher, which applies them.
    pub delivered: crate::ring::Doorbell,
}

impl Default for ShardLink {
    fn default() -> Self {
        ShardLink {
            requests: Arc::new(ArrayQueue::new(MAX_PENDING_REQUESTS)),
            deliveries: Arc::new(ArrayQueue::new(MAX_PENDING_BATCHES)),
            delivered: crate::ring::Doorbell::new(),
        }
    }
}
