//! The dashboard page in a real browser: headless Chromium loads `/` from
//! `alphapulse demo` (a child process) and the test reads what the page rendered.
//!
//! Chromium runs three times, each bounded in time: two `--dump-dom` loads some seconds
//! apart (each lets the page run for a budget of virtual time: it loads the history,
//! then takes live updates over the WebSocket or, where that is unavailable, by polling)
//! and one `--screenshot`, saved with the two DOM dumps under `target/test-artifacts/`
//! (or `ALPHAPULSE_TEST_ARTIFACTS`). The page puts machine-checkable values in
//! `data-testid` elements; the test checks that a price rendered, that live updates
//! arrived, and that the newest candle moved on between the two loads.
//!
//! A second test keeps one page open and reads it live over the DevTools protocol
//! (`--remote-debugging-port`, `Runtime.evaluate`): prices move on in real time, picking
//! another symbol and timeframe shows that series, and after the demo is killed and
//! started again on the same address the page says so and recovers by itself.
//!
//! Signals: the demo makes some within seconds at its test speed; the test waits for the
//! engine to report one, then requires the page to show it.
//!
//! Chromium is required (`scripts/setup.sh` installs it); with
//! `ALPHAPULSE_SKIP_BROWSER=1` a machine without it skips the test with a printed reason.

#[path = "support/engine.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Virtual time the page runs before Chromium dumps or shoots it: enough for the status
/// poll, the history load and several live updates.
const VIRTUAL_TIME_BUDGET_MS: u64 = 8000;
/// Wall-clock bound of one Chromium run (a hung browser fails the test, never hangs it).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// Between the two loads: at `--speed 600` a 1m candle closes every 0.1 s, so the newest
/// candle has certainly moved on.
const BETWEEN_LOADS: Duration = Duration::from_secs(2);
const DEMO_SPEED: &str = "600";
/// The restarted demo runs its market slower, so it can never catch up with the first
/// one's candles while the test looks: a page still showing those fails.
const RESTARTED_DEMO_SPEED: &str = "60";
/// The demo stops by itself after this even if the guard never runs.
const DEMO_SECONDS: &str = "120";

#[test]
fn the_dashboard_page_renders_live_prices_in_chromium() {
    let Some(demo) = PageDemo::start() else {
        return;
    };
    let (browser, artifacts, addr) = (demo.browser.as_path(), demo.artifacts.as_path(), demo.addr);
    let url = format!("http://{addr}/");

    let first = dump_dom(browser, &url);
    save(&artifacts.join("dashboard-1.html"), first.as_bytes());
    std::thread::sleep(BETWEEN_LOADS);
    let made_one = support::wait_until(Duration::from_secs(30), || signals_total(addr) > 0);
    assert!(made_one, "the demo made no signal within 30 s");
    let signals_made = signals_total(addr);
    let second = dump_dom(browser, &url);
    save(&artifacts.join("dashboard-2.html"), second.as_bytes());
    let shot = artifacts.join("dashboard.png");
    screenshot(browser, &url, &shot);

    for (name, dom) in [("first", &first), ("second", &second)] {
        assert!(
            dom.contains("data-ready=\"1\""),
            "{name} load: the page never finished loading its history"
        );
        let status = testid(dom, "engine-status").map(|e| e.text);
        assert_eq!(status.as_deref(), Some("ok"), "{name} load: engine status");
        // The exchange runs 600 times the wall clock: the page says its times are
        // simulated.
        let label = testid(dom, "sim-time").expect("a simulated-time label");
        assert!(
            !label.attr("class").unwrap_or_default().contains("hidden"),
            "{name} load: the simulated-time label is hidden"
        );
        let speed = testid(dom, "sim-speed").map(|e| e.text);
        assert_eq!(
            speed.as_deref(),
            Some(format!("{DEMO_SPEED}\u{d7} wall clock").as_str()),
            "{name} load: simulated-time label"
        );
        let price = testid(dom, "last-price").expect("a last-price element");
        let value: f64 = price
            .text
            .parse()
            .unwrap_or_else(|_| panic!("{name} load: last price {:?} is not a number", price.text));
        assert!(value > 0.0, "{name} load: last price {value}");
        let candles = number(dom, "candle-count");
        assert!(candles > 1, "{name} load: {candles} candles on the chart");
        assert!(
            dom.contains("data-testid=\"shard-row\""),
            "{name} load: no shard health row"
        );
        // Completeness per series: the demo loses nothing, so it reads 100 %.
        assert!(
            dom.contains("data-testid=\"completeness-row\""),
            "{name} load: no completeness row"
        );
        let complete = testid(dom, "completeness-ratio").map(|e| e.text);
        assert_eq!(
            complete.as_deref(),
            Some("100 %"),
            "{name} load: completeness"
        );
    }
    // Live updates reached the page after its history loaded (over the WebSocket, or
    // by the polling fallback where the engine has no WebSocket).
    let updates = number(&second, "update-count");
    assert!(
        updates > 0,
        "no live update reached the page; see {}",
        artifacts.display()
    );
    let open_time = |dom: &str| -> i64 {
        testid(dom, "last-price")
            .and_then(|e| e.attr("data-open-time"))
            .and_then(|t| t.parse().ok())
            .expect("the last price names its candle's open time")
    };
    let (t1, t2) = (open_time(&first), open_time(&second));
    assert!(
        t2 > t1,
        "the newest candle did not move on between loads ({t1} then {t2})"
    );

    let shown = number(&second, "signal-count");
    assert!(
        shown > 0 && second.contains("data-testid=\"signal-item\""),
        "the engine made {signals_made} signals but the page shows {shown}"
    );

    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "the screenshot is not a full PNG ({} bytes)",
        png.len()
    );
    eprintln!("artifacts: {}", artifacts.display());
}

