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
//! else. The general path ([`tape`]) handles all other frames: simd-json turns the frame
//! into a tape (a flat array of nodes); each object is walked once, recording where
//! each key we know sits (keys are matched by their bytes), and the fields of the
//! recognised shape are read from those places. Both paths decode a frame to the same
//! message.
//!
//! In the general path fields are accepted in any order; a field we do not know is
//! skipped and counted in [`ParseStats::unknown_fields`], an event type we do not know
//! becomes [`Event::Unknown`] and is counted in [`ParseStats::unknown_events`]. Prices
//! and quantities go through an exact decimal-string parser ([`decimal`]), about twice
//! as fast as `Decimal::from_str` on Binance's eight-decimal strings.

mod decimal;
mod fast;
mod tape;

use simd_json::{Buffers, Node, Tape};

use super::{DepthUpdate, Event, Message, ParseError, PartialDepth, TimeUnit};
use crate::market::Level;
use tape::Walk;

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
                Walk::new(&tape.0, *time_unit, &mut *stats).message(levels, recycled_names(names))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_owned(parser: &mut Parser, text: &str) -> Result<String, ParseError> {
        let mut frame = text.as_bytes().to_vec();
        parser.parse(&mut frame).map(|m| format!("{m:?}"))
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
