use super::*;
use crate::backfill::scheduler::Priority;
use crate::backfill::{DatabaseError, RestDatabase, TradeResume};
use crate::message::rest::ShardLink;

const M: i64 = 60_000;

fn btc() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

fn candle(open_ms: i64) -> Candle {
    crate::market::testing::candle("BTCUSDT", open_ms, (open_ms + M) * 1000, true)
}

fn minutes(opens: impl IntoIterator<Item = i64>) -> Vec<Candle> {
    opens.into_iter().map(|m| candle(m * M)).collect()
}

/// A database that answers the startup query from memory.
#[derive(Default)]
struct FakeDb {
    stored: Vec<(Symbol, Interval, i64)>,
    /// Where each kind of trades resumes.
    trades: Vec<(TradeKind, TradeResume)>,
}

impl RestDatabase for FakeDb {
    fn newest_stored(
        &mut self,
        series: &[(Symbol, Interval)],
    ) -> Result<Vec<(Symbol, Interval, i64)>, DatabaseError> {
        assert_eq!(series, [(btc(), Interval::M1)]);
        Ok(self.stored.clone())
    }

    fn trade_resume(
        &mut self,
        kind: TradeKind,
        symbols: &[Symbol],
    ) -> Result<Vec<TradeResume>, DatabaseError> {
        assert_eq!(symbols, [btc()]);
        Ok(self
            .trades
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect())
    }
}

/// A thread for one BTCUSDT 1m series that never sends anything: the tests drive its
/// steps by hand.
fn thread(warm: u32, db: Option<FakeDb>) -> (Thread, ShardLink) {
    let link = ShardLink::default();
    let plan = RestPlan {
        rest_url: "http://127.0.0.1:9".into(),
        warm_candles: warm,
        weight_share: 1.0,
        database: db.map(|d| Box::new(d) as Box<dyn RestDatabase>),
        shards: vec![(vec![(btc(), Interval::M1)], link.clone())],
        clock: crate::clock::ClockBound::OFF,
        trade_catch_up: Vec::new(),
    };
    let client = Client::new(crate::backfill::agent(None).unwrap());
    let t = Thread::new(
        plan,
        client,
        Arc::new(RestStats::default()),
        Arc::new(AtomicBool::new(false)),
    );
    (t, link)
}

/// Every job the scheduler would send now, in order.
fn queued(t: &mut Thread) -> Vec<Want> {
    let mut out = Vec::new();
    loop {
        match t.scheduler.next(wall_ms(), mono_ms()) {
            Next::Send(Task::Candles(job)) => out.push(job.request.want),
            Next::Send(task) => panic!("only candle jobs were queued, not {task:?}"),
            Next::Idle => return out,
            Next::Wait(ms) => panic!("the budget should not hold {out:?} ({ms} ms)"),
        }
    }
}

fn job(want: Want) -> Job {
    Job {
        shard: 0,
        request: Request {
            symbol: btc(),
            interval: Interval::M1,
            want,
        },
        check: false,
    }
}

/// Answers every waiting second look with the rows the exchange has by then
/// (`exchange`, in minutes) in its span; returns the deliveries, in order.
fn second_look(t: &mut Thread, link: &ShardLink, exchange: &[i64]) -> Vec<RestBatch> {
    let checks: Vec<Job> = std::mem::take(&mut t.checks)
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    checks
        .into_iter()
        .map(|j| {
            let Want::Range {
                from_open_ms,
                to_open_ms: Some(to),
            } = j.request.want
            else {
                panic!("a check is a bounded range: {j:?}");
            };
            assert!(j.check);
            let rows = exchange
                .iter()
                .map(|m| m * M)
                .filter(|t| (from_open_ms..to).contains(t))
                .map(candle)
                .collect();
            t.answered(j, rows);
            link.deliveries.pop().expect("a delivery per check")
        })
        .collect()
}

fn absent_of(batches: &[RestBatch]) -> Vec<(i64, i64)> {
    batches.iter().flat_map(|b| b.absent.clone()).collect()
}

fn range(from: i64, to: Option<i64>) -> Want {
    Want::Range {
        from_open_ms: from * M,
        to_open_ms: to.map(|t| t * M),
    }
}

#[test]
fn startup_warms_each_series_or_nothing() {
    let (mut t, _) = thread(10, None);
    t.queue_startup();
    assert_eq!(
        queued(&mut t),
        [Want::Warm {
            candles: 10,
            end_open_ms: None
        }]
    );
    let (mut t, _) = thread(0, None);
    t.queue_startup();
    assert_eq!(queued(&mut t), []);
}

