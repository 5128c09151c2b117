//! The bridge: other instances' records, received over Redis, shown on this instance.
//!
//! Runs on: its own thread (started by the publisher role, on the publisher's core).
//! Owns: a subscriber connection that pattern-subscribes to the per-series candle and
//! signal channels, `{prefix}:candles:*` and `{prefix}:signals:*` (not the trade, book
//! and all-signals channels, which it would only skip). In: the candle and signal
//! records every instance publishes. Out: records of symbols that
//! another instance owns, inserted into the shared [`RecentStore`] (so `/api/candles`,
//! `/api/signals` and `/api/status` cover every symbol of the deployment) and forwarded
//! as [`Envelope`]s with `shard: REMOTE_SHARD` to the dashboard core's ring when it takes
//! them.
//!
//! Anyone who can `PUBLISH` on the Redis reaches the bridge, so a message is trusted
//! only this far, in this order, and each refusal is counted by its reason:
//! 1. With a bridge key, its HMAC must verify (`bad_signature`), before anything else
//!    is read from it.
//! 2. It must be a record, published on the channel its own symbol and timeframe name
//!    (`malformed`).
//! 3. Its symbol must be of the configured universe (`unknown_symbol`), its timeframe
//!    one of the configured ones (`unknown_timeframe`), and the symbol owned by another
//!    instance under the one split rule, [`crate::config::instance_of`] (`own_symbol`:
//!    this instance's own publishes come back this way and are skipped).
//! 4. The store must hold its series or have room for it (`over_bound`).
//!
//! A Redis that stops answering while the subscription looks open is found by a `PING`
//! every [`RedisSettings::ping_every`]: no answer within the I/O timeout drops the
//! connection (counted in `timeouts`) and the bridge reconnects.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::resp::{self, Conn, RespError, Target};
use super::RedisSettings;
use crate::clock::mono_ns;
use crate::config::{instance_of, Config};
use crate::market::{Interval, Symbol};
use crate::message::{Envelope, Record, REMOTE_SHARD};
use crate::metrics::Counter;
use crate::record::{self, Names, Remote};
use crate::ring::Producer;
use crate::store::RecentStore;

/// How often a quiet subscriber checks its stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Remote symbols listed in the status (the count covers all of them): a deployment's
/// symbol list, with room, but never unbounded.
pub const MAX_REMOTE_SYMBOLS: usize = 4096;

/// Which records the bridge may take: symbols of the configured universe that another
/// instance owns, at the configured timeframes. The default takes nothing.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    symbols: HashSet<Symbol>,
    timeframes: HashSet<Interval>,
    index: u32,
    count: u32,
}

/// Why the bridge refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    UnknownSymbol,
    UnknownTimeframe,
    OwnSymbol,
    Malformed,
    BadSignature,
    OverBound,
}

impl Universe {
    /// The universe of `symbols` and `timeframes`, seen from instance `index` of `count`.
    pub fn new(symbols: &[Symbol], timeframes: &[Interval], index: u32, count: u32) -> Universe {
        Universe {
            symbols: symbols.iter().copied().collect(),
            timeframes: timeframes.iter().copied().collect(),
            index,
            count,
        }
    }

    pub fn from_config(config: &Config) -> Universe {
        Universe::new(
            &config.symbols,
            &config.timeframes,
            config.engine.instance_index,
            config.engine.instance_count,
        )
    }

    /// Whether any record could be another instance's: with one instance (or no
    /// timeframe) every record is refused, so a bridge would only read this instance's
    /// own publishes back.
    pub fn takes_any(&self) -> bool {
        self.count > 1
            && !self.timeframes.is_empty()
            && self
                .symbols
                .iter()
                .any(|&s| instance_of(s, self.count) != self.index)
    }

    /// Whether a record of `symbol` at `interval` is another instance's to publish.
    pub fn judge(&self, symbol: Symbol, interval: Interval) -> Result<(), Reject> {
        if !self.symbols.contains(&symbol) {
            Err(Reject::UnknownSymbol)
        } else if !self.timeframes.contains(&interval) {
            Err(Reject::UnknownTimeframe)
        } else if instance_of(symbol, self.count) == self.index {
            Err(Reject::OwnSymbol)
        } else {
            Ok(())
        }
    }
}

