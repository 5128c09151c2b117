//! `alphapulse bench db`: database writer throughput on each of its two write methods,
//! measured against each other and against a plain multi-row `INSERT … ON CONFLICT`
//! baseline in the same run.
//!
//! Connects to `--url` (or `DATABASE_URL`), creates a scratch database next to the one
//! named there, applies the migrations to it, and writes synthetic closed candles with
//! new keys, in `--rounds` rounds (so a change in machine load during the run does not
//! masquerade as a speed difference; the two writer methods swap places every round):
//! 1. through the writer's `copy` path (in-batch merge, binary COPY into the staging
//!    table, one upsert per batch);
//! 2. through the writer's `unnest` path (in-batch merge, one array upsert per batch);
//! 3. through the baseline: multi-row `INSERT … VALUES … ON CONFLICT DO UPDATE`
//!    statements of `--insert-rows` rows each (the writer's row encoding and conflict
//!    rule, [`copy::CANDLE_CONFLICT`]), one transaction each.
//!
//! All write into the same table (disjoint symbols), so index depth grows alike.
//! Finally each method's candles are written again with later event times: every row
//! updated (`update_rows_per_s`).
//!
//! Then trade rows (`trades`), the same way: `--trade-rows` through each writer method
//! (binary COPY into the staging table and `INSERT … ON CONFLICT DO NOTHING`, or the
//! array insert) against `--baseline-trade-rows` through multi-row `INSERT … VALUES …
//! ON CONFLICT DO NOTHING` statements of `--insert-rows` rows, in alternating rounds.
//!
//! The scratch database is dropped at the end. Prints one JSON object.

use std::time::Instant;

use postgres::types::ToSql;
use serde_json::json;

use crate::config::Config;
use crate::market::{Candle, Decimal, Interval, Symbol, Trade};
use crate::sinks::db::copy::{
    self, CandleRow, TradeRow, CANDLE_COLUMNS, CANDLE_CONFLICT, TRADE_COLUMNS,
};
use crate::sinks::db::rows::Batch;
use crate::sinks::db::upsert::{BatchConn, WriteMethod};
use crate::sinks::db::{schema, DbSettings, CONNECT_TIMEOUT, MAX_BATCH_ROWS};

#[derive(Debug, Clone, clap::Args)]
pub struct DbBenchArgs {
    /// Server to use (a scratch database is created there); default DATABASE_URL (from
    /// the environment or `.env`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Candle rows written through each of the writer's two methods.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Candle rows written through the baseline (it is slower; fewer rows suffice).
    #[arg(long, default_value_t = 200_000)]
    pub baseline_rows: usize,
    /// Rows per writer batch (the writer's batches grow to this under load).
    #[arg(long, default_value_t = MAX_BATCH_ROWS)]
    pub batch_rows: usize,
    /// Rows per baseline INSERT statement.
    #[arg(long, default_value_t = 1000)]
    pub insert_rows: usize,
    /// Trade rows written through each of the writer's two methods.
    #[arg(long, default_value_t = 1_000_000)]
    pub trade_rows: usize,
    /// Trade rows written through the baseline.
    #[arg(long, default_value_t = 200_000)]
    pub baseline_trade_rows: usize,
    /// Alternating writer/baseline rounds the rows are split into.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Keep the scratch database afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// Symbols the synthetic candles spread over.
const BENCH_SYMBOLS: usize = 100;

pub fn run(args: DbBenchArgs, config: Config) -> anyhow::Result<()> {
    let url = args
        .url
        .clone()
        .filter(|url| !url.is_empty())
        .or(config.database_url.clone())
        .ok_or_else(|| anyhow::anyhow!("bench db needs --url or DATABASE_URL"))?;
    let scratch = format!("alphapulse_bench_{}", std::process::id());
    let mut admin = copy::connect(&url, CONNECT_TIMEOUT)?;
    admin.batch_execute(&format!("CREATE DATABASE {scratch}"))?;
    let result = measure(&args, &scratch_url(&url, &scratch)?, &config);
    if !args.keep {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {scratch}"))?;
    }
    let report = result?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "db": report }))?
    );
    Ok(())
}

