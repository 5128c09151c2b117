//! Stream health end to end, against the built-in simulator over loopback: a SUBSCRIBE
//! the exchange partly refuses, a kline stream that is acknowledged and never sent, and
//! `serverShutdown` closes counted as rotations. Every wait is bounded in time.

#[path = "support/engine.rs"]
mod support;

use std::time::Duration;

use alphapulse::market::Interval;
use serde_json::Value;
use support::*;

const SYMS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

fn shard_sum(run: &Running, f: impl Fn(&alphapulse::metrics::ShardStats) -> u64) -> u64 {
    run.engine.status().shards.iter().map(|s| f(&s.stats)).sum()
}

fn status(run: &Running) -> Value {
    http_json(run.engine.dashboard_addr(), "/api/status")
}

/// `/readyz`: (status code, body as JSON).
fn readyz(run: &Running) -> (u16, Value) {
    let (code, body) = http_get(run.engine.dashboard_addr(), "/readyz");
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The entry of `list` (a `not_live` array) for `stream`.
fn entry<'a>(list: &'a Value, stream: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["stream"] == stream)
}

/// How long the simulator refuses the stream in the first test.
const REFUSED_FOR: Duration = Duration::from_secs(6);

#[test]
fn a_partly_rejected_subscribe_is_retried_until_every_stream_is_live() {
    const REFUSED: &str = "ethusdt@kline_3m";
    let mut sim = sim_config(&SYMS);
    sim.reject_streams = vec![REFUSED.into()];
    sim.reject_streams_for = Some(REFUSED_FOR);
    let run = start(
        sim,
        |c| {
            c.feed.backoff_initial_ms = 400;
            c.feed.backoff_max_ms = 1600;
        },
        &SYMS,
        &[Interval::M1, Interval::M3],
    );

    // While the simulator refuses it: the stream is named as rejected by /readyz (503)
    // and /api/status, the other three are live and deliver.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (code, body) = readyz(&run);
            code == 503
                && entry(&body["not_live"], REFUSED).is_some_and(|e| e["state"] == "rejected")
                && body["not_live"].as_array().map(Vec::len) == Some(1)
        }),
        "/readyz does not name the refused stream alone: {:?} {}",
        readyz(&run),
        status(&run)
    );
    let s = status(&run);
    let e = entry(&s["streams"]["not_live"], REFUSED).expect("listed in /api/status");
    assert_eq!(e["state"], "rejected", "{s}");
    assert!(
        e["reason"].as_str().unwrap().contains("invalid stream"),
        "the exchange's message is the reason: {s}"
    );
    assert_eq!(s["streams"]["configured"], 4, "{s}");
    assert_eq!(s["streams"]["rejected"], 1, "{s}");
    assert!(
        s["shards"][0]["streams_rejected"].as_u64() >= Some(1),
        "{s}"
    );
    assert!(closed(&run, "BTCUSDT", Interval::M1).len() < 100);
    let metrics = http_get(run.engine.dashboard_addr(), "/metrics").1;
    assert!(
        metrics.contains(&format!(
            "alphapulse_stream_not_live{{shard=\"0\",stream=\"{REFUSED}\",state=\"rejected\"}} 1"
        )),
        "{metrics}"
    );
    check_metrics_text(&metrics);

    // It is asked for again with backoff, then accepted: ready, nothing left out.
    assert!(
        wait_until(REFUSED_FOR + Duration::from_secs(15), || readyz(&run).0
            == 200),
        "never ready: {:?} {}",
        readyz(&run),
        status(&run)
    );
    let refused = run.sim.stats().subscribes_refused;
    let rejections = shard_sum(&run, |s| s.streams_rejected.get());
    assert!(
        rejections >= 3,
        "retried more than once while refused: {rejections}"
    );
    // Backoff (0.2–0.4 s, then doubling to at most 0.8–1.6 s): at most 8 retries in
    // the 6 s, where retrying at the pace limit (3 requests a second) would be 18.
    eprintln!("refused requests: {refused}, stream rejections: {rejections}");
    assert!(
        refused <= 2 + 8,
        "{refused} refused requests in {REFUSED_FOR:?}: no backoff"
    );
    // The first request (4 streams) and its half with the refused stream were refused
    // and split; every later refusal was of the stream alone.
    assert_eq!(rejections + 2, refused, "every refusal counted");
    let s = status(&run);
    assert_eq!(s["streams"]["live"], 4, "{s}");
    assert!(
        s["streams"]["not_live"].as_array().unwrap().is_empty(),
        "{s}"
    );

    // The refused series fills from when it was accepted: candles equal to the
    // simulator's klines, no gap, and the others were never interrupted.
    assert!(
        wait_until(Duration::from_secs(20), || closed(
            &run,
            "ETHUSDT",
            Interval::M3
        )
        .len()
            >= 3),
        "{}",
        status(&run)
    );
    for symbol in SYMS {
        for tf in [Interval::M1, Interval::M3] {
            let c = closed(&run, symbol, tf);
            assert!(!c.is_empty(), "{symbol} {tf}");
            assert_match_rest(&run, symbol, tf, &c);
        }
    }
    assert_eq!(shard_sum(&run, |s| s.gaps.get()), 0);
    let s = status(&run);
    for series in s["completeness"]["series"].as_array().unwrap() {
        assert_eq!(series["missing"], 0, "{series}");
        assert_eq!(series["open_gaps"], 0, "{series}");
    }
    assert_eq!(shard_sum(&run, |s| s.reconnects.get()), 0, "{s}");
}

