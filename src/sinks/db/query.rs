//! The query worker: answers the API's list reads (`/api/candles`, `/api/signals`, the
//! WebSocket `get_signals`) from the database.
//!
//! Runs on: its own plain thread with its own connection (the sync client blocks, so it
//! never runs on the dashboard's glommio executor). In: [`Request`]s on a bounded
//! channel, each with a oneshot reply. Out: records, newest first, through the
//! [`RecordSource`] the [`QueryClient`] implements. The dashboard awaits the reply's
//! future, so its executor keeps serving while the query runs; glommio accepts wakes
//! from foreign threads.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use futures_channel::oneshot;
use postgres::types::ToSql;
use postgres::Client;

use super::copy;
use super::rows::PgTime;
use crate::market::Interval;
use crate::record::{CandleRecord, SignalRecord};
use crate::signals::{Direction, SignalKind};
use crate::store::{ListError, ListQuery, RecordSource};

/// Reads waiting for the worker. Past this the API answers "busy" at once instead of
/// queueing behind a slow database.
pub const QUERY_QUEUE: usize = 64;
/// A read that takes longer is cancelled by the server (the API answers an error).
const STATEMENT_TIMEOUT_MS: u64 = 5_000;

enum Request {
    Candles(
        ListQuery,
        oneshot::Sender<Result<Vec<CandleRecord>, ListError>>,
    ),
    Signals(
        ListQuery,
        oneshot::Sender<Result<Vec<SignalRecord>, ListError>>,
    ),
}

/// The dashboard's handle on the worker; cheap to clone. The worker stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct QueryClient {
    tx: SyncSender<Request>,
}

impl QueryClient {
    /// Starts the worker thread (pinned to `core` if given) for `url`. It connects on
    /// the first read and again after any failure.
    pub fn spawn(url: String, core: Option<usize>) -> std::io::Result<QueryClient> {
        QueryClient::spawn_holding(url, core, true)
    }

    /// [`QueryClient::spawn`]; with `hold_connection` false the worker closes its
    /// connection after every read (`database.hold_connections`), so a server that
    /// serves one connection at a time can serve the writer between reads.
    pub fn spawn_holding(
        url: String,
        core: Option<usize>,
        hold_connection: bool,
    ) -> std::io::Result<QueryClient> {
        let (tx, rx) = sync_channel(QUERY_QUEUE);
        std::thread::Builder::new()
            .name("db-query".into())
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                serve(&url, hold_connection, rx);
            })?;
        Ok(QueryClient { tx })
    }

    fn send(&self, req: Request) -> Result<(), ListError> {
        self.tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => ListError(format!(
                "database reads are queued to their limit ({QUERY_QUEUE}); try again"
            )),
            TrySendError::Disconnected(_) => stopped(),
        })
    }
}

/// The database's answer, awaited on the worker's reply.
impl RecordSource for QueryClient {
    async fn candles(&self, q: ListQuery) -> Result<Vec<CandleRecord>, ListError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Candles(q, reply))?;
        answer.await.map_err(|_| stopped())?
    }

    async fn signals(&self, q: ListQuery) -> Result<Vec<SignalRecord>, ListError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Signals(q, reply))?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The error with its cause: the client's own text ("db error", "error serializing
/// parameter 1") says little without it.
fn describe(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("database: {} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

fn stopped() -> ListError {
    ListError("the database query worker has stopped".into())
}

fn serve(url: &str, hold_connection: bool, rx: Receiver<Request>) {
    let mut client: Option<Client> = None;
    while let Ok(req) = rx.recv() {
        if client.is_none() {
            client = connect(url);
        }
        let Some(c) = client.as_mut() else {
            let down = || ListError("database unavailable".into());
            match req {
                Request::Candles(_, reply) => drop(reply.send(Err(down()))),
                Request::Signals(_, reply) => drop(reply.send(Err(down()))),
            }
            continue;
        };
        let failed = match req {
            Request::Candles(q, reply) => {
                let r = candles(c, &q);
                let failed = r.is_err();
                let _ = reply.send(r.map_err(|e| ListError(describe(&e))));
                failed
            }
            Request::Signals(q, reply) => {
                let r = signals(c, &q);
                let failed = r.is_err();
                let _ = reply.send(r.map_err(|e| ListError(describe(&e))));
                failed
            }
        };
        if !hold_connection || (failed && client.as_ref().is_some_and(|c| c.is_closed())) {
            client = None;
        }
    }
}

fn connect(url: &str) -> Option<Client> {
    match copy::connect(url, super::CONNECT_TIMEOUT) {
        Ok(mut c) => {
            let set = format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}");
            c.batch_execute(&set).ok()?;
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "query worker: database unreachable");
            None
        }
    }
}

