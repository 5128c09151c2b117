//! End to end: the engine against the built-in simulator over loopback, with the
//! simulator's fault flags. Every test is bounded in time.

#[path = "support/engine.rs"]
mod support;

use std::time::Duration;

use alphapulse::market::{Candle, Interval};
use support::*;

const SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

fn assert_contiguous(candles: &[Candle]) {
    for w in candles.windows(2) {
        assert_eq!(
            w[1].open_time_ms,
            w[0].interval.next_open(w[0].open_time_ms),
            "closed candles must be contiguous: {} then {}",
            w[0].open_time_ms,
            w[1].open_time_ms
        );
    }
}

/// Waits (bounded) for `rotations` rotations and `closed` closed 1m candles per symbol.
fn wait_for_rotations(run: &Running, rotations: u64, closed_per_symbol: usize) {
    assert!(
        wait_until(Duration::from_secs(40), || {
            shard_sum(run, |s| s.rotations.get()) >= rotations
                && SYMS
                    .iter()
                    .all(|s| closed(run, s, Interval::M1).len() >= closed_per_symbol)
        }),
        "{}",
        run.engine.status().snapshot()
    );
}

/// After rotations: no reconnect, no gap, no duplicate row, and every closed candle
/// contiguous and equal to the simulator's REST klines.
fn assert_rotations_lost_and_doubled_nothing(run: &Running) {
    assert_eq!(
        shard_sum(run, |s| s.reconnects.get()),
        0,
        "rotations are not reconnects"
    );
    assert_eq!(
        shard_sum(run, |s| s.gaps.get()),
        0,
        "no candle lost across rotations"
    );
    assert_eq!(
        run.engine.status().store.lock().unwrap().duplicates_ignored,
        0
    );
    for s in SYMS {
        let c = closed(run, s, Interval::M1);
        assert_contiguous(&c);
        assert_match_rest(run, s, Interval::M1, &c);
    }
}

fn total_closed(run: &Running) -> u64 {
    run.engine
        .status()
        .shards
        .iter()
        .map(|s| s.stats.candles_closed.get())
        .sum()
}

fn shard_sum(run: &Running, f: impl Fn(&alphapulse::metrics::ShardStats) -> u64) -> u64 {
    run.engine.status().shards.iter().map(|s| f(&s.stats)).sum()
}

#[test]
fn candles_close_and_match_the_simulators_rest_klines() {
    let run = start(
        sim_config(&SYMS),
        |_| {},
        &SYMS,
        &[Interval::M1, Interval::M3],
    );
    assert!(
        wait_until(Duration::from_secs(40), || SYMS.iter().all(|s| closed(
            &run,
            s,
            Interval::M1
        )
        .len()
            >= 8
            && closed(&run, s, Interval::M3).len() >= 2)),
        "candles did not close in time: {}",
        run.engine.status().snapshot()
    );
    for s in SYMS {
        for tf in [Interval::M1, Interval::M3] {
            let c = closed(&run, s, tf);
            assert_contiguous(&c);
            assert_match_rest(&run, s, tf, &c);
        }
    }
    assert_eq!(shard_sum(&run, |s| s.parse_errors_total()), 0);
    assert_eq!(shard_sum(&run, |s| s.gaps.get()), 0);
    assert_eq!(
        run.engine.status().store.lock().unwrap().duplicates_ignored,
        0
    );
}

#[test]
fn every_configured_stream_kind_arrives() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| c.trade_rate = 20.0),
        |c| {
            let k = &mut c.feed.streams;
            k.trade = true;
            k.agg_trade = true;
            k.book_ticker = true;
            k.diff_depth_ms = Some(100);
            k.partial_depth_levels = Some(5);
        },
        &SYMS,
        &[Interval::M1],
    );
    let got_all = wait_until(Duration::from_secs(30), || {
        shard_sum(&run, |s| s.klines.get()) > 0
            && shard_sum(&run, |s| s.trades.get()) > 0
            && shard_sum(&run, |s| s.agg_trades.get()) > 0
            && shard_sum(&run, |s| s.book_tickers.get()) > 0
            && shard_sum(&run, |s| s.depth_updates.get()) > 0
            && shard_sum(&run, |s| s.partial_depths.get()) > 0
    });
    assert!(got_all, "{}", run.engine.status().snapshot());
    let status = http_json(run.engine.dashboard_addr(), "/api/status");
    assert_eq!(status["shards"][0]["parse_errors"], 0, "{status}");
    assert_eq!(status["shards"][0]["duplicates"], 0, "{status}");
    assert_eq!(status["shards"][0]["subscribe_errors"], 0, "{status}");
    // 2 symbols × (1 kline + trade + aggTrade + bookTicker + depth + depth5).
    assert_eq!(status["shards"][0]["streams"], 12);
}

