//! Binance wire messages: the typed, borrowed view of one WebSocket text frame.
//!
//! Runs on: every shard core (and the simulator's tests). Owns: nothing but a reusable
//! parse scratch in [`Parser`]. In: the frame's bytes, mutable, parsed in place by
//! simd-json. Out: a [`Message`] that borrows from the frame and from the parser's
//! scratch, so no heap allocation happens per message once the scratch is warm.
//!
//! Times are normalised here: every event time leaves the parser in microseconds
//! (whatever `timeUnit` the connection asked for), and kline open/close times in
//! milliseconds, the unit of the records.

mod parse;

pub use parse::{ParseStats, Parser};

use crate::market::{AggTrade, BookTicker, Candle, Level, Trade};

/// Time unit of the timestamps in a stream (`timeUnit=MICROSECOND` on the URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeUnit {
    #[default]
    Millisecond,
    Microsecond,
}

/// One decoded text frame.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    /// A market event, with the combined-stream name when the frame had the envelope
    /// (`{"stream":…,"data":…}`), or `None` on a raw `/ws/<stream>` connection.
    Event {
        stream: Option<&'a str>,
        event: Event<'a>,
    },
    /// The reply to a control request (`SUBSCRIBE`, `LIST_SUBSCRIPTIONS`, …).
    Reply {
        id: RequestId,
        result: ReplyResult<'a>,
    },
    /// An error reply: `{"error":{"code":2,"msg":"…"},"id":…}`.
    Error {
        id: Option<RequestId>,
        code: i64,
        msg: &'a str,
    },
}

/// Request ids are numbers in everything we send; Binance also echoes strings and null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestId {
    Number(u64),
    /// A non-numeric id (string); we never send these, so they only need counting.
    Other,
}

#[derive(Debug, PartialEq)]
pub enum ReplyResult<'a> {
    /// `"result": null`: SUBSCRIBE / UNSUBSCRIBE / SET_PROPERTY acknowledged.
    Null,
    /// `"result": true|false`: GET_PROPERTY.
    Bool(bool),
    /// `"result": ["btcusdt@aggTrade", …]`: LIST_SUBSCRIPTIONS. The names are kept as
    /// the raw JSON array text, to be walked with [`StreamList::iter`] without allocating.
    Streams(StreamList<'a>),
}

/// The stream names of a LIST_SUBSCRIPTIONS reply, borrowed from the parser.
#[derive(Debug, PartialEq)]
pub struct StreamList<'a> {
    pub names: &'a [&'a str],
}

impl<'a> StreamList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.names.iter().copied()
    }
}

/// A market event.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Kline(Candle),
    Trade(Trade),
    AggTrade(AggTrade),
    BookTicker(BookTicker),
    DepthUpdate(DepthUpdate<'a>),
    /// `<symbol>@depth<levels>`: no symbol in the payload; it is in the stream name.
    PartialDepth(PartialDepth<'a>),
    /// `serverShutdown`: the server will close this connection soon.
    ServerShutdown {
        event_time_us: i64,
    },
    /// An event type we do not handle; ignored and counted.
    Unknown {
        event_type: &'a str,
    },
}

/// `<symbol>@depth` / `@depth@100ms` diff.
#[derive(Debug, PartialEq)]
pub struct DepthUpdate<'a> {
    pub symbol: crate::market::Symbol,
    pub event_time_us: i64,
    pub first_update_id: u64,
    pub final_update_id: u64,
    pub bids: &'a [Level],
    pub asks: &'a [Level],
}

#[derive(Debug, PartialEq)]
pub struct PartialDepth<'a> {
    pub last_update_id: u64,
    pub bids: &'a [Level],
    pub asks: &'a [Level],
}

/// Why a frame was rejected; `reason()` names the counter it is tallied under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("frame is not a JSON object")]
    NotObject,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("field `{0}` is out of range")]
    OutOfRange(&'static str),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

impl ParseError {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "invalid_json",
            ParseError::NotObject => "not_object",
            ParseError::MissingField(_) => "missing_field",
            ParseError::WrongType(_) => "wrong_type",
            ParseError::OutOfRange(_) => "out_of_range",
            ParseError::TooLarge(_) => "too_large",
        }
    }
}
