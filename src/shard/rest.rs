//! The shard's link to the REST thread: asking it for ranges of closed candles, and
//! applying the batches it delivers (warm starts and backfills).

use super::{Outage, Record, ShardState, TradeBackfillOf};
use crate::candle::{Gap, KlineOutcome};
use crate::message::rest::{Request, RestBatch, ShardLink, TradeKind, Want, TRADES_PAGE};
use crate::signals::rules::Bar;

/// After a backfill request fails for good, how long before the shard asks again.
pub(super) const RETRY_FAILED_AFTER_NS: u64 = 30_000_000_000;
/// Room a REST delivery needs on the outlets before it is taken: its candles (a page of
/// at most 1000 klines) and an absence or two. While the sinks leave less, deliveries
/// wait in their bounded queue and the REST thread waits to deliver more: nothing is
/// dropped, and the shard's overflow stays within [`super::outlet::MAX_OVERFLOW`].
pub(super) const DELIVERY_ROOM: usize = 1024;
/// Failed trade requests a shard keeps to ask again; past this one is dropped and
/// counted (its ids stay missing until a restart finds the hole).
pub(super) const MAX_TRADE_RETRIES: usize = 1024;

impl ShardState {
    /// Connects the shard to the REST thread: gaps are backfilled, and (with signals
    /// on and `warm_candles` > 0) every series waits for its warm start.
    pub fn with_rest(mut self, link: ShardLink) -> ShardState {
        self.link = Some(link);
        self.arm_warm_waits();
        self
    }

    /// Applies the batches the REST thread has delivered at `now_ns` (monotonic);
    /// called by the periodic flusher on this shard's executor. Returns how many were
    /// applied.
    pub fn apply_rest_deliveries(&mut self, now_ns: u64) -> usize {
        let Some(link) = self.link.clone() else {
            return 0;
        };
        self.apply_book_answers(now_ns);
        let mut applied = 0;
        while self.rest_room() {
            let Some(batch) = link.deliveries.pop() else {
                break;
            };
            self.apply_rest(&batch, now_ns);
            applied += 1;
        }
        applied
    }

    /// True when REST deliveries wait and the outlets have room for one.
    pub fn rest_deliveries_ready(&self) -> bool {
        self.link.as_ref().is_some_and(|l| {
            (!l.deliveries.is_empty() && self.rest_room()) || !l.book_answers.is_empty()
        })
    }

    /// Whether the outlets can take a delivery now without going past their bound.
    fn rest_room(&self) -> bool {
        self.outlets.room() >= DELIVERY_ROOM
    }

    /// Applies one REST answer. History (a warm start) is stored and rebuilds the
    /// series' indicators without firing; backfilled candles take the live path.
    /// Spans the exchange has no candles for are closed as confirmed absent. `now_ns`
    /// (monotonic) stamps the absences and starts the waits and retries it causes.
    pub fn apply_rest(&mut self, batch: &RestBatch, now_ns: u64) {
        self.apply_rest_batch(batch, now_ns);
        self.outlets.ring();
    }

    fn apply_rest_batch(&mut self, batch: &RestBatch, now_ns: u64) {
        let req = batch.request;
        if let Want::Trades { kind, .. } = req.want {
            self.apply_trades(kind, batch, now_ns);
            return;
        }
        let Some(slot) = self.slot_of(req.symbol, req.interval) else {
            return;
        };
        self.stats.backfill_batches.inc();
        if batch.failed {
            if let Want::Range {
                from_open_ms,
                to_open_ms,
            } = req.want
            {
                self.stats.backfill_failures.inc();
                self.tracks[slot].unrequest(from_open_ms, to_open_ms.unwrap_or(i64::MAX));
                self.retry_gaps_at_ns = Some(now_ns + RETRY_FAILED_AFTER_NS);
            }
            if batch.is_history() {
                // No history: the series warms from live candles.
                self.through_gate(None, |gate, pending, out| {
                    gate.warm_failed(slot, pending, now_ns, out);
                    false
                });
            }
            self.publish_series(slot);
            return;
        }
        let history = batch.is_history();
        let mut stored = 0u64;
        for c in &batch.candles {
            match self.tracks[slot].apply(c) {
                KlineOutcome::Closed { gap } => {
                    stored += 1;
                    self.stats.candles_closed.inc();
                    if let Some(gap) = gap {
                        self.note_gap(gap);
                    }
                    let env = self.envelope(0, 0, Record::ClosedCandle(*c));
                    self.outlets.send_kept(env);
                    if !history {
                        self.signal_candle(slot, c, None, now_ns);
                    }
                }
                KlineOutcome::Duplicate | KlineOutcome::Stale | KlineOutcome::Live => {
                    if !history {
                        // Stored already (a live copy won the race), but the signals
                        // may still be waiting for it.
                        self.signal_candle(slot, c, None, now_ns);
                    }
                }
            }
        }
        self.stats.backfill_candles.add(stored);
        if let Some(series) = self.series(slot) {
            series.candles_backfilled.add(stored);
        }
        for &(from, to) in &batch.absent {
            if self.tracks[slot].confirm_absent(req.interval, from, to) > 0 {
                let gap = Gap {
                    symbol: req.symbol,
                    interval: req.interval,
                    from_open_ms: from,
                    to_open_ms: to,
                };
                let env = self.envelope(now_ns, now_ns, Record::Absent(gap));
                self.outlets.send_kept(env);
            }
        }
        if history {
            let bars: Vec<Bar> = batch.candles.iter().map(Bar::from_candle).collect();
            self.through_gate(None, |gate, pending, out| {
                gate.warm(slot, &bars, pending, now_ns, out);
                false
            });
        } else {
            self.through_gate(None, |gate, pending, out| {
                gate.drain(slot, pending, now_ns, out);
                false
            });
        }
        self.request_gaps(slot, now_ns);
        self.publish_series(slot);
    }

