-- TimescaleDB, where the server offers it: both tables become hypertables with
-- compression segmented by series and ordered by time. On plain PostgreSQL this block
-- does nothing (the engine logs that TimescaleDB features are off), and the tables of
-- V1 stay ordinary indexed tables. The compression and retention *policies* depend on
-- configuration, so the engine applies them after the migrations
-- (`sinks::db::schema::apply_policies`).
--
-- Chunk intervals: a candle row is ~200 bytes; 1000 symbols x 4 timeframes make about
-- 1.6 M rows a day, so 7-day chunks hold ~2 GB uncompressed, within the usual advice
-- that a chunk's indexes fit in a quarter of memory. Signals are far rarer (a few per
-- closed candle at most), so 30-day chunks keep the chunk count small.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('candles', 'open_time',
            chunk_time_interval => INTERVAL '7 days',
            if_not_exists => TRUE, migrate_data => TRUE,
            create_default_indexes => FALSE);
        PERFORM create_hypertable('signals', 'timestamp',
            chunk_time_interval => INTERVAL '30 days',
            if_not_exists => TRUE, migrate_data => TRUE,
            create_default_indexes => FALSE);
        EXECUTE 'ALTER TABLE candles SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''symbol, timeframe'', '
             || 'timescaledb.compress_orderby = ''open_time DESC'')';
        EXECUTE 'ALTER TABLE signals SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''symbol, timeframe'', '
             || 'timescaledb.compress_orderby = ''"timestamp" DESC'')';
    END IF;
END
$$;
