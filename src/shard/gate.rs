//! The signal gate: each series' signal engine, and the closed candles that wait for a
//! hole before them to be filled, confirmed absent or given up on.
//!
//! Pure: no clock, no rings. Every call that can start or end a wait takes `now_ns`
//! from its caller (the shard), so hold timers are tested by advancing it. Whether the
//! backfill may still fill a hole is the caller's to say (`pending`); the signals a call
//! makes are pushed onto `out` for the caller to send.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::market::{Candle, Interval};
use crate::metrics::ShardStats;
use crate::signals::params::SignalsConfig;
use crate::signals::rules::{Bar, BookSignal, Fired, SignalEngine};
use crate::signals::{Signal, SignalKind};

/// Closed candles a series' signals may hold while waiting for the candles before them;
/// past this the hole is given up on.
pub const MAX_HELD_CANDLES: usize = 512;

/// How long signals wait for a hole by default (see [`super::ShardState::set_hold`]).
pub const DEFAULT_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// The signal engine of one (symbol, timeframe) and the candles waiting for it.
struct SignalSlot {
    engine: SignalEngine,
    /// Closed candles after a hole (or before the warm start), by open time.
    held: BTreeMap<i64, Candle>,
    /// No candle is applied until the warm start's history has been (or has failed).
    awaiting_warm: bool,
    /// When the current hole began to hold candles (monotonic ns).
    held_since_ns: Option<u64>,
    /// The engine has applied its warm-up candles (counted in `signal_series_ready`).
    ready: bool,
}

/// The shard's signal engines, one slot per series (indexed like the shard's tracks).
pub(super) struct SignalGate {
    slots: Vec<SignalSlot>,
    rewarm_after_candles: u64,
    warm_candles: u32,
    /// Slots holding candles now (so the periodic check is free when none is).
    holding: usize,
    /// Slots whose engine is warm (`signal_series_ready`).
    ready: i64,
    stats: Arc<ShardStats>,
}

impl SignalGate {
    /// One cold slot per series; `series` gives each slot's timeframe, in slot order.
    pub(super) fn new(
        config: &SignalsConfig,
        series: impl Iterator<Item = Interval>,
        stats: Arc<ShardStats>,
    ) -> SignalGate {
        let slots = series
            .map(|tf| SignalSlot {
                engine: SignalEngine::new(&config.params(tf)),
                held: BTreeMap::new(),
                awaiting_warm: false,
                held_since_ns: None,
                ready: false,
            })
            .collect();
        SignalGate {
            slots,
            rewarm_after_candles: u64::from(config.rewarm_after_candles),
            warm_candles: config.warm_candles,
            holding: 0,
            ready: 0,
            stats,
        }
    }

    /// Counts the slot as ready once its engine has applied its warm-up candles, and no
    /// longer once it was reset.
    fn settle(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let ready = s.engine.applied() >= u64::from(s.engine.params().warm_up_candles());
        if ready != s.ready {
            s.ready = ready;
            self.ready += if ready { 1 } else { -1 };
            self.stats.signal_series_ready.set(self.ready);
        }
    }

    /// Makes every series wait for its warm start (when warm starts are on).
    pub(super) fn await_warm_starts(&mut self) {
        if self.warm_candles > 0 {
            for s in &mut self.slots {
                s.awaiting_warm = true;
            }
        }
    }

    pub(super) fn engine(&self, slot: usize) -> Option<&SignalEngine> {
        Some(&self.slots.get(slot)?.engine)
    }

    /// Rebuilds a series' indicators from history (nothing fires), then applies the
    /// candles held while the warm start was on its way.
    pub(super) fn warm(
        &mut self,
        slot: usize,
        bars: &[Bar],
        pending: impl Fn(usize, i64, i64) -> bool,
        now_ns: u64,
        out: &mut Vec<Signal>,
    ) {
        let s = &mut self.slots[slot];
        let was_awaiting = std::mem::replace(&mut s.awaiting_warm, false);
        if !bars.is_empty() {
            if s.engine.applied() > 0 {
                s.engine.reset();
            }
            let mut applied = 0u64;
            for bar in bars {
                if s.engine.update(bar, |_| {}) {
                    applied += 1;
                }
            }
            self.stats.signal_warm_candles.add(applied);
            self.settle(slot);
        }
        // Counted even when the exchange had no history yet (a new market): the
        // series is warm as far as it can be.
        if was_awaiting || !bars.is_empty() {
            self.stats.signal_warm_series.inc();
        }
        self.drain(slot, pending, now_ns, out);
    }

    /// The warm start of a series failed: it warms from live candles instead.
    pub(super) fn warm_failed(
        &mut self,
        slot: usize,
        pending: impl Fn(usize, i64, i64) -> bool,
        now_ns: u64,
        out: &mut Vec<Signal>,
    ) {
        self.slots[slot].awaiting_warm = false;
        self.drain(slot, pending, now_ns, out);
    }

