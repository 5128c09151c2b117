//! The binary as a user runs it: `alphapulse demo` and `alphapulse run` against the
//! simulator, in child processes, bounded in time.

#[path = "support/engine.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn alphapulse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alphapulse"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ALPHAPULSE_PIN_CORES", "false")
        .env("ALPHAPULSE_LOG", "warn")
        .current_dir(std::env::temp_dir());
    c
}

/// `alphapulse run` following BTCUSDT 1m on `sim`, its dashboard on `dashboard`.
fn run_against(sim: &alphapulse::simulator::SimHandle, dashboard: std::net::SocketAddr) -> Command {
    let mut c = alphapulse();
    c.env("BINANCE_WS_URL", sim.ws_url())
        .envs(support::clock_env(sim))
        .env("BINANCE_REST_URL", sim.rest_url())
        .env("SYMBOLS", "BTCUSDT")
        .env("TIMEFRAMES", "1m")
        .env("DASHBOARD_ADDR", dashboard.to_string())
        .arg("run");
    c
}

/// Reads the child's stdout lines on a thread, so the test can wait with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The demo's first minute as a new user sees it: the URL, then (thanks to the
/// simulator's seeded history and the warm start) signals within 10 seconds, each
/// printed as it fires and served by the API.
#[test]
fn demo_prints_its_url_serves_it_and_closes_candles() {
    let _serial = support::serial();
    let mut child = support::ChildGuard(
        alphapulse()
            .env("DASHBOARD_ADDR", "127.0.0.1:0")
            .args(["demo", "--seconds", "12"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn demo"),
    );
    let lines = lines_of(&mut child.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut url = None;
    let mut last_summary = String::new();
    let mut ready_with_candles = false;
    let mut first_signal = None;
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.split("dashboard at http://").nth(1) {
                    let addr: std::net::SocketAddr =
                        rest.split('/').next().unwrap().parse().unwrap();
                    assert_eq!(support::http_get(addr, "/healthz").0, 200);
                    // The conformance echo is off unless asked for.
                    assert_eq!(support::http_get(addr, "/ws/echo").0, 404);
                    url = Some((addr, Instant::now()));
                }
                // `signal BTCUSDT 1m rsi sell at 60123.45 (confidence 0.72)`
                if let (Some(rest), Some((addr, shown)), None) =
                    (line.strip_prefix("signal "), url, &first_signal)
                {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let (symbol, timeframe, kind) = (words[0], words[1], words[2]);
                    let listed = support::http_json(
                        addr,
                        &format!("/api/signals?symbol={symbol}&timeframe={timeframe}"),
                    );
                    assert!(
                        listed["signals"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|s| s["kind"] == kind)),
                        "the printed signal {line:?} is not served: {listed}"
                    );
                    first_signal = Some((line.clone(), shown.elapsed()));
                }
                if line.starts_with("t=") {
                    // `t=5s shard0 360 msg/s | candles closed 27 | signals 2 | reconnects 0 | gaps 0 | ready`
                    let closed: u64 = line
                        .split("candles closed ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    ready_with_candles |= closed > 0 && line.ends_with("ready");
                    last_summary = line;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.0.wait().expect("demo exits");
    assert!(status.success(), "demo exit status {status}");
    assert!(url.is_some(), "the demo printed no dashboard URL");
    assert!(
        ready_with_candles,
        "never ready with closed candles; last: {last_summary:?}"
    );
    let (line, after) = first_signal.expect("the demo printed no signal");
    assert!(
        after <= Duration::from_secs(10),
        "the first signal came {after:?} after the URL: {line}"
    );
}

#[test]
fn run_follows_an_external_simulator_and_stops_on_sigterm() {
    let _serial = support::serial();
    let sim = alphapulse::simulator::start(support::sim_config(&["BTCUSDT"])).expect("simulator");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dashboard: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = support::ChildGuard(
        run_against(&sim, dashboard)
            .arg("--conformance-echo")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn run"),
    );
    let ready = support::wait_until(Duration::from_secs(30), || {
        support::http_get(dashboard, "/readyz").0 == 200
    });
    // `run --conformance-echo` serves /ws/echo (426: a WebSocket path, asked for
    // without an upgrade; 404 when it is off).
    let echo = support::http_get(dashboard, "/ws/echo").0;
    let closed = ready
        && support::wait_until(Duration::from_secs(20), || {
            let (code, body) =
                support::http_get(dashboard, "/api/candles?symbol=BTCUSDT&timeframe=1m");
            code == 200 && body.contains("\"closed\":true")
        });
    // The main thread waits for the signal asleep: it does not wake to look for it.
    let main_task = std::path::PathBuf::from(format!("/proc/{0}/task/{0}", child.0.id()));
    let main_wakes = || support::voluntary_switches(&main_task).expect("the child's main thread");
    let before = main_wakes();
    std::thread::sleep(Duration::from_secs(2));
    let woke = main_wakes() - before;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready, "the engine never became ready");
    assert_eq!(echo, 426, "/ws/echo with --conformance-echo");
    assert!(closed, "no closed candle served");
    assert!(
        woke <= 2,
        "the main thread woke {woke} times in 2 s of waiting for a signal"
    );
    let status = status.expect("run stops within 15 s of SIGTERM");
    assert!(status.success(), "run exit status {status}");
}

/// Runs `alphapulse run` against `sim` with stderr on a pipe and the given log
/// environment (no `ALPHAPULSE_LOG` unless given); returns everything it logged from
/// start to a SIGTERM once ready.
fn logs_of_a_run(sim: &alphapulse::simulator::SimHandle, log_env: &[(&str, &str)]) -> String {
    let dashboard = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut command = run_against(sim, dashboard);
    command.env_remove("ALPHAPULSE_LOG");
    for (k, v) in log_env {
        command.env(k, v);
    }
    let (ready, text) = stderr_until(command, || {
        support::wait_until(Duration::from_secs(30), || {
            support::http_get(dashboard, "/readyz").0 == 200
        })
    });
    assert!(
        ready,
        "the engine never became ready ({log_env:?}):\n{text}"
    );
    text
}

/// Starts `command` with its stderr on a pipe, waits for `until`, stops it with SIGTERM
/// (bounded), and returns what `until` said and everything the child wrote to stderr.
fn stderr_until(mut command: Command, until: impl FnOnce() -> bool) -> (bool, String) {
    let mut child = support::ChildGuard(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn alphapulse"),
    );
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let held = until();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    (held, reader.join().expect("stderr reader"))
}

/// Logs as journald, `kubectl logs` and files get them: no colour escapes on a pipe,
/// `RUST_LOG` honoured, a bare level leaves the dependencies at `warn`, and
/// `ALPHAPULSE_LOG_FORMAT=json` writes one JSON object per line.
#[test]
fn logs_fit_pipes_and_log_tools() {
    let _serial = support::serial();
    let sim = alphapulse::simulator::start(support::sim_config(&["BTCUSDT"])).expect("simulator");

    let text = logs_of_a_run(&sim, &[]);
    assert!(text.contains("engine running"), "{text}");
    // The orderly stop says what it did, then that it stopped.
    assert!(
        text.contains("while stopping: nothing to flush (no database, no Redis); dropped nothing"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("stopped"),
        "the last line is not 'stopped':\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes on a pipe:\n{text}"
    );

    // RUST_LOG is read when ALPHAPULSE_LOG is not set.
    let text = logs_of_a_run(&sim, &[("RUST_LOG", "warn")]);
    assert!(
        !text.lines().any(|l| l.contains(" INFO ")),
        "RUST_LOG=warn still logged INFO:\n{text}"
    );

    // A bare level is the engine's: no dependency's debugging (the REST client's, the
    // TLS library's) comes with it.
    let text = logs_of_a_run(&sim, &[("ALPHAPULSE_LOG", "debug")]);
    let foreign: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("DEBUG") || l.contains("TRACE"))
        .filter(|l| {
            let target = l.split_whitespace().nth(2).unwrap_or("");
            !target.starts_with("alphapulse")
        })
        .collect();
    assert!(foreign.is_empty(), "dependency debugging: {foreign:#?}");
    assert!(text.contains("engine running"), "{text}");

    // JSON lines for log aggregation, colour or not.
    let text = logs_of_a_run(
        &sim,
        &[("ALPHAPULSE_LOG_FORMAT", "json"), ("NO_COLOR", "1")],
    );
    let mut running = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{text}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["target"].is_string(), "{line}");
        running |= v["fields"]["message"] == "engine running"
            && v["level"] == "INFO"
            && v["target"] == "alphapulse::engine";
    }
    assert!(running, "no 'engine running' object:\n{text}");
}

/// Offline (nothing answers on the exchange's address), the REST thread's failures of
/// every series come out as one line per cause and a count, not one line per series per
/// retry round.
#[test]
fn an_offline_run_logs_each_failure_cause_once_with_a_count() {
    let _serial = support::serial();
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (closed, dashboard) = (free(), free());
    let mut command = alphapulse();
    command
        .env("BINANCE_WS_URL", format!("ws://{closed}"))
        .env("BINANCE_REST_URL", format!("http://{closed}"))
        .env("SYMBOLS", "BTCUSDT,ETHUSDT,ADAUSDT")
        .env("TIMEFRAMES", "1m,5m,15m,1h")
        .env("DASHBOARD_ADDR", dashboard.to_string())
        .arg("run");
    // Until every series' warm start has failed and been given up.
    let (given_up, text) = stderr_until(command, || {
        support::wait_until(Duration::from_secs(30), || {
            let (code, body) = support::http_get(dashboard, "/api/status");
            code == 200
                && serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|s| s["signals"]["warm"]["failures"] == 12)
        })
    });
    assert!(given_up, "the 12 warm starts were not given up:\n{text}");
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    // 12 series, each retried and then given up: one line each for the first failure
    // of the cause, and one each saying how many more there were.
    assert_eq!(lines("REST request failed; retrying"), 1, "{text}");
    assert_eq!(lines("REST request failed for good"), 1, "{text}");
    assert_eq!(lines("more times (retrying"), 1, "{text}");
    assert_eq!(
        lines("more REST requests failed for good the same way"),
        1,
        "{text}"
    );
    assert!(
        text.contains("more=11"),
        "the 11 other series given up are counted: {text}"
    );
}
