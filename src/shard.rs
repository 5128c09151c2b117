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
//! ([`crate::signals::rules`]); the signals it makes go out as never-lost records. Warm
//! batches from the warm thread ([`crate::signals::warm`]) arrive on a bounded queue
//! that the periodic flusher drains on this executor ([`ShardState::apply_warm_deliveries`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::candle::{CandleTrack, Gap, KlineOutcome, SeqGate};
use crate::clock::{mono_ns, wall_us};
use crate::latency::{Recorder, Stage};
use crate::market::{Candle, Interval, Symbol};
use crate::metrics::ShardStats;
use crate::ring::Producer;
use crate::signals::params::SignalsConfig;
use crate::signals::rules::{Bar, Fired, SignalEngine};
use crate::signals::warm::{WarmBatch, WarmLink, WarmRequest};
use crate::signals::{Signal, SignalKind};
use crate::wire::Event;

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

/// Never-lost records that may wait on the shard while a sink's ring is full. Past this
/// the shard stops reading its sockets (TCP backpressure) instead of growing memory.
pub const MAX_OVERFLOW: usize = 65_536;

/// One sink's ring, with the never-lost records waiting for room in it.
struct Outlet {
    ring: Producer<Envelope>,
    overflow: VecDeque<Envelope>,
}

impl Outlet {
    /// Sends a never-lost record, keeping order behind anything already waiting.
    fn send_kept(&mut self, env: Envelope) {
        if self.overflow.is_empty() {
            if let Err(env) = self.ring.push(env) {
                self.overflow.push_back(env);
            }
        } else {
            self.overflow.push_back(env);
        }
    }

    /// Sends a conflated record; false when it was dropped.
    fn send_latest(&mut self, env: Envelope) -> bool {
        // Behind a queue of never-lost records, or with the ring full, a live update is
        // dropped: the next one supersedes it.
        self.overflow.is_empty() && self.ring.push(env).is_ok()
    }