/// The page stays open while the engine is killed and started again on the same
/// address: it reports the engine unreachable, then recovers by itself (no reload),
/// shows the new engine's prices and keeps updating. Driven live over the DevTools
/// protocol, in real time.
#[test]
fn the_page_recovers_by_itself_when_the_engine_restarts() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let _serial = support::serial();
    let want = free_loopback_addr();
    let (demo, addr) = start_demo(&want.to_string(), DEMO_SPEED);
    assert_eq!(addr, want, "the demo did not listen where it was asked to");
    wait_for_closed_candle(addr);
    let mut page = LivePage::open(&browser, &format!("http://{addr}/"));

    let first = page.wait_for("a price from the engine", |s| {
        s.ready && s.status == "ok" && s.open_time.is_some()
    });
    page.wait_for("a newer candle on the open page", |s| {
        s.open_time > first.open_time && s.updates > first.updates
    });

    // Another symbol and timeframe, picked as a user would.
    page.choose("symbol-select", "ETHUSDT");
    page.choose("timeframe-select", "5m");
    let picked = wait_for_engine_series(&mut page, addr, "ETHUSDT 5m candles");
    assert_eq!(
        (picked.symbol.as_str(), picked.timeframe.as_str()),
        ("ETHUSDT", "5m")
    );

    drop(demo);
    page.wait_for("the engine reported unreachable", |s| {
        s.status == "unreachable" && s.feed.starts_with("offline")
    });

    let (_demo, again) = start_demo(&want.to_string(), RESTARTED_DEMO_SPEED);
    assert_eq!(
        again, want,
        "the restarted demo did not take the same address"
    );
    wait_for_closed_candle(addr);
    page.wait_for("the engine reported back", |s| s.status == "ok");
    let shown = wait_for_engine_series(&mut page, addr, "the new engine's candles");
    page.wait_for("live updates again", |s| s.open_time > shown.open_time);
    page.finish();
}