/// `url` with its database name replaced by `db`.
fn scratch_url(url: &str, db: &str) -> anyhow::Result<String> {
    // Validates the connection string before any surgery on it.
    let _: postgres::Config = url.parse()?;
    // Key-value connection strings take a dbname parameter; URLs take a path.
    if url.contains("://") {
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let after_scheme = head.find("://").map_or(0, |i| i + 3);
        let base = match head[after_scheme..].find('/') {
            Some(i) => &head[..after_scheme + i],
            None => head,
        };
        Ok(match query {
            Some(q) => format!("{base}/{db}?{q}"),
            None => format!("{base}/{db}"),
        })
    } else {
        Ok(format!("{url} dbname={db}"))
    }
}

fn measure(args: &DbBenchArgs, url: &str, config: &Config) -> anyhow::Result<serde_json::Value> {
    let mut config = config.clone();
    config.database_url = Some(url.to_owned());
    let settings =
        DbSettings::from_config(&config).ok_or_else(|| anyhow::anyhow!("no database URL"))?;
    let mut client = copy::connect(url, CONNECT_TIMEOUT)?;
    schema::migrate(&mut client, &settings)?;
    let methods = [(WriteMethod::Copy, 'B'), (WriteMethod::Unnest, 'U')];
    let mut conns = Vec::new();
    for (method, _) in methods {
        conns.push(BatchConn::new(
            copy::connect(url, CONNECT_TIMEOUT)?,
            method,
        )?);
    }

    let rounds = args.rounds.max(1);
    let mut insert_s = [0.0; 2];
    let mut baseline_s = 0.0;
    for round in 0..rounds {
        let (from, to) = (args.rows * round / rounds, args.rows * (round + 1) / rounds);
        for k in 0..methods.len() {
            // Each method goes first in every other round.
            let m = (k + round) % methods.len();
            let candles = synthetic(methods[m].1, from, to - from, 0);
            let t = Instant::now();
            write_all(&mut conns[m], &candles, args.batch_rows)?;
            insert_s[m] += t.elapsed().as_secs_f64();
        }
        let (from, to) = (
            args.baseline_rows * round / rounds,
            args.baseline_rows * (round + 1) / rounds,
        );
        let base = synthetic('Z', from, to - from, 0);
        let t = Instant::now();
        baseline(&mut client, &base, args.insert_rows.max(1))?;
        baseline_s += t.elapsed().as_secs_f64();
    }
    let mut update_s = [0.0; 2];
    for (m, (_, prefix)) in methods.iter().enumerate() {
        let updated = synthetic(*prefix, 0, args.rows, 1);
        let t = Instant::now();
        write_all(&mut conns[m], &updated, args.batch_rows)?;
        update_s[m] = t.elapsed().as_secs_f64();
    }
    let stored: i64 = client
        .query_one("SELECT count(*) FROM candles", &[])?
        .get(0);
    anyhow::ensure!(
        stored as usize == 2 * args.rows + args.baseline_rows,
        "stored {stored} rows"
    );
    // Both methods stored the same values: the updated rows of each, compared column
    // by column after the symbol prefix.
    let differing: i64 = client
        .query_one(
            "SELECT count(*) FROM candles b FULL JOIN candles u \
             ON u.symbol = 'U' || substr(b.symbol, 2) AND u.timeframe = b.timeframe \
             AND u.open_time = b.open_time \
             WHERE (b.symbol LIKE 'B%' OR b.symbol IS NULL) AND (u.symbol LIKE 'U%' OR u.symbol IS NULL) \
             AND (b.symbol IS NULL OR u.symbol IS NULL \
               OR (b.close_time, b.open, b.high, b.low, b.close, b.volume, b.quote_volume, \
                   b.taker_buy_base, b.taker_buy_quote, b.trades, b.closed, b.event_time) \
              IS DISTINCT FROM (u.close_time, u.open, u.high, u.low, u.close, u.volume, \
                   u.quote_volume, u.taker_buy_base, u.taker_buy_quote, u.trades, u.closed, \
                   u.event_time))",
            &[],
        )?
        .get(0);
    anyhow::ensure!(
        differing == 0,
        "{differing} rows differ between the methods"
    );

    let trades = measure_trades(args, &mut client, &mut conns, rounds)?;

    let per_s = |rows: usize, s: f64| (rows as f64 / s).round();
    let baseline_rows_per_s = args.baseline_rows as f64 / baseline_s;
    let method = |m: usize| {
        json!({
            "rows_per_s": per_s(args.rows, insert_s[m]),
            "update_rows_per_s": per_s(args.rows, update_s[m]),
            "speedup_vs_baseline":
                (args.rows as f64 / insert_s[m] / baseline_rows_per_s * 100.0).round() / 100.0,
        })
    };
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    Ok(json!({
        "rows": args.rows,
        "batch_rows": args.batch_rows,
        "rounds": rounds,
        "copy": method(0),
        "unnest": method(1),
        "unnest_vs_copy": {
            "insert": ratio(insert_s[0], insert_s[1]),
            "update": ratio(update_s[0], update_s[1]),
        },
        "baseline": {
            "method": format!("multi-row INSERT ... ON CONFLICT DO UPDATE, {} rows per statement", args.insert_rows),
            "rows": args.baseline_rows,
            "rows_per_s": baseline_rows_per_s.round(),
        },
        "trades": trades,
    }))
}