/// The bridge's figures (single writer: the bridge thread).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// 1 when the bridge runs: the deployment has other instances whose records it may
    /// take ([`Universe::takes_any`]); 0 for a single instance, which subscribes to
    /// nothing.
    pub active: Counter,
    pub connected: Counter,
    /// Messages received on the pattern subscription.
    pub received: Counter,
    /// Records of other instances applied to the store.
    pub applied: Counter,
    /// Records of this instance's own symbols (our own publishes), skipped.
    pub skipped_local: Counter,
    /// Messages that were not records, or not on their record's channel.
    pub bad_records: Counter,
    /// Records of symbols outside the configured universe.
    pub unknown_symbol: Counter,
    /// Records of timeframes this deployment does not follow.
    pub unknown_timeframe: Counter,
    /// Messages whose signature was missing or wrong (with a bridge key).
    pub bad_signature: Counter,
    /// Records of a new series the store had no room for.
    pub over_bound: Counter,
    pub forwarded: Counter,
    /// Records the dashboard's ring had no room for (it shows the store's view instead).
    pub forward_full: Counter,
    pub reconnects: Counter,
    /// `PING`s sent to check the subscription is alive.
    pub pings: Counter,
    /// Connections dropped because Redis did not answer within the I/O timeout.
    pub timeouts: Counter,
    /// Series in the store, and its bound, as of the last record applied.
    pub store_series: Counter,
    pub store_max_series: Counter,
    /// 1 when records must carry a valid signature.
    pub signed: Counter,
    remote_symbols: Mutex<BTreeSet<Symbol>>,
}

impl BridgeStats {
    pub fn remote_symbols(&self) -> Vec<Symbol> {
        let set = self
            .remote_symbols
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.iter().copied().collect()
    }

    /// The counter of a reason.
    pub fn rejected(&self, why: Reject) -> &Counter {
        match why {
            Reject::UnknownSymbol => &self.unknown_symbol,
            Reject::UnknownTimeframe => &self.unknown_timeframe,
            Reject::OwnSymbol => &self.skipped_local,
            Reject::Malformed => &self.bad_records,
            Reject::BadSignature => &self.bad_signature,
            Reject::OverBound => &self.over_bound,
        }
    }

    /// Refusals by reason, as (name, count): the names of `/api/status` and `/metrics`.
    pub fn rejections(&self) -> [(&'static str, u64); 6] {
        [
            ("unknown_symbol", self.unknown_symbol.get()),
            ("unknown_timeframe", self.unknown_timeframe.get()),
            ("own_symbol", self.skipped_local.get()),
            ("malformed", self.bad_records.get()),
            ("bad_signature", self.bad_signature.get()),
            ("over_bound", self.over_bound.get()),
        ]
    }

    pub fn status(&self) -> Value {
        let symbols = self.remote_symbols();
        let rejected: serde_json::Map<String, Value> = self
            .rejections()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "active": self.active.get() == 1,
            "connected": self.connected.get() == 1,
            "signed": self.signed.get() == 1,
            "received": self.received.get(),
            "applied": self.applied.get(),
            "skipped_local": self.skipped_local.get(),
            "bad_records": self.bad_records.get(),
            "rejected": rejected,
            "forwarded": self.forwarded.get(),
            "forward_full": self.forward_full.get(),
            "reconnects": self.reconnects.get(),
            "pings": self.pings.get(),
            "timeouts": self.timeouts.get(),
            "store_series": self.store_series.get(),
            "store_max_series": self.store_max_series.get(),
            "remote_symbols": symbols.iter().map(Symbol::as_str).collect::<Vec<_>>(),
        })
    }
}

/// The bridge's subscription: the only channels it takes records from. A signal goes
/// out on `{prefix}:signals` too, which `{prefix}:signals:*` does not match.
pub fn patterns(prefix: &str) -> [String; 2] {
    [format!("{prefix}:candles:*"), format!("{prefix}:signals:*")]
}

