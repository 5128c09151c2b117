//! The zero-copy Binance frame parser: one text frame in, one typed [`Message`] out.
//!
//! Runs on: every shard core, one [`Parser`] per connection (it is not shared). Owns:
//! the simd-json scratch (its [`Buffers`] and tape), the levels behind depth `bids`/`asks`
//! slices and the names behind a LIST_SUBSCRIPTIONS reply, all reused from frame to
//! frame. In: the frame's bytes, which simd-json rewrites in place (string unescaping).
//! Out: a [`Message`] borrowing strings from the frame and slices from the parser, plus
//! counters in [`ParseStats`].
//!
//! After the first few frames have grown the scratch, parsing allocates nothing on the
//! heap (`tests/wire.rs` proves it with a counting allocator).
//!
//! How a frame is read: first the fast path ([`fast`]) tries Binance's own layout of
//! each market event (kline, trade, aggTrade, bookTicker, depth diff, partial depth),
//! key by key in Binance's order, decoding values where they stand; it takes the events
//! as Binance writes them (every frame of the recorded capture) and declines anything
//! else. The general path handles all other frames: simd-json turns the frame into a
//! tape (a flat array of nodes); each object is walked once, recording where each key
//! we know sits (keys are matched by their bytes), and the fields of the recognised
//! shape are read from those places. Both paths decode a frame to the same message.
//!
//! In the general path fields are accepted in any order; a field we do not know is
//! skipped and counted in [`ParseStats::unknown_fields`], an event type we do not know
//! becomes [`Event::Unknown`] and is counted in [`ParseStats::unknown_events`]. Prices
//! and quantities go through an exact decimal-string parser ([`decimal`]), about twice
//! as fast as `Decimal::from_str` on Binance's eight-decimal strings.

mod decimal;
mod fast;

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::{
    DepthUpdate, Event, Message, ParseError, PartialDepth, ReplyResult, RequestId, StreamList,
    TimeUnit,
};
use crate::market::{
    AggTrade, BookTicker, Candle, Decimal, Interval, Level, Symbol, SymbolError, Trade,
};
use decimal::{parse_decimal, DecimalError};

/// The largest frame we parse. Binance's largest stream payloads (a 20-level partial
/// book, a LIST_SUBSCRIPTIONS reply of 1024 names) stay far below 64 KiB; 1 MiB leaves
/// room for any of them while bounding the scratch a hostile frame can make us grow.
const MAX_FRAME_BYTES: usize = 1 << 20;

/// Deepest JSON nesting we accept. Binance frames nest four levels at most (envelope,
/// event, `b` array, one level); anything much deeper is hostile, and rejecting it early
/// also bounds simd-json's stage-2 stack.
const MAX_NESTING_DEPTH: usize = 16;

/// Initial size of simd-json's buffers: enough for every stream frame we expect, so a
/// normal connection never grows them after the first frame.
const INITIAL_FRAME_CAPACITY: usize = 4096;

/// Initial capacity of the depth-level scratch: a 20-level partial book on each side.
const INITIAL_LEVEL_CAPACITY: usize = 64;

/// Microseconds per millisecond, for normalising times.
const US_PER_MS: i64 = 1_000;

/// Counters kept by a [`Parser`]; plain numbers, read by whoever owns the parser.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParseStats {
    /// Frames handed to [`Parser::parse`].
    pub frames: u64,
    /// Frames rejected with a [`ParseError`].
    pub errors: u64,
    /// Object keys we do not know, skipped (across all frames).
    pub unknown_fields: u64,
    /// Events whose `e` we do not handle, returned as [`Event::Unknown`].
    pub unknown_events: u64,
    /// Frames decoded by the fast path for Binance's exact layouts; the rest went
    /// through simd-json. A drop in this share means Binance changed its layout.
    pub fast_path_frames: u64,
}

/// Parses Binance frames; keep one per connection and reuse it for every frame.
pub struct Parser {
    time_unit: TimeUnit,
    fast_path: bool,
    pub stats: ParseStats,
    buffers: Buffers,
    /// The tape's storage between frames, always empty here (see [`Parser::parse`]).
    tape: Vec<Node<'static>>,
    /// Backing store of the `bids` and `asks` slices of the last depth event.
    levels: Vec<Level>,
    /// Backing store of the names of the last LIST_SUBSCRIPTIONS reply. Its elements
    /// borrow from the frame that produced them; see [`recycled_names`] for why the
    /// `'static` here is never observed.
    names: Vec<&'static str>,
}

