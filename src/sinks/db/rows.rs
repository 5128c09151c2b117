//! The rows the writer stores: a write batch (candles, signals, confirmed absences,
//! trades and aggregate trades, duplicates merged),
//! its compact binary form for the spool, and the PostgreSQL encodings of times and
//! `jsonb` that the binary COPY needs.
//!
//! Pure: no sockets, files or clocks. Runs on the writer thread.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::candle::Gap;
use crate::market::{AggTrade, Candle, Decimal, FastMap, FastSet, Interval, Symbol, Trade};
use crate::signals::{Direction, Signal, SignalKind};

/// A signal as the database stores it: the indicators rendered once to JSON text, so
/// the row owns everything it needs (and can be spooled and read back unchanged).
#[derive(Clone, Debug, PartialEq)]
pub struct SignalRow {
    pub symbol: Symbol,
    pub interval: Interval,
    pub kind: SignalKind,
    pub direction: Direction,
    pub confidence: f64,
    pub price: Decimal,
    pub timestamp_ms: i64,
    pub event_time_us: i64,
    /// A JSON object of numbers (non-finite values left out, as in the JSON record).
    pub indicators_json: String,
}

impl From<&Signal> for SignalRow {
    fn from(s: &Signal) -> Self {
        let indicators = crate::record::indicators_object(&s.indicators);
        SignalRow {
            symbol: s.symbol,
            interval: s.interval,
            kind: s.kind,
            direction: s.direction,
            confidence: s.confidence,
            price: s.price,
            timestamp_ms: s.timestamp_ms,
            event_time_us: s.event_time_us,
            indicators_json: serde_json::Value::Object(indicators).to_string(),
        }
    }
}

type CandleKey = (Symbol, Interval, i64);
type SignalKey = (Symbol, Interval, SignalKind, i64);

/// One write: candles, signals and confirmed absences with at most one row per key, so
/// the upsert never touches a row twice in one statement.
#[derive(Default, Debug)]
pub struct Batch {
    pub candles: Vec<Candle>,
    pub signals: Vec<SignalRow>,
    /// Spans the exchange confirmed it has no candles for (`candle_absences`).
    pub absences: Vec<Gap>,
    /// Trades (`trades`) and aggregate trades (`agg_trades`), each id once.
    pub trades: Vec<Trade>,
    pub agg_trades: Vec<AggTrade>,
    candle_index: FastMap<CandleKey, usize>,
    signal_index: FastMap<SignalKey, usize>,
    trade_ids: FastSet<(Symbol, u64)>,
    agg_trade_ids: FastSet<(Symbol, u64)>,
    /// Rows offered, duplicates included.
    pub offered: u64,
}