/// The trade rows part (see the module comment): each writer method against the
/// multi-row INSERT baseline, in alternating rounds; then a check that every row is
/// stored once.
fn measure_trades(
    args: &DbBenchArgs,
    client: &mut postgres::Client,
    conns: &mut [BatchConn],
    rounds: usize,
) -> anyhow::Result<serde_json::Value> {
    let prefixes = ['B', 'U'];
    let mut insert_s = [0.0; 2];
    let mut baseline_s = 0.0;
    for round in 0..rounds {
        let (from, to) = (
            args.trade_rows * round / rounds,
            args.trade_rows * (round + 1) / rounds,
        );
        for k in 0..conns.len() {
            let m = (k + round) % conns.len();
            let trades = synthetic_trades(prefixes[m], from, to - from);
            let t = Instant::now();
            let mut batch = Batch::new();
            for chunk in trades.chunks(args.batch_rows.max(1)) {
                batch.clear();
                for tr in chunk {
                    batch.push_trade(*tr);
                }
                conns[m].write(&batch)?;
            }
            insert_s[m] += t.elapsed().as_secs_f64();
        }
        let (from, to) = (
            args.baseline_trade_rows * round / rounds,
            args.baseline_trade_rows * (round + 1) / rounds,
        );
        let base = synthetic_trades('Z', from, to - from);
        let t = Instant::now();
        baseline_trades(client, &base, args.insert_rows.max(1))?;
        baseline_s += t.elapsed().as_secs_f64();
    }
    let stored: i64 = client.query_one("SELECT count(*) FROM trades", &[])?.get(0);
    anyhow::ensure!(
        stored as usize == 2 * args.trade_rows + args.baseline_trade_rows,
        "stored {stored} trade rows"
    );
    let baseline_rows_per_s = args.baseline_trade_rows as f64 / baseline_s;
    let method = |m: usize| {
        let rows_per_s = args.trade_rows as f64 / insert_s[m];
        json!({
            "rows_per_s": rows_per_s.round(),
            "speedup_vs_baseline": (rows_per_s / baseline_rows_per_s * 100.0).round() / 100.0,
        })
    };
    Ok(json!({
        "rows": args.trade_rows,
        "copy": method(0),
        "unnest": method(1),
        "baseline": {
            "method": format!("multi-row INSERT ... ON CONFLICT DO NOTHING, {} rows per statement", args.insert_rows),
            "rows": args.baseline_trade_rows,
            "rows_per_s": baseline_rows_per_s.round(),
        },
    }))
}

/// `($1,…,$n),($n+1,…)`: the VALUES of `rows` rows of `columns` parameters each.
fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 0..columns {
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", i * columns + j + 1));
        }
        sql.push(')');
    }
}

/// The trade baseline: one multi-row insert statement per `per_statement` rows.
fn baseline_trades(
    client: &mut postgres::Client,
    trades: &[Trade],
    per_statement: usize,
) -> anyhow::Result<()> {
    const COLUMNS: usize = TradeRow::COLUMNS;
    for chunk in trades.chunks(per_statement) {
        let mut sql = format!("INSERT INTO trades ({TRADE_COLUMNS}) VALUES ");
        push_placeholders(&mut sql, chunk.len(), COLUMNS);
        sql.push_str(" ON CONFLICT DO NOTHING");
        let rows: Vec<TradeRow> = chunk.iter().map(TradeRow::new).collect();
        let params: Vec<&(dyn ToSql + Sync)> = rows.iter().flat_map(|r| r.params()).collect();
        client.execute(sql.as_str(), &params)?;
    }
    Ok(())
}