/// The subscription of a bridge whose Redis user may not subscribe to [`patterns`]:
/// every channel of the prefix (the bridge skips what it does not take).
pub fn fallback_pattern(prefix: &str) -> String {
    format!("{prefix}:*")
}

/// The subscriber and where its records go.
pub struct Bridge {
    settings: RedisSettings,
    store: Arc<Mutex<RecentStore>>,
    dashboard: Option<Producer<Envelope>>,
    stats: Arc<BridgeStats>,
    names: Names,
    /// The record of a signed message, rebuilt for verification.
    unsigned: Vec<u8>,
}

/// What the subscription delivered.
enum Pushed {
    Message(Vec<u8>, Vec<u8>),
    Pong,
    /// One pattern subscription confirmed.
    Subscribed,
    /// An error reply: a refused subscription.
    Refused(String),
}

impl Bridge {
    /// A bridge taking the records `settings.universe` allows.
    pub fn new(
        settings: RedisSettings,
        store: Arc<Mutex<RecentStore>>,
        dashboard: Option<Producer<Envelope>>,
    ) -> Bridge {
        let stats = Arc::new(BridgeStats::default());
        stats.active.set(1);
        stats.signed.set(u64::from(settings.key.is_some()));
        Bridge {
            settings,
            store,
            dashboard,
            stats,
            names: Names::default(),
            unsigned: Vec::new(),
        }
    }

    pub fn stats(&self) -> Arc<BridgeStats> {
        self.stats.clone()
    }

