#!/usr/bin/env python3
"""Writes alphapulse.json, the Grafana dashboard of the engine's /metrics.

The panels are listed once below; run this after changing them and commit both files.
tests/deploy.rs checks the result: every panel has a datasource and a query, every
query parses as PromQL (promtool), and every metric it names is one the engine exports.

Usage: python3 scripts/deploy/grafana/generate.py
"""

import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "alphapulse.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"'
RATE = "$__rate_interval"
WIDTH = 24


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def rate_per_instance(metric, legend):
    """The per-second rate of a counter, summed per instance."""
    return q(f"sum by (instance) (rate({metric}{{{SEL}}}[{RATE}]))", legend + " {{instance}}")


def ts(title, unit, targets, description, stack=False, min0=True):
    """A time series panel."""
    custom = {"fillOpacity": 10, "showPoints": "never", "lineWidth": 1}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(title, unit, targets, description, thresholds=None):
    """A single-value panel, coloured by thresholds."""
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
        "targets": targets,
    }


def latency(quantile, label):
    return ts(
        f"Stage latency {label}",
        "s",
        [q(f"histogram_quantile({quantile}, sum by (le, stage) "
           f"(rate(alphapulse_stage_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "{{stage}}")],
        f"The {label} of each stage of an event's journey over the last interval, every core "
        "and selected instance together (the engine's histograms, buckets from 1 µs to 10 s on "
        "a 1-2-5 ladder; the quantile is interpolated within its bucket).",
    )


ROWS = [
    ("Latency", [
        latency("0.5", "p50"),
        latency("0.99", "p99"),
        latency("0.999", "p99.9"),
        ts("Stage latency, mean over the window", "s",
           [q(f"sum by (stage) (rate(alphapulse_stage_latency_seconds_sum{{{SEL}}}[{RATE}])) / "
              f"sum by (stage) (rate(alphapulse_stage_latency_seconds_count{{{SEL}}}[{RATE}]))", "{{stage}}")],
           "Mean latency of each stage over the last interval (the histograms' _sum over _count)."),
    ]),
    ("Throughput", [
        ts("Exchange messages received", "msg/s",
           [q(f"sum by (instance) (rate(alphapulse_messages_received_total{{{SEL}}}[{RATE}]))", "{{instance}}")],
           "Frames from the exchange per second, per instance.", stack=True),
        ts("Candles closed", "ops",
           [q(f"sum by (instance) (rate(alphapulse_candles_closed_total{{{SEL}}}[{RATE}]))", "{{instance}}")],
           "Closed candles per second, per instance.", stack=True),
        ts("Bytes received", "Bps",
           [q(f"sum by (instance) (rate(alphapulse_bytes_received_total{{{SEL}}}[{RATE}]))", "{{instance}}")],
           "Exchange bytes per second, per instance.", stack=True),
        ts("Parse errors and gaps", "ops",
           [q(f"sum by (instance) (rate(alphapulse_parse_errors_total{{{SEL}}}[{RATE}]))", "parse errors {{instance}}"),
            q(f"sum by (instance) (rate(alphapulse_gaps_total{{{SEL}}}[{RATE}]))", "gaps {{instance}}")],
           "Frames that failed to parse and candle gaps detected, per second. Both should be 0."),
    ]),
    ("Rings and spool", [
        ts("Ring fill", "percentunit",
           [q(f"max by (instance, shard, ring) (alphapulse_ring_depth{{{SEL}}} / alphapulse_ring_capacity{{{SEL}}})",
              "{{instance}} shard {{shard}} {{ring}}")],
           "Records waiting in each ring between cores, as a share of its capacity "
           "(MAX_QUEUE_SIZE). Near 1 the consumer core cannot keep up."),
        ts("Ring depth", "short",
           [q(f"alphapulse_ring_depth{{{SEL}}}", "{{instance}} shard {{shard}} {{ring}}"),
            q(f"alphapulse_ring_capacity{{{SEL}}}", "capacity {{instance}} shard {{shard}} {{ring}}")],
           "Records waiting in each ring, with its capacity."),
        ts("Database spool", "short",
           [q(f"sum by (instance) (alphapulse_spool_rows{{{SEL}}})", "rows {{instance}}")],
           "Rows held on disk while the database is unreachable; they are written when it "
           "returns. Growing means the database is down or too slow."),
        ts("Database spool size", "bytes",
           [q(f"sum by (instance) (alphapulse_spool_bytes{{{SEL}}})", "{{instance}}")],
           "Bytes in the spool; past DATABASE_SPOOL_MAX_BYTES new batches are dropped."),
        ts("Backpressure", "ops",
           [q(f"sum by (instance) (rate(alphapulse_backpressure_pauses_total{{{SEL}}}[{RATE}]))", "pauses {{instance}}"),
            q(f"sum by (instance) (rate(alphapulse_live_conflated_total{{{SEL}}}[{RATE}]))", "conflated {{instance}}")],
           "Shards pausing their sockets for a full ring, and live candle updates conflated."),
        ts("Database writes", "ops",
           [rate_per_instance("alphapulse_database_rows_committed_total", "rows committed"),
            rate_per_instance("alphapulse_database_errors_total", "errors"),
            rate_per_instance("alphapulse_database_transient_errors_total", "transient errors"),
            rate_per_instance("alphapulse_spool_dropped_rows_total", "spool dropped"),
            rate_per_instance("alphapulse_dead_letter_rows_refused_total", "rows refused")],
           "Rows the writer commits per second, failed writes (transient ones are retried), rows "
           "dropped at the spool's bound and rows the database refused (dead letters)."),
        ts("Redis publishes", "ops",
           [rate_per_instance("alphapulse_redis_published_total", "published"),
            rate_per_instance("alphapulse_redis_dropped_total", "dropped"),
            rate_per_instance("alphapulse_redis_bridge_applied_total", "bridge applied"),
            q(f"sum by (instance, reason) (rate(alphapulse_redis_bridge_rejected_total{{{SEL}}}[{RATE}]))",
              "bridge rejected {{reason}} {{instance}}")],
           "PUBLISH commands acknowledged and lost, and the bridge's records of other instances "
           "applied or refused (by reason)."),
    ]),
    ("Connections", [
        ts("Exchange connections", "short",
           [q(f"sum by (instance) (alphapulse_exchange_connections{{{SEL}}})", "{{instance}}")],
           "WebSocket connections to the exchange, per instance."),
        ts("Reconnects and rotations", "short",
           [q(f"sum by (instance) (increase(alphapulse_reconnects_total{{{SEL}}}[{RATE}]))", "reconnects {{instance}}"),
            q(f"sum by (instance) (increase(alphapulse_rotations_total{{{SEL}}}[{RATE}]))", "rotations {{instance}}"),
            q(f"sum by (instance) (increase(alphapulse_redis_reconnects_total{{{SEL}}}[{RATE}]))",
              "redis reconnects {{instance}}")],
           "Unplanned exchange reconnects (drops, silence, errors) against planned "
           "make-before-break rotations, and the Redis publisher's reconnects, per interval."),
        ts("Sinks connected", "bool",
           [q(f"min by (instance) (alphapulse_database_connected{{{SEL}}})", "database {{instance}}"),
            q(f"min by (instance) (alphapulse_redis_connected{{{SEL}}})", "redis {{instance}}"),
            q(f"min by (instance) (alphapulse_redis_bridge_connected{{{SEL}}} "
              f"and on (job, instance) alphapulse_redis_bridge_active{{{SEL}}} == 1)",
              "redis bridge {{instance}}")],
           "1 while the database writer and the Redis publisher are connected; 0 means rows go "
           "to the spool (database) or publishes are dropped (Redis). The bridge's line shows "
           "only where it runs (more than one instance)."),
        ts("Dashboard clients", "short",
           [q(f"sum by (instance) (alphapulse_dashboard_clients{{{SEL}}})", "clients {{instance}}"),
            q(f"sum by (instance) (alphapulse_dashboard_connections{{{SEL}}})", "connections {{instance}}")],
           "WebSocket clients and open HTTP connections of each dashboard."),
        ts("Dashboard sends and drops", "ops",
           [q(f"sum by (instance) (rate(alphapulse_dashboard_messages_sent_total{{{SEL}}}[{RATE}]))", "sent {{instance}}"),
            q(f"sum by (instance) (rate(alphapulse_dashboard_dropped_total{{{SEL}}}[{RATE}]))", "conflated {{instance}}"),
            q(f"sum by (instance) (rate(alphapulse_dashboard_disconnected_slow_total{{{SEL}}}[{RATE}]))", "slow clients cut {{instance}}")],
           "Messages sent to dashboard clients, updates conflated for slow ones, slow clients disconnected."),
    ]),
    ("Completeness", [
        stat("Worst completeness", "percentunit",
             [q(f"min(alphapulse_completeness_ratio{{{SEL}}})", "worst")],
             "The lowest share of expected closed candles present, over every symbol and timeframe.",
             [{"color": "red", "value": None}, {"color": "orange", "value": 0.99}, {"color": "green", "value": 0.9999}]),
        ts("Completeness by series", "percentunit",
           [q(f"min by (symbol, timeframe) (alphapulse_completeness_ratio{{{SEL}}})", "{{symbol}} {{timeframe}}")],
           "Share of expected closed candles present, per symbol and timeframe.", min0=False),
        ts("Missing candles and open gaps", "short",
           [q(f"sum by (symbol, timeframe) (alphapulse_missing_candles{{{SEL}}})", "missing {{symbol}} {{timeframe}}"),
            q(f"sum by (symbol, timeframe) (alphapulse_open_gaps{{{SEL}}})", "open gaps {{symbol}} {{timeframe}}")],
           "Closed candles still missing, and gaps not yet filled by backfill."),
        ts("Age of the last closed candle", "s",
           [q(f"max by (symbol, timeframe) (alphapulse_last_closed_age_seconds{{{SEL}}})", "{{symbol}} {{timeframe}}")],
           "Seconds since the newest closed candle of each series; more than one period means the feed is stuck."),
        ts("Backfill", "short",
           [q(f"sum by (instance) (increase(alphapulse_gaps_filled_total{{{SEL}}}[{RATE}]))", "gaps filled {{instance}}"),
            q(f"sum by (instance) (increase(alphapulse_candles_backfilled_total{{{SEL}}}[{RATE}]))", "candles backfilled {{instance}}"),
            q(f"sum by (instance) (increase(alphapulse_confirmed_absent_candles_total{{{SEL}}}[{RATE}]))", "confirmed absent {{instance}}")],
           "Gaps filled over REST, candles fetched for them, and candles the exchange confirmed it does not have."),
        ts("REST requests and weight", "short",
           [q(f"sum by (purpose) (rate(alphapulse_rest_requests_total{{{SEL}}}[{RATE}]))", "requests/s {{purpose}}"),
            q(f"sum (rate(alphapulse_rest_rate_limited_total{{{SEL}}}[{RATE}]))", "rate limited/s"),
            q(f"max by (instance) (alphapulse_rest_used_weight_1m{{{SEL}}})", "used weight (1m) {{instance}}")],
           "REST calls by purpose, 429/418 answers, and the used weight the exchange reports (limit 6000 per minute)."),
    ]),
    ("Process", [
        ts("Resident memory", "bytes",
           [q(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
           "Resident memory of each engine. It should level off; steady growth is a leak or an unbounded queue."),
        ts("CPU by role thread", "percentunit",
           [q(f"sum by (instance, thread) (rate(alphapulse_thread_cpu_seconds_total{{{SEL}}}[{RATE}]))", "{{instance}} {{thread}}")],
           "CPU time of each role thread (user + system) as a share of one core. A pinned shard "
           "near 1 is saturated.", stack=False),
        stat("Build", "none",
             [q(f"alphapulse_build_info{{{SEL}}}", "{{instance}} {{version}}")],
             "The version each instance runs (always 1; the legend carries the version)."),
    ]),
]


def layout():
    panels, y, next_id = [], 0, 1
    for title, row_panels in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "id": next_id,
                       "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        for p in row_panels:
            w = 8 if p["type"] == "stat" else 12
            if x + w > WIDTH:
                x, y = 0, y + 8
            p["id"] = next_id
            next_id += 1
            p["datasource"] = DS
            p["gridPos"] = {"h": 8, "w": w, "x": x, "y": y}
            for i, t in enumerate(p["targets"]):
                t["refId"] = chr(ord("A") + i)
                t["datasource"] = DS
            panels.append(p)
            x += w
        y += 8
    return panels


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query, "refresh": 2, "includeAll": True, "multi": True,
        "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def main():
    dashboard = {
        "uid": "alphapulse-engine",
        "title": "AlphaPulse engine",
        "description": "Latency, throughput, queues, connections, completeness and process figures "
                       "of AlphaPulse engines (their /metrics). docs/operations.md explains each metric.",
        "tags": ["alphapulse"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Datasource", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False},
            variable("job", "Job", "label_values(alphapulse_build_info, job)"),
            variable("instance", "Instance", 'label_values(alphapulse_build_info{job=~"$job"}, instance)'),
        ]},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(),
    }
    with open(OUT, "w") as f:
        json.dump(dashboard, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT}: {sum(1 for p in dashboard['panels'] if p['type'] != 'row')} panels")


if __name__ == "__main__":
    main()