    /// Asks the REST thread for the series' gaps not asked yet.
    pub(super) fn request_gaps(&mut self, slot: usize, now_ns: u64) {
        if !self.tracks[slot].has_unrequested() {
            return;
        }
        let Some(link) = &self.link else {
            // No REST: nothing to ask; mark them asked so this stays cheap.
            self.tracks[slot].take_unrequested().for_each(drop);
            return;
        };
        let link = link.clone();
        let gaps: Vec<(i64, i64)> = self.tracks[slot].take_unrequested().collect();
        for (from, to) in gaps {
            if !self.ask_range(&link, slot, from, to) {
                self.tracks[slot].unrequest(from, to);
                self.retry_gaps_at_ns = Some(now_ns + RETRY_FAILED_AFTER_NS);
            }
        }
    }

    /// Asks again for the gaps whose backfill failed, once the retry time has come.
    pub(super) fn retry_failed_gaps(&mut self, now_ns: u64) {
        if let Some(at) = self.retry_gaps_at_ns {
            if now_ns >= at {
                self.retry_gaps_at_ns = None;
                for slot in 0..self.tracks.len() {
                    self.request_gaps(slot, now_ns);
                }
                self.retry_trades(now_ns);
            }
        }
    }

    /// Asks again for the trade requests that failed; those the REST queue has no room
    /// for wait for the next retry time.
    fn retry_trades(&mut self, now_ns: u64) {
        let Some(link) = self.link.clone() else {
            return;
        };
        for request in std::mem::take(&mut self.trade_retries) {
            let Want::Trades { kind, .. } = request.want else {
                continue;
            };
            if link.requests.push(request).is_ok() {
                link.wake_rest();
                self.stats.trade_backfill(kind).requests.inc();
            } else {
                self.trade_retries.push(request);
                self.retry_gaps_at_ns = Some(now_ns + RETRY_FAILED_AFTER_NS);
            }
        }
    }

    /// Records the span of a reconnect on connection slot `slot` (never lost), and asks
    /// the backfill for the candles of every series that closed while it was down,
    /// without waiting for the next close to reveal the gap. `now_ns` (monotonic)
    /// stamps the record.
    pub fn record_outage(
        &mut self,
        slot: usize,
        from_event_us: i64,
        to_event_us: i64,
        now_ns: u64,
    ) {
        let outage = Outage {
            slot: slot as u16,
            from_event_us,
            to_event_us,
        };
        let env = self.envelope(now_ns, now_ns, Record::Outage(outage));
        self.outlets.send_kept(env);
        self.outlets.ring();
        let Some(link) = self.link.clone() else {
            return;
        };
        let to_ms = to_event_us / 1000;
        for i in 0..self.tracks.len() {
            let (_, interval) = self.series_key(i);
            let Some(last) = self.tracks[i].last_closed_open_ms() else {
                continue;
            };
            // The newest candle that had closed when the connection came back.
            let open_now = interval.open_time(to_ms);
            let from = interval.next_open(last);
            if from >= open_now {
                continue;
            }
            self.ask_range(&link, i, from, open_now);
        }
    }