    /// A closed candle for the series' signals (live or backfilled, never history):
    /// applied now if it is the next one, else held until the hole before it is
    /// resolved. True when it was applied at once (its signals are the live path's).
    pub(super) fn offer(
        &mut self,
        slot: usize,
        c: &Candle,
        book: Option<BookSignal>,
        pending: impl Fn(usize, i64, i64) -> bool,
        now_ns: u64,
        out: &mut Vec<Signal>,
    ) -> bool {
        let s = &mut self.slots[slot];
        let next = s.engine.last_open_ms().map(|l| c.interval.next_open(l));
        if next.is_some_and(|n| c.open_time_ms < n) {
            return false; // applied already
        }
        if !s.awaiting_warm && s.held.is_empty() && next.is_none_or(|n| n == c.open_time_ms) {
            return self.fire(slot, c, book, out);
        }
        if s.held.len() >= MAX_HELD_CANDLES {
            // Waited too long in count: give up on the hole (or the warm start).
            s.awaiting_warm = false;
            self.bridge(slot, out);
        }
        if self.slots[slot].held.insert(c.open_time_ms, *c).is_none() {
            self.stats.signal_held.inc();
        }
        self.drain(slot, pending, now_ns, out);
        false
    }

    /// Whether a slot holds candles (so a hold time is running).
    pub(super) fn holding(&self) -> bool {
        self.holding > 0
    }

    /// Gives up on every hole held for `hold_ns` or more at `now_ns`. Free when nothing
    /// is held.
    pub(super) fn expire(
        &mut self,
        now_ns: u64,
        hold_ns: u64,
        pending: impl Fn(usize, i64, i64) -> bool,
        out: &mut Vec<Signal>,
    ) {
        if self.holding == 0 {
            return;
        }
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            let expired = s
                .held_since_ns
                .is_some_and(|t| now_ns.saturating_sub(t) >= hold_ns);
            if expired {
                s.awaiting_warm = false;
                s.held_since_ns = None;
                self.holding = self.holding.saturating_sub(1);
                self.bridge(slot, out);
                self.drain(slot, &pending, now_ns, out);
            }
        }
    }

    /// Applies held candles that are next in line; notes when a hole remains. A hole
    /// that `pending` says no backfill will fill (confirmed absent, or never coming) is
    /// computed across at once, as it would have been live.
    pub(super) fn drain(
        &mut self,
        slot: usize,
        pending: impl Fn(usize, i64, i64) -> bool,
        now_ns: u64,
        out: &mut Vec<Signal>,
    ) {
        loop {
            let s = &mut self.slots[slot];
            if s.awaiting_warm {
                break;
            }
            let Some((&open, &c)) = s.held.first_key_value() else {
                break;
            };
            let next = s.engine.last_open_ms().map(|l| c.interval.next_open(l));
            if next.is_some_and(|n| open < n) {
                s.held.pop_first();
                continue;
            }
            if next.is_none_or(|n| n == open) {
                s.held.pop_first();
                self.fire(slot, &c, None, out);
                continue;
            }
            // A hole [next, open): wait only while the backfill may still fill it.
            if pending(slot, next.unwrap_or(open), open) {
                break;
            }
            self.bridge(slot, out);
        }
        let s = &mut self.slots[slot];
        let was = s.held_since_ns.is_some();
        let now_holding = !s.held.is_empty();
        s.held_since_ns = match (was, now_holding) {
            (_, false) => None,
            (false, true) => Some(now_ns),
            (true, true) => s.held_since_ns,
        };
        match (was, now_holding) {
            (false, true) => self.holding += 1,
            (true, false) => self.holding = self.holding.saturating_sub(1),
            _ => {}
        }
    }

    /// Gives up on the hole before the first held candle: applies it across the hole
    /// (or, past `rewarm_after_candles`, starts the series over and warms it again).
    fn bridge(&mut self, slot: usize, out: &mut Vec<Signal>) {
        let s = &mut self.slots[slot];
        let Some((_, c)) = s.held.pop_first() else {
            return;
        };
        if let Some(last) = s.engine.last_open_ms() {
            let missing =
                crate::candle::span_candles(c.interval, c.interval.next_open(last), c.open_time_ms);
            if missing > 0 {
                self.stats.signal_holes_bridged.inc();
            }
            if missing > self.rewarm_after_candles {
                // Indicators computed across a long hole mislead: start over.
                s.engine.reset();
                self.stats.signal_rewarms.inc();
            }
        }
        self.settle(slot);
        self.fire(slot, &c, None, out);
    }

    /// Applies one closed candle (with its symbol's book at the close, when live) to
    /// the series' signal engine and pushes what fired; false when the engine did not
    /// take it.
    fn fire(
        &mut self,
        slot: usize,
        c: &Candle,
        book: Option<BookSignal>,
        out: &mut Vec<Signal>,
    ) -> bool {
        let s = &mut self.slots[slot];
        let bar = Bar {
            book,
            ..Bar::from_candle(c)
        };
        let mut fired: [Option<Fired>; SignalKind::ALL.len()] = [None; SignalKind::ALL.len()];
        let mut n = 0;
        let applied = s.engine.update(&bar, |f| {
            if n < fired.len() {
                fired[n] = Some(f);
                n += 1;
            }
        });
        if !applied {
            return false;
        }
        self.settle(slot);
        let series = self.stats.series.get().and_then(|s| s.get(slot));
        for f in fired.into_iter().flatten() {
            self.stats.signals[f.kind as usize].inc();
            if let Some(series) = series {
                series.count_signal(f.kind, f.direction);
            }
            out.push(Signal {
                symbol: c.symbol,
                interval: c.interval,
                kind: f.kind,
                direction: f.direction,
                confidence: f.confidence,
                price: c.close,
                timestamp_ms: c.close_time_ms,
                event_time_us: c.event_time_us,
                indicators: f.indicators,
            });
        }
        true
    }
}
