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
use std::collections::{BTreeMap, BinaryHeap};

use crate::market::{Interval, Symbol};

use super::book::{Book, BookChange, BookLevel, Top};
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
/// Diff depth push periods (simulated milliseconds).
const DEPTH_FAST_MS: i64 = 100;
const DEPTH_SLOW_MS: i64 = 1_000;

/// A small, fast, seedable random source (SplitMix64): the model's only source of
/// randomness, identical on every platform and build.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (Irwin–Hall of four uniforms): only +, −, ×, so
    /// the result is bit-identical everywhere.
    pub fn normal(&mut self) -> f64 {
        let sum = self.unit() + self.unit() + self.unit() + self.unit();
        (sum - 2.0) * 1.732_050_807_568_877_2
    }
}

/// The SplitMix64 finaliser, also used to derive independent seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Static description of a simulated symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    pub symbol: Symbol,
    pub base_asset: String,
    pub quote_asset: String,
    /// Decimals of the tick size (BTCUSDT: 2, tick 0.01).
    pub price_decimals: u32,
    /// Decimals of the step size (BTCUSDT: 5, step 0.00001).
    pub qty_decimals: u32,
    /// Starting price in units of 10^-8.
    pub initial_price: i64,
}

/// Quote assets recognised when splitting a symbol into base and quote.
const QUOTE_ASSETS: [&str; 10] = [
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY",
];

impl SymbolSpec {
    /// Realistic decimals and magnitudes for well-known symbols; any other symbol gets
    /// 4 price / 2 quantity decimals and a price between 1 and 100 derived from its name.
    pub fn for_symbol(symbol: Symbol) -> SymbolSpec {
        // (tick decimals, step decimals, starting price in units of 10^-8)
        let (price_decimals, qty_decimals, initial_price) = match symbol.as_str() {
            "BTCUSDT" | "BTCFDUSD" | "BTCUSDC" => (2, 5, 60_000 * UNIT),
            "ETHUSDT" | "ETHUSDC" => (2, 4, 3_000 * UNIT),
            "BNBUSDT" => (2, 3, 550 * UNIT),
            "SOLUSDT" => (2, 3, 150 * UNIT),
            "ADAUSDT" => (4, 1, 45 * UNIT / 100),
            "XRPUSDT" => (4, 0, 55 * UNIT / 100),
            "DOGEUSDT" => (5, 0, 12 * UNIT / 100),
            "ETHBTC" => (5, 4, 5 * UNIT / 100),
            "BNBBTC" => (6, 3, 9 * UNIT / 1_000),
            _ => {
                // 1.00 to 99.99, from the name.
                let cents = 100 + (symbol.stable_hash() % 9_900) as i64;
                (4, 2, cents * UNIT / 100)
            }
        };
        let (base_asset, quote_asset) = split_symbol(symbol.as_str());
        SymbolSpec {
            symbol,
            base_asset,
            quote_asset,
            price_decimals,
            qty_decimals,
            initial_price,
        }
    }

    /// Tick size in units of 10^-8.
    pub fn tick(&self) -> i64 {
        pow10(UNIT_SCALE - self.price_decimals)
    }

    /// Step size in units of 10^-8.
    pub fn step(&self) -> i64 {
        pow10(UNIT_SCALE - self.qty_decimals)
    }
}

fn split_symbol(symbol: &str) -> (String, String) {
    for quote in QUOTE_ASSETS {
        if let Some(base) = symbol.strip_suffix(quote) {
            if !base.is_empty() {
                return (base.to_string(), quote.to_string());
            }
        }
    }
    let cut = symbol.len().saturating_sub(3).max(1).min(symbol.len());
    (symbol[..cut].to_string(), symbol[cut..].to_string())
}

fn pow10(exp: u32) -> i64 {
    10i64.pow(exp)
}

/// Index of a stream in the flat subscription table: `symbol * StreamKind::COUNT + kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    pub fn new(symbol_index: usize, kind: StreamKind) -> StreamId {
        StreamId((symbol_index * StreamKind::COUNT + kind.index()) as u32)
    }
}