/// Waits until the page shows the engine's candles of the page's selection, and only
/// those: its newest is at least the newest closed one the engine had before, and no
/// later than the newest it has after the page was read; and the page has no more
/// candles than the engine (a page that kept another series' or an old engine's candles
/// would fail one of these).
/// What a layout check reads from the page at one size.
/// What the order book card shows: its state, level rows per side, and whether the
/// ladder reads in price order (asks descending to the best ask above the best bid, bids
/// descending below).
const BOOK_JS: &str = r#"(() => {
  const card = document.querySelector('[data-testid="book-card"]');
  const rows = [...document.querySelectorAll('[data-testid="book-level"]')];
  const price = (r) => Number(r.cells[0].textContent.replace(/,/g, ''));
  const asks = rows.filter((r) => r.dataset.side === 'ask').map(price);
  const bids = rows.filter((r) => r.dataset.side === 'bid').map(price);
  const all = asks.concat(bids);
  const ordered = all.every((p, i) => i === 0 || p < all[i - 1]);
  return JSON.stringify({
    hidden: !card || card.classList.contains('hidden'),
    state: (document.querySelector('[data-testid="book-state"]') || {}).textContent,
    asks: asks.length, bids: bids.length, ordered,
  });
})()"#;

const LAYOUT_JS: &str = r#"(() => {
  const q = (id) => document.querySelector('[data-testid="' + id + '"]');
  const table = q("latency-table");
  const card = q("latency-card");
  const heads = Array.from(table.querySelectorAll("th")).map((th) => th.textContent);
  const rows = table.querySelectorAll('[data-testid="latency-row"]').length;
  // Wrapped cells: a series or stage name on more than one line.
  const cells = Array.from(document.querySelectorAll(".table td:first-child, .series-table td:first-child"));
  const wrapped = cells.filter((td) => td.getClientRects().length > 1 ||
    td.getBoundingClientRect().height > 2.2 * parseFloat(getComputedStyle(td).fontSize)).length;
  const labels = Array.from(document.querySelectorAll(".pill")).map((p) => p.getBoundingClientRect());
  return JSON.stringify({
    page_overflow: document.documentElement.scrollWidth - window.innerWidth,
    table_overflow: table.scrollWidth - card.clientWidth,
    heads, rows, wrapped,
    throughput: q("throughput").textContent,
    width: window.innerWidth,
  });
})()"#;

/// The page at a laptop, a desktop and a phone size: nothing cut off (the latency table
/// shows p99, p99.9 and max, in full on the desktop sizes and in its own scroll box on
/// the phone), no sideways page scroll, no wrapped series name, a throughput figure from
/// the first status push. Screenshots of each size are kept as test artifacts.
#[test]
fn the_page_fits_a_laptop_a_desktop_and_a_phone() {
    let Some(demo) = PageDemo::start() else {
        return;
    };
    let (browser, artifacts, addr) = (demo.browser.as_path(), demo.artifacts.as_path(), demo.addr);
    let mut page = LivePage::open(browser, &format!("http://{addr}/"));
    page.wait_for("a price from the engine", |s| {
        s.ready && s.open_time.is_some()
    });
    // The demo keeps every symbol's order book: the selected one's ladder shows, in sync.
    let mut book = serde_json::Value::Null;
    let shown = support::wait_until(Duration::from_secs(20), || {
        let text = page.eval(BOOK_JS);
        book = serde_json::from_str(text.as_str().unwrap_or("{}")).unwrap_or_default();
        book["state"] == "in sync"
            && book["asks"].as_u64() >= Some(5)
            && book["bids"].as_u64() >= Some(5)
    });
    assert!(shown, "the order book card: {book}");
    assert!(
        book["ordered"] == true,
        "asks above bids, best in the middle: {book}"
    );
    for (width, height, phone) in [(1280, 800, false), (1920, 1080, false), (390, 844, true)] {
        page.command(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone }),
        );
        let mut layout = serde_json::Value::Null;
        let fits = support::wait_until(Duration::from_secs(10), || {
            let text = page.eval(LAYOUT_JS);
            layout = serde_json::from_str(text.as_str().unwrap_or("{}")).unwrap_or_default();
            layout["width"] == width && layout["rows"].as_u64() > Some(0)
        });
        assert!(
            fits,
            "{width}x{height}: the page did not take the size: {layout}"
        );
        let shot = page.command(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": false }),
        );
        let png = base64_decode(shot["data"].as_str().expect("a screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "{width}x{height}: not a PNG");
        save(
            &artifacts.join(format!("dashboard-{width}x{height}.png")),
            &png,
        );

        let size = format!("{width}x{height}");
        assert!(
            layout["page_overflow"].as_i64() <= Some(1),
            "{size}: the page scrolls sideways: {layout}"
        );
        let heads: Vec<&str> = layout["heads"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h.as_str())
            .collect();
        assert_eq!(
            heads,
            ["stage", "count", "p50", "p90", "p99", "p99.9", "max"],
            "{size}"
        );
        if !phone {
            assert!(
                layout["table_overflow"].as_i64() <= Some(0),
                "{size}: the latency table is cut off: {layout}"
            );
        }
        assert_eq!(
            layout["wrapped"], 0,
            "{size}: series or stage names wrap: {layout}"
        );
        assert!(
            layout["throughput"].as_str().is_some_and(|t| t != "n/a"),
            "{size}: no throughput figure: {layout}"
        );
    }
    page.finish();
}

