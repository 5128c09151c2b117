//! The messages between cores: what a shard sends its consumers over the rings.
//!
//! Vocabulary, below every role: the shard makes these, the sinks, the dashboard and the
//! store take them, and none of them needs the others to read it. Fixed size and `Copy`,
//! so a ring slot holds one whole message.
//!
//! - [`rest`]: the link between a shard and the REST thread (requests, answered pages,
//!   their bounded queues).

pub mod rest;

use crate::candle::Gap;
use crate::market::{AggTrade, Candle, Trade};
use crate::signals::Signal;

/// What a shard sends to the sinks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Record {
    ClosedCandle(Candle),
    LiveCandle(Candle),
    Signal(Signal),
    Gap(Gap),
    /// A connection was down between these exchange times (µs): candles of its streams
    /// that closed inside the span may be missing; the backfill checks them.
    Outage(Outage),
    /// The exchange has no candles with open times in this span (asked by the
    /// backfill): recorded, never asked again.
    Absent(Gap),
    /// A trade (`@trade`), de-duplicated by trade id; never lost once received.
    Trade(Trade),
    /// An aggregate trade (`@aggTrade`, or backfilled from REST `aggTrades`),
    /// de-duplicated by its id; never lost once received.
    AggTrade(AggTrade),
    /// A local book's best bid or ask changed, or its view was published to the board
    /// ([`crate::book::board`]). Conflated: the next one supersedes it.
    Book(BookTop),
}

/// The top of a local book, as a record: prices in units of 10^-8 (0: that side is
/// empty), quantities exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookTop {
    pub symbol: crate::market::Symbol,
    pub last_update_id: u64,
    pub event_time_us: i64,
    pub valid: bool,
    /// The board holds a new view of this book (published); otherwise only the top
    /// changed.
    pub published: bool,
    pub bid: i64,
    pub bid_qty: rust_decimal::Decimal,
    pub ask: i64,
    pub ask_qty: rust_decimal::Decimal,
}

/// The span of a reconnect, in exchange time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub slot: u16,
    pub from_event_us: i64,
    pub to_event_us: i64,
}

/// The `shard` of records that came from another instance (through the Redis bridge).
pub const REMOTE_SHARD: u16 = u16::MAX;

/// A record with the stage times of its journey (monotonic ns, [`mono_ns`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Envelope {
    pub shard: u16,
    pub recv_ns: u64,
    pub parsed_ns: u64,
    pub record: Record,
}

impl Envelope {
    /// A record with no stage times (tests, benchmarks, synthetic feeds).
    pub fn untimed(shard: u16, record: Record) -> Envelope {
        Envelope {
            shard,
            recv_ns: 0,
            parsed_ns: 0,
            record,
        }
    }
}

impl crate::consumer::Stamped for Envelope {
    fn enqueued_ns(&self) -> u64 {
        // Records of other instances carry no time of ours; backfilled ones none at all.
        if self.shard == REMOTE_SHARD {
            0
        } else {
            self.parsed_ns
        }
    }
}

/// The record kinds one sink consumes: its ring carries only those, so no sink wakes
/// for records it would drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordKinds(u16);

impl RecordKinds {
    pub const CLOSED: RecordKinds = RecordKinds(1);
    pub const LIVE: RecordKinds = RecordKinds(1 << 1);
    pub const SIGNAL: RecordKinds = RecordKinds(1 << 2);
    pub const GAP: RecordKinds = RecordKinds(1 << 3);
    pub const OUTAGE: RecordKinds = RecordKinds(1 << 4);
    pub const ABSENT: RecordKinds = RecordKinds(1 << 5);
    pub const TRADE: RecordKinds = RecordKinds(1 << 6);
    pub const AGG_TRADE: RecordKinds = RecordKinds(1 << 7);
    pub const BOOK: RecordKinds = RecordKinds(1 << 8);
    pub const ALL: RecordKinds = RecordKinds(0b1_1111_1111);
    /// What a market-data consumer publishes: candles and signals.
    pub const MARKET: RecordKinds = RecordKinds(0b111);

    /// Trades and aggregate trades.
    pub const TRADES: RecordKinds = RecordKinds(0b1100_0000);
    pub const NONE: RecordKinds = RecordKinds(0);

    pub const fn with(self, other: RecordKinds) -> RecordKinds {
        RecordKinds(self.0 | other.0)
    }

    pub fn has(self, record: &Record) -> bool {
        let bit = match record {
            Record::ClosedCandle(_) => RecordKinds::CLOSED,
            Record::LiveCandle(_) => RecordKinds::LIVE,
            Record::Signal(_) => RecordKinds::SIGNAL,
            Record::Gap(_) => RecordKinds::GAP,
            Record::Outage(_) => RecordKinds::OUTAGE,
            Record::Absent(_) => RecordKinds::ABSENT,
            Record::Trade(_) => RecordKinds::TRADE,
            Record::AggTrade(_) => RecordKinds::AGG_TRADE,
            Record::Book(_) => RecordKinds::BOOK,
        };
        self.0 & bit.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_keep_a_record_the_size_of_a_candle() {
        // A ring slot holds one envelope: the trade kinds must not make every slot grow.
        // No larger than a candle (a variant already), they leave the enum's size as is.
        assert!(std::mem::size_of::<Trade>() <= std::mem::size_of::<Candle>());
        assert!(std::mem::size_of::<AggTrade>() <= std::mem::size_of::<Candle>());
        assert!(std::mem::size_of::<Record>() >= std::mem::size_of::<Candle>());
    }

    #[test]
    fn trade_kinds_have_their_own_bits() {
        let t = crate::market::testing::trade("BTCUSDT", 7);
        let a = crate::market::testing::agg_trade("BTCUSDT", 7);
        assert!(RecordKinds::TRADE.has(&Record::Trade(t)));
        assert!(!RecordKinds::TRADE.has(&Record::AggTrade(a)));
        assert!(RecordKinds::AGG_TRADE.has(&Record::AggTrade(a)));
        assert!(!RecordKinds::MARKET.has(&Record::Trade(t)));
        assert!(
            RecordKinds::ALL.has(&Record::Trade(t)) && RecordKinds::ALL.has(&Record::AggTrade(a))
        );
    }
}
