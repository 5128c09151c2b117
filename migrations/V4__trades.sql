-- Trades (`@trade`) and aggregate trades (`@aggTrade`, and REST `aggTrades` backfill),
-- one row per exchange id, prices and quantities exact as received. Written by the
-- writer like candles: binary COPY into a staging table, then
-- `INSERT … ON CONFLICT DO NOTHING`, so a replayed or backfilled trade never doubles.
CREATE TABLE IF NOT EXISTS trades (
    symbol         text        NOT NULL,
    trade_id       bigint      NOT NULL,
    price          numeric     NOT NULL,
    quantity       numeric     NOT NULL,
    trade_time     timestamptz NOT NULL,
    buyer_is_maker boolean     NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);

CREATE TABLE IF NOT EXISTS agg_trades (
    symbol         text        NOT NULL,
    agg_trade_id   bigint      NOT NULL,
    price          numeric     NOT NULL,
    quantity       numeric     NOT NULL,
    first_trade_id bigint      NOT NULL,
    last_trade_id  bigint      NOT NULL CHECK (last_trade_id >= first_trade_id),
    trade_time     timestamptz NOT NULL,
    buyer_is_maker boolean     NOT NULL,
    PRIMARY KEY (symbol, agg_trade_id)
);

CREATE INDEX IF NOT EXISTS trades_trade_time_idx ON trades (trade_time DESC);
CREATE INDEX IF NOT EXISTS agg_trades_trade_time_idx ON agg_trades (trade_time DESC);

-- TimescaleDB, where the server has it (as V2): hypertables on the trade time, 1-day
-- chunks (a busy symbol trades millions of times a day), compressed by symbol. A
-- hypertable's unique keys must hold its time column, so there the key becomes
-- (symbol, id, trade_time): an id's trade time never changes, so it is as unique as
-- (symbol, id), and the idempotent insert still finds the stored row.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        ALTER TABLE trades DROP CONSTRAINT trades_pkey;
        ALTER TABLE trades ADD PRIMARY KEY (symbol, trade_id, trade_time);
        ALTER TABLE agg_trades DROP CONSTRAINT agg_trades_pkey;
        ALTER TABLE agg_trades ADD PRIMARY KEY (symbol, agg_trade_id, trade_time);
        PERFORM create_hypertable('trades', 'trade_time',
            chunk_time_interval => INTERVAL '1 day',
            if_not_exists => TRUE, migrate_data => TRUE,
            create_default_indexes => FALSE);
        PERFORM create_hypertable('agg_trades', 'trade_time',
            chunk_time_interval => INTERVAL '1 day',
            if_not_exists => TRUE, migrate_data => TRUE,
            create_default_indexes => FALSE);
        EXECUTE 'ALTER TABLE trades SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''symbol'', '
             || 'timescaledb.compress_orderby = ''trade_time DESC, trade_id DESC'')';
        EXECUTE 'ALTER TABLE agg_trades SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''symbol'', '
             || 'timescaledb.compress_orderby = ''trade_time DESC, agg_trade_id DESC'')';
    END IF;
END
$$;