/// True when `a` should replace `b`: a closed candle beats a live one, then the later
/// exchange event wins. The database applies the same rule on conflict.
pub fn supersedes(a: &Candle, b: &Candle) -> bool {
    (a.closed, a.event_time_us) > (b.closed, b.event_time_us)
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Distinct rows held.
    pub fn rows(&self) -> usize {
        self.candles.len()
            + self.signals.len()
            + self.absences.len()
            + self.trades.len()
            + self.agg_trades.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// Adds a candle, merging with a row of the same key: the newer state is kept.
    pub fn push_candle(&mut self, c: Candle) {
        self.offered += 1;
        let key = (c.symbol, c.interval, c.open_time_ms);
        match self.candle_index.get(&key) {
            Some(&i) => {
                if supersedes(&c, &self.candles[i]) {
                    self.candles[i] = c;
                }
            }
            None => {
                self.candle_index.insert(key, self.candles.len());
                self.candles.push(c);
            }
        }
    }

    /// Adds a signal; a second signal with the same key is the same signal (a replay)
    /// and is dropped here, as the database would.
    pub fn push_signal(&mut self, s: SignalRow) {
        self.offered += 1;
        let key = (s.symbol, s.interval, s.kind, s.timestamp_ms);
        if let std::collections::hash_map::Entry::Vacant(e) = self.signal_index.entry(key) {
            e.insert(self.signals.len());
            self.signals.push(s);
        }
    }

    /// Adds a confirmed absence; the same span twice is one row.
    pub fn push_absence(&mut self, g: Gap) {
        self.offered += 1;
        if !self.absences.contains(&g) {
            self.absences.push(g);
        }
    }

    /// Adds a trade; the same trade id twice (a replay, a backfill) is one row.
    pub fn push_trade(&mut self, t: Trade) {
        self.offered += 1;
        if self.trade_ids.insert((t.symbol, t.trade_id)) {
            self.trades.push(t);
        }
    }

    /// Adds an aggregate trade; the same id twice is one row.
    pub fn push_agg_trade(&mut self, t: AggTrade) {
        self.offered += 1;
        if self.agg_trade_ids.insert((t.symbol, t.agg_trade_id)) {
            self.agg_trades.push(t);
        }
    }

    /// The batch cut in two of (nearly) equal rows, candles, then signals, absences,
    /// trades and aggregate trades, in order: how the writer narrows down the rows a
    /// server refuses.
    pub fn halves(&self) -> (Batch, Batch) {
        let half = self.rows() / 2;
        let (mut a, mut b) = (Batch::new(), Batch::new());
        for (i, c) in self.candles.iter().enumerate() {
            if i < half { &mut a } else { &mut b }.push_candle(*c);
        }
        for (i, s) in self.signals.iter().enumerate() {
            if self.candles.len() + i < half {
                &mut a
            } else {
                &mut b
            }
            .push_signal(s.clone());
        }
        let before = self.candles.len() + self.signals.len();
        for (i, g) in self.absences.iter().enumerate() {
            if before + i < half { &mut a } else { &mut b }.push_absence(*g);
        }
        let before = before + self.absences.len();
        for (i, t) in self.trades.iter().enumerate() {
            if before + i < half { &mut a } else { &mut b }.push_trade(*t);
        }
        let before = before + self.trades.len();
        for (i, t) in self.agg_trades.iter().enumerate() {
            if before + i < half { &mut a } else { &mut b }.push_agg_trade(*t);
        }
        (a, b)
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.candles.clear();
        self.signals.clear();
        self.absences.clear();
        self.trades.clear();
        self.agg_trades.clear();
        self.candle_index.clear();
        self.signal_index.clear();
        self.trade_ids.clear();
        self.agg_trade_ids.clear();
        self.offered = 0;
    }

    /// The batch in the spool's binary form (see [`Batch::decode`]): candle and signal
    /// counts, the candles, the signals, then optional sections, each written only when
    /// it or a later one has rows: the absences (their count and each span), the trades,
    /// the aggregate trades. So a batch without them reads the same as in spools written
    /// before they were spooled, and an older spool reads in this version.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.candles.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.signals.len() as u32).to_le_bytes());
        for c in &self.candles {
            put_symbol(out, c.symbol);
            out.push(c.interval as u8);
            for t in [c.open_time_ms, c.close_time_ms, c.event_time_us] {
                out.extend_from_slice(&t.to_le_bytes());
            }
            for d in [
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.quote_volume,
                c.taker_buy_base,
                c.taker_buy_quote,
            ] {
                out.extend_from_slice(&d.serialize());
            }
            out.extend_from_slice(&c.trades.to_le_bytes());
            out.extend_from_slice(&c.first_trade_id.to_le_bytes());
            out.extend_from_slice(&c.last_trade_id.to_le_bytes());
            out.push(u8::from(c.closed));
        }
        for s in &self.signals {
            put_symbol(out, s.symbol);
            out.push(s.interval as u8);
            out.push(s.kind as u8);
            out.push(matches!(s.direction, Direction::Sell) as u8);
            out.extend_from_slice(&s.confidence.to_le_bytes());
            out.extend_from_slice(&s.price.serialize());
            out.extend_from_slice(&s.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&s.event_time_us.to_le_bytes());
            out.extend_from_slice(&(s.indicators_json.len() as u32).to_le_bytes());
            out.extend_from_slice(s.indicators_json.as_bytes());
        }
        let (trades, aggs) = (!self.trades.is_empty(), !self.agg_trades.is_empty());
        if !self.absences.is_empty() || trades || aggs {
            out.extend_from_slice(&(self.absences.len() as u32).to_le_bytes());
            for g in &self.absences {
                put_symbol(out, g.symbol);
                out.push(g.interval as u8);
                out.extend_from_slice(&g.from_open_ms.to_le_bytes());
                out.extend_from_slice(&g.to_open_ms.to_le_bytes());
            }
        }
        if trades || aggs {
            out.extend_from_slice(&(self.trades.len() as u32).to_le_bytes());
            for t in &self.trades {
                put_symbol(out, t.symbol);
                out.extend_from_slice(&t.trade_id.to_le_bytes());
                out.extend_from_slice(&t.price.serialize());
                out.extend_from_slice(&t.quantity.serialize());
                out.extend_from_slice(&t.trade_time_ms.to_le_bytes());
                out.extend_from_slice(&t.event_time_us.to_le_bytes());
                out.push(u8::from(t.buyer_is_maker));
            }
        }
        if aggs {
            out.extend_from_slice(&(self.agg_trades.len() as u32).to_le_bytes());
            for t in &self.agg_trades {
                put_symbol(out, t.symbol);
                for id in [t.agg_trade_id, t.first_trade_id, t.last_trade_id] {
                    out.extend_from_slice(&id.to_le_bytes());
                }
                out.extend_from_slice(&t.price.serialize());
                out.extend_from_slice(&t.quantity.serialize());
                out.extend_from_slice(&t.trade_time_ms.to_le_bytes());
                out.extend_from_slice(&t.event_time_us.to_le_bytes());
                out.push(u8::from(t.buyer_is_maker));
            }
        }
    }

    /// Reads a batch written by [`Batch::encode`]; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Batch> {
        let mut r = Reader(bytes);
        let candles = r.u32()? as usize;
        let signals = r.u32()? as usize;
        let mut batch = Batch::new();
        for _ in 0..candles {
            let symbol = r.symbol()?;
            let interval = *Interval::ALL.get(r.u8()? as usize)?;
            let (open_time_ms, close_time_ms, event_time_us) = (r.i64()?, r.i64()?, r.i64()?);
            let mut d = [Decimal::ZERO; 8];
            for slot in &mut d {
                *slot = r.decimal()?;
            }
            let c = Candle {
                symbol,
                interval,
                open_time_ms,
                close_time_ms,
                open: d[0],
                high: d[1],
                low: d[2],
                close: d[3],
                volume: d[4],
                quote_volume: d[5],
                taker_buy_base: d[6],
                taker_buy_quote: d[7],
                trades: r.i64()? as u64,
                first_trade_id: r.i64()?,
                last_trade_id: r.i64()?,
                closed: r.u8()? != 0,
                event_time_us,
            };
            batch.push_candle(c);
        }
        for _ in 0..signals {
            let symbol = r.symbol()?;
            let interval = *Interval::ALL.get(r.u8()? as usize)?;
            let kind = *SignalKind::ALL.get(r.u8()? as usize)?;
            let direction = if r.u8()? == 0 {
                Direction::Buy
            } else {
                Direction::Sell
            };
            let confidence = f64::from_bits(r.i64()? as u64);
            let price = r.decimal()?;
            let timestamp_ms = r.i64()?;
            let event_time_us = r.i64()?;
            let len = r.u32()? as usize;
            let indicators_json = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            batch.push_signal(SignalRow {
                symbol,
                interval,
                kind,
                direction,
                confidence,
                price,
                timestamp_ms,
                event_time_us,
                indicators_json,
            });
        }
        if !r.0.is_empty() {
            for _ in 0..r.u32()? {
                let symbol = r.symbol()?;
                let interval = *Interval::ALL.get(r.u8()? as usize)?;
                let (from_open_ms, to_open_ms) = (r.i64()?, r.i64()?);
                if to_open_ms < from_open_ms {
                    return None;
                }
                batch.push_absence(Gap {
                    symbol,
                    interval,
                    from_open_ms,
                    to_open_ms,
                });
            }
        }
        if !r.0.is_empty() {
            for _ in 0..r.u32()? {
                let symbol = r.symbol()?;
                let trade_id = r.i64()? as u64;
                let (price, quantity) = (r.decimal()?, r.decimal()?);
                let (trade_time_ms, event_time_us) = (r.i64()?, r.i64()?);
                let buyer_is_maker = r.flag()?;
                batch.push_trade(Trade {
                    symbol,
                    trade_id,
                    price,
                    quantity,
                    trade_time_ms,
                    buyer_is_maker,
                    event_time_us,
                });
            }
        }
        if !r.0.is_empty() {
            for _ in 0..r.u32()? {
                let symbol = r.symbol()?;
                let (agg_trade_id, first_trade_id, last_trade_id) =
                    (r.i64()? as u64, r.i64()? as u64, r.i64()? as u64);
                let (price, quantity) = (r.decimal()?, r.decimal()?);
                let (trade_time_ms, event_time_us) = (r.i64()?, r.i64()?);
                let buyer_is_maker = r.flag()?;
                if last_trade_id < first_trade_id {
                    return None;
                }
                batch.push_agg_trade(AggTrade {
                    symbol,
                    agg_trade_id,
                    price,
                    quantity,
                    first_trade_id,
                    last_trade_id,
                    trade_time_ms,
                    buyer_is_maker,
                    event_time_us,
                });
            }
        }
        r.0.is_empty().then_some(batch)
    }
}