/// A trade (`@trade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub trade_id: u64,
    pub price: i64,
    pub qty: i64,
    pub buyer_is_maker: bool,
}

/// An aggregate trade (`@aggTrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggTradeEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub agg_id: u64,
    pub price: i64,
    pub qty: i64,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub buyer_is_maker: bool,
}

/// The best bid and ask after an update (`@bookTicker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookTickerEvent {
    pub symbol_index: usize,
    pub update_id: u64,
    pub top: Top,
}

/// A kline push (`@kline_<interval>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KlineEvent {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub interval: Interval,
    pub kline: Kline,
    pub closed: bool,
}

/// A diff depth push (`@depth`, `@depth@100ms`); bids best first, asks best first.
#[derive(Clone, Copy, Debug)]
pub struct DepthDiffEvent<'a> {
    pub symbol_index: usize,
    pub time_ns: i64,
    pub first_update_id: u64,
    pub last_update_id: u64,
    pub bids: &'a [BookLevel],
    pub asks: &'a [BookLevel],
}

/// A partial depth push (`@depth<levels>`).
#[derive(Clone, Copy, Debug)]
pub struct PartialDepthEvent<'a> {
    pub symbol_index: usize,
    pub last_update_id: u64,
    pub bids: &'a [BookLevel],
    pub asks: &'a [BookLevel],
}

/// Everything the model emits.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Trade(&'a TradeEvent),
    AggTrade(&'a AggTradeEvent),
    BookTicker(&'a BookTickerEvent),
    Kline(&'a KlineEvent),
    DepthDiff(&'a DepthDiffEvent<'a>),
    PartialDepth(&'a PartialDepthEvent<'a>),
}

impl Event<'_> {
    /// The index of the symbol the event belongs to.
    pub fn symbol_index(&self) -> usize {
        match self {
            Event::Trade(e) => e.symbol_index,
            Event::AggTrade(e) => e.symbol_index,
            Event::BookTicker(e) => e.symbol_index,
            Event::Kline(e) => e.symbol_index,
            Event::DepthDiff(e) => e.symbol_index,
            Event::PartialDepth(e) => e.symbol_index,
        }
    }
}

/// Where events go. `wants` lets the model skip building events nobody receives
/// (it never changes what the market does).
pub trait Sink {
    fn wants(&self, stream: StreamId) -> bool;
    fn emit(&mut self, stream: StreamId, event: &Event<'_>);
}

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
}

impl SymbolMarket {
    fn new(
        spec: SymbolSpec,
        index: usize,
        seed: u64,
        trade_rate: f64,
        start_ns: i64,
        history_limit: usize,
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
        let series = Interval::ALL
            .iter()
            .map(|&i| KlineSeries::new(i, start_ms, price, history_limit))
            .collect();
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
            spec,
        }
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
        if sink.wants(agg_stream) {
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
            sink.emit(agg_stream, &Event::AggTrade(&agg));
        }
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
}

/// When in each kline push period the symbols push their updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KlinePhase {
    /// Every symbol at the same millisecond (the start of the period): one burst per
    /// period, the hardest case for a consumer's latency.
    #[default]
    Aligned,
    /// Symbol `i` of `n` at millisecond `i * period / n` of the period: the pushes spread
    /// evenly over the period's milliseconds, as unrelated symbols arrive from an exchange.
    Spread,
}

impl KlinePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            KlinePhase::Aligned => "aligned",
            KlinePhase::Spread => "spread",
        }
    }
}

/// The kline push timer: the distinct millisecond offsets in the period at which some
/// symbol pushes, and which symbols push at each.
#[derive(Debug)]
struct KlineSchedule {
    period_ms: i64,
    /// Distinct offsets in `[0, period_ms)`, ascending, each with its symbols.
    slots: Vec<(i64, Vec<usize>)>,
    /// Start of the current period and the next slot due in it.
    period_start_ms: i64,
    next_slot: usize,
}

