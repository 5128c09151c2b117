// AlphaPulse live dashboard.
//
// One plain script, no framework and no build step, so what the engine embeds is what
// runs. Data comes from the engine's own API (docs/api.md):
// history from GET /api/candles and /api/signals, live records over WS /ws, and the
// health figures from GET /api/status and /api/performance, polled. When the WebSocket
// is unavailable (an engine restarting, or one without /ws) the page polls the list
// endpoints instead and keeps reconnecting with backoff, so it never needs a reload.
//
// Everything shown is put in the DOM as text nodes or attributes (never as HTML), so a
// symbol, signal kind or error message can never inject markup.
(function () {
  "use strict";

  // Limits. Each bounds memory or load for a page that stays open for days.
  const HISTORY_CANDLES = 500; // candles fetched when a symbol or timeframe is picked
  const MAX_CANDLES = 2000; // candles kept for the chart; the oldest are dropped
  const MAX_FEED = 100; // signals kept in the feed list
  const MAX_TAPE = 50; // trades kept on the tape of the selected symbol
  const MAX_MARKERS = 300; // signal markers drawn on the chart
  const MARKER_LABELS = 12; // the newest markers that carry their rules' names
  const MARKER_LABEL_GAP_PX = 8; // space between two labels on the same side
  const SIGNAL_HISTORY = 200; // signals fetched for the chart's markers
  const FEED_HISTORY = 50; // signals fetched for the feed
  const STATUS_POLL_MS = 2000; // /api/status and /api/performance
  const FALLBACK_POLL_MS = 1000; // candles and signals while the WebSocket is down
  const FALLBACK_CANDLES = 5; // newest candles fetched per fallback poll
  const WS_BACKOFF_INITIAL_MS = 500;
  const WS_BACKOFF_MAX_MS = 10000; // an engine that is away is retried at least this often
  const WS_PING_MS = 15000; // keeps proxies from closing an idle connection
  const WS_SILENCE_MS = 40000; // no message for this long: the connection is dead
  // No candle of the selection over an open WebSocket for this long: poll as well, so a
  // server that does not push candles (or a quiet market) still shows fresh prices.
  const WS_CANDLE_SILENCE_MS = 5000;
  const FETCH_TIMEOUT_MS = 5000;
  const THROUGHPUT_POINTS = 300; // 10 minutes of the status poll
  const DEFAULT_TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"];

  // A token given in the address (`/?token=…`, as a link from a script) is traded at
  // once for a session cookie (`GET /api/session` with the token in a header) and taken
  // out of the address bar and history; afterwards the browser's cookie authorizes every
  // request and WebSocket. The token itself is never put in a URL by the page.
  const params = new URLSearchParams(window.location.search);
  let pendingToken = params.get("token");
  if (pendingToken !== null) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
  }

  async function openSession(token) {
    const res = await fetch("/api/session", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
      credentials: "same-origin",
    });
    return res.ok;
  }

  // Asks for the token (a 401 without a session): the form in the header.
  let loginWired = false;
  function askForToken() {
    const form = $("login");
    form.classList.remove("hidden");
    if (loginWired) return;
    loginWired = true;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = $("login-token");
      const ok = await openSession(input.value).catch(() => false);
      input.value = "";
      if (ok) {
        form.classList.add("hidden");
        onEngineRestart();
        pollStatus();
      } else {
        setText("login-error", "wrong token");
      }
    });
  }

  const state = {
    symbol: null,
    timeframe: null,
    // open_time (ms) -> candle record of the selection.
    candles: new Map(),
    newestTime: null, // newest open_time on the chart
    drawnTime: null, // newest bar time handed to the chart
    updates: 0, // live changes applied since the page loaded
    precision: 2,
    // key -> signal record, all symbols (the feed).
    feed: new Map(),
    // key -> signal record of the selection (the chart's markers).
    marks: new Map(),
    marksDirty: false,
    // The selected symbol's latest trades, newest first (the tape), and whether
    // aggregate trades arrive (then they alone are shown: one line per taker order).
    tape: [],
    tapeAgg: false,
    tapeDirty: false,
    historyLoaded: false,
    generation: 0, // bumped per selection so a late answer for an old one is dropped
    ws: null,
    wsOpen: false,
    wsBackoffMs: WS_BACKOFF_INITIAL_MS,
    wsTimer: null,
    wsLastMessageAt: 0,
    wsLastCandleAt: 0,
    engineUp: null, // null until the first status answer
    uptime: null,
    // Each sink's state from the last status ("off", "memory", "connected", ...).
    sinkStates: {},
    prevTotal: null, // {total, at} of the last status, for msg/s
    prevShards: new Map(), // shard index -> {messages, at}
    // Symbols with a local order book (from the status), the one subscribed and its
    // latest view.
    bookSymbols: [],
    bookSubscribed: null,
    book: null,
    bookFrame: 0, // the animation frame that will draw the book, if one is asked
  };

  // ---- helpers -------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    const node = $(id);
    if (node) node.textContent = value === undefined || value === null ? "n/a" : String(value);
    return node;
  }

  // Builds an element; strings become text nodes, so nothing is parsed as HTML.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function isObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  function num(v) {
    const n = typeof v === "number" ? v : Number(v);
    return Number.isFinite(n) ? n : null;
  }

  function fmtInt(v) {
    const n = num(v);
    return n === null ? "n/a" : Math.round(n).toLocaleString("en-US");
  }

  function fmtNum(v, digits) {
    const n = num(v);
    return n === null ? "n/a" : n.toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  function fmtDuration(seconds) {
    const s = num(seconds);
    if (s === null) return "n/a";
    const total = Math.floor(s);
    const d = Math.floor(total / 86400);
    const h = Math.floor((total % 86400) / 3600);
    const m = Math.floor((total % 3600) / 60);
    const sec = total % 60;
    const two = (x) => String(x).padStart(2, "0");
    if (d > 0) return d + "d " + two(h) + "h " + two(m) + "m";
    if (h > 0) return h + "h " + two(m) + "m " + two(sec) + "s";
    return m + "m " + two(sec) + "s";
  }

  function fmtTime(ms, withDate) {
    const n = num(ms);
    if (n === null) return "n/a";
    const iso = new Date(n).toISOString(); // 2024-01-02T03:04:05.678Z
    return withDate ? iso.slice(0, 10) + " " + iso.slice(11, 16) + " UTC" : iso.slice(11, 19);
  }

  // Decimal places a decimal string really uses ("42000.10000000" -> 1).
  function decimals(s) {
    const text = String(s);
    const dot = text.indexOf(".");
    if (dot < 0) return 0;
    return text.slice(dot + 1).replace(/0+$/, "").length;
  }

  // A decimal string shown with `places` decimals, without going through a float.
  function fmtDecimal(s, places) {
    const text = String(s);
    if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
    const [int, frac = ""] = text.split(".");
    const kept = frac.replace(/0+$/, "");
    if (kept.length > places) return text;
    return places > 0 ? int + "." + kept.padEnd(places, "0") : int;
  }

  function timeframeMs(tf) {
    const m = /^(\d+)([smhdwM])$/.exec(String(tf));
    if (!m) return Infinity;
    const unit = { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, M: 2592e6 }[m[2]];
    return Number(m[1]) * unit;
  }

  function apiUrl(path, query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    }
    const s = q.toString();
    return path + (s ? "?" + s : "");
  }

  function wsUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + apiUrl("/ws");
  }

  async function getJson(path, query) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch(apiUrl(path, query), {
        cache: "no-store",
        credentials: "same-origin",
        signal: abort.signal,
      });
      if (res.status === 401) askForToken();
      if (!res.ok) {
        const err = new Error(path + ": HTTP " + res.status);
        err.status = res.status;
        throw err;
      }
      return await res.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- chart ---------------------------------------------------------------------

  let chart = null;
  let series = null;
  let markers = null;
  let spark = null;
  let sparkChart = null;
  const sparkPoints = [];

  function setupChart() {
    const lib = window.LightweightCharts;
    const box = $("chart");
    if (!lib || !box) {
      showChartError("The charting library did not load; prices and signals still update.");
      return;
    }
    try {
      chart = lib.createChart(box, {
        autoSize: true,
        layout: {
          background: { type: "solid", color: "#161b22" },
          textColor: "#c9d1d9",
        },
        grid: { vertLines: { color: "#21262d" }, horzLines: { color: "#21262d" } },
        rightPriceScale: { borderColor: "#30363d" },
        timeScale: { borderColor: "#30363d", timeVisible: true, secondsVisible: false },
      });
      series = chart.addSeries(lib.CandlestickSeries, {
        upColor: "#26a69a",
        downColor: "#ef5350",
        borderVisible: false,
        wickUpColor: "#26a69a",
        wickDownColor: "#ef5350",
      });
      markers = lib.createSeriesMarkers(series, []);
      // Zooming changes the room between labels: place them again.
      chart.timeScale().subscribeVisibleLogicalRangeChange(() => {
        state.marksDirty = true;
      });
    } catch (e) {
      chart = series = markers = null;
      showChartError("The chart could not start: " + e.message);
    }
  }

  // A small msg/s history under the throughput figure.
  function setupSpark() {
    const lib = window.LightweightCharts;
    const box = $("throughput-chart");
    if (!lib || !box) return;
    try {
      const c = lib.createChart(box, {
        autoSize: true,
        layout: {
          background: { type: "solid", color: "#161b22" },
          textColor: "#8b949e",
          // The page footer credits the library; one logo (on the main chart) is enough.
          attributionLogo: false,
        },
        grid: { vertLines: { visible: false }, horzLines: { visible: false } },
        rightPriceScale: { visible: false },
        leftPriceScale: { visible: false },
        timeScale: { visible: false },
        crosshair: { vertLine: { visible: false }, horzLine: { visible: false } },
        handleScroll: false,
        handleScale: false,
      });
      sparkChart = c;
      spark = c.addSeries(lib.AreaSeries, {
        lineColor: "#58a6ff",
        topColor: "rgba(88, 166, 255, 0.35)",
        bottomColor: "rgba(88, 166, 255, 0.02)",
        lineWidth: 1,
        priceLineVisible: false,
        lastValueVisible: false,
      });
    } catch (e) {
      spark = null;
    }
  }

  function pushSpark(value) {
    if (!spark || value === null || value === undefined) return;
    const time = Math.floor(Date.now() / 1000);
    const last = sparkPoints[sparkPoints.length - 1];
    if (last && last.time >= time) return;
    sparkPoints.push({ time, value });
    if (sparkPoints.length > THROUGHPUT_POINTS) {
      sparkPoints.splice(0, sparkPoints.length - THROUGHPUT_POINTS);
      spark.setData(sparkPoints);
    } else {
      spark.update({ time, value });
    }
    sparkChart.timeScale().fitContent();
  }

  function showChartError(text) {
    const box = $("chart-error");
    box.textContent = text;
    box.classList.remove("hidden");
  }

  function toBar(c) {
    const bar = {
      time: Math.floor(Number(c.open_time) / 1000),
      open: num(c.open),
      high: num(c.high),
      low: num(c.low),
      close: num(c.close),
    };
    if (!Number.isFinite(bar.time) || [bar.open, bar.high, bar.low, bar.close].includes(null)) {
      return null;
    }
    return bar;
  }

  function sortedTimes() {
    return Array.from(state.candles.keys()).sort((a, b) => a - b);
  }

  function notePrecision(c) {
    const p = Math.min(8, Math.max(2, decimals(c.open), decimals(c.high), decimals(c.low), decimals(c.close)));
    if (p > state.precision) {
      state.precision = p;
      if (series) {
        series.applyOptions({ priceFormat: { type: "price", precision: p, minMove: Math.pow(10, -p) } });
      }
    }
  }

  function redrawChart() {
    const times = sortedTimes();
    // Keep memory bounded on a page left open for days: drop the oldest candles.
    for (const t of times.splice(0, Math.max(0, times.length - MAX_CANDLES))) {
      state.candles.delete(t);
    }
    if (series) {
      const bars = times.map((t) => toBar(state.candles.get(t))).filter((b) => b !== null);
      series.setData(bars);
      state.drawnTime = bars.length ? bars[bars.length - 1].time : null;
    }
    state.newestTime = times.length ? times[times.length - 1] : null;
    state.marksDirty = true;
    renderQuote();
  }

  // Merges one candle of the selection. Returns whether anything changed.
  function mergeCandle(c) {
    if (!isObject(c) || c.symbol !== state.symbol || c.timeframe !== state.timeframe) return false;
    const t = num(c.open_time);
    if (t === null) return false;
    const prev = state.candles.get(t);
    if (prev) {
      // The closed candle is final: a live update of the same minute arriving late
      // must not replace it, and an older live update must not replace a newer one.
      if (prev.closed && !c.closed) return false;
      if (!prev.closed && !c.closed && num(c.event_time) < num(prev.event_time)) return false;
      if (
        prev.closed === c.closed &&
        prev.close === c.close &&
        prev.high === c.high &&
        prev.low === c.low &&
        prev.volume === c.volume
      ) {
        return false;
      }
    }
    state.candles.set(t, c);
    notePrecision(c);
    return true;
  }

  // A live candle: drawn incrementally when it is the newest, else by a full redraw.
  function applyLiveCandle(c) {
    if (!mergeCandle(c)) return;
    state.updates += 1;
    const bar = toBar(c);
    if (series && bar && (state.drawnTime === null || bar.time >= state.drawnTime)) {
      series.update(bar);
      state.drawnTime = bar.time;
      const t = num(c.open_time);
      if (state.newestTime === null || t > state.newestTime) state.newestTime = t;
      if (state.candles.size > MAX_CANDLES + 100) redrawChart();
      else renderQuote();
    } else {
      redrawChart();
    }
  }

  // The quote is drawn on the next tick: a burst of updates costs one redraw.
  let quoteDirty = false;
  function renderQuote() {
    quoteDirty = true;
  }

  function drawQuote() {
    if (!quoteDirty) return;
    quoteDirty = false;
    const newest = state.newestTime === null ? null : state.candles.get(state.newestTime);
    const priceNode = $("last-price");
    setText("candle-count", state.candles.size);
    setText("update-count", state.updates);
    if (!newest) {
      priceNode.textContent = "n/a";
      priceNode.removeAttribute("data-open-time");
      setText("price-change", "");
      setText("last-candle-time", "n/a");
      return;
    }
    const price = fmtDecimal(newest.close, state.precision);
    priceNode.textContent = price;
    priceNode.setAttribute("data-open-time", String(newest.open_time));
    priceNode.setAttribute("data-closed", String(!!newest.closed));
    setText("last-candle-time", fmtTime(newest.open_time, true) + (newest.closed ? "" : " (forming)"));
    document.title = price + " " + state.symbol + " · AlphaPulse";

    // Change against the close of the candle before the newest one.
    const times = sortedTimes();
    const before = times.length > 1 ? state.candles.get(times[times.length - 2]) : null;
    const change = $("price-change");
    const now = num(newest.close);
    const then = before ? num(before.close) : null;
    if (now === null || then === null || then === 0) {
      change.textContent = "";
      return;
    }
    const diff = now - then;
    const sign = diff > 0 ? "+" : "";
    change.textContent =
      sign + diff.toFixed(state.precision) + " (" + sign + ((diff / then) * 100).toFixed(3) + "%)";
    change.className = "change " + (diff > 0 ? "up" : diff < 0 ? "down" : "");
  }

  // ---- signals -------------------------------------------------------------------

  function signalKey(s) {
    return [s.timestamp, s.symbol, s.timeframe, s.kind, s.direction].join("|");
  }

  function addSignal(s, live) {
    if (!isObject(s) || num(s.timestamp) === null) return;
    const key = signalKey(s);
    if (s.symbol === state.symbol && s.timeframe === state.timeframe && !state.marks.has(key)) {
      state.marks.set(key, s);
      state.marksDirty = true;
      if (state.marks.size > 2 * MAX_MARKERS) {
        const oldest = Array.from(state.marks.entries())
          .sort((a, b) => num(a[1].timestamp) - num(b[1].timestamp))
          .slice(0, state.marks.size - MAX_MARKERS);
        for (const [k] of oldest) state.marks.delete(k);
      }
    }
    if (state.feed.has(key)) return;
    state.feed.set(key, Object.assign({}, s, { _fresh: !!live }));
    feedDirty = true;
  }

  let feedDirty = false;

  function renderFeed() {
    if (!feedDirty) return;
    feedDirty = false;
    const items = Array.from(state.feed.entries()).sort((a, b) => num(b[1].timestamp) - num(a[1].timestamp));
    for (const [key] of items.slice(MAX_FEED)) state.feed.delete(key);
    const list = $("signal-feed");
    const nodes = items.slice(0, MAX_FEED).map(([, s]) => {
      const buy = String(s.direction).toLowerCase() === "buy";
      const conf = num(s.confidence);
      const li = el(
        "li",
        { class: s._fresh ? "fresh" : "", "data-testid": "signal-item", "data-symbol": s.symbol },
        el("span", { class: "dir " + (buy ? "up" : "down") }, buy ? "buy" : "sell"),
        el("span", { class: "what" }, s.symbol + " " + s.timeframe + " · " + s.kind),
        el("span", { class: "when" }, fmtTime(s.timestamp, false)),
        el(
          "span",
          { class: "detail" },
          "@ " + fmtDecimal(s.price, Math.max(2, decimals(s.price))) +
            (conf === null ? "" : " · confidence " + Math.round(conf * 100) + "%")
        )
      );
      s._fresh = false;
      return li;
    });
    list.replaceChildren(...nodes);
    setText("signal-count", nodes.length);
    $("signal-empty").classList.toggle("hidden", nodes.length > 0);
  }

  // Places each signal on the candle it was made on (the one whose close is its
  // timestamp), or the latest candle before it.
  function renderMarkers() {
    if (!state.marksDirty) return;
    state.marksDirty = false;
    if (!markers) return;
    const times = sortedTimes();
    const out = [];
    const sigs = Array.from(state.marks.values())
      .sort((a, b) => num(a.timestamp) - num(b.timestamp))
      .slice(-MAX_MARKERS);
    for (const s of sigs) {
      const ts = num(s.timestamp);
      let lo = 0;
      let hi = times.length - 1;
      let at = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid] <= ts) {
          at = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (at < 0) continue; // older than the candles on the chart
      // A timestamp equal to an open time is the previous candle's (exclusive) close.
      if (times[at] === ts && at > 0) at -= 1;
      const buy = String(s.direction).toLowerCase() === "buy";
      const time = Math.floor(times[at] / 1000);
      // One marker per candle and direction, naming every rule that fired there, so
      // labels never pile up on one bar.
      const same = out.find((m) => m.time === time && m.buy === buy);
      if (same) {
        if (!same.kinds.includes(String(s.kind))) same.kinds.push(String(s.kind));
        continue;
      }
      out.push({
        time,
        buy,
        kinds: [String(s.kind)],
        position: buy ? "belowBar" : "aboveBar",
        shape: buy ? "arrowUp" : "arrowDown",
        color: buy ? "#26a69a" : "#ef5350",
      });
    }
    out.sort((a, b) => a.time - b.time);
    // Labels on the newest markers only, and never on two neighbouring bars on the same
    // side: older and crowded ones keep their arrow, and the signal list names them.
    // Two labels on one side keep half their widths (about 7 px a character) apart.
    const barSeconds = Math.min(timeframeMs(state.timeframe), 2592e6) / 1000;
    const barPx = Math.max(1, (chart && chart.timeScale().options().barSpacing) || 6);
    const last = { true: null, false: null };
    const labelled = out.length - MARKER_LABELS;
    markers.setMarkers(
      out.map((m, i) => {
        let text = i >= labelled ? m.kinds.join(" + ") : "";
        const prev = last[m.buy];
        if (text && prev) {
          const apartPx = ((m.time - prev.time) / barSeconds) * barPx;
          if (apartPx < ((prev.text.length + text.length) / 2) * 7 + MARKER_LABEL_GAP_PX) text = "";
        }
        if (text) last[m.buy] = { time: m.time, text };
        return { time: m.time, position: m.position, shape: m.shape, color: m.color, text };
      })
    );
  }

  // ---- loading -------------------------------------------------------------------

  function candleList(body) {
    const closed = Array.isArray(body && body.candles) ? body.candles : [];
    const live = Array.isArray(body && body.live) ? body.live : [];
    // Oldest first, closed before live at the same time, so the final one wins.
    return closed
      .concat(live)
      .filter(isObject)
      .sort((a, b) => num(a.open_time) - num(b.open_time) || (b.closed ? 1 : 0) - (a.closed ? 1 : 0));
  }

  // Loads the selection's history; `fresh` clears what is shown first (a new selection).
  async function loadHistory(fresh) {
    const symbol = state.symbol;
    const timeframe = state.timeframe;
    if (!symbol || !timeframe) return;
    const gen = ++state.generation;
    if (fresh) {
      state.candles.clear();
      state.marks.clear();
      state.precision = 2;
      state.updates = 0;
      if (series) series.setData([]);
      state.drawnTime = null;
      redrawChart();
      setText("chart-title", symbol + " · " + timeframe);
    }
    try {
      const [body, sigs] = await Promise.all([
        getJson("/api/candles", { symbol, timeframe, limit: HISTORY_CANDLES }),
        getJson("/api/signals", { symbol, timeframe, limit: SIGNAL_HISTORY }).catch(() => null),
      ]);
      if (gen !== state.generation) return;
      for (const c of candleList(body)) mergeCandle(c);
      for (const s of (sigs && sigs.signals) || []) addSignal(s, false);
      redrawChart();
      if (fresh && chart) chart.timeScale().fitContent();
      renderMarkers();
      state.historyLoaded = true;
      document.body.setAttribute("data-ready", "1");
    } catch (e) {
      if (gen === state.generation) console.warn("history:", e.message);
    }
  }

  async function loadFeed() {
    try {
      const body = await getJson("/api/signals", { limit: FEED_HISTORY });
      for (const s of body.signals || []) addSignal(s, state.historyLoaded);
      renderFeed();
      renderMarkers();
    } catch (e) {
      console.warn("signals:", e.message);
    }
  }

  // While the WebSocket is down (or brings no candles): the newest candles and signals,
  // every second.
  async function pollLive() {
    if (!state.historyLoaded) return;
    const wsFeeding = state.wsOpen && Date.now() - state.wsLastCandleAt < WS_CANDLE_SILENCE_MS;
    if (wsFeeding) return;
    const gen = state.generation;
    try {
      const body = await getJson("/api/candles", {
        symbol: state.symbol,
        timeframe: state.timeframe,
        limit: FALLBACK_CANDLES,
      });
      if (gen !== state.generation) return;
      for (const c of candleList(body)) applyLiveCandle(c);
    } catch (e) {
      // The status poll reports an unreachable engine; nothing more to say here.
    }
    await loadFeed();
  }

  // ---- WebSocket -----------------------------------------------------------------

  function send(ws, msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  function subscribeSelection(ws, type) {
    if (!state.symbol || !state.timeframe) return;
    send(ws, { type, subscription: "candles", symbol: state.symbol, timeframe: state.timeframe });
    send(ws, { type, subscription: "trades", symbol: state.symbol });
    subscribeBook(ws, type === "subscribe" ? state.symbol : null);
  }

  // ---- order book -----------------------------------------------------------------

  const BOOK_ROWS = 10; // levels shown per side

  // Follows the book of `symbol` (null: none) on `ws`, if the engine keeps one.
  function subscribeBook(ws, symbol) {
    const want = symbol && state.bookSymbols.includes(symbol) ? symbol : null;
    if (want === state.bookSubscribed) return;
    if (state.bookSubscribed) send(ws, { type: "unsubscribe", subscription: "book", symbol: state.bookSubscribed });
    state.bookSubscribed = want;
    state.book = null;
    if (want) send(ws, { type: "subscribe", subscription: "book", symbol: want });
    renderBook();
  }

  function applyBook(m) {
    if (!isObject(m) || m.symbol !== state.bookSubscribed) return;
    if (m.type === "book") {
      state.book = m;
    } else if (state.book) {
      // A new best bid or ask between views: it replaces the top of its side.
      state.book.valid = m.valid;
      state.book.last_update_id = m.last_update_id;
      for (const [side, top] of [["bids", m.bid], ["asks", m.ask]]) {
        if (!Array.isArray(top) || !Array.isArray(state.book[side])) continue;
        const levels = state.book[side];
        const better = side === "bids" ? (p) => Number(p) >= Number(top[0]) : (p) => Number(p) <= Number(top[0]);
        state.book[side] = [top].concat(levels.filter((l) => !better(l[0])));
      }
    }
    // A fast book changes many times a frame: draw once per frame.
    if (!state.bookFrame) {
      state.bookFrame = requestAnimationFrame(() => {
        state.bookFrame = 0;
        renderBook();
      });
    }
  }

  function renderBook() {
    const card = $("book-card");
    const symbol = state.bookSubscribed;
    card.classList.toggle("hidden", !symbol);
    if (!symbol) return;
    setText("book-symbol", symbol);
    const b = state.book;
    const valid = !!(b && b.valid);
    card.classList.toggle("stale", !valid);
    const stateNode = setText("book-state", b ? (valid ? "in sync" : "resynchronising") : "waiting");
    stateNode.className = valid ? "ok" : "warn";
    setText("book-update", b ? fmtInt(b.last_update_id) : "n/a");
    setText("book-spread", b && b.spread !== null ? fmtDecimal(b.spread, decimals(b.spread)) : "n/a");
    setText("book-mid", b && b.mid !== null ? b.mid : "n/a");
    setText("book-micro", b && b.microprice !== null ? b.microprice : "n/a");
    setText("book-imbalance", b && b.imbalance !== null ? fmtNum(b.imbalance, 3) : "n/a");
    const bids = b && Array.isArray(b.bids) ? b.bids.slice(0, BOOK_ROWS) : [];
    const asks = b && Array.isArray(b.asks) ? b.asks.slice(0, BOOK_ROWS) : [];
    const all = bids.concat(asks);
    const most = Math.max(1e-12, ...all.map((l) => Number(l[1]) || 0));
    const places = Math.max(0, ...all.map((l) => decimals(l[0])));
    const qtyPlaces = Math.max(0, ...all.map((l) => decimals(l[1])));
    const row = (l, side) =>
      el(
        "tr",
        { "data-testid": "book-level", "data-side": side },
        el("td", {}, fmtDecimal(l[0], places)),
        el("td", {}, fmtDecimal(l[1], qtyPlaces)),
        el("td", { class: "depth" }, el("span", { class: "bar " + side, style: "width:" + Math.max(1, (100 * Number(l[1])) / most) + "%" })),
      );
    // Asks above (best nearest the middle), bids below.
    $("book-asks").replaceChildren(...asks.slice().reverse().map((l) => row(l, "ask")));
    $("book-bids").replaceChildren(...bids.map((l) => row(l, "bid")));
  }

  // A trade or aggregate trade record of the selected symbol onto the tape.
  function addTrade(t, agg) {
    if (!isObject(t) || t.symbol !== state.symbol) return;
    if (agg && !state.tapeAgg) {
      state.tapeAgg = true;
      state.tape = [];
    }
    if (!agg && state.tapeAgg) return;
    state.tape.unshift(t);
    if (state.tape.length > MAX_TAPE) state.tape.length = MAX_TAPE;
    state.tapeDirty = true;
  }

  function renderTape() {
    if (!state.tapeDirty) return;
    state.tapeDirty = false;
    const nodes = state.tape.map((t) => {
      // The buyer was the maker: the taker sold.
      const sell = t.buyer_is_maker === true;
      return el(
        "li",
        { "data-testid": "trade-item" },
        el("span", { class: "dir " + (sell ? "down" : "up") }, sell ? "sell" : "buy"),
        el("span", { class: "what" }, fmtDecimal(t.price, Math.max(2, decimals(t.price))) + " × " + t.quantity),
        el("span", { class: "when" }, fmtTime(t.trade_time, false))
      );
    });
    $("trade-tape").replaceChildren(...nodes);
    setText("tape-symbol", state.symbol || "");
    $("tape-empty").classList.toggle("hidden", nodes.length > 0);
  }

  function connectWs() {
    clearTimeout(state.wsTimer);
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleWs();
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      state.wsOpen = true;
      state.wsLastMessageAt = Date.now();
      state.wsLastCandleAt = Date.now();
      renderFeedMode();
      subscribeSelection(ws, "subscribe");
      send(ws, { type: "subscribe", subscription: "signals" });
      send(ws, { type: "subscribe", subscription: "status" });
      // Whatever happened while we were away comes from the lists.
      loadHistory(false);
      loadFeed();
    };
    ws.onmessage = (ev) => {
      state.wsLastMessageAt = Date.now();
      // A connection that delivers is healthy: the next loss starts backing off afresh.
      state.wsBackoffMs = WS_BACKOFF_INITIAL_MS;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      for (const m of Array.isArray(msg) ? msg : [msg]) handleMessage(m);
    };
    ws.onerror = () => {}; // onclose follows and reconnects
    ws.onclose = () => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.wsOpen = false;
      // The next connection subscribes afresh.
      state.bookSubscribed = null;
      renderFeedMode();
      scheduleWs();
    };
  }

  function scheduleWs() {
    clearTimeout(state.wsTimer);
    // Jitter spreads the reconnects of many open pages after an engine restart.
    const delay = state.wsBackoffMs * (0.8 + Math.random() * 0.4);
    state.wsBackoffMs = Math.min(state.wsBackoffMs * 2, WS_BACKOFF_MAX_MS);
    state.wsTimer = setTimeout(connectWs, delay);
  }

  function wsWatchdog() {
    const ws = state.ws;
    if (!ws || !state.wsOpen) return;
    if (Date.now() - state.wsLastMessageAt > WS_SILENCE_MS) {
      ws.close();
      return;
    }
    send(ws, { type: "ping" });
  }

  // Accepts a bare record (`{"type":"candle",…}`) or a wrapped one
  // (`{"type":"candle","data":{…}}`), and lists (`{"type":"signals","data":[…]}`).
  function handleMessage(m) {
    if (!isObject(m)) return;
    const data = m.data;
    switch (m.type) {
      case "candle":
      case "signal": {
        const records = Array.isArray(data) ? data : [isObject(data) ? data : m];
        for (const r of records) {
          if (m.type === "candle") applyWsCandle(r);
          else addSignal(r, true);
        }
        break;
      }
      case "candles":
        if (Array.isArray(data)) for (const c of data) applyWsCandle(c);
        break;
      case "signals":
        if (Array.isArray(data)) for (const s of data) addSignal(s, true);
        break;
      case "trade":
      case "agg_trade":
        addTrade(isObject(data) ? data : m, m.type === "agg_trade");
        break;
      case "status": {
        const s = isObject(data) ? data : m;
        if (Array.isArray(s.shards) && renderStatus(s)) onEngineRestart();
        break;
      }
      case "book":
      case "book_top":
        applyBook(m);
        break;
      case "error":
        console.warn("dashboard:", m.error);
        break;
      default:
        break;
    }
  }

  function applyWsCandle(c) {
    if (isObject(c) && c.symbol === state.symbol && c.timeframe === state.timeframe) {
      state.wsLastCandleAt = Date.now();
    }
    applyLiveCandle(c);
  }

  function renderFeedMode() {
    const node = $("feed-mode");
    let text;
    let cls;
    if (state.wsOpen) {
      const quiet = Date.now() - state.wsLastCandleAt >= WS_CANDLE_SILENCE_MS;
      text = quiet ? "websocket + polling" : "websocket";
      cls = "ok";
    } else if (state.engineUp === false) {
      text = "offline, retrying";
      cls = "bad";
    } else {
      text = "polling";
      cls = "warn";
    }
    node.textContent = text;
    node.className = cls;
  }

  // ---- status and performance -----------------------------------------------------

  function populateSelectors(s) {
    // Every symbol this dashboard serves (with scale-out, other instances' too); an
    // older engine lists only its shards' symbols.
    const symbols = [];
    const listed = Array.isArray(s.symbols) && s.symbols.length ? [s.symbols] : (s.shards || []).map((sh) => sh.symbols || []);
    for (const list of listed) {
      for (const sym of list) if (!symbols.includes(String(sym))) symbols.push(String(sym));
    }
    let timeframes = Array.isArray(s.timeframes) ? s.timeframes.map(String) : [];
    if (!timeframes.length) {
      const last = (s.candles && s.candles.last_closed) || [];
      timeframes = Array.from(new Set(last.map((c) => String(c.timeframe))));
    }
    if (!timeframes.length) timeframes = DEFAULT_TIMEFRAMES;
    timeframes = timeframes.slice().sort((a, b) => timeframeMs(a) - timeframeMs(b));
    fillSelect($("symbol"), symbols);
    fillSelect($("timeframe"), timeframes);

    const wantSymbol = state.symbol || params.get("symbol");
    const wantTf = state.timeframe || params.get("timeframe");
    const symbol = symbols.includes(wantSymbol) ? wantSymbol : symbols[0];
    const tf = timeframes.includes(wantTf) ? wantTf : timeframes.includes("1m") ? "1m" : timeframes[0];
    if (symbol && tf && (symbol !== state.symbol || tf !== state.timeframe)) select(symbol, tf);
  }

  function fillSelect(node, values) {
    const have = Array.from(node.options).map((o) => o.value);
    if (have.join("\n") === values.join("\n")) return;
    const current = node.value;
    node.replaceChildren(...values.map((v) => new Option(v, v)));
    if (values.includes(current)) node.value = current;
  }

  function select(symbol, tf) {
    const ws = state.ws;
    if (state.wsOpen) subscribeSelection(ws, "unsubscribe");
    if (symbol !== state.symbol) {
      state.tape = [];
      state.tapeAgg = false;
      state.tapeDirty = true;
    }
    state.symbol = symbol;
    state.timeframe = tf;
    $("symbol").value = symbol;
    $("timeframe").value = tf;
    // Keep the choice in the address, so a reload shows the same chart.
    const url = new URL(window.location.href);
    url.searchParams.set("symbol", symbol);
    url.searchParams.set("timeframe", tf);
    window.history.replaceState(null, "", url.toString());
    if (state.wsOpen) subscribeSelection(ws, "subscribe");
    loadHistory(true);
  }

  function rate(prev, value, at) {
    if (!prev || value < prev.value) return null; // first sample, or the engine restarted
    const seconds = (at - prev.at) / 1000;
    return seconds >= 0.5 ? (value - prev.value) / seconds : undefined;
  }

  function renderStatus(s) {
    const now = Date.now();
    const status = $("engine-status");
    status.textContent = String(s.status || "unknown");
    status.className = s.status === "ok" ? "ok" : "warn";
    const uptime = num(s.uptime_s);
    const restarted = uptime !== null && state.uptime !== null && uptime + 1 < state.uptime;
    state.uptime = uptime;
    setText("uptime", fmtDuration(uptime));
    const speed = num(s.exchange_speed);
    $("sim-time").classList.toggle("hidden", !(speed > 1));
    if (speed > 1) setText("sim-speed", fmtInt(speed) + "\u00d7 wall clock");

    const total = num(s.total_messages_received);
    let perSecond = rate(state.prevTotal, total, now);
    // The first push has no earlier sample here: take the server's own figure.
    const served = num(s.throughput && s.throughput.messages_received_per_s);
    if ((perSecond === undefined || perSecond === null) && served !== null) perSecond = served;
    if (perSecond !== undefined) {
      setText("throughput", perSecond === null ? "n/a" : fmtNum(perSecond, 0));
      pushSpark(perSecond);
      state.prevTotal = total === null ? null : { value: total, at: now };
    }
    setText("total-messages", fmtInt(total));
    setText("active-connections", fmtInt(s.active_connections));
    setText("active-clients", fmtInt(s.active_clients));
    setText("signal-total", fmtInt(s.signals && s.signals.total));

    state.bookSymbols = Array.isArray(s.books) ? s.books.map(String) : [];
    if (state.wsOpen) subscribeBook(state.ws, state.symbol);
    populateSelectors(s);
    renderShards(s.shards || [], now);
    renderCompleteness(s);
    renderSinks(s.sinks);
    return restarted;
  }

  function renderShards(shards, now) {
    const rows = shards.map((sh) => {
      const idx = sh.index;
      const messages = num(sh.messages);
      const r = rate(state.prevShards.get(idx), messages, now);
      const prevRate = state.prevShards.get(idx) && state.prevShards.get(idx).rate;
      const shown = r === undefined ? prevRate : r;
      if (r !== undefined) state.prevShards.set(idx, { value: messages, at: now, rate: r });
      const symbols = (sh.symbols || []).map(String);
      const symText = symbols.slice(0, 6).join(" ") + (symbols.length > 6 ? " +" + (symbols.length - 6) : "");
      const live = num(sh.connections_live);
      const slots = num(sh.connection_slots);
      const connOk = live !== null && slots !== null && live >= slots;
      const queues = el("td", {});
      for (const q of sh.queues || []) {
        const depth = num(q.depth) || 0;
        const cap = num(q.capacity) || 0;
        const pct = cap > 0 ? Math.min(100, (depth / cap) * 100) : 0;
        queues.append(
          el(
            "div",
            { title: "high water " + fmtInt(q.high_water) + ", full " + fmtInt(q.full) },
            el("span", { class: "bar" + (pct > 90 ? " full" : ""), style: "width:" + Math.max(1, pct * 0.6).toFixed(0) + "px" }),
            String(q.name) + " " + fmtInt(depth) + " / " + fmtInt(cap)
          )
        );
      }
      return el(
        "tr",
        { "data-testid": "shard-row" },
        el("td", {}, String(idx)),
        el("td", {}, sh.core === null || sh.core === undefined ? "unpinned" : String(sh.core)),
        el("td", { title: symbols.join(" ") }, symText),
        el(
          "td",
          { class: connOk ? "state-ok" : "state-warn" },
          fmtInt(live) + " / " + fmtInt(slots) + " live"
        ),
        el("td", {}, shown === null || shown === undefined ? "n/a" : fmtNum(shown, 0)),
        el("td", {}, fmtInt(messages)),
        el("td", { class: num(sh.parse_errors) > 0 ? "state-warn" : "" }, fmtInt(sh.parse_errors)),
        el("td", {}, fmtInt(sh.reconnects)),
        queues
      );
    });
    $("shard-rows").replaceChildren(...rows);
  }

  function renderCompleteness(s) {
    const gaps = s.gaps || {};
    const outages = s.outages || {};
    const candles = s.candles || {};
    setText("gaps-total", fmtInt(gaps.total)).className = num(gaps.total) > 0 ? "state-warn" : "";
    setText("outages-total", fmtInt(outages.total)).className = num(outages.total) > 0 ? "state-warn" : "";
    setText("closed-total", fmtInt(candles.closed_total));
    setText("duplicates", fmtInt(candles.duplicates_ignored));
    const items = [];
    for (const g of (gaps.recent || []).slice(0, 5)) {
      items.push(
        el(
          "li",
          {},
          "gap " + g.symbol + " " + g.timeframe + ": " + fmtInt(g.candles) + " candles from " +
            fmtTime(g.from_open_time, true)
        )
      );
    }
    for (const o of (outages.recent || []).slice(0, 5)) {
      const from = num(o.from_event_time_us);
      const to = num(o.to_event_time_us);
      const secs = from !== null && to !== null ? fmtNum((to - from) / 1e6, 1) + " s" : "n/a";
      items.push(el("li", {}, "outage on connection " + o.slot + ": " + secs + " from " + fmtTime(from / 1000, true)));
    }
    if (!items.length) items.push(el("li", { class: "muted" }, "No gaps or outages."));
    $("completeness-recent").replaceChildren(...items);

    // Per (symbol, timeframe): share present, open gaps, gaps filled, last close's age.
    const c = isObject(s.completeness) ? s.completeness : {};
    const ratio = num(c.ratio);
    setText("completeness-ratio", ratio === null ? "n/a" : fmtNum(ratio * 100, 2) + " %").className =
      ratio !== null && ratio < 1 ? "state-warn" : "state-ok";
    setText("missing-candles", fmtInt(c.missing)).className = num(c.missing) > 0 ? "state-warn" : "";
    const series = Array.isArray(c.series) ? c.series : [];
    // Incomplete series first, then by name; a long list shows its first 50.
    const sorted = series.slice().sort((a, b) => num(a.ratio) - num(b.ratio) ||
      String(a.symbol + a.timeframe).localeCompare(String(b.symbol + b.timeframe)));
    const rows = sorted.slice(0, 50).map((x) => {
      const r = num(x.ratio);
      return el(
        "tr",
        { "data-testid": "completeness-row" },
        el("td", {}, x.symbol + " " + x.timeframe),
        el("td", { class: r !== null && r < 1 ? "state-warn" : "state-ok" },
          r === null ? "n/a" : fmtNum(r * 100, 2) + " %"),
        el("td", { class: num(x.open_gaps) > 0 ? "state-warn" : "" }, fmtInt(x.open_gaps)),
        el("td", {}, fmtInt(x.gaps_filled)),
        el("td", {}, fmtNum(num(x.last_closed_age_s), 0) + " s ago")
      );
    });
    $("completeness-rows").replaceChildren(...rows);
  }

  function renderSinks(sinks) {
    const items = [];
    for (const [name, v] of Object.entries(isObject(sinks) ? sinks : {})) {
      state.sinkStates[name] = isObject(v) ? v.state : v;
    }
    for (const [name, v] of Object.entries(isObject(sinks) ? sinks : {})) {
      const st = isObject(v) ? v.state : v;
      const details = isObject(v)
        ? Object.entries(v)
            .filter(([k, x]) => k !== "state" && (typeof x === "number" || typeof x === "string" || typeof x === "boolean"))
            .slice(0, 4)
            .map(([k, x]) => k.replace(/_/g, " ") + " " + (typeof x === "number" ? fmtNum(x, 2) : String(x)))
            .join(" · ")
        : "";
      const stText = st === undefined ? "" : String(st);
      const cls = /^(ok|on|live|connected|memory|running)$/.test(stText)
        ? "state-ok"
        : /^(off|disabled)$/.test(stText) || !stText
        ? "muted"
        : "state-warn";
      const rest = details ? (stText ? " · " : "") + details : "";
      items.push(el("li", {}, el("b", {}, name), el("span", { class: cls }, stText), rest));
    }
    $("sinks").replaceChildren(...items);
  }

  // Latency stages may sit under `stages`, `latency` or `latency_us` (an object keyed by
  // stage, or a list with a `stage`/`name`), or at the top level as objects with `p50`.
  function latencyStages(p) {
    for (const c of [p.stages, p.latency, p.latency_us, p.latencies]) {
      if (Array.isArray(c)) return c.filter(isObject).map((x) => [x.stage || x.name || "?", x]);
      if (isObject(c)) return Object.entries(c).filter(([, v]) => isObject(v));
    }
    return Object.entries(p).filter(([, v]) => isObject(v) && ("p50" in v || "p99" in v));
  }

  // The stages in the order a record goes through them; unknown ones after.
  const PIPELINE = [
    "exchange_to_recv",
    "recv_to_parsed",
    "parsed_to_signal",
    "ring_hop",
    "recv_to_dashboard_send",
    "recv_to_redis_publish",
    "recv_to_db_commit",
  ];
  // A sink's stage is hidden while the sink is off (its count stays 0).
  const STAGE_SINK = { recv_to_redis_publish: "redis", recv_to_db_commit: "database" };

  function orderedStages(p) {
    const rank = (name) => {
      const i = PIPELINE.indexOf(name);
      return i < 0 ? PIPELINE.length : i;
    };
    return latencyStages(p)
      .filter(([name, v]) => {
        const sink = STAGE_SINK[name];
        const off = sink && /^(off|memory)$/.test(String(state.sinkStates[sink] || ""));
        return !(off && !num(v.count));
      })
      .sort((a, b) => rank(a[0]) - rank(b[0]));
  }

  function renderPerformance(p) {
    const rows = [];
    const stages = isObject(p) ? orderedStages(p) : [];
    for (const [name, v] of stages) {
      const cell = (x) => el("td", { class: num(x) === null ? "na" : "" }, num(x) === null ? "n/a" : fmtNum(x, 1));
      rows.push(
        el(
          "tr",
          { "data-testid": "latency-row" },
          el("td", {}, String(name)),
          el("td", {}, fmtInt(v.count)),
          cell(v.p50),
          cell(v.p90),
          cell(v.p99),
          cell(v.p999 !== undefined ? v.p999 : v.p99_9),
          cell(v.max)
        )
      );
    }
    if (!rows.length) {
      const why = isObject(p) ? "no stages measured yet" : "not available";
      rows.push(
        el("tr", {}, el("td", { class: "na" }, why), ...[0, 1, 2, 3, 4, 5].map(() => el("td", { class: "na" }, "n/a")))
      );
    }
    $("latency-rows").replaceChildren(...rows);
    const perf = isObject(p) ? p : {};
    setText("messages-sent", fmtInt(perf.messages_sent));
    setText("avg-latency", num(perf.avg_latency_ms) === null ? "n/a" : fmtNum(perf.avg_latency_ms, 3) + " ms");
    if (perf.active_clients !== undefined) setText("active-clients", fmtInt(perf.active_clients));
  }

  function onEngineRestart() {
    // A new engine has new counters and its own history (a restarted demo even starts
    // its market afresh): start the rates anew and show what this engine has.
    state.prevTotal = null;
    state.prevShards.clear();
    loadHistory(true);
    loadFeed();
  }

  async function pollStatus() {
    const [status, perf] = await Promise.allSettled([getJson("/api/status"), getJson("/api/performance")]);
    if (status.status === "fulfilled" && isObject(status.value)) {
      const wasDown = state.engineUp === false;
      state.engineUp = true;
      if (renderStatus(status.value) || wasDown) onEngineRestart();
    } else {
      state.engineUp = false;
      const node = $("engine-status");
      node.textContent = "unreachable";
      node.className = "bad";
    }
    renderFeedMode();
    renderPerformance(perf.status === "fulfilled" ? perf.value : null);
  }

  // ---- start ---------------------------------------------------------------------

  async function start() {
    if (pendingToken !== null) {
      const ok = await openSession(pendingToken).catch(() => false);
      pendingToken = null;
      if (!ok) askForToken();
    }
    setupChart();
    setupSpark();
    renderPerformance(null);
    $("symbol").addEventListener("change", (e) => select(e.target.value, state.timeframe));
    $("timeframe").addEventListener("change", (e) => select(state.symbol, e.target.value));
    pollStatus();
    loadFeed();
    connectWs();
    setInterval(pollStatus, STATUS_POLL_MS);
    setInterval(pollLive, FALLBACK_POLL_MS);
    setInterval(wsWatchdog, WS_PING_MS);
    // Drawing is batched: a burst of records costs one redraw of the quote, the feed
    // and the markers.
    setInterval(() => {
      drawQuote();
      renderFeed();
      renderMarkers();
      renderTape();
    }, 250);
  }

  start();
})();