fn put_symbol(out: &mut Vec<u8>, s: Symbol) {
    let text = s.as_bytes();
    out.push(text.len() as u8);
    out.extend_from_slice(text);
}

/// A cursor over spooled bytes; every read fails cleanly at the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A boolean byte: 0 or 1, anything else is damage.
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn decimal(&mut self) -> Option<Decimal> {
        Some(Decimal::deserialize(self.take(16)?.try_into().ok()?))
    }
    fn symbol(&mut self) -> Option<Symbol> {
        let len = self.u8()? as usize;
        let text = std::str::from_utf8(self.take(len)?).ok()?;
        Symbol::new(text).ok()
    }
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A `timestamptz` from Unix microseconds, in PostgreSQL's binary form (no calendar
/// arithmetic and no extra time crate on the write path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgTime(pub i64);

impl PgTime {
    pub fn from_ms(ms: i64) -> PgTime {
        PgTime(ms.saturating_mul(1000))
    }
    pub fn as_ms(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl ToSql for PgTime {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // An instant before PostgreSQL's epoch by more than i64 µs (an extreme `from`
        // of a list query) has no encoding: an error for the statement, not a panic.
        let pg = self
            .0
            .checked_sub(PG_EPOCH_OFFSET_US)
            .ok_or_else(|| format!("time {} µs is out of the timestamp range", self.0))?;
        out.put_i64(pg);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP)
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        // `infinity` is i64::MAX: saturate rather than overflow.
        Ok(PgTime(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_OFFSET_US),
        ))
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP)
    }
}

