//! `/metrics`: the Prometheus text exposition of the engine's counters.
//!
//! Runs on: the dashboard core, on request. Reads: the shards' relaxed counters and ring
//! views, the dashboard's own counters. Out: text format 0.0.4. Each family is written
//! by one helper.

use std::fmt::Write;

use super::fanout::DashboardStats;
use super::status::StatusContext;
use crate::metrics::ProcessSample;

/// One metric family: its `# HELP` / `# TYPE` lines, then a sample per label set.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    pub fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// A sample with `labels` (name, value) pairs; values are escaped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Reads one counter of a shard.
type ShardCounter = fn(&crate::metrics::ShardStats) -> u64;

/// The whole exposition.
pub fn render(ctx: &StatusContext, dash: &DashboardStats) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("# AlphaPulse engine metrics\n");
    let shard_counters: [(&str, &str, ShardCounter); 13] = [
        (
            "alphapulse_messages_received_total",
            "Exchange messages received",
            |s| s.messages.get(),
        ),
        (
            "alphapulse_bytes_received_total",
            "Exchange bytes received",
            |s| s.bytes.get(),
        ),
        (
            "alphapulse_parse_errors_total",
            "Messages that failed to parse",
            |s| s.parse_errors_total(),
        ),
        ("alphapulse_candles_closed_total", "Candles closed", |s| {
            s.candles_closed.get()
        }),
        ("alphapulse_gaps_total", "Candle gaps detected", |s| {
            s.gaps.get()
        }),
        (
            "alphapulse_trade_gaps_total",
            "Holes in a symbol's trade ids",
            |s| s.trade_gaps.get(),
        ),
        (
            "alphapulse_trade_gap_ids_total",
            "Trade ids skipped by holes",
            |s| s.trade_gap_ids.get(),
        ),
        (
            "alphapulse_agg_trade_gaps_total",
            "Holes in a symbol's aggregate trade ids",
            |s| s.agg_trade_gaps.get(),
        ),
        (
            "alphapulse_agg_trade_gap_ids_total",
            "Aggregate trade ids skipped by holes",
            |s| s.agg_trade_gap_ids.get(),
        ),
        ("alphapulse_reconnects_total", "Exchange reconnects", |s| {
            s.reconnects.get()
        }),
        (
            "alphapulse_rotations_total",
            "Make-before-break connection rotations",
            |s| s.rotations.get(),
        ),
        (
            "alphapulse_live_conflated_total",
            "Live candle updates dropped for a full ring",
            |s| s.live_conflated.get(),
        ),
        (
            "alphapulse_backpressure_pauses_total",
            "Times a shard paused reading for a full ring",
            |s| s.backpressure_pauses.get(),
        ),
    ];
    for (name, help, get) in shard_counters {
        let mut f = Family::new(&mut out, name, "counter", help);
        for s in &ctx.shards {
            f.sample(&[("shard", &s.index.to_string())], get(&s.stats) as f64);
        }
    }
    render_books(&mut out, ctx);
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_feed_resets_total",
            "counter",
            "Exchange connections reset, by reason (protocol violations, closes, timeouts)",
        );
        for s in &ctx.shards {
            for (reason, c) in crate::metrics::RESET_REASONS.iter().zip(&s.stats.resets) {
                f.sample(
                    &[("shard", &s.index.to_string()), ("reason", reason)],
                    c.get() as f64,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_clock_skew_drops_total",
            "counter",
            "Exchange events dropped for a time too far from the local clock",
        );
        for s in &ctx.shards {
            for reason in crate::clock::Skew::ALL {
                f.sample(
                    &[("shard", &s.index.to_string()), ("reason", reason.as_str())],
                    s.stats.clock_skew_drops[reason as usize].get() as f64,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_streams_rejected_total",
            "counter",
            "Stream subscriptions the exchange rejected (each retried with backoff)",
        );
        for s in &ctx.shards {
            f.sample(
                &[("shard", &s.index.to_string())],
                s.stats.streams_rejected.get() as f64,
            );
        }
    }
    {
        // Per state, a count for every shard; then one sample per stream that is not
        // live, so an alert can name it (live streams are not listed: thousands).
        let now = crate::clock::mono_ns();
        let mut f = Family::new(
            &mut out,
            "alphapulse_streams",
            "gauge",
            "Configured exchange streams by state (live, silent, rejected, pending)",
        );
        for s in &ctx.shards {
            let mut counts = [0u64; 4];
            for (_, state) in super::status::stream_states(s, now, ctx.stream_silence_ns) {
                counts[state as usize] += 1;
            }
            for (state, n) in [
                crate::metrics::StreamState::Live,
                crate::metrics::StreamState::Silent,
                crate::metrics::StreamState::Rejected,
                crate::metrics::StreamState::Pending,
            ]
            .iter()
            .zip(counts)
            {
                f.sample(
                    &[("shard", &s.index.to_string()), ("state", state.as_str())],
                    n as f64,
                );
            }
        }
        let mut f = Family::new(
            &mut out,
            "alphapulse_stream_not_live",
            "gauge",
            "1 for each configured stream that is not live (silent kline stream, rejected, pending)",
        );
        for n in ctx.streams_not_live() {
            f.sample(
                &[
                    ("shard", &n.shard.to_string()),
                    ("stream", &n.stream),
                    ("state", n.state.as_str()),
                ],
                1.0,
            );
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_exchange_connections",
            "gauge",
            "Exchange connections open",
        );
        for s in &ctx.shards {
            f.sample(
                &[("shard", &s.index.to_string())],
                s.stats.connections_active.get() as f64,
            );
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_ring_depth",
            "gauge",
            "Records waiting in a ring between cores",
        );
        for s in &ctx.shards {
            for r in &s.rings {
                f.sample(
                    &[("shard", &s.index.to_string()), ("ring", r.name())],
                    r.depth() as f64,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "alphapulse_ring_capacity",
            "gauge",
            "Capacity of a ring between cores",
        );
        for s in &ctx.shards {
            for r in &s.rings {
                f.sample(
                    &[("shard", &s.index.to_string()), ("ring", r.name())],
                    r.capacity() as f64,
                );
            }
        }
    }
    let gauges: [(&str, &str, u64); 2] = [
        (
            "alphapulse_dashboard_clients",
            "WebSocket clients connected",
            dash.active_clients.get(),
        ),
        (
            "alphapulse_dashboard_connections",
            "Dashboard connections open",
            dash.open_connections.get(),
        ),
    ];
    for (name, help, v) in gauges {
        Family::new(&mut out, name, "gauge", help).sample(&[], v as f64);
    }
    let counters: [(&str, &str, u64); 8] = [
        (
            "alphapulse_dashboard_messages_sent_total",
            "WebSocket messages sent",
            dash.messages_sent.get(),
        ),
        (
            "alphapulse_dashboard_dropped_total",
            "Queued updates conflated or dropped",
            dash.dropped.get(),
        ),
        (
            "alphapulse_dashboard_disconnected_slow_total",
            "Clients disconnected for a full send queue",
            dash.disconnected_slow.get(),
        ),
        (
            "alphapulse_dashboard_disconnected_idle_total",
            "Clients disconnected for not answering pings",
            dash.disconnected_idle.get(),
        ),
        (
            "alphapulse_dashboard_rate_limited_total",
            "Clients closed for sending too fast",
            dash.rate_limited.get(),
        ),
        (
            "alphapulse_dashboard_refused_total",
            "WebSocket upgrades refused for the client limit",
            dash.refused_full.get(),
        ),
        (
            "alphapulse_dashboard_unauthorized_total",
            "Requests without the right token",
            dash.unauthorized.get(),
        ),
        (
            "alphapulse_dashboard_broadcasts_total",
            "Broadcasts fanned out",
            dash.broadcasts.get(),
        ),
    ];
    for (name, help, v) in counters {
        Family::new(&mut out, name, "counter", help).sample(&[], v as f64);
    }
    render_sinks(&mut out, ctx);
    render_latency(&mut out, ctx);
    let process = ctx
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .process
        .clone();
    render_process(&mut out, &process);
    render_completeness(&mut out, ctx);
    out
}

/// The local books' figures, per shard: resyncs by cause, snapshots, time invalid.
fn render_books(out: &mut String, ctx: &StatusContext) {
    if ctx.books.symbols().next().is_none() {
        return;
    }
    type BookFigure = fn(&crate::metrics::BookStats) -> f64;
    let families: [(&'static str, &str, &str, BookFigure); 9] = [
        ("alphapulse_books", "gauge", "Local order books kept", |b| {
            b.books.get() as f64
        }),
        (
            "alphapulse_books_valid",
            "gauge",
            "Local order books synchronised now",
            |b| b.valid.get() as f64,
        ),
        (
            "alphapulse_book_diffs_applied_total",
            "counter",
            "Diff depth events applied to local books",
            |b| b.diffs_applied.get() as f64,
        ),
        (
            "alphapulse_book_snapshots_total",
            "counter",
            "Depth snapshots applied to local books",
            |b| b.snapshots_applied.get() as f64,
        ),
        (
            "alphapulse_book_snapshot_failures_total",
            "counter",
            "Depth snapshot requests that failed (asked again)",
            |b| b.snapshot_failures.get() as f64,
        ),
        (
            "alphapulse_book_snapshots_too_old_total",
            "counter",
            "Depth snapshots older than the buffered events (asked again)",
            |b| b.snapshots_too_old.get() as f64,
        ),
        (
            "alphapulse_book_snapshot_requests_dropped_total",
            "counter",
            "Depth snapshot requests the REST queue had no room for (asked again)",
            |b| b.snapshot_requests_dropped.get() as f64,
        ),
        (
            "alphapulse_book_buffer_drops_total",
            "counter",
            "Buffered diff events dropped for room while a snapshot was awaited",
            |b| b.buffer_drops.get() as f64,
        ),
        (
            "alphapulse_book_invalid_seconds_total",
            "counter",
            "Time local books were invalid while resynchronising (resyncs that ended)",
            |b| b.invalid_ns.get() as f64 / 1e9,
        ),
    ];
    for (name, kind, help, get) in families {
        let mut f = Family::new(out, name, kind, help);
        for s in &ctx.shards {
            f.sample(&[("shard", &s.index.to_string())], get(&s.stats.books));
        }
    }
    let mut f = Family::new(
        out,
        "alphapulse_book_resyncs_total",
        "counter",
        "Local book resynchronisations begun, by cause",
    );
    for s in &ctx.shards {
        for cause in crate::book::Resync::ALL {
            f.sample(
                &[("shard", &s.index.to_string()), ("cause", cause.name())],
                s.stats.books.resyncs[cause as usize].get() as f64,
            );
        }
    }
}

/// Completeness per (symbol, timeframe) and the REST thread's figures.
fn render_completeness(out: &mut String, ctx: &StatusContext) {
    type Figure = fn(&crate::metrics::SeriesStats, i64) -> f64;
    let families: [(&'static str, &str, &str, Figure); 8] = [
        (
            "alphapulse_completeness_ratio",
            "gauge",
            "Share of the expected closed candles present (1 = complete)",
            |s, _| s.ratio(),
        ),
        (
            "alphapulse_missing_candles",
            "gauge",
            "Closed candles expected but not present (open gaps)",
            |s, _| s.missing.get() as f64,
        ),
        (
            "alphapulse_open_gaps",
            "gauge",
            "Gaps waiting for the backfill",
            |s, _| s.open_gaps.get() as f64,
        ),
        (
            "alphapulse_last_closed_age_seconds",
            "gauge",
            "Wall seconds since the newest closed candle closed",
            |s, now_ms| s.last_closed_age_s(now_ms),
        ),
        (
            "alphapulse_candle_interval_seconds",
            "gauge",
            "Length of the series' candles (a month counts 31 days), for thresholds on the age",
            |s, _| s.interval.fixed_ms().unwrap_or(31 * 86_400_000) as f64 / 1000.0,
        ),
        (
            "alphapulse_gaps_filled_total",
            "counter",
            "Gaps closed by the backfill (or confirmed absent)",
            |s, _| s.gaps_filled.get() as f64,
        ),
        (
            "alphapulse_candles_backfilled_total",
            "counter",
            "Closed candles stored from REST (backfill, catch-up, warm history)",
            |s, _| s.candles_backfilled.get() as f64,
        ),
        (
            "alphapulse_confirmed_absent_candles_total",
            "counter",
            "Candles the exchange confirmed it does not have",
            |s, _| s.confirmed_absent.get() as f64,
        ),
    ];
    let now_ms = crate::clock::wall_us() / 1000;
    for (name, kind, help, get) in families {
        let mut f = Family::new(out, name, kind, help);
        for shard in &ctx.shards {
            for s in shard.stats.series.get().into_iter().flatten() {
                f.sample(
                    &[
                        ("symbol", s.symbol.as_str()),
                        ("timeframe", s.interval.as_str()),
                    ],
                    get(s, now_ms),
                );
            }
        }
    }
    render_signals(out, ctx);
    let rest = &ctx.rest;
    let mut f = Family::new(
        out,
        "alphapulse_rest_requests_total",
        "counter",
        "REST klines requests sent, by purpose",
    );
    f.sample(&[("purpose", "warm")], rest.warm_requests.get() as f64);
    f.sample(
        &[("purpose", "backfill")],
        rest.backfill_requests.get() as f64,
    );
    let mut f = Family::new(
        out,
        "alphapulse_rest_rows_dropped_total",
        "counter",
        "REST kline rows dropped for an open time outside what was asked or far from the local clock",
    );
    for reason in crate::clock::Skew::ALL {
        f.sample(
            &[("reason", reason.as_str())],
            rest.rows_dropped[reason as usize].get() as f64,
        );
    }
    for (name, kind, help, value) in [
        (
            "alphapulse_rest_rate_limited_total",
            "counter",
            "REST answers 429/418 obeyed (Retry-After)",
            rest.rate_limited.get() as f64,
        ),
        (
            "alphapulse_rest_failures_total",
            "counter",
            "REST requests that failed for good after their retries",
            rest.failures.get() as f64,
        ),
        (
            "alphapulse_rest_used_weight_1m",
            "gauge",
            "X-MBX-USED-WEIGHT-1M after the latest REST answer",
            rest.used_weight_1m.get() as f64,
        ),
        (
            "alphapulse_rest_weight_share_1m",
            "gauge",
            "REST weight per minute this process may use",
            rest.weight_share_1m.get() as f64,
        ),
        (
            "alphapulse_rest_queued",
            "gauge",
            "REST requests waiting (urgent and normal)",
            (rest.queued_urgent.get() + rest.queued_normal.get()) as f64,
        ),
        (
            "alphapulse_rest_blocked",
            "gauge",
            "1 while no REST request may be sent: waiting out a 429/418 Retry-After",
            rest.blocked.get() as f64,
        ),
    ] {
        Family::new(out, name, kind, help).sample(&[], value);
    }
}

/// Signals made per (symbol, timeframe, kind, direction), as the shards count them
/// (`SeriesStats::signals`): a label set appears with its first signal, so a deployment
/// of many series exports only the ones that fired.
fn render_signals(out: &mut String, ctx: &StatusContext) {
    let mut f = Family::new(
        out,
        "alphapulse_signals_total",
        "counter",
        "Signals made, by series, kind and direction",
    );
    for shard in &ctx.shards {
        for s in shard.stats.series.get().into_iter().flatten() {
            for kind in crate::signals::SignalKind::ALL {
                for (d, direction) in crate::metrics::DIRECTIONS.into_iter().enumerate() {
                    let n = s.signals[kind as usize][d].get();
                    if n > 0 {
                        f.sample(
                            &[
                                ("symbol", s.symbol.as_str()),
                                ("timeframe", s.interval.as_str()),
                                ("kind", kind.as_str()),
                                ("direction", direction.as_str()),
                            ],
                            n as f64,
                        );
                    }
                }
            }
        }
    }
}

/// The sink roles' families ([`crate::sinks::metrics`]): every family always, with the
/// samples of the sinks that run.
fn render_sinks(out: &mut String, ctx: &StatusContext) {
    let mut samples = Vec::new();
    for s in &ctx.sink_status {
        s.metrics(&mut samples);
    }
    for (name, kind, help) in crate::sinks::metrics::families() {
        let mut f = Family::new(out, name, kind.as_str(), help);
        for s in samples.iter().filter(|s| s.family == name) {
            f.sample(s.label.as_slice(), s.value);
        }
    }
}

/// Stage latencies since start, per stage and per core, as histograms in seconds: the
/// cumulative counts at the fixed [`crate::latency::BUCKETS`], taken from the cumulative
/// HDR histograms (never a window), so they are counters that `rate()` and
/// `histogram_quantile` can window and sum across cores and instances.
fn render_latency(out: &mut String, ctx: &StatusContext) {
    use crate::latency::{cumulative_buckets, Stage, BUCKETS};
    let name = "alphapulse_stage_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Latency of each stage of an event's journey, since start, per core"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let snap = ctx.latency.lock().unwrap_or_else(|p| p.into_inner());
    for (core, set) in &snap.per_recorder {
        for stage in Stage::ALL {
            let h = set.get(stage);
            if h.is_empty() {
                continue;
            }
            let labels = format!("stage=\"{}\",core=\"{}\"", stage.as_str(), core);
            for ((le, _), n) in BUCKETS.iter().zip(cumulative_buckets(h)) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
            }
            let count = h.len();
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let sum = h.mean() * count as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// Build information, the standard `process_*` figures and the CPU time of each role
/// thread, as the control plane last sampled them from `/proc` (no file is read here, on
/// the dashboard's executor; a figure is absent before the first sample or where `/proc`
/// cannot be read).
fn render_process(out: &mut String, process: &ProcessSample) {
    let mut f = Family::new(
        out,
        "alphapulse_build_info",
        "gauge",
        "Always 1; the labels say which build runs",
    );
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    let stat = process.stat;
    let figures: [(&str, &str, &str, Option<f64>); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds",
            stat.map(|s| s.cpu_seconds),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds",
            stat.map(|s| s.start_time_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes",
            process.rss_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes",
            stat.map(|s| s.virtual_bytes as f64),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors",
            process.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors",
            process.max_fds.map(|n| n as f64),
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process",
            stat.map(|s| s.threads as f64),
        ),
    ];
    for (name, kind, help, value) in figures {
        if let Some(v) = value {
            Family::new(out, name, kind, help).sample(&[], v);
        }
    }
    let mut f = Family::new(
        out,
        "alphapulse_thread_cpu_seconds_total",
        "counter",
        "CPU time of each role thread, by mode",
    );
    for (thread, user, system) in &process.threads {
        f.sample(&[("thread", thread), ("mode", "user")], *user);
        f.sample(&[("thread", thread), ("mode", "system")], *system);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_well_formed_and_labels_escaped() {
        let mut out = String::new();
        let mut f = Family::new(&mut out, "x_total", "counter", "An x");
        f.sample(&[("ring", "a\"b")], 3.0);
        f.sample(&[], 1.5);
        assert_eq!(
            out,
            "# HELP x_total An x\n# TYPE x_total counter\nx_total{ring=\"a\\\"b\"} 3\nx_total 1.5\n"
        );
    }
}
