//! `alphapulse bench parse`: nanoseconds per message for our frame parser and for a
//! serde_json typed baseline, measured side by side in the same run.
//!
//! Runs on: the calling thread (a command-line tool, no engine). Owns: one [`Parser`] and
//! one work buffer per measurement. In: the arguments. Out: one JSON object on stdout.
//!
//! Our parser is measured twice: as the engine runs it (its fast path takes Binance's
//! own layouts) and with the fast path off (every frame through simd-json).
//!
//! How it measures: simd-json rewrites its input, so every iteration first copies the
//! original frame into a reusable work buffer; both parsers pay that copy, and its cost
//! is also measured alone (`copy_ns`). Results go through [`black_box`]. Each figure is
//! the median of several repetitions, with ours and the baseline interleaved so that a
//! slow moment of the machine hits both.
//!
//! The baseline is what a careful serde user would write: `serde_json::from_slice` into
//! `#[derive(Deserialize)]` structs of the exact event type (no dispatch on `e`), keys
//! and strings borrowed, prices through `rust_decimal::serde::str`, then turned into the
//! same records ([`Candle`], [`Trade`], …) with the same time units. Depth levels land in
//! a `Vec`, as derived serde has no other place to put them. Before timing, each case
//! checks that the baseline and both of our paths produce equal values, and that the
//! fast-path figure is really the fast path's.

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::market::{AggTrade, BookTicker, Candle, Decimal, Interval, Level, Symbol, Trade};
use crate::wire::{Event, Message, Parser, TimeUnit};

/// The issue's goal for a combined kline frame.
const TARGET_KLINE_NS: f64 = 250.0;
/// The issue's goal for the speedup over serde_json on a combined kline frame.
const TARGET_SPEEDUP: f64 = 2.0;

#[derive(Debug, Clone, clap::Args)]
pub struct ParseBenchArgs {
    /// Messages parsed per repetition of each measurement.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repetitions: u32,
}

/// One benchmarked frame shape; every frame is a combined-stream frame, as the engine
/// receives them on `/stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Kline,
    Trade,
    AggTrade,
    BookTicker,
    DepthUpdate,
    PartialDepth,
}

/// Levels per side of the partial-depth frame (`@depth20`, the largest Binance offers).
const PARTIAL_DEPTH_LEVELS: usize = 20;

impl Case {
    pub const ALL: [Case; 6] = [
        Case::Kline,
        Case::Trade,
        Case::AggTrade,
        Case::BookTicker,
        Case::DepthUpdate,
        Case::PartialDepth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Kline => "kline_combined",
            Case::Trade => "trade_combined",
            Case::AggTrade => "agg_trade_combined",
            Case::BookTicker => "book_ticker_combined",
            Case::DepthUpdate => "depth_update_combined",
            Case::PartialDepth => "partial_depth_combined",
        }
    }

    /// The frame: real Binance frames (from the 2021 spot capture where it has one).
    pub fn frame(self) -> Vec<u8> {
        match self {
            Case::Kline => br#"{"stream":"nknusdt@kline_1m","data":{"e":"kline","E":1633998523963,"s":"NKNUSDT","k":{"t":1633998480000,"T":1633998539999,"s":"NKNUSDT","i":"1m","f":19862761,"L":19862790,"o":"0.35270000","c":"0.35280000","h":"0.35280000","l":"0.35220000","v":"25877.00000000","n":30,"x":false,"q":"9116.04600000","V":"58.00000000","Q":"20.46240000","B":"0"}}}"#.to_vec(),
            Case::Trade => br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":2436580213,"p":"16541.77000000","q":"0.00460000","T":1672515782136,"m":true,"M":true}}"#.to_vec(),
            Case::AggTrade => br#"{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}}"#.to_vec(),
            Case::BookTicker => br#"{"stream":"nknusdt@bookTicker","data":{"u":499869768,"s":"NKNUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}}"#.to_vec(),
            Case::DepthUpdate => br#"{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998513369,"s":"NKNUSDT","U":499869765,"u":499869767,"b":[["0.35120000","6567.00000000"],["0.35080000","8246.00000000"]],"a":[["0.35340000","0.00000000"]]}}"#.to_vec(),
            Case::PartialDepth => partial_depth_frame(),
        }
    }
}