/// JSON text sent as `jsonb` (binary format: a version byte, then the text), so the
/// indicators are not parsed and re-serialised on the way in.
#[derive(Clone, Copy, Debug)]
pub struct JsonbText<'a>(pub &'a str);

/// The only `jsonb` binary format version PostgreSQL defines.
const JSONB_VERSION: u8 = 1;

impl ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_u8(JSONB_VERSION);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::testing::candle;
    use crate::signals::IndicatorValues;

    fn signal(ts: i64) -> SignalRow {
        let mut ind = IndicatorValues::new();
        ind.push("rsi", 28.5);
        ind.push("bad", f64::NAN);
        SignalRow::from(&Signal {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            interval: Interval::H1,
            kind: SignalKind::Rsi,
            direction: Direction::Sell,
            confidence: 0.75,
            price: "1234.5600".parse().unwrap(),
            timestamp_ms: ts,
            event_time_us: ts * 1000 + 7,
            indicators: ind,
        })
    }

    #[test]
    fn duplicates_merge_to_the_newest_state() {
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 0, 5, false));
        b.push_candle(candle("BTCUSDT", 0, 9, true));
        b.push_candle(candle("BTCUSDT", 0, 12, false)); // live after closed: ignored
        b.push_candle(candle("BTCUSDT", 60_000, 3, false));
        b.push_signal(signal(1));
        b.push_signal(signal(1));
        assert_eq!((b.rows(), b.offered), (3, 6));
        assert!(b.candles[0].closed);
        assert_eq!(b.candles[0].event_time_us, 9);
        assert_eq!(b.signals[0].indicators_json, r#"{"rsi":28.5}"#);
    }

    #[test]
    fn spool_form_round_trips_and_rejects_damage() {
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 60_000, 11, true));
        b.push_signal(signal(120_000));
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let back = Batch::decode(&bytes).expect("decodes");
        assert_eq!(back.candles, b.candles);
        assert_eq!(back.signals, b.signals);
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_none());
        bytes.push(0);
        assert!(Batch::decode(&bytes).is_none());
    }

    #[test]
    fn absences_spool_after_the_rows_and_older_batches_still_read() {
        let gap = Gap {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            interval: Interval::M1,
            from_open_ms: 60_000,
            to_open_ms: 180_000,
        };
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 0, 11, true));
        b.push_absence(gap);
        b.push_absence(gap);
        assert_eq!((b.rows(), b.offered), (2, 3), "one span, one row");
        let mut without = Vec::new();
        Batch::new().encode(&mut without);
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let back = Batch::decode(&bytes).expect("decodes");
        assert_eq!(back.absences, vec![gap]);
        assert_eq!(back.candles, b.candles);
        // A batch without absences is byte-for-byte the old form (two counts, rows).
        let mut plain = Batch::new();
        plain.push_candle(candle("BTCUSDT", 0, 11, true));
        let mut old = Vec::new();
        plain.encode(&mut old);
        assert_eq!(&bytes[..old.len()], &old[..]);
        assert!(Batch::decode(&old).expect("old form").absences.is_empty());
        assert_eq!(without.len(), 8);
        // A cut or reversed span is damage.
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_none());
        let n = bytes.len();
        bytes[n - 16..n - 8].copy_from_slice(&999_999i64.to_le_bytes());
        assert!(Batch::decode(&bytes).is_none());
    }

    #[test]
    fn trades_spool_after_the_absences_and_round_trip() {
        use crate::market::testing::{agg_trade, trade};
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 0, 11, true));
        for id in [7, 8, 7] {
            b.push_trade(trade("BTCUSDT", id));
        }
        b.push_trade(trade("ETHUSDT", 7));
        b.push_agg_trade(agg_trade("BTCUSDT", 3));
        b.push_agg_trade(agg_trade("BTCUSDT", 3));
        assert_eq!((b.rows(), b.offered), (5, 7), "one row per (symbol, id)");
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let back = Batch::decode(&bytes).expect("decodes");
        assert_eq!(back.trades, b.trades);
        assert_eq!(back.agg_trades, b.agg_trades);
        assert_eq!(back.candles, b.candles);
        assert!(back.absences.is_empty());
        assert_eq!(back.trades[0].price.to_string(), "100.5");
        assert_eq!(
            back.trades[0].quantity.to_string(),
            "0.250",
            "scale is kept"
        );
        // Only aggregate trades: the empty sections before them are written too.
        let mut only = Batch::new();
        only.push_agg_trade(agg_trade("SOLUSDT", 1));
        let mut bytes = Vec::new();
        only.encode(&mut bytes);
        assert_eq!(
            Batch::decode(&bytes).expect("decodes").agg_trades,
            only.agg_trades
        );
        // Damage: cut, extended, a flag that is not 0 or 1, a reversed trade id range.
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Batch::decode(&longer).is_none());
        let n = bytes.len();
        let mut bad_flag = bytes.clone();
        bad_flag[n - 1] = 2;
        assert!(Batch::decode(&bad_flag).is_none());
        let mut reversed = Batch::new();
        let mut t = agg_trade("SOLUSDT", 1);
        t.last_trade_id = t.first_trade_id - 1;
        reversed.agg_trades.push(t);
        let mut bytes = Vec::new();
        reversed.encode(&mut bytes);
        assert!(Batch::decode(&bytes).is_none());
    }

    #[test]
    fn halves_keep_every_trade_once_in_order() {
        use crate::market::testing::{agg_trade, trade};
        let mut b = Batch::new();
        b.push_candle(candle("BTCUSDT", 0, 11, true));
        for id in 1..=3 {
            b.push_trade(trade("BTCUSDT", id));
            b.push_agg_trade(agg_trade("BTCUSDT", id));
        }
        let (x, y) = b.halves();
        assert_eq!((x.rows(), y.rows()), (3, 4));
        assert_eq!(x.trades, b.trades[..2]);
        assert_eq!(y.trades, b.trades[2..]);
        assert_eq!(y.agg_trades, b.agg_trades);
        let mut c = Batch::new();
        c.push_trade(trade("BTCUSDT", 1));
        c.clear();
        c.push_trade(trade("BTCUSDT", 1));
        assert_eq!(c.trades.len(), 1, "clear forgets the ids too");
    }

    #[test]
    fn times_convert_to_postgres_epoch_and_back() {
        let t = PgTime::from_ms(1_700_000_000_123);
        let mut out = BytesMut::new();
        t.to_sql(&Type::TIMESTAMPTZ, &mut out).unwrap();
        let back = PgTime::from_sql(&Type::TIMESTAMPTZ, &out).unwrap();
        assert_eq!(back.as_ms(), 1_700_000_000_123);
        assert_eq!(PgTime(-1).as_ms(), -1);
    }

    #[test]
    fn extreme_times_are_errors_not_panics() {
        let mut out = BytesMut::new();
        for ms in [i64::MIN, i64::MIN / 1000, -i64::MAX] {
            assert!(PgTime::from_ms(ms)
                .to_sql(&Type::TIMESTAMPTZ, &mut out)
                .is_err());
        }
        PgTime::from_ms(i64::MAX)
            .to_sql(&Type::TIMESTAMPTZ, &mut out)
            .expect("late times encode");
        // `infinity` and `-infinity` as the server sends them.
        for raw in [i64::MAX, i64::MIN] {
            let t = PgTime::from_sql(&Type::TIMESTAMPTZ, &raw.to_be_bytes()).unwrap();
            let _ = t.as_ms();
        }
        assert!(PgTime::from_sql(&Type::TIMESTAMPTZ, &[1, 2, 3]).is_err());
    }

    #[test]
    fn halves_keep_every_row_once_in_order() {
        let mut b = Batch::new();
        for i in 0..3 {
            b.push_candle(candle("BTCUSDT", 60_000 * i, 11, true));
        }
        for i in 0..2 {
            b.push_signal(signal(120_000 * (i + 1)));
        }
        let (x, y) = b.halves();
        assert_eq!((x.rows(), y.rows()), (2, 3));
        assert_eq!(x.candles, b.candles[..2]);
        assert_eq!(y.candles, b.candles[2..]);
        assert_eq!(y.signals, b.signals);
        let mut one = Batch::new();
        one.push_signal(signal(1));
        let (x, y) = one.halves();
        assert_eq!((x.rows(), y.rows()), (0, 1));
    }
}
