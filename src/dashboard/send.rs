//! A dashboard client's write side: frames built once for every client, written with one
//! vectored write at a time.
//!
//! Runs on: the dashboard core's executor, in the drain's turn (which writes the clients
//! its broadcasts reached as the turn ends) or in the client's connection task (what a
//! full socket left behind, replies, control frames). Owns: the frames on their way to
//! one socket. In: whole frames from the client's outbox
//! (shared, reference-counted bytes) and the control frames tungstenite produces (pongs,
//! closes). Out: bytes on the socket, in order, never a frame interleaved with another.
//!
//! A server's frames are not masked (RFC 6455 §5.1), so the same bytes, header included,
//! go to every client: a broadcast is serialized and framed once ([`text_frame_with`]),
//! and each subscribed client's outbox holds a pointer to it. tungstenite still does the
//! handshake, reads the client's frames, answers its pings and writes close frames, but
//! through [`TapIo`], which hands its writes to the [`Sender`] instead of the socket: the
//! sender is the only writer of the socket. Each write sends everything pending with
//! one `sendmsg` of up to [`MAX_IOVECS`] frames on a plain socket; on TLS every client's
//! bytes are encrypted apart anyway, so frames go through the TLS stream, which may keep
//! bytes it accepted in its own buffer when the socket is full: the sender flushes it
//! before it counts as idle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A whole server-to-client frame (header and payload), shared by every client it goes to.
pub type Frame = Bytes;

const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;
const FIN: u8 = 0x80;
/// The largest header of an unmasked frame: 2 bytes and a 64-bit length.
const MAX_HEADER: usize = 10;
/// Frames written per `sendmsg`: well under the kernel's IOV_MAX (1024), and more than
/// one wake-up usually has.
pub const MAX_IOVECS: usize = 64;
/// Control bytes (tungstenite's pongs and closes) that may wait for a client that does
/// not read: a client pinging without reading would grow them without end. Past this
/// the client is cut off as too slow (counted in `disconnected_slow`).
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// A text frame whose payload `write` appends: written once, after room for the header,
/// which is then put right before it, so nothing is copied.
pub fn text_frame_with(write: impl FnOnce(&mut Vec<u8>)) -> Frame {
    let mut buf = Vec::with_capacity(512);
    buf.resize(MAX_HEADER, 0);
    write(&mut buf);
    let len = buf.len() - MAX_HEADER;
    let (header, n) = header(OP_TEXT, len);
    let start = MAX_HEADER - n;
    buf[start..MAX_HEADER].copy_from_slice(&header[..n]);
    Bytes::from(buf).slice(start..)
}

/// A text frame of `text`.
pub fn text_frame(text: &str) -> Frame {
    text_frame_with(|out| out.extend_from_slice(text.as_bytes()))
}

/// A ping frame with no payload.
pub fn ping_frame() -> Frame {
    Bytes::from_static(&[FIN | OP_PING, 0])
}

/// The header of an unmasked FIN frame of `len` payload bytes, and its length.
fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = FIN | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= usize::from(u16::MAX) {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// A socket the sender can write several frames to at once.
pub trait VectoredWrite: AsyncWrite + Unpin {
    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
}

impl VectoredWrite for glommio::net::TcpStream {
    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One non-blocking sendmsg for every frame pending; glommio's own write (one
        // buffer) only when the socket is full, to wait for room through io_uring.
        let msg = libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: bufs.as_ptr() as *mut libc::iovec,
            msg_iovlen: bufs.len() as _,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        };
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix, the slices
        // outlive the call, and the descriptor is this socket's.
        let n = unsafe {
            libc::sendmsg(
                self.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Poll::Ready(Ok(n as usize));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Poll::Ready(Err(e));
        }
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) => Pin::new(self).poll_write(cx, first),
            None => Poll::Ready(Ok(0)),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> VectoredWrite for futures_rustls::server::TlsStream<S> {
    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, bufs)
    }
}

/// The socket, shared by tungstenite's reads and the sender's writes (one thread, one
/// poll at a time).
pub type Shared<S> = Rc<RefCell<S>>;

/// The shared socket for one call; in use already is an error, never a panic.
fn borrow_socket<S>(socket: &Shared<S>) -> io::Result<std::cell::RefMut<'_, S>> {
    socket
        .try_borrow_mut()
        .map_err(|_| io::Error::other("socket busy"))
}

