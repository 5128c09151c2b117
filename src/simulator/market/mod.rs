//! The deterministic synthetic market: per symbol a seeded price random walk, trades in
//! simulated time, aggregate trades, klines for every interval and an order book, all
//! consistent with each other.
//!
//! Runs on: the simulator core (pure: no sockets, no clocks; time is passed in). In:
//! "advance to simulated time t". Out: every event due up to t, in time order, handed to
//! a [`Sink`] that says which streams anyone wants.
//!
//! Determinism: the trades, their times, prices and quantities, and so every kline and
//! book update, depend only on the seed, the symbol and the simulated start time; never
//! on the wall clock, on how often `advance_to` is called or on who is subscribed. Each
//! symbol has its own random stream, so adding a symbol changes no other symbol.
//!
//! Units: prices and quantities are integers in units of 10^-8 ([`UNIT_SCALE`] decimal
//! places, rendered as Binance does with 8 decimals); times are nanoseconds inside the
//! model and leave it as milliseconds or microseconds.
//!
//! Event order at one instant: candle closes, then kline pushes, then depth pushes, then
//! trades. A candle's final (`x: true`) update is therefore always sent before any update
//! of the next candle, and contains exactly the trades with times before its close.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use crate::market::{Interval, Symbol};

use super::book::{Book, BookChange, BookLevel};
use super::kline::{Fill, Kline, KlineSeries};
use super::stream::StreamKind;

/// Decimal places of every price and quantity value (Binance renders 8).
pub const UNIT_SCALE: u32 = 8;
/// 10^UNIT_SCALE.
pub const UNIT: i64 = 100_000_000;
const NS_PER_MS: i64 = 1_000_000;
const NS_PER_S: i64 = 1_000_000_000;
/// Relative price volatility per square root of a simulated second: 1e-4 gives BTC at
/// 60,000 a typical move of about 6 USDT a second and 46 USDT a minute, like the real
/// market on a calm day. It is independent of the trade rate.
const VOLATILITY_PER_SQRT_S: f64 = 1e-4;
/// Trades per aggregate trade (one taker order) are uniform in 1..=this; mean 2.5.
const MAX_TRADES_PER_AGGREGATE: u64 = 4;
/// The largest single trade is worth about this much quote currency.
const MAX_TRADE_NOTIONAL: i64 = 50_000;
/// A resting level holds up to this many times the largest trade.
const LEVEL_QTY_TRADES: i64 = 4;
/// The random walk is reflected when the price leaves [initial / 4, initial × 4], so a
/// long run at a high trade rate stays at realistic magnitudes.
const PRICE_BAND_FACTOR: i64 = 4;
/// Highest accepted trade rate per symbol (trades per simulated second); above it one
/// simulated nanosecond would hold several aggregate trades.
pub const MAX_TRADE_RATE: f64 = 100_000_000.0;
/// Aggregate trades the whole market keeps for REST `aggTrades`, shared out per symbol
/// ([`agg_trade_history_per_symbol`]): about 128 MB at 64 bytes each, however many
/// symbols are simulated.
const AGG_TRADE_HISTORY_TOTAL: usize = 2_000_000;
/// Per symbol at most this many (a few simulated hours at usual rates) and at least
/// the other bound, so a large market still answers a backfill of the last minutes.
const AGG_TRADE_HISTORY_MAX: usize = 100_000;
const AGG_TRADE_HISTORY_MIN: usize = 1_000;

/// Aggregate trades kept per symbol in a market of `symbols` symbols.
pub fn agg_trade_history_per_symbol(symbols: usize) -> usize {
    (AGG_TRADE_HISTORY_TOTAL / symbols.max(1)).clamp(AGG_TRADE_HISTORY_MIN, AGG_TRADE_HISTORY_MAX)
}

/// Diff depth push periods (simulated milliseconds).
const DEPTH_FAST_MS: i64 = 100;
const DEPTH_SLOW_MS: i64 = 1_000;

mod events;
pub mod history;
mod schedule;
mod spec;
#[cfg(test)]
mod tests;

pub use events::{
    AggTradeEvent, BookTickerEvent, DepthDiffEvent, Event, KlineEvent, PartialDepthEvent, Sink,
    StreamId, TradeEvent,
};
pub use schedule::KlinePhase;
use schedule::KlineSchedule;
pub use spec::{mix64, Rng, SymbolSpec};