impl Parser {
    /// The largest frame [`Parser::parse`] accepts; longer ones are
    /// [`ParseError::TooLarge`].
    pub const MAX_FRAME_BYTES: usize = MAX_FRAME_BYTES;

    pub fn new(time_unit: TimeUnit) -> Parser {
        Parser {
            time_unit,
            fast_path: true,
            stats: ParseStats::default(),
            buffers: Buffers::with_max_depth(INITIAL_FRAME_CAPACITY, MAX_NESTING_DEPTH),
            tape: Vec::with_capacity(INITIAL_FRAME_CAPACITY / 4),
            levels: Vec::with_capacity(INITIAL_LEVEL_CAPACITY),
            names: Vec::new(),
        }
    }

    /// The unit the timestamps of incoming frames are in (`timeUnit` on the stream URL).
    pub fn time_unit(&self) -> TimeUnit {
        self.time_unit
    }

    pub fn set_time_unit(&mut self, time_unit: TimeUnit) {
        self.time_unit = time_unit;
    }

    /// Turns the fast path for Binance's exact layouts on (the default) or off, so that
    /// every frame goes through simd-json; for measuring and comparing the two paths.
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.fast_path = enabled;
    }

    /// Decodes one text frame. The frame may be modified in place (simd-json resolves
    /// JSON string escapes into it), and the result borrows from it and from this parser.
    pub fn parse<'a>(&'a mut self, frame: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
        let Parser {
            time_unit,
            fast_path,
            stats,
            buffers,
            tape: tape_store,
            levels,
            names,
        } = self;
        stats.frames += 1;
        if frame.len() > MAX_FRAME_BYTES {
            stats.errors += 1;
            return Err(ParseError::TooLarge(frame.len()));
        }

        if *fast_path {
            levels.clear();
            if let Some(decoded) = fast::read(frame, *time_unit, levels) {
                stats.fast_path_frames += 1;
                let message = fast_message(decoded, frame, levels);
                if message.is_err() {
                    stats.errors += 1;
                }
                return message;
            }
        }

        // The tape's nodes borrow from the frame, so its storage is lent to this call
        // under the frame's lifetime and handed back empty before returning.
        let mut tape = Tape(std::mem::take(tape_store)).reset::<'a>();
        let result = match simd_json::fill_tape(frame, buffers, &mut tape) {
            Ok(()) => {
                let mut walk = Walk {
                    tape: &tape.0,
                    time_unit: *time_unit,
                    stats: &mut *stats,
                    stream: None,
                };
                walk.message(levels, recycled_names(names))
            }
            Err(e) => Err(ParseError::Json(e.to_string())),
        };
        *tape_store = tape.reset().0;
        if result.is_err() {
            stats.errors += 1;
        }
        result
    }
}

/// The message for a frame the fast path decoded, borrowing its stream name from the
/// frame and its depth levels from the level scratch.
#[inline(always)]
fn fast_message<'a>(
    decoded: fast::Fast,
    frame: &'a [u8],
    levels: &'a [Level],
) -> Result<Message<'a>, ParseError> {
    // The fast path checked the name's bytes to be printable ASCII and the level count
    // against the scratch, so neither error below can happen; they only keep this
    // function free of panics.
    let stream = match decoded.stream {
        Some(range) => Some(
            frame
                .get(range)
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or(ParseError::WrongType("stream"))?,
        ),
        None => None,
    };
    let sides = |bid_count: usize| {
        levels
            .split_at_checked(bid_count)
            .ok_or(ParseError::OutOfRange("b"))
    };
    let event = match decoded.event {
        fast::FastEvent::Kline(candle) => Event::Kline(candle),
        fast::FastEvent::Trade(trade) => Event::Trade(trade),
        fast::FastEvent::AggTrade(trade) => Event::AggTrade(trade),
        fast::FastEvent::BookTicker(ticker) => Event::BookTicker(ticker),
        fast::FastEvent::DepthUpdate {
            symbol,
            event_time_us,
            first_update_id,
            final_update_id,
            bid_count,
        } => {
            let (bids, asks) = sides(bid_count)?;
            Event::DepthUpdate(DepthUpdate {
                symbol,
                event_time_us,
                first_update_id,
                final_update_id,
                bids,
                asks,
            })
        }
        fast::FastEvent::PartialDepth {
            last_update_id,
            bid_count,
        } => {
            let (bids, asks) = sides(bid_count)?;
            Event::PartialDepth(PartialDepth {
                last_update_id,
                bids,
                asks,
            })
        }
    };
    Ok(Message::Event { stream, event })
}