    /// Backfilled trades go to the sinks that store them (not to the live outlets), as
    /// never-lost records; the writer's idempotent insert drops any the stream
    /// delivered too. A request that failed for good is asked again later.
    fn apply_trades(&mut self, kind: TradeKind, batch: &RestBatch, now_ns: u64) {
        if batch.failed {
            self.stats.trade_backfill(kind).failures.inc();
            self.retry_trades_later(batch.request, now_ns);
            return;
        }
        let records = batch
            .agg_trades
            .iter()
            .map(|t| (t.agg_trade_id, Record::AggTrade(*t)))
            .chain(batch.trades.iter().map(|t| (t.trade_id, Record::Trade(*t))));
        let (mut rows, mut last_id) = (0, None);
        for (id, record) in records {
            let env = self.envelope(now_ns, now_ns, record);
            self.outlets.send_stored(env);
            (rows, last_id) = (rows + 1, Some(id));
        }
        self.stats.trade_backfill(kind).backfilled.add(rows);
        // The last page of a restart's catch-up (short, maybe empty) says how far the
        // exchange's trades reached when it answered. The stream joins there: if it has
        // not started, its first id after a hole is a gap like any other; if it started
        // further on, the ids in between are fetched now.
        let symbol = batch.request.symbol;
        let (
            Want::Trades {
                from_id,
                to_id: None,
                ..
            },
            Some(&i),
        ) = (batch.request.want, self.symbols.get(&symbol))
        else {
            return;
        };
        if rows >= u64::from(TRADES_PAGE) {
            return;
        }
        let reached = last_id.unwrap_or(from_id.saturating_sub(1));
        if let Some(first) = self.seq[i].first_live[kind as usize] {
            if reached + 1 < first {
                self.ask_trades(kind, symbol, reached + 1, first);
            }
        }
        self.seq[i].trade_gate(kind).raise(reached);
    }

    /// Keeps a trade request that failed for good, to ask again at the next retry time
    /// (as candle gaps are). A catch-up whose stream has begun is asked up to the
    /// stream's first id: past it, the stream has them.
    fn retry_trades_later(&mut self, request: Request, now_ns: u64) {
        let Want::Trades {
            kind,
            from_id,
            to_id,
        } = request.want
        else {
            return;
        };
        let first_live = self
            .symbols
            .get(&request.symbol)
            .and_then(|&i| self.seq[i].first_live[kind as usize]);
        let to_id = to_id.or(first_live);
        if to_id.is_some_and(|to| from_id >= to) {
            return;
        }
        if self.trade_retries.len() >= MAX_TRADE_RETRIES {
            self.stats.trade_backfill(kind).requests_dropped.inc();
            return;
        }
        self.trade_retries.push(Request {
            want: Want::Trades {
                kind,
                from_id,
                to_id,
            },
            ..request
        });
        self.retry_gaps_at_ns = Some(now_ns + RETRY_FAILED_AFTER_NS);
    }

    /// Asks the REST thread for `symbol`'s trades of `kind` with ids in `[from, to)`, a
    /// hole the stream skipped; counted when its queue is full (the ids stay missing).
    pub(super) fn ask_trades(
        &self,
        kind: TradeKind,
        symbol: crate::market::Symbol,
        from: u64,
        to: u64,
    ) {
        let Some(link) = &self.link else {
            return;
        };
        let req = Request {
            symbol,
            interval: self
                .timeframe_list
                .first()
                .copied()
                .unwrap_or(crate::market::Interval::M1),
            want: Want::Trades {
                kind,
                from_id: from,
                to_id: Some(to),
            },
        };
        let counters = self.stats.trade_backfill(kind);
        if link.requests.push(req).is_ok() {
            link.wake_rest();
            counters.requests.inc();
        } else {
            counters.requests_dropped.inc();
        }
    }

    /// Asks the REST thread for the series' closed candles in `[from, to)`; false (and
    /// counted) when its queue is full.
    pub(super) fn ask_range(&self, link: &ShardLink, slot: usize, from: i64, to: i64) -> bool {
        let (symbol, interval) = self.series_key(slot);
        let req = Request {
            symbol,
            interval,
            want: Want::Range {
                from_open_ms: from,
                to_open_ms: Some(to),
            },
        };
        let asked = link.requests.push(req).is_ok();
        if asked {
            link.wake_rest();
            self.stats.backfill_requests.inc();
        } else {
            self.stats.backfill_requests_dropped.inc();
        }
        asked
    }
}