/// With `DASHBOARD_TOKEN`, a link carrying the token opens the page, which trades it
/// for a session cookie at once: the address bar and history keep no token, scripts
/// cannot read the cookie, the WebSocket runs on it. Without the token in the link the
/// page asks for it.
#[test]
fn the_token_leaves_the_address_bar_for_a_session_cookie() {
    const TOKEN: &str = "page-token-0123456789";
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let _serial = support::serial();
    let (_demo, addr) = start_demo_with("127.0.0.1:0", DEMO_SPEED, &[("DASHBOARD_TOKEN", TOKEN)]);
    let up = support::wait_until(Duration::from_secs(30), || {
        support::http_get(addr, &format!("/api/status?token={TOKEN}")).0 == 200
    });
    assert!(up, "the demo's dashboard never answered");

    let mut page = LivePage::open(&browser, &format!("http://{addr}/?token={TOKEN}&from=link"));
    page.wait_for("the page loads with the token", |s| {
        s.ready && s.status == "ok" && s.open_time.is_some()
    });
    page.wait_for("live updates over the WebSocket", |s| s.feed == "websocket");
    let href = page.eval("window.location.href");
    let href = href.as_str().unwrap_or_default();
    assert!(
        !href.contains(TOKEN),
        "the token stayed in the address bar: {href}"
    );
    assert!(href.contains("from=link"), "other parameters stay: {href}");
    let cookies = page.eval("document.cookie");
    assert!(
        !cookies
            .as_str()
            .unwrap_or_default()
            .contains("alphapulse_session"),
        "scripts can read the session cookie: {cookies}"
    );
    page.finish();

    // A fresh browser without the token: the page asks for it, and opens with it.
    let mut page = LivePage::open(&browser, &format!("http://{addr}/"));
    let asks = support::wait_until(Duration::from_secs(20), || {
        page.eval("!document.querySelector('[data-testid=\"login\"]').classList.contains('hidden')")
            == serde_json::Value::Bool(true)
    });
    assert!(asks, "the page did not ask for the token");
    page.eval(&format!(
        "(() => {{ document.getElementById('login-token').value = {TOKEN:?}; \
         document.getElementById('login').requestSubmit(); return true; }})()"
    ));
    page.wait_for("the page loads after the token was entered", |s| {
        s.status == "ok" && s.open_time.is_some()
    });
    page.finish();
}

