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
//! Trades and aggregate trades are de-duplicated by id per symbol (a hole in the ids is
//! counted) and go out as never-lost records to the sinks that take them (the database
//! writer when it stores them); a hole in aggregate trade ids is asked of the REST thread
//! when they are stored, and the fetched ones go out the same way.
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
//!
//! Layout: `outlet` holds the rings to the sinks and their overflow; `gate` holds each
//! series' signal engine and the candles waiting for a hole; `rest` is the link to the
//! REST thread (asking ranges, applying its batches); this file is the state itself
//! (events in, candles tracked, records out); `tests` are its unit tests.

mod books;
mod gate;
mod outlet;
mod rest;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::candle::{CandleTrack, Gap, KlineOutcome, SeqGate, SeqOutcome};
use crate::clock::{mono_ns, wall_us, ClockBound};
use crate::latency::{Recorder, Stage};
use crate::market::{Candle, Interval, Symbol};
use crate::message::rest::{ShardLink, TradeKind, MAX_STORED_ID};
use crate::metrics::{Counter, SeriesStats, ShardStats};
use crate::ring::Producer;
use crate::signals::params::SignalsConfig;
use crate::signals::rules::SignalEngine;
use crate::signals::{Signal, SignalKind};
use crate::wire::Event;

use gate::SignalGate;
use outlet::Outlets;

pub use crate::message::{Envelope, Outage, Record, RecordKinds, REMOTE_SHARD};
pub use books::{BOOK_ANSWER_TIMEOUT_NS, BOOK_RETRY_NS};
pub use gate::{DEFAULT_HOLD, MAX_HELD_CANDLES};
pub use outlet::{MAX_OVERFLOW, RING_EVERY_NS};

#[derive(Clone, Copy, Debug, Default)]
struct SymbolSeq {
    trade: SeqGate,
    agg_trade: SeqGate,
    /// The first id of each kind of trade (by [`TradeKind`] order) the stream brought
    /// this process: a restart's catch-up that ends before it leaves a hole to fetch.
    first_live: [Option<u64>; 2],
    depth: SeqGate,
    book_ticker: SeqGate,
}

/// The backfill figures of each kind of trades (kept in [`ShardStats`], which knows
/// nothing of trade kinds).
pub(crate) trait TradeBackfillOf {
    fn trade_backfill(&self, kind: TradeKind) -> &crate::metrics::TradeBackfillStats;
}

impl TradeBackfillOf for ShardStats {
    fn trade_backfill(&self, kind: TradeKind) -> &crate::metrics::TradeBackfillStats {
        match kind {
            TradeKind::Aggregate => &self.agg_trade_backfill,
            TradeKind::Raw => &self.trade_backfill,
        }
    }
}

impl SymbolSeq {
    fn trade_gate(&mut self, kind: TradeKind) -> &mut SeqGate {
        match kind {
            TradeKind::Aggregate => &mut self.agg_trade,
            TradeKind::Raw => &mut self.trade,
        }
    }
}

