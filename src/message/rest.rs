//! The link between a shard and the REST thread ([`crate::backfill`]): what a shard
//! asks for, what comes back, and the two bounded queues that carry them.
//!
//! Vocabulary, below both roles: the shard makes [`Request`]s and applies
//! [`RestBatch`]es, the REST thread answers them, and neither needs the other to read
//! these types.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::market::{AggTrade, Candle, Interval, Symbol, Trade};

/// Requests a shard may have waiting for the thread; past this a request is dropped
/// and counted (the gap stays open and is asked again on the next reconnect).
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// Batches waiting for a shard to take them. The thread waits for room rather than
/// dropping one: a shard drains its queue every few milliseconds.
pub const MAX_PENDING_BATCHES: usize = 64;

/// Most trades one REST `aggTrades` or `historicalTrades` page holds (the exchange's
/// `limit` maximum): a shorter page of a catch-up is its last.
pub const TRADES_PAGE: u32 = 1000;

/// The largest trade id the database's `bigint` holds: a trade with a larger id is
/// counted out of range and dropped whole (or, from REST, refuses its page), never
/// stored wrong.
pub const MAX_STORED_ID: u64 = i64::MAX as u64;

/// Which trade ids a [`Want::Trades`] request is about: aggregate trades (`aggTrades`)
/// or raw trades (`historicalTrades`). Each is numbered without holes per symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TradeKind {
    Aggregate,
    Raw,
}

impl TradeKind {
    pub const ALL: [TradeKind; 2] = [TradeKind::Aggregate, TradeKind::Raw];

    /// How logs and status name it.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeKind::Aggregate => "aggregate trades",
            TradeKind::Raw => "trades",
        }
    }
}

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
    /// Trades of `kind` with ids in `[from_id, to_id)` (a hole the stream skipped, or
    /// one the database has); without an end, every one from `from_id` to the present
    /// (a restart's catch-up). The request's interval means nothing here.
    Trades {
        kind: TradeKind,
        from_id: u64,
        to_id: Option<u64>,
    },
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
    /// Aggregate trades of a [`Want::Trades`] request of [`TradeKind::Aggregate`],
    /// oldest first.
    pub agg_trades: Vec<AggTrade>,
    /// Raw trades of a [`Want::Trades`] request of [`TradeKind::Raw`], oldest first.
    pub trades: Vec<Trade>,
}

impl RestBatch {
    /// True when these candles are indicator history (a warm start).
    pub fn is_history(&self) -> bool {
        matches!(self.request.want, Want::Warm { .. })
    }
}

/// A depth snapshot a shard asks for, to synchronise a local book
/// ([`crate::book`]): `GET /api/v3/depth?symbol=…&limit=…`, of `weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookRequest {
    pub symbol: Symbol,
    pub limit: u32,
    pub weight: u32,
}

/// The answer to a [`BookRequest`]: the snapshot, or `None` when it failed (the shard
/// asks again later).
#[derive(Clone, Debug, PartialEq)]
pub struct BookAnswer {
    pub symbol: Symbol,
    pub snapshot: Option<Box<crate::book::Snapshot>>,
}

/// Book snapshots a shard may have asked for and not yet been answered: one per book
/// at most, so this bounds the books of one shard that resynchronise at once.
pub const MAX_PENDING_BOOK_REQUESTS: usize = 1024;

/// The bounded queues between one shard and the REST thread.
#[derive(Clone)]
pub struct ShardLink {
    /// Shard → thread.
    pub requests: Arc<ArrayQueue<Request>>,
    /// Thread → shard.
    pub deliveries: Arc<ArrayQueue<RestBatch>>,
    /// Depth snapshots asked (shard → thread) and answered (thread → shard).
    pub book_requests: Arc<ArrayQueue<BookRequest>>,
    pub book_answers: Arc<ArrayQueue<BookAnswer>>,
    /// Rung after each delivery: wakes the shard's flusher, which applies them.
    pub delivered: crate::ring::Doorbell,
    /// The REST thread, once it runs: a shard that queues a request or a book request
    /// wakes it ([`ShardLink::wake_rest`]); an idle REST thread sleeps until then.
    pub rest_thread: Arc<std::sync::OnceLock<std::thread::Thread>>,
}

impl ShardLink {
    /// Wakes the REST thread if it is idle (one futex wake; never blocks).
    pub fn wake_rest(&self) {
        if let Some(t) = self.rest_thread.get() {
            t.unpark();
        }
    }
}

impl Default for ShardLink {
    fn default() -> Self {
        ShardLink {
            requests: Arc::new(ArrayQueue::new(MAX_PENDING_REQUESTS)),
            deliveries: Arc::new(ArrayQueue::new(MAX_PENDING_BATCHES)),
            book_requests: Arc::new(ArrayQueue::new(MAX_PENDING_BOOK_REQUESTS)),
            book_answers: Arc::new(ArrayQueue::new(MAX_PENDING_BOOK_REQUESTS)),
            delivered: crate::ring::Doorbell::new(),
            rest_thread: Arc::default(),
        }
    }
}