/// Shows the settings and counters only: the scratch holds nothing meaningful between
/// frames, and the name store must never be read outside a parse (see
/// [`recycled_names`]).
impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("time_unit", &self.time_unit)
            .field("fast_path", &self.fast_path)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Lends the name store to one frame, empty, with the frame's lifetime.
fn recycled_names<'a>(store: &'a mut Vec<&'static str>) -> &'a mut Vec<&'a str> {
    store.clear();
    // SAFETY: `&'static str` and `&'a str` have the same layout, and the vector is empty,
    // so no reference in it changes lifetime. Whatever is pushed through the returned
    // borrow lives at least `'a` and can be read only through that borrow (or the
    // `Message` made from it), which ends with `'a`. The store is private, never read
    // directly (`Parser`'s `Debug` skips it, nothing else exposes it) and cleared here
    // before every reuse, so a reference that outlived its frame is never read; `&str`
    // needs no drop.
    unsafe { std::mem::transmute::<&'a mut Vec<&'static str>, &'a mut Vec<&'a str>>(store) }
}

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
struct Walk<'t, 'a> {
    tape: &'t [Node<'a>],
    time_unit: TimeUnit,
    stats: &'t mut ParseStats,
    /// The combined-stream name, once the envelope has been read.
    stream: Option<&'a str>,
}

impl<'a> Walk<'_, 'a> {
    #[inline(always)]
    fn message(
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

/// An event time (`E`) in the connection's unit, as microseconds; `None` when negative
/// or beyond `i64` once converted.
#[inline(always)]
fn event_time_us(raw: i64, time_unit: TimeUnit) -> Option<i64> {
    if raw < 0 {
        return None;
    }
    match time_unit {
        TimeUnit::Millisecond => raw.checked_mul(US_PER_MS),
        TimeUnit::Microsecond => Some(raw),
    }
}

/// A record time (kline open/close, trade time) in the connection's unit, as
/// milliseconds; `None` when negative.
#[inline(always)]
fn record_time_ms(raw: i64, time_unit: TimeUnit) -> Option<i64> {
    if raw < 0 {
        return None;
    }
    Some(match time_unit {
        TimeUnit::Millisecond => raw,
        TimeUnit::Microsecond => raw / US_PER_MS,
    })
}

#[inline(always)]
fn decimal_value(text: &str, name: &'static str) -> Result<Decimal, ParseError> {
    parse_decimal(text).map_err(|e| match e {
        DecimalError::Invalid => ParseError::WrongType(name),
        DecimalError::OutOfRange => ParseError::OutOfRange(name),
    })
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

    fn parse_owned(parser: &mut Parser, text: &str) -> Result<String, ParseError> {
        let mut frame = text.as_bytes().to_vec();
        parser.parse(&mut frame).map(|m| format!("{m:?}"))
    }

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

    #[test]
    fn stats_count_frames_errors_and_unknowns() {
        let mut parser = Parser::new(TimeUnit::Millisecond);
        assert!(parse_owned(&mut parser, r#"{"e":"serverShutdown","E":1,"zz":1,"k":2}"#).is_ok());
        assert!(parse_owned(&mut parser, r#"{"e":"outboundAccountPosition","E":1}"#).is_ok());
        assert!(parse_owned(&mut parser, "{").is_err());
        assert_eq!(
            parser.stats,
            ParseStats {
                frames: 3,
                errors: 1,
                unknown_fields: 2,
                unknown_events: 1,
                fast_path_frames: 0,
            }
        );
    }

    #[test]
    fn the_time_unit_can_change_between_frames() {
        let mut parser = Parser::new(TimeUnit::Millisecond);
        let text = r#"{"e":"serverShutdown","E":1672515782136}"#;
        assert!(parse_owned(&mut parser, text)
            .is_ok_and(|m| m.contains("event_time_us: 1672515782136000")));
        parser.set_time_unit(TimeUnit::Microsecond);
        assert_eq!(parser.time_unit(), TimeUnit::Microsecond);
        assert!(parse_owned(&mut parser, text)
            .is_ok_and(|m| m.contains("event_time_us: 1672515782136 ")));
    }
}
