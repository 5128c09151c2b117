//! `alphapulse history` as a user runs it: the simulator's seeded past paged into a
//! private PostgreSQL, equal to the simulator's klines field by field; an interrupted
//! range resumed; a re-run storing nothing twice; the CSV export; bad use refused.

#[path = "support/postgres.rs"]
mod postgres_support;
#[path = "support/engine.rs"]
mod support;

use std::process::{Command, Output};

use alphapulse::simulator::{self, SimConfig};

/// The simulated market opens at this hour (2026-12-01T08:00:00Z); the range asked for
/// lies in its seeded past.
const START_MS: i64 = 1_796_112_000_000;
const MINUTE_MS: i64 = 60_000;
const SINCE_MS: i64 = START_MS - 300 * MINUTE_MS;

fn history(db_url: Option<&str>, rest_url: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alphapulse"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ALPHAPULSE_LOG", "warn")
        .env("BINANCE_REST_URL", rest_url)
        .current_dir(std::env::temp_dir())
        .arg("history")
        .args(args);
    if let Some(url) = db_url {
        c.env("DATABASE_URL", url);
    }
    c.output().expect("run alphapulse history")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stored closed candles of a series, as the REST klines' fields.
fn stored(pg: &mut postgres::Client, symbol: &str, tf: &str) -> Vec<Vec<String>> {
    pg.query(
        "SELECT (extract(epoch FROM open_time) * 1000)::bigint::text, open::text, high::text, \
         low::text, close::text, volume::text, \
         (extract(epoch FROM close_time) * 1000)::bigint::text, quote_volume::text, \
         trades::text, taker_buy_base::text, taker_buy_quote::text \
         FROM candles WHERE symbol = $1 AND timeframe = $2 AND closed ORDER BY open_time",
        &[&symbol, &tf],
    )
    .expect("read candles")
    .iter()
    .map(|r| (0..11).map(|i| r.get::<_, String>(i)).collect())
    .collect()
}

