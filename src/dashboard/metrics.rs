//! `/metrics`: the Prometheus text exposition of the engine's counters.
//!
//! Runs on: the dashboard core, on request. Reads: the shards' relaxed counters and ring
//! views, the dashboard's own counters. Out: text format 0.0.4. Each family is written
//! by one helper, so further families (latency histograms) are added the same way.

use std::fmt::Write;

use super::fanout::DashboardStats;
use super::status::StatusContext;

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
    let shard_counters: [(&str, &str, ShardCounter); 8] = [
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
        ("alphapulse_reconnects_total", "Exchange reconnects", |s| {
            s.reconnects.get()
        }),
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
    out
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