/// A `btcusdt@depth20@100ms` frame with realistic prices and quantities.
fn partial_depth_frame() -> Vec<u8> {
    let side = |base_cents: i64, step: i64| {
        (0..PARTIAL_DEPTH_LEVELS as i64)
            .map(|i| {
                let cents = base_cents + step * i;
                let qty = 0.00041 + 0.173 * i as f64;
                format!(r#"["{}.{:02}000000","{qty:.8}"]"#, cents / 100, cents % 100)
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"stream":"btcusdt@depth20@100ms","data":{{"lastUpdateId":31457280519,"bids":[{}],"asks":[{}]}}}}"#,
        side(1_654_177, -1),
        side(1_654_178, 1)
    )
    .into_bytes()
}

/// The figures for one case, in nanoseconds per message.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub case: &'static str,
    pub frame_bytes: usize,
    /// Copying the frame into the work buffer alone (included in the two figures below).
    pub copy_ns: f64,
    /// Our parser as the engine runs it (the fast path takes Binance's layouts).
    pub alphapulse_ns: f64,
    /// Our parser with the fast path off: every frame through simd-json.
    pub alphapulse_general_ns: f64,
    pub serde_json_ns: f64,
    /// `serde_json_ns / alphapulse_ns`.
    pub speedup: f64,
    /// `serde_json_ns / alphapulse_general_ns`.
    pub general_speedup: f64,
    /// The fastest repetition of each, for a machine that is not quiet: other work on
    /// the core only ever adds time.
    pub alphapulse_min_ns: f64,
    pub serde_json_min_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub case: &'static str,
    pub max_ns: f64,
    pub min_speedup: f64,
    pub met: bool,
}

/// The one JSON object `bench parse` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ParseBenchReport {
    pub bench: &'static str,
    pub unit: &'static str,
    pub iterations: u64,
    pub repetitions: u32,
    pub statistic: &'static str,
    /// Which simd-json kernel the CPU selected (AVX2, SSE42, …).
    pub simd_json_implementation: String,
    pub cases: Vec<CaseReport>,
    pub target: TargetReport,
}

pub fn run(args: ParseBenchArgs) -> anyhow::Result<()> {
    let report = report(&args)?;
    // Written rather than printed, so that a closed stdout is an error, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    Ok(())
}

/// Measures every case.
pub fn report(args: &ParseBenchArgs) -> anyhow::Result<ParseBenchReport> {
    let cases = Case::ALL
        .iter()
        .map(|&case| measure_case(case, args.iterations, args.repetitions))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kline = cases
        .iter()
        .find(|c| c.case == Case::Kline.name())
        .context("the kline case is always measured")?;
    let target = TargetReport {
        case: Case::Kline.name(),
        max_ns: TARGET_KLINE_NS,
        min_speedup: TARGET_SPEEDUP,
        met: kline.alphapulse_ns <= TARGET_KLINE_NS && kline.speedup >= TARGET_SPEEDUP,
    };
    Ok(ParseBenchReport {
        bench: "parse",
        unit: "ns_per_message",
        iterations: args.iterations,
        repetitions: args.repetitions,
        statistic: "median",
        simd_json_implementation: simd_json::Deserializer::algorithm().to_string(),
        cases,
        target,
    })
}

