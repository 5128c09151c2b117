//! The signal gate: each series' signal engine, and the closed candles that wait for a
//! hole before them to be filled, confirmed absent or given up on.

use std::collections::BTreeMap;

use super::{Record, ShardState};
use crate::clock::mono_ns;
use crate::latency::Stage;
use crate::market::{Candle, Interval, Symbol};
use crate::signals::params::SignalsConfig;
use crate::signals::rules::{Bar, Fired, SignalEngine};
use crate::signals::{Signal, SignalKind};

/// Closed candles a series' signals may hold while waiting for the candles before them;
/// past this the hole is given up on.
pub const MAX_HELD_CANDLES: usize = 512;

/// How long signals wait for a hole by default (see [`ShardState::set_hold`]).
pub const DEFAULT_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// The signal engine of one (symbol, timeframe) and the candles waiting for it.
pub(super) struct SignalSlot {
    pub(super) engine: SignalEngine,
    /// Closed candles after a hole (or before the warm start), by open time.
    pub(super) held: BTreeMap<i64, Candle>,
    /// No candle is applied until the warm start's history has been (or has failed).
    pub(super) awaiting_warm: bool,
    /// When the current hole began to hold candles (monotonic ns).
    pub(super) held_since_ns: Option<u64>,
}

/// The shard's signal engines.
pub(super) struct Signals {
    pub(super) slots: Vec<SignalSlot>,
    pub(super) rewarm_after_candles: u64,
    pub(super) warm_candles: u32,
    /// Slots holding candles now (so the periodic check is free when none is).
    pub(super) holding: usize,
}

impl ShardState {
    /// Turns on indicators and signal rules for every (symbol, timeframe). Every
    /// series starts cold; with a REST link ([`Self::with_rest`]) each waits for its
    /// warm start.
    pub fn with_signals(mut self, config: &SignalsConfig) -> ShardState {
        if !config.enabled {
            return self;
        }
        let mut slots = Vec::with_capacity(self.tracks.len());
        for _ in &self.symbol_list {
            for tf in &self.timeframe_list {
                slots.push(SignalSlot {
                    engine: SignalEngine::new(&config.params(*tf)),
                    held: BTreeMap::new(),
                    awaiting_warm: false,
                    held_since_ns: None,
                });
            }
        }
        self.signals = Some(Signals {
            slots,
            rewarm_after_candles: u64::from(config.rewarm_after_candles),
            warm_candles: config.warm_candles,
            holding: 0,
        });
        self.arm_warm_waits();
        self
    }

    pub(super) fn arm_warm_waits(&mut self) {
        if self.link.is_none() {
            return;
        }
        if let Some(signals) = self.signals.as_mut() {
            if signals.warm_candles > 0 {
                for s in &mut signals.slots {
                    s.awaiting_warm = true;
                }
            }
        }
    }

    /// The signal engine of a series, to read its indicators (tests, status).
    pub fn signal_engine(&self, symbol: Symbol, interval: Interval) -> Option<&SignalEngine> {
        let slot = self.slot_of(symbol, interval)?;
        Some(&self.signals.as_ref()?.slots.get(slot)?.engine)
    }