impl KlineSchedule {
    fn new(period_ms: i64, phase: KlinePhase, symbols: usize, start_time_ms: i64) -> Self {
        let period_ms = period_ms.max(1);
        let mut slots: Vec<(i64, Vec<usize>)> = Vec::new();
        for i in 0..symbols {
            let offset = match phase {
                KlinePhase::Aligned => 0,
                // i < symbols, so the offset is below the period.
                KlinePhase::Spread => (i as i64).saturating_mul(period_ms) / symbols as i64,
            };
            match slots.last_mut() {
                Some((last, members)) if *last == offset => members.push(i),
                _ => slots.push((offset, vec![i])),
            }
        }
        if slots.is_empty() {
            slots.push((0, Vec::new()));
        }
        let mut schedule = KlineSchedule {
            period_ms,
            slots,
            period_start_ms: start_time_ms.div_euclid(period_ms) * period_ms,
            next_slot: 0,
        };
        // The first push comes strictly after the start, as every other timer's.
        while schedule.next_ms() <= start_time_ms {
            schedule.step();
        }
        schedule
    }

    fn next_ms(&self) -> i64 {
        self.period_start_ms + self.slots[self.next_slot].0
    }

    /// The symbols due at the next push; then moves to the one after.
    fn members(&self) -> &[usize] {
        &self.slots[self.next_slot].1
    }