/// Checks that both parsers agree on the case's frame, then measures it.
pub fn measure_case(case: Case, iterations: u64, repetitions: u32) -> anyhow::Result<CaseReport> {
    let frame = case.frame();
    check_agreement(case, &frame)?;
    // One short untimed round warms caches, branch predictors and the parser's scratch.
    let warm_up = (iterations / 10).max(1);
    measure_ours(&frame, warm_up, true);
    measure_ours(&frame, warm_up, false);
    measure_serde_json(case, &frame, warm_up);

    let (mut copy, mut ours, mut general, mut baseline) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repetitions {
        copy.push(measure_copy(&frame, iterations));
        ours.push(measure_ours(&frame, iterations, true));
        general.push(measure_ours(&frame, iterations, false));
        baseline.push(measure_serde_json(case, &frame, iterations));
    }
    let (alphapulse_ns, serde_json_ns) = (median(&mut ours), median(&mut baseline));
    let alphapulse_general_ns = median(&mut general);
    Ok(CaseReport {
        case: case.name(),
        frame_bytes: frame.len(),
        copy_ns: median(&mut copy),
        alphapulse_ns,
        alphapulse_general_ns,
        serde_json_ns,
        speedup: serde_json_ns / alphapulse_ns,
        general_speedup: serde_json_ns / alphapulse_general_ns,
        // `median` sorted the samples.
        alphapulse_min_ns: ours.first().copied().unwrap_or(f64::NAN),
        serde_json_min_ns: baseline.first().copied().unwrap_or(f64::NAN),
    })
}

/// Nanoseconds per message to copy `frame` into the work buffer.
pub fn measure_copy(frame: &[u8], iterations: u64) -> f64 {
    time_per_message(frame, iterations, |work| {
        black_box(work);
    })
}

/// Nanoseconds per message for [`Parser::parse`], frame copy included; `fast_path`
/// false sends every frame through simd-json.
pub fn measure_ours(frame: &[u8], iterations: u64, fast_path: bool) -> f64 {
    let mut parser = Parser::new(TimeUnit::Millisecond);
    parser.set_fast_path(fast_path);
    time_per_message(frame, iterations, |work| {
        let _ = black_box(parser.parse(work));
    })
}

/// Nanoseconds per message for the serde_json typed baseline, frame copy included.
pub fn measure_serde_json(case: Case, frame: &[u8], iterations: u64) -> f64 {
    // One loop per type, so that the baseline pays no dispatch inside the loop.
    match case {
        Case::Kline => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::kline(work));
        }),
        Case::Trade => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::trade(work));
        }),
        Case::AggTrade => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::agg_trade(work));
        }),
        Case::BookTicker => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::book_ticker(work));
        }),
        Case::DepthUpdate => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::depth_update(work));
        }),
        Case::PartialDepth => time_per_message(frame, iterations, |work| {
            let _ = black_box(baseline::partial_depth(work));
        }),
    }
}