    /// Rebuilds a series' indicators from history (nothing fires), then applies the
    /// candles held while the warm start was on its way.
    pub(super) fn warm_from(&mut self, slot: usize, bars: &[Bar]) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
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
        }
        // Counted even when the exchange had no history yet (a new market): the
        // series is warm as far as it can be.
        if was_awaiting || !bars.is_empty() {
            self.stats.signal_warm_series.inc();
        }
        self.drain_held(slot, mono_ns());
    }

    /// A closed candle for the series' signals (live or backfilled, never history):
    /// applied now if it is the next one, else held until the hole before it is
    /// resolved. `timing` is the (receive, parsed) time of a live candle.
    pub(super) fn signal_candle(&mut self, slot: usize, c: &Candle, timing: Option<(u64, u64)>) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        let next = s.engine.last_open_ms().map(|l| c.interval.next_open(l));
        if next.is_some_and(|n| c.open_time_ms < n) {
            return; // applied already
        }
        if !s.awaiting_warm && s.held.is_empty() && next.is_none_or(|n| n == c.open_time_ms) {
            self.fire(slot, c, timing);
            return;
        }
        if s.held.len() >= MAX_HELD_CANDLES {
            // Waited too long in count: give up on the hole (or the warm start).
            s.awaiting_warm = false;
            self.bridge(slot);
        }
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        if s.held.insert(c.open_time_ms, *c).is_none() {
            self.stats.signal_held.inc();
        }
        self.drain_held(slot, mono_ns());
    }

    /// Applies held candles that are next in line; notes when a hole remains. A hole
    /// that no open gap of the series covers (confirmed absent, or never coming) is
    /// computed across at once, as it would have been live.
    pub(super) fn drain_held(&mut self, slot: usize, now_ns: u64) {
        loop {
            let Some(signals) = self.signals.as_mut() else {
                return;
            };
            let s = &mut signals.slots[slot];
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
                self.fire(slot, &c, None);
                continue;
            }
            // A hole [next, open): wait only while the backfill may still fill it.
            let from = next.unwrap_or(open);
            let coming = self.link.is_some()
                && self.tracks[slot]
                    .open_gaps()
                    .iter()
                    .any(|g| g.from < open && from < g.to);
            if coming {
                break;
            }
            self.bridge(slot);
        }
        let holding = {
            let Some(signals) = self.signals.as_mut() else {
                return;
            };
            let s = &mut signals.slots[slot];
            let was = s.held_since_ns.is_some();
            let now_holding = !s.held.is_empty();
            s.held_since_ns = match (was, now_holding) {
                (_, false) => None,
                (false, true) => Some(now_ns),
                (true, true) => s.held_since_ns,
            };
            (was, now_holding)
        };
        if let Some(signals) = self.signals.as_mut() {
            match holding {
                (false, true) => signals.holding += 1,
                (true, false) => signals.holding = signals.holding.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Gives up on the hole before the first held candle: applies it across the hole
    /// (or, past `rewarm_after_candles`, starts the series over and warms it again).
    pub(super) fn bridge(&mut self, slot: usize) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let rewarm_after = signals.rewarm_after_candles;
        let s = &mut signals.slots[slot];
        let Some((_, c)) = s.held.pop_first() else {
            return;
        };
        if let Some(last) = s.engine.last_open_ms() {
            let missing =
                crate::candle::span_candles(c.interval, c.interval.next_open(last), c.open_time_ms);
            if missing > 0 {
                self.stats.signal_holes_bridged.inc();
            }
            if missing > rewarm_after {
                // Indicators computed across a long hole mislead: start over.
                s.engine.reset();
                self.stats.signal_rewarms.inc();
            }
        }
        self.fire(slot, &c, None);
    }

    /// Applies one closed candle to the series' signal engine and sends what fired.
    pub(super) fn fire(&mut self, slot: usize, c: &Candle, timing: Option<(u64, u64)>) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        let bar = Bar::from_candle(c);
        let mut fired: [Option<Fired>; SignalKind::ALL.len()] = [None; SignalKind::ALL.len()];
        let mut n = 0;
        let applied = s.engine.update(&bar, |f| {
            if n < fired.len() {
                fired[n] = Some(f);
                n += 1;
            }
        });
        if !applied {
            return;
        }
        let (recv_ns, parsed_ns) = timing.unwrap_or((0, 0));
        if timing.is_some() {
            if let Some(rec) = &mut self.latency {
                // Every indicator and rule of the series, for this closed candle.
                rec.record_span(Stage::ParsedToSignal, parsed_ns, mono_ns());
            }
        }
        for f in fired.into_iter().flatten() {
            self.stats.signals[f.kind as usize].inc();
            let signal = Signal {
                symbol: c.symbol,
                interval: c.interval,
                kind: f.kind,
                direction: f.direction,
                confidence: f.confidence,
                price: c.close,
                timestamp_ms: c.close_time_ms,
                event_time_us: c.event_time_us,
                indicators: f.indicators,
            };
            let env = self.envelope(recv_ns, parsed_ns, Record::Signal(signal));
            self.send_kept(env);
        }
    }

    /// Gives up on holes held past the hold time, and asks again for gaps whose
    /// backfill failed once the retry time has come. Free when nothing is held.
    pub(super) fn check_holds(&mut self) {
        if let Some(at) = self.retry_gaps_at_ns {
            if mono_ns() >= at {
                self.retry_gaps_at_ns = None;
                for slot in 0..self.tracks.len() {
                    self.request_gaps(slot);
                }
            }
        }
        if self.signals.as_ref().is_none_or(|s| s.holding == 0) {
            return;
        }
        let now = mono_ns();
        for slot in 0..self.tracks.len() {
            let expired = self.signals.as_ref().is_some_and(|s| {
                s.slots[slot]
                    .held_since_ns
                    .is_some_and(|t| now.saturating_sub(t) >= self.hold_ns)
            });
            if expired {
                if let Some(signals) = self.signals.as_mut() {
                    let s = &mut signals.slots[slot];
                    s.awaiting_warm = false;
                    s.held_since_ns = None;
                    signals.holding = signals.holding.saturating_sub(1);
                }
                self.bridge(slot);
                self.drain_held(slot, now);
            }
        }
    }
}