#[test]
fn a_silent_kline_stream_is_flagged() {
    const QUIET: &str = "ethusdt@kline_1m";
    let mut sim = sim_config(&SYMS);
    sim.silent_streams = vec![QUIET.into()];
    let run = start(
        sim,
        |c| c.feed.stream_silence_s = 1.0,
        &SYMS,
        &[Interval::M1],
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = status(&run);
            entry(&s["streams"]["not_live"], QUIET).is_some_and(|e| e["state"] == "silent")
                && s["streams"]["silent"] == 1
                && s["streams"]["live"] == 1
        }),
        "the silent stream is not flagged: {}",
        status(&run)
    );
    // Acknowledged (the exchange accepted it), but nothing came: silent, not rejected.
    assert_eq!(shard_sum(&run, |s| s.subscribe_errors.get()), 0);
    assert!(closed(&run, "BTCUSDT", Interval::M1).len() < 1000);
    let (code, body) = readyz(&run);
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        entry(&body["not_live"], QUIET).map(|e| e["state"].clone()),
        Some("silent".into()),
        "{body}"
    );
    let metrics = http_get(run.engine.dashboard_addr(), "/metrics").1;
    assert!(
        metrics.contains("alphapulse_streams{shard=\"0\",state=\"silent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "alphapulse_stream_not_live{{shard=\"0\",stream=\"{QUIET}\",state=\"silent\"}} 1"
        )),
        "{metrics}"
    );
    check_metrics_text(&metrics);
    // The stream that does deliver stays live throughout.
    let s = status(&run);
    assert!(
        entry(&s["streams"]["not_live"], "btcusdt@kline_1m").is_none(),
        "{s}"
    );
}

#[test]
fn a_close_right_after_server_shutdown_counts_as_a_rotation() {
    let mut sim = sim_config(&SYMS);
    // The exchange closes at once after its notice: no time for make-before-break.
    sim.max_connection_age = Duration::from_secs(2);
    sim.shutdown_grace = Duration::ZERO;
    let run = start(sim, |_| {}, &SYMS, &[Interval::M1]);
    assert!(
        wait_until(Duration::from_secs(30), || shard_sum(&run, |s| s
            .rotations
            .get())
            >= 3),
        "{}",
        status(&run)
    );
    assert!(run.sim.stats().server_shutdowns_sent >= 3);
    let s = status(&run);
    assert_eq!(
        s["shards"][0]["reconnects"], 0,
        "rotations, not reconnects: {s}"
    );
    assert_eq!(
        s["shards"][0]["resets_by_reason"]["server_close"], 0,
        "an announced close is no reset: {s}"
    );
    // Candles still flow.
    for symbol in SYMS {
        let c = closed(&run, symbol, Interval::M1);
        assert!(c.len() >= 3, "{symbol}: {s}");
    }
}