/// A demo for one page test: Chromium found, the artifacts directory made, the demo at
/// [`DEMO_SPEED`] with a closed candle, the tests' serial lock held.
struct PageDemo {
    browser: PathBuf,
    artifacts: PathBuf,
    addr: SocketAddr,
    _demo: support::ChildGuard,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl PageDemo {
    /// `None` (and the test is skipped, saying so) without Chromium.
    fn start() -> Option<PageDemo> {
        let browser = browser_or_skip()?;
        let artifacts = artifacts_dir();
        std::fs::create_dir_all(&artifacts).expect("create the artifacts directory");
        let serial = support::serial();
        let (demo, addr) = start_demo("127.0.0.1:0", DEMO_SPEED);
        wait_for_closed_candle(addr);
        Some(PageDemo {
            browser,
            artifacts,
            addr,
            _demo: demo,
            _serial: serial,
        })
    }
}

/// Standard base64 (DevTools sends screenshots so).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn wait_for_engine_series(page: &mut LivePage, addr: SocketAddr, what: &str) -> PageState {
    let newest = |body: &serde_json::Value, key: &str| -> Option<i64> {
        body[key]
            .as_array()?
            .iter()
            .filter_map(|c| c["open_time"].as_i64())
            .max()
    };
    let selected = page.state();
    let series = format!(
        "/api/candles?symbol={}&timeframe={}&limit=1000",
        selected.symbol, selected.timeframe
    );
    let floor = newest(&support::http_json(addr, &series), "candles");
    page.wait_for(what, |s| {
        let after = support::http_json(addr, &series);
        let ceiling = newest(&after, "live").max(newest(&after, "candles"));
        let count = ["candles", "live"]
            .iter()
            .map(|k| after[*k].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        s.ready
            && (s.symbol.as_str(), s.timeframe.as_str())
                == (selected.symbol.as_str(), selected.timeframe.as_str())
            && s.price.parse::<f64>().is_ok_and(|p| p > 0.0)
            && s.open_time.is_some()
            && s.open_time >= floor
            && s.open_time <= ceiling
            && s.candles <= count
    })
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// Chromium, or `None` (with the reason printed) when it is absent and
/// `ALPHAPULSE_SKIP_BROWSER=1`; absent otherwise fails, since the set-up installs it.
fn browser_or_skip() -> Option<PathBuf> {
    if let Some(browser) = chromium() {
        return Some(browser);
    }
    if std::env::var("ALPHAPULSE_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: no Chromium found (/usr/bin/chromium or chromium on PATH) and \
             ALPHAPULSE_SKIP_BROWSER=1"
        );
        return None;
    }
    panic!(
        "no Chromium found (/usr/bin/chromium or chromium on PATH): run scripts/setup.sh, \
         or set ALPHAPULSE_SKIP_BROWSER=1 to skip this test"
    );
}

/// Chromium: Debian's `/usr/bin/chromium`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALPHAPULSE_TEST_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

fn save(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn wait_for_closed_candle(addr: SocketAddr) {
    let ready = support::wait_until(Duration::from_secs(30), || {
        let (code, body) = support::http_get(addr, "/api/candles?timeframe=1m&limit=1");
        code == 200 && body.contains("\"closed\":true")
    });
    assert!(ready, "the demo served no closed candle within 30 s");
}

/// Starts `alphapulse demo` with its dashboard on `dashboard_addr` (port 0: any free
/// port) and returns it with the address it printed.
fn start_demo(dashboard_addr: &str, speed: &str) -> (support::ChildGuard, SocketAddr) {
    start_demo_with(dashboard_addr, speed, &[])
}

/// [`start_demo`] with more environment (a dashboard token).
fn start_demo_with(
    dashboard_addr: &str,
    speed: &str,
    env: &[(&str, &str)],
) -> (support::ChildGuard, SocketAddr) {
    let mut child = support::ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_alphapulse"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ALPHAPULSE_PIN_CORES", "false")
            .env("ALPHAPULSE_LOG", "warn")
            .env("DASHBOARD_ADDR", dashboard_addr)
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .args(["demo", "--speed", speed, "--seconds", DEMO_SECONDS])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn alphapulse demo"),
    );
    let out = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // The reader keeps draining after the URL is found: a closed pipe would make the
    // demo's next summary line fail.
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.split("dashboard at http://").nth(1) {
                    let addr = rest
                        .split('/')
                        .next()
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("no address in {line:?}"));
                    return (child, addr);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("the demo printed no dashboard URL within 30 s");
}

fn signals_total(addr: SocketAddr) -> u64 {
    let status = support::http_json(addr, "/api/status");
    status["signals"]["total"].as_u64().unwrap_or(0)
}

