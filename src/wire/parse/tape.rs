//! The general path of the frame parser: every frame the fast path declines.
//!
//! Runs on: every shard core, inside [`super::Parser`], after simd-json has filled the
//! tape. Owns: nothing (the tape, the level and name scratch are the parser's). In: a
//! filled tape, a flat array of nodes. Out: a [`Message`] borrowing from the frame.
//!
//! Each object is walked once, recording where each key we know sits (keys are matched
//! by their bytes), and the fields of the recognised shape are read from those places.
//! Fields are accepted in any order; a field we do not know is skipped and counted.

use simd_json::{Node, StaticNode};

use super::decimal::{parse_decimal, DecimalError};
use super::{event_time_us, record_time_ms, ParseStats};
use crate::market::{
    AggTrade, BookTicker, Candle, Decimal, Interval, Level, Symbol, SymbolError, Trade,
};
use crate::wire::{
    DepthUpdate, Event, Message, ParseError, PartialDepth, ReplyResult, RequestId, StreamList,
    TimeUnit,
};

/// Every object key the parser knows, named exactly as on the wire.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    e,
    E,
    s,
    k,
    t,
    T,
    i,
    f,
    L,
    o,
    c,
    h,
    l,
    v,
    n,
    x,
    q,
    V,
    Q,
    B,
    u,
    U,
    b,
    a,
    A,
    p,
    m,
    M,
    stream,
    data,
    result,
    id,
    error,
    code,
    msg,
    lastUpdateId,
    bids,
    asks,
}

const KEY_COUNT: usize = Key::asks as usize + 1;

/// Every [`Key`] as written on the wire, indexed by the key's discriminant.
const KEY_NAMES: [&str; KEY_COUNT] = [
    "e",
    "E",
    "s",
    "k",
    "t",
    "T",
    "i",
    "f",
    "L",
    "o",
    "c",
    "h",
    "l",
    "v",
    "n",
    "x",
    "q",
    "V",
    "Q",
    "B",
    "u",
    "U",
    "b",
    "a",
    "A",
    "p",
    "m",
    "M",
    "stream",
    "data",
    "result",
    "id",
    "error",
    "code",
    "msg",
    "lastUpdateId",
    "bids",
    "asks",
];

impl Key {
    /// Matches a key by its bytes; one-letter keys (all of the event fields) go through
    /// a single jump on the byte.
    #[inline(always)]
    fn from_json(key: &str) -> Option<Key> {
        Some(match key.as_bytes() {
            [letter] => match letter {
                b'e' => Key::e,
                b'E' => Key::E,
                b's' => Key::s,
                b'k' => Key::k,
                b't' => Key::t,
                b'T' => Key::T,
                b'i' => Key::i,
                b'f' => Key::f,
                b'L' => Key::L,
                b'o' => Key::o,
                b'c' => Key::c,
                b'h' => Key::h,
                b'l' => Key::l,
                b'v' => Key::v,
                b'n' => Key::n,
                b'x' => Key::x,
                b'q' => Key::q,
                b'V' => Key::V,
                b'Q' => Key::Q,
                b'B' => Key::B,
                b'u' => Key::u,
                b'U' => Key::U,
                b'b' => Key::b,
                b'a' => Key::a,
                b'A' => Key::A,
                b'p' => Key::p,
                b'm' => Key::m,
                b'M' => Key::M,
                _ => return None,
            },
            b"stream" => Key::stream,
            b"data" => Key::data,
            b"result" => Key::result,
            b"id" => Key::id,
            b"error" => Key::error,
            b"code" => Key::code,
            b"msg" => Key::msg,
            b"lastUpdateId" => Key::lastUpdateId,
            b"bids" => Key::bids,
            b"asks" => Key::asks,
            _ => return None,
        })
    }

    /// The key as written on the wire, for error messages.
    fn name(self) -> &'static str {
        KEY_NAMES[self as usize]
    }

    const fn bit(self) -> u64 {
        1 << self as u32
    }
}

/// The set of keys a shape may carry; anything else in the object is counted unknown.
const fn key_set(keys: &[Key]) -> u64 {
    let mut set = 0;
    let mut i = 0;
    while i < keys.len() {
        set |= keys[i].bit();
        i += 1;
    }
    set
}