/// The state one shard core owns.
pub struct ShardState {
    index: u16,
    symbols: crate::market::FastMap<Symbol, usize>,
    interval_slot: [Option<u8>; Interval::ALL.len()],
    timeframes: usize,
    tracks: Vec<CandleTrack>,
    seq: Vec<SymbolSeq>,
    outlets: Outlets,
    stats: Arc<ShardStats>,
    /// Stage latencies of this core (absent in unit tests that do not look at them).
    latency: Option<Recorder>,
    /// Wall-clock µs minus monotonic µs, read when a latency recorder is set and at
    /// every flush after: turns a receive time into wall time without a clock read per
    /// message. The exchange-to-receive latency and the clock bound use it.
    wall_offset_us: i64,
    /// How far event times may be from our clock ([`Self::set_clock_bound`]).
    clock: ClockBound,
    /// Indicators and rules per (symbol, timeframe), indexed like `tracks`; `None`
    /// when signals are off.
    signals: Option<SignalGate>,
    /// The signals a call of the gate made, until they are sent (kept, not reallocated).
    fired: Vec<Signal>,
    /// The REST thread (warm starts and backfill); `None`: no REST at all, so holes
    /// are computed across at once.
    link: Option<ShardLink>,
    hold_ns: u64,
    /// After a failed backfill: open gaps are asked again from this time (mono ns).
    retry_gaps_at_ns: Option<u64>,
    symbol_list: Vec<Symbol>,
    timeframe_list: Vec<Interval>,
    /// Local order books of this shard's book symbols ([`Self::with_books`]).
    books: Option<books::Books>,
    /// Holes in each kind of trade ids (by [`TradeKind`] order) are backfilled over
    /// REST (those trades are stored).
    backfill_trades: [bool; 2],
    /// Trade requests that failed for good, asked again at the next retry time.
    trade_retries: Vec<crate::message::rest::Request>,
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
            outlets: Outlets::new(outs, stats.clone()),
            stats,
            latency: None,
            wall_offset_us: 0,
            clock: ClockBound::OFF,
            signals: None,
            fired: Vec::new(),
            link: None,
            hold_ns: DEFAULT_HOLD.as_nanos() as u64,
            retry_gaps_at_ns: None,
            symbol_list: symbols.to_vec(),
            timeframe_list: timeframes.to_vec(),
            books: None,
            backfill_trades: [false; 2],
            trade_retries: Vec::new(),
        }
    }

    /// Asks the REST thread (see [`Self::with_rest`]) for the trades of `kind` of every
    /// hole in a symbol's ids: set when they are stored.
    pub fn with_trade_backfill(mut self, kind: TradeKind, on: bool) -> ShardState {
        self.backfill_trades[kind as usize] = on;
        self
    }

    /// The record kinds each sink (in the order of the outlets given) takes at most
    /// once: for those, a record is dropped and counted when that sink's ring is full
    /// instead of waiting (trades to the Redis publisher).
    pub fn set_lossy_kinds(&mut self, lossy: &[RecordKinds]) {
        self.outlets.set_lossy(lossy);
    }

    /// Records this core's stage latencies into `recorder`.
    pub fn set_latency(&mut self, recorder: Recorder) {
        self.latency = Some(recorder);
        self.wall_offset_us = wall_offset_us();
    }

    /// Drops (and counts) events whose time is outside `bound` of our wall clock, the
    /// wall clock being `wall_offset_us` (wall µs minus [`mono_ns`] µs) ahead of the
    /// receive times; the offset is read again at every [`Self::flush`].
    pub fn set_clock_bound(&mut self, bound: ClockBound, wall_offset_us: i64) {
        self.clock = bound;
        self.wall_offset_us = wall_offset_us;
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
        let series = self
            .symbol_list
            .iter()
            .flat_map(|_| self.timeframe_list.iter().copied());
        self.signals = Some(SignalGate::new(config, series, self.stats.clone()));
        self.fired.reserve(SignalKind::ALL.len());
        self.arm_warm_waits();
        self
    }

    fn arm_warm_waits(&mut self) {
        if self.link.is_none() {
            return;
        }
        if let Some(gate) = self.signals.as_mut() {
            gate.await_warm_starts();
        }
    }

    /// The signal engine of a series, to read its indicators (tests, status).
    pub fn signal_engine(&self, symbol: Symbol, interval: Interval) -> Option<&SignalEngine> {
        let slot = self.slot_of(symbol, interval)?;
        self.signals.as_ref()?.engine(slot)
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

    /// Whether an event time is believable at its receive time; counts it when not.
    #[inline]
    fn believable(&self, event_time_us: i64, recv_ns: u64) -> bool {
        let now_wall_ms = ((recv_ns / 1000) as i64).saturating_add(self.wall_offset_us) / 1000;
        match self.clock.check(event_time_us / 1000, now_wall_ms, recv_ns) {
            Ok(()) => true,
            Err(skew) => {
                self.stats.clock_skew_drops[skew as usize].inc();
                false
            }
        }
    }

    /// Applies one market event received at `recv_ns`. An event whose time is too far
    /// from our clock (see [`Self::set_clock_bound`]) is counted and dropped whole.
    pub fn on_event(&mut self, event: &Event<'_>, recv_ns: u64) {
        let event_time_us = match event {
            Event::Kline(c) => Some(c.event_time_us),
            Event::Trade(t) => Some(t.event_time_us),
            Event::AggTrade(t) => Some(t.event_time_us),
            Event::DepthUpdate(d) => Some(d.event_time_us),
            _ => None,
        };
        if event_time_us.is_some_and(|t| !self.believable(t, recv_ns)) {
            return;
        }
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
                let Some(&i) = self.symbols.get(&t.symbol) else {
                    stats.unknown_events.inc();
                    return;
                };
                if t.trade_id > MAX_STORED_ID {
                    stats.parse_error("out_of_range");
                    return;
                }
                if self.admit_trade(i, TradeKind::Raw, t.symbol, t.trade_id) {
                    let env = self.envelope(recv_ns, mono_ns(), Record::Trade(*t));
                    self.outlets.send_kept(env);
                }
                self.note_event_latency(t.event_time_us, recv_ns);
            }
            Event::AggTrade(t) => {
                stats.agg_trades.inc();
                stats.last_event_time_us.set(t.event_time_us);
                let Some(&i) = self.symbols.get(&t.symbol) else {
                    stats.unknown_events.inc();
                    return;
                };
                if t.agg_trade_id.max(t.last_trade_id) > MAX_STORED_ID
                    || t.first_trade_id > t.last_trade_id
                {
                    stats.parse_error("out_of_range");
                    return;
                }
                if self.admit_trade(i, TradeKind::Aggregate, t.symbol, t.agg_trade_id) {
                    let env = self.envelope(recv_ns, mono_ns(), Record::AggTrade(*t));
                    self.outlets.send_kept(env);
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
                // The book judges repeats itself, by update id.
                self.on_depth(d, recv_ns);
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

    /// Passes the id of a trade of `kind` of symbol `i` through its gate: counts a
    /// repeat or a hole before it, and asks the REST thread for the hole when these
    /// trades are stored (only stored trades are worth fetching). True when the trade
    /// is new and goes to the sinks that take it.
    fn admit_trade(&mut self, i: usize, kind: TradeKind, symbol: Symbol, id: u64) -> bool {
        let seq = &mut self.seq[i];
        let outcome = seq.trade_gate(kind).admit(id);
        let first_live = &mut seq.first_live[kind as usize];
        if outcome != SeqOutcome::Duplicate && first_live.is_none() {
            *first_live = Some(id);
        }
        let stats = &*self.stats;
        let new = match kind {
            TradeKind::Aggregate => {
                self.count_seq(outcome, &stats.agg_trade_gaps, &stats.agg_trade_gap_ids)
            }
            TradeKind::Raw => self.count_seq(outcome, &stats.trade_gaps, &stats.trade_gap_ids),
        };
        if let SeqOutcome::After { from, .. } = outcome {
            if self.backfill_trades[kind as usize] {
                self.ask_trades(kind, symbol, from, id);
            }
        }
        new
    }

    /// Counts what a trade id gate made of an id (a duplicate, a hole before it); true
    /// when the trade is new and goes to the sinks that take it.
    fn count_seq(&self, outcome: SeqOutcome, gaps: &Counter, gap_ids: &Counter) -> bool {
        match outcome {
            SeqOutcome::Next => true,
            SeqOutcome::After { missing, .. } => {
                gaps.inc();
                gap_ids.add(missing);
                true
            }
            SeqOutcome::Duplicate => {
                self.stats.duplicates.inc();
                false
            }
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
        if let Some(series) = self.series(slot) {
            // The stream is alive: `/api/status` flags a kline stream silent past
            // `feed.stream_silence_s` without one.
            series.last_update_ns.set(recv_ns);
        }
        let outcome = self.tracks[slot].apply(c);
        let parsed_ns = mono_ns();
        if let Some(rec) = &mut self.latency {
            rec.record_span(Stage::RecvToParsed, recv_ns, parsed_ns);
        }
        match outcome {
            KlineOutcome::Live => {
                let env = self.envelope(recv_ns, parsed_ns, Record::LiveCandle(*c));
                self.outlets.send_latest(env);
            }
            KlineOutcome::Closed { gap } => {
                self.stats.candles_closed.inc();
                if let Some(gap) = gap {
                    self.note_gap(gap);
                    let env = self.envelope(recv_ns, parsed_ns, Record::Gap(gap));
                    self.outlets.send_kept(env);
                }
                let env = self.envelope(recv_ns, parsed_ns, Record::ClosedCandle(*c));
                self.outlets.send_kept(env);
                // The candle's receive time is the shard's now for its timers.
                self.signal_candle(slot, c, Some((recv_ns, parsed_ns)), recv_ns);
                self.request_gaps(slot, recv_ns);
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

    /// A closed candle for the series' signals (live or backfilled, never history):
    /// applied now if it is the next one, else held until the hole before it is
    /// resolved. `timing` is the (receive, parsed) time of a live candle.
    fn signal_candle(&mut self, slot: usize, c: &Candle, timing: Option<(u64, u64)>, now_ns: u64) {
        // A live close sees the symbol's book as it stands; a backfilled one does not.
        let book = match (timing, &self.books) {
            (Some(_), Some(books)) => books.signal(c.symbol),
            _ => None,
        };
        self.through_gate(timing, |gate, pending, out| {
            gate.offer(slot, c, book, pending, now_ns, out)
        });
    }

    /// Runs `f` on the signal gate (when signals are on), telling it which holes the
    /// backfill may still fill, then sends the signals it made. `f` returns true when
    /// the candle of `timing` was applied at once: its signals carry that timing.
    fn through_gate(
        &mut self,
        timing: Option<(u64, u64)>,
        f: impl FnOnce(&mut SignalGate, &dyn Fn(usize, i64, i64) -> bool, &mut Vec<Signal>) -> bool,
    ) {
        let Some(gate) = self.signals.as_mut() else {
            return;
        };
        let linked = self.link.is_some();
        let tracks = &self.tracks;
        // Some open gap of the series overlaps [from, to): its backfill may be coming.
        let pending = |slot: usize, from: i64, to: i64| {
            linked
                && tracks[slot]
                    .open_gaps()
                    .iter()
                    .any(|g| g.from < to && from < g.to)
        };
        let at_once = f(gate, &pending, &mut self.fired);
        let (recv_ns, parsed_ns) = match timing {
            Some(t) if at_once => {
                if let Some(rec) = &mut self.latency {
                    // Every indicator and rule of the series, for this closed candle.
                    rec.record_span(Stage::ParsedToSignal, t.1, mono_ns());
                }
                t
            }
            _ => (0, 0),
        };
        for signal in self.fired.drain(..) {
            self.outlets.send_kept(Envelope {
                shard: self.index,
                recv_ns,
                parsed_ns,
                record: Record::Signal(signal),
            });
        }
    }

    /// True while never-lost records wait at their bound for some sink: readers should
    /// pause.
    pub fn backpressured(&self) -> bool {
        self.outlets.backpressured()
    }

    /// Moves waiting records into the ring while it has room; called after each read
    /// and periodically, `now_ns` being the monotonic time ([`crate::clock::mono_ns`]
    /// live): holds that have expired by then are given up on and failed gaps whose
    /// retry is due are asked again. Returns how many records are still waiting.
    pub fn flush(&mut self, now_ns: u64) -> usize {
        self.check_holds(now_ns);
        if self.books.is_some() {
            self.tend_books(now_ns);
        }
        let left = self.outlets.flush();
        if self.latency.is_some() || self.clock != ClockBound::OFF {
            self.wall_offset_us = wall_offset_us();
        }
        if let Some(rec) = &mut self.latency {
            rec.maybe_handoff(now_ns);
        }
        left
    }

    /// Whether [`ShardState::flush`] has work with a deadline of its own: candles held
    /// for a hole (their hold time runs), failed gap or trade requests to ask again, or
    /// local books to tend. Without any, the shard's periodic flush can wait longer:
    /// while records come, the feed flushes after every read anyway.
    pub fn has_timed_work(&self) -> bool {
        self.signals.as_ref().is_some_and(|g| g.holding())
            || self.retry_gaps_at_ns.is_some()
            || !self.trade_retries.is_empty()
            || self.books.is_some()
    }

    /// Gives up on holes held past the hold time, and asks again for gaps whose
    /// backfill failed once the retry time has come. Free when nothing is held.
    fn check_holds(&mut self, now_ns: u64) {
        self.retry_failed_gaps(now_ns);
        let hold_ns = self.hold_ns;
        self.through_gate(None, |gate, pending, out| {
            gate.expire(now_ns, hold_ns, pending, out);
            false
        });
    }
}

/// Read for the exchange-to-receive latency and the clock bound only, so a shard with
/// neither never reads the clock outside its latency stamps.
pub fn wall_offset_us() -> i64 {
    wall_us() - (mono_ns() / 1000) as i64
}