/// A Chromium profile directory of its own, removed afterwards.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Profile {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("alphapulse-browser-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a Chromium profile directory");
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills Chromium's whole process group (the browser and the renderer, GPU and zygote
/// processes it started) when dropped.
struct GroupGuard(std::process::Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on the process group of our own child, which it leads.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout. Panics with
/// the end of its stderr if it fails or overruns [`CHROMIUM_TIMEOUT`].
/// Headless Chromium with its own profile, isolated from the network beyond loopback.
fn chromium_command(browser: &Path, profile: &Profile) -> Command {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        // The page's console goes to stderr, so a script error fails the test.
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1440,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    cmd
}

/// The page's uncaught script errors among Chromium's stderr lines.
fn script_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") && l.contains("Uncaught"))
        .collect()
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout. Panics with
/// the end of its stderr if it fails or overruns [`CHROMIUM_TIMEOUT`].
fn run_chromium(browser: &Path, url: &str, extra: &[String]) -> String {
    let profile = Profile::new();
    let mut cmd = chromium_command(browser, &profile);
    cmd.arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .args(extra)
        .arg(url);
    let mut guard = GroupGuard(cmd.spawn().expect("spawn chromium"));
    let mut out = guard.0.stdout.take().expect("piped stdout");
    let mut err = guard.0.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        match guard.0.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => break None,
        }
    };
    // Kill any helper process still holding the pipes, so the readers finish.
    drop(guard);
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let errors = script_errors(&stderr);
    assert!(errors.is_empty(), "the page threw:\n{}", errors.join("\n"));
    match status {
        Some(s) if s.success() => stdout,
        Some(s) => panic!("chromium exited with {s}; its stderr ends:\n{tail}"),
        None => panic!("chromium overran {CHROMIUM_TIMEOUT:?}; its stderr ends:\n{tail}"),
    }
}

fn dump_dom(browser: &Path, url: &str) -> String {
    let dom = run_chromium(browser, url, &["--dump-dom".to_string()]);
    assert!(
        dom.contains("data-testid=\"last-price\""),
        "chromium dumped no dashboard page:\n{}",
        &dom[..dom.len().min(2000)]
    );
    dom
}

fn screenshot(browser: &Path, url: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    run_chromium(browser, url, &[format!("--screenshot={}", path.display())]);
}

/// One element of the dumped DOM: its opening tag's attributes and its leading text.
struct Element {
    attrs: String,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<String> {
        let start = self.attrs.find(&format!("{name}=\""))? + name.len() + 2;
        let len = self.attrs[start..].find('"')?;
        Some(self.attrs[start..start + len].to_string())
    }
}

/// The element with `data-testid="{id}"` in a serialized DOM.
fn testid(dom: &str, id: &str) -> Option<Element> {
    let at = dom.find(&format!("data-testid=\"{id}\""))?;
    let open = dom[..at].rfind('<')?;
    let close = at + dom[at..].find('>')?;
    let text_len = dom[close + 1..].find('<').unwrap_or(0);
    Some(Element {
        attrs: dom[open..close].to_string(),
        text: dom[close + 1..close + 1 + text_len].trim().to_string(),
    })
}

fn number(dom: &str, id: &str) -> u64 {
    let e = testid(dom, id).unwrap_or_else(|| panic!("no {id} element"));
    e.text
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{id} is {:?}, not a number", e.text))
}

/// How long [`LivePage::wait_for`] waits for the page to reach a state.
const PAGE_WAIT: Duration = Duration::from_secs(20);
/// Wall-clock bound of one DevTools answer.
const CDP_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the page shows, read from its `data-testid` elements.
#[derive(Debug, Clone, Default)]
struct PageState {
    ready: bool,
    status: String,
    feed: String,
    price: String,
    open_time: Option<i64>,
    updates: u64,
    candles: usize,
    symbol: String,
    timeframe: String,
}

const READ_PAGE_JS: &str = r#"(() => {
  const q = (id) => document.querySelector('[data-testid="' + id + '"]');
  const p = q("last-price");
  return JSON.stringify({
    ready: document.body.getAttribute("data-ready") === "1",
    status: q("engine-status").textContent,
    feed: q("feed-mode").textContent,
    price: p.textContent,
    open_time: p.getAttribute("data-open-time"),
    updates: q("update-count").textContent,
    candles: q("candle-count").textContent,
    symbol: q("symbol-select").value,
    timeframe: q("timeframe-select").value,
  });
})()"#;