    fn flush(&mut self) -> usize {
        while let Some(env) = self.overflow.pop_front() {
            if let Err(env) = self.ring.push(env) {
                self.overflow.push_front(env);
                break;
            }
        }
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

/// Live candles remembered per series while its warm start may still arrive: the warm
/// batch is fetched a moment before it is applied, so the few candles that closed in
/// between are replayed after it. More than a handful means the batch is stale anyway.
const WARM_TAIL: usize = 8;

/// The signal engine of one (symbol, timeframe) and its last live candles.
struct SignalSlot {
    engine: SignalEngine,
    /// A ring of the last live candles: `tail_len` of them, the next written at
    /// `tail_next`.
    tail: [Bar; WARM_TAIL],
    tail_len: usize,
    tail_next: usize,
    /// Set when a warm batch was applied and no live candle has followed it yet: the
    /// next live candle must continue the history without a hole.
    check_continuity: bool,
    /// A hole between history and live candles was already re-fetched once in this warm
    /// cycle; a second hole is bridged, so a lagging REST API cannot cause a loop.
    hole_refetched: bool,
}

impl SignalSlot {
    fn remember(&mut self, bar: Bar) {
        self.tail[self.tail_next] = bar;
        self.tail_next = (self.tail_next + 1) % WARM_TAIL;
        self.tail_len = (self.tail_len + 1).min(WARM_TAIL);
    }

    fn forget(&mut self) {
        self.tail_len = 0;
        self.tail_next = 0;
    }

    /// The remembered candles, oldest first.
    fn tail(&self) -> impl Iterator<Item = &Bar> {
        let start = (self.tail_next + WARM_TAIL - self.tail_len) % WARM_TAIL;
        (0..self.tail_len).map(move |i| &self.tail[(start + i) % WARM_TAIL])
    }
}

/// The shard's signal engines and its link to the warm thread.
struct Signals {
    slots: Vec<SignalSlot>,
    rewarm_after_candles: u64,
    link: Option<WarmLink>,
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
    symbol_list: Vec<Symbol>,
    timeframe_list: Vec<Interval>,
}

impl ShardState {
    /// A shard owning `symbols` × `timeframes`, sending to one ring per sink in `outs`.
    pub fn new(
        index: u16,
        symbols: &[Symbol],
        timeframes: &[Interval],
        outs: Vec<Producer<Envelope>>,
        stats: Arc<ShardStats>,
    ) -> ShardState {
        let mut interval_slot = [None; Interval::ALL.len()];
        for (i, tf) in timeframes.iter().enumerate() {
            interval_slot[*tf as usize] = Some(i as u8);
        }
        ShardState {
            index,
            symbols: symbols.iter().enumerate().map(|(i, s)| (*s, i)).collect(),
            interval_slot,
            timeframes: timeframes.len(),
            tracks: vec![CandleTrack::default(); symbols.len() * timeframes.len()],
            seq: vec![SymbolSeq::default(); symbols.len()],
            outlets: outs
                .into_iter()
                .map(|ring| Outlet {
                    ring,
                    overflow: VecDeque::new(),
                })
                .collect(),
            stats,
            latency: None,
            wall_offset_us: wall_offset_us(),
            signals: None,
            symbol_list: symbols.to_vec(),
            timeframe_list: timeframes.to_vec(),
        }
    }

    /// Records this core's stage latencies into `recorder`.
    pub fn set_latency(&mut self, recorder: Recorder) {
        self.latency = Some(recorder);
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

    /// Turns on indicators and signal rules for every (symbol, timeframe), with the
    /// warm thread's queues if warm starts run. Every series starts cold; the warm
    /// thread fetches them all at startup.
    pub fn with_signals(mut self, config: &SignalsConfig, link: Option<WarmLink>) -> ShardState {
        if !config.enabled {
            return self;
        }
        let mut slots = Vec::with_capacity(self.tracks.len());
        for _ in &self.symbol_list {
            for tf in &self.timeframe_list {
                slots.push(SignalSlot {
                    engine: SignalEngine::new(&config.params(*tf)),
                    tail: [Bar::default(); WARM_TAIL],
                    tail_len: 0,
                    tail_next: 0,
                    check_continuity: false,
                    hole_refetched: false,
                });
            }
        }
        self.signals = Some(Signals {
            slots,
            rewarm_after_candles: u64::from(config.rewarm_after_candles),
            link,
        });
        self
    }

    /// The signal engine of a series, to read its indicators (tests, status).
    pub fn signal_engine(&self, symbol: Symbol, interval: Interval) -> Option<&SignalEngine> {
        let slot = self.slot_of(symbol, interval)?;
        Some(&self.signals.as_ref()?.slots.get(slot)?.engine)
    }

    fn slot_of(&self, symbol: Symbol, interval: Interval) -> Option<usize> {
        let sym = *self.symbols.get(&symbol)?;
        let tf = self.interval_slot[interval as usize]?;
        Some(sym * self.timeframes + tf as usize)
    }

    /// Applies the warm batches the warm thread has delivered; called by the periodic
    /// flusher on this shard's executor. Returns how many batches were applied.
    pub fn apply_warm_deliveries(&mut self) -> usize {
        let Some(link) = self.signals.as_ref().and_then(|s| s.link.clone()) else {
            return 0;
        };
        let mut applied = 0;
        while let Some(batch) = link.deliveries.pop() {
            self.apply_warm(&batch);
            applied += 1;
        }
        applied
    }

    /// Warms one series from history: its indicators are rebuilt from the batch, then
    /// the live candles that closed since (those the batch does not have). Nothing
    /// fires: these candles are history, and live ones already had their signals.
    pub fn apply_warm(&mut self, batch: &WarmBatch) {
        let Some(slot) = self.slot_of(batch.symbol, batch.interval) else {
            return;
        };
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        if s.engine.applied() > 0 {
            s.engine.reset();
        }
        let mut applied = 0u64;
        for bar in &batch.bars {
            if s.engine.update(bar, |_| {}) {
                applied += 1;
            }
        }
        let mut replay = [Bar::default(); WARM_TAIL];
        let mut n = 0;
        for bar in s.tail() {
            replay[n] = *bar;
            n += 1;
        }
        let mut hole = false;
        for bar in &replay[..n] {
            if let Some(last) = s.engine.last_open_ms() {
                hole |= bar.open_time_ms > batch.interval.next_open(last);
            }
            // Live candles the batch already had are skipped (not after the last).
            s.engine.update(bar, |_| {});
        }
        s.check_continuity = !hole;
        self.stats.signal_warm_series.inc();
        self.stats.signal_warm_candles.add(applied);
        if hole {
            self.refetch_hole(slot, batch.symbol, batch.interval);
        }
    }

    /// History and live candles do not meet (the fetch ran before the live stream
    /// delivered the candles in between): fetch again, once per warm cycle. Until the
    /// batch comes, the series bridges the hole.
    fn refetch_hole(&mut self, slot: usize, symbol: Symbol, interval: Interval) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        if s.hole_refetched {
            return;
        }
        s.hole_refetched = true;
        self.stats.signal_warm_holes.inc();
        if let Some(link) = &signals.link {
            if link
                .requests
                .push(WarmRequest { symbol, interval })
                .is_err()
            {
                self.stats.signal_warm_requests_dropped.inc();
            }
        }
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

    /// Updates the series' signal engine with a closed candle and sends what fired.
    /// `gap` is the run of missing candles before it, if any: past
    /// `rewarm_after_candles` the series starts over and asks to be warmed again.
    fn on_closed_for_signals(
        &mut self,
        slot: usize,
        c: &Candle,
        gap: Option<&Gap>,
        recv_ns: u64,
        parsed_ns: u64,
    ) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let s = &mut signals.slots[slot];
        if gap.is_some_and(|g| g.candles() > signals.rewarm_after_candles) {
            // Indicators computed across a long hole mislead: start over, and fetch
            // the recent history again.
            s.engine.reset();
            s.forget();
            s.check_continuity = false;
            s.hole_refetched = false;
            self.stats.signal_rewarms.inc();
            if let Some(link) = &signals.link {
                let req = WarmRequest {
                    symbol: c.symbol,
                    interval: c.interval,
                };
                if link.requests.push(req).is_err() {
                    self.stats.signal_warm_requests_dropped.inc();
                }
            }
        }
        let hole = s.check_continuity
            && s.engine
                .last_open_ms()
                .is_some_and(|last| c.open_time_ms > c.interval.next_open(last));
        s.check_continuity = false;
        if hole {
            self.refetch_hole(slot, c.symbol, c.interval);
        }
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
        s.remember(bar);
        if let Some(rec) = &mut self.latency {
            // Every indicator and rule of the series, for this closed candle.
            rec.record_span(Stage::ParsedToSignal, parsed_ns, mono_ns());
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
                    self.stats.gaps.inc();
                    self.stats.gap_candles.add(gap.candles());
                    let env = self.envelope(recv_ns, parsed_ns, Record::Gap(gap));
                    self.send_kept(env);
                }
                let env = self.envelope(recv_ns, parsed_ns, Record::ClosedCandle(*c));
                self.send_kept(env);
                self.on_closed_for_signals(slot, c, gap.as_ref(), recv_ns, parsed_ns);
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
    }

    /// Sends a latest-value record to every sink; each drop is counted.
    fn send_latest(&mut self, env: Envelope) {
        for o in &mut self.outlets {
            if !o.send_latest(env) {
                self.stats.live_conflated.inc();
            }
        }
    }

    fn note_overflow(&self) {
        let deepest = self.outlets.iter().map(|o| o.overflow.len()).max();
        self.stats.overflow_depth.set(deepest.unwrap_or(0) as u64);
    }

    /// Records the span of a reconnect on connection slot `slot` (never lost).
    pub fn record_outage(&mut self, slot: usize, from_event_us: i64, to_event_us: i64) {
        let now = mono_ns();
        let outage = Outage {
            slot: slot as u16,
            from_event_us,
            to_event_us,
        };
        let env = self.envelope(now, now, Record::Outage(outage));
        self.send_kept(env);
    }

    /// Moves waiting records into the ring while it has room; called after each read
    /// and periodically. Returns how many are still waiting.
    pub fn flush(&mut self) -> usize {
        let left = self.outlets.iter_mut().map(Outlet::flush).sum();
        self.note_overflow();
        self.wall_offset_us = wall_offset_us();
        if let Some(rec) = &mut self.latency {
            rec.maybe_handoff(mono_ns());
        }
        left
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
