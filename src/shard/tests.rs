use super::*;
use crate::clock::Skew;
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
        if s.flush(0) == 0 && rx.view().depth() == 0 {
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
    assert_eq!(s.flush(0), 4);
    let mut slow = Vec::new();
    for _ in 0..10 {
        while let Some(e) = slow_rx.pop() {
            slow.push(e.record);
        }
        s.flush(0);
    }
    let opens: Vec<i64> = slow
        .iter()
        .filter_map(|r| match r {
            Record::ClosedCandle(c) => Some(c.open_time_ms / 60_000),
            _ => None,
        })
        .collect();
    assert_eq!(opens, [0, 1, 2, 3, 4]);
    assert_eq!(s.flush(0), 0);
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

// ---- Timers, driven by the `now_ns` the caller passes (no sleeps, no clock) ----

use super::rest::RETRY_FAILED_AFTER_NS;
use crate::message::rest::{Request, RestBatch, ShardLink, TradeKind, Want};
use crate::signals::params::SignalsConfig;

fn btc() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

/// The closed 1m BTCUSDT candle of minute `minute`.
fn closed(minute: i64) -> Candle {
    let open = minute * 60_000;
    crate::market::testing::candle("BTCUSDT", open, open * 1000 + 1, true)
}

/// A shard linked to a REST thread that the test plays, with signals on or off.
fn linked(signals: bool) -> (ShardState, crate::ring::Consumer<Envelope>, ShardLink) {
    let (tx, rx) = ring("t", 1024);
    let link = ShardLink::default();
    let stats = Arc::new(ShardStats::default());
    let mut s = ShardState::new(0, &[btc()], &[Interval::M1], vec![tx], stats);
    if signals {
        s = s.with_signals(&SignalsConfig::default());
    }
    (s.with_rest(link.clone()), rx, link)
}

fn answer(want: Want, candles: Vec<Candle>, failed: bool) -> RestBatch {
    RestBatch {
        request: Request {
            symbol: btc(),
            interval: Interval::M1,
            want,
        },
        candles,
        agg_trades: vec![],
        trades: Vec::new(),
        absent: vec![],
        failed,
    }
}

fn signals_last_open(s: &ShardState) -> Option<i64> {
    s.signal_engine(btc(), Interval::M1).unwrap().last_open_ms()
}

#[test]
fn a_held_candle_is_released_exactly_when_its_hold_expires() {
    let hold = std::time::Duration::from_secs(10);
    let hold_ns = hold.as_nanos() as u64;
    let (mut s, _rx, link) = linked(true);
    s.set_hold(hold);
    let warm = Want::Warm {
        candles: 3,
        end_open_ms: None,
    };
    s.apply_rest(&answer(warm, (0..3).map(closed).collect(), false), 1_000);
    assert_eq!(signals_last_open(&s), Some(2 * 60_000));
    // Nothing held: the periodic flush has no deadline to keep.
    assert!(!s.has_timed_work());
    // Minute 5 arrives live at t0: 3 and 4 are missing, asked for, and 5 waits.
    let t0 = 5_000_000_000;
    s.on_event(&Event::Kline(closed(5)), t0);
    assert!(link.requests.pop().is_some(), "the hole is asked for");
    assert!(s.has_timed_work(), "a hold time runs");
    // A later candle joins the wait without restarting its clock.
    s.on_event(&Event::Kline(closed(6)), t0 + hold_ns / 2);
    s.flush(t0 + hold_ns - 1);
    assert_eq!(signals_last_open(&s), Some(2 * 60_000), "still held");
    assert_eq!(s.stats().signal_holes_bridged.get(), 0);
    s.flush(t0 + hold_ns);
    assert_eq!(
        signals_last_open(&s),
        Some(6 * 60_000),
        "released at the hold's end"
    );
    assert_eq!(s.stats().signal_holes_bridged.get(), 1);
    assert!(!s.has_timed_work(), "nothing held any more");
}

#[test]
fn a_failed_gap_request_is_retried_after_the_retry_time_and_not_before() {
    let (mut s, _rx, link) = linked(false);
    s.on_event(&Event::Kline(closed(0)), 1);
    s.on_event(&Event::Kline(closed(3)), 2);
    let req = link.requests.pop().expect("the gap is asked for");
    let range = Want::Range {
        from_open_ms: 60_000,
        to_open_ms: Some(180_000),
    };
    assert_eq!(req.want, range);
    let failed_at = 7_000_000_000;
    assert!(!s.has_timed_work());
    s.apply_rest(&answer(req.want, vec![], true), failed_at);
    assert_eq!(s.stats().backfill_failures.get(), 1);
    assert!(s.has_timed_work(), "a retry is due");
    s.flush(failed_at + RETRY_FAILED_AFTER_NS - 1);
    assert!(link.requests.pop().is_none(), "not before the retry time");
    s.flush(failed_at + RETRY_FAILED_AFTER_NS);
    let again = link.requests.pop().expect("asked again at the retry time");
    assert_eq!(again.want, range);
    s.flush(failed_at + 2 * RETRY_FAILED_AFTER_NS);
    assert!(link.requests.pop().is_none(), "asked once per failure");
}

#[test]
fn an_outage_is_stamped_with_the_callers_time_and_asks_for_what_it_hid() {
    let (mut s, rx, link) = linked(false);
    s.on_event(&Event::Kline(closed(0)), 1);
    // The connection was down from minute 0 until minute 4 (event times in µs).
    s.record_outage(2, 60_000_000, 4 * 60_000_000 + 5, 42);
    let outage = std::iter::from_fn(|| rx.pop())
        .find(|e| matches!(e.record, Record::Outage(_)))
        .expect("the outage is recorded");
    assert_eq!((outage.recv_ns, outage.parsed_ns), (42, 42));
    let req = link
        .requests
        .pop()
        .expect("the hidden candles are asked for");
    assert_eq!(
        req.want,
        Want::Range {
            from_open_ms: 60_000,
            to_open_ms: Some(4 * 60_000)
        }
    );
}

#[test]
fn events_far_from_our_clock_are_counted_and_dropped() {
    let (tx, rx) = ring("t", 64);
    let stats = Arc::new(ShardStats::default());
    let sym = [Symbol::new("BTCUSDT").unwrap()];
    let mut s = ShardState::new(0, &sym, &[Interval::M1], vec![tx], stats.clone());
    // Our wall clock reads NOW at the receive time: both injected, nothing sleeps.
    const NOW_MS: i64 = 1_764_900_000_000; // on the minute
    let recv_ns: u64 = 7_000_000_000;
    let bound = ClockBound {
        max_skew_ms: 60_000,
        speed: 1.0,
        since_mono_ns: 0,
    };
    s.set_clock_bound(bound, NOW_MS * 1000 - (recv_ns / 1000) as i64);
    let at = |open: i64, event_ms: i64, closed: bool| {
        Event::Kline(crate::market::testing::candle(
            "BTCUSDT",
            open,
            event_ms * 1000,
            closed,
        ))
    };
    let m = 60_000;
    s.on_event(&at(NOW_MS - 2 * m, NOW_MS - m, true), recv_ns);
    // A close in 2100 and one in 1970, each with its own event time.
    let y2100 = 4_102_444_800_000;
    s.on_event(&at(y2100, y2100 + m, true), recv_ns);
    s.on_event(&at(0, m, true), recv_ns);
    // A trade stamped in 2100 is dropped too.
    let trade = Event::Trade(crate::market::Trade {
        symbol: sym[0],
        trade_id: 9,
        price: crate::market::Decimal::new(1, 0),
        quantity: crate::market::Decimal::new(1, 0),
        trade_time_ms: y2100,
        buyer_is_maker: false,
        event_time_us: y2100 * 1000,
    });
    s.on_event(&trade, recv_ns);
    assert_eq!(stats.clock_skew_drops[Skew::Future as usize].get(), 2);
    assert_eq!(stats.clock_skew_drops[Skew::Past as usize].get(), 1);
    assert_eq!(
        stats.trades.get(),
        0,
        "the dropped trade is not counted as one"
    );
    assert_eq!(stats.klines.get(), 1);
    // The series is untouched: the next close follows the first with no gap.
    s.on_event(&at(NOW_MS - m, NOW_MS, true), recv_ns);
    let track = s.track(sym[0], Interval::M1).unwrap();
    assert_eq!(track.first_closed_open_ms(), Some(NOW_MS - 2 * m));
    assert_eq!(track.last_closed_open_ms(), Some(NOW_MS - m));
    assert!(track.open_gaps().is_empty());
    let closed: Vec<i64> = std::iter::from_fn(|| rx.pop())
        .filter_map(|e| match e.record {
            Record::ClosedCandle(c) => Some(c.open_time_ms),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![NOW_MS - 2 * m, NOW_MS - m]);
    // The bound follows the receive time: a minute later the same close is in range.
    let later_ns = recv_ns + 61_000_000_000;
    s.on_event(&at(NOW_MS, NOW_MS + 2 * m, true), recv_ns);
    assert_eq!(stats.clock_skew_drops[Skew::Future as usize].get(), 3);
    s.on_event(&at(NOW_MS, NOW_MS + 2 * m, true), later_ns);
    assert_eq!(stats.candles_closed.get(), 3);
}

#[test]
fn rest_deliveries_wait_while_the_outlets_are_near_their_bound() {
    let (tx, rx) = ring("t", 1);
    let link = ShardLink::default();
    let stats = Arc::new(ShardStats::default());
    let s = ShardState::new(0, &[btc()], &[Interval::M1], vec![tx], stats.clone());
    let mut s = s.with_rest(link.clone());
    // The sink stalls: closed candles wait on the shard until less than a delivery's
    // room is left under the bound.
    let waiting = outlet::MAX_OVERFLOW - rest::DELIVERY_ROOM + 1;
    for m in 0..=waiting as i64 {
        s.on_event(&Event::Kline(closed(m)), 1);
    }
    assert_eq!(stats.overflow_depth.get(), waiting as u64);
    let range = Want::Range {
        from_open_ms: 0,
        to_open_ms: None,
    };
    let later: Vec<Candle> = (0..1000).map(|m| closed(200_000 + m)).collect();
    link.deliveries
        .push(answer(range, later, false))
        .map_err(drop)
        .expect("queued");
    assert!(!s.rest_deliveries_ready());
    assert_eq!(s.apply_rest_deliveries(2), 0, "held back, not dropped");
    assert_eq!(link.deliveries.len(), 1);
    // The sink drains: the delivery goes through, and the bound was never passed.
    for _ in 0..100_000 {
        while rx.pop().is_some() {}
        if s.flush(3) == 0 {
            break;
        }
    }
    assert!(s.rest_deliveries_ready());
    assert_eq!(s.apply_rest_deliveries(4), 1);
    assert!(link.deliveries.is_empty());
    assert!(stats.overflow_depth.get() as usize <= outlet::MAX_OVERFLOW);
    assert_eq!(stats.backfill_candles.get(), 1000);
}

#[test]
fn a_book_synchronises_through_the_rest_link_publishes_and_feeds_its_signals() {
    use crate::book::board::Board;
    use crate::book::{BookLevel, Snapshot};
    use crate::config::BooksConfig;
    use crate::market::{Decimal, Level};
    use crate::message::rest::{BookAnswer, Request, RestBatch, Want};
    use crate::signals::params::SignalsConfig;
    use crate::wire::DepthUpdate;

    let (tx, rx) = ring("t", 4096);
    let stats = Arc::new(ShardStats::default());
    let btc = Symbol::new("BTCUSDT").unwrap();
    let board = Arc::new(Board::new(&[btc]));
    let books = BooksConfig {
        symbols: vec![btc],
        max_levels: 100,
        top_levels: 5,
        publish_ms: 10,
    };
    let link = ShardLink::default();
    let mut s = ShardState::new(0, &[btc], &[Interval::M1], vec![tx], stats.clone())
        .with_signals(&SignalsConfig::default())
        .with_rest(link.clone())
        .with_books(&books, board.clone(), 0);
    // No warm start: the series warms from live candles.
    let warm = Request {
        symbol: btc,
        interval: Interval::M1,
        want: Want::Warm {
            candles: 200,
            end_open_ms: None,
        },
    };
    s.apply_rest(
        &RestBatch {
            request: warm,
            candles: Vec::new(),
            agg_trades: Vec::new(),
            trades: Vec::new(),
            absent: Vec::new(),
            failed: true,
        },
        0,
    );
    let lv = |price: i64, qty: i64| Level {
        price: Decimal::new(price, 0),
        quantity: Decimal::new(qty, 0),
    };
    let depth =
        |s: &mut ShardState, first: u64, last: u64, bids: &[Level], asks: &[Level], at: u64| {
            let d = DepthUpdate {
                symbol: btc,
                event_time_us: 1,
                first_update_id: first,
                final_update_id: last,
                bids,
                asks,
            };
            s.on_event(&Event::DepthUpdate(d), at);
        };
    // Buffered, and a snapshot asked of the REST thread with its weight.
    depth(&mut s, 11, 11, &[lv(100, 1)], &[], 1);
    let asked = link.book_requests.pop().expect("a snapshot request");
    assert_eq!((asked.symbol, asked.limit, asked.weight), (btc, 100, 5));
    assert!(!board.latest(btc).unwrap().valid);
    let snapshot = Snapshot {
        symbol: btc,
        last_update_id: 10,
        bids: vec![BookLevel {
            price: 100_0000_0000,
            qty: Decimal::ONE,
        }],
        asks: vec![BookLevel {
            price: 101_0000_0000,
            qty: Decimal::ONE,
        }],
        limit: 100,
    };
    s.apply_book_answer(
        &BookAnswer {
            symbol: btc,
            snapshot: Some(Box::new(snapshot)),
        },
        2,
    );
    let view = board.latest(btc).unwrap();
    assert!(view.valid);
    assert_eq!(view.last_update_id, 11);
    assert_eq!(stats.books.snapshots_applied.get(), 1);

    let closed = |i: i64| kline(i * 60_000, 59_000_000, true);
    s.on_event(&closed(0), 3);
    // Buyers pile in: imbalance (9 - 1) / 10 = 0.8 at the next close.
    depth(&mut s, 12, 12, &[lv(100, 9)], &[], 4);
    s.on_event(&closed(1), 5);
    // A skipped update id makes the book invalid at once, counted by cause.
    depth(&mut s, 20, 20, &[lv(99, 1)], &[], 6);
    assert!(!board.latest(btc).unwrap().valid);
    assert_eq!(
        stats.books.resyncs[crate::book::Resync::Gap as usize].get(),
        1
    );
    assert!(link.book_requests.pop().is_some(), "asked again");
    // That answer never comes (its queue was full): past the timeout, once more.
    s.flush(7);
    assert!(link.book_requests.pop().is_none(), "one request at a time");
    s.flush(6 + BOOK_ANSWER_TIMEOUT_NS);
    assert!(
        link.book_requests.pop().is_some(),
        "asked again after the timeout"
    );
    assert_eq!(stats.books.snapshot_failures.get(), 1);

    let mut signals = Vec::new();
    let mut tops = 0;
    while let Some(e) = rx.pop() {
        match e.record {
            Record::Signal(x) => signals.push(x),
            Record::Book(top) => {
                tops += 1;
                assert_eq!(top.symbol, btc);
            }
            _ => {}
        }
    }
    let book_signals: Vec<_> = signals
        .iter()
        .filter(|x| x.kind == SignalKind::BookImbalance)
        .collect();
    assert_eq!(book_signals.len(), 1, "{signals:?}");
    let x = book_signals[0];
    assert_eq!(x.direction, crate::signals::Direction::Buy);
    assert_eq!(x.timestamp_ms, 2 * 60_000 - 1);
    assert!((x.indicators.get("imbalance").unwrap() - 0.8).abs() < 1e-12);
    assert!(tops >= 3, "views and tops went to the sinks: {tops}");
}

#[test]
fn trades_go_only_to_the_sinks_that_store_them_each_id_once_and_gaps_are_counted() {
    use crate::market::testing::{agg_trade, trade};
    let (writer_tx, writer_rx) = ring("writer", 64);
    let (other_tx, other_rx) = ring("other", 64);
    let stats = Arc::new(ShardStats::default());
    let sym = [Symbol::new("BTCUSDT").unwrap()];
    let outs = vec![
        (writer_tx, RecordKinds::CLOSED.with(RecordKinds::TRADES)),
        (other_tx, RecordKinds::MARKET),
    ];
    let mut s = ShardState::with_outlets(0, &sym, &[Interval::M1], outs, stats.clone());
    for id in [10, 11, 11, 9, 15, 16] {
        s.on_event(&Event::Trade(trade("BTCUSDT", id)), 0);
    }
    for id in [3, 4, 6, 6] {
        s.on_event(&Event::AggTrade(agg_trade("BTCUSDT", id)), 0);
    }
    // Another shard's symbol, and ids the database cannot hold: counted, not sent.
    s.on_event(&Event::Trade(trade("ETHUSDT", 1)), 0);
    s.on_event(&Event::Trade(trade("BTCUSDT", u64::MAX)), 0);
    let mut reversed = agg_trade("BTCUSDT", 7);
    reversed.first_trade_id = reversed.last_trade_id + 1;
    s.on_event(&Event::AggTrade(reversed), 0);
    s.flush(0);
    let recs: Vec<Record> = std::iter::from_fn(|| writer_rx.pop())
        .map(|e| e.record)
        .collect();
    let trade_ids: Vec<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Trade(t) => Some(t.trade_id),
            _ => None,
        })
        .collect();
    let agg_ids: Vec<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::AggTrade(t) => Some(t.agg_trade_id),
            _ => None,
        })
        .collect();
    assert_eq!(trade_ids, [10, 11, 15, 16]);
    assert_eq!(agg_ids, [3, 4, 6]);
    assert_eq!(
        other_rx.view().depth(),
        0,
        "a sink without the kinds gets none"
    );
    assert_eq!(stats.duplicates.get(), 3);
    assert_eq!((stats.trade_gaps.get(), stats.trade_gap_ids.get()), (1, 3));
    assert_eq!(
        (stats.agg_trade_gaps.get(), stats.agg_trade_gap_ids.get()),
        (1, 1)
    );
    assert_eq!(stats.unknown_events.get(), 1);
    assert_eq!(stats.parse_errors_total(), 2);
}

