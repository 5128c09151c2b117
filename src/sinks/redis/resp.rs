//! RESP2, the Redis wire protocol: command encoding, reply parsing and the socket.
//!
//! Runs on: whichever thread owns the connection (the publisher or the bridge). The
//! encoder and parser are pure functions over byte buffers; only [`Conn`] touches a
//! socket. Written here rather than taken from the `redis` crate so that a pipeline is
//! one reused buffer (no allocation per command) and every blocking call has a timeout
//! that we choose. `rediss://` speaks TLS through the process's one rustls (`crate::tls`
//! loads the certificates), on the same blocking socket and timeouts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls;
use rustls::pki_types::ServerName;

use crate::digits::push_usize;

/// Largest reply or pushed message accepted. Records are well under 2 KiB; anything far
/// larger is not ours and would only grow the read buffer.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Deepest nesting of arrays accepted in a reply (pub/sub messages are flat).
const MAX_DEPTH: usize = 4;

/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("malformed reply from Redis: {0}")]
    Protocol(&'static str),
    #[error("Redis answered with an error: {0}")]
    Server(String),
    #[error("Redis closed the connection")]
    Closed,
    #[error("Redis did not answer within {0:?} (hung?)")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("REDIS_URL: {0}")]
    Url(String),
    #[error("TLS with Redis: {0}")]
    Tls(String),
}

/// Appends `*n\r\n` (an array header).
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_usize(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_usize(out, arg.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole command.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Appends `PUBLISH channel payload` where the channel is given in parts (so that
/// `prefix:candles:SYMBOL:TF` is never built as a string of its own).
pub fn publish(out: &mut Vec<u8>, channel: &[&[u8]], payload: &[u8]) {
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$");
    push_usize(out, channel.iter().map(|p| p.len()).sum());
    out.extend_from_slice(b"\r\n");
    for part in channel {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
    bulk(out, payload);
}

/// One parsed RESP2 value, borrowing from the read buffer.
#[derive(Debug, PartialEq)]
pub enum Value<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Value<'a>>>),
}

/// Parses one value from the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the value and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Value<'_>, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[from..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], from + i + 2))),
        None if rest.len() > MAX_FRAME_BYTES => Err(RespError::Protocol("line too long")),
        None => Ok(None),
    }
}

fn int(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("bad integer"))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value<'_>, usize)>, RespError> {
    if at >= buf.len() {
        return Ok(None);
    }
    let Some((head, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match buf[at] {
        b'+' => Ok(Some((Value::Simple(head), next))),
        b'-' => Ok(Some((Value::Error(head), next))),
        b':' => Ok(Some((Value::Int(int(head)?), next))),
        b'$' => {
            let n = int(head)?;
            if n < 0 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let n = n as usize;
            if n > MAX_FRAME_BYTES {
                return Err(RespError::Protocol("bulk string too large"));
            }
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(RespError::Protocol("bulk string not terminated"));
            }
            Ok(Some((
                Value::Bulk(Some(&buf[next..next + n])),
                next + n + 2,
            )))
        }
        b'*' => {
            let n = int(head)?;
            if n < 0 {
                return Ok(Some((Value::Array(None), next)));
            }
            if depth >= MAX_DEPTH || n as usize > MAX_FRAME_BYTES / 4 {
                return Err(RespError::Protocol("array too deep or too long"));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), pos)))
        }
        _ => Err(RespError::Protocol("unknown type byte")),
    }
}

/// Where to connect, from `REDIS_URL`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: TargetAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `rediss://`: the TLS client settings and the name the certificate must carry.
    pub tls: Option<TlsTarget>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAddr {
    Tcp(String, u16),
    Unix(std::path::PathBuf),
}

/// TLS to Redis: the server name checked against its certificate, and the client
/// configuration (the built-in roots plus any extra authority).
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub server_name: ServerName<'static>,
    pub config: Arc<rustls::ClientConfig>,
}

impl Target {
    /// Parses `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, verified
    /// against the built-in roots) or `unix:///path`.
    pub fn parse(url: &str) -> Result<Target, RespError> {
        Target::parse_with_ca(url, None)
    }

