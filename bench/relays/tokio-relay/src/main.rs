//! tokio-relay: the relay a Rust developer would write in an afternoon, as a baseline for
//! the AlphaPulse comparison (`bench/relays/README.md`).
//!
//! One upstream WebSocket to a Binance combined-stream endpoint; every kline event is
//! decoded with typed serde structs, turned into the engine's candle record JSON and sent
//! on a tokio `broadcast` channel; one task per client of our own WebSocket server on
//! `/ws` forwards every record and keeps reading the client's frames (pings, closes,
//! `{"type":"subscribe",...}` commands, which are acknowledged).
//!
//! ```text
//! tokio-relay --upstream 'ws://127.0.0.1:9443/stream?streams=btcusdt@kline_1m&timeUnit=MICROSECOND' \
//!             --listen 127.0.0.1:8001
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(about = "Binance kline stream -> candle records -> WebSocket clients on /ws")]
struct Args {
    /// Binance combined-stream URL, e.g.
    /// ws://HOST:PORT/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m&timeUnit=MICROSECOND
    /// (with `timeUnit=MICROSECOND` the event times are read as microseconds).
    #[arg(long)]
    upstream: String,
    /// Address of our WebSocket server (clients connect to ws://ADDR/ws).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Capacity of the broadcast channel (records a slow client may fall behind).
    #[arg(long, default_value_t = 4096)]
    capacity: usize,
}

/// `{"stream":"btcusdt@kline_1m","data":{...}}`
#[derive(Deserialize, Debug)]
struct CombinedEvent {
    #[allow(dead_code)]
    stream: String,
    data: KlineEvent,
}

#[derive(Deserialize, Debug)]
struct KlineEvent {
    #[serde(rename = "e")]
    event_type: String,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "s")]
    #[allow(dead_code)]
    symbol: String,
    #[serde(rename = "k")]
    kline: Kline,
}

#[derive(Deserialize, Debug)]
struct Kline {
    #[serde(rename = "t")]
    open_time: i64,
    #[serde(rename = "T")]
    close_time: i64,
    #[serde(rename = "s")]
    symbol: String,
    #[serde(rename = "i")]
    interval: String,
    #[serde(rename = "f")]
    #[allow(dead_code)]
    first_trade_id: i64,
    #[serde(rename = "L")]
    #[allow(dead_code)]
    last_trade_id: i64,
    #[serde(rename = "o")]
    open: String,
    #[serde(rename = "c")]
    close: String,
    #[serde(rename = "h")]
    high: String,
    #[serde(rename = "l")]
    low: String,
    #[serde(rename = "v")]
    volume: String,
    #[serde(rename = "n")]
    trades: u64,
    #[serde(rename = "x")]
    closed: bool,
    #[serde(rename = "q")]
    quote_volume: String,
    #[serde(rename = "V")]
    taker_buy_base: String,
    #[serde(rename = "Q")]
    taker_buy_quote: String,
}

/// The engine's `type:"candle"` record: decimals as received, times in milliseconds.
#[derive(Serialize, Debug)]
struct CandleRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    symbol: String,
    timeframe: String,
    open_time: i64,
    close_time: i64,
    open: String,
    high: String,
    low: String,
    close: String,
    volume: String,
    quote_volume: String,
    taker_buy_base: String,
    taker_buy_quote: String,
    trades: u64,
    closed: bool,
    event_time: i64,
}

impl CandleRecord {
    /// `unit`: 1000 when the upstream sends microseconds, 1 for milliseconds.
    fn from_event(ev: KlineEvent, unit: i64) -> CandleRecord {
        let k = ev.kline;
        CandleRecord {
            kind: "candle",
            symbol: k.symbol,
            timeframe: k.interval,
            open_time: k.open_time / unit,
            close_time: k.close_time / unit,
            open: k.open,
            high: k.high,
            low: k.low,
            close: k.close,
            volume: k.volume,
            quote_volume: k.quote_volume,
            taker_buy_base: k.taker_buy_base,
            taker_buy_quote: k.taker_buy_quote,
            trades: k.trades,
            closed: k.closed,
            event_time: ev.event_time / unit,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let unit = if args
        .upstream
        .to_ascii_lowercase()
        .contains("timeunit=microsecond")
    {
        1000
    } else {
        1
    };
    let (tx, _) = broadcast::channel::<String>(args.capacity);

    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("listening on ws://{}/ws", listener.local_addr()?);
    tokio::spawn(upstream(args.upstream.clone(), unit, tx.clone()));

    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let rx = tx.subscribe();
        tokio::spawn(async move {
            if let Err(e) = client(stream, rx).await {
                eprintln!("client {peer}: {e}");
            }
        });
    }
}

/// Reads the upstream for ever, reconnecting with a capped backoff.
async fn upstream(url: String, unit: i64, tx: broadcast::Sender<String>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
            Ok((ws, _)) => {
                eprintln!("upstream connected");
                backoff = Duration::from_millis(250);
                let (_write, mut read) = ws.split();
                while let Some(msg) = read.next().await {
                    match msg {
                        Ok(Message::Text(text)) => {
                            match serde_json::from_str::<CombinedEvent>(&text) {
                                Ok(ev) if ev.data.event_type == "kline" => {
                                    let record = CandleRecord::from_event(ev.data, unit);
                                    match serde_json::to_string(&record) {
                                        // No receivers is not an error for a relay.
                                        Ok(json) => {
                                            let _ = tx.send(json);
                                        }
                                        Err(e) => eprintln!("serialize: {e}"),
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => eprintln!("upstream frame skipped: {e}"),
                            }
                        }
                        Ok(Message::Close(frame)) => {
                            eprintln!("upstream closed: {frame:?}");
                            break;
                        }
                        // Pings are answered by tungstenite itself.
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("upstream error: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => eprintln!("upstream connect failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One client: forwards every record and reads the client's frames.
async fn client(
    stream: TcpStream,
    mut rx: broadcast::Receiver<String>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let only_ws = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/ws" {
            Ok(resp)
        } else {
            let mut err = ErrorResponse::new(Some("not found: use /ws".to_string()));
            *err.status_mut() = StatusCode::NOT_FOUND;
            Err(err)
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, only_ws).await?;
    let (mut sink, mut frames) = ws.split();
    loop {
        tokio::select! {
            record = rx.recv() => match record {
                Ok(json) => sink.send(Message::text(json)).await?,
                Err(RecvError::Lagged(n)) => eprintln!("client lagged: {n} records skipped"),
                Err(RecvError::Closed) => break,
            },
            frame = frames.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = command_reply(&text) {
                        sink.send(Message::text(reply)).await?;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

/// Acknowledges `subscribe` / `unsubscribe` (every client gets every candle anyway).
fn command_reply(text: &str) -> Option<String> {
    let cmd: serde_json::Value = serde_json::from_str(text).ok()?;
    let kind = match cmd.get("type")?.as_str()? {
        "subscribe" => "subscribed",
        "unsubscribe" => "unsubscribed",
        _ => return None,
    };
    let field = |name: &str| cmd.get(name).cloned().unwrap_or(serde_json::Value::Null);
    Some(
        serde_json::json!({
            "type": kind,
            "subscription": field("subscription"),
            "symbol": field("symbol"),
            "timeframe": field("timeframe"),
        })
        .to_string(),
    )
}
