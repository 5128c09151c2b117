//! One shard core: the symbols it owns, their candle state and de-duplication gates,
//! and the rings to the sink cores.
//!
//! Runs on: its own pinned glommio executor (see [`crate::engine`]); its connection
//! tasks ([`crate::feed`]) hand every parsed message to [`ShardState::on_event`] on the
//! same thread, so the state needs no locks. In: parsed events. Out: fixed-size
//! [`Envelope`]s on one ring per sink (memory store, database writer, Redis publisher,
//! dashboard), each record copied to every ring. Closed candles, signals and gaps are
//! never lost: when a sink's ring is full they wait in that ring's bounded overflow, and
//! past that the shard stops reading its sockets. Live candles are conflated: dropped and
//! counted when a ring is full, since the next update supersedes them.
//!
//! Each closed candle also updates its (symbol, timeframe)'s signal engine
//! ([`crate::signals::rules`]); the signals it makes go out as never-lost records.
//!
//! Completeness: every gap a series shows (a close that skips open times, history that
//! does not reach the first live candle) is asked of the REST thread
//! ([`crate::backfill`]) at once; its answers arrive on a bounded queue that the
//! periodic flusher drains on this executor ([`ShardState::apply_rest_deliveries`]).
//! Backfilled candles take the live path (records to every sink, then signals). The
//! signal engine takes candles strictly in open-time order: a candle after a hole waits
//! (bounded, in time and count) until the hole is filled, confirmed absent by the
//! exchange, or given up on, so signals are those of a run that never lost a candle.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::backfill::{RestBatch, ShardLink, Want};
use crate::candle::{CandleTrack, Gap, KlineOutcome, SeqGate};
use crate::clock::{mono_ns, wall_us};
use crate::latency::{Recorder, Stage};
use crate::market::{Candle, Interval, Symbol};
use crate::metrics::{SeriesStats, ShardStats};
use crate::ring::Producer;
use crate::signals::params::SignalsConfig;
use crate::signals::rules::{Bar, Fired, SignalEngine};
use crate::signals::{Signal, SignalKind};
use crate::wire::Event;

pub use crate::message::{Envelope, Outage, Record, RecordKinds, REMOTE_SHARD};

/// Longest a record waits on the shard for its batch to end before the sinks are rung
/// anyway: bounds what a burst of many frames in one read adds to the first ones' hop,
/// while a burst handled within it still costs each sink one wake-up.
pub const RING_EVERY_NS: u64 = 20_000;

/// Never-lost records that may wait on the shard while a sink's ring is full. Past this
/// the shard stops reading its sockets (TCP backpressure) instead of growing memory.
pub const MAX_OVERFLOW: usize = 65_536;

/// One sink's ring, with the never-lost records waiting for room in it.
struct Outlet {
    ring: Producer<Envelope>,
    overflow: VecDeque<Envelope>,
    kinds: RecordKinds,
}

impl Outlet {
    /// Sends a never-lost record, keeping order behind anything already waiting. The
    /// consumer is woken at the next [`ShardState::flush`], once per batch.
    fn send_kept(&mut self, env: Envelope) {
        if !self.kinds.has(&env.record) {
            return;
        }
        if self.overflow.is_empty() {
            if let Err(env) = self.ring.push_deferred(env) {
                self.overflow.push_back(env);
            }
        } else {
            self.overflow.push_back(env);
        }
    }

    /// Sends a conflated record; false when it was dropped (not when this sink does not
    /// take the kind).
    fn send_latest(&mut self, env: Envelope) -> bool {
        if !self.kinds.has(&env.record) {
            return true;
        }
        // Behind a queue of never-lost records, or with the ring full, a live update is
        // dropped: the next one supersedes it.
        self.overflow.is_empty() && self.ring.push_deferred(env).is_ok()
    }