    /// [`Target::parse`], trusting for `rediss://` also the certificates of
    /// `extra_ca_file` (PEM; read here, so call it off the executors).
    pub fn parse_with_ca(url: &str, extra_ca_file: Option<&Path>) -> Result<Target, RespError> {
        use redis::{ConnectionAddr, IntoConnectionInfo};
        // The client crate parses the URL's parts; TLS is ours, so the scheme is
        // swapped for the plain one before it sees it.
        let (tls, plain) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rediss") => {
                (true, format!("redis://{rest}"))
            }
            _ => (false, url.to_owned()),
        };
        let info = plain
            .as_str()
            .into_connection_info()
            .map_err(|e| RespError::Url(e.to_string()))?;
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => TargetAddr::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) if !tls => TargetAddr::Unix(path.clone()),
            _ => return Err(RespError::Url("unsupported address".into())),
        };
        let tls = match (&addr, tls) {
            (TargetAddr::Tcp(host, _), true) => Some(tls_target(host, extra_ca_file)?),
            _ => None,
        };
        let settings = info.redis_settings();
        Ok(Target {
            addr,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            tls,
        })
    }
}

fn tls_target(host: &str, extra_ca_file: Option<&Path>) -> Result<TlsTarget, RespError> {
    let roots =
        crate::tls::client_roots(extra_ca_file).map_err(|e| RespError::Tls(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RespError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // An IPv6 literal comes bracketed in a URL; the certificate names it bare.
    let name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = ServerName::try_from(name).map_err(|e| {
        RespError::Url(format!(
            "{host} cannot be checked against a certificate: {e}"
        ))
    })?;
    Ok(TlsTarget {
        server_name,
        config: Arc::new(config),
    })
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
            Stream::Tls(s) => s.sock.set_read_timeout(Some(t)),
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes),
            Stream::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Stream::Unix(s) => s.write_all(bytes),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

/// One connection to Redis with its read buffer; every read and write is bounded by the
/// timeouts given at connect.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Conn {
    /// Connects (bounded by `connect_timeout`), sets the timeouts, and authenticates when
    /// the target has a password.
    pub fn connect(
        target: &Target,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Conn, RespError> {
        let stream = match &target.addr {
            TargetAddr::Tcp(host, port) => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for host");
                let mut found = None;
                for a in addrs {
                    match TcpStream::connect_timeout(&a, connect_timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let mut s = found.ok_or(last)?;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(io_timeout))?;
                s.set_read_timeout(Some(io_timeout))?;
                match &target.tls {
                    None => Stream::Tcp(s),
                    Some(tls) => {
                        let mut client = rustls::ClientConnection::new(
                            tls.config.clone(),
                            tls.server_name.clone(),
                        )
                        .map_err(|e| RespError::Tls(e.to_string()))?;
                        // The handshake completes here, within the socket's timeouts,
                        // so a certificate problem is this connect's error.
                        while client.is_handshaking() {
                            client.complete_io(&mut s).map_err(|e| match e.kind() {
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                                    RespError::Timeout(io_timeout)
                                }
                                _ => RespError::Tls(e.to_string()),
                            })?;
                        }
                        Stream::Tls(Box::new(rustls::StreamOwned::new(client, s)))
                    }
                }
            }
            TargetAddr::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(io_timeout))?;
                s.set_read_timeout(Some(io_timeout))?;
                Stream::Unix(s)
            }
        };
        let mut conn = Conn {
            stream,
            buf: vec![0; READ_CHUNK_BYTES],
            start: 0,
            end: 0,
            read_timeout: io_timeout,
            write_timeout: io_timeout,
        };
        if let Some(password) = &target.password {
            let mut cmd = Vec::new();
            match &target.username {
                Some(user) => command(&mut cmd, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => command(&mut cmd, &[b"AUTH", password.as_bytes()]),
            }
            conn.write_all(&cmd)?;
            conn.expect_ok()?;
        }
        Ok(conn)
    }

    /// Changes the read timeout (the bridge polls its stop flag between reads).
    pub fn set_read_timeout(&mut self, t: Duration) -> Result<(), RespError> {
        self.stream.set_read_timeout(t)?;
        self.read_timeout = t;
        Ok(())
    }

    /// Writes the whole buffer; a write that stalls past the write timeout is an error
    /// (a hung Redis stops reading, the socket buffer fills, and the write times out).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                RespError::Timeout(self.write_timeout)
            }
            _ => RespError::Io(e),
        })
    }

    /// Reads more bytes into the buffer; `Ok(false)` when the read timed out.
    fn fill(&mut self) -> Result<bool, RespError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_FRAME_BYTES + READ_CHUNK_BYTES {
                self.buf.resize(self.buf.len() + READ_CHUNK_BYTES, 0);
            } else {
                return Err(RespError::Protocol("frame larger than the limit"));
            }
        }
        match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(RespError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(RespError::Io(e)),
        }
    }

    /// Waits for the next value (bounded by the read timeout) and hands it to `f`.
    /// `Ok(None)` when nothing complete arrived in time.
    pub fn next<R>(&mut self, f: impl FnOnce(Value<'_>) -> R) -> Result<Option<R>, RespError> {
        loop {
            if let Some((v, used)) = parse(&self.buf[self.start..self.end])? {
                let out = f(v);
                self.start += used;
                return Ok(Some(out));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads `n` replies to pipelined commands; returns how many were errors. Every
    /// reply must arrive within the read timeout.
    pub fn replies(&mut self, n: usize) -> Result<usize, RespError> {
        let mut errors = 0;
        for _ in 0..n {
            match self.next(|v| matches!(v, Value::Error(_)))? {
                Some(true) => errors += 1,
                Some(false) => {}
                None => return Err(RespError::Timeout(self.read_timeout)),
            }
        }
        Ok(errors)
    }

    fn expect_ok(&mut self) -> Result<(), RespError> {
        let reply = self.next(|v| match v {
            Value::Error(e) => Err(RespError::Server(String::from_utf8_lossy(e).into_owned())),
            _ => Ok(()),
        })?;
        reply.unwrap_or(Err(RespError::Timeout(self.read_timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_publish_with_a_channel_in_parts() {
        let mut out = Vec::new();
        publish(&mut out, &[b"ap:candles:", b"BTCUSDT", b":1m"], b"{}");
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$21\r\nap:candles:BTCUSDT:1m\r\n$2\r\n{}\r\n".as_slice()
        );
        let mut cmd = Vec::new();
        command(&mut cmd, &[b"PSUBSCRIBE", b"ap:*"]);
        assert_eq!(cmd, b"*2\r\n$10\r\nPSUBSCRIBE\r\n$4\r\nap:*\r\n".as_slice());
        let mut n = Vec::new();
        push_usize(&mut n, 0);
        push_usize(&mut n, 1234567890);
        assert_eq!(n, b"01234567890");
    }

    #[test]
    fn parses_every_reply_type_and_waits_for_partial_ones() {
        assert_eq!(parse(b":42\r\n").unwrap(), Some((Value::Int(42), 5)));
        assert_eq!(parse(b"+OK\r\n").unwrap(), Some((Value::Simple(b"OK"), 5)));
        assert_eq!(
            parse(b"-ERR x\r\n").unwrap(),
            Some((Value::Error(b"ERR x"), 8))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Value::Bulk(None), 5)));
        let msg = b"*4\r\n$8\r\npmessage\r\n$4\r\nap:*\r\n$5\r\nap:xy\r\n$2\r\n{}\r\n";
        let (v, used) = parse(msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Bulk(Some(b"pmessage")),
                Value::Bulk(Some(b"ap:*")),
                Value::Bulk(Some(b"ap:xy")),
                Value::Bulk(Some(b"{}")),
            ]))
        );
        // Every strict prefix needs more bytes; none is an error.
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"$2\r\nabcd").is_err());
        assert!(parse(format!("${}\r\n", MAX_FRAME_BYTES + 1).as_bytes()).is_err());
    }

    #[test]
    fn urls_give_targets_with_users_and_tls() {
        let t = Target::parse("redis://:secret@127.0.0.1:6390/2").unwrap();
        assert_eq!(t.addr, TargetAddr::Tcp("127.0.0.1".into(), 6390));
        assert_eq!(t.password.as_deref(), Some("secret"));
        let t = Target::parse("redis://localhost").unwrap();
        assert_eq!(t.addr, TargetAddr::Tcp("localhost".into(), 6379));
        assert_eq!(t.password, None);
        assert!(t.tls.is_none());
        let t = Target::parse("redis://alice:s3cret@127.0.0.1:6390/").unwrap();
        assert_eq!(t.username.as_deref(), Some("alice"));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        let t = Target::parse("rediss://bob:pw@localhost:6380").unwrap();
        assert_eq!(t.addr, TargetAddr::Tcp("localhost".into(), 6380));
        assert_eq!(t.username.as_deref(), Some("bob"));
        let tls = t.tls.expect("rediss is TLS");
        assert_eq!(tls.server_name.to_str(), "localhost");
        // A CA file that cannot be read is an error naming it, not a panic.
        let e = Target::parse_with_ca("rediss://localhost", Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(Target::parse("http://x").is_err());
    }
}