    /// Subscribes and applies records until `stop` is set; reconnects with capped,
    /// jittered backoff while Redis is away.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let target =
            match Target::parse_with_ca(&self.settings.url, self.settings.tls_ca_file.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "the Redis bridge cannot connect");
                    return;
                }
            };
        let mut backoff = self.settings.backoff();
        let mut ever = false;
        while !stop.load(Ordering::Relaxed) {
            let since = Instant::now();
            match self.session(&target, &stop, &mut ever) {
                Ok(()) => break,
                Err(e) => {
                    self.stats.connected.set(0);
                    if matches!(e, RespError::Timeout(_)) {
                        self.stats.timeouts.inc();
                        tracing::warn!(error = %e, "Redis bridge: Redis stopped answering; reconnecting");
                    } else if matches!(e, RespError::Server(_)) {
                        tracing::warn!(error = %e, "Redis bridge: Redis refused the subscription; retrying");
                    } else {
                        tracing::debug!(error = %e, "Redis bridge: connection ended");
                    }
                }
            }
            backoff.connection_ended(since, Instant::now());
            let resume = Instant::now() + backoff.next_delay(fastrand::f64());
            while Instant::now() < resume && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL.min(resume - Instant::now()));
            }
        }
        self.stats.connected.set(0);
    }

    /// One subscription; `Ok` when stopped, `Err` when the connection failed or Redis
    /// left a `PING` unanswered past the I/O timeout.
    fn session(
        &mut self,
        target: &Target,
        stop: &AtomicBool,
        ever: &mut bool,
    ) -> Result<(), RespError> {
        let mut conn = Conn::connect(
            target,
            self.settings.connect_timeout,
            self.settings.io_timeout,
        )?;
        let mut cmd = Vec::new();
        let narrow = patterns(&self.settings.prefix);
        let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
        args.extend(narrow.iter().map(|p| p.as_bytes()));
        resp::command(&mut cmd, &args);
        conn.write_all(&cmd)?;
        // Confirmations still to come: connected once every pattern is subscribed.
        let mut awaiting = narrow.len();
        // A Redis user whose channel rule is `&{prefix}:*` may subscribe to that
        // pattern only (ACLs compare a pattern as text): then the bridge takes it, and
        // skips what it does not want.
        let mut widened = false;
        conn.set_read_timeout(POLL)?;
        if *ever {
            self.stats.reconnects.inc();
        }
        *ever = true;
        let prefix = format!("{}:", self.settings.prefix);
        let mut ping = Vec::new();
        resp::command(&mut ping, &[b"PING"]);
        let mut next_ping = Instant::now() + self.settings.ping_every;
        let mut ping_sent: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            match ping_sent {
                Some(sent) if now.duration_since(sent) > self.settings.io_timeout => {
                    return Err(RespError::Timeout(self.settings.io_timeout));
                }
                None if now >= next_ping => {
                    conn.write_all(&ping)?;
                    self.stats.pings.inc();
                    ping_sent = Some(now);
                    next_ping = now + self.settings.ping_every;
                }
                _ => {}
            }
            // Channel and payload are copied out of the read buffer only when the
            // message is a pmessage. In subscribed mode a PING is answered by a "pong"
            // array.
            let pushed = conn.next(|v| match v {
                resp::Value::Array(Some(items)) => match items.as_slice() {
                    [resp::Value::Bulk(Some(b"pmessage")), _, resp::Value::Bulk(Some(ch)), resp::Value::Bulk(Some(payload))] => {
                        Some(Pushed::Message(ch.to_vec(), payload.to_vec()))
                    }
                    [resp::Value::Bulk(Some(b"pong")), ..] => Some(Pushed::Pong),
                    [resp::Value::Bulk(Some(b"psubscribe")), ..] => Some(Pushed::Subscribed),
                    _ => None,
                },
                resp::Value::Error(e) => Some(Pushed::Refused(String::from_utf8_lossy(e).into_owned())),
                _ => None,
            })?;
            match pushed {
                Some(Some(Pushed::Message(channel, payload))) => {
                    self.on_message(&channel, &payload, &prefix)
                }
                Some(Some(Pushed::Pong)) => ping_sent = None,
                Some(Some(Pushed::Subscribed)) => {
                    awaiting = awaiting.saturating_sub(1);
                    if awaiting == 0 {
                        self.stats.connected.set(1);
                    }
                }
                Some(Some(Pushed::Refused(e))) if !widened && e.starts_with("NOPERM") => {
                    let wide = fallback_pattern(&self.settings.prefix);
                    tracing::warn!(error = %e, pattern = %wide, "Redis bridge: this user may not subscribe to the candle and signal channels alone; subscribing to every channel of the prefix");
                    cmd.clear();
                    resp::command(&mut cmd, &[b"PSUBSCRIBE", wide.as_bytes()]);
                    conn.write_all(&cmd)?;
                    awaiting = 1;
                    widened = true;
                }
                Some(Some(Pushed::Refused(e))) => return Err(RespError::Server(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies one published message, or counts why not.
    pub fn on_message(&mut self, channel: &[u8], payload: &[u8], prefix: &str) {
        self.stats.received.inc();
        let Some(rest) = channel.strip_prefix(prefix.as_bytes()) else {
            return;
        };
        // The subscription ([`patterns`]) delivers only per-series candle and signal
        // channels. Should another arrive: a signal's all-signals copy duplicates its
        // own channel's, books stay with the instance that keeps them, and the store
        // keeps no trades.
        if rest == b"signals" || rest.starts_with(b"book:") || rest.starts_with(b"trades:") {
            return;
        }
        if let Err(why) = self.take(rest, payload) {
            self.stats.rejected(why).inc();
        }
    }

    fn take(&mut self, channel: &[u8], payload: &[u8]) -> Result<(), Reject> {
        let payload = match &self.settings.key {
            Some(key) => key
                .verify(payload, &mut self.unsigned)
                .map_err(|_| Reject::BadSignature)?,
            None => payload,
        };
        let record = match record::parse(payload, &mut self.names) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "Redis bridge: not a record");
                return Err(Reject::Malformed);
            }
        };
        let (kind, symbol, interval) = match &record {
            Remote::Candle(c) => (&b"candles:"[..], c.symbol, c.interval),
            Remote::Signal(s) => (&b"signals:"[..], s.symbol, s.interval),
        };
        if !on_channel(channel, kind, symbol, interval) {
            return Err(Reject::Malformed);
        }
        self.settings.universe.judge(symbol, interval)?;
        let record = {
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            let (kept, record) = match record {
                Remote::Candle(c) if c.closed => (store.insert_closed(&c), Record::ClosedCandle(c)),
                Remote::Candle(c) => (store.update_live(&c), Record::LiveCandle(c)),
                Remote::Signal(s) => (store.insert_signal(&s), Record::Signal(s)),
            };
            self.stats.store_series.set(store.series_count() as u64);
            self.stats.store_max_series.set(store.max_series() as u64);
            if !kept {
                return Err(Reject::OverBound);
            }
            record
        };
        self.note_remote(symbol);
        self.stats.applied.inc();
        if let Some(ring) = &self.dashboard {
            let now = mono_ns();
            let env = Envelope {
                shard: REMOTE_SHARD,
                recv_ns: now,
                parsed_ns: now,
                record,
            };
            if ring.push(env).is_ok() {
                self.stats.forwarded.inc();
            } else {
                self.stats.forward_full.inc();
            }
        }
        Ok(())
    }

    fn note_remote(&self, symbol: Symbol) {
        let mut set = self
            .stats
            .remote_symbols
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if set.len() < MAX_REMOTE_SYMBOLS {
            set.insert(symbol);
        }
    }
}