const ENVELOPE_KEYS: u64 = key_set(&[Key::stream, Key::data]);
const KLINE_KEYS: u64 = key_set(&[Key::e, Key::E, Key::s, Key::k]);
const KLINE_BODY_KEYS: u64 = key_set(&[
    Key::t,
    Key::T,
    Key::s,
    Key::i,
    Key::f,
    Key::L,
    Key::o,
    Key::c,
    Key::h,
    Key::l,
    Key::v,
    Key::n,
    Key::x,
    Key::q,
    Key::V,
    Key::Q,
    Key::B,
]);
/// `b` and `a` (buyer and seller order ids) were sent on spot trades until 2023.
const TRADE_KEYS: u64 = key_set(&[
    Key::e,
    Key::E,
    Key::s,
    Key::t,
    Key::p,
    Key::q,
    Key::b,
    Key::a,
    Key::T,
    Key::m,
    Key::M,
]);
const AGG_TRADE_KEYS: u64 = key_set(&[
    Key::e,
    Key::E,
    Key::s,
    Key::a,
    Key::p,
    Key::q,
    Key::f,
    Key::l,
    Key::T,
    Key::m,
    Key::M,
]);
const DEPTH_KEYS: u64 = key_set(&[Key::e, Key::E, Key::s, Key::U, Key::u, Key::b, Key::a]);
const SHUTDOWN_KEYS: u64 = key_set(&[Key::e, Key::E]);
/// Spot sends a book ticker without `e`, recognised by this shape.
const BOOK_TICKER_SHAPE: u64 = key_set(&[Key::u, Key::s, Key::b, Key::B, Key::a, Key::A]);
/// The futures-style book ticker names itself and adds event and transaction times.
const BOOK_TICKER_KEYS: u64 = BOOK_TICKER_SHAPE | key_set(&[Key::e, Key::E, Key::T]);
const PARTIAL_DEPTH_KEYS: u64 = key_set(&[Key::lastUpdateId, Key::bids, Key::asks]);
const REPLY_KEYS: u64 = key_set(&[Key::result, Key::id]);
const ERROR_KEYS: u64 = key_set(&[Key::error, Key::id]);
const ERROR_BODY_KEYS: u64 = key_set(&[Key::code, Key::msg]);
const FLAT_ERROR_KEYS: u64 = key_set(&[Key::code, Key::msg, Key::id]);

/// Where the known keys of one object sit on the tape.
struct Fields {
    /// One bit per [`Key`] present.
    seen: u64,
    /// Keys not in [`Key`] at all.
    unknown: u32,
    /// Tape index of each present key's value.
    at: [u32; KEY_COUNT],
}

impl Fields {
    const EMPTY: Fields = Fields {
        seen: 0,
        unknown: 0,
        at: [0; KEY_COUNT],
    };

    #[inline(always)]
    fn has(&self, key: Key) -> bool {
        self.seen & key.bit() != 0
    }

    /// Keys present that the shape `known` does not list, plus keys we know nowhere.
    #[inline(always)]
    fn unknown_beyond(&self, known: u64) -> u64 {
        u64::from((self.seen & !known).count_ones()) + u64::from(self.unknown)
    }
}

/// One pass over a filled tape.
pub(super) struct Walk<'t, 'a> {
    tape: &'t [Node<'a>],
    time_unit: TimeUnit,
    stats: &'t mut ParseStats,
    /// The combined-stream name, once the envelope has been read.
    stream: Option<&'a str>,
}