/// One open page in headless Chromium, read over the DevTools protocol (a WebSocket
/// carrying JSON commands; only `Runtime.evaluate` is used).
struct LivePage {
    cdp: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    // Field order is drop order: the connection closes before the browser is killed.
    _browser: GroupGuard,
    _profile: Profile,
}

impl LivePage {
    fn open(browser: &Path, url: &str) -> LivePage {
        let profile = Profile::new();
        let mut cmd = chromium_command(browser, &profile);
        cmd.args([
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(url)
        .stdout(Stdio::null());
        let mut guard = GroupGuard(cmd.spawn().expect("spawn chromium"));
        let err = guard.0.stderr.take().expect("piped stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let devtools: SocketAddr = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|a| a.parse().ok())
            .expect("chromium announced its DevTools address");
        let mut page_ws = None;
        support::wait_until(Duration::from_secs(10), || {
            let (code, body) = support::http_get(devtools, "/json/list");
            let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            page_ws = targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            });
            code == 200 && page_ws.is_some()
        });
        let page_ws = page_ws.expect("chromium lists the page");
        let stream = std::net::TcpStream::connect(devtools).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(CDP_READ_TIMEOUT))
            .expect("set a read timeout");
        let (cdp, _) = tungstenite::client(page_ws.as_str(), stream).expect("DevTools handshake");
        LivePage {
            cdp,
            next_id: 0,
            stderr,
            _browser: guard,
            _profile: profile,
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let params = serde_json::json!({ "expression": expression, "returnByValue": true });
        self.command("Runtime.evaluate", params)["result"]["value"].clone()
    }

    /// One DevTools command; returns its `result`.
    fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = serde_json::json!({ "id": id, "method": method, "params": params });
        self.cdp
            .send(tungstenite::Message::Text(command.to_string().into()))
            .expect("send a DevTools command");
        // Events may come first; the answer carries our id. Bounded by the read timeout.
        loop {
            let msg = self.cdp.read().expect("a DevTools answer");
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if v["id"].as_u64() == Some(id) {
                return v["result"].clone();
            }
        }
    }

    /// Picks `value` in the `<select>` with `data-testid="{testid}"`, as a user would.
    fn choose(&mut self, testid: &str, value: &str) {
        let js = format!(
            "(() => {{ const s = document.querySelector('[data-testid=\"{testid}\"]'); \
             s.value = {value:?}; s.dispatchEvent(new Event('change')); return s.value; }})()"
        );
        assert_eq!(
            self.eval(&js).as_str(),
            Some(value),
            "{testid} offers {value}"
        );
    }

    fn state(&mut self) -> PageState {
        let text = self.eval(READ_PAGE_JS);
        let v: serde_json::Value =
            serde_json::from_str(text.as_str().unwrap_or("{}")).unwrap_or_default();
        let s = |k: &str| v[k].as_str().unwrap_or("").trim().to_string();
        PageState {
            ready: v["ready"].as_bool().unwrap_or(false),
            status: s("status"),
            feed: s("feed"),
            price: s("price"),
            open_time: s("open_time").parse().ok(),
            updates: s("updates").replace(',', "").parse().unwrap_or(0),
            candles: s("candles").replace(',', "").parse().unwrap_or(usize::MAX),
            symbol: s("symbol"),
            timeframe: s("timeframe"),
        }
    }

    /// Polls the page until `cond` holds; fails naming `what` after [`PAGE_WAIT`].
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&PageState) -> bool) -> PageState {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let state = self.state();
            if cond(&state) {
                return state;
            }
            if Instant::now() > deadline {
                panic!("the page never showed {what} within {PAGE_WAIT:?}; it shows {state:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Fails if the page threw a script error while it was open.
    fn finish(self) {
        let log = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let errors = script_errors(&log);
        assert!(errors.is_empty(), "the page threw:\n{}", errors.join("\n"));
    }
}