/// What tungstenite reads from and writes to: reads come from the socket, writes (its
/// pongs and close frames, always whole frames by the time a call returns) are kept for
/// the [`Sender`].
pub struct TapIo<S> {
    socket: Shared<S>,
    control: Rc<RefCell<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TapIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match borrow_socket(&self.socket) {
            Ok(mut s) => Pin::new(&mut *s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<S> AsyncWrite for TapIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.control.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One frame on its way, with the receive time of the record it carries (0: none).
struct Pending {
    frame: Frame,
    recv_ns: u64,
    /// tungstenite's pongs and closes: not counted as messages sent.
    control: bool,
}

/// The only writer of a client's socket.
pub struct Sender<S> {
    socket: Shared<S>,
    control: Rc<RefCell<Vec<u8>>>,
    pending: VecDeque<Pending>,
    /// Bytes of the first pending frame already written.
    offset: usize,
    /// The socket took bytes since its last flush: a TLS stream may hold some of them
    /// in its own buffer until flushed.
    flush_owed: bool,
}

/// The frames fully written by one [`Sender::poll_write`]: the receive times of the
/// records they carried (0: a reply or control frame), without allocating per wake-up.
pub struct Written {
    pub count: usize,
    pub recv_ns: [u64; MAX_WRITTEN],
}

/// Frames one poll can complete: a full write's worth queued before it, and the control
/// frames tungstenite added meanwhile.
const MAX_WRITTEN: usize = MAX_IOVECS + 2;

impl Default for Written {
    fn default() -> Self {
        Written {
            count: 0,
            recv_ns: [0; MAX_WRITTEN],
        }
    }
}

impl Written {
    pub fn times(&self) -> &[u64] {
        &self.recv_ns[..self.count]
    }
}

impl<S: VectoredWrite> Sender<S> {
    /// The sender of `socket`, and the stream tungstenite is given.
    pub fn new(socket: S) -> (Sender<S>, TapIo<S>) {
        let socket = Rc::new(RefCell::new(socket));
        let control = Rc::new(RefCell::new(Vec::new()));
        (
            Sender {
                socket: socket.clone(),
                control: control.clone(),
                pending: VecDeque::with_capacity(MAX_IOVECS),
                offset: 0,
                flush_owed: false,
            },
            TapIo { socket, control },
        )
    }

    /// Room for more frames in this wake-up's write.
    pub fn room(&self) -> usize {
        MAX_IOVECS.saturating_sub(self.pending.len())
    }

    /// Control bytes waiting, pending included (see [`MAX_CONTROL_BYTES`]).
    pub fn control_bytes(&self) -> usize {
        let pending: usize = self
            .pending
            .iter()
            .filter(|p| p.control)
            .map(|p| p.frame.len())
            .sum();
        pending + self.control.borrow().len()
    }

    /// Nothing pending, nothing held unflushed, no control frame waiting.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.flush_owed && self.control.borrow().is_empty()
    }

    /// The socket, for tests to read what was written.
    #[cfg(test)]
    pub fn socket(&self) -> std::cell::Ref<'_, S> {
        self.socket.borrow()
    }

    /// Queues a frame after everything pending.
    pub fn push(&mut self, frame: Frame, recv_ns: u64) {
        self.pending.push_back(Pending {
            frame,
            recv_ns,
            control: false,
        });
    }

    /// Moves tungstenite's control frames (pongs, closes) behind what is pending.
    fn take_control(&mut self) {
        let mut control = self.control.borrow_mut();
        if !control.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut *control));
            self.pending.push_back(Pending {
                frame: bytes,
                recv_ns: 0,
                control: true,
            });
        }
    }

    /// A close is coming: frames not yet started are dropped, so the close frame follows
    /// the one being written (a frame is never cut).
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.offset > 0);
        self.pending.truncate(keep);
    }

    /// Writes what is pending, as far as the socket takes it, then flushes the socket;
    /// the frames fully written go into `written`. Ready(Ok) when everything went out,
    /// Pending when the socket is full (woken when it has room).
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut Written,
    ) -> Poll<io::Result<()>> {
        written.count = 0;
        self.take_control();
        while !self.pending.is_empty() {
            let n = {
                let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (i, p) in self.pending.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = if i == 0 {
                        &p.frame[self.offset..]
                    } else {
                        &p.frame[..]
                    };
                    slices[count] = IoSlice::new(bytes);
                    count += 1;
                }
                let mut socket = borrow_socket(&self.socket)?;
                match socket.poll_write_frames(cx, &slices[..count]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            };
            self.flush_owed = true;
            self.advance(n, written);
        }
        if self.flush_owed {
            let mut socket = borrow_socket(&self.socket)?;
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_owed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Marks `n` more bytes written.
    fn advance(&mut self, mut n: usize, written: &mut Written) {
        while n > 0 {
            let Some(first) = self.pending.front() else {
                return;
            };
            let left = first.frame.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            if let Some(done) = self.pending.pop_front() {
                if !done.control && written.count < MAX_WRITTEN {
                    written.recv_ns[written.count] = done.recv_ns;
                    written.count += 1;
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn parse(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, at) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), at + len, "one whole frame");
        (frame[0], frame[at..].to_vec())
    }

    #[test]
    fn frames_carry_their_payload_behind_the_shortest_header() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 100_000] {
            let text = "x".repeat(len);
            let f = text_frame(&text);
            let (first, payload) = parse(&f);
            assert_eq!(first, 0x81);
            assert_eq!(payload, text.as_bytes(), "{len}");
        }
        assert_eq!(&ping_frame()[..], &[0x89, 0]);
    }

    /// A socket that takes at most `chunk` bytes per write and is full every other call.
    pub(in crate::dashboard) struct Trickle {
        pub out: Vec<u8>,
        pub chunk: usize,
        pub calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            let n = buf.len().min(me.chunk);
            me.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl VectoredWrite for Trickle {
        fn poll_write_frames(
            &mut self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Across frame boundaries, as a real vectored write may stop anywhere.
            let mut left = self.chunk;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn partial_writes_keep_frames_whole_and_in_order_with_control_frames_between() {
        let (mut sender, tap) = Sender::new(Trickle {
            out: Vec::new(),
            chunk: 7,
            calls: 0,
        });
        let frames: Vec<Frame> = (0..100)
            .map(|i| text_frame(&format!("record {i}")))
            .collect();
        let mut expect = Vec::new();
        for (i, f) in frames.iter().enumerate().take(50) {
            sender.push(f.clone(), i as u64 + 1);
            expect.extend_from_slice(f);
        }
        // tungstenite writes a pong meanwhile: at the next write it goes behind
        // everything pending then, never into a frame.
        tap.control.borrow_mut().extend_from_slice(&[0x8A, 0]);
        for (i, f) in frames.iter().enumerate().skip(50) {
            sender.push(f.clone(), i as u64 + 1);
            expect.extend_from_slice(f);
        }
        expect.extend_from_slice(&[0x8A, 0]);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut written = Written::default();
        let mut times = Vec::new();
        for _ in 0..10_000 {
            let r = sender.poll_write(&mut cx, &mut written);
            times.extend_from_slice(written.times());
            if let Poll::Ready(result) = r {
                result.unwrap();
                break;
            }
        }
        assert!(sender.is_idle());
        assert_eq!(sender.socket.borrow().out, expect);
        // Every data frame counted once, in order; the pong not at all.
        assert_eq!(times, (1..=100).collect::<Vec<u64>>());
    }

    /// A stream with a buffer of its own (as TLS has): it takes every write, and sends
    /// what it holds only when flushed, which finds the socket full the first time.
    struct Buffered {
        out: Vec<u8>,
        held: Vec<u8>,
        flushes: usize,
    }

    impl AsyncWrite for Buffered {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let me = self.get_mut();
            me.flushes += 1;
            if me.flushes == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let held = std::mem::take(&mut me.held);
            me.out.extend_from_slice(&held);
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl VectoredWrite for Buffered {
        fn poll_write_frames(
            &mut self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(self).poll_write_vectored(cx, bufs)
        }
    }

    #[test]
    fn bytes_a_stream_holds_are_flushed_before_the_sender_is_idle() {
        let (mut sender, _tap) = Sender::new(Buffered {
            out: Vec::new(),
            held: Vec::new(),
            flushes: 0,
        });
        let f = text_frame("held by the stream");
        sender.push(f.clone(), 7);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut written = Written::default();
        // The stream took the frame but could not send it yet: the write is not done.
        assert!(sender.poll_write(&mut cx, &mut written).is_pending());
        assert_eq!(written.times(), [7]);
        assert!(!sender.is_idle(), "a flush is owed");
        assert!(sender.socket.borrow().out.is_empty());
        assert!(sender.poll_write(&mut cx, &mut written).is_ready());
        assert!(written.times().is_empty(), "the frame is counted once");
        assert!(sender.is_idle());
        assert_eq!(sender.socket.borrow().out, f.to_vec());
    }

    #[test]
    fn a_close_goes_right_after_the_frame_being_written() {
        let (mut sender, _tap) = Sender::new(Trickle {
            out: Vec::new(),
            chunk: 3,
            calls: 0,
        });
        let a = text_frame("first");
        sender.push(a.clone(), 0);
        sender.push(text_frame("second"), 0);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut written = Written::default();
        // One write of 3 bytes, then the socket is full: "first" is half out.
        let _ = sender.poll_write(&mut cx, &mut written);
        sender.drop_unstarted();
        for _ in 0..100 {
            if sender.poll_write(&mut cx, &mut written).is_ready() {
                break;
            }
        }
        assert_eq!(sender.socket.borrow().out, a.to_vec());
    }

    #[test]
    fn a_frame_is_the_same_bytes_tungstenite_reads_as_the_text() {
        let f = text_frame_with(|out| out.extend_from_slice(br#"{"type":"candle"}"#));
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            std::io::Cursor::new(f.to_vec()),
            tungstenite::protocol::Role::Client,
            None,
        );
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => assert_eq!(t.as_str(), r#"{"type":"candle"}"#),
            other => panic!("{other:?}"),
        }
    }
}
