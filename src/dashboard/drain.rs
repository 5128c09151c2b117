//! The dashboard core's background tasks: the consumer of the shards' rings (it keeps
//! the recent store and broadcasts every record, serialized and framed once, to its
//! subscribers), the periodic status push and the rate sampler.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::book::board::Board;
use crate::book::units_price;
use crate::message::{BookTop, Envelope, Record, REMOTE_SHARD};
use crate::record;
use crate::ring::Consumer;

use super::fanout::{self, Hub, Key};
use super::protocol::Topic;
use super::send;
use super::{Rates, Server, DRAIN_BATCH};
use crate::consumer::Stop;

/// The dashboard core's consumer: keeps the recent store and broadcasts every record.
struct Drain {
    server: Rc<Server>,
}

impl crate::consumer::Consume<Envelope> for Drain {
    fn turn(&mut self, turn: crate::consumer::Turn<'_, Envelope>) -> crate::consumer::Next {
        let batch = turn.batch;
        let server = &self.server;
        let now = crate::clock::mono_ns();
        let mut pending = false;
        if let Some(rec) = server.hub.latency.borrow_mut().as_mut() {
            for env in batch {
                let at = crate::consumer::Stamped::enqueued_ns(env);
                if at != 0 {
                    rec.record_span(crate::latency::Stage::RingHop, at, now);
                }
            }
            // Sends are recorded as they are written (at a batch's end, or by a client
            // task when the socket had no room): hand them over even when no record came.
            rec.maybe_handoff(now);
            pending = rec.pending();
        }
        if batch.iter().any(|e| e.shard != REMOTE_SHARD) {
            // The recent view the API answers from: one short lock per batch. Records
            // of other instances were stored by the bridge that received them.
            let mut store = server.ctx.store.lock().unwrap_or_else(|p| p.into_inner());
            for env in batch.iter().filter(|e| e.shard != REMOTE_SHARD) {
                store.apply(&env.record);
            }
        }
        // Every client this batch reaches is written once, when the batch ends.
        let _writes = server.hub.batch();
        for env in batch {
            server.hub.stats.records_in.inc();
            // Records of other instances carry no receive time of ours.
            let recv_ns = if env.shard == REMOTE_SHARD {
                0
            } else {
                env.recv_ns
            };
            broadcast_record(&server.hub, &server.ctx.books, &env.record, recv_ns);
        }
        // Figures not yet handed over want another look, and so do the sends of the
        // records just broadcast (recorded as this turn ends, or later by client tasks);
        // with neither, only records (or the stop) wake the drain.
        if pending || !batch.is_empty() {
            crate::consumer::Next::At(Instant::now() + crate::latency::HANDOFF_INTERVAL)
        } else {
            crate::consumer::Next::Idle
        }
    }
}

/// Drains every feed as records arrive (woken by the producers' doorbells) and
/// broadcasts them; each turn's broadcasts are written as the turn ends.
pub(super) async fn drain(server: Rc<Server>, feeds: Vec<Consumer<Envelope>>, stop: Stop) {
    // A burst (every symbol's candle closing at the top of the hour) is spread over
    // drain rounds: per round, all feeds together queue at most a quarter of a client's
    // outbox, and each round ends by writing to its clients. So a client that reads keeps
    // up with any burst and only one that does not read reaches its bound; the records
    // wait in the rings meanwhile (the shards hold never-lost records when a ring fills).
    let per_feed =
        (server.opts.client_queue_messages / 4 / feeds.len().max(1)).clamp(1, DRAIN_BATCH);
    let rings = crate::consumer::Rings::new(feeds, per_feed, None, server.opts.busy_poll);
    let mut drain = Drain {
        server: server.clone(),
    };
    crate::consumer::run_local(rings, &stop, &mut drain).await;
}

/// One record to its subscribers: serialized once, shared by all of them.
fn broadcast_record(hub: &Hub, books: &Board, record: &Record, recv_ns: u64) {
    match record {
        Record::Signal(s) => {
            if hub.any_subscriber(Topic::Signals) {
                let msg = encode_with(|out| record::write_signal(out, s));
                hub.broadcast_timed(
                    Topic::Signals,
                    (Some(s.symbol), Some(s.interval)),
                    &msg,
                    (None, None),
                    recv_ns,
                );
            }
        }
        Record::LiveCandle(c) | Record::ClosedCandle(c) => {
            if hub.any_subscriber(Topic::Candles) {
                let msg = encode_with(|out| record::write_candle(out, c));
                let key = Key::Live(c.symbol, c.interval);
                let (key, supersedes) = if c.closed {
                    (None, Some(key))
                } else {
                    (Some(key), None)
                };
                hub.broadcast_timed(
                    Topic::Candles,
                    (Some(c.symbol), Some(c.interval)),
                    &msg,
                    (key, supersedes),
                    recv_ns,
                );
            }
        }
        Record::Book(top) => {
            if hub.any_subscriber(Topic::Book) {
                broadcast_book(hub, books, top, recv_ns);
            }
        }
        Record::Trade(t) => {
            if hub.any_subscriber(Topic::Trades) {
                let msg = encode_with(|out| record::write_trade(out, t));
                let about = (Some(t.symbol), None);
                hub.broadcast_timed(Topic::Trades, about, &msg, (None, None), recv_ns);
            }
        }
        Record::AggTrade(t) => {
            if hub.any_subscriber(Topic::Trades) {
                let msg = encode_with(|out| record::write_agg_trade(out, t));
                let about = (Some(t.symbol), None);
                hub.broadcast_timed(Topic::Trades, about, &msg, (None, None), recv_ns);
            }
        }
        Record::Gap(_) | Record::Outage(_) | Record::Absent(_) => {}
    }
}