impl<'t, 'a> Walk<'t, 'a> {
    #[inline(always)]
    pub(super) fn new(
        tape: &'t [Node<'a>],
        time_unit: TimeUnit,
        stats: &'t mut ParseStats,
    ) -> Walk<'t, 'a> {
        Walk {
            tape,
            time_unit,
            stats,
            stream: None,
        }
    }

    #[inline(always)]
    pub(super) fn message(
        &mut self,
        levels: &'a mut Vec<Level>,
        names: &'a mut Vec<&'a str>,
    ) -> Result<Message<'a>, ParseError> {
        let mut root = Fields::EMPTY;
        self.object(0, &mut root)
            .map_err(|_| ParseError::NotObject)?;
        if root.has(Key::stream) || root.has(Key::data) {
            self.stats.unknown_fields += root.unknown_beyond(ENVELOPE_KEYS);
            let stream = self.str(&root, Key::stream)?;
            let mut data = Fields::EMPTY;
            self.object_field(&root, Key::data, &mut data)?;
            self.stream = Some(stream);
            return self.event(&data, levels);
        }
        if root.has(Key::result) {
            self.stats.unknown_fields += root.unknown_beyond(REPLY_KEYS);
            return self.reply(&root, names);
        }
        if root.has(Key::error) {
            self.stats.unknown_fields += root.unknown_beyond(ERROR_KEYS);
            let mut body = Fields::EMPTY;
            self.object_field(&root, Key::error, &mut body)?;
            self.stats.unknown_fields += body.unknown_beyond(ERROR_BODY_KEYS);
            return Ok(Message::Error {
                id: self.optional_id(&root)?,
                code: self.i64(&body, Key::code)?,
                msg: self.str(&body, Key::msg)?,
            });
        }
        if root.has(Key::code) {
            // The older, flat error shape: `{"code":2,"msg":"…","id":1}`.
            self.stats.unknown_fields += root.unknown_beyond(FLAT_ERROR_KEYS);
            return Ok(Message::Error {
                id: self.optional_id(&root)?,
                code: self.i64(&root, Key::code)?,
                msg: self.str(&root, Key::msg)?,
            });
        }
        self.event(&root, levels)
    }

    #[inline(always)]
    fn event(
        &mut self,
        obj: &Fields,
        levels: &'a mut Vec<Level>,
    ) -> Result<Message<'a>, ParseError> {
        if obj.has(Key::e) {
            let event_type = self.str(obj, Key::e)?;
            return match event_type.as_bytes() {
                b"kline" => self.kline(obj),
                b"trade" => self.trade(obj),
                b"aggTrade" => self.agg_trade(obj),
                b"depthUpdate" => self.depth_update(obj, levels),
                b"bookTicker" => self.book_ticker(obj, BOOK_TICKER_KEYS),
                b"serverShutdown" => {
                    self.stats.unknown_fields += obj.unknown_beyond(SHUTDOWN_KEYS);
                    self.emit(Event::ServerShutdown {
                        event_time_us: self.event_time_us(obj)?,
                    })
                }
                _ => {
                    self.stats.unknown_events += 1;
                    self.emit(Event::Unknown { event_type })
                }
            };
        }
        if obj.has(Key::lastUpdateId) {
            return self.partial_depth(obj, levels);
        }
        if obj.seen & BOOK_TICKER_SHAPE == BOOK_TICKER_SHAPE {
            return self.book_ticker(obj, BOOK_TICKER_SHAPE);
        }
        Err(ParseError::MissingField("e"))
    }

    /// The message for an event, built where the caller will return it: an event is a
    /// few hundred bytes, and building it in place saves a copy per frame.
    #[inline(always)]
    fn emit(&self, event: Event<'a>) -> Result<Message<'a>, ParseError> {
        Ok(Message::Event {
            stream: self.stream,
            event,
        })
    }

    #[inline(always)]
    fn kline(&mut self, obj: &Fields) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(KLINE_KEYS);
        let mut k = Fields::EMPTY;
        self.object_field(obj, Key::k, &mut k)?;
        self.stats.unknown_fields += k.unknown_beyond(KLINE_BODY_KEYS);
        let interval_text = self.str(&k, Key::i)?;
        let interval =
            Interval::parse(interval_text).map_err(|_| ParseError::OutOfRange(Key::i.name()))?;
        self.emit(Event::Kline(Candle {
            symbol: self.symbol(obj, Key::s)?,
            interval,
            open_time_ms: self.time_ms(&k, Key::t)?,
            close_time_ms: self.time_ms(&k, Key::T)?,
            open: self.decimal(&k, Key::o)?,
            high: self.decimal(&k, Key::h)?,
            low: self.decimal(&k, Key::l)?,
            close: self.decimal(&k, Key::c)?,
            volume: self.decimal(&k, Key::v)?,
            quote_volume: self.decimal(&k, Key::q)?,
            taker_buy_base: self.decimal(&k, Key::V)?,
            taker_buy_quote: self.decimal(&k, Key::Q)?,
            trades: self.u64(&k, Key::n)?,
            first_trade_id: self.i64(&k, Key::f)?,
            last_trade_id: self.i64(&k, Key::L)?,
            closed: self.bool(&k, Key::x)?,
            event_time_us: self.event_time_us(obj)?,
        }))
    }

    #[inline(always)]
    fn trade(&mut self, obj: &Fields) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(TRADE_KEYS);
        self.emit(Event::Trade(Trade {
            symbol: self.symbol(obj, Key::s)?,
            trade_id: self.u64(obj, Key::t)?,
            price: self.decimal(obj, Key::p)?,
            quantity: self.decimal(obj, Key::q)?,
            trade_time_ms: self.time_ms(obj, Key::T)?,
            buyer_is_maker: self.bool(obj, Key::m)?,
            event_time_us: self.event_time_us(obj)?,
        }))
    }

    #[inline(always)]
    fn agg_trade(&mut self, obj: &Fields) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(AGG_TRADE_KEYS);
        self.emit(Event::AggTrade(AggTrade {
            symbol: self.symbol(obj, Key::s)?,
            agg_trade_id: self.u64(obj, Key::a)?,
            price: self.decimal(obj, Key::p)?,
            quantity: self.decimal(obj, Key::q)?,
            first_trade_id: self.u64(obj, Key::f)?,
            last_trade_id: self.u64(obj, Key::l)?,
            trade_time_ms: self.time_ms(obj, Key::T)?,
            buyer_is_maker: self.bool(obj, Key::m)?,
            event_time_us: self.event_time_us(obj)?,
        }))
    }

    #[inline(always)]
    fn book_ticker(&mut self, obj: &Fields, known: u64) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(known);
        self.emit(Event::BookTicker(BookTicker {
            symbol: self.symbol(obj, Key::s)?,
            update_id: self.u64(obj, Key::u)?,
            bid_price: self.decimal(obj, Key::b)?,
            bid_qty: self.decimal(obj, Key::B)?,
            ask_price: self.decimal(obj, Key::a)?,
            ask_qty: self.decimal(obj, Key::A)?,
        }))
    }

    fn depth_update(
        &mut self,
        obj: &Fields,
        levels: &'a mut Vec<Level>,
    ) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(DEPTH_KEYS);
        let symbol = self.symbol(obj, Key::s)?;
        let event_time_us = self.event_time_us(obj)?;
        let first_update_id = self.u64(obj, Key::U)?;
        let final_update_id = self.u64(obj, Key::u)?;
        let (bids, asks) = self.book_sides(obj, Key::b, Key::a, levels)?;
        self.emit(Event::DepthUpdate(DepthUpdate {
            symbol,
            event_time_us,
            first_update_id,
            final_update_id,
            bids,
            asks,
        }))
    }

    fn partial_depth(
        &mut self,
        obj: &Fields,
        levels: &'a mut Vec<Level>,
    ) -> Result<Message<'a>, ParseError> {
        self.stats.unknown_fields += obj.unknown_beyond(PARTIAL_DEPTH_KEYS);
        let last_update_id = self.u64(obj, Key::lastUpdateId)?;
        let (bids, asks) = self.book_sides(obj, Key::bids, Key::asks, levels)?;
        self.emit(Event::PartialDepth(PartialDepth {
            last_update_id,
            bids,
            asks,
        }))
    }

    /// Reads both sides of a book into the level scratch, bids first.
    fn book_sides(
        &self,
        obj: &Fields,
        bids_key: Key,
        asks_key: Key,
        levels: &'a mut Vec<Level>,
    ) -> Result<(&'a [Level], &'a [Level]), ParseError> {
        levels.clear();
        self.levels_into(obj, bids_key, levels)?;
        let bid_count = levels.len();
        self.levels_into(obj, asks_key, levels)?;
        let levels: &'a Vec<Level> = levels;
        Ok(levels.split_at(bid_count))
    }

    /// Appends the `[["price","qty"],…]` array under `key` to `out`.
    fn levels_into(&self, obj: &Fields, key: Key, out: &mut Vec<Level>) -> Result<(), ParseError> {
        let name = key.name();
        let start = self.index(obj, key)?;
        let Some(&Node::Array { len, .. }) = self.tape.get(start) else {
            return Err(ParseError::WrongType(name));
        };
        let mut at = start + 1;
        for _ in 0..len {
            match self.tape.get(at..at + 3) {
                Some(
                    &[Node::Array {
                        len: pair_len,
                        count,
                    }, Node::String(price), Node::String(qty)],
                ) if pair_len >= 2 => {
                    out.push(Level {
                        price: decimal_value(price, name)?,
                        quantity: decimal_value(qty, name)?,
                    });
                    // Elements past the second (none today) are skipped whole.
                    at += 1 + count;
                }
                _ => return Err(ParseError::WrongType(name)),
            }
        }
        Ok(())
    }

    fn reply(
        &mut self,
        root: &Fields,
        names: &'a mut Vec<&'a str>,
    ) -> Result<Message<'a>, ParseError> {
        let id = match self.node(root, Key::id)? {
            Node::Static(StaticNode::Null) => RequestId::Other,
            node => request_id(node)?,
        };
        let result = match self.node(root, Key::result)? {
            Node::Static(StaticNode::Null) => ReplyResult::Null,
            Node::Static(StaticNode::Bool(b)) => ReplyResult::Bool(b),
            Node::Array { len, .. } => {
                let start = self.index(root, Key::result)?;
                let items = self
                    .tape
                    .get(start + 1..start + 1 + len)
                    .ok_or(ParseError::WrongType("result"))?;
                for item in items {
                    match item {
                        Node::String(name) => names.push(*name),
                        _ => return Err(ParseError::WrongType("result")),
                    }
                }
                let names: &'a Vec<&'a str> = names;
                ReplyResult::Streams(StreamList { names })
            }
            _ => return Err(ParseError::WrongType("result")),
        };
        Ok(Message::Reply { id, result })
    }

    fn optional_id(&self, root: &Fields) -> Result<Option<RequestId>, ParseError> {
        if !root.has(Key::id) {
            return Ok(None);
        }
        match self.node(root, Key::id)? {
            Node::Static(StaticNode::Null) => Ok(None),
            node => request_id(node).map(Some),
        }
    }

    /// Records where each known key of the object at `start` sits. `fields` is filled
    /// in place rather than returned: it is large, and moving it out of a `Result` is a
    /// measurable copy on every object.
    #[inline(always)]
    fn object(&self, start: usize, fields: &mut Fields) -> Result<(), ParseError> {
        let Some(&Node::Object { len, .. }) = self.tape.get(start) else {
            return Err(ParseError::NotObject);
        };
        *fields = Fields::EMPTY;
        let mut at = start + 1;
        for _ in 0..len {
            let Some(&Node::String(key)) = self.tape.get(at) else {
                // simd-json only produces string keys; this guards the walk, not input.
                return Err(ParseError::Json("object key is not a string".into()));
            };
            let value = at + 1;
            match Key::from_json(key) {
                Some(known) => {
                    fields.seen |= known.bit();
                    // Tape indexes fit in u32: frames are at most MAX_FRAME_BYTES long.
                    fields.at[known as usize] = value as u32;
                }
                None => fields.unknown += 1,
            }
            at = match self.tape.get(value) {
                Some(Node::Object { count, .. } | Node::Array { count, .. }) => value + 1 + count,
                _ => value + 1,
            };
        }
        Ok(())
    }

    #[inline(always)]
    fn object_field(&self, obj: &Fields, key: Key, fields: &mut Fields) -> Result<(), ParseError> {
        let at = self.index(obj, key)?;
        self.object(at, fields)
            .map_err(|_| ParseError::WrongType(key.name()))
    }

    #[inline(always)]
    fn index(&self, obj: &Fields, key: Key) -> Result<usize, ParseError> {
        if obj.has(key) {
            Ok(obj.at[key as usize] as usize)
        } else {
            Err(ParseError::MissingField(key.name()))
        }
    }

    #[inline(always)]
    fn node(&self, obj: &Fields, key: Key) -> Result<Node<'a>, ParseError> {
        let at = self.index(obj, key)?;
        self.tape
            .get(at)
            .copied()
            .ok_or(ParseError::MissingField(key.name()))
    }

    #[inline(always)]
    fn str(&self, obj: &Fields, key: Key) -> Result<&'a str, ParseError> {
        match self.node(obj, key)? {
            Node::String(s) => Ok(s),
            _ => Err(ParseError::WrongType(key.name())),
        }
    }

    #[inline(always)]
    fn u64(&self, obj: &Fields, key: Key) -> Result<u64, ParseError> {
        match self.node(obj, key)? {
            Node::Static(StaticNode::U64(n)) => Ok(n),
            Node::Static(StaticNode::I64(n)) => {
                u64::try_from(n).map_err(|_| ParseError::OutOfRange(key.name()))
            }
            _ => Err(ParseError::WrongType(key.name())),
        }
    }

    #[inline(always)]
    fn i64(&self, obj: &Fields, key: Key) -> Result<i64, ParseError> {
        match self.node(obj, key)? {
            Node::Static(StaticNode::I64(n)) => Ok(n),
            Node::Static(StaticNode::U64(n)) => {
                i64::try_from(n).map_err(|_| ParseError::OutOfRange(key.name()))
            }
            _ => Err(ParseError::WrongType(key.name())),
        }
    }

    #[inline(always)]
    fn bool(&self, obj: &Fields, key: Key) -> Result<bool, ParseError> {
        match self.node(obj, key)? {
            Node::Static(StaticNode::Bool(b)) => Ok(b),
            _ => Err(ParseError::WrongType(key.name())),
        }
    }

    #[inline(always)]
    fn decimal(&self, obj: &Fields, key: Key) -> Result<Decimal, ParseError> {
        decimal_value(self.str(obj, key)?, key.name())
    }

    #[inline(always)]
    fn symbol(&self, obj: &Fields, key: Key) -> Result<Symbol, ParseError> {
        Symbol::new(self.str(obj, key)?).map_err(|e| match e {
            SymbolError::TooLong => ParseError::OutOfRange(key.name()),
            SymbolError::Empty | SymbolError::BadChar => ParseError::WrongType(key.name()),
        })
    }

    /// `E`, normalised to microseconds.
    #[inline(always)]
    fn event_time_us(&self, obj: &Fields) -> Result<i64, ParseError> {
        event_time_us(self.i64(obj, Key::E)?, self.time_unit)
            .ok_or(ParseError::OutOfRange(Key::E.name()))
    }

    /// A record time (kline open/close, trade time), normalised to milliseconds.
    #[inline(always)]
    fn time_ms(&self, obj: &Fields, key: Key) -> Result<i64, ParseError> {
        record_time_ms(self.i64(obj, key)?, self.time_unit)
            .ok_or(ParseError::OutOfRange(key.name()))
    }
}