/// Diff depth changes collected over one push period.
#[derive(Debug, Default, Clone)]
struct DepthAccumulator {
    first_update_id: Option<u64>,
    last_update_id: u64,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
}

impl DepthAccumulator {
    fn record(&mut self, update_id: u64, changes: &[BookChange]) {
        self.first_update_id.get_or_insert(update_id);
        self.last_update_id = update_id;
        for c in changes {
            let side = if c.is_bid {
                &mut self.bids
            } else {
                &mut self.asks
            };
            side.insert(c.price, c.qty);
        }
    }
}

/// One symbol's market.
#[derive(Debug, Clone)]
pub struct SymbolMarket {
    pub spec: SymbolSpec,
    index: usize,
    rng: Rng,
    price: i64,
    tick: i64,
    step: i64,
    max_trade_steps: i64,
    /// Mean gap between aggregate trades, simulated nanoseconds.
    mean_gap_ns: u64,
    next_aggregate_ns: i64,
    next_trade_id: u64,
    next_agg_id: u64,
    book: Book,
    book_changes: Vec<BookChange>,
    live_second: Kline,
    /// One series per interval, indexed by `Interval as usize`.
    series: Vec<KlineSeries>,
    depth: [DepthAccumulator; 2],
    trades_total: u64,
    /// The latest aggregate trades, oldest first, at most `agg_history_limit`: what
    /// REST `aggTrades` answers from (older ones are gone).
    agg_history: VecDeque<AggTradeEvent>,
    agg_history_limit: usize,
    /// The quantity of each raw trade of the kept aggregate trades, by trade id from
    /// the oldest kept aggregate's first: with the aggregate that holds it (price,
    /// time, side), what REST `historicalTrades` answers from.
    trade_qty: VecDeque<i64>,
}

impl SymbolMarket {
    fn new(
        spec: SymbolSpec,
        index: usize,
        seed: u64,
        trade_rate: f64,
        start_ns: i64,
        history_limit: usize,
        history_candles: usize,
    ) -> SymbolMarket {
        let mut rng = Rng::new(mix64(seed ^ spec.symbol.stable_hash()));
        let tick = spec.tick();
        let step = spec.step();
        let price = spec.initial_price - spec.initial_price % tick;
        let rate = trade_rate.clamp(1e-9, MAX_TRADE_RATE);
        let mean_trades = (1 + MAX_TRADES_PER_AGGREGATE) as f64 / 2.0;
        let mean_gap_ns = ((mean_trades * NS_PER_S as f64 / rate).round() as u64).max(1);
        let max_trade_steps = (i128::from(MAX_TRADE_NOTIONAL) * i128::from(UNIT) * i128::from(UNIT)
            / (i128::from(price.max(1)) * i128::from(step)))
        .clamp(1, i128::from(i64::MAX / 4)) as i64;
        let sigma_ticks =
            VOLATILITY_PER_SQRT_S * (mean_gap_ns as f64 / NS_PER_S as f64).sqrt() * price as f64
                / tick as f64;
        let gap_max_ticks = ((sigma_ticks / 2.0) as i64).clamp(1, 1_000_000);
        let first_update_id = 1_000_000 + rng.below(9_000_000);
        let book = Book::new(
            price,
            tick,
            step,
            gap_max_ticks,
            max_trade_steps.saturating_mul(LEVEL_QTY_TRADES),
            first_update_id,
            &mut rng,
        );
        let next_trade_id = 10_000_000 + rng.below(90_000_000);
        let next_agg_id = 1_000_000 + rng.below(9_000_000);
        let start_ms = start_ns.div_euclid(NS_PER_MS);
        let mut series: Vec<KlineSeries> = Interval::ALL
            .iter()
            .map(|&i| KlineSeries::new(i, start_ms, price, history_limit))
            .collect();
        let past = history::generate(
            &history::HistorySpec {
                spec: &spec,
                seed,
                trade_rate: rate,
                open_ms: start_ms,
                open_price: price,
                first_trade_id: next_trade_id,
                max_trade_steps,
            },
            history_candles,
        );
        for h in past {
            series[h.interval as usize].seed(&h.closed, h.open_part);
        }
        let first_gap = rng.below(2 * mean_gap_ns + 1) as i64;
        SymbolMarket {
            index,
            rng,
            price,
            tick,
            step,
            max_trade_steps,
            mean_gap_ns,
            next_aggregate_ns: start_ns.saturating_add(first_gap),
            next_trade_id,
            next_agg_id,
            book,
            book_changes: Vec::with_capacity(64),
            live_second: Kline::empty(Interval::S1, Interval::S1.open_time(start_ms), price),
            series,
            depth: Default::default(),
            trades_total: 0,
            agg_history: VecDeque::new(),
            agg_history_limit: AGG_TRADE_HISTORY_MIN,
            trade_qty: VecDeque::new(),
            spec,
        }
    }

