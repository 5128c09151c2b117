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
