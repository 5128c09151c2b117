//! The status model: read-only views of every role, rendered as the `/api/status` JSON.
//!
//! Built once by the engine and shared (`Arc`) with the dashboard core. Reads are relaxed
//! counter loads and one short lock of the recent store; nothing here is on a hot path.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use crate::market::{Interval, Symbol};
use crate::message::Envelope;
use crate::metrics::{ShardStats, StreamState, PARSE_ERROR_REASONS, RESET_REASONS};
use crate::record::{CandleRecord, GapRecord, SignalRecord};
use crate::ring::RingView;
use crate::store::{ListError, ListQuery, RecentStore, RecordSource};

/// Recent gaps and outages listed in `/api/status` (the totals count all of them).
pub const STATUS_RECENT_ITEMS: usize = 20;

/// One shard as the control plane sees it.
pub struct ShardView {
    pub index: usize,
    pub core: Option<usize>,
    pub symbols: Vec<Symbol>,
    /// Connection slots the shard keeps (its streams need this many connections).
    pub slots: usize,
    pub streams: usize,
    pub stats: Arc<ShardStats>,
    pub rings: Vec<RingView<Envelope>>,
}

pub use crate::sinks::SinkStatus;

/// Everything `/api/status` reports.
pub struct StatusContext {
    pub started: Instant,
    pub shards: Vec<ShardView>,
    pub store: Arc<Mutex<RecentStore>>,
    pub timeframes: Vec<Interval>,
    /// Where closed candles go now, e.g. "memory".
    pub database_state: &'static str,
    pub redis_state: &'static str,
    /// Sections of the sink roles that run; each replaces the placeholder of its name.
    pub sink_status: Vec<Arc<dyn SinkStatus>>,
    /// Stage latency histograms, merged by the collector.
    pub latency: Arc<Mutex<crate::latency::Snapshot>>,
    /// The database query worker, when `DATABASE_URL` is set: it answers the list
    /// reads instead of the in-memory store.
    pub queries: Option<crate::sinks::db::query::QueryClient>,
    /// The REST thread's figures (warm starts, backfill).
    pub rest: Arc<crate::backfill::RestStats>,
    /// A subscribed kline stream without an update for longer than this is silent
    /// (`feed.stream_silence_s`).
    pub stream_silence_ns: u64,
    /// How many times faster than the wall clock the exchange's time runs
    /// (`feed.exchange_speed`: above 1 only against a fast simulator).
    pub exchange_speed: u32,
    /// The latest view of every local book (`/api/book`, the `book` subscription).
    pub books: Arc<crate::book::board::Board>,
}

/// Default of [`StatusContext::stream_silence_ns`] where no configuration is at hand.
pub const DEFAULT_STREAM_SILENCE_NS: u64 = 10_000_000_000;

/// A configured stream that is not live, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct NotLive {
    pub shard: usize,
    pub stream: String,
    pub state: StreamState,
    pub reason: String,
    pub rejections: u64,
}

impl NotLive {
    pub fn to_json(&self) -> Value {
        json!({
            "shard": self.shard,
            "stream": self.stream,
            "state": self.state.as_str(),
            "reason": self.reason,
            "rejections": self.rejections,
        })
    }
}

/// Every stream of `shard` with its state at `now_ns`.
pub fn stream_states(
    shard: &ShardView,
    now_ns: u64,
    silence_ns: u64,
) -> impl Iterator<Item = (&crate::metrics::StreamStats, StreamState)> {
    let series = shard.stats.series.get();
    shard
        .stats
        .streams
        .get()
        .map(|t| t.iter())
        .into_iter()
        .flatten()
        .map(move |st| {
            let last = st
                .series
                .and_then(|i| series.and_then(|s| s.get(i)))
                .map_or(0, |s| s.last_update_ns.get());
            (st, st.state(now_ns, last, silence_ns))
        })
}