#[test]
fn startup_resumes_before_the_newest_stored_candle() {
    let db = FakeDb {
        stored: vec![(btc(), Interval::M1, 100 * M)],
        ..FakeDb::default()
    };
    let (mut t, _) = thread(10, Some(db));
    t.queue_startup();
    assert_eq!(t.stats.resumed_series.get(), 1);
    // Two candles of overlap: history ends at 97, the catch-up starts at 98.
    assert_eq!(
        queued(&mut t),
        [
            Want::Warm {
                candles: 10,
                end_open_ms: Some(97 * M)
            },
            range(98, None)
        ]
    );
}

#[test]
fn requests_are_queued_once_and_not_while_waiting_for_a_retry() {
    let (mut t, link) = thread(0, None);
    let want = range(10, Some(20));
    link.requests.push(job(want).request).unwrap();
    link.requests.push(job(want).request).unwrap();
    t.take_requests();
    assert_eq!(queued(&mut t), [want]);
    t.failed(job(want), RestError::Thread(std::io::Error::other("boom")));
    assert_eq!(t.retries.len(), 1);
    link.requests.push(job(want).request).unwrap();
    t.take_requests();
    assert_eq!(queued(&mut t), [], "the retry timer owns it");
}

#[test]
fn failures_back_off_then_give_up_and_tell_the_shard() {
    let (mut t, link) = thread(0, None);
    let j = job(range(10, Some(20)));
    let err = || RestError::Thread(std::io::Error::other("boom"));
    let before = Instant::now();
    t.failed(j, err());
    let first = t.retries[0].0 - before;
    assert!(
        first >= RETRY_INITIAL && first < RETRY_INITIAL * 2,
        "{first:?}"
    );
    for _ in 1..MAX_ATTEMPTS - 1 {
        t.failed(j, err());
    }
    // Doubled per attempt, capped.
    let last = t.retries.last().unwrap().0 - before;
    assert!(last <= RETRY_MAX + Duration::from_secs(1), "{last:?}");
    assert!(last > RETRY_INITIAL * 32, "{last:?}");
    assert!(link.deliveries.is_empty());
    t.failed(j, err());
    let batch = link.deliveries.pop().expect("a failed batch");
    assert!(batch.failed && batch.candles.is_empty());
    assert_eq!(batch.request, j.request);
    assert_eq!(t.stats.failures.get(), 1);
    assert_eq!(t.stats.failed_attempts.get(), u64::from(MAX_ATTEMPTS));
    assert!(t.attempts.is_empty());

    // A warm start gives up sooner.
    let w = job(Want::Warm {
        candles: 5,
        end_open_ms: None,
    });
    for _ in 0..MAX_WARM_ATTEMPTS {
        t.failed(w, err());
    }
    assert!(link.deliveries.pop().unwrap().failed);
    assert_eq!(t.stats.failures.get(), 2);
}

#[test]
fn a_range_page_delivers_its_candles_and_the_spans_it_lacks() {
    let (mut t, link) = thread(0, Some(FakeDb::default()));
    // Rows outside the range are dropped.
    t.answered(job(range(0, Some(5))), minutes([0, 1, 3, 5]));
    let batch = link.deliveries.pop().unwrap();
    assert!(!batch.failed && !batch.is_history());
    let opens: Vec<i64> = batch.candles.iter().map(|c| c.open_time_ms / M).collect();
    assert_eq!(opens, [0, 1, 3]);
    assert_eq!(batch.absent, [], "a second look first");
    let checks = second_look(&mut t, &link, &[]);
    assert_eq!(absent_of(&checks), [(2 * M, 3 * M), (4 * M, 5 * M)]);
    assert_eq!(t.stats.absent_ranges.get(), 2);
    assert_eq!(t.stats.absent_candles.get(), 2);
    assert_eq!(t.stats.backfill_candles.get(), 3);
    assert_eq!(queued(&mut t), [], "the range is done");

    // The same without a database: absences travel with the page either way.
    let (mut t, link) = thread(0, None);
    t.answered(job(range(0, Some(2))), Vec::new());
    assert_eq!(link.deliveries.pop().unwrap().absent, []);
    assert_eq!(absent_of(&second_look(&mut t, &link, &[])), [(0, 2 * M)]);
}

