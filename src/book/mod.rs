//! Local order books kept from Binance's diff depth stream, synchronised the way its
//! documentation prescribes, exact to the decimal and bounded in memory and time.
//!
//! Runs on: the shard core that owns the symbol (pure: no clock reads, no I/O; times
//! come from the caller). In: diff depth events and REST depth snapshots. Out: the book,
//! what each event did to it, and when a snapshot is needed.
//!
//! The procedure ("How to manage a local order book correctly"):
//! 1. Buffer the stream's events; ask for a snapshot (`GET /api/v3/depth`).
//! 2. A snapshot whose `lastUpdateId` is below the first buffered event's `U - 1` is too
//!    old: ask again.
//! 3. Drop buffered events with `u` <= `lastUpdateId`; the first one applied must
//!    straddle `lastUpdateId + 1` (`U <= lastUpdateId + 1 <= u`).
//! 4. From then on each event's `U` is the previous event's `u + 1`. An event that
//!    skips ahead breaks the chain: the book is invalid until it is synchronised again.
//!    One entirely at or below the last applied `u` is a repeat (a rotation's overlap)
//!    and is skipped.
//! 5. Quantities are absolute; zero removes the level.
//!
//! Besides a broken chain, a book is resynchronised when its connection is lost, when
//! it crosses (best bid at or above best ask: it cannot be right), and when a side that
//! was cut to the configured depth has fewer levels left than the published top needs.
//! Every resync is counted by cause, with the time the book was invalid.
//!
//! Layout: `side` is one sorted, bounded side; `board` the latest published snapshots
//! the dashboard and the Redis publisher read; this file the synchronisation.

pub mod board;
mod side;

use rust_decimal::Decimal;

use crate::market::{Level, Symbol};

pub use side::{BookLevel, LevelChange, Side};

/// Decimal places of a price unit: Binance prices have at most 8.
pub const PRICE_SCALE: u32 = 8;
/// Diff events buffered while a snapshot is awaited; past this the oldest are dropped
/// (counted): a snapshot taken later covers them anyway.
pub const MAX_BUFFERED_EVENTS: usize = 4096;
/// Level changes held by the buffered events, at most.
pub const MAX_BUFFERED_LEVELS: usize = 1 << 20;

/// The limits `GET /api/v3/depth` accepts, smallest first, with Binance's weights.
pub const SNAPSHOT_LIMITS: [(u32, u32); 4] = [(100, 5), (500, 25), (1000, 50), (5000, 250)];

/// The smallest snapshot limit holding `levels`, and its request weight.
pub fn snapshot_limit(levels: usize) -> (u32, u32) {
    SNAPSHOT_LIMITS
        .iter()
        .copied()
        .find(|(limit, _)| *limit as usize >= levels)
        .unwrap_or(SNAPSHOT_LIMITS[SNAPSHOT_LIMITS.len() - 1])
}

/// A price as integer units of 10^-8; `None` when it has finer digits than that or is
/// out of range (such a level is counted and the book resynchronised, never rounded).
#[inline]
pub fn price_units(price: Decimal) -> Option<i64> {
    /// 10^0 ..= 10^8: the factors from a price's scale up to 8 decimals.
    const UP: [i64; 9] = [
        100_000_000,
        10_000_000,
        1_000_000,
        100_000,
        10_000,
        1_000,
        100,
        10,
        1,
    ];
    let scale = price.scale();
    let mantissa = price.mantissa();
    if scale <= PRICE_SCALE {
        // Prices come with at most 8 decimals: one multiplication in 64 bits.
        let m = i64::try_from(mantissa).ok().filter(|m| *m >= 0)?;
        m.checked_mul(UP[scale as usize])
    } else {
        let div = 10i128.pow(scale - PRICE_SCALE);
        if mantissa % div != 0 {
            return None;
        }
        i64::try_from(mantissa / div).ok().filter(|u| *u >= 0)
    }
}

/// The price of `units` (10^-8) as a decimal with Binance's 8 places.
pub fn units_price(units: i64) -> Decimal {
    Decimal::new(units, PRICE_SCALE)
}