impl StatusContext {
    /// A context with no shards and no sinks over `store`: for a dashboard server run
    /// on its own (the fan-out benchmark, tests).
    pub fn detached(store: Arc<Mutex<RecentStore>>, timeframes: Vec<Interval>) -> StatusContext {
        StatusContext {
            started: Instant::now(),
            shards: Vec::new(),
            store,
            timeframes,
            database_state: "memory",
            redis_state: "off",
            sink_status: Vec::new(),
            latency: Default::default(),
            queries: None,
            rest: Default::default(),
            stream_silence_ns: DEFAULT_STREAM_SILENCE_NS,
            exchange_speed: 1,
            books: Default::default(),
        }
    }

    /// Configured streams that are not live now (pending, rejected, or kline streams
    /// silent past `feed.stream_silence_s`), with the reason.
    pub fn streams_not_live(&self) -> Vec<NotLive> {
        let now = crate::clock::mono_ns();
        let silence_s = self.stream_silence_ns as f64 / 1e9;
        let mut out = Vec::new();
        for shard in &self.shards {
            for (st, state) in stream_states(shard, now, self.stream_silence_ns) {
                let reason = match state {
                    StreamState::Live => continue,
                    StreamState::Silent => {
                        format!("no kline update for more than {silence_s} s")
                    }
                    StreamState::Rejected => format!(
                        "rejected by the exchange ({}); retried with backoff",
                        st.last_error.lock().unwrap_or_else(|p| p.into_inner())
                    ),
                    StreamState::Pending => "not acknowledged on any connection yet".into(),
                };
                out.push(NotLive {
                    shard: shard.index,
                    stream: st.name.clone(),
                    state,
                    reason,
                    rejections: st.rejections.get(),
                });
            }
        }
        out
    }

    /// Ready once every connection slot of every shard is live and every configured
    /// stream is acknowledged (and no kline stream is silent).
    pub fn ready(&self) -> bool {
        self.readiness().is_empty()
    }

    /// Why the engine is not ready: the streams that are not live (empty when ready).
    /// Before the connections are up every stream is pending.
    pub fn readiness(&self) -> Vec<NotLive> {
        let slots_live = self
            .shards
            .iter()
            .all(|s| s.stats.connections_live.get() as usize >= s.slots);
        let not_live = self.streams_not_live();
        if !slots_live && not_live.is_empty() {
            // No stream table (a shard started without one): the slots alone decide.
            return vec![NotLive {
                shard: 0,
                stream: String::new(),
                state: StreamState::Pending,
                reason: "connections are not live yet".into(),
                rejections: 0,
            }];
        }
        not_live
    }

