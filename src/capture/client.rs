//! The capture's blocking WebSocket connection: connect (TCP, the feed's TLS, the
//! handshake), then read frames into the writer until the connection ends or the
//! capture stops.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls;
use rustls::pki_types::ServerName;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::format::Kind;
use super::writer::{WriteError, Writer};
use crate::feed::connection::Endpoint;

/// Longest a TCP connect, a TLS handshake and the WebSocket upgrade may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a write (a pong, the close) may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the closing handshake may take at a stop.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where and how to connect.
pub struct Target<'a> {
    pub endpoint: &'a Endpoint,
    pub url: &'a str,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_frame_bytes: usize,
    /// A connection without any frame (data or ping) for this long is reopened.
    pub silence: Duration,
    pub read_poll: Duration,
}

/// Plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Opens the connection; the error is one line for the log and the marker.
pub fn connect(target: &Target) -> Result<WebSocket<Stream>, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let host = &target.endpoint.host;
    let addrs = (host.as_str(), target.endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let setup = |e: io::Error| format!("socket setup: {e}");
    tcp.set_nodelay(true).map_err(setup)?;
    tcp.set_read_timeout(Some(target.read_poll))
        .map_err(setup)?;
    tcp.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(setup)?;
    let stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host} cannot be checked against a certificate: {e}"))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("TLS setup: {e}"))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(target.max_frame_bytes))
        .max_frame_size(Some(target.max_frame_bytes));
    let mut attempt = tungstenite::client::client_with_config(target.url, stream, Some(config));
    loop {
        match attempt {
            Ok((ws, _)) => return Ok(ws),
            Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                attempt = mid.handshake();
            }
            Err(HandshakeError::Interrupted(_)) => {
                return Err(format!("no handshake within {CONNECT_TIMEOUT:?}"))
            }
            Err(HandshakeError::Failure(e)) => return Err(format!("handshake: {e}")),
        }
    }
}

/// Why a session ended.
pub enum End {
    Stopped,
    Closed(String),
    Silent(Duration),
    Failed(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Stopped => write!(f, "stopped"),
            End::Closed(why) => write!(f, "closed by the server: {why}"),
            End::Silent(d) => write!(f, "silent for {d:?}"),
            End::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// Counts for the periodic progress line.
pub struct Progress {
    every: Duration,
    next: Instant,
    frames: u64,
}

impl Progress {
    pub fn new(started: Instant, every: Duration) -> Progress {
        Progress {
            every,
            next: started + every,
            frames: 0,
        }
    }

    fn tick(&mut self, writer: &Writer) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let m = writer.manifest();
        tracing::info!(
            frames = self.frames,
            files = m.files.len(),
            bytes_on_disk = m.bytes(),
            reconnects = m.reconnects,
            "capturing"
        );
    }
}

/// Reads frames into `writer` until the connection ends or `stopping` says so.
pub fn session(
    ws: &mut WebSocket<Stream>,
    writer: &mut Writer,
    target: &Target,
    stopping: &dyn Fn() -> bool,
    progress: &mut Progress,
    snapshots: &mut super::snapshots::DepthSnapshots,
) -> Result<End, WriteError> {
    let mut heard = Instant::now();
    loop {
        if stopping() {
            close(ws);
            return Ok(End::Stopped);
        }
        let read = ws.read();
        let at = super::now();
        match read {
            Ok(Message::Text(text)) => {
                heard = Instant::now();
                progress.frames += 1;
                writer.record(Kind::Frame, at, text.as_bytes())?;
                snapshots.after_frame(&text, writer)?;
                // A busy feed never times out a read: report from here too.
                progress.tick(writer);
            }
            Ok(Message::Binary(bytes)) => {
                heard = Instant::now();
                let note = serde_json::json!({"event": "binary_frame", "bytes": bytes.len()});
                writer.record(Kind::Marker, at, note.to_string().as_bytes())?;
            }
            Ok(Message::Ping(_)) => {
                heard = Instant::now();
                // The pong is queued by the read; send it now, not with the next read.
                if let Err(e) = ws.flush() {
                    return Ok(End::Failed(format!("cannot send a pong: {e}")));
                }
            }
            Ok(Message::Pong(_) | Message::Frame(_)) => heard = Instant::now(),
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "no reason".to_string(),
                    |f| format!("{} {}", f.code, f.reason),
                );
                return Ok(End::Closed(why));
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                writer.tick(at)?;
                progress.tick(writer);
                if heard.elapsed() >= target.silence {
                    return Ok(End::Silent(heard.elapsed()));
                }
            }
            Err(e) => return Ok(End::Failed(e.to_string())),
        }
    }
}

/// Sends a close frame and waits briefly for the server's, as RFC 6455 asks.
fn close(ws: &mut WebSocket<Stream>) {
    if ws.close(None).is_err() {
        return;
    }
    let until = Instant::now() + CLOSE_GRACE;
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
