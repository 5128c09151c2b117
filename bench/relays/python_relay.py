#!/usr/bin/env python3
"""python_relay: a straightforward Python asyncio relay, as a baseline for the AlphaPulse
comparison (bench/relays/README.md).

One upstream WebSocket to a Binance combined-stream endpoint; every kline event is decoded
with orjson, turned into the engine's candle record JSON and sent at once (no batching) to
every client of our own WebSocket server on /ws with websockets' broadcast(). Each
client's handler keeps reading its frames (pings and closes are handled by websockets;
{"type":"subscribe",...} commands are acknowledged). Runs on uvloop.

    python_relay.py --upstream 'ws://127.0.0.1:9443/stream?streams=btcusdt@kline_1m&timeUnit=MICROSECOND' \\
                    --listen 127.0.0.1:8002

Requirements (pinned): requirements.txt beside this file.
"""

import argparse
import asyncio
import sys

import orjson
import uvloop
from websockets.asyncio.client import connect
from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

CLIENTS = set()


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def candle_record(data, unit):
    """The engine's type:"candle" record: decimals as received, times in ms."""
    k = data["k"]
    return {
        "type": "candle",
        "symbol": k["s"],
        "timeframe": k["i"],
        "open_time": k["t"] // unit,
        "close_time": k["T"] // unit,
        "open": k["o"],
        "high": k["h"],
        "low": k["l"],
        "close": k["c"],
        "volume": k["v"],
        "quote_volume": k["q"],
        "taker_buy_base": k["V"],
        "taker_buy_quote": k["Q"],
        "trades": k["n"],
        "closed": k["x"],
        "event_time": data["E"] // unit,
    }


async def upstream(url, unit):
    """Reads the upstream for ever, reconnecting with a capped backoff."""
    backoff = 0.25
    while True:
        try:
            # No permessage-deflate: neither the exchange simulator nor the measuring
            # client uses it, and saying so keeps the handshake plain.
            async with connect(url, compression=None, max_size=None) as ws:
                log("upstream connected")
                backoff = 0.25
                async for frame in ws:
                    try:
                        msg = orjson.loads(frame)
                        data = msg["data"]
                        if data.get("e") != "kline":
                            continue
                        record = orjson.dumps(candle_record(data, unit))
                    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                        log(f"upstream frame skipped: {e!r}")
                        continue
                    if CLIENTS:
                        broadcast(CLIENTS, record, text=True)
        except (OSError, ConnectionClosed, asyncio.TimeoutError) as e:
            log(f"upstream lost: {e!r}")
        except Exception as e:  # handshake refused and the like: keep retrying
            log(f"upstream error: {e!r}")
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


def command_reply(text):
    """Acknowledges subscribe / unsubscribe (every client gets every candle anyway)."""
    try:
        cmd = orjson.loads(text)
        kind = {"subscribe": "subscribed", "unsubscribe": "unsubscribed"}[cmd["type"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return orjson.dumps(
        {
            "type": kind,
            "subscription": cmd.get("subscription"),
            "symbol": cmd.get("symbol"),
            "timeframe": cmd.get("timeframe"),
        }
    )


async def client(ws):
    CLIENTS.add(ws)
    try:
        async for frame in ws:
            reply = command_reply(frame)
            if reply is not None:
                await ws.send(reply, text=True)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


def only_ws(connection, request):
    if request.path != "/ws":
        return connection.respond(404, "not found: use /ws\n")
    return None


async def main():
    parser = argparse.ArgumentParser(
        description="Binance kline stream -> candle records -> WebSocket clients on /ws"
    )
    parser.add_argument(
        "--upstream",
        required=True,
        help="Binance combined-stream URL, e.g. ws://HOST:PORT/stream?streams="
        "btcusdt@kline_1m/ethusdt@kline_1m&timeUnit=MICROSECOND (with "
        "timeUnit=MICROSECOND the event times are read as microseconds)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8002",
        help="address of our WebSocket server (clients connect to ws://ADDR/ws)",
    )
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    unit = 1000 if "timeunit=microsecond" in args.upstream.lower() else 1

    async with serve(
        client,
        host.strip("[]"),
        int(port),
        process_request=only_ws,
        compression=None,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()
        log(f"listening on ws://{bound[0]}:{bound[1]}/ws")
        await upstream(args.upstream, unit)


if __name__ == "__main__":
    try:
        uvloop.run(main())
    except KeyboardInterrupt:
        pass
