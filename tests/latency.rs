//! Stage latencies end to end: the engine against the simulator records every stage it
//! runs, and `/api/performance` serves them with the DESIGN.md fields.

#[path = "support/engine.rs"]
mod support;

use std::time::Duration;

use alphapulse::market::Interval;
use support::{http_json, sim_config, start, wait_until};

#[test]
fn performance_reports_the_stages_the_engine_ran() {
    let mut sim = sim_config(&["BTCUSDT", "ETHUSDT"]);
    sim.trade_rate = 50.0;
    let run = start(sim, |_| {}, &["BTCUSDT", "ETHUSDT"], &[Interval::M1]);
    let addr = run.engine.dashboard_addr();
    // The collector merges once a second; candles close every simulated minute (1 s).
    let ok = wait_until(Duration::from_secs(20), || {
        let p = http_json(addr, "/api/performance");
        p["stages"]["recv_to_parsed"]["count"].as_u64().unwrap_or(0) > 100
            && p["stages"]["ring_hop"]["count"].as_u64().unwrap_or(0) > 0
    });
    let p = http_json(addr, "/api/performance");
    assert!(ok, "stages never filled: {p:#}");
    for key in [
        "active_clients",
        "messages_sent",
        "avg_latency_ms",
        "total_messages_received",
        "active_connections",
        "throughput",
    ] {
        assert!(p.get(key).is_some(), "missing {key}: {p:#}");
    }
    assert!(p["total_messages_received"].as_u64().unwrap() > 0);
    assert!(p["avg_latency_ms"].as_f64().unwrap() > 0.0);
    for stage in ["exchange_to_recv", "recv_to_parsed", "ring_hop"] {
        let s = &p["stages"][stage];
        assert!(s["count"].as_u64().unwrap() > 0, "{stage}: {p:#}");
        let (p50, p99, max) = (
            s["p50"].as_f64().unwrap(),
            s["p99"].as_f64().unwrap(),
            s["max"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max * 1.01, "{stage}: {s}");
        for k in ["p90", "p999"] {
            assert!(s[k].is_number(), "{stage}.{k}");
        }
    }
    // Per core: the shard records parse times, the memory sink its ring hops.
    assert!(
        p["per_core"]["shard0"]["recv_to_parsed"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        p["per_core"]["memory"]["ring_hop"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The recent window is a subset of the cumulative figures.
    assert!(
        p["recent"]["stages"]["recv_to_parsed"]["count"]
            .as_u64()
            .unwrap()
            <= p["stages"]["recv_to_parsed"]["count"].as_u64().unwrap()
    );
}
