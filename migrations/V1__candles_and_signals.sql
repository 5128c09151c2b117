-- Closed (and, when configured, in-progress) candles: one row per
-- (symbol, timeframe, open_time). Prices and quantities are exact `numeric`, written
-- from the decimal strings Binance sends; times are `timestamptz` (the JSON records
-- carry the same instants as milliseconds).
CREATE TABLE IF NOT EXISTS candles (
    symbol          text        NOT NULL,
    timeframe       text        NOT NULL,
    open_time       timestamptz NOT NULL,
    close_time      timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    taker_buy_base  numeric     NOT NULL,
    taker_buy_quote numeric     NOT NULL,
    trades          bigint      NOT NULL,
    closed          boolean     NOT NULL,
    event_time      timestamptz NOT NULL,
    PRIMARY KEY (symbol, timeframe, open_time)
);

-- The primary key serves "newest candles of one series"; this index serves time
-- ranges across every series (TimescaleDB creates the same one on a hypertable).
CREATE INDEX IF NOT EXISTS candles_open_time_idx ON candles (open_time DESC);

-- Signals: inserted once per (symbol, timeframe, kind, timestamp); `timestamp` is the
-- close time of the candle the rule fired on.
CREATE TABLE IF NOT EXISTS signals (
    "timestamp" timestamptz      NOT NULL,
    symbol      text             NOT NULL,
    timeframe   text             NOT NULL,
    kind        text             NOT NULL,
    direction   text             NOT NULL CHECK (direction IN ('buy', 'sell')),
    confidence  double precision NOT NULL,
    price       numeric          NOT NULL,
    indicators  jsonb            NOT NULL,
    event_time  timestamptz      NOT NULL,
    PRIMARY KEY (symbol, timeframe, kind, "timestamp")
);

-- Serves "signals of the last hour" and the newest-first API listing.
CREATE INDEX IF NOT EXISTS signals_timestamp_idx ON signals ("timestamp" DESC);