#[test]
fn a_full_page_asks_for_the_next_one_first() {
    let (mut t, link) = thread(0, None);
    let page = klines::MAX_LIMIT as i64;
    t.answered(job(range(0, Some(page + 500))), minutes(0..page));
    let batch = link.deliveries.pop().unwrap();
    assert_eq!(batch.candles.len(), page as usize);
    assert!(
        batch.absent.is_empty(),
        "nothing past the page is judged yet"
    );
    assert_eq!(queued(&mut t), [range(page, Some(page + 500))]);

    // Open-ended, the newest row may be the open candle: the next page starts at it.
    let (mut t, link) = thread(0, None);
    t.answered(job(range(0, None)), minutes(0..page));
    assert_eq!(
        link.deliveries.pop().unwrap().candles.len(),
        page as usize - 1
    );
    assert_eq!(queued(&mut t), [range(page - 1, None)]);
}

#[test]
fn the_open_candle_is_left_out_of_open_ended_answers() {
    let (mut t, link) = thread(0, None);
    // The last page of a catch-up: 3 is still open; 1 is missing.
    t.answered(job(range(0, None)), minutes([0, 2, 3]));
    let batch = link.deliveries.pop().unwrap();
    let opens: Vec<i64> = batch.candles.iter().map(|c| c.open_time_ms / M).collect();
    assert_eq!(opens, [0, 2]);
    assert_eq!(batch.absent, []);
    assert_eq!(queued(&mut t), []);
    assert_eq!(absent_of(&second_look(&mut t, &link, &[])), [(M, 2 * M)]);

    let warm = Want::Warm {
        candles: 2,
        end_open_ms: None,
    };
    t.answered(job(warm), minutes([7, 8, 9]));
    let batch = link.deliveries.pop().unwrap();
    assert!(batch.is_history());
    assert_eq!(batch.candles.len(), 2);
    assert_eq!(t.stats.series_warmed.get(), 1);
    assert_eq!(t.stats.warm_candles.get(), 2);
}

#[test]
fn priority_puts_bounded_ranges_first() {
    assert_eq!(priority(&job(range(0, Some(1))).request), Priority::Urgent);
    assert_eq!(priority(&job(range(0, None)).request), Priority::Normal);
}

#[test]
fn a_full_last_page_keeps_its_open_candle_out() {
    // A catch-up whose last page is full: the exchange's newest row (999) is the candle
    // still open, and the page after it would be empty.
    let (mut t, link) = thread(0, None);
    let page = klines::MAX_LIMIT as i64;
    t.answered(job(range(0, None)), minutes(0..page));
    let mut delivered: Vec<Candle> = link.deliveries.pop().unwrap().candles;
    for want in queued(&mut t) {
        let Want::Range {
            from_open_ms,
            to_open_ms: None,
        } = want
        else {
            panic!("{want:?}");
        };
        let rows: Vec<Candle> = minutes(0..page)
            .into_iter()
            .filter(|c| c.open_time_ms >= from_open_ms)
            .collect();
        t.answered(job(want), rows);
        delivered.extend(link.deliveries.pop().unwrap().candles);
    }
    let newest_open = (page - 1) * M;
    assert!(
        delivered.iter().all(|c| c.close_time_ms < newest_open),
        "a candle not yet closed was delivered as closed"
    );
    let opens: Vec<i64> = delivered.iter().map(|c| c.open_time_ms / M).collect();
    assert_eq!(
        opens,
        (0..page - 1).collect::<Vec<_>>(),
        "every closed one once"
    );
    assert_eq!(queued(&mut t), [], "the catch-up is done");
}