#[test]
fn dropped_connections_come_back_and_resubscribe() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| {
            c.drop_every = Some(Duration::from_millis(1500))
        }),
        |_| {},
        &SYMS,
        &[Interval::M1],
    );
    assert!(
        wait_until(Duration::from_secs(30), || shard_sum(&run, |s| s
            .reconnects
            .get())
            >= 3),
        "{}",
        run.engine.status().snapshot()
    );
    // Every connection subscribed again, and data kept flowing after the drops.
    assert!(shard_sum(&run, |s| s.subscribe_acks.get()) >= 4);
    let before = shard_sum(&run, |s| s.klines.get());
    assert!(wait_until(Duration::from_secs(10), || shard_sum(
        &run,
        |s| s.klines.get()
    ) > before + 10));
    assert!(run.sim.stats().drops_injected >= 3);
    let store = run.engine.status().store.lock().unwrap();
    assert!(
        store.outages_total >= 2,
        "reconnect spans are recorded as outages"
    );
    assert_eq!(shard_sum(&run, |s| s.parse_errors_total()), 0);
}

#[test]
fn max_age_rotation_loses_and_doubles_nothing() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| {
            c.max_connection_age = Duration::from_secs(3);
            c.shutdown_grace = Duration::from_secs(5);
        }),
        |c| c.feed.rotation_overlap_s = 0.3,
        &SYMS,
        &[Interval::M1],
    );
    wait_for_rotations(&run, 3, 10);
    assert!(run.sim.stats().server_shutdowns_sent >= 3);
    assert_rotations_lost_and_doubled_nothing(&run);
}

#[test]
fn the_engines_own_age_limit_rotates_make_before_break() {
    let run = start(
        sim_config(&SYMS),
        |c| {
            c.feed.max_connection_age_s = 4.0;
            c.feed.rotate_before_s = 2.0;
            c.feed.rotation_overlap_s = 0.3;
        },
        &SYMS,
        &[Interval::M1],
    );
    wait_for_rotations(&run, 3, 8);
    assert_eq!(
        run.sim.stats().server_shutdowns_sent,
        0,
        "rotations came from the engine"
    );
    assert_rotations_lost_and_doubled_nothing(&run);
}

#[test]
fn pings_are_answered_and_the_connection_stays() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| {
            c.ping_interval = Duration::from_millis(500);
            c.pong_timeout = Duration::from_secs(2);
        }),
        |_| {},
        &SYMS,
        &[Interval::M1],
    );
    assert!(wait_until(Duration::from_secs(20), || shard_sum(
        &run,
        |s| s.pings_answered.get()
    ) >= 8));
    assert!(run.sim.stats().pongs_received >= 8);
    assert_eq!(run.sim.stats().pong_timeout_disconnects, 0);
    assert_eq!(shard_sum(&run, |s| s.reconnects.get()), 0);
}

#[test]
fn malformed_frames_are_counted_and_the_feed_goes_on() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| {
            c.malformed_rate = 0.1;
            c.trade_rate = 20.0;
        }),
        |c| c.feed.streams.trade = true,
        &SYMS,
        &[Interval::M1],
    );
    assert!(wait_until(Duration::from_secs(30), || shard_sum(
        &run,
        |s| s.parse_errors_total()
    ) >= 20
        && shard_sum(&run, |s| s.candles_closed.get()) >= 4));
    assert!(run.sim.stats().malformed_injected > 0);
    assert_eq!(
        shard_sum(&run, |s| s.reconnects.get()),
        0,
        "a bad frame does not cost the connection"
    );
}

#[test]
fn a_silent_connection_is_dropped_and_replaced() {
    let run = start(
        SimConfigExt::with(sim_config(&SYMS), |c| {
            c.stall_every = Some(Duration::from_secs(3));
            c.stall_for = Duration::from_secs(3);
        }),
        |c| c.feed.silence_timeout_s = 1.0,
        &SYMS,
        &[Interval::M1],
    );
    assert!(
        wait_until(Duration::from_secs(30), || shard_sum(&run, |s| s
            .silent_drops
            .get())
            >= 1
            && shard_sum(&run, |s| s.reconnects.get()) >= 1),
        "{}",
        run.engine.status().snapshot()
    );
}