    fn step(&mut self) {
        self.next_slot += 1;
        if self.next_slot == self.slots.len() {
            self.next_slot = 0;
            self.period_start_ms += self.period_ms;
        }
    }
}

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
        let symbols: Vec<SymbolMarket> = config
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
                )
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects owned copies of the events of the streams it wants.
    #[derive(Default)]
    struct Recorder {
        wanted: Vec<StreamId>,
        trades: Vec<TradeEvent>,
        aggs: Vec<AggTradeEvent>,
        klines: Vec<KlineEvent>,
        tickers: Vec<BookTickerEvent>,
        diffs: Vec<(u64, u64, i64)>,
        partials: usize,
    }

    impl Sink for Recorder {
        fn wants(&self, stream: StreamId) -> bool {
            self.wanted.contains(&stream)
        }
        fn emit(&mut self, _stream: StreamId, event: &Event<'_>) {
            match event {
                Event::Trade(t) => self.trades.push(**t),
                Event::AggTrade(a) => self.aggs.push(**a),
                Event::Kline(k) => self.klines.push(**k),
                Event::BookTicker(b) => self.tickers.push(**b),
                Event::DepthDiff(d) => {
                    self.diffs
                        .push((d.first_update_id, d.last_update_id, d.time_ns))
                }
                Event::PartialDepth(_) => self.partials += 1,
            }
        }
    }

    fn config(rate: f64) -> MarketConfig {
        MarketConfig {
            symbols: vec![
                Symbol::new("BTCUSDT").unwrap(),
                Symbol::new("ADAUSDT").unwrap(),
            ],
            seed: 42,
            trade_rate: rate,
            start_time_ms: 1_700_000_000_500,
            kline_push_ms: 2_000,
            kline_phase: KlinePhase::Aligned,
            history_limit: 10_000,
        }
    }

    fn all_streams(symbol_index: usize) -> Vec<StreamId> {
        (0..StreamKind::COUNT)
            .filter_map(StreamKind::from_index)
            .map(|k| StreamId::new(symbol_index, k))
            .collect()
    }

    /// Update pushes (not closes) of the 1m streams of every symbol: (time ms, symbol).
    fn update_pushes(
        phase: KlinePhase,
        symbols: usize,
        push_ms: i64,
        seconds: i64,
    ) -> Vec<(i64, usize)> {
        let cfg = MarketConfig {
            symbols: (0..symbols)
                .map(|i| Symbol::new(&format!("S{i:03}USDT")).unwrap())
                .collect(),
            kline_push_ms: push_ms,
            kline_phase: phase,
            ..config(1.0)
        };
        let mut market = Market::new(&cfg);
        let mut rec = Recorder {
            wanted: (0..symbols)
                .map(|i| StreamId::new(i, StreamKind::Kline(Interval::M1)))
                .collect(),
            ..Recorder::default()
        };
        market.advance_to((cfg.start_time_ms + seconds * 1_000) * NS_PER_MS, &mut rec);
        rec.klines
            .iter()
            .filter(|k| !k.closed)
            .map(|k| (k.time_ns / NS_PER_MS, k.symbol_index))
            .collect()
    }

    #[test]
    fn kline_pushes_align_or_spread_over_the_period() {
        // Aligned: every symbol pushes at the same multiples of the period.
        let aligned = update_pushes(KlinePhase::Aligned, 10, 100, 2);
        assert!(aligned.len() >= 10 * 15, "{}", aligned.len());
        for (t, _) in &aligned {
            assert_eq!(t % 100, 0, "{t}");
        }
        // Spread: symbol i pushes at i * period / n into each period, once per period.
        let spread = update_pushes(KlinePhase::Spread, 10, 100, 2);
        assert!(spread.len() >= 10 * 15, "{}", spread.len());
        for (t, i) in &spread {
            assert_eq!(t.rem_euclid(100), *i as i64 * 10, "symbol {i} at {t}");
        }
        let mut times: Vec<i64> = spread.iter().map(|(t, _)| *t).collect();
        times.dedup();
        assert_eq!(times.len(), spread.len(), "one symbol per instant");
        // Both push every symbol equally often (same rate, other timing).
        for i in 0..10 {
            let count = |v: &[(i64, usize)]| v.iter().filter(|(_, s)| *s == i).count() as i64;
            assert!((count(&aligned) - count(&spread)).abs() <= 1, "symbol {i}");
        }
        // More symbols than milliseconds in the period: they share instants, evenly.
        let shared = update_pushes(KlinePhase::Spread, 100, 10, 1);
        for (t, i) in &shared {
            assert_eq!(t.rem_euclid(10), *i as i64 / 10, "symbol {i} at {t}");
        }
        // The first push comes after the start, never at or before it.
        let start = config(1.0).start_time_ms;
        assert!(spread.iter().all(|(t, _)| *t > start));
    }

    #[test]
    fn klines_aggregate_the_trades_exactly() {
        let cfg = config(50.0);
        let mut market = Market::new(&cfg);
        let mut rec = Recorder {
            wanted: all_streams(0),
            ..Recorder::default()
        };
        // Three simulated minutes and a bit, advanced in uneven steps.
        let end = (cfg.start_time_ms + 185_000) * NS_PER_MS;
        let mut t = cfg.start_time_ms * NS_PER_MS;
        while t < end {
            t += 7_654_321;
            market.advance_to(t.min(end), &mut rec);
        }
        assert!(rec.trades.len() > 5_000);
        let spec = &market.symbols()[0].spec;
        for interval in [Interval::S1, Interval::M1, Interval::M3] {
            let closed: Vec<&KlineEvent> = rec
                .klines
                .iter()
                .filter(|k| k.interval == interval && k.closed)
                .collect();
            assert!(!closed.is_empty(), "{interval}");
            let mut previous_close = spec.initial_price;
            for k in &closed {
                let open = k.kline.open_time_ms * NS_PER_MS;
                let close = interval.next_open(k.kline.open_time_ms) * NS_PER_MS;
                assert_eq!(k.time_ns, close, "final push at the close");
                let inside: Vec<&TradeEvent> = rec
                    .trades
                    .iter()
                    .filter(|t| t.time_ns >= open && t.time_ns < close)
                    .collect();
                let mut expect = Kline::empty(interval, k.kline.open_time_ms, previous_close);
                for t in &inside {
                    expect.add_fill(&Fill {
                        price: t.price,
                        quantity: i128::from(t.qty),
                        quote: i128::from(t.price) * i128::from(t.qty) / i128::from(UNIT),
                        taker_is_buyer: !t.buyer_is_maker,
                        count: 1,
                        first_id: t.trade_id as i64,
                        last_id: t.trade_id as i64,
                    });
                }
                assert_eq!(
                    k.kline, expect,
                    "{interval} candle at {}",
                    k.kline.open_time_ms
                );
                previous_close = k.kline.close;
                // The closed candle is the one stored for REST.
                let stored = market.symbols()[0]
                    .series(interval)
                    .history()
                    .iter()
                    .find(|h| h.open_time_ms == k.kline.open_time_ms)
                    .copied();
                assert_eq!(stored, Some(k.kline));
            }
        }
        // Exactly one final push per candle, and no push of a candle after it closed.
        let mut finals = std::collections::HashSet::new();
        for k in rec.klines.iter().filter(|k| k.closed) {
            assert!(finals.insert((k.interval, k.kline.open_time_ms)));
        }
        for k in rec.klines.iter().filter(|k| !k.closed) {
            assert!(
                !finals.contains(&(k.interval, k.kline.open_time_ms)) || {
                    // An update may only precede the final one.
                    let final_pos = rec.klines.iter().position(|f| {
                        f.closed
                            && f.interval == k.interval
                            && f.kline.open_time_ms == k.kline.open_time_ms
                    });
                    let this_pos = rec.klines.iter().position(|f| std::ptr::eq(f, k));
                    this_pos < final_pos
                }
            );
        }
        // Kline updates come every 2 s of simulated time.
        let m1_updates: Vec<i64> = rec
            .klines
            .iter()
            .filter(|k| k.interval == Interval::M1 && !k.closed)
            .map(|k| k.time_ns / NS_PER_MS)
            .collect();
        assert!(m1_updates.iter().all(|t| t % 2_000 == 0));
        // aggTrades cover the trade ids without gaps or overlaps.
        let mut next = rec.aggs[0].first_trade_id;
        for a in &rec.aggs {
            assert_eq!(a.first_trade_id, next);
            let qty: i64 = rec
                .trades
                .iter()
                .filter(|t| t.trade_id >= a.first_trade_id && t.trade_id <= a.last_trade_id)
                .map(|t| t.qty)
                .sum();
            assert_eq!(qty, a.qty);
            next = a.last_trade_id + 1;
        }
        // Diff depth ids chain without gaps.
        let fast: Vec<_> = rec
            .diffs
            .iter()
            .filter(|d| d.2 % (1_000 * NS_PER_MS) != 0)
            .collect();
        assert!(fast.windows(2).all(|w| w[1].0 > w[0].1));
        assert!(rec.partials > 0 && !rec.tickers.is_empty());
    }

    #[test]
    fn candles_without_trades_repeat_the_previous_close() {
        // One trade every ~25 simulated seconds leaves most seconds empty.
        let cfg = config(0.1);
        let mut market = Market::new(&cfg);
        let s1 = StreamId::new(0, StreamKind::Kline(Interval::S1));
        let mut rec = Recorder {
            wanted: vec![s1],
            ..Recorder::default()
        };
        market.advance_to((cfg.start_time_ms + 120_000) * NS_PER_MS, &mut rec);
        let empties: Vec<&KlineEvent> = rec.klines.iter().filter(|k| k.kline.trades == 0).collect();
        assert!(empties.len() > 60);
        for pair in rec.klines.windows(2) {
            let (a, b) = (&pair[0].kline, &pair[1].kline);
            assert_eq!(b.open_time_ms, a.open_time_ms + 1_000, "contiguous candles");
            if b.trades == 0 {
                assert_eq!(
                    (b.open, b.high, b.low, b.close),
                    (a.close, a.close, a.close, a.close)
                );
                assert_eq!((b.volume, b.first_trade_id, b.last_trade_id), (0, -1, -1));
            }
        }
    }

    #[test]
    fn the_market_does_not_depend_on_subscribers_or_step_sizes() {
        let cfg = config(200.0);
        let end = (cfg.start_time_ms + 30_000) * NS_PER_MS;
        let mut quiet = Market::new(&cfg);
        quiet.advance_to(end, &mut NullSink);
        let mut busy = Market::new(&cfg);
        let mut rec = Recorder {
            wanted: all_streams(0).into_iter().chain(all_streams(1)).collect(),
            ..Recorder::default()
        };
        let mut t = cfg.start_time_ms * NS_PER_MS;
        while t < end {
            t += 1_234_567;
            busy.advance_to(t.min(end), &mut rec);
        }
        for i in 0..2 {
            let (a, b) = (&quiet.symbols()[i], &busy.symbols()[i]);
            assert_eq!(a.trades_total(), b.trades_total());
            assert_eq!(a.book().update_id(), b.book().update_id());
            for interval in Interval::ALL {
                assert_eq!(a.series(interval).history(), b.series(interval).history());
                assert_eq!(a.current_kline(interval), b.current_kline(interval));
            }
        }
        // The trade count follows the configured rate (200/s over 30 s).
        let n = quiet.symbols()[0].trades_total() as f64;
        assert!((5_000.0..7_000.0).contains(&n), "{n}");
    }

    #[test]
    fn prices_stay_on_the_tick_grid_and_in_the_band() {
        let cfg = config(5_000.0);
        let mut market = Market::new(&cfg);
        let mut rec = Recorder {
            wanted: vec![StreamId::new(1, StreamKind::Trade)],
            ..Recorder::default()
        };
        market.advance_to((cfg.start_time_ms + 20_000) * NS_PER_MS, &mut rec);
        let spec = &market.symbols()[1].spec;
        assert_eq!(spec.tick(), 10_000);
        for t in &rec.trades {
            assert_eq!(t.price % spec.tick(), 0);
            assert_eq!(t.qty % spec.step(), 0);
            assert!(t.qty > 0);
            assert!(t.price >= spec.initial_price / PRICE_BAND_FACTOR - spec.tick());
        }
    }

    #[test]
    fn calendar_candles_close_on_their_boundaries() {
        // 2024-01-31T23:58:00Z: a day, a month and (Monday 2024-02-05) no week ends here.
        let start = 1_706_745_480_000;
        let cfg = MarketConfig {
            start_time_ms: start,
            ..config(2.0)
        };
        let mut market = Market::new(&cfg);
        let wanted = [Interval::D1, Interval::Mo1, Interval::W1, Interval::H4]
            .iter()
            .map(|&i| StreamId::new(0, StreamKind::Kline(i)))
            .collect();
        let mut rec = Recorder {
            wanted,
            ..Recorder::default()
        };
        market.advance_to((start + 240_000) * NS_PER_MS, &mut rec);
        let closes: Vec<(Interval, i64, i64)> = rec
            .klines
            .iter()
            .filter(|k| k.closed)
            .map(|k| (k.interval, k.kline.open_time_ms, k.time_ns / NS_PER_MS))
            .collect();
        let feb_1 = 1_706_745_600_000;
        assert_eq!(
            closes,
            vec![
                (Interval::H4, feb_1 - 4 * 3_600_000, feb_1),
                (Interval::D1, feb_1 - 86_400_000, feb_1),
                (Interval::Mo1, 1_704_067_200_000, feb_1),
            ]
        );
        let month = market.symbols()[0].series(Interval::Mo1).history()[0];
        assert_eq!(month.close_time_ms, feb_1 - 1);
        assert!(month.trades > 0);
        assert_eq!(
            market.symbols()[0].current_kline(Interval::W1).open_time_ms,
            1_706_486_400_000
        );
    }

    #[test]
    fn symbol_specs_split_assets() {
        let spec = SymbolSpec::for_symbol(Symbol::new("BTCUSDT").unwrap());
        assert_eq!(
            (spec.base_asset.as_str(), spec.quote_asset.as_str()),
            ("BTC", "USDT")
        );
        assert_eq!(spec.tick(), 1_000_000);
        assert_eq!(spec.step(), 1_000);
        let spec = SymbolSpec::for_symbol(Symbol::new("LRCBTC").unwrap());
        assert_eq!(
            (spec.base_asset.as_str(), spec.quote_asset.as_str()),
            ("LRC", "BTC")
        );
        assert!(spec.price_decimals + spec.qty_decimals <= UNIT_SCALE);
    }
}