fn time_per_message(frame: &[u8], iterations: u64, mut step: impl FnMut(&mut [u8])) -> f64 {
    let mut work = frame.to_vec();
    let start = Instant::now();
    for _ in 0..iterations {
        work.copy_from_slice(black_box(frame));
        step(black_box(&mut work));
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Decodes the frame with both parsers and fails unless they produce the same values.
pub fn check_agreement(case: Case, frame: &[u8]) -> anyhow::Result<()> {
    for fast_path in [true, false] {
        check_agreement_on_path(case, frame, fast_path)?;
    }
    Ok(())
}

fn check_agreement_on_path(case: Case, frame: &[u8], fast_path: bool) -> anyhow::Result<()> {
    let mut parser = Parser::new(TimeUnit::Millisecond);
    parser.set_fast_path(fast_path);
    let mut work = frame.to_vec();
    let ours = parser
        .parse(&mut work)
        .with_context(|| format!("{}: our parser rejected the frame", case.name()))?;
    let Message::Event {
        stream: Some(stream),
        event,
    } = ours
    else {
        bail!("{}: not a combined-stream event: {ours:?}", case.name());
    };
    let same = match (case, &event) {
        (Case::Kline, Event::Kline(c)) => baseline::kline(frame)? == (stream, *c),
        (Case::Trade, Event::Trade(t)) => baseline::trade(frame)? == (stream, *t),
        (Case::AggTrade, Event::AggTrade(t)) => baseline::agg_trade(frame)? == (stream, *t),
        (Case::BookTicker, Event::BookTicker(b)) => baseline::book_ticker(frame)? == (stream, *b),
        (Case::DepthUpdate, Event::DepthUpdate(d)) => {
            let (s, base) = baseline::depth_update(frame)?;
            s == stream
                && base.symbol == d.symbol
                && base.event_time_us == d.event_time_us
                && base.first_update_id == d.first_update_id
                && base.final_update_id == d.final_update_id
                && same_levels(&base.bids, d.bids)
                && same_levels(&base.asks, d.asks)
        }
        (Case::PartialDepth, Event::PartialDepth(d)) => {
            let (s, base) = baseline::partial_depth(frame)?;
            s == stream
                && base.last_update_id == d.last_update_id
                && same_levels(&base.bids, d.bids)
                && same_levels(&base.asks, d.asks)
        }
        _ => false,
    };
    if !same {
        bail!("{}: serde_json and our parser disagree", case.name());
    }
    // The figure labelled as the fast path must be the fast path's.
    let fast_frames = parser.stats.fast_path_frames;
    if fast_frames != u64::from(fast_path) {
        bail!(
            "{}: fast path on: {fast_path}, frames it took: {fast_frames}",
            case.name()
        );
    }
    Ok(())
}

/// Equal values and equal scales (`Decimal`'s `==` ignores the scale).
fn same_levels(base: &[baseline::WireLevel], ours: &[Level]) -> bool {
    let same = |a: Decimal, b: Decimal| a == b && a.scale() == b.scale();
    base.len() == ours.len()
        && base
            .iter()
            .zip(ours)
            .all(|(b, o)| same(b.0, o.price) && same(b.1, o.quantity))
}

/// The serde_json typed decoders.
pub mod baseline {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    pub enum BaselineError {
        #[error(transparent)]
        Json(#[from] serde_json::Error),
        #[error("field `{0}` is invalid")]
        Invalid(&'static str),
    }

    type Result<T> = std::result::Result<T, BaselineError>;

    #[derive(Deserialize)]
    struct Combined<'a, T> {
        stream: &'a str,
        data: T,
    }

    #[derive(Deserialize)]
    struct KlineEvent<'a> {
        e: &'a str,
        #[serde(rename = "E")]
        event_time: i64,
        s: &'a str,
        k: KlineBody<'a>,
    }

    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct KlineBody<'a> {
        t: i64,
        T: i64,
        i: &'a str,
        f: i64,
        L: i64,
        #[serde(with = "rust_decimal::serde::str")]
        o: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        c: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        h: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        l: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        v: Decimal,
        n: u64,
        x: bool,
        #[serde(with = "rust_decimal::serde::str")]
        q: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        V: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        Q: Decimal,
    }

    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct TradeEvent<'a> {
        e: &'a str,
        E: i64,
        s: &'a str,
        t: u64,
        #[serde(with = "rust_decimal::serde::str")]
        p: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        q: Decimal,
        T: i64,
        m: bool,
    }

    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct AggTradeEvent<'a> {
        e: &'a str,
        E: i64,
        s: &'a str,
        a: u64,
        #[serde(with = "rust_decimal::serde::str")]
        p: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        q: Decimal,
        f: u64,
        l: u64,
        T: i64,
        m: bool,
    }

    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct BookTickerEvent<'a> {
        u: u64,
        s: &'a str,
        #[serde(with = "rust_decimal::serde::str")]
        b: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        B: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        a: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        A: Decimal,
    }

    /// One `["price","qty"]` pair.
    #[derive(Debug, Deserialize)]
    pub struct WireLevel(
        #[serde(with = "rust_decimal::serde::str")] pub Decimal,
        #[serde(with = "rust_decimal::serde::str")] pub Decimal,
    );

    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct DepthEvent<'a> {
        e: &'a str,
        E: i64,
        s: &'a str,
        U: u64,
        u: u64,
        b: Vec<WireLevel>,
        a: Vec<WireLevel>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PartialDepthEvent {
        last_update_id: u64,
        bids: Vec<WireLevel>,
        asks: Vec<WireLevel>,
    }

    /// A diff-depth update as the baseline decodes it.
    pub struct Depth {
        pub symbol: Symbol,
        pub event_time_us: i64,
        pub first_update_id: u64,
        pub final_update_id: u64,
        pub bids: Vec<WireLevel>,
        pub asks: Vec<WireLevel>,
    }

    /// A partial book as the baseline decodes it.
    pub struct Book {
        pub last_update_id: u64,
        pub bids: Vec<WireLevel>,
        pub asks: Vec<WireLevel>,
    }

    fn symbol(text: &str) -> Result<Symbol> {
        Symbol::new(text).map_err(|_| BaselineError::Invalid("s"))
    }

    fn event_type(found: &str, expected: &'static str) -> Result<()> {
        if found == expected {
            Ok(())
        } else {
            Err(BaselineError::Invalid("e"))
        }
    }

    fn event_time_us(ms: i64) -> Result<i64> {
        ms.checked_mul(1000).ok_or(BaselineError::Invalid("E"))
    }

    pub fn kline(frame: &[u8]) -> Result<(&str, Candle)> {
        let Combined { stream, data } = serde_json::from_slice::<Combined<KlineEvent>>(frame)?;
        event_type(data.e, "kline")?;
        let k = data.k;
        let interval = Interval::parse(k.i).map_err(|_| BaselineError::Invalid("i"))?;
        Ok((
            stream,
            Candle {
                symbol: symbol(data.s)?,
                interval,
                open_time_ms: k.t,
                close_time_ms: k.T,
                open: k.o,
                high: k.h,
                low: k.l,
                close: k.c,
                volume: k.v,
                quote_volume: k.q,
                taker_buy_base: k.V,
                taker_buy_quote: k.Q,
                trades: k.n,
                first_trade_id: k.f,
                last_trade_id: k.L,
                closed: k.x,
                event_time_us: event_time_us(data.event_time)?,
            },
        ))
    }

    pub fn trade(frame: &[u8]) -> Result<(&str, Trade)> {
        let Combined { stream, data } = serde_json::from_slice::<Combined<TradeEvent>>(frame)?;
        event_type(data.e, "trade")?;
        Ok((
            stream,
            Trade {
                symbol: symbol(data.s)?,
                trade_id: data.t,
                price: data.p,
                quantity: data.q,
                trade_time_ms: data.T,
                buyer_is_maker: data.m,
                event_time_us: event_time_us(data.E)?,
            },
        ))
    }

    pub fn agg_trade(frame: &[u8]) -> Result<(&str, AggTrade)> {
        let Combined { stream, data } = serde_json::from_slice::<Combined<AggTradeEvent>>(frame)?;
        event_type(data.e, "aggTrade")?;
        Ok((
            stream,
            AggTrade {
                symbol: symbol(data.s)?,
                agg_trade_id: data.a,
                price: data.p,
                quantity: data.q,
                first_trade_id: data.f,
                last_trade_id: data.l,
                trade_time_ms: data.T,
                buyer_is_maker: data.m,
                event_time_us: event_time_us(data.E)?,
            },
        ))
    }

    pub fn book_ticker(frame: &[u8]) -> Result<(&str, BookTicker)> {
        let Combined { stream, data } = serde_json::from_slice::<Combined<BookTickerEvent>>(frame)?;
        Ok((
            stream,
            BookTicker {
                symbol: symbol(data.s)?,
                update_id: data.u,
                bid_price: data.b,
                bid_qty: data.B,
                ask_price: data.a,
                ask_qty: data.A,
            },
        ))
    }

    pub fn depth_update(frame: &[u8]) -> Result<(&str, Depth)> {
        let Combined { stream, data } = serde_json::from_slice::<Combined<DepthEvent>>(frame)?;
        event_type(data.e, "depthUpdate")?;
        Ok((
            stream,
            Depth {
                symbol: symbol(data.s)?,
                event_time_us: event_time_us(data.E)?,
                first_update_id: data.U,
                final_update_id: data.u,
                bids: data.b,
                asks: data.a,
            },
        ))
    }

    pub fn partial_depth(frame: &[u8]) -> Result<(&str, Book)> {
        let Combined { stream, data } =
            serde_json::from_slice::<Combined<PartialDepthEvent>>(frame)?;
        Ok((
            stream,
            Book {
                last_update_id: data.last_update_id,
                bids: data.bids,
                asks: data.asks,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parsers_agree_on_every_case() {
        for case in Case::ALL {
            if let Err(e) = check_agreement(case, &case.frame()) {
                panic!("{e:#}");
            }
        }
    }

    #[test]
    fn the_partial_depth_frame_has_twenty_levels_a_side() {
        let mut parser = Parser::new(TimeUnit::Millisecond);
        let mut frame = Case::PartialDepth.frame();
        let Ok(Message::Event {
            event: Event::PartialDepth(book),
            ..
        }) = parser.parse(&mut frame)
        else {
            panic!("partial depth frame did not parse");
        };
        assert_eq!(book.bids.len(), PARTIAL_DEPTH_LEVELS);
        assert_eq!(book.asks.len(), PARTIAL_DEPTH_LEVELS);
        assert_eq!(book.bids[0].price.to_string(), "16541.77000000");
        assert_eq!(book.asks[1].price.to_string(), "16541.79000000");
    }

    #[test]
    fn arguments_parse_with_defaults_and_limits() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ParseBenchArgs,
        }
        use clap::Parser as _;
        let defaults = Cli::try_parse_from(["bench"]).map(|c| c.args);
        assert!(matches!(
            defaults,
            Ok(ParseBenchArgs {
                iterations: 100_000,
                repetitions: 7
            })
        ));
        let set = Cli::try_parse_from(["bench", "--iterations", "5", "--repetitions", "3"]);
        assert!(matches!(
            set.map(|c| c.args),
            Ok(ParseBenchArgs {
                iterations: 5,
                repetitions: 3
            })
        ));
        assert!(Cli::try_parse_from(["bench", "--iterations", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--repetitions", "0"]).is_err());
    }

    #[test]
    fn report_is_one_json_object_with_every_case() {
        let args = ParseBenchArgs {
            iterations: 20,
            repetitions: 3,
        };
        let report = report(&args).unwrap_or_else(|e| panic!("{e:#}"));
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&report).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(json["bench"], "parse");
        assert_eq!(json["unit"], "ns_per_message");
        assert_eq!(json["iterations"], 20);
        assert_eq!(json["repetitions"], 3);
        let cases = json["cases"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = cases.iter().filter_map(|c| c["case"].as_str()).collect();
        assert_eq!(names, Case::ALL.map(Case::name));
        for case in &cases {
            for key in [
                "copy_ns",
                "alphapulse_ns",
                "alphapulse_general_ns",
                "serde_json_ns",
                "speedup",
                "general_speedup",
                "alphapulse_min_ns",
                "serde_json_min_ns",
            ] {
                let value = case[key].as_f64().unwrap_or(-1.0);
                assert!(value.is_finite() && value > 0.0, "{key} in {case}");
            }
            assert!(case["frame_bytes"].as_u64().unwrap_or(0) > 100);
        }
        assert_eq!(json["target"]["case"], "kline_combined");
        assert!(json["target"]["met"].is_boolean());
        assert!(!json["simd_json_implementation"]
            .as_str()
            .unwrap_or("")
            .is_empty());
    }
}