/// `WHERE` conditions and their parameters for `q`, on the time column `time`.
struct Filter {
    sql: String,
    symbol: Option<String>,
    timeframe: Option<&'static str>,
    from: Option<PgTime>,
    to: Option<PgTime>,
    limit: i64,
}

impl Filter {
    fn new(q: &ListQuery, time: &str, mut conditions: Vec<String>) -> Filter {
        let mut f = Filter {
            sql: String::new(),
            symbol: q.symbol.map(|s| s.to_string()),
            timeframe: q.interval.map(Interval::as_str),
            from: q.from_ms.map(PgTime::from_ms),
            to: q.to_ms.map(PgTime::from_ms),
            limit: q.limit as i64,
        };
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if f.symbol.is_some() {
            conditions.push(format!("symbol = ${}", next()));
        }
        if f.timeframe.is_some() {
            conditions.push(format!("timeframe = ${}", next()));
        }
        if f.from.is_some() {
            conditions.push(format!("{time} >= ${}", next()));
        }
        if f.to.is_some() {
            conditions.push(format!("{time} <= ${}", next()));
        }
        if !conditions.is_empty() {
            f.sql = format!("WHERE {}", conditions.join(" AND "));
        }
        f
    }

    /// `$1` is the limit; the rest follow the order of the conditions.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![&self.limit];
        if let Some(s) = &self.symbol {
            p.push(s);
        }
        if let Some(t) = &self.timeframe {
            p.push(t);
        }
        if let Some(t) = &self.from {
            p.push(t);
        }
        if let Some(t) = &self.to {
            p.push(t);
        }
        p
    }
}

fn candles(c: &mut Client, q: &ListQuery) -> Result<Vec<CandleRecord>, postgres::Error> {
    let f = Filter::new(q, "open_time", vec!["closed".into()]);
    let sql = format!(
        "SELECT symbol, timeframe, open_time, close_time, open::text, high::text, low::text, \
         close::text, volume::text, quote_volume::text, taker_buy_base::text, \
         taker_buy_quote::text, trades, closed, event_time FROM candles {} \
         ORDER BY open_time DESC LIMIT $1",
        f.sql
    );
    let rows = c.query(&sql, &f.params())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        // A column whose type drifted from the schema is an error for this read (the
        // API answers it), never a panic of the worker.
        let Ok(timeframe) = Interval::parse(r.try_get::<_, &str>(1)?) else {
            continue;
        };
        out.push(CandleRecord {
            kind: "candle",
            symbol: r.try_get(0)?,
            timeframe: timeframe.as_str(),
            open_time: r.try_get::<_, PgTime>(2)?.as_ms(),
            close_time: r.try_get::<_, PgTime>(3)?.as_ms(),
            open: r.try_get(4)?,
            high: r.try_get(5)?,
            low: r.try_get(6)?,
            close: r.try_get(7)?,
            volume: r.try_get(8)?,
            quote_volume: r.try_get(9)?,
            taker_buy_base: r.try_get(10)?,
            taker_buy_quote: r.try_get(11)?,
            trades: r.try_get::<_, i64>(12)?.max(0) as u64,
            closed: r.try_get(13)?,
            event_time: r.try_get::<_, PgTime>(14)?.as_ms(),
        });
    }
    Ok(out)
}

fn signals(c: &mut Client, q: &ListQuery) -> Result<Vec<SignalRecord>, postgres::Error> {
    let f = Filter::new(q, "\"timestamp\"", Vec::new());
    let sql = format!(
        "SELECT \"timestamp\", symbol, timeframe, kind, direction, confidence, price::text, \
         indicators, event_time FROM signals {} ORDER BY \"timestamp\" DESC LIMIT $1",
        f.sql
    );
    let rows = c.query(&sql, &f.params())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let indicators = match r.try_get::<_, serde_json::Value>(7)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let (Ok(timeframe), Some(kind), Some(direction)) = (
            Interval::parse(r.try_get::<_, &str>(2)?),
            SignalKind::parse(r.try_get::<_, &str>(3)?),
            Direction::parse(r.try_get::<_, &str>(4)?),
        ) else {
            continue;
        };
        out.push(SignalRecord {
            kind_tag: "signal",
            timestamp: r.try_get::<_, PgTime>(0)?.as_ms(),
            symbol: r.try_get(1)?,
            timeframe: timeframe.as_str(),
            kind: kind.as_str(),
            direction: direction.as_str(),
            confidence: r.try_get(5)?,
            price: r.try_get(6)?,
            indicators,
            event_time: r.try_get::<_, PgTime>(8)?.as_ms(),
        });
    }
    Ok(out)
}