    /// The aggregate trades kept, oldest first (ids contiguous).
    pub fn agg_trades(&self) -> &VecDeque<AggTradeEvent> {
        &self.agg_history
    }

    /// Up to `limit` kept raw trades, oldest first: from id `from_id` on, or the newest
    /// `limit` without it. Raw trades are kept as long as their aggregate trade is.
    pub fn trades(&self, from_id: Option<u64>, limit: usize) -> Vec<TradeEvent> {
        let (Some(first), Some(last)) = (self.agg_history.front(), self.agg_history.back()) else {
            return Vec::new();
        };
        let (oldest, newest) = (first.first_trade_id, last.last_trade_id);
        if limit == 0 {
            return Vec::new();
        }
        let from = match from_id {
            Some(id) => id.max(oldest),
            None => (newest + 1).saturating_sub(limit as u64).max(oldest),
        };
        if from > newest {
            return Vec::new();
        }
        let to = newest.min(from.saturating_add(limit as u64).saturating_sub(1));
        let mut agg = self.agg_history.partition_point(|a| a.last_trade_id < from);
        let mut out = Vec::with_capacity((to + 1 - from) as usize);
        for trade_id in from..=to {
            while self.agg_history[agg].last_trade_id < trade_id {
                agg += 1;
            }
            let a = &self.agg_history[agg];
            out.push(TradeEvent {
                symbol_index: self.index,
                time_ns: a.time_ns,
                trade_id,
                price: a.price,
                qty: self.trade_qty[(trade_id - oldest) as usize],
                buyer_is_maker: a.buyer_is_maker,
            });
        }
        out
    }

    pub fn book(&self) -> &Book {
        &self.book
    }

    pub fn trades_total(&self) -> u64 {
        self.trades_total
    }

    /// The current (open) candle of `interval`, including the live second.
    pub fn current_kline(&self, interval: Interval) -> Kline {
        if interval == Interval::S1 {
            return self.live_second;
        }
        let mut k = self.series[interval as usize].building;
        k.merge(&self.live_second);
        k
    }

    pub fn series(&self, interval: Interval) -> &KlineSeries {
        &self.series[interval as usize]
    }

    /// The next price: a random step of about the per-aggregate volatility, reflected at
    /// the band edges and kept on the tick grid.
    fn next_price(&mut self) -> i64 {
        let sigma_ticks = VOLATILITY_PER_SQRT_S
            * (self.mean_gap_ns as f64 / NS_PER_S as f64).sqrt()
            * self.price as f64
            / self.tick as f64;
        let mut delta = (self.rng.normal() * sigma_ticks).round() as i64 * self.tick;
        let initial = self.spec.initial_price;
        let candidate = self.price + delta;
        if candidate < initial / PRICE_BAND_FACTOR || candidate > initial * PRICE_BAND_FACTOR {
            delta = -delta;
        }
        (self.price + delta).max(self.tick)
    }

    fn random_trade_qty(&mut self) -> i64 {
        // Cubing a uniform makes small trades common and large ones rare.
        let u = self.rng.unit();
        (1 + (u * u * u * self.max_trade_steps as f64) as i64) * self.step
    }