    pub fn snapshot(&self) -> Value {
        let shards: Vec<Value> = self.shards.iter().map(shard_json).collect();
        let total_messages: u64 = self.shards.iter().map(|s| s.stats.messages.get()).sum();
        let active_connections: u64 = self
            .shards
            .iter()
            .map(|s| s.stats.connections_active.get())
            .sum();
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let gaps: Vec<GapRecord> = store
            .gaps()
            .rev()
            .take(STATUS_RECENT_ITEMS)
            .map(GapRecord::from)
            .collect();
        let last_closed: Vec<CandleRecord> = self
            .shards
            .iter()
            .flat_map(|s| s.symbols.iter())
            .flat_map(|sym| {
                self.timeframes
                    .iter()
                    .filter_map(|tf| {
                        store
                            .closed(Some(*sym), Some(*tf), 1)
                            .first()
                            .map(CandleRecord::from)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let not_live = self.streams_not_live();
        let configured: usize = self
            .shards
            .iter()
            .map(|s| s.stats.streams.get().map_or(0, |t| t.len()))
            .sum();
        let count = |state: StreamState| not_live.iter().filter(|n| n.state == state).count();
        json!({
            "status": if self.ready() { "ok" } else { "starting" },
            "streams": {
                "configured": configured,
                "live": configured - not_live.len(),
                "pending": count(StreamState::Pending),
                "rejected": count(StreamState::Rejected),
                "silent": count(StreamState::Silent),
                "silence_bound_s": self.stream_silence_ns as f64 / 1e9,
                "not_live": not_live.iter().map(NotLive::to_json).collect::<Vec<_>>(),
            },
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "exchange_speed": self.exchange_speed,
            "books": self.books.symbols().map(|s| s.to_string()).collect::<Vec<_>>(),
            "total_messages_received": total_messages,
            "active_connections": active_connections,
            "active_clients": 0,
            "shards": shards,
            "timeframes": self.timeframes.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "candles": {
                "closed_total": store.closed_total,
                "series": store.series_count(),
                "duplicates_ignored": store.duplicates_ignored,
                "evicted": store.evicted,
                "last_closed": last_closed,
            },
            "gaps": { "total": store.gaps_total, "recent": gaps },
            "outages": {
                "total": store.outages_total,
                "recent": store.outages().rev().take(STATUS_RECENT_ITEMS).map(|o| json!({
                    "slot": o.slot,
                    "from_event_time_us": o.from_event_us,
                    "to_event_time_us": o.to_event_us,
                })).collect::<Vec<_>>(),
            },
            "signals": self.signals_json(store.signals_total),
            "completeness": self.completeness_json(&store),
            "sinks": self.sinks_json(&store),
        })
    }

    /// Signals made per kind by all shards, plus the warm start's figures.
    fn signals_json(&self, stored: u64) -> Value {
        let by_kind: serde_json::Map<String, Value> = crate::signals::SignalKind::ALL
            .iter()
            .map(|k| {
                let n: u64 = self
                    .shards
                    .iter()
                    .map(|s| s.stats.signals[*k as usize].get())
                    .sum();
                (k.as_str().to_owned(), json!(n))
            })
            .collect();
        json!({
            "total": stored,
            "made": self.shards.iter().map(|s| s.stats.signals_total()).sum::<u64>(),
            "by_kind": by_kind,
            "warm": {
                "series_warmed": self.rest.series_warmed.get(),
                "candles_fetched": self.rest.warm_candles.get(),
                "failures": self.rest.failures.get(),
                "pending": self.rest.queued_normal.get(),
                "last_error": self.rest.status()["last_error"].clone(),
            },
            "held": self.shards.iter().map(|s| s.stats.signal_held.get()).sum::<u64>(),
            "holes_bridged": self.shards.iter().map(|s| s.stats.signal_holes_bridged.get()).sum::<u64>(),
        })
    }

    /// Per (symbol, timeframe): the share of expected closed candles present, open
    /// gaps, the newest closed candle's age, gaps filled, and the reconnects and
    /// rotations of the shard that owns it; plus the REST thread's figures.
    pub fn completeness_json(&self, store: &RecentStore) -> Value {
        let now_ms = crate::clock::wall_us() / 1000;
        let mut expected = 0u64;
        let mut missing = 0u64;
        let mut series = Vec::new();
        for shard in &self.shards {
            let Some(all) = shard.stats.series.get() else {
                continue;
            };
            for s in all.iter() {
                expected += s.expected.get();
                missing += s.missing.get();
                let first = s.first_open_ms.get();
                let last = s.last_open_ms.get();
                series.push(json!({
                    "symbol": s.symbol.as_str(),
                    "timeframe": s.interval.as_str(),
                    "shard": shard.index,
                    "ratio": s.ratio(),
                    "expected": s.expected.get(),
                    "present": s.expected.get().saturating_sub(s.missing.get()),
                    "missing": s.missing.get(),
                    "open_gaps": s.open_gaps.get(),
                    "confirmed_absent": s.confirmed_absent.get(),
                    "first_open_time": (first > 0).then_some(first),
                    "last_closed_open_time": (last > 0).then_some(last),
                    "last_closed_age_s": s.last_closed_age_s(now_ms),
                    "gaps_detected": s.gaps_detected.get(),
                    "gaps_filled": s.gaps_filled.get(),
                    "candles_filled": s.candles_filled.get(),
                    "candles_backfilled": s.candles_backfilled.get(),
                    "reconnects": shard.stats.reconnects.get(),
                    "rotations": shard.stats.rotations.get(),
                }));
            }
        }
        let ratio = if expected == 0 {
            1.0
        } else {
            expected.saturating_sub(missing) as f64 / expected as f64
        };
        let mut backfill = self.rest.status();
        backfill["requests_made"] = json!(self
            .shards
            .iter()
            .map(|s| s.stats.backfill_requests.get())
            .sum::<u64>());
        backfill["requests_dropped"] = json!(self
            .shards
            .iter()
            .map(|s| s.stats.backfill_requests_dropped.get())
            .sum::<u64>());
        backfill["absences_recorded"] = json!(store.absences_total);
        json!({
            "ratio": ratio,
            "expected": expected,
            "missing": missing,
            "series": series,
            "backfill": backfill,
        })
    }

    fn sinks_json(&self, store: &RecentStore) -> Value {
        let mut sinks = json!({
            "database": { "state": self.database_state },
            "spool": { "state": "off" },
            "redis": { "state": self.redis_state },
            "memory": { "closed_candles": store.closed_total, "signals": store.signals_total },
        });
        for s in &self.sink_status {
            for (name, section) in s.sections() {
                sinks[name] = section;
            }
        }
        sinks
    }

    /// Closed candles newest first, for the API, from the [`RecordSource`] that answers
    /// list reads: the database query worker when one runs, else the in-memory store.
    pub async fn list_candles(&self, q: ListQuery) -> Result<Vec<CandleRecord>, ListError> {
        match &self.queries {
            Some(db) => db.candles(q).await,
            None => self.store.candles(q).await,
        }
    }

    /// Signals newest first, for the API; see [`StatusContext::list_candles`].
    pub async fn list_signals(&self, q: ListQuery) -> Result<Vec<SignalRecord>, ListError> {
        match &self.queries {
            Some(db) => db.signals(q).await,
            None => self.store.signals(q).await,
        }
    }

    /// `/api/performance`: stage latencies in µs (cumulative since start, and the last
    /// [`crate::latency::WINDOW_SECONDS`] seconds), per core, and throughput. The
    /// dashboard passes its own client figures.
    ///
    /// `avg_latency_ms` (kept from the original system) is the mean of the furthest stage
    /// measured so far, in this order: `recv_to_dashboard_send`, `recv_to_redis_publish`,
    /// `recv_to_db_commit`, `recv_to_parsed`; `avg_latency_stage` names it.
    pub fn performance(&self, active_clients: u64, messages_sent: u64) -> Value {
        use crate::latency::{Stage, StageFigures, StageSet, WINDOW_SECONDS};
        let snap = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let stages = |set: &StageSet| -> serde_json::Map<String, Value> {
            Stage::ALL
                .iter()
                .map(|st| {
                    (
                        st.as_str().to_string(),
                        json!(StageFigures::of(set.get(*st))),
                    )
                })
                .collect()
        };
        let avg = [
            Stage::RecvToDashboardSend,
            Stage::RecvToRedisPublish,
            Stage::RecvToDbCommit,
            Stage::RecvToParsed,
        ]
        .into_iter()
        .find(|st| !snap.cumulative.get(*st).is_empty());
        let (avg_ms, avg_stage) = match avg {
            Some(st) => (
                Some(snap.cumulative.get(st).mean() / 1e6),
                Some(st.as_str()),
            ),
            None => (None, None),
        };
        let per_core: serde_json::Map<String, Value> = snap
            .per_recorder
            .iter()
            .map(|(label, set)| {
                let s: serde_json::Map<String, Value> = Stage::ALL
                    .iter()
                    .filter(|st| !set.get(**st).is_empty())
                    .map(|st| {
                        (
                            st.as_str().to_string(),
                            json!(StageFigures::of(set.get(*st))),
                        )
                    })
                    .collect();
                (label.clone(), Value::Object(s))
            })
            .collect();
        let window_events = snap.window.get(Stage::RecvToParsed).len();
        let total_messages: u64 = self.shards.iter().map(|s| s.stats.messages.get()).sum();
        let active_connections: u64 = self
            .shards
            .iter()
            .map(|s| s.stats.connections_active.get())
            .sum();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "total_messages_received": total_messages,
            "active_connections": active_connections,
            "active_clients": active_clients,
            "messages_sent": messages_sent,
            "avg_latency_ms": avg_ms,
            "avg_latency_stage": avg_stage,
            "throughput": {
                "window_s": WINDOW_SECONDS,
                "events_per_s": window_events as f64 / WINDOW_SECONDS as f64,
            },
            "unit": "us",
            "stages": stages(&snap.cumulative),
            "recent": { "window_s": WINDOW_SECONDS, "stages": stages(&snap.window) },
            "per_core": per_core,
        })
    }
}

fn shard_json(s: &ShardView) -> Value {
    let st = &s.stats;
    // Each counter read once, and the total is their sum: the document agrees with
    // itself even while the shard keeps counting.
    let by_reason: Vec<u64> = st.parse_errors.iter().map(|c| c.get()).collect();
    let parse_errors_total: u64 = by_reason.iter().sum();
    let parse_errors: serde_json::Map<String, Value> = PARSE_ERROR_REASONS
        .iter()
        .zip(&by_reason)
        .map(|(r, n)| (r.to_string(), json!(n)))
        .collect();
    let resets: Vec<u64> = st.resets.iter().map(|c| c.get()).collect();
    let resets_by_reason: serde_json::Map<String, Value> = RESET_REASONS
        .iter()
        .zip(&resets)
        .map(|(r, n)| (r.to_string(), json!(n)))
        .collect();
    let clock_skew_drops: Vec<u64> = st.clock_skew_drops.iter().map(|c| c.get()).collect();
    let queues: Vec<Value> = s
        .rings
        .iter()
        .map(|r| {
            let rs = r.stats();
            use std::sync::atomic::Ordering::Relaxed;
            json!({
                "name": r.name(),
                "depth": r.depth(),
                "capacity": r.capacity(),
                "high_water": rs.high_water.load(Relaxed),
                "pushed": rs.pushed.load(Relaxed),
                "full": rs.full.load(Relaxed),
                // Wake-ups the ring's consumer got from a parked state (shared by every
                // ring of that consumer): low when it is busy, zero when idle.
                "consumer_wakeups": r.wakeups(),
            })
        })
        .collect();
    let mut shard = json!({
        "index": s.index,
        "core": s.core,
        "symbols": s.symbols.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "streams": s.streams,
        "connections": st.connections_active.get(),
        "connections_live": st.connections_live.get(),
        "connection_slots": s.slots,
        "messages": st.messages.get(),
        "bytes": st.bytes.get(),
        "parse_errors": parse_errors_total,
        "parse_errors_by_reason": parse_errors,
        "unknown_events": st.unknown_events.get(),
        "unknown_fields": st.unknown_fields.get(),
        "binary_frames": st.binary_frames.get(),
        "events": {
            "kline": st.klines.get(),
            "trade": st.trades.get(),
            "agg_trade": st.agg_trades.get(),
            "book_ticker": st.book_tickers.get(),
            "depth_update": st.depth_updates.get(),
            "partial_depth": st.partial_depths.get(),
        },
        "duplicates": st.duplicates.get(),
        "implausible_klines": st.implausible_klines.get(),
        "clock_skew_drops": clock_skew_drops.iter().sum::<u64>(),
        "clock_skew_drops_by_reason": crate::clock::Skew::ALL
            .iter()
            .zip(&clock_skew_drops)
            .map(|(r, n)| (r.as_str().to_owned(), json!(n)))
            .collect::<serde_json::Map<String, Value>>(),
        "stale": st.stale.get(),
        "candles_closed": st.candles_closed.get(),
        "signals": {
            "total": st.signals_total(),
            "by_kind": crate::signals::SignalKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), json!(st.signals[*k as usize].get())))
                .collect::<serde_json::Map<String, Value>>(),
            "series_ready": st.signal_series_ready.get(),
            "warm_series": st.signal_warm_series.get(),
            "warm_candles": st.signal_warm_candles.get(),
            "rewarms": st.signal_rewarms.get(),
            "warm_holes": st.signal_warm_holes.get(),
            "warm_requests_dropped": st.signal_warm_requests_dropped.get(),
        },
        "gaps": st.gaps.get(),
        "gap_candles": st.gap_candles.get(),
        "server_shutdowns": st.server_shutdowns.get(),
        "connection_attempts": st.connection_attempts.get(),
        "connect_failures": st.connect_failures.get(),
        "reconnects": st.reconnects.get(),
        "rotations": st.rotations.get(),
        "silent_drops": st.silent_drops.get(),
        "pings_answered": st.pings_answered.get(),
        "subscribe_requests": st.subscribe_requests.get(),
        "subscribe_acks": st.subscribe_acks.get(),
        "subscribe_errors": st.subscribe_errors.get(),
        "subscribe_retries": st.subscribe_retries.get(),
        "live_conflated": st.live_conflated.get(),
        "overflow_depth": st.overflow_depth.get(),
        "backpressure_pauses": st.backpressure_pauses.get(),
        "last_event_time_us": st.last_event_time_us.get(),
        "allocations": st.allocations.get(),
        "queues": queues,
    });
    // Added beside the fields above (one `json!` of them all is past its macro's depth).
    shard["trade_gaps"] = json!({
        "trade": st.trade_gaps.get(),
        "trade_ids": st.trade_gap_ids.get(),
        "agg_trade": st.agg_trade_gaps.get(),
        "agg_trade_ids": st.agg_trade_gap_ids.get(),
        "agg_trade_backfill_requests": st.agg_trade_backfill.requests.get(),
        "agg_trade_backfill_requests_dropped": st.agg_trade_backfill.requests_dropped.get(),
        "agg_trades_backfilled": st.agg_trade_backfill.backfilled.get(),
        "agg_trade_backfill_failures": st.agg_trade_backfill.failures.get(),
        "trade_backfill_requests": st.trade_backfill.requests.get(),
        "trade_backfill_requests_dropped": st.trade_backfill.requests_dropped.get(),
        "trades_backfilled": st.trade_backfill.backfilled.get(),
        "trade_backfill_failures": st.trade_backfill.failures.get(),
    });
    shard["lossy_dropped"] = json!(st.lossy_dropped.get());
    shard["resets"] = json!(resets.iter().sum::<u64>());
    shard["resets_by_reason"] = Value::Object(resets_by_reason);
    shard["streams_rejected"] = json!(st.streams_rejected.get());
    let b = &st.books;
    shard["books"] = json!({
        "kept": b.books.get(),
        "valid": b.valid.get(),
        "diffs_applied": b.diffs_applied.get(),
        "diffs_repeated": b.diffs_repeated.get(),
        "resyncs": crate::book::Resync::ALL
            .iter()
            .map(|c| (c.name().to_owned(), json!(b.resyncs[*c as usize].get())))
            .collect::<serde_json::Map<String, Value>>(),
        "snapshots_asked": b.snapshots_asked.get(),
        "snapshots_applied": b.snapshots_applied.get(),
        "snapshots_too_old": b.snapshots_too_old.get(),
        "snapshot_failures": b.snapshot_failures.get(),
        "snapshot_requests_dropped": b.snapshot_requests_dropped.get(),
        "invalid_s": b.invalid_ns.get() as f64 / 1e9,
        "buffer_drops": b.buffer_drops.get(),
        "published": b.published.get(),
    });
    shard["rejection_retries"] = json!(st.rejection_retries.get());
    shard
}