#[test]
fn one_empty_answer_confirms_no_absence() {
    let (mut t, link) = thread(0, Some(FakeDb::default()));
    t.answered(job(range(0, Some(4))), minutes([1]));
    let batch = link.deliveries.pop().unwrap();
    assert_eq!(batch.candles.len(), 1);
    assert_eq!(batch.absent, [], "not on one answer");
    assert_eq!(t.stats.absent_ranges.get(), 0);
    assert_eq!(t.stats.unconfirmed_ranges.get(), 2);

    // The second looks wait their delay, then go through the scheduler (urgent).
    let now = Instant::now();
    t.release_due(now);
    assert_eq!(queued(&mut t), []);
    assert_eq!(t.stats.pending_checks.get(), 2);
    let later = now + ABSENCE_CHECK_DELAY + Duration::from_millis(1);
    let checks: Vec<(Instant, Job)> = t.checks.clone();
    t.release_due(later);
    assert_eq!(t.stats.pending_checks.get(), 0);
    assert_eq!(queued(&mut t), [range(0, Some(1)), range(2, Some(4))]);
    t.checks = checks;

    // By then the exchange has candle 0: delivered, not absent. 2 and 3 are still
    // lacking: confirmed, and delivered to the shard (which hands them to the writer).
    let batches = second_look(&mut t, &link, &[0]);
    assert_eq!(batches[0].candles.len(), 1);
    assert_eq!(absent_of(&batches), [(2 * M, 4 * M)]);
    assert_eq!(t.stats.unconfirmed_candles_found.get(), 1);
    assert_eq!(t.stats.absent_ranges.get(), 1);
    assert_eq!(t.stats.absent_candles.get(), 2);
}

#[test]
fn rows_from_1970_or_2100_are_dropped_and_do_not_move_the_exchange_clock() {
    let (mut t, link) = thread(0, None);
    t.plan.clock = crate::clock::ClockBound {
        max_skew_ms: 5 * M as u64,
        speed: 1.0,
        since_mono_ns: crate::clock::mono_ns(),
    };
    let now = crate::clock::wall_ms() / M * M;
    let y2100 = 4_102_444_800_000;
    let warm = Want::Warm {
        candles: 3,
        end_open_ms: None,
    };
    let rows = [0, now - 3 * M, now - 2 * M, now - M, y2100].map(candle);
    t.answered(job(warm), rows.to_vec());
    let batch = link.deliveries.pop().unwrap();
    let opens: Vec<i64> = batch.candles.iter().map(|c| c.open_time_ms).collect();
    // The newest believable row is the open candle, held back as ever; 2100 did not
    // make every row look closed.
    assert_eq!(opens, [now - 3 * M, now - 2 * M]);
    assert_eq!(
        t.stats.rows_dropped[crate::clock::Skew::Future as usize].get(),
        1
    );
    assert_eq!(
        t.stats.rows_dropped[crate::clock::Skew::Past as usize].get(),
        1
    );
    assert_eq!(t.exchange_ms, now - M);
    let status = t.stats.status();
    assert_eq!(status["rows_dropped"], 2);
    assert_eq!(status["rows_dropped_by_reason"]["future"], 1);
}

fn agg(id: u64) -> crate::market::AggTrade {
    crate::market::testing::agg_trade("BTCUSDT", id)
}

fn trades_want(kind: TradeKind, from_id: u64, to_id: Option<u64>) -> Want {
    Want::Trades {
        kind,
        from_id,
        to_id,
    }
}

#[test]
fn a_restart_catches_up_stored_trades_from_the_newest_and_fills_their_holes() {
    let resume = |kind| {
        (
            kind,
            TradeResume {
                symbol: btc(),
                newest: 41,
                holes: vec![(5, 9), (20, 21)],
                more_holes: true,
            },
        )
    };
    let db = FakeDb {
        trades: vec![resume(TradeKind::Aggregate), resume(TradeKind::Raw)],
        ..FakeDb::default()
    };
    let (mut t, _) = thread(0, Some(db));
    t.queue_startup();
    assert!(queued(&mut t).is_empty(), "not stored: no catch-up");
    let db = FakeDb {
        trades: vec![resume(TradeKind::Aggregate), resume(TradeKind::Raw)],
        ..FakeDb::default()
    };
    let (mut t, _) = thread(0, Some(db));
    t.plan.trade_catch_up = vec![TradeKind::Raw];
    t.queue_startup();
    // The holes (close enough for one page: one request) are urgent and go first;
    // then the catch-up.
    let raw = TradeKind::Raw;
    assert_eq!(
        queued(&mut t),
        [trades_want(raw, 5, Some(21)), trades_want(raw, 42, None)]
    );
    assert_eq!(
        t.stats.trade_holes_left.get(),
        1,
        "older holes left are counted"
    );
}

#[test]
fn holes_one_page_covers_are_asked_as_one_request() {
    use crate::backfill::merge_holes;
    assert_eq!(merge_holes(&[]), []);
    assert_eq!(
        merge_holes(&[(5, 9), (20, 21), (1004, 1005), (1006, 2000), (5000, 5001)]),
        // 1005 is within a page of 5, 2000 is not; 5000 starts a span of its own.
        [(5, 1005), (1006, 2000), (5000, 5001)]
    );
}