    /// Generates the aggregate trade due at `next_aggregate_ns`.
    fn aggregate<S: Sink>(&mut self, sink: &mut S) {
        let time_ns = self.next_aggregate_ns;
        let price = self.next_price();
        let buyer_is_maker = match price.cmp(&self.price) {
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => self.rng.below(2) == 0,
        };
        self.price = price;
        let count = 1 + self.rng.below(MAX_TRADES_PER_AGGREGATE);
        let first_id = self.next_trade_id;
        let trade_stream = StreamId::new(self.index, StreamKind::Trade);
        let wants_trades = sink.wants(trade_stream);
        let mut total_qty: i64 = 0;
        for n in 0..count {
            let qty = self.random_trade_qty();
            total_qty += qty;
            self.trade_qty.push_back(qty);
            if wants_trades {
                let trade = TradeEvent {
                    symbol_index: self.index,
                    time_ns,
                    trade_id: first_id + n,
                    price,
                    qty,
                    buyer_is_maker,
                };
                sink.emit(trade_stream, &Event::Trade(&trade));
            }
        }
        let last_id = first_id + count - 1;
        self.next_trade_id += count;
        self.trades_total += count;
        let agg_stream = StreamId::new(self.index, StreamKind::AggTrade);
        let agg = AggTradeEvent {
            symbol_index: self.index,
            time_ns,
            agg_id: self.next_agg_id,
            price,
            qty: total_qty,
            first_trade_id: first_id,
            last_trade_id: last_id,
            buyer_is_maker,
        };
        if sink.wants(agg_stream) {
            sink.emit(agg_stream, &Event::AggTrade(&agg));
        }
        if self.agg_history.len() >= self.agg_history_limit {
            if let Some(gone) = self.agg_history.pop_front() {
                let trades = (gone.last_trade_id + 1 - gone.first_trade_id) as usize;
                self.trade_qty.drain(..trades.min(self.trade_qty.len()));
            }
        }
        self.agg_history.push_back(agg);
        self.next_agg_id += 1;
        // Tick and step decimals add up to at most 8, so the quote value is exact.
        let quote = i128::from(price) * i128::from(total_qty) / i128::from(UNIT);
        self.live_second.add_fill(&Fill {
            price,
            quantity: i128::from(total_qty),
            quote,
            taker_is_buyer: !buyer_is_maker,
            count,
            first_id: first_id as i64,
            last_id: last_id as i64,
        });

        let top_before = self.book.top();
        self.book.apply_trade(
            price,
            !buyer_is_maker,
            &mut self.rng,
            &mut self.book_changes,
        );
        let update_id = self.book.update_id();
        for (slot, fast) in [(0usize, false), (1usize, true)] {
            if sink.wants(StreamId::new(self.index, StreamKind::Depth { fast })) {
                self.depth[slot].record(update_id, &self.book_changes);
            }
        }
        let top = self.book.top();
        let ticker_stream = StreamId::new(self.index, StreamKind::BookTicker);
        if top != top_before && sink.wants(ticker_stream) {
            let event = BookTickerEvent {
                symbol_index: self.index,
                update_id,
                top,
            };
            sink.emit(ticker_stream, &Event::BookTicker(&event));
        }

        let gap = self.rng.below(2 * self.mean_gap_ns + 1) as i64;
        self.next_aggregate_ns = time_ns.saturating_add(gap);
    }

    /// Second boundary at `boundary_ms`: closes the 1s candle and every candle whose
    /// period ends here, pushing each final update to its stream.
    fn close_second<S: Sink>(&mut self, boundary_ms: i64, sink: &mut S) {
        let time_ns = boundary_ms * NS_PER_MS;
        let closed_second = self.live_second;
        for interval in Interval::ALL {
            let series = &mut self.series[interval as usize];
            let closed = if interval == Interval::S1 {
                series.building = closed_second;
                series.close_building()
            } else {
                series.building.merge(&closed_second);
                if interval.next_open(series.building.open_time_ms) != boundary_ms {
                    continue;
                }
                series.close_building()
            };
            let stream = StreamId::new(self.index, StreamKind::Kline(interval));
            if sink.wants(stream) {
                let event = KlineEvent {
                    symbol_index: self.index,
                    time_ns,
                    interval,
                    kline: closed,
                    closed: true,
                };
                sink.emit(stream, &Event::Kline(&event));
            }
        }
        self.live_second = Kline::empty(Interval::S1, boundary_ms, closed_second.close);
    }

    /// Kline update push at `time_ms` for every interval but 1s (whose only push is its
    /// close). A candle that opens at this very instant is skipped: it has no trades yet,
    /// and its predecessor's close was just pushed.
    fn push_klines<S: Sink>(&mut self, time_ms: i64, sink: &mut S) {
        for interval in Interval::ALL.into_iter().skip(1) {
            let stream = StreamId::new(self.index, StreamKind::Kline(interval));
            if !sink.wants(stream) {
                continue;
            }
            let kline = self.current_kline(interval);
            if kline.open_time_ms == time_ms {
                continue;
            }
            let event = KlineEvent {
                symbol_index: self.index,
                time_ns: time_ms * NS_PER_MS,
                interval,
                kline,
                closed: false,
            };
            sink.emit(stream, &Event::Kline(&event));
        }
    }