/// The simulator's klines of `[since, until)`, as text fields.
fn klines(sim: &simulator::SimHandle, symbol: &str, tf: &str, until: i64) -> Vec<Vec<String>> {
    let path = format!(
        "/api/v3/klines?symbol={symbol}&interval={tf}&startTime={SINCE_MS}&endTime={}&limit=1000",
        until - 1
    );
    let rows = support::http_json(support::rest_addr(sim), &path);
    rows.as_array()
        .expect("klines array")
        .iter()
        .map(|row| {
            (0..11)
                .map(|i| match &row[i] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn history_pages_the_exchanges_past_into_the_database_and_exports_it() {
    let sim = simulator::start(SimConfig {
        speed: 1.0,
        history: 1000,
        start_time_ms: Some(START_MS),
        ..support::sim_config(&["BTCUSDT", "ETHUSDT"])
    })
    .expect("simulator");
    let db = postgres_support::Postgres::start_new();
    let url = db.url();
    let rest = sim.rest_url();
    let since = SINCE_MS.to_string();
    let series = ["--symbols", "BTCUSDT,ETHUSDT", "--timeframes", "1m,1h"];

    // Interrupted: the first 100 minutes only.
    let middle = (SINCE_MS + 100 * MINUTE_MS).to_string();
    let first = history(
        Some(&url),
        &rest,
        &[&series[..], &["--since", &since, "--until", &middle]].concat(),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let mut pg = db.client();
    assert_eq!(stored(&mut pg, "BTCUSDT", "1m").len(), 100);

    // The whole range resumes where the first run stopped.
    let until = START_MS.to_string();
    let range = [&series[..], &["--since", &since, "--until", &until]].concat();
    let second = history(Some(&url), &rest, &range);
    let text = stderr(&second);
    assert!(second.status.success(), "{text}");
    assert!(
        text.contains("history: BTCUSDT 1m: 300/300 candles (200 this run), resumed"),
        "{text}"
    );
    assert!(
        text.contains("every series is complete for the range"),
        "{text}"
    );
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        for (tf, n) in [("1m", 300), ("1h", 5)] {
            let have = stored(&mut pg, symbol, tf);
            assert_eq!(have.len(), n, "{symbol} {tf}");
            assert_eq!(
                have,
                klines(&sim, symbol, tf, START_MS),
                "{symbol} {tf}: equal to the exchange's klines"
            );
        }
    }

    // Again: nothing new, nothing doubled.
    let third = history(Some(&url), &rest, &range);
    assert!(
        stderr(&third).contains("300/300 candles (0 this run)"),
        "{}",
        stderr(&third)
    );
    let rows: i64 = pg
        .query_one("SELECT count(*) FROM candles", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 2 * (300 + 5));

    // The export: a header and every stored candle, decimals as stored.
    let btc_1h = [
        "--symbols",
        "BTCUSDT",
        "--timeframes",
        "1h",
        "--since",
        &since,
    ];
    let export = history(
        Some(&url),
        &rest,
        &[&btc_1h[..], &["--export", "csv"]].concat(),
    );
    assert!(export.status.success(), "{}", stderr(&export));
    let csv = String::from_utf8(export.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("symbol,timeframe,open_time,close_time,open,high,low,close,volume,quote_volume,taker_buy_base,taker_buy_quote,trades")
    );
    let exported: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let expected = klines(&sim, "BTCUSDT", "1h", START_MS);
    assert_eq!(exported.len(), expected.len());
    for (e, k) in exported.iter().zip(&expected) {
        assert_eq!((e[0], e[1]), ("BTCUSDT", "1h"));
        // open_time, close_time, open, high, low, close, volume, quote volume, taker
        // buys, trades: in the klines' field order 0, 6, 1..5, 7, 9, 10, 8.
        let from_klines = [0, 6, 1, 2, 3, 4, 5, 7, 9, 10, 8].map(|i| k[i].as_str());
        assert_eq!(&e[2..], &from_klines[..]);
    }

    // Parquet: the same candles, times as timestamps, decimals exact as DECIMAL(38,8).
    let file =
        std::env::temp_dir().join(format!("alphapulse-history-{}.parquet", std::process::id()));
    let out = ["--export", "parquet", "--out", file.to_str().unwrap()];
    let export = history(Some(&url), &rest, &[&btc_1h[..], &out].concat());
    assert!(export.status.success(), "{}", stderr(&export));
    assert_parquet_equals_klines(&file, &expected);
    let _ = std::fs::remove_file(&file);
}

/// Reads the exported Parquet file back and compares it with the klines, field by field.
fn assert_parquet_equals_klines(path: &std::path::Path, klines: &[Vec<String>]) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let reader =
        SerializedFileReader::new(std::fs::File::open(path).unwrap()).expect("a Parquet file");
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(columns.join(","), "symbol,timeframe,open_time,close_time,open,high,low,close,volume,quote_volume,taker_buy_base,taker_buy_quote,trades");
    let rows: Vec<parquet::record::Row> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), klines.len());
    // An exact 8-decimal string as the unscaled integer.
    let unscaled = |s: &str| -> i128 {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        format!("{int}{frac:0<8}").parse().unwrap()
    };
    for (row, k) in rows.iter().zip(klines) {
        assert_eq!(row.get_string(0).unwrap(), "BTCUSDT");
        assert_eq!(row.get_string(1).unwrap(), "1h");
        assert_eq!(row.get_timestamp_millis(2).unwrap().to_string(), k[0]);
        assert_eq!(row.get_timestamp_millis(3).unwrap().to_string(), k[6]);
        for (column, field) in [
            (4, 1),
            (5, 2),
            (6, 3),
            (7, 4),
            (8, 5),
            (9, 7),
            (10, 9),
            (11, 10),
        ] {
            let d = row.get_decimal(column).unwrap();
            assert_eq!((d.precision(), d.scale()), (38, 8));
            let value = i128::from_be_bytes(d.data().try_into().unwrap());
            assert_eq!(value, unscaled(&k[field]), "column {column}");
        }
        assert_eq!(row.get_long(12).unwrap().to_string(), k[8]);
    }
}

#[test]
fn history_refuses_bad_use_with_exit_2() {
    let no_db = history(None, "http://127.0.0.1:9", &["--since", "2024-01-01"]);
    assert_eq!(no_db.status.code(), Some(2), "{}", stderr(&no_db));
    assert!(
        stderr(&no_db).contains("DATABASE_URL is not set"),
        "{}",
        stderr(&no_db)
    );
    let bad_date = history(
        Some("postgres://127.0.0.1:9/x"),
        "http://127.0.0.1:9",
        &["--since", "yesterday"],
    );
    assert_eq!(bad_date.status.code(), Some(2), "{}", stderr(&bad_date));
    assert!(
        stderr(&bad_date).contains("expected YYYY-MM-DD"),
        "{}",
        stderr(&bad_date)
    );
    let backwards = history(
        Some("postgres://127.0.0.1:9/x"),
        "http://127.0.0.1:9",
        &["--since", "2024-02-01", "--until", "2024-01-01"],
    );
    assert_eq!(backwards.status.code(), Some(2), "{}", stderr(&backwards));
}