/// A book's published view (the board's) or its new top, to the book's subscribers; a
/// client that has not taken the last one gets only the newest.
fn broadcast_book(hub: &Hub, books: &Board, top: &BookTop, recv_ns: u64) {
    let msg = if top.published {
        let Some(view) = books.latest(top.symbol) else {
            return;
        };
        encode_with(|out| view.write_json(out, usize::MAX))
    } else {
        encode_with(|out| write_book_top(out, top))
    };
    let key = if top.published {
        Key::Book(top.symbol)
    } else {
        Key::BookTop(top.symbol)
    };
    hub.broadcast_timed(
        Topic::Book,
        (Some(top.symbol), None),
        &msg,
        (Some(key), None),
        recv_ns,
    );
}

/// `{"type":"book_top",…}`: the best bid and ask of a book between its views.
pub fn write_book_top(out: &mut Vec<u8>, top: &BookTop) {
    use std::io::Write;
    // Written in place: a top follows every change of the best bid or ask.
    let side = |out: &mut Vec<u8>, units: i64, qty: rust_decimal::Decimal| {
        if units > 0 {
            let _ = write!(out, r#"["{}","{qty}"]"#, units_price(units));
        } else {
            out.extend_from_slice(b"null");
        }
    };
    let _ = write!(
        out,
        r#"{{"type":"book_top","symbol":"{}","last_update_id":{},"event_time":{},"valid":{},"bid":"#,
        top.symbol,
        top.last_update_id,
        top.event_time_us / 1000,
        top.valid,
    );
    side(out, top.bid, top.bid_qty);
    out.extend_from_slice(br#","ask":"#);
    side(out, top.ask, top.ask_qty);
    out.push(b'}');
}

/// A broadcast record written by the allocation-light record writers (the Redis
/// publisher's: the same bytes as `serde_json`, tested, at a fraction of the cost; see
/// `cargo bench --bench records`), framed once for every client. The writers emit JSON
/// text: valid UTF-8 by construction.
fn encode_with(write: impl FnOnce(&mut Vec<u8>)) -> fanout::Frame {
    send::text_frame_with(write)
}

/// Runs `tick` every `period` until the stop is requested (which ends the wait at once).
async fn every(period: Duration, stop: &Stop, mut tick: impl FnMut()) {
    let mut next = Instant::now() + period;
    while stop
        .sleep(next.saturating_duration_since(Instant::now()))
        .await
    {
        next += period;
        tick();
    }
}

/// Pushes the status to its subscribers every `WEBSOCKET_UPDATE_INTERVAL`.
pub(super) async fn push_status(server: Rc<Server>, stop: Stop) {
    every(server.opts.update_interval, &stop, || {
        if server.hub.any_subscriber(Topic::Status) {
            let msg = server.status_message();
            server
                .hub
                .broadcast(Topic::Status, None, None, &msg, Some(Key::Status), None);
        }
    })
    .await;
}

/// Samples the message rates once a second for `/api/performance`.
pub(super) async fn sample_rates(server: Rc<Server>, stop: Stop) {
    let sample = |s: &Server| {
        let received: u64 = s.ctx.shards.iter().map(|x| x.stats.messages.get()).sum();
        (Instant::now(), received, s.hub.stats.messages_sent.get())
    };
    let mut last = sample(&server);
    every(Duration::from_secs(1), &stop, || {
        let now = sample(&server);
        let dt = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
        server.rates.set(Rates {
            received_per_s: now.1.saturating_sub(last.1) as f64 / dt,
            sent_per_s: now.2.saturating_sub(last.2) as f64 / dt,
        });
        last = now;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_top_is_written_in_place_with_exact_decimals_and_null_sides() {
        let top = BookTop {
            symbol: crate::market::Symbol::new("BTCUSDT").unwrap(),
            last_update_id: 42,
            event_time_us: 1_700_000_000_123_456,
            valid: true,
            published: false,
            bid: 4_325_112_000_000,
            bid_qty: "0.500".parse().unwrap(),
            ask: 0,
            ask_qty: rust_decimal::Decimal::ZERO,
        };
        let mut out = Vec::new();
        write_book_top(&mut out, &top);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"book_top","symbol":"BTCUSDT","last_update_id":42,"event_time":1700000000123,"valid":true,"bid":["43251.12000000","0.500"],"ask":null}"#
        );
    }
}