/// Why a book was resynchronised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// The first synchronisation after the start.
    Start = 0,
    /// An event skipped update ids.
    Gap = 1,
    /// The connection carrying the stream was lost.
    Reconnect = 2,
    /// Best bid at or above best ask.
    Crossed = 3,
    /// A cut side ran short of the levels the published top needs.
    Refill = 4,
    /// A price with more than 8 decimals or out of range.
    BadPrice = 5,
}

impl Resync {
    pub const ALL: [Resync; 6] = [
        Resync::Start,
        Resync::Gap,
        Resync::Reconnect,
        Resync::Crossed,
        Resync::Refill,
        Resync::BadPrice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resync::Start => "start",
            Resync::Gap => "gap",
            Resync::Reconnect => "reconnect",
            Resync::Crossed => "crossed",
            Resync::Refill => "refill",
            Resync::BadPrice => "bad_price",
        }
    }
}

/// A REST depth snapshot, levels best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub symbol: Symbol,
    pub last_update_id: u64,
    pub bids: Vec<BookLevel>,
    pub asks: Vec<BookLevel>,
    /// The limit it was asked with: a side as long as this may go on beyond.
    pub limit: u32,
}

/// What one diff event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied; `top` when the best bid or ask changed.
    Live { top: bool },
    /// Entirely at or below the last applied update: skipped.
    Repeat,
    /// Buffered while the book synchronises.
    Buffered,
    /// The event made the book invalid; a resync began.
    Invalidated(Resync),
}

/// What applying a snapshot did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// The book is valid from it (with the buffered events applied), after being
    /// invalid for `invalid_ns`.
    Synced { invalid_ns: u64 },
    /// Older than the buffered events: another is needed.
    TooOld,
    /// Not waiting for one (a late answer): ignored.
    Unwanted,
    /// It, or a buffered event after it, made the book invalid again.
    Invalidated(Resync),
}

