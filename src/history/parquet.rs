//! `history --export parquet`: stored candles as an Apache Parquet file for research
//! tools (pandas, polars, DuckDB, Spark).
//!
//! Columns: `symbol`, `timeframe` (strings), `open_time`, `close_time` (UTC timestamps in
//! milliseconds), the eight prices and quantities as DECIMAL(38,8) (16-byte big-endian,
//! exact: Binance sends 8 decimals, and a stored value with more stops the export rather
//! than being rounded), `trades` (int64). Rows are streamed from the database into row
//! groups of [`ROW_GROUP`] candles, so a large range never sits in memory whole.

use std::io::Write;
use std::sync::Arc;

use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::market::{Decimal, Interval, Symbol};
use crate::sinks::db::history::{each_stored, StoredCandle};

/// Candles per row group.
pub const ROW_GROUP: usize = 65_536;
/// Decimal places of the DECIMAL columns.
pub const SCALE: u32 = 8;

const SCHEMA: &str = "message candle {
    required binary symbol (STRING);
    required binary timeframe (STRING);
    required int64 open_time (TIMESTAMP(MILLIS, true));
    required int64 close_time (TIMESTAMP(MILLIS, true));
    required fixed_len_byte_array(16) open (DECIMAL(38, 8));
    required fixed_len_byte_array(16) high (DECIMAL(38, 8));
    required fixed_len_byte_array(16) low (DECIMAL(38, 8));
    required fixed_len_byte_array(16) close (DECIMAL(38, 8));
    required fixed_len_byte_array(16) volume (DECIMAL(38, 8));
    required fixed_len_byte_array(16) quote_volume (DECIMAL(38, 8));
    required fixed_len_byte_array(16) taker_buy_base (DECIMAL(38, 8));
    required fixed_len_byte_array(16) taker_buy_quote (DECIMAL(38, 8));
    required int64 trades;
}";

/// `text` as the unscaled integer of a DECIMAL(38, [`SCALE`]): exact, or why not.
pub fn unscaled(text: &str) -> Result<i128, String> {
    let d: Decimal = text.parse().map_err(|e| format!("'{text}': {e}"))?;
    if d.scale() > SCALE {
        return Err(format!("'{text}' has more than {SCALE} decimals"));
    }
    Ok(d.mantissa() * 10i128.pow(SCALE - d.scale()))
}

/// The columns of one row group, filled row by row.
#[derive(Default)]
struct Columns {
    symbol: Vec<ByteArray>,
    timeframe: Vec<ByteArray>,
    open_time: Vec<i64>,
    close_time: Vec<i64>,
    decimals: [Vec<FixedLenByteArray>; 8],
    trades: Vec<i64>,
}

impl Columns {
    fn push(&mut self, c: &StoredCandle) -> Result<(), String> {
        for (column, text) in self.decimals.iter_mut().zip(&c.decimals) {
            column.push(FixedLenByteArray::from(
                unscaled(text)?.to_be_bytes().to_vec(),
            ));
        }
        self.symbol
            .push(ByteArray::from(c.symbol.as_bytes().to_vec()));
        self.timeframe
            .push(ByteArray::from(c.timeframe.as_bytes().to_vec()));
        self.open_time.push(c.open_time_ms);
        self.close_time.push(c.close_time_ms);
        self.trades.push(c.trades);
        Ok(())
    }

    fn len(&self) -> usize {
        self.trades.len()
    }

    /// Writes the rows as one row group and empties the columns.
    fn flush<W: Write + Send>(
        &mut self,
        file: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let mut group = file.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 | 1 => {
                    let values = if index == 0 {
                        &self.symbol
                    } else {
                        &self.timeframe
                    };
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(values, None, None)?;
                }
                2 | 3 | 12 => {
                    let values = match index {
                        2 => &self.open_time,
                        3 => &self.close_time,
                        _ => &self.trades,
                    };
                    column
                        .typed::<Int64Type>()
                        .write_batch(values, None, None)?;
                }
                i => {
                    column.typed::<FixedLenByteArrayType>().write_batch(
                        &self.decimals[i - 4],
                        None,
                        None,
                    )?;
                }
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
        *self = Columns::default();
        Ok(())
    }
}

/// Streams the stored candles of `symbols` × `intervals` in `[since, until)` into a
/// Parquet file written to `sink`.
pub fn export(
    client: &mut postgres::Client,
    symbols: &[Symbol],
    intervals: &[Interval],
    (since, until): (i64, i64),
    sink: Box<dyn Write + Send>,
) -> Result<(), String> {
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(|e| e.to_string())?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by("alphapulse".into())
            .build(),
    );
    let mut file = SerializedFileWriter::new(std::io::BufWriter::new(sink), schema, props)
        .map_err(|e| e.to_string())?;
    let mut columns = Columns::default();
    let mut failed = None;
    let n = each_stored(client, symbols, intervals, since, until, |c| {
        columns.push(c).map_err(|why| {
            failed = Some(why.clone());
            std::io::Error::other(why)
        })?;
        if columns.len() >= ROW_GROUP {
            columns.flush(&mut file).map_err(std::io::Error::other)?;
        }
        Ok(())
    })
    .map_err(|e| failed.take().unwrap_or_else(|| e.to_string()))?;
    columns.flush(&mut file).map_err(|e| e.to_string())?;
    file.close().map_err(|e| e.to_string())?;
    eprintln!("history: exported {n} candles");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_unscaled_integers() {
        assert_eq!(unscaled("59165.47000000"), Ok(5_916_547_000_000));
        assert_eq!(unscaled("0.00000001"), Ok(1));
        assert_eq!(unscaled("12"), Ok(1_200_000_000));
        assert_eq!(unscaled("-1.5"), Ok(-150_000_000));
        assert!(
            unscaled("0.000000001").is_err(),
            "a ninth decimal is not rounded away"
        );
        assert!(unscaled("abc").is_err());
    }
}