/// A price or quantity. Binance's are never negative (a depth level's quantity is 0 to
/// remove it, never less), so a sign, even on zero, is out of range: a negative price
/// would be stored, charted and fed to the indicators as if real.
#[inline(always)]
fn decimal_value(text: &str, name: &'static str) -> Result<Decimal, ParseError> {
    match parse_decimal(text) {
        Ok(_) if text.starts_with('-') => Err(ParseError::OutOfRange(name)),
        Ok(d) => Ok(d),
        Err(DecimalError::Invalid) => Err(ParseError::WrongType(name)),
        Err(DecimalError::OutOfRange) => Err(ParseError::OutOfRange(name)),
    }
}

/// A non-null request id: our numeric ids come back as numbers; anything else a server
/// might echo (a string, a negative or fractional number) is only counted.
fn request_id(node: Node<'_>) -> Result<RequestId, ParseError> {
    match node {
        Node::Static(StaticNode::U64(n)) => Ok(RequestId::Number(n)),
        Node::Static(StaticNode::I64(n)) => Ok(u64::try_from(n)
            .map(RequestId::Number)
            .unwrap_or(RequestId::Other)),
        Node::Static(StaticNode::F64(_)) | Node::String(_) => Ok(RequestId::Other),
        _ => Err(ParseError::WrongType("id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_its_name() {
        for (slot, &name) in KEY_NAMES.iter().enumerate() {
            let key = Key::from_json(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(key as usize, slot);
            assert_eq!(key.name(), name);
        }
        assert_eq!(Key::from_json("z"), None);
        assert_eq!(Key::from_json("streams"), None);
        assert_eq!(Key::from_json(""), None);
    }
}