#[test]
fn trade_pages_are_delivered_and_walked_to_the_end_of_the_hole() {
    let (mut t, link) = thread(0, None);
    let hole = trades_want(TradeKind::Aggregate, 100, Some(1500));
    // A full page inside the hole: delivered, and the next page queued first.
    let rows: Vec<_> = (100..1100).map(agg).collect();
    t.answered_trades(job(hole), TradePage::Aggregate(rows));
    let got = link.deliveries.pop().expect("a delivery");
    assert_eq!(got.agg_trades.len(), 1000);
    assert!(got.candles.is_empty() && got.trades.is_empty() && !got.failed);
    assert_eq!(
        queued(&mut t),
        [trades_want(TradeKind::Aggregate, 1100, Some(1500))]
    );
    // The last page runs past the hole: only the hole's ids are delivered; the end.
    let rows: Vec<_> = (1100..1600).map(agg).collect();
    let next_page = trades_want(TradeKind::Aggregate, 1100, Some(1500));
    t.answered_trades(job(next_page), TradePage::Aggregate(rows));
    let got = link.deliveries.pop().expect("a delivery");
    assert_eq!(got.agg_trades.first().map(|a| a.agg_trade_id), Some(1100));
    assert_eq!(got.agg_trades.last().map(|a| a.agg_trade_id), Some(1499));
    assert!(queued(&mut t).is_empty());
    assert_eq!(t.stats.agg_trades.get(), 1400);
    // Nothing (the exchange has none of it any more): nothing delivered, the end.
    t.answered_trades(job(hole), TradePage::Aggregate(Vec::new()));
    assert!(link.deliveries.pop().is_none());
    assert!(queued(&mut t).is_empty());
    // Raw trades walk the same way, counted apart.
    let raw_hole = trades_want(TradeKind::Raw, 10, Some(13));
    let rows: Vec<_> = (9..20)
        .map(|id| crate::market::testing::trade("BTCUSDT", id))
        .collect();
    t.answered_trades(job(raw_hole), TradePage::Raw(rows));
    let got = link.deliveries.pop().expect("a delivery");
    let ids: Vec<u64> = got.trades.iter().map(|t| t.trade_id).collect();
    assert_eq!(ids, [10, 11, 12]);
    assert!(got.agg_trades.is_empty());
    assert_eq!((t.stats.trades.get(), t.stats.agg_trades.get()), (3, 1400));
    // A catch-up's empty last page is delivered: it says where the exchange was.
    let catch_up = trades_want(TradeKind::Aggregate, 7, None);
    t.answered_trades(job(catch_up), TradePage::Aggregate(Vec::new()));
    let got = link.deliveries.pop().expect("the last page, empty");
    assert!(got.agg_trades.is_empty() && !got.failed);
    assert_eq!(
        Task::Candles(job(raw_hole)).weight(),
        25,
        "historicalTrades weighs 25"
    );
    assert_eq!(
        priority(&job(hole).request),
        Priority::Urgent,
        "a hole is urgent, like a candle gap"
    );
}

/// With nothing queued the thread sleeps until its next retry or second look is due,
/// never longer than its longest sleep (a request or the stop unparks it sooner).
#[test]
fn an_idle_thread_sleeps_until_its_next_retry_or_second_look() {
    let (mut t, _link) = thread(0, None);
    let now = Instant::now();
    assert_eq!(
        t.idle_wait(now),
        LONGEST_IDLE_SLEEP,
        "nothing due: the longest sleep"
    );
    t.checks
        .push((now + Duration::from_millis(700), job(range(2, Some(4)))));
    assert_eq!(t.idle_wait(now), Duration::from_millis(700));
    t.retries
        .push((now + Duration::from_millis(250), job(range(0, Some(1)))));
    assert_eq!(t.idle_wait(now), Duration::from_millis(250));
    assert_eq!(
        t.idle_wait(now + Duration::from_secs(1)),
        Duration::ZERO,
        "overdue: no sleep"
    );
    t.retries.clear();
    t.checks
        .push((now + Duration::from_secs(60), job(range(5, Some(6)))));
    t.checks.remove(0);
    assert_eq!(
        t.idle_wait(now),
        LONGEST_IDLE_SLEEP,
        "a far one: the longest sleep"
    );
}