/// A stream event of a trade of `kind` with id `id`.
fn trade_of(kind: TradeKind, id: u64) -> Event<'static> {
    match kind {
        TradeKind::Aggregate => Event::AggTrade(crate::market::testing::agg_trade("BTCUSDT", id)),
        TradeKind::Raw => Event::Trade(crate::market::testing::trade("BTCUSDT", id)),
    }
}

/// A REST answer to `want` holding trades of `kind` with `ids`.
fn trades_answer(kind: TradeKind, want: Want, ids: impl Iterator<Item = u64>) -> RestBatch {
    let mut b = answer(want, vec![], false);
    for id in ids {
        match kind {
            TradeKind::Aggregate => b
                .agg_trades
                .push(crate::market::testing::agg_trade("BTCUSDT", id)),
            TradeKind::Raw => b.trades.push(crate::market::testing::trade("BTCUSDT", id)),
        }
    }
    b
}

fn hole(kind: TradeKind, from_id: u64, to_id: Option<u64>) -> Want {
    Want::Trades {
        kind,
        from_id,
        to_id,
    }
}

#[test]
fn holes_in_trade_ids_are_asked_of_rest_and_the_answers_stored() {
    for kind in TradeKind::ALL {
        let (s, rx, link) = linked(false);
        let mut s = s.with_trade_backfill(kind, true);
        for id in [10, 11, 15] {
            s.on_event(&trade_of(kind, id), 0);
        }
        let asked = link.requests.pop().expect("the hole is asked for");
        assert_eq!(asked.want, hole(kind, 12, Some(15)));
        assert!(link.requests.pop().is_none());
        let counters = s.stats().trade_backfill(kind);
        assert_eq!(counters.requests.get(), 1);
        // The answer goes to the sinks as kept records.
        s.apply_rest(&trades_answer(kind, asked.want, 12..15), 0);
        let ids: Vec<u64> = std::iter::from_fn(|| rx.pop())
            .filter_map(|e| match (e.record, kind) {
                (Record::AggTrade(t), TradeKind::Aggregate) => Some(t.agg_trade_id),
                (Record::Trade(t), TradeKind::Raw) => Some(t.trade_id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [10, 11, 15, 12, 13, 14], "{kind:?}");
        assert_eq!(s.stats().trade_backfill(kind).backfilled.get(), 3);
        // A restart's catch-up reaching id 30 before the stream starts: the stream's
        // first id after a hole is a gap from there, an older one a duplicate.
        s.apply_rest(&trades_answer(kind, hole(kind, 16, None), 16..=30), 0);
        s.on_event(&trade_of(kind, 29), 0);
        s.on_event(&trade_of(kind, 33), 0);
        assert_eq!(
            link.requests.pop().map(|r| r.want),
            Some(hole(kind, 31, Some(33)))
        );
        // A failed backfill is counted, and asked again at the retry time, not before.
        s.apply_rest(&answer(asked.want, vec![], true), 0);
        assert_eq!(s.stats().trade_backfill(kind).failures.get(), 1);
        s.retry_failed_gaps(RETRY_FAILED_AFTER_NS - 1);
        assert!(link.requests.pop().is_none());
        s.retry_failed_gaps(RETRY_FAILED_AFTER_NS);
        assert_eq!(link.requests.pop().map(|r| r.want), Some(asked.want));
        // Without storage nothing is asked.
        let (s, _rx, link) = linked(false);
        let mut s = s;
        for id in [1, 5] {
            s.on_event(&trade_of(kind, id), 0);
        }
        assert!(link.requests.pop().is_none());
        let gaps = match kind {
            TradeKind::Aggregate => s.stats().agg_trade_gaps.get(),
            TradeKind::Raw => s.stats().trade_gaps.get(),
        };
        assert_eq!(gaps, 1);
    }
}

#[test]
fn a_catch_up_that_ends_before_the_stream_began_asks_for_the_ids_between() {
    for kind in TradeKind::ALL {
        let (s, _rx, link) = linked(false);
        let mut s = s.with_trade_backfill(kind, true);
        // The stream began at 100 before the catch-up from 50 was answered.
        s.on_event(&trade_of(kind, 100), 0);
        assert!(
            link.requests.pop().is_none(),
            "the first id follows nothing"
        );
        s.apply_rest(&trades_answer(kind, hole(kind, 50, None), 50..=60), 0);
        assert_eq!(
            link.requests.pop().map(|r| r.want),
            Some(hole(kind, 61, Some(100)))
        );
        // An empty last page: the exchange had nothing after 89 when it answered.
        s.apply_rest(&trades_answer(kind, hole(kind, 90, None), 0..0), 0);
        assert_eq!(
            link.requests.pop().map(|r| r.want),
            Some(hole(kind, 90, Some(100)))
        );
        // A catch-up that reached past the stream's start asks nothing.
        s.apply_rest(&trades_answer(kind, hole(kind, 95, None), 95..=120), 0);
        assert!(link.requests.pop().is_none());
        // A catch-up that failed for good is asked again up to the stream's first id.
        s.apply_rest(&answer(hole(kind, 70, None), vec![], true), 0);
        s.retry_failed_gaps(RETRY_FAILED_AFTER_NS);
        assert_eq!(
            link.requests.pop().map(|r| r.want),
            Some(hole(kind, 70, Some(100)))
        );
        // The other kind's stream is its own: nothing asked for it.
        let other = TradeKind::ALL.into_iter().find(|k| *k != kind).unwrap();
        s.on_event(&trade_of(other, 5), 0);
        s.on_event(&trade_of(other, 9), 0);
        assert!(link.requests.pop().is_none(), "{other:?} is not stored");
    }
}

#[test]
fn backfilled_trades_are_stored_not_broadcast_as_live() {
    let (writer_tx, writer_rx) = ring("writer", 64);
    let (redis_tx, redis_rx) = ring("redis", 64);
    let stats = Arc::new(ShardStats::default());
    let outs = vec![
        (writer_tx, RecordKinds::TRADES),
        (redis_tx, RecordKinds::MARKET.with(RecordKinds::TRADES)),
    ];
    let mut s = ShardState::with_outlets(0, &[btc()], &[Interval::M1], outs, stats)
        .with_rest(ShardLink::default());
    s.set_lossy_kinds(&[RecordKinds::NONE, RecordKinds::TRADES]);
    s.on_event(&trade_of(TradeKind::Raw, 1), 0);
    let want = hole(TradeKind::Raw, 2, Some(5));
    s.apply_rest(&trades_answer(TradeKind::Raw, want, 2..5), 0);
    s.flush(0);
    let ids = |rx: &crate::ring::Consumer<Envelope>| -> Vec<u64> {
        std::iter::from_fn(|| rx.pop())
            .filter_map(|e| match e.record {
                Record::Trade(t) => Some(t.trade_id),
                _ => None,
            })
            .collect()
    };
    assert_eq!(ids(&writer_rx), [1, 2, 3, 4], "stored");
    assert_eq!(ids(&redis_rx), [1], "only the live trade goes out live");
}

#[test]
fn a_sink_that_takes_trades_at_most_once_never_holds_the_shard() {
    use crate::market::testing::trade;
    let (writer_tx, writer_rx) = ring("writer", 2);
    let (redis_tx, redis_rx) = ring("redis", 2);
    let stats = Arc::new(ShardStats::default());
    let outs = vec![
        (writer_tx, RecordKinds::TRADES),
        (redis_tx, RecordKinds::MARKET.with(RecordKinds::TRADES)),
    ];
    let mut s = ShardState::with_outlets(0, &[btc()], &[Interval::M1], outs, stats.clone());
    s.set_lossy_kinds(&[RecordKinds::NONE, RecordKinds::TRADES]);
    for id in 1..=5 {
        s.on_event(&Event::Trade(trade("BTCUSDT", id)), 0);
    }
    // The writer's ring holds 2 and 3 wait for it; Redis got 2, and 3 were dropped.
    assert_eq!(s.flush(0), 3);
    assert_eq!(redis_rx.view().depth(), 2);
    assert_eq!(stats.lossy_dropped.get(), 3);
    let mut kept = Vec::new();
    for _ in 0..10 {
        while let Some(e) = writer_rx.pop() {
            if let Record::Trade(t) = e.record {
                kept.push(t.trade_id);
            }
        }
        s.flush(0);
    }
    assert_eq!(
        kept,
        [1, 2, 3, 4, 5],
        "every trade reaches the writer, in order"
    );
    assert_eq!(stats.lossy_dropped.get(), 3);
}

#[test]
fn a_long_batch_rings_its_parked_sink_part_way_not_only_at_its_flush() {
    use crate::ring::{arm_all, doorbells_of, thread_waker};
    let (tx, rx) = ring("t", 1024);
    let stats = Arc::new(ShardStats::default());
    let sym = [Symbol::new("BTCUSDT").unwrap()];
    let mut s = ShardState::new(0, &sym, &[Interval::M1], vec![tx], stats);
    let bells = doorbells_of(std::slice::from_ref(&rx));
    let waker = thread_waker();
    let mut event_us = 1;
    let mut update = |s: &mut ShardState| {
        // Updates of the same candle: each one is a live record for the sink.
        s.on_event(&kline(0, event_us, false), 0);
        event_us += 1;
    };
    update(&mut s);
    s.flush(0);
    while rx.pop().is_some() {}

    // The sink parks; the batch goes on past the ring interval without a flush: the
    // sink is rung for what it has, once per interval.
    assert!(arm_all(&bells, std::slice::from_ref(&rx), &waker));
    std::thread::sleep(std::time::Duration::from_nanos(2 * RING_EVERY_NS));
    update(&mut s);
    assert_eq!(bells[0].wakeups(), 1, "rung before the batch ended");
    assert!(matches!(
        rx.pop().map(|e| e.record),
        Some(Record::LiveCandle(_))
    ));
    assert!(arm_all(&bells, std::slice::from_ref(&rx), &waker));
    std::thread::sleep(std::time::Duration::from_nanos(2 * RING_EVERY_NS));
    update(&mut s);
    assert_eq!(bells[0].wakeups(), 2, "and again an interval later");

    // However short, a batch is rung by the end of its flush.
    while rx.pop().is_some() {}
    assert!(arm_all(&bells, std::slice::from_ref(&rx), &waker));
    let rung_at = bells[0].wakeups();
    update(&mut s);
    s.flush(0);
    assert_eq!(bells[0].wakeups(), rung_at + 1);
}