    /// Moves waiting records into the ring and wakes its consumer if anything was
    /// pushed since the last flush.
    fn flush(&mut self) -> usize {
        while let Some(env) = self.overflow.pop_front() {
            if let Err(env) = self.ring.push_deferred(env) {
                self.overflow.push_front(env);
                break;
            }
        }
        self.ring.ring();
        self.overflow.len()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct SymbolSeq {
    trade: SeqGate,
    agg_trade: SeqGate,
    depth: SeqGate,
    book_ticker: SeqGate,
}

/// Closed candles a series' signals may hold while waiting for the candles before them;
/// past this the hole is given up on.
pub const MAX_HELD_CANDLES: usize = 512;

/// How long signals wait for a hole by default (see [`ShardState::set_hold`]).
pub const DEFAULT_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// After a backfill request fails for good, how long before the shard asks again.
const RETRY_FAILED_AFTER_NS: u64 = 30_000_000_000;

/// The signal engine of one (symbol, timeframe) and the candles waiting for it.
struct SignalSlot {
    engine: SignalEngine,
    /// Closed candles after a hole (or before the warm start), by open time.
    held: BTreeMap<i64, Candle>,
    /// No candle is applied until the warm start's history has been (or has failed).
    awaiting_warm: bool,
    /// When the current hole began to hold candles (monotonic ns).
    held_since_ns: Option<u64>,
}

/// The shard's signal engines.
struct Signals {
    slots: Vec<SignalSlot>,
    rewarm_after_candles: u64,
    warm_candles: u32,
    /// Slots holding candles now (so the periodic check is free when none is).
    holding: usize,
}

/// The state one shard core owns.
pub struct ShardState {
    index: u16,
    symbols: HashMap<Symbol, usize>,
    interval_slot: [Option<u8>; Interval::ALL.len()],
    timeframes: usize,
    tracks: Vec<CandleTrack>,
    seq: Vec<SymbolSeq>,
    outlets: Vec<Outlet>,
    stats: Arc<ShardStats>,
    /// Stage latencies of this core (absent in unit tests that do not look at them).
    latency: Option<Recorder>,
    /// Wall-clock µs minus monotonic µs, refreshed at every flush: turns a receive time
    /// into wall time without a clock read per message.
    wall_offset_us: i64,
    /// Indicators and rules per (symbol, timeframe), indexed like `tracks`; `None`
    /// when signals are off.
    signals: Option<Signals>,
    /// The REST thread (warm starts and backfill); `None`: no REST at all, so holes
    /// are computed across at once.
    link: Option<ShardLink>,
    hold_ns: u64,
    /// After a failed backfill: open gaps are asked again from this time (mono ns).
    retry_gaps_at_ns: Option<u64>,
    /// When the sinks were last rung in the middle of a batch (mono ns).
    rung_at_ns: u64,
    symbol_list: Vec<Symbol>,
    timeframe_list: Vec<Interval>,
}

impl ShardState {
    /// A shard owning `symbols` × `timeframes`, sending every record to one ring per
    /// sink in `outs`.
    pub fn new(
        index: u16,
        symbols: &[Symbol],
        timeframes: &[Interval],
        outs: Vec<Producer<Envelope>>,
        stats: Arc<ShardStats>,
    ) -> ShardState {
        let outs = outs.into_iter().map(|r| (r, RecordKinds::ALL)).collect();
        ShardState::with_outlets(index, symbols, timeframes, outs, stats)
    }

    /// [`ShardState::new`], each ring taking only the record kinds its sink consumes.
    pub fn with_outlets(
        index: u16,
        symbols: &[Symbol],
        timeframes: &[Interval],
        outs: Vec<(Producer<Envelope>, RecordKinds)>,
        stats: Arc<ShardStats>,
    ) -> ShardState {
        let mut interval_slot = [None; Interval::ALL.len()];
        for (i, tf) in timeframes.iter().enumerate() {
            interval_slot[*tf as usize] = Some(i as u8);
        }
        let series: Box<[SeriesStats]> = symbols
            .iter()
            .flat_map(|s| timeframes.iter().map(|tf| SeriesStats::new(*s, *tf)))
            .collect();
        // Set once; a second state on the same stats (tests) keeps the first.
        let _ = stats.series.set(series);
        ShardState {
            index,
            symbols: symbols.iter().enumerate().map(|(i, s)| (*s, i)).collect(),
            interval_slot,
            timeframes: timeframes.len(),
            tracks: vec![CandleTrack::default(); symbols.len() * timeframes.len()],
            seq: vec![SymbolSeq::default(); symbols.len()],
            outlets: outs
                .into_iter()
                .map(|(ring, kinds)| Outlet {
                    ring,
                    overflow: VecDeque::new(),
                    kinds,
                })
                .collect(),
            stats,
            latency: None,
            wall_offset_us: wall_offset_us(),
            signals: None,
            link: None,
            hold_ns: DEFAULT_HOLD.as_nanos() as u64,
            retry_gaps_at_ns: None,
            rung_at_ns: 0,
            symbol_list: symbols.to_vec(),
            timeframe_list: timeframes.to_vec(),
        }
    }

    /// Records this core's stage latencies into `recorder`.
    pub fn set_latency(&mut self, recorder: Recorder) {
        self.latency = Some(recorder);
    }

    /// Connects the shard to the REST thread: gaps are backfilled, and (with signals
    /// on and `warm_candles` > 0) every series waits for its warm start.
    pub fn with_rest(mut self, link: ShardLink) -> ShardState {
        self.link = Some(link);
        self.arm_warm_waits();
        self
    }

    /// How long signals wait for the candles of a hole before computing across it.
    pub fn set_hold(&mut self, hold: std::time::Duration) {
        self.hold_ns = hold.as_nanos().min(u128::from(u64::MAX)) as u64;
    }

    /// Both stages of an event that ends at the shard (trades, depth): exchange to
    /// receive, and receive to applied.
    #[inline]
    fn note_event_latency(&mut self, event_time_us: i64, recv_ns: u64) {
        if self.latency.is_some() {
            self.note_exchange_latency(event_time_us, recv_ns);
            let now = mono_ns();
            if let Some(rec) = &mut self.latency {
                rec.record_span(Stage::RecvToParsed, recv_ns, now);
            }
        }
    }

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

    fn arm_warm_waits(&mut self) {
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

    /// The candle state of a series (tests, status).
    pub fn track(&self, symbol: Symbol, interval: Interval) -> Option<&CandleTrack> {
        self.tracks.get(self.slot_of(symbol, interval)?)
    }

    fn slot_of(&self, symbol: Symbol, interval: Interval) -> Option<usize> {
        let sym = *self.symbols.get(&symbol)?;
        let tf = self.interval_slot[interval as usize]?;
        Some(sym * self.timeframes + tf as usize)
    }

    /// Applies the batches the REST thread has delivered; called by the periodic
    /// flusher on this shard's executor. Returns how many were applied.
    pub fn apply_rest_deliveries(&mut self) -> usize {
        let Some(link) = self.link.clone() else {
            return 0;
        };
        let mut applied = 0;
        while let Some(batch) = link.deliveries.pop() {
            self.apply_rest(&batch);
            applied += 1;
        }
        applied
    }

    /// Applies one REST answer. History (a warm start) is stored and rebuilds the
    /// series' indicators without firing; backfilled candles take the live path.
    /// Spans the exchange has no candles for are closed as confirmed absent.
    pub fn apply_rest(&mut self, batch: &RestBatch) {
        self.apply_rest_batch(batch);
        self.ring_outlets();
    }

    fn apply_rest_batch(&mut self, batch: &RestBatch) {
        let req = batch.request;
        let Some(slot) = self.slot_of(req.symbol, req.interval) else {
            return;
        };
        self.stats.backfill_batches.inc();
        if batch.failed {
            if let Want::Range {
                from_open_ms,
                to_open_ms,
            } = req.want
            {
                self.stats.backfill_failures.inc();
                self.tracks[slot].unrequest(from_open_ms, to_open_ms.unwrap_or(i64::MAX));
                self.retry_gaps_at_ns = Some(mono_ns() + RETRY_FAILED_AFTER_NS);
            }
            if batch.is_history() {
                // No history: the series warms from live candles.
                if let Some(signals) = self.signals.as_mut() {
                    signals.slots[slot].awaiting_warm = false;
                }
                self.drain_held(slot, mono_ns());
            }
            self.publish_series(slot);
            return;
        }
        let now = mono_ns();
        let history = batch.is_history();
        let mut stored = 0u64;
        for c in &batch.candles {
            match self.tracks[slot].apply(c) {
                KlineOutcome::Closed { gap } => {
                    stored += 1;
                    self.stats.candles_closed.inc();
                    if let Some(gap) = gap {
                        self.note_gap(gap);
                    }
                    let env = self.envelope(0, 0, Record::ClosedCandle(*c));
                    self.send_kept(env);
                    if !history {
                        self.signal_candle(slot, c, None);
                    }
                }
                KlineOutcome::Duplicate | KlineOutcome::Stale | KlineOutcome::Live => {
                    if !history {
                        // Stored already (a live copy won the race), but the signals
                        // may still be waiting for it.
                        self.signal_candle(slot, c, None);
                    }
                }
            }
        }
        self.stats.backfill_candles.add(stored);
        if let Some(series) = self.series(slot) {
            series.candles_backfilled.add(stored);
        }
        for &(from, to) in &batch.absent {
            if self.tracks[slot].confirm_absent(req.interval, from, to) > 0 {
                let gap = Gap {
                    symbol: req.symbol,
                    interval: req.interval,
                    from_open_ms: from,
                    to_open_ms: to,
                };
                let env = self.envelope(now, now, Record::Absent(gap));
                self.send_kept(env);
            }
        }
        if history {
            let bars: Vec<Bar> = batch.candles.iter().map(Bar::from_candle).collect();
            self.warm_from(slot, &bars);
        } else {
            self.drain_held(slot, now);
        }
        self.request_gaps(slot);
        self.publish_series(slot);
    }

    /// Rebuilds a series' indicators from history (nothing fires), then applies the
    /// candles held while the warm start was on its way.
    fn warm_from(&mut self, slot: usize, bars: &[Bar]) {
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
    fn signal_candle(&mut self, slot: usize, c: &Candle, timing: Option<(u64, u64)>) {
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
    fn drain_held(&mut self, slot: usize, now_ns: u64) {
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
    fn bridge(&mut self, slot: usize) {
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
    fn fire(&mut self, slot: usize, c: &Candle, timing: Option<(u64, u64)>) {
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

    /// Asks the REST thread for the series' gaps not asked yet.
    fn request_gaps(&mut self, slot: usize) {
        if !self.tracks[slot].has_unrequested() {
            return;
        }
        let Some(link) = &self.link else {
            // No REST: nothing to ask; mark them asked so this stays cheap.
            self.tracks[slot].take_unrequested().for_each(drop);
            return;
        };
        let link = link.clone();
        let gaps: Vec<(i64, i64)> = self.tracks[slot].take_unrequested().collect();
        for (from, to) in gaps {
            if !self.ask_range(&link, slot, from, to) {
                self.tracks[slot].unrequest(from, to);
                self.retry_gaps_at_ns = Some(mono_ns() + RETRY_FAILED_AFTER_NS);
            }
        }
    }

    fn series_key(&self, slot: usize) -> (Symbol, Interval) {
        (
            self.symbol_list[slot / self.timeframes],
            self.timeframe_list[slot % self.timeframes],
        )
    }

    fn series(&self, slot: usize) -> Option<&SeriesStats> {
        self.stats.series.get()?.get(slot)
    }

    /// Writes the series' completeness figures for the control plane.
    fn publish_series(&self, slot: usize) {
        if let Some(series) = self.series(slot) {
            let t = &self.tracks[slot];
            series.set(
                &t.completeness(series.interval),
                t.first_closed_open_ms(),
                t.last_closed_open_ms(),
            );
        }
    }

    fn note_gap(&self, gap: Gap) {
        self.stats.gaps.inc();
        self.stats.gap_candles.add(gap.candles());
    }

    /// Exchange event time (µs) to our receive time (`recv_ns`, monotonic).
    #[inline]
    fn note_exchange_latency(&mut self, event_time_us: i64, recv_ns: u64) {
        if let Some(rec) = &mut self.latency {
            let recv_wall_us = (recv_ns / 1000) as i64 + self.wall_offset_us;
            // Clocks of two hosts: a negative span (our clock behind) is recorded as 0.
            let span_us = recv_wall_us.saturating_sub(event_time_us).max(0) as u64;
            rec.record(Stage::ExchangeToRecv, span_us.saturating_mul(1000));
        }
    }

    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.stats
    }

    /// True while never-lost records wait at their bound for some sink: readers should
    /// pause.
    pub fn backpressured(&self) -> bool {
        self.outlets
            .iter()
            .any(|o| o.overflow.len() >= MAX_OVERFLOW)
    }

    /// Applies one market event received at `recv_ns`.
    pub fn on_event(&mut self, event: &Event<'_>, recv_ns: u64) {
        let stats = &*self.stats;
        match event {
            Event::Kline(c) => {
                stats.klines.inc();
                stats.last_event_time_us.set(c.event_time_us);
                self.note_exchange_latency(c.event_time_us, recv_ns);
                self.on_kline(c, recv_ns);
            }
            Event::Trade(t) => {
                stats.trades.inc();
                stats.last_event_time_us.set(t.event_time_us);
                if let Some(i) = self.symbols.get(&t.symbol) {
                    if !self.seq[*i].trade.accept(t.trade_id) {
                        stats.duplicates.inc();
                    }
                }
                self.note_event_latency(t.event_time_us, recv_ns);
            }
            Event::AggTrade(t) => {
                stats.agg_trades.inc();
                stats.last_event_time_us.set(t.event_time_us);
                if let Some(i) = self.symbols.get(&t.symbol) {
                    if !self.seq[*i].agg_trade.accept(t.agg_trade_id) {
                        stats.duplicates.inc();
                    }
                }
                self.note_event_latency(t.event_time_us, recv_ns);
            }
            Event::BookTicker(b) => {
                stats.book_tickers.inc();
                if let Some(i) = self.symbols.get(&b.symbol) {
                    if !self.seq[*i].book_ticker.accept(b.update_id) {
                        stats.duplicates.inc();
                    }
                }
            }
            Event::DepthUpdate(d) => {
                stats.depth_updates.inc();
                stats.last_event_time_us.set(d.event_time_us);
                if let Some(i) = self.symbols.get(&d.symbol) {
                    if !self.seq[*i].depth.accept(d.final_update_id) {
                        stats.duplicates.inc();
                    }
                }
                self.note_event_latency(d.event_time_us, recv_ns);
            }
            Event::PartialDepth(_) => {
                // Partial depth snapshots repeat `lastUpdateId` when the book is quiet,
                // so they are not de-duplicated: a repeat is the same snapshot again.
                // They carry no symbol; the combined-stream name has it, for whoever
                // keeps books from them.
                stats.partial_depths.inc();
            }
            Event::ServerShutdown { .. } => stats.server_shutdowns.inc(),
            Event::Unknown { .. } => stats.unknown_events.inc(),
        }
    }

    fn on_kline(&mut self, c: &Candle, recv_ns: u64) {
        if !crate::candle::plausible(c) {
            // Times off the interval's grid or ahead of the event: counted, not kept, so
            // one corrupt kline cannot poison the series.
            self.stats.implausible_klines.inc();
            return;
        }
        let (Some(&sym), Some(tf)) = (
            self.symbols.get(&c.symbol),
            self.interval_slot[c.interval as usize],
        ) else {
            // A stream we did not ask for (or another shard's symbol): counted, ignored.
            self.stats.unknown_events.inc();
            return;
        };
        let slot = sym * self.timeframes + tf as usize;
        let outcome = self.tracks[slot].apply(c);
        let parsed_ns = mono_ns();
        if let Some(rec) = &mut self.latency {
            rec.record_span(Stage::RecvToParsed, recv_ns, parsed_ns);
        }
        match outcome {
            KlineOutcome::Live => {
                let env = self.envelope(recv_ns, parsed_ns, Record::LiveCandle(*c));
                self.send_latest(env);
            }
            KlineOutcome::Closed { gap } => {
                self.stats.candles_closed.inc();
                if let Some(gap) = gap {
                    self.note_gap(gap);
                    let env = self.envelope(recv_ns, parsed_ns, Record::Gap(gap));
                    self.send_kept(env);
                }
                let env = self.envelope(recv_ns, parsed_ns, Record::ClosedCandle(*c));
                self.send_kept(env);
                self.signal_candle(slot, c, Some((recv_ns, parsed_ns)));
                self.request_gaps(slot);
                self.publish_series(slot);
            }
            KlineOutcome::Duplicate => self.stats.duplicates.inc(),
            KlineOutcome::Stale => self.stats.stale.inc(),
        }
    }

    fn envelope(&self, recv_ns: u64, parsed_ns: u64, record: Record) -> Envelope {
        Envelope {
            shard: self.index,
            recv_ns,
            parsed_ns,
            record,
        }
    }

    /// Sends a never-lost record to every sink, keeping order behind anything waiting.
    fn send_kept(&mut self, env: Envelope) {
        for o in &mut self.outlets {
            o.send_kept(env);
        }
        self.note_overflow();
        self.ring_if_due(env.parsed_ns);
    }

    /// Sends a latest-value record to every sink; each drop is counted.
    fn send_latest(&mut self, env: Envelope) {
        for o in &mut self.outlets {
            if !o.send_latest(env) {
                self.stats.live_conflated.inc();
            }
        }
        self.ring_if_due(env.parsed_ns);
    }

    /// Within a long batch, rings the sinks every [`RING_EVERY_NS`] (by the records'
    /// own stamps: no clock read), so the first records of a big burst do not wait for
    /// the last to be parsed; a short batch still rings once, at its flush.
    #[inline]
    fn ring_if_due(&mut self, now_ns: u64) {
        if now_ns != 0 && now_ns.saturating_sub(self.rung_at_ns) >= RING_EVERY_NS {
            self.rung_at_ns = now_ns;
            self.ring_outlets();
        }
    }

    /// Wakes every sink that has records it was not told about yet.
    fn ring_outlets(&self) {
        for o in &self.outlets {
            o.ring.ring();
        }
    }

    fn note_overflow(&self) {
        let deepest = self.outlets.iter().map(|o| o.overflow.len()).max();
        self.stats.overflow_depth.set(deepest.unwrap_or(0) as u64);
    }

    /// Records the span of a reconnect on connection slot `slot` (never lost), and asks
    /// the backfill for the candles of every series that closed while it was down,
    /// without waiting for the next close to reveal the gap.
    pub fn record_outage(&mut self, slot: usize, from_event_us: i64, to_event_us: i64) {
        let now = mono_ns();
        let outage = Outage {
            slot: slot as u16,
            from_event_us,
            to_event_us,
        };
        let env = self.envelope(now, now, Record::Outage(outage));
        self.send_kept(env);
        self.ring_outlets();
        let Some(link) = self.link.clone() else {
            return;
        };
        let to_ms = to_event_us / 1000;
        for i in 0..self.tracks.len() {
            let (_, interval) = self.series_key(i);
            let Some(last) = self.tracks[i].last_closed_open_ms() else {
                continue;
            };
            // The newest candle that had closed when the connection came back.
            let open_now = interval.open_time(to_ms);
            let from = interval.next_open(last);
            if from >= open_now {
                continue;
            }
            self.ask_range(&link, i, from, open_now);
        }
    }

    /// Asks the REST thread for the series' closed candles in `[from, to)`; false (and
    /// counted) when its queue is full.
    fn ask_range(&self, link: &ShardLink, slot: usize, from: i64, to: i64) -> bool {
        let (symbol, interval) = self.series_key(slot);
        let req = crate::backfill::Request {
            symbol,
            interval,
            want: Want::Range {
                from_open_ms: from,
                to_open_ms: Some(to),
            },
        };
        let asked = link.requests.push(req).is_ok();
        if asked {
            self.stats.backfill_requests.inc();
        } else {
            self.stats.backfill_requests_dropped.inc();
        }
        asked
    }

    /// Moves waiting records into the ring while it has room; called after each read
    /// and periodically. Returns how many are still waiting.
    pub fn flush(&mut self) -> usize {
        self.check_holds();
        let left = self.outlets.iter_mut().map(Outlet::flush).sum();
        self.note_overflow();
        self.wall_offset_us = wall_offset_us();
        if let Some(rec) = &mut self.latency {
            rec.maybe_handoff(mono_ns());
        }
        left
    }
}

impl ShardState {
    /// Gives up on holes held past the hold time, and asks again for gaps whose
    /// backfill failed once the retry time has come. Free when nothing is held.
    fn check_holds(&mut self) {
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

fn wall_offset_us() -> i64 {
    wall_us() - (mono_ns() / 1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ring;

    fn kline(open: i64, event_us: i64, closed: bool) -> Event<'static> {
        // Event times are offsets into the candle, as the exchange stamps them.
        Event::Kline(crate::market::testing::candle(
            "BTCUSDT",
            open,
            open * 1000 + event_us,
            closed,
        ))
    }

    #[test]
    fn closed_candles_survive_a_full_ring_in_order() {
        let (tx, rx) = ring("t", 2);
        let stats = Arc::new(ShardStats::default());
        let sym = [Symbol::new("BTCUSDT").unwrap()];
        let mut s = ShardState::new(0, &sym, &[Interval::M1], vec![tx], stats.clone());
        for i in 0..10 {
            s.on_event(&kline(i * 60_000, i, false), 0);
            s.on_event(&kline(i * 60_000, i + 1, true), 0);
        }
        // The ring holds 2; the rest wait, in order; live updates behind them conflate.
        let mut got = Vec::new();
        for _ in 0..100 {
            while let Some(e) = rx.pop() {
                got.push(e.record);
            }
            if s.flush() == 0 && rx.view().depth() == 0 {
                break;
            }
        }
        let closed: Vec<i64> = got
            .iter()
            .filter_map(|r| match r {
                Record::ClosedCandle(c) => Some(c.open_time_ms / 60_000),
                _ => None,
            })
            .collect();
        assert_eq!(closed, (0..10).collect::<Vec<_>>());
        assert_eq!(stats.candles_closed.get(), 10);
        assert!(stats.live_conflated.get() > 0);
    }

    #[test]
    fn every_sink_gets_every_closed_candle_and_a_full_one_holds_back_only_itself() {
        let (fast_tx, fast_rx) = ring("fast", 1024);
        let (slow_tx, slow_rx) = ring("slow", 1);
        let stats = Arc::new(ShardStats::default());
        let sym = [Symbol::new("BTCUSDT").unwrap()];
        let mut s = ShardState::new(0, &sym, &[Interval::M1], vec![fast_tx, slow_tx], stats);
        for i in 0..5 {
            s.on_event(&kline(i * 60_000, i + 1, true), 0);
        }
        // The fast sink has everything at once; the slow one one record, four waiting.
        assert_eq!(fast_rx.view().depth(), 5);
        assert_eq!(slow_rx.view().depth(), 1);
        assert_eq!(s.flush(), 4);
        let mut slow = Vec::new();
        for _ in 0..10 {
            while let Some(e) = slow_rx.pop() {
                slow.push(e.record);
            }
            s.flush();
        }
        let opens: Vec<i64> = slow
            .iter()
            .filter_map(|r| match r {
                Record::ClosedCandle(c) => Some(c.open_time_ms / 60_000),
                _ => None,
            })
            .collect();
        assert_eq!(opens, [0, 1, 2, 3, 4]);
        assert_eq!(s.flush(), 0);
    }

    #[test]
    fn gaps_and_duplicates_are_counted() {
        let (tx, rx) = ring("t", 64);
        let stats = Arc::new(ShardStats::default());
        let sym = [Symbol::new("BTCUSDT").unwrap()];
        let mut s = ShardState::new(3, &sym, &[Interval::M1], vec![tx], stats.clone());
        s.on_event(&kline(0, 1, true), 0);
        s.on_event(&kline(0, 1, true), 0);
        s.on_event(&kline(3 * 60_000, 2, true), 0);
        assert_eq!(stats.duplicates.get(), 1);
        assert_eq!(stats.gaps.get(), 1);
        assert_eq!(stats.gap_candles.get(), 2);
        let recs: Vec<_> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(recs.len(), 3);
        assert!(
            matches!(recs[1].record, Record::Gap(g) if g.from_open_ms == 60_000 && g.to_open_ms == 180_000)
        );
        assert!(recs.iter().all(|e| e.shard == 3));
        // A kline whose times are off the grid is counted and dropped.
        let mut skewed = kline(5 * 60_000, 1, true);
        if let Event::Kline(c) = &mut skewed {
            c.open_time_ms += 7;
        }
        s.on_event(&skewed, 0);
        assert_eq!(stats.implausible_klines.get(), 1);
        assert_eq!(stats.candles_closed.get(), 2);
        // A kline of a symbol this shard does not own is counted, not stored.
        let mut other = kline(0, 1, true);
        if let Event::Kline(c) = &mut other {
            c.symbol = Symbol::new("ETHUSDT").unwrap();
        }
        s.on_event(&other, 0);
        assert_eq!(stats.unknown_events.get(), 1);
    }
}