#[test]
fn health_readiness_status_and_candles_api() {
    let run = start(sim_config(&SYMS), |_| {}, &SYMS, &[Interval::M1]);
    let addr = run.engine.dashboard_addr();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert!(wait_until(Duration::from_secs(20), || http_get(
        addr, "/readyz"
    )
    .0 == 200));
    assert!(wait_until(Duration::from_secs(20), || closed(
        &run,
        "BTCUSDT",
        Interval::M1
    )
    .len()
        >= 2));
    assert!(total_closed(&run) >= 2);
    let status = http_json(addr, "/api/status");
    for key in [
        "status",
        "uptime_s",
        "total_messages_received",
        "active_connections",
        "shards",
        "sinks",
    ] {
        assert!(status.get(key).is_some(), "missing {key}: {status}");
    }
    assert_eq!(status["status"], "ok");
    assert_eq!(status["active_connections"], 1);
    assert!(status["total_messages_received"].as_u64().unwrap() > 0);
    let shard = &status["shards"][0];
    for key in [
        "core",
        "symbols",
        "connections",
        "messages",
        "parse_errors",
        "queues",
    ] {
        assert!(shard.get(key).is_some(), "missing shards[0].{key}");
    }
    let candles = http_json(addr, "/api/candles?symbol=BTCUSDT&timeframe=1m&limit=2");
    let list = candles["candles"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list[0]["open_time"].as_i64() > list[1]["open_time"].as_i64(),
        "newest first"
    );
    for key in [
        "type",
        "symbol",
        "timeframe",
        "open_time",
        "close_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "taker_buy_base",
        "taker_buy_quote",
        "trades",
        "closed",
        "event_time",
    ] {
        assert!(list[0].get(key).is_some(), "candle record lacks {key}");
    }
    assert_eq!(list[0]["type"], "candle");
    assert!(list[0]["open"].is_string());
    let (code, body) = http_get(addr, "/api/candles?limit=5000");
    assert_eq!(code, 400);
    assert!(body.contains("limit"));
    assert_eq!(http_get(addr, "/nope").0, 404);
}

#[test]
fn microsecond_time_unit_is_normalised() {
    let run = start(
        sim_config(&SYMS),
        |c| c.feed.time_unit_microsecond = true,
        &SYMS,
        &[Interval::M1],
    );
    assert!(wait_until(Duration::from_secs(30), || SYMS
        .iter()
        .all(|s| closed(&run, s, Interval::M1).len() >= 3)));
    for s in SYMS {
        let c = closed(&run, s, Interval::M1);
        // Open and close times stay milliseconds (as REST returns them); event times are
        // microseconds inside the candle's span.
        assert_match_rest(&run, s, Interval::M1, &c);
        for k in &c {
            assert!(
                k.event_time_us >= k.open_time_ms * 1000
                    && k.event_time_us <= (k.close_time_ms + 1) * 1000 + 999
            );
        }
    }
}

#[test]
fn streams_spread_over_several_connections() {
    let names = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT", "XRPUSDT"];
    let tfs = [Interval::M1, Interval::M3, Interval::M5];
    let run = start(
        sim_config(&names),
        |c| {
            c.feed.max_streams_per_connection = 4;
            c.binance_max_connections = 5;
        },
        &names,
        &tfs,
    );
    // 15 streams at most 4 per connection: 4 connections, each fully subscribed.
    let shard = &run.engine.status().shards[0];
    assert_eq!(shard.slots, 4);
    assert!(wait_until(Duration::from_secs(30), || run
        .engine
        .status()
        .ready()));
    assert_eq!(shard.stats.connections_active.get(), 4);
    assert_eq!(shard.stats.streams_subscribed.get(), 15);
    assert!(wait_until(Duration::from_secs(30), || names
        .iter()
        .all(|s| closed(&run, s, Interval::M1).len() >= 2)));
    assert_eq!(
        shard.stats.duplicates.get(),
        0,
        "no stream is on two connections"
    );
}

#[path = "common/mod.rs"]
mod common;

#[test]
fn the_real_binance_capture_replays_through_the_engine() {
    // 265 frames Binance sent on 2021-10-12: depth@100ms, bookTicker, kline_1m and
    // aggTrade for four symbols. The simulator replays them as fast as possible to the
    // streams the engine subscribes; every one must be parsed and counted by kind.
    let names = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"];
    let capture = common::fixtures_dir().join("captured/binance-spot-2021-10-12.ws.txt");
    let sim = alphapulse::simulator::SimConfig {
        replay: Some(capture),
        replay_speed: 0.0,
        ..sim_config(&names)
    };
    let run = start(
        sim,
        |c| {
            let k = &mut c.feed.streams;
            k.agg_trade = true;
            k.book_ticker = true;
            k.diff_depth_ms = Some(100);
            // Frames of 2021, replayed now: their times are years from our clock.
            c.feed.max_clock_skew_ms = 0;
        },
        &names,
        &[Interval::M1],
    );
    let all = || {
        shard_sum(&run, |s| s.depth_updates.get()) == 177
            && shard_sum(&run, |s| s.book_tickers.get()) == 84
            && shard_sum(&run, |s| s.klines.get()) == 2
            && shard_sum(&run, |s| s.agg_trades.get()) == 2
    };
    assert!(
        wait_until(Duration::from_secs(30), all),
        "{}",
        run.engine.status().snapshot()
    );
    assert_eq!(
        shard_sum(&run, |s| s.messages.get()),
        265 + 1,
        "the frames plus one SUBSCRIBE reply"
    );
    assert_eq!(shard_sum(&run, |s| s.parse_errors_total()), 0);
    assert_eq!(shard_sum(&run, |s| s.duplicates.get()), 0);
    assert_eq!(shard_sum(&run, |s| s.unknown_events.get()), 0);
}

/// Builder sugar for tweaking a simulator config in place.
trait SimConfigExt: Sized {
    fn with(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl SimConfigExt for alphapulse::simulator::SimConfig {
    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
