//! The bridge: other instances' records, received over Redis, shown on this instance.
//!
//! Runs on: its own thread (started by the publisher role, on the publisher's core).
//! Owns: a subscriber connection that pattern-subscribes to `{prefix}:*`. In: the
//! candle and signal records every instance publishes. Out: records of symbols that
//! another instance owns, inserted into the shared [`RecentStore`] (so `/api/candles`,
//! `/api/signals` and `/api/status` cover every symbol of the deployment) and forwarded
//! as [`Envelope`]s with `shard: REMOTE_SHARD` to the dashboard core's ring when it takes
//! them. Records of this instance's own symbols are skipped: they are already here.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::resp::{self, Conn, RespError, Target};
use super::RedisSettings;
use crate::clock::mono_ns;
use crate::market::Symbol;
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

/// The bridge's figures (single writer: the bridge thread).
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub connected: Counter,
    /// Messages received on the pattern subscription.
    pub received: Counter,
    /// Records of other instances applied to the store.
    pub applied: Counter,
    /// Records of this instance's own symbols (our own publishes), skipped.
    pub skipped_local: Counter,
    /// Messages that were not records (counted, ignored).
    pub bad_records: Counter,
    pub forwarded: Counter,
    /// Records the dashboard's ring had no room for (it shows the store's view instead).
    pub forward_full: Counter,
    pub reconnects: Counter,
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

    pub fn status(&self) -> Value {
        let symbols = self.remote_symbols();
        json!({
            "connected": self.connected.get() == 1,
            "received": self.received.get(),
            "applied": self.applied.get(),
            "skipped_local": self.skipped_local.get(),
            "bad_records": self.bad_records.get(),
            "forwarded": self.forwarded.get(),
            "forward_full": self.forward_full.get(),
            "reconnects": self.reconnects.get(),
            "remote_symbols": symbols.iter().map(Symbol::as_str).collect::<Vec<_>>(),
        })
    }
}

/// The subscriber and where its records go.
pub struct Bridge {
    settings: RedisSettings,
    local: HashSet<Symbol>,
    store: Arc<Mutex<RecentStore>>,
    dashboard: Option<Producer<Envelope>>,
    stats: Arc<BridgeStats>,
    names: Names,
}

impl Bridge {
    pub fn new(
        settings: RedisSettings,
        local: &[Symbol],
        store: Arc<Mutex<RecentStore>>,
        dashboard: Option<Producer<Envelope>>,
    ) -> Bridge {
        Bridge {
            settings,
            local: local.iter().copied().collect(),
            store,
            dashboard,
            stats: Arc::new(BridgeStats::default()),
            names: Names::default(),
        }
    }

    pub fn stats(&self) -> Arc<BridgeStats> {
        self.stats.clone()
    }

    /// Subscribes and applies records until `stop` is set; reconnects with capped,
    /// jittered backoff while Redis is away.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let target = match Target::parse(&self.settings.url) {
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
                    tracing::debug!(error = %e, "Redis bridge: connection ended");
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

    /// One subscription; `Ok` when stopped, `Err` when the connection failed.
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
        let pattern = format!("{}:*", self.settings.prefix);
        resp::command(&mut cmd, &[b"PSUBSCRIBE", pattern.as_bytes()]);
        conn.write_all(&cmd)?;
        conn.set_read_timeout(POLL)?;
        if *ever {
            self.stats.reconnects.inc();
        }
        *ever = true;
        self.stats.connected.set(1);
        let prefix = format!("{}:", self.settings.prefix);
        while !stop.load(Ordering::Relaxed) {
            // Channel and payload are copied out of the read buffer only when the
            // message is a pmessage; other replies (the subscribe confirmation) are
            // skipped.
            let msg = conn.next(|v| match v {
                resp::Value::Array(Some(items)) => match items.as_slice() {
                    [resp::Value::Bulk(Some(b"pmessage")), _, resp::Value::Bulk(Some(ch)), resp::Value::Bulk(Some(payload))] => {
                        Some((ch.to_vec(), payload.to_vec()))
                    }
                    _ => None,
                },
                _ => None,
            })?;
            if let Some(Some((channel, payload))) = msg {
                self.on_message(&channel, &payload, &prefix);
            }
        }
        Ok(())
    }

    /// Applies one published message.
    pub fn on_message(&mut self, channel: &[u8], payload: &[u8], prefix: &str) {
        self.stats.received.inc();
        let Some(rest) = channel.strip_prefix(prefix.as_bytes()) else {
            return;
        };
        // Every signal arrives twice (the all-signals channel and its own): only the
        // per-series channel is taken.
        if !(rest.starts_with(b"candles:") || rest.starts_with(b"signals:")) {
            return;
        }
        let record = match record::parse(payload, &mut self.names) {
            Ok(r) => r,
            Err(e) => {
                self.stats.bad_records.inc();
                tracing::debug!(error = %e, "Redis bridge: not a record");
                return;
            }
        };
        let symbol = match &record {
            Remote::Candle(c) => c.symbol,
            Remote::Signal(s) => s.symbol,
        };
        if self.local.contains(&symbol) {
            self.stats.skipped_local.inc();
            return;
        }
        self.note_remote(symbol);
        let record = {
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            match record {
                Remote::Candle(c) if c.closed => {
                    store.insert_closed(&c);
                    Record::ClosedCandle(c)
                }
                Remote::Candle(c) => {
                    store.update_live(&c);
                    Record::LiveCandle(c)
                }
                Remote::Signal(s) => {
                    store.insert_signal(&s);
                    Record::Signal(s)
                }
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ring;
    use crate::signals::SignalKind;

    #[test]
    fn remote_records_reach_the_store_and_the_dashboard_local_ones_are_skipped() {
        let store = Arc::new(Mutex::new(RecentStore::new(100)));
        let (tx, rx) = ring("dash", 8);
        let local = [Symbol::new("BTCUSDT").unwrap()];
        let mut b = Bridge::new(
            RedisSettings::new("redis://127.0.0.1:1", "ap"),
            &local,
            store.clone(),
            Some(tx),
        );
        let mut payload = Vec::new();
        let mine = crate::market::testing::candle("BTCUSDT", 0, 1000, true);
        record::write_candle(&mut payload, &mine);
        b.on_message(b"ap:candles:BTCUSDT:1m", &payload, "ap:");
        let theirs = crate::market::testing::candle("ETHUSDT", 0, 1000, true);
        payload.clear();
        record::write_candle(&mut payload, &theirs);
        b.on_message(b"ap:candles:ETHUSDT:1m", &payload, "ap:");
        let sig = record::tests::signal("ETHUSDT", 60_000, SignalKind::Rsi);
        payload.clear();
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
        assert_eq!(st.remote_symbols(), vec![Symbol::new("ETHUSDT").unwrap()]);
        let store = store.lock().unwrap();
        let eth = Symbol::new("ETHUSDT").unwrap();
        assert_eq!(store.closed(Some(eth), None, 10).len(), 1);
        assert_eq!(store.signals(Some(eth), None, 10).len(), 1);
        assert!(store
            .closed(Some(Symbol::new("BTCUSDT").unwrap()), None, 10)
            .is_empty());
        let got: Vec<Envelope> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.shard == REMOTE_SHARD));
        assert!(matches!(got[0].record, Record::ClosedCandle(c) if c.symbol == eth));
        assert!(matches!(got[1].record, Record::Signal(s) if s.symbol == eth));
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
