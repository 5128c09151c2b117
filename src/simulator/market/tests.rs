//! Tests of the market model.

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
        history_candles: 0,
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
    // The raw trades kept for REST are the ones the stream sent, field for field: the
    // newest, a page from an id, and nothing past the newest.
    let kept = &market.symbols()[0];
    let newest = rec.trades.last().unwrap().trade_id;
    assert_eq!(
        kept.trades(None, 50).as_slice(),
        &rec.trades[rec.trades.len() - 50..]
    );
    let from = rec.trades[10].trade_id;
    assert_eq!(kept.trades(Some(from), 7).as_slice(), &rec.trades[10..17]);
    assert!(kept.trades(Some(newest + 1), 10).is_empty());
    assert_eq!(kept.trades(Some(newest), 10).len(), 1);
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

/// A seeded past is only a past: the live trades and every candle that opens after the
/// start are the same with or without it; the candle open at the start carries the
/// past's part of its period, and REST's history reaches back without a hole.
#[test]
fn a_seeded_past_changes_nothing_live() {
    let plain = config(5.0);
    let seeded = MarketConfig {
        history_candles: 500,
        ..config(5.0)
    };
    let (mut a, mut b) = (Market::new(&plain), Market::new(&seeded));
    let until = (plain.start_time_ms + 300_000) * 1_000_000;
    a.advance_to(until, &mut NullSink);
    b.advance_to(until, &mut NullSink);
    for (x, y) in a.symbols().iter().zip(b.symbols()) {
        assert_eq!(x.trades_total(), y.trades_total());
        let (live, past) = (
            x.series(Interval::M1).history(),
            y.series(Interval::M1).history(),
        );
        assert_eq!(past.len(), 500 + live.len());
        let start_minute = Interval::M1.open_time(plain.start_time_ms);
        for (l, p) in live.iter().zip(past.iter().skip(500)) {
            assert_eq!(l.open_time_ms, p.open_time_ms);
            if l.open_time_ms > start_minute {
                assert_eq!(l, p, "a live candle after the start");
            } else {
                assert!(
                    p.trades > l.trades,
                    "the open candle carries the past's part"
                );
                assert_eq!(p.close, l.close);
            }
        }
        for pair in past.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(
                Interval::M1.next_open(pair[0].open_time_ms),
                pair[1].open_time_ms
            );
        }
        assert_eq!(y.series(Interval::H1).history().len(), 500);
    }
}