/// Whether `channel` (after the prefix) is `{kind}{SYMBOL}:{TF}`, where the publisher
/// puts a record of `symbol` at `interval`.
fn on_channel(channel: &[u8], kind: &[u8], symbol: Symbol, interval: Interval) -> bool {
    let Some(rest) = channel.strip_prefix(kind) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(symbol.as_bytes()) else {
        return false;
    };
    rest.strip_prefix(b":") == Some(interval.as_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::testing::candle;
    use crate::ring::ring;
    use crate::signals::SignalKind;
    use crate::sinks::redis::sign::BridgeKey;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    /// A universe of `names` split over the fewest instances that puts BTCUSDT and
    /// ETHUSDT apart, seen from BTCUSDT's instance.
    fn universe(names: &[&str]) -> (Universe, u32) {
        let count = (2..64)
            .find(|n| instance_of(sym("BTCUSDT"), *n) != instance_of(sym("ETHUSDT"), *n))
            .unwrap();
        let symbols: Vec<Symbol> = names.iter().map(|s| sym(s)).collect();
        let index = instance_of(sym("BTCUSDT"), count);
        (
            Universe::new(&symbols, &[Interval::M1], index, count),
            count,
        )
    }

    fn bridge(
        names: &[&str],
        key: Option<BridgeKey>,
        store: &Arc<Mutex<RecentStore>>,
        dashboard: Option<Producer<Envelope>>,
    ) -> Bridge {
        let mut settings = RedisSettings::new("redis://127.0.0.1:1", "ap");
        settings.universe = universe(names).0;
        settings.key = key;
        Bridge::new(settings, store.clone(), dashboard)
    }

    fn candle_bytes(c: &crate::market::Candle) -> Vec<u8> {
        let mut payload = Vec::new();
        record::write_candle(&mut payload, c);
        payload
    }

    #[test]
    fn a_bridge_runs_only_where_another_instance_owns_a_symbol() {
        assert!(!Universe::default().takes_any());
        let both = [sym("BTCUSDT"), sym("ETHUSDT")];
        // One instance owns everything.
        assert!(!Universe::new(&both, &[Interval::M1], 0, 1).takes_any());
        let (split, count) = universe(&["BTCUSDT", "ETHUSDT"]);
        assert!(split.takes_any());
        // The same split, but every configured symbol is this instance's own.
        let index = instance_of(sym("BTCUSDT"), count);
        assert!(!Universe::new(&[sym("BTCUSDT")], &[Interval::M1], index, count).takes_any());
        // No timeframe to take.
        assert!(!Universe::new(&both, &[], index, count).takes_any());
        // What it subscribes to: the per-series channels only, or the prefix's.
        assert_eq!(patterns("ap"), ["ap:candles:*", "ap:signals:*"]);
        assert_eq!(fallback_pattern("ap"), "ap:*");
    }

    #[test]
    fn remote_records_reach_the_store_and_the_dashboard_local_ones_are_skipped() {
        let store = Arc::new(Mutex::new(RecentStore::new(100)));
        let (tx, rx) = ring("dash", 8);
        let mut b = bridge(&["BTCUSDT", "ETHUSDT"], None, &store, Some(tx));
        let mine = candle("BTCUSDT", 0, 1000, true);
        b.on_message(b"ap:candles:BTCUSDT:1m", &candle_bytes(&mine), "ap:");
        let theirs = candle("ETHUSDT", 0, 1000, true);
        b.on_message(b"ap:candles:ETHUSDT:1m", &candle_bytes(&theirs), "ap:");
        let sig = record::tests::signal("ETHUSDT", 60_000, SignalKind::Rsi);
        let mut payload = Vec::new();
        record::write_signal(&mut payload, &sig);
        b.on_message(b"ap:signals", &payload, "ap:");
        b.on_message(b"ap:signals:ETHUSDT:1m", &payload, "ap:");
        b.on_message(b"ap:candles:ETHUSDT:1m", b"garbage", "ap:");
        b.on_message(b"other:candles:ETHUSDT:1m", &payload, "ap:");

        let st = b.stats();
        assert_eq!(st.received.get(), 6);
        assert_eq!(st.skipped_local.get(), 1);
        assert_eq!(st.applied.get(), 2);
        assert_eq!(st.bad_records.get(), 1);
        assert_eq!(st.remote_symbols(), vec![sym("ETHUSDT")]);
        let store = store.lock().unwrap();
        let eth = sym("ETHUSDT");
        assert_eq!(store.closed(Some(eth), None, 10).len(), 1);
        assert_eq!(store.signals(Some(eth), None, 10).len(), 1);
        assert!(store.closed(Some(sym("BTCUSDT")), None, 10).is_empty());
        let got: Vec<Envelope> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.shard == REMOTE_SHARD));
        assert!(matches!(got[0].record, Record::ClosedCandle(c) if c.symbol == eth));
        assert!(matches!(got[1].record, Record::Signal(s) if s.symbol == eth));
    }

    #[test]
    fn forged_records_are_refused_and_counted_by_reason() {
        // Room for two series: ETHUSDT's and one more.
        let store = Arc::new(Mutex::new(RecentStore::new(100).with_max_series(2)));
        let (tx, rx) = ring("dash", 64);
        let extra: Vec<String> = (0..12).map(|i| format!("X{i}USDT")).collect();
        let names: Vec<&str> = ["BTCUSDT", "ETHUSDT"]
            .into_iter()
            .chain(extra.iter().map(String::as_str))
            .collect();
        let (u, _) = universe(&names);
        let mut b = bridge(&names, None, &store, Some(tx));
        let send = |b: &mut Bridge, c: &crate::market::Candle, channel: &str| {
            b.on_message(channel.as_bytes(), &candle_bytes(c), "ap:")
        };
        send(
            &mut b,
            &candle("ETHUSDT", 0, 1000, true),
            "ap:candles:ETHUSDT:1m",
        );
        // Outside the universe.
        send(
            &mut b,
            &candle("EVILUSDT", 0, 1000, true),
            "ap:candles:EVILUSDT:1m",
        );
        // A timeframe nobody follows.
        let mut h1 = candle("ETHUSDT", 0, 1000, true);
        h1.interval = Interval::H1;
        send(&mut b, &h1, "ap:candles:ETHUSDT:1h");
        // This instance's own symbol.
        send(
            &mut b,
            &candle("BTCUSDT", 0, 1000, true),
            "ap:candles:BTCUSDT:1m",
        );
        // A record on another series' channel, and not JSON at all.
        send(
            &mut b,
            &candle("ETHUSDT", 60_000, 1000, true),
            "ap:candles:X0USDT:1m",
        );
        b.on_message(b"ap:candles:ETHUSDT:1m", b"{\"type\":\"candle\"", "ap:");
        b.on_message(b"ap:whatever", b"hello", "ap:");
        // A flood of new series past the bound: the first other instance's symbol that
        // fits is kept, the rest refused.
        let others: Vec<&str> = names[2..]
            .iter()
            .copied()
            .filter(|s| u.judge(sym(s), Interval::M1).is_ok())
            .collect();
        for s in &others {
            send(
                &mut b,
                &candle(s, 0, 1000, true),
                &format!("ap:candles:{s}:1m"),
            );
        }
        // The series held keep updating past the bound.
        send(
            &mut b,
            &candle("ETHUSDT", 60_000, 2000, true),
            "ap:candles:ETHUSDT:1m",
        );

        let st = b.stats();
        let by: std::collections::HashMap<_, _> = st.rejections().into_iter().collect();
        assert_eq!(by["unknown_symbol"], 1);
        assert_eq!(by["unknown_timeframe"], 1);
        assert!(others.len() >= 3, "{others:?}");
        assert_eq!(by["own_symbol"], 1);
        assert_eq!(by["malformed"], 3);
        assert_eq!(by["bad_signature"], 0);
        assert_eq!(by["over_bound"], others.len() as u64 - 1);
        let store = store.lock().unwrap();
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.series_refused, others.len() as u64 - 1);
        assert_eq!(store.closed(Some(sym("ETHUSDT")), None, 10).len(), 2);
        assert!(store.closed(Some(sym("EVILUSDT")), None, 10).is_empty());
        assert!(store.closed(Some(sym("BTCUSDT")), None, 10).is_empty());
        let forwarded: Vec<Envelope> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(forwarded.len() as u64, st.applied.get());
        assert_eq!(st.status()["rejected"]["over_bound"], by["over_bound"]);
        assert_eq!(st.status()["store_max_series"], 2);
    }

    #[test]
    fn with_a_key_only_records_signed_with_it_are_applied() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let store = Arc::new(Mutex::new(RecentStore::new(100)));
        let mut b = bridge(
            &["BTCUSDT", "ETHUSDT"],
            Some(BridgeKey::new(secret)),
            &store,
            None,
        );
        let c = candle("ETHUSDT", 0, 1000, true);
        let plain = candle_bytes(&c);
        let mut signed = plain.clone();
        BridgeKey::new(secret).sign(&mut signed);
        let mut forged = plain.clone();
        BridgeKey::new(b"not-the-key-not-the-key-not-the!").sign(&mut forged);
        b.on_message(b"ap:candles:ETHUSDT:1m", &plain, "ap:");
        b.on_message(b"ap:candles:ETHUSDT:1m", &forged, "ap:");
        assert_eq!(b.stats().bad_signature.get(), 2);
        assert!(store.lock().unwrap().closed(None, None, 10).is_empty());
        b.on_message(b"ap:candles:ETHUSDT:1m", &signed, "ap:");
        assert_eq!(b.stats().applied.get(), 1);
        // The record as sent (trade ids do not travel in records).
        let kept = store.lock().unwrap().closed(None, None, 10);
        assert_eq!(kept.len(), 1);
        assert_eq!(candle_bytes(&kept[0]), plain);
        assert_eq!(b.stats().status()["signed"], true);
    }

    #[test]
    fn symbol_slices_use_a_hash_stable_across_builds() {
        // FNV-1a 64 reference values (computed independently): a change to the hash
        // would move symbols between running instances of a deployment.
        assert_eq!(Symbol::new("BTCUSDT").unwrap().stable_hash(), BTCUSDT_FNV1A);
        assert_eq!(Symbol::new("ETHUSDT").unwrap().stable_hash(), ETHUSDT_FNV1A);
        // Lower-case input is the same symbol, so the same instance.
        assert_eq!(Symbol::new("btcusdt").unwrap().stable_hash(), BTCUSDT_FNV1A);
    }

    const BTCUSDT_FNV1A: u64 = 0x3e64_0dbf_f523_962c;
    const ETHUSDT_FNV1A: u64 = 0x7f5c_456d_3d0c_94f0;
}