/// A buffered diff event: its ids and where its levels sit in the buffer.
#[derive(Clone, Copy, Debug)]
struct Buffered {
    first: u64,
    last: u64,
    event_time_us: i64,
    bids: (usize, usize),
    asks: (usize, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Synchronised: events apply.
    Live,
    /// Waiting for a snapshot; `asked` once it has been requested.
    Syncing { asked: bool },
}

/// One symbol's local book and its synchronisation.
#[derive(Debug, Clone)]
pub struct LocalBook {
    pub symbol: Symbol,
    bids: Side,
    asks: Side,
    /// `u` of the last applied event (or the snapshot's `lastUpdateId`).
    last_update_id: u64,
    /// Event time of the last applied event (µs; 0 before any).
    event_time_us: i64,
    phase: Phase,
    /// Fewest levels a cut side may keep before it is refilled from a snapshot.
    min_levels: usize,
    buffer: Vec<Buffered>,
    buffered_levels: Vec<(i64, Decimal)>,
    /// Since when (caller's ns) the book has been invalid; `None` while valid.
    invalid_since_ns: Option<u64>,
    /// Buffered events dropped for room.
    pub buffer_drops: u64,
}

impl LocalBook {
    /// An invalid book of `symbol` keeping `max_levels` per side, resynchronised when a
    /// cut side falls below `min_levels`; `now_ns` starts its invalid time.
    pub fn new(symbol: Symbol, max_levels: usize, min_levels: usize, now_ns: u64) -> LocalBook {
        LocalBook {
            symbol,
            bids: Side::new(true, max_levels),
            asks: Side::new(false, max_levels),
            last_update_id: 0,
            event_time_us: 0,
            phase: Phase::Syncing { asked: false },
            min_levels: min_levels.min(max_levels),
            buffer: Vec::with_capacity(64),
            buffered_levels: Vec::with_capacity(1024),
            invalid_since_ns: Some(now_ns),
            buffer_drops: 0,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.phase == Phase::Live
    }

    pub fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    pub fn event_time_us(&self) -> i64 {
        self.event_time_us
    }

    pub fn bids(&self) -> &Side {
        &self.bids
    }

    pub fn asks(&self) -> &Side {
        &self.asks
    }

    /// Since when the book has been invalid (caller's ns).
    pub fn invalid_since_ns(&self) -> Option<u64> {
        self.invalid_since_ns
    }

    /// True when a snapshot should be asked for now: synchronising, not yet asked, and
    /// the stream has delivered an event to buffer (Binance: buffer first, then ask).
    pub fn wants_snapshot(&self) -> bool {
        self.phase == Phase::Syncing { asked: false } && !self.buffer.is_empty()
    }

    /// True while a snapshot asked for has not been answered.
    pub fn awaiting_snapshot(&self) -> bool {
        self.phase == Phase::Syncing { asked: true }
    }

    /// The snapshot was asked for.
    pub fn snapshot_asked(&mut self) {
        if let Phase::Syncing { .. } = self.phase {
            self.phase = Phase::Syncing { asked: true };
        }
    }

    /// The snapshot request failed: ask again when due.
    pub fn snapshot_failed(&mut self) {
        if let Phase::Syncing { .. } = self.phase {
            self.phase = Phase::Syncing { asked: false };
        }
    }

    /// Makes the book invalid at `now_ns` and starts over: buffered events
    /// from here on, then a new snapshot. The levels are kept until it comes, for
    /// readers that want to see what was (marked invalid).
    pub fn invalidate(&mut self, now_ns: u64) {
        if self.invalid_since_ns.is_none() {
            self.invalid_since_ns = Some(now_ns);
        }
        self.phase = Phase::Syncing { asked: false };
        self.buffer.clear();
        self.buffered_levels.clear();
    }

    /// Applies (or buffers) one diff event at `now_ns`.
    pub fn on_diff(
        &mut self,
        first: u64,
        last: u64,
        event_time_us: i64,
        bids: &[Level],
        asks: &[Level],
        now_ns: u64,
    ) -> Applied {
        match self.phase {
            Phase::Syncing { .. } => {
                self.buffer_event(first, last, event_time_us, bids, asks);
                Applied::Buffered
            }
            Phase::Live => {
                if last <= self.last_update_id {
                    return Applied::Repeat;
                }
                if first > self.last_update_id + 1 {
                    self.invalidate(now_ns);
                    self.buffer_event(first, last, event_time_us, bids, asks);
                    return Applied::Invalidated(Resync::Gap);
                }
                match self.apply_levels(bids, asks) {
                    Ok(top) => {
                        self.last_update_id = last;
                        self.event_time_us = event_time_us;
                        match self.check() {
                            None => Applied::Live { top },
                            Some(cause) => {
                                self.invalidate(now_ns);
                                Applied::Invalidated(cause)
                            }
                        }
                    }
                    Err(cause) => {
                        self.invalidate(now_ns);
                        Applied::Invalidated(cause)
                    }
                }
            }
        }
    }

    /// Applies a REST snapshot at `now_ns`, then the buffered events after it.
    pub fn on_snapshot(&mut self, snap: &Snapshot, now_ns: u64) -> SnapshotOutcome {
        if self.phase != (Phase::Syncing { asked: true }) {
            return SnapshotOutcome::Unwanted;
        }
        let lid = snap.last_update_id;
        // Every buffered event older than the snapshot (or none came): the snapshot
        // alone is the book, checked like any other, and the next event must straddle
        // it.
        let start = self
            .buffer
            .iter()
            .position(|b| b.last > lid)
            .unwrap_or(self.buffer.len());
        if self.buffer.get(start).is_some_and(|b| b.first > lid + 1) {
            // Events between the snapshot and the oldest buffered one are unknown.
            self.phase = Phase::Syncing { asked: false };
            return SnapshotOutcome::TooOld;
        }
        self.load(snap);
        let buffer = std::mem::take(&mut self.buffer);
        let levels = std::mem::take(&mut self.buffered_levels);
        let mut outcome = None;
        let mut prev = lid;
        for b in &buffer[start..] {
            if b.last <= prev {
                // A repeat (a rotation's overlap) buffered twice.
                continue;
            }
            if b.first > prev + 1 {
                outcome = Some(Resync::Gap);
                break;
            }
            let bids = &levels[b.bids.0..b.bids.1];
            let asks = &levels[b.asks.0..b.asks.1];
            if let Err(cause) = self.apply_units(bids, asks) {
                outcome = Some(cause);
                break;
            }
            prev = b.last;
            self.event_time_us = b.event_time_us;
        }
        // Keep the buffers' capacity for the next resync.
        self.buffer = buffer;
        self.buffered_levels = levels;
        self.buffer.clear();
        self.buffered_levels.clear();
        self.last_update_id = prev;
        match outcome.or_else(|| self.check()) {
            None => self.synced(now_ns),
            Some(cause) => {
                self.invalidate(now_ns);
                SnapshotOutcome::Invalidated(cause)
            }
        }
    }

    fn synced(&mut self, now_ns: u64) -> SnapshotOutcome {
        self.phase = Phase::Live;
        let since = self.invalid_since_ns.take().unwrap_or(now_ns);
        SnapshotOutcome::Synced {
            invalid_ns: now_ns.saturating_sub(since),
        }
    }

    fn load(&mut self, snap: &Snapshot) {
        let limit = snap.limit as usize;
        self.bids.load(&snap.bids, snap.bids.len() >= limit);
        self.asks.load(&snap.asks, snap.asks.len() >= limit);
        self.last_update_id = snap.last_update_id;
    }

    /// Why the book cannot be right as it stands, if so.
    fn check(&self) -> Option<Resync> {
        if let (Some(b), Some(a)) = (self.bids.best(), self.asks.best()) {
            if b.price >= a.price {
                return Some(Resync::Crossed);
            }
        }
        let short = |s: &Side| s.truncated() && s.len() < self.min_levels;
        (short(&self.bids) || short(&self.asks)).then_some(Resync::Refill)
    }

    /// Applies the levels of one event; true when the top changed.
    #[inline]
    fn apply_levels(&mut self, bids: &[Level], asks: &[Level]) -> Result<bool, Resync> {
        let mut top = false;
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for l in levels {
                let price = price_units(l.price).ok_or(Resync::BadPrice)?;
                if let LevelChange::Applied { top: t } = side.apply(price, l.quantity) {
                    top |= t;
                }
            }
        }
        Ok(top)
    }