    /// Diff and partial depth pushes of one speed.
    fn push_depth<S: Sink>(
        &mut self,
        time_ms: i64,
        fast: bool,
        sink: &mut S,
        scratch: &mut DepthScratch,
    ) {
        let slot = usize::from(fast);
        let stream = StreamId::new(self.index, StreamKind::Depth { fast });
        if sink.wants(stream) {
            let acc = &mut self.depth[slot];
            if let Some(first_update_id) = acc.first_update_id.take() {
                scratch.bids.clear();
                scratch.asks.clear();
                scratch.bids.extend(
                    acc.bids
                        .iter()
                        .rev()
                        .map(|(&price, &qty)| BookLevel { price, qty }),
                );
                scratch.asks.extend(
                    acc.asks
                        .iter()
                        .map(|(&price, &qty)| BookLevel { price, qty }),
                );
                acc.bids.clear();
                acc.asks.clear();
                let event = DepthDiffEvent {
                    symbol_index: self.index,
                    time_ns: time_ms * NS_PER_MS,
                    first_update_id,
                    last_update_id: acc.last_update_id,
                    bids: &scratch.bids,
                    asks: &scratch.asks,
                };
                sink.emit(stream, &Event::DepthDiff(&event));
            }
        } else {
            // Nobody listens: drop what was collected so a later subscriber starts fresh.
            let acc = &mut self.depth[slot];
            acc.first_update_id = None;
            acc.bids.clear();
            acc.asks.clear();
        }
        for levels in super::stream::PARTIAL_DEPTH_LEVELS {
            let stream = StreamId::new(self.index, StreamKind::PartialDepth { levels, fast });
            if !sink.wants(stream) {
                continue;
            }
            scratch.bids.clear();
            scratch.asks.clear();
            scratch
                .bids
                .extend(self.book.bids().take(usize::from(levels)));
            scratch
                .asks
                .extend(self.book.asks().take(usize::from(levels)));
            let event = PartialDepthEvent {
                symbol_index: self.index,
                last_update_id: self.book.update_id(),
                bids: &scratch.bids,
                asks: &scratch.asks,
            };
            sink.emit(stream, &Event::PartialDepth(&event));
        }
    }
}

#[derive(Debug, Default)]
struct DepthScratch {
    bids: Vec<BookLevel>,
    asks: Vec<BookLevel>,
}

/// Market settings.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    pub symbols: Vec<Symbol>,
    pub seed: u64,
    /// Trades per simulated second per symbol.
    pub trade_rate: f64,
    /// Simulated epoch milliseconds at which the market opens.
    pub start_time_ms: i64,
    /// Period of kline update pushes (simulated ms) for every interval but 1s.
    pub kline_push_ms: i64,
    /// When in the period each symbol pushes.
    pub kline_phase: KlinePhase,
    /// Closed candles kept per (symbol, interval).
    pub history_limit: usize,
    /// Closed candles of seeded past per (symbol, interval) before the open
    /// ([`history`]); 0: the market opens with no past, like a new listing.
    pub history_candles: usize,
}

/// When in each kline push period the symbols push their updates.
/// All symbols' markets and the shared timers.
#[derive(Debug)]
pub struct Market {
    symbols: Vec<SymbolMarket>,
    /// Symbols by their next aggregate trade time.
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    now_ns: i64,
    next_second_ms: i64,
    pushes: KlineSchedule,
    next_fast_depth_ms: i64,
    scratch: DepthScratch,
}

