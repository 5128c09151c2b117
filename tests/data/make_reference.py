#!/usr/bin/env python3
"""Reference indicator values for tests/signals.rs, computed with TA-Lib, independently
of the Rust code.

    pip install TA-Lib numpy          # the TA-Lib wheels bundle its C library
    python3 tests/data/make_reference.py            # rewrites indicators_reference.csv
    python3 tests/data/make_reference.py --candles  # also regenerates candles.csv

candles.csv is a fixed, realistic series: 500 hourly BTCUSDT-like candles from a seeded
random walk with volatility clusters, trend spells and occasional volume bursts, prices
to 2 decimals and volumes to 5, as Binance sends them. It is committed, so the reference
values do not depend on this generator.

Definitions (TA-Lib defaults, no unstable period): SMA; EMA seeded with the SMA of its
first N values, alpha = 2/(N+1); RSI and ATR with Wilder's smoothing seeded by the simple
average of the first N changes / true ranges; Bollinger 20 periods, 2 population standard
deviations. MACD is EMA(12) - EMA(26) of closes with each EMA seeded on its own, and its
signal line EMA(9) of the MACD line: TA-Lib's own MACD function instead seeds the fast EMA
late (at the slow EMA's first value), a TA-Lib peculiarity, so the reference builds MACD
from TA-Lib's EMA.
"""
import csv
import math
import os
import random
import sys

import numpy as np
import talib

HERE = os.path.dirname(os.path.abspath(__file__))
CANDLES = os.path.join(HERE, "candles.csv")
REFERENCE = os.path.join(HERE, "indicators_reference.csv")
N = 500
HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make_candles():
    rng = random.Random(20240101)
    price = 42_000.0
    vol = 0.006
    drift = 0.0
    rows = []
    for i in range(N):
        # Volatility clusters and trend spells, so every rule has something to find.
        vol = min(0.03, max(0.002, vol * math.exp(rng.gauss(0, 0.15))))
        if rng.random() < 0.04:
            drift = rng.gauss(0, 0.004)
        o = price
        c = o * math.exp(drift + rng.gauss(0, vol))
        h = max(o, c) * math.exp(abs(rng.gauss(0, vol / 2)))
        l = min(o, c) * math.exp(-abs(rng.gauss(0, vol / 2)))
        v = rng.lognormvariate(math.log(850), 0.35)
        if rng.random() < 0.03:
            v *= rng.uniform(3.5, 6.0)
        rows.append([START_MS + i * HOUR_MS, f"{o:.2f}", f"{h:.2f}", f"{l:.2f}", f"{c:.2f}", f"{v:.5f}"])
        price = float(f"{c:.2f}")
    # Opens are the previous close as printed, so high/low still bound open and close.
    for r in rows:
        o, h, l, c = (float(x) for x in r[1:5])
        r[2] = f"{max(h, o, c):.2f}"
        r[3] = f"{min(l, o, c):.2f}"
    with open(CANDLES, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["open_time", "open", "high", "low", "close", "volume"])
        w.writerows(rows)


def ema_of_line(line, n):
    """TA-Lib EMA of a series with a NaN prefix (the wrapper starts after it)."""
    out = np.full(len(line), np.nan)
    first = int(np.argmax(~np.isnan(line)))
    out[first:] = talib.EMA(line[first:], timeperiod=n)
    return out


def main():
    if "--candles" in sys.argv or not os.path.exists(CANDLES):
        make_candles()
    with open(CANDLES) as f:
        rows = list(csv.DictReader(f))
    col = lambda k: np.array([float(r[k]) for r in rows])
    high, low, close, volume = col("high"), col("low"), col("close"), col("volume")
    ema12 = talib.EMA(close, timeperiod=12)
    ema26 = talib.EMA(close, timeperiod=26)
    macd = ema12 - ema26
    signal = ema_of_line(macd, 9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    out = {
        "sma20": talib.SMA(close, timeperiod=20),
        "ema9": talib.EMA(close, timeperiod=9),
        "ema21": talib.EMA(close, timeperiod=21),
        "rsi14": talib.RSI(close, timeperiod=14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr14": talib.ATR(high, low, close, timeperiod=14),
        "volume_sma20": talib.SMA(volume, timeperiod=20),
    }
    with open(REFERENCE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["open_time"] + list(out))
        for i, r in enumerate(rows):
            # repr: the shortest text that reads back as the same double.
            w.writerow([r["open_time"]] + ["" if math.isnan(v[i]) else repr(float(v[i])) for v in out.values()])


if __name__ == "__main__":
    main()