    fn apply_units(
        &mut self,
        bids: &[(i64, Decimal)],
        asks: &[(i64, Decimal)],
    ) -> Result<(), Resync> {
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for &(price, qty) in levels {
                if price < 0 {
                    return Err(Resync::BadPrice);
                }
                side.apply(price, qty);
            }
        }
        Ok(())
    }

    fn buffer_event(
        &mut self,
        first: u64,
        last: u64,
        time_us: i64,
        bids: &[Level],
        asks: &[Level],
    ) {
        let n = bids.len() + asks.len();
        if n > MAX_BUFFERED_LEVELS {
            self.buffer_drops += 1;
            return;
        }
        while self.buffer.len() >= MAX_BUFFERED_EVENTS
            || self.buffered_levels.len() + n > MAX_BUFFERED_LEVELS
        {
            // The oldest goes: a snapshot asked from now on is newer than it anyway.
            let Some(oldest) = self.buffer.first().copied() else {
                break;
            };
            let cut = oldest.asks.1;
            self.buffered_levels.drain(..cut);
            self.buffer.remove(0);
            for b in &mut self.buffer {
                b.bids = (b.bids.0 - cut, b.bids.1 - cut);
                b.asks = (b.asks.0 - cut, b.asks.1 - cut);
            }
            self.buffer_drops += 1;
        }
        // A price that cannot be held exactly is kept as -1: applying it resyncs.
        let unit = |l: &Level| (price_units(l.price).unwrap_or(-1), l.quantity);
        let b0 = self.buffered_levels.len();
        self.buffered_levels.extend(bids.iter().map(unit));
        let b1 = self.buffered_levels.len();
        self.buffered_levels.extend(asks.iter().map(unit));
        let a1 = self.buffered_levels.len();
        self.buffer.push(Buffered {
            first,
            last,
            event_time_us: time_us,
            bids: (b0, b1),
            asks: (b1, a1),
        });
    }
}

#[cfg(test)]
mod tests;
