//! What the market emits, and the sink it emits into.

use crate::market::Interval;

use crate::simulator::book::{BookLevel, Top};
use crate::simulator::kline::Kline;
use crate::simulator::stream::StreamKind;

/// Index of a stream in the flat subscription table: `symbol * StreamKind::COUNT + kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    pub fn new(symbol_index: usize, kind: StreamKind) -> StreamId {
        StreamId((symbol_index * StreamKind::COUNT + kind.index()) as u32)
    }
}

/// A trade (`@trade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub trade_id: u64,
    pub price: i64,
    pub qty: i64,
    pub buyer_is_maker: bool,
}

/// An aggregate trade (`@aggTrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggTradeEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub agg_id: u64,
    pub price: i64,
    pub qty: i64,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub buyer_is_maker: bool,
}

/// The best bid and ask after an update (`@bookTicker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookTickerEvent {
    pub symbol_index: usize,
    pub update_id: u64,
    pub top: Top,
}

/// A kline push (`@kline_<interval>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KlineEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub interval: Interval,
    pub kline: Kline,
    pub closed: bool,
}

/// A diff depth push (`@depth`, `@depth@100ms`); bids best first, asks best first.
#[derive(Clone, Copy, Debug)]
pub struct DepthDiffEvent<'a> {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub first_update_id: u64,
    pub last_update_id: u64,
    pub bids: &'a [BookLevel],
    pub asks: &'a [BookLevel],
}

/// A partial depth push (`@depth<levels>`).
#[derive(Clone, Copy, Debug)]
pub struct PartialDepthEvent<'a> {
    pub symbol_index: usize,
    pub last_update_id: u64,
    pub bids: &'a [BookLevel],
    pub asks: &'a [BookLevel],
}

/// Everything the model emits.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Trade(&'a TradeEvent),
    AggTrade(&'a AggTradeEvent),
    BookTicker(&'a BookTickerEvent),
    Kline(&'a KlineEvent),
    DepthDiff(&'a DepthDiffEvent<'a>),
    PartialDepth(&'a PartialDepthEvent<'a>),
}

impl Event<'_> {
    /// The index of the symbol the event belongs to.
    pub fn symbol_index(&self) -> usize {
        match self {
            Event::Trade(e) => e.symbol_index,
            Event::AggTrade(e) => e.symbol_index,
            Event::BookTicker(e) => e.symbol_index,
            Event::Kline(e) => e.symbol_index,
            Event::DepthDiff(e) => e.symbol_index,
            Event::PartialDepth(e) => e.symbol_index,
        }
    }
}

/// Where events go. `wants` lets the model skip building events nobody receives
/// (it never changes what the market does).
pub trait Sink {
    fn wants(&self, stream: StreamId) -> bool;
    fn emit(&mut self, stream: StreamId, event: &Event<'_>);
}