/// Trades `first..first + n` over [`BENCH_SYMBOLS`] symbols named `{prefix}000USDT`…,
/// ids contiguous per symbol, with 8-decimal prices and quantities.
pub fn synthetic_trades(prefix: char, first: usize, n: usize) -> Vec<Trade> {
    let symbols: Vec<Symbol> = (0..BENCH_SYMBOLS)
        .filter_map(|i| Symbol::new(&format!("{prefix}{i:03}USDT")).ok())
        .collect();
    let start_ms = 1_700_000_000_000;
    (first..first + n)
        .map(|i| {
            let trade_time_ms = start_ms + (i / BENCH_SYMBOLS) as i64 * 10;
            Trade {
                symbol: symbols[i % BENCH_SYMBOLS],
                trade_id: (i / BENCH_SYMBOLS) as u64 + 1,
                price: Decimal::new(4_325_112_000_000 + (i as i64 % 9973) * 1_000_000, 8),
                quantity: Decimal::new(1_234_567 + (i as i64 % 777), 8),
                trade_time_ms,
                buyer_is_maker: i % 3 == 0,
                event_time_us: trade_time_ms * 1000,
            }
        })
        .collect()
}

fn write_all(conn: &mut BatchConn, candles: &[Candle], batch_rows: usize) -> anyhow::Result<()> {
    let mut batch = Batch::new();
    for chunk in candles.chunks(batch_rows.max(1)) {
        batch.clear();
        for c in chunk {
            batch.push_candle(*c);
        }
        conn.write(&batch)?;
    }
    Ok(())
}

/// The baseline: one multi-row upsert statement per `per_statement` rows.
fn baseline(
    client: &mut postgres::Client,
    candles: &[Candle],
    per_statement: usize,
) -> anyhow::Result<()> {
    const COLUMNS: usize = CandleRow::COLUMNS;
    for chunk in candles.chunks(per_statement) {
        let mut sql = format!("INSERT INTO candles AS c ({CANDLE_COLUMNS}) VALUES ");
        push_placeholders(&mut sql, chunk.len(), COLUMNS);
        sql.push(' ');
        sql.push_str(CANDLE_CONFLICT);
        let rows: Vec<CandleRow> = chunk.iter().map(CandleRow::new).collect();
        let params: Vec<&(dyn ToSql + Sync)> = rows.iter().flat_map(|r| r.params()).collect();
        client.execute(sql.as_str(), &params)?;
    }
    Ok(())
}

/// Candles `first..first + n` of a series of distinct closed 1m candles over
/// [`BENCH_SYMBOLS`] symbols named `{prefix}000USDT`…, with realistic 8-decimal prices;
/// `version` shifts the event times (a later version supersedes).
pub fn synthetic(prefix: char, first: usize, n: usize, version: i64) -> Vec<Candle> {
    let symbols: Vec<Symbol> = (0..BENCH_SYMBOLS)
        .filter_map(|i| Symbol::new(&format!("{prefix}{i:03}USDT")).ok())
        .collect();
    let start_ms = 1_700_000_000_000 / 60_000 * 60_000;
    (first..first + n)
        .map(|i| {
            let open_time_ms = start_ms + (i / BENCH_SYMBOLS) as i64 * 60_000;
            let price = Decimal::new(4_325_112_000_000 + (i as i64 % 9973) * 1_000_000, 8);
            Candle {
                symbol: symbols[i % BENCH_SYMBOLS],
                interval: Interval::M1,
                open_time_ms,
                close_time_ms: Interval::M1.close_time(open_time_ms),
                open: price,
                high: price + Decimal::new(150_000_000, 8),
                low: price - Decimal::new(120_000_000, 8),
                close: price + Decimal::new(30_000_000, 8),
                volume: Decimal::new(123_456_789, 5),
                quote_volume: Decimal::new(53_396_123_456_789, 8),
                taker_buy_base: Decimal::new(61_728_394, 5),
                taker_buy_quote: Decimal::new(26_698_061_728_394, 8),
                trades: 1200 + (i as u64 % 500),
                first_trade_id: i as i64 * 2000,
                last_trade_id: i as i64 * 2000 + 1199,
                closed: true,
                event_time_us: (open_time_ms + 60_000) * 1000 + version,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_url_replaces_the_database() {
        assert_eq!(
            scratch_url("postgres://u:p@h:5/app?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(
            scratch_url("postgres://h:5", "x").unwrap(),
            "postgres://h:5/x"
        );
        assert_eq!(
            scratch_url("host=h port=5", "x").unwrap(),
            "host=h port=5 dbname=x"
        );
    }
}
