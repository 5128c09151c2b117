//! Stage latencies end to end: the engine against the simulator records every stage it
//! runs, and `/api/performance` serves them with the fields docs/api.md names.

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
    for key in support::PERFORMANCE_FIELDS {
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
    // Per core: the shard records parse times, the dashboard (which keeps the recent
    // store, so its ring carries every record) its ring hops.
    assert!(
        p["per_core"]["shard0"]["recv_to_parsed"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        p["per_core"]["dashboard"]["ring_hop"]["count"]
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

/// The relay comparison's summary (`bench/relays/compare.py`): each figure's median over
/// the rounds of `--repeat`, and the baselines' medians against the engine's. Its Python
/// unit tests, run here so that the suite covers them.
#[test]
fn relay_comparison_summary_takes_medians_and_ratios() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "bench/relays/test_compare.py"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("python3 (scripts/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("\nOK") && !stderr.contains("Ran 0 tests"),
        "{stderr}"
    );
}

#[test]
fn bench_latency_writes_every_report() {
    let _serial = support::serial();
    let out = std::env::temp_dir().join(format!("alphapulse-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_alphapulse"))
        .args(["bench", "latency", "--rate", "500", "--symbols", "5"])
        .args([
            "--duration",
            "3",
            "--warmup",
            "1",
            "--redis",
            "auto",
            "--out",
        ])
        .arg(&out)
        .env("ALPHAPULSE_PIN_CORES", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench latency did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut table = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut table).unwrap();
    assert!(status.success(), "{table}");
    for stage in [
        "exchange_send",
        "exchange_to_recv",
        "recv_to_parsed",
        "parsed_to_signal",
        "ring_hop",
        "recv_to_db_commit",
        "recv_to_redis_publish",
        "recv_to_dashboard_send",
        "exchange_to_dashboard_client",
    ] {
        let text = std::fs::read_to_string(out.join(format!("{stage}.hgrm")))
            .unwrap_or_else(|e| panic!("{stage}.hgrm: {e}"));
        assert!(
            text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
            "{stage}: {text}"
        );
        assert!(text.contains("#[Mean    =") && text.contains("#[Max     ="));
        assert!(
            table.contains(stage),
            "{stage} missing from the table:\n{table}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let run = &summary["run"];
    assert_eq!(run["unit"], "us");
    assert_eq!(run["intended_rate"], 500.0);
    // The engine's own stages saw the load (a functional check, not a speed check).
    // `exchange_send` is the simulator's own share (one value per write).
    let mut measured = vec![
        "exchange_send",
        "exchange_to_recv",
        "recv_to_parsed",
        "ring_hop",
        "recv_to_dashboard_send",
        "exchange_to_dashboard_client",
    ];
    // Setup installs redis-server; with it, the publisher and the subscriber measure too.
    if run["stages"].get("exchange_to_redis_subscriber").is_some() {
        measured.extend(["recv_to_redis_publish", "exchange_to_redis_subscriber"]);
    }
    for stage in measured {
        assert!(
            run["stages"][stage]["count"].as_u64().unwrap() > 50,
            "{stage}: {run:#}"
        );
    }
    // The engine's stages cover the same window as its message count: each edge is
    // settled (every role hands over what it recorded), not read up to a hand-off plus a
    // merge interval (1.5 s) late by a different amount at each edge. What may differ
    // is a burst a sink took on the other side of an edge than the shard did.
    assert_eq!(run["stages_settled"], true, "{run:#}");
    let updates = run["engine_messages"].as_u64().unwrap();
    // (`ring_hop` holds every sink's hops; `ring_hop_dashboard` one per update.)
    for stage in [
        "exchange_to_recv",
        "recv_to_parsed",
        "ring_hop_dashboard",
        "recv_to_dashboard_send",
    ] {
        let count = run["stages"][stage]["count"].as_u64().unwrap();
        assert!(
            count.abs_diff(updates) <= (updates / 50).max(10),
            "{stage}: {count} values for {updates} updates: {run:#}"
        );
    }
    // What the host took from the window: a probe on every core woke through it (3 s at
    // 20 ms: about 150 wake-ups), and the table says so in its own line.
    let host = &run["host"];
    let cores = host["cores"].as_array().expect("host.cores");
    let cpus = core_affinity::get_core_ids().map_or(0, |c| c.len());
    assert_eq!(cores.len(), cpus, "{host:#}");
    for core in cores {
        let wakeups = core["wakeups"].as_u64().unwrap();
        assert!((30..=200).contains(&wakeups), "{host:#}");
        assert!(
            core["lateness_us"]["max"].as_f64().unwrap()
                >= core["lateness_us"]["p50"].as_f64().unwrap()
        );
    }
    assert!(host["stalled"].is_boolean() && host["worst_lateness_us"].as_f64().is_some());
    assert!(
        table.contains("host: lateness of a 20 ms sleeper per core"),
        "{table}"
    );
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn metrics_carry_stage_latency_histograms_and_process_figures_and_pass_promtool() {
    let run = start(
        sim_config(&["BTCUSDT"]),
        |_| {},
        &["BTCUSDT"],
        &[Interval::M1],
    );
    let addr = run.engine.dashboard_addr();
    let ok = wait_until(Duration::from_secs(20), || {
        support::http_get(addr, "/metrics").1.contains(
            "alphapulse_stage_latency_seconds_count{stage=\"recv_to_parsed\",core=\"shard0\"}",
        )
    });
    let (code, first) = support::http_get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(ok, "no stage latency in /metrics:\n{first}");
    for needle in [
        "alphapulse_stage_latency_seconds_sum{stage=\"ring_hop\",core=\"dashboard\"}",
        "alphapulse_build_info{version=",
        "process_resident_memory_bytes ",
        "alphapulse_thread_cpu_seconds_total{thread=\"shard-0\",mode=\"user\"}",
        "# TYPE alphapulse_spool_bytes gauge",
        "alphapulse_ring_depth{shard=\"0\",ring=\"shard0->dashboard\"}",
    ] {
        assert!(first.contains(needle), "missing {needle}:\n{first}");
    }
    assert_eq!(
        support::metric_type(&first, "alphapulse_stage_latency_seconds"),
        Some("histogram")
    );
    assert!(
        !first.contains("quantile="),
        "no summary quantiles are left"
    );
    // The standard process figures, read from /proc.
    let one = |name: &str| -> f64 {
        let s = support::samples(&first, name);
        assert_eq!(s.len(), 1, "{name}:\n{first}");
        s[0].value
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = one("process_start_time_seconds");
    assert!(
        started > now - 3600.0 && started <= now + 1.0,
        "{started} {now}"
    );
    assert!(one("process_open_fds") > 0.0);
    assert!(one("process_max_fds") >= one("process_open_fds"));
    assert!(one("process_virtual_memory_bytes") >= one("process_resident_memory_bytes"));
    assert!(one("process_resident_memory_bytes") > 0.0);
    assert!(
        one("process_threads") >= 3.0,
        "shard, dashboard, collector at least"
    );
    assert!(one("process_cpu_seconds_total") > 0.0);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(support::metric_type(&first, name), Some(kind), "{name}");
    }
    // Let more values arrive, then check both scrapes: every histogram is whole and the
    // second never below the first (counters since start, not a window).
    std::thread::sleep(Duration::from_millis(2500));
    let second = support::http_get(addr, "/metrics").1;
    let first = histograms(&first);
    let second = histograms(&second);
    assert!(first.len() >= 3, "{first:?}");
    for (key, h) in &second {
        assert_eq!(
            h.buckets.len(),
            alphapulse::latency::BUCKETS.len() + 1,
            "{key}"
        );
        let mut last = (0.0, 0.0);
        for (le, n) in &h.buckets {
            assert!(
                *le > last.0 && *n >= last.1,
                "{key}: buckets {:?}",
                h.buckets
            );
            last = (*le, *n);
        }
        assert!(last.0.is_infinite(), "{key}: the last bucket is +Inf");
        assert_eq!(last.1, h.count, "{key}: _count is the +Inf bucket");
        assert!(h.count > 0.0 && h.sum > 0.0, "{key}: {h:?}");
        if let Some(old) = first.get(key) {
            assert!(h.count >= old.count && h.sum >= old.sum, "{key}");
            for ((_, a), (_, b)) in old.buckets.iter().zip(&h.buckets) {
                assert!(b >= a, "{key}: a bucket went down");
            }
        }
    }
    let parsed = &second["recv_to_parsed/shard0"];
    assert!(
        parsed.count > first["recv_to_parsed/shard0"].count,
        "new values are added"
    );
    // Parsing takes well under a second: most values are in the low buckets.
    let under_1s = parsed.buckets.iter().find(|(le, _)| *le == 1.0).unwrap().1;
    assert!(under_1s >= parsed.count * 0.99, "{parsed:?}");
    support::check_metrics_text(&support::http_get(addr, "/metrics").1);
}

/// One stage histogram of one core, as `/metrics` exports it.
#[derive(Debug)]
struct Histogram {
    /// (le, cumulative count), in the order exported.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// Every `alphapulse_stage_latency_seconds` histogram, keyed `stage/core`.
fn histograms(body: &str) -> std::collections::BTreeMap<String, Histogram> {
    let name = "alphapulse_stage_latency_seconds";
    let key = |s: &support::Sample| format!("{}/{}", s.labels["stage"], s.labels["core"]);
    let mut out = std::collections::BTreeMap::new();
    for s in support::samples(body, &format!("{name}_bucket")) {
        let le = s.labels["le"].replace("+Inf", "inf").parse().unwrap();
        out.entry(key(&s))
            .or_insert(Histogram {
                buckets: Vec::new(),
                sum: f64::NAN,
                count: f64::NAN,
            })
            .buckets
            .push((le, s.value));
    }
    for s in support::samples(body, &format!("{name}_sum")) {
        out.get_mut(&key(&s)).expect("a _sum with buckets").sum = s.value;
    }
    for s in support::samples(body, &format!("{name}_count")) {
        out.get_mut(&key(&s)).expect("a _count with buckets").count = s.value;
    }
    out
}