impl Market {
    pub fn new(config: &MarketConfig) -> Market {
        let start_ns = config.start_time_ms.saturating_mul(NS_PER_MS);
        let mut symbols: Vec<SymbolMarket> = config
            .symbols
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                SymbolMarket::new(
                    SymbolSpec::for_symbol(s),
                    i,
                    config.seed,
                    config.trade_rate,
                    start_ns,
                    config.history_limit,
                    config.history_candles,
                )
            })
            .collect();
        let kept = agg_trade_history_per_symbol(symbols.len());
        for m in &mut symbols {
            m.agg_history_limit = kept;
        }
        let queue = symbols
            .iter()
            .map(|m| Reverse((m.next_aggregate_ns, m.index)))
            .collect();
        let next_after = |period: i64| (config.start_time_ms.div_euclid(period) + 1) * period;
        let pushes = KlineSchedule::new(
            config.kline_push_ms,
            config.kline_phase,
            symbols.len(),
            config.start_time_ms,
        );
        Market {
            symbols,
            queue,
            now_ns: start_ns,
            next_second_ms: next_after(1_000),
            pushes,
            next_fast_depth_ms: next_after(DEPTH_FAST_MS),
            scratch: DepthScratch::default(),
        }
    }

    pub fn symbols(&self) -> &[SymbolMarket] {
        &self.symbols
    }

    pub fn symbol_index(&self, symbol: Symbol) -> Option<usize> {
        self.symbols.iter().position(|m| m.spec.symbol == symbol)
    }

    /// Simulated time up to which every event has been emitted.
    pub fn now_ns(&self) -> i64 {
        self.now_ns
    }

    /// The time of the next event (ns).
    pub fn next_event_ns(&self) -> i64 {
        let timer_ms = self
            .next_second_ms
            .min(self.pushes.next_ms())
            .min(self.next_fast_depth_ms);
        let trade = self.queue.peek().map_or(i64::MAX, |Reverse((t, _))| *t);
        (timer_ms * NS_PER_MS).min(trade)
    }

    /// Emits every event with a time at or before `until_ns`, in time order.
    /// Calling it again with an earlier time does nothing.
    pub fn advance_to<S: Sink>(&mut self, until_ns: i64, sink: &mut S) {
        self.advance_bounded(until_ns, sink, usize::MAX);
    }

    /// Like [`Market::advance_to`], but stops after `max_steps` aggregate trades and
    /// timer instants, so a large backlog is worked off in slices; returns whether
    /// `until_ns` was reached.
    pub fn advance_bounded<S: Sink>(
        &mut self,
        until_ns: i64,
        sink: &mut S,
        max_steps: usize,
    ) -> bool {
        let mut steps = 0usize;
        loop {
            if steps >= max_steps {
                return false;
            }
            steps += 1;
            let timer_ms = self
                .next_second_ms
                .min(self.pushes.next_ms())
                .min(self.next_fast_depth_ms);
            let timer_ns = timer_ms.saturating_mul(NS_PER_MS);
            let trade = self.queue.peek().map(|Reverse(entry)| *entry);
            match trade {
                // Timers go first at equal times.
                Some((t, index)) if t < timer_ns && t <= until_ns => {
                    self.queue.pop();
                    let market = &mut self.symbols[index];
                    market.aggregate(sink);
                    self.queue.push(Reverse((market.next_aggregate_ns, index)));
                    self.now_ns = t;
                }
                _ if timer_ns <= until_ns => {
                    self.fire_timers(timer_ms, sink);
                    self.now_ns = timer_ns;
                }
                _ => break,
            }
        }
        self.now_ns = self.now_ns.max(until_ns);
        true
    }

    fn fire_timers<S: Sink>(&mut self, time_ms: i64, sink: &mut S) {
        if self.next_second_ms == time_ms {
            for m in &mut self.symbols {
                m.close_second(time_ms, sink);
            }
            self.next_second_ms += 1_000;
        }
        if self.pushes.next_ms() == time_ms {
            for &i in self.pushes.members() {
                self.symbols[i].push_klines(time_ms, sink);
            }
            self.pushes.step();
        }
        if self.next_fast_depth_ms == time_ms {
            let slow = time_ms % DEPTH_SLOW_MS == 0;
            for m in &mut self.symbols {
                m.push_depth(time_ms, true, sink, &mut self.scratch);
                if slow {
                    m.push_depth(time_ms, false, sink, &mut self.scratch);
                }
            }
            self.next_fast_depth_ms += DEPTH_FAST_MS;
        }
    }
}

/// A sink that wants nothing: advances the model without building any event.
pub struct NullSink;

impl Sink for NullSink {
    fn wants(&self, _stream: StreamId) -> bool {
        false
    }
    fn emit(&mut self, _stream: StreamId, _event: &Event<'_>) {}
}
