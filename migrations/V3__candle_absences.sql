-- Spans of open times the exchange confirmed it has no candles for: the backfill asked
-- `GET /api/v3/klines` for them and got none (a halted market, a delisting, candles
-- older than the exchange keeps). Recorded once, never asked again; completeness does
-- not count them as missing. `to_open_time` is exclusive.
CREATE TABLE IF NOT EXISTS candle_absences (
    symbol         text        NOT NULL,
    timeframe      text        NOT NULL,
    from_open_time timestamptz NOT NULL,
    to_open_time   timestamptz NOT NULL CHECK (to_open_time > from_open_time),
    candles        bigint      NOT NULL,
    confirmed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, from_open_time)
);
