//! One WebSocket client's connection: commands in, its outbox out.
//!
//! Runs on: the dashboard core's executor, one task per client. Owns: the client's
//! socket (read through async-tungstenite, written by its [`Sender`]) and its rate limit
//! and liveness clocks. In: command frames from the client; broadcasts queued by the
//! fan-out ([`super::fanout`]). Out: replies, status pushes, control frames and what a
//! full socket left of the broadcasts (the drain writes the rest as its turns end), as
//! fast as the client reads and never faster, everything pending in one vectored write
//! per wake-up; a close frame saying why when the server ends the connection.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_util::task::AtomicWaker;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use super::fanout::{self, Client, Hub, Kick, Outbox, Writer};
use super::protocol::{self, Command, Filter, Topic};
use super::send::{self, Sender, TapIo, VectoredWrite, Written};
use super::Server;

/// Subscriptions one client may hold: every topic for a few dozen symbol filters.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// How long a closing connection may take to flush its close frame; a client that does
/// not read is not waited for longer than this.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Bounds of how often a client's liveness clocks are checked: a quarter of the ping
/// interval, so 10,000 clients at the default 20 s cost 2,000 wake-ups a second, not
/// the 40,000 a fixed short tick would.
const MIN_TICK: Duration = Duration::from_millis(50);
const MAX_TICK: Duration = Duration::from_secs(5);

/// Close 1008: the client sends commands faster than its rate limit.
const KICK_RATE: Kick = Kick {
    code: 1008,
    reason: "rate limit exceeded: too many messages",
};
/// Close 1008: nothing heard (not even a pong) for the idle timeout.
const KICK_IDLE: Kick = Kick {
    code: 1008,
    reason: "idle: no pong to pings",
};

enum Event {
    Inbound(Message),
    Ended,
    Failed(WsError),
    /// The socket refused a write: the client is gone.
    WriteFailed,
    Kicked(Kick),
    Tick,
}

/// Serves one dashboard client until it leaves, falls behind, or misbehaves.
pub(super) async fn run_client<S>(
    mut ws: WebSocketStream<TapIo<S>>,
    sender: Sender<S>,
    server: Rc<Server>,
    subs: Vec<Filter>,
) where
    S: AsyncRead + AsyncWrite + VectoredWrite + Unpin + 'static,
{
    let opts = &server.opts;
    let stats = server.hub.stats.clone();
    let client = Rc::new(Client::new(opts.client_queue_messages, subs.clone()));
    let writer = Rc::new(RefCell::new(ClientWriter {
        sender,
        written: Written::default(),
    }));
    let shared: fanout::SharedWriter = writer.clone();
    client.set_writer(Some(shared));
    let id = server.hub.add(client.clone());
    let _leave = scopeguard(|| server.hub.remove(id));
    if subs.iter().any(|f| f.topic == Topic::Status) {
        client.reply(server.status_message(), &stats);
    }
    let mut rate = super::security::RateLimit::new(opts.max_inbound_msgs_per_s, Instant::now());
    let mut last_heard = Instant::now();
    let mut last_ping = Instant::now();
    let tick_every =
        (opts.ws_ping_interval.min(opts.ws_idle_timeout) / 4).clamp(MIN_TICK, MAX_TICK);
    let mut tick = glommio::timer::Timer::new(tick_every);
    let mut tick_at = Instant::now() + tick_every;
    // Polling a glommio timer re-inserts it into the reactor every time; a client may be
    // woken for every broadcast, so the timer is polled once to arm it, and after that
    // only its deadline is looked at.
    let mut tick_armed = false;
    let mut need_flush = false;
    let readable = Arc::new(ReadFlag::default());
    let read_waker = Waker::from(readable.clone());
    loop {
        let event = futures_lite::future::poll_fn(|cx| {
            if let Some(k) = client.kicked() {
                return Poll::Ready(Event::Kicked(k));
            }
            client.register(cx.waker());
            if need_flush {
                // tungstenite answers pings and closes as it reads: its control frames
                // go to the sender, behind what is pending.
                match Pin::new(&mut ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => need_flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                    Poll::Pending => {}
                }
                if writer.borrow().sender.control_bytes() > send::MAX_CONTROL_BYTES {
                    client.kick_slow(&stats);
                    return Poll::Ready(Event::Kicked(fanout::KICK_SLOW));
                }
            }
            // Everything waiting, in one vectored write per round, as far as the socket
            // takes it (the fan-out writes the same way at the end of its batches).
            if let Poll::Ready(Err(_)) =
                writer
                    .borrow_mut()
                    .write_out(&client.outbox, cx, &server.hub)
            {
                return Poll::Ready(Event::WriteFailed);
            }
            // The read side only when the socket said it has something (or the last
            // read returned a message): a broadcast's wake-up does not poll it.
            readable.register(cx.waker());
            if readable.take() {
                let mut read_cx = Context::from_waker(&read_waker);
                match Pin::new(&mut ws).poll_next(&mut read_cx) {
                    Poll::Ready(Some(Ok(m))) => {
                        readable.set();
                        return Poll::Ready(Event::Inbound(m));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Failed(e)),
                    Poll::Ready(None) => return Poll::Ready(Event::Ended),
                    Poll::Pending => {}
                }
            }
            if !tick_armed {
                if Pin::new(&mut tick).poll(cx).is_ready() {
                    return Poll::Ready(Event::Tick);
                }
                tick_armed = true;
            } else if Instant::now() >= tick_at {
                return Poll::Ready(Event::Tick);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Inbound(msg) => {
                last_heard = Instant::now();
                // Tungstenite answers pings and closes on its next write or flush.
                need_flush = true;
                // Every message the client sends costs from its budget, pings too: each
                // is answered with a pong. (Pongs answer our pings; closes end it.)
                if matches!(
                    msg,
                    Message::Text(_) | Message::Binary(_) | Message::Ping(_)
                ) && !rate.allow(Instant::now())
                {
                    stats.rate_limited.inc();
                    client.kick(KICK_RATE);
                    continue;
                }
                let text = match msg {
                    Message::Text(t) => Some(t),
                    Message::Binary(_) => None,
                    _ => continue,
                };
                let reply = match text {
                    Some(t) => answer(&server, &client, t.as_str()).await,
                    None => {
                        stats.commands_rejected.inc();
                        protocol::error_message("binary messages are not supported; send JSON text")
                    }
                };
                client.reply(send::text_frame(&reply), &stats);
            }
            Event::Tick => {
                tick = glommio::timer::Timer::new(tick_every);
                tick_at = Instant::now() + tick_every;
                tick_armed = false;
                if last_heard.elapsed() > opts.ws_idle_timeout {
                    stats.disconnected_idle.inc();
                    client.kick(KICK_IDLE);
                } else if last_ping.elapsed() >= opts.ws_ping_interval {
                    last_ping = Instant::now();
                    client.reply(send::ping_frame(), &stats);
                }
            }
            Event::Kicked(k) => {
                close_client(&mut ws, &client, &writer, k.code, k.reason).await;
                return;
            }
            Event::Ended | Event::WriteFailed => return,
            Event::Failed(e) => {
                if let Some((code, reason)) = close_for(&e) {
                    if code == 1009 {
                        stats.oversized.inc();
                    } else {
                        stats.protocol_errors.inc();
                    }
                    close_client(&mut ws, &client, &writer, code, reason).await;
                }
                return;
            }
        }
    }
}

/// Set when the socket's read side woke the task (or may still hold a message); the
/// waker given to the read side sets it and wakes the task.
struct ReadFlag {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Default for ReadFlag {
    fn default() -> Self {
        ReadFlag {
            // The first poll reads: the handshake may have brought a command along.
            ready: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl ReadFlag {
    fn register(&self, waker: &Waker) {
        self.task.register(waker);
    }
    fn set(&self) {
        self.ready.store(true, Ordering::Release);
    }
    fn take(&self) -> bool {
        self.ready.swap(false, Ordering::AcqRel)
    }
}

impl Wake for ReadFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.set();
        self.task.wake();
    }
}

/// A connection's writer: its sender, and the frames one write completed.
struct ClientWriter<S> {
    sender: Sender<S>,
    written: Written,
}

impl<S: VectoredWrite> Writer for ClientWriter<S> {
    fn is_idle(&self) -> bool {
        self.sender.is_idle()
    }

    fn write_out(
        &mut self,
        outbox: &RefCell<Outbox>,
        cx: &mut Context<'_>,
        hub: &Hub,
    ) -> Poll<io::Result<()>> {
        loop {
            {
                let mut outbox = outbox.borrow_mut();
                for _ in 0..self.sender.room() {
                    let Some((frame, recv_ns)) = outbox.pop_timed() else {
                        break;
                    };
                    self.sender.push(frame, recv_ns);
                }
            }
            if self.sender.is_idle() {
                return Poll::Ready(Ok(()));
            }
            let result = self.sender.poll_write(cx, &mut self.written);
            hub.note_written(&self.written);
            if !matches!(result, Poll::Ready(Ok(()))) {
                return result;
            }
            if outbox.borrow().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Sends a close frame (through tungstenite, which the sender writes out) and gives it
/// [`CLOSE_GRACE`] to leave; then the socket is dropped, whether the client read it or
/// not.
async fn close_client<S>(
    ws: &mut WebSocketStream<TapIo<S>>,
    client: &Client,
    writer: &RefCell<ClientWriter<S>>,
    code: u16,
    reason: &'static str,
) where
    S: AsyncRead + AsyncWrite + VectoredWrite + Unpin,
{
    // From here the socket is the close's: the fan-out no longer writes to it, and
    // frames not yet started are dropped so the close follows the one being written.
    client.set_writer(None);
    writer.borrow_mut().sender.drop_unstarted();
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = futures_lite::future::or(
        async {
            let _ = ws.close(Some(frame)).await;
            let _ = futures_lite::future::poll_fn(|cx| {
                let w = &mut *writer.borrow_mut();
                w.sender.poll_write(cx, &mut w.written)
            })
            .await;
            // Wait (within the grace) for the client's answering close, so the close
            // frame is not lost to a reset of unread data.
            while let Some(Ok(_)) = ws.next().await {}
        },
        async {
            glommio::timer::sleep(CLOSE_GRACE).await;
        },
    )
    .await;
}

/// The reply to one command.
async fn answer(server: &Server, client: &Client, text: &str) -> String {
    match protocol::parse_command(text) {
        Err(why) => {
            server.hub.stats.commands_rejected.inc();
            protocol::error_message(&why)
        }
        Ok(Command::Subscribe(f)) => {
            if server.hub.subscribe(client, f, MAX_SUBSCRIPTIONS).is_err() {
                return protocol::error_message(&format!(
                    "too many subscriptions: at most {MAX_SUBSCRIPTIONS} per connection"
                ));
            }
            if f.topic == Topic::Status {
                // The current status at once, so a new subscriber need not wait a whole
                // interval; queued before the acknowledgement.
                client.reply(server.status_message(), &server.hub.stats);
            }
            f.to_json("subscribed").to_string()
        }
        Ok(Command::Unsubscribe(f)) => {
            let mut reply = f.to_json("unsubscribed");
            reply["removed"] = json!(server.hub.unsubscribe(client, f));
            reply.to_string()
        }
        Ok(Command::GetSignals(q)) => match server.ctx.list_signals(q).await {
            Ok(signals) => json!({ "type": "signals", "data": signals }).to_string(),
            Err(e) => protocol::error_message(&format!("signals unavailable: {e}")),
        },
        Ok(Command::Ping(id)) => {
            let mut pong = json!({ "type": "pong", "time": crate::clock::wall_ms() });
            if let Some(id) = id {
                pong["id"] = id;
            }
            pong.to_string()
        }
    }
}

/// The close code for a failed read, if the peer can still be told.
fn close_for(e: &WsError) -> Option<(u16, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((1009, "message or frame too big")),
        WsError::Protocol(_) => Some((1002, "protocol error")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in a text message")),
        _ => None,
    }
}

/// Sends a close frame and gives it [`CLOSE_GRACE`] to leave; then the socket is
/// dropped, whether the client read it or not.
pub(super) async fn close_with<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = futures_lite::future::or(
        async {
            let _ = ws.close(Some(frame)).await;
            // Wait (within the grace) for the client's answering close, so the close
            // frame is not lost to a reset of unread data.
            while let Some(Ok(_)) = ws.next().await {}
        },
        async {
            glommio::timer::sleep(CLOSE_GRACE).await;
        },
    )
    .await;
}

/// `/ws/echo`: every text and binary message back, for conformance runs.
/// The conformance echo: every text or binary message back as it came. A client that
/// sends nothing for `idle` is closed (1001), like a dashboard client.
pub(super) async fn run_echo<S>(mut ws: WebSocketStream<S>, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            glommio::timer::Timer::new(idle).await;
            None
        })
        .await;
        let msg = match next {
            Some(Some(msg)) => msg,
            Some(None) => return,
            None => {
                close_with(&mut ws, 1001, "idle").await;
                return;
            }
        };
        let sent = match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => ws.send(m).await,
            Ok(_) => ws.flush().await,
            Err(e) => {
                if let Some((code, reason)) = close_for(&e) {
                    close_with(&mut ws, code, reason).await;
                }
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Runs `f` when dropped (the client leaves the hub however its task ends).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::fanout::DashboardStats;
    use crate::dashboard::send::tests::Trickle;

    #[test]
    fn a_long_outbox_goes_out_whole_and_in_order_over_partial_writes() {
        let stats = Arc::new(DashboardStats::default());
        let hub = Hub::new(stats.clone());
        let outbox = RefCell::new(Outbox::new(1000));
        // More than one vectored write holds, over a socket that takes 50 bytes a call
        // and is full every other call.
        let frames: Vec<send::Frame> = (0..150)
            .map(|i| send::text_frame(&format!("record {i}")))
            .collect();
        for f in &frames {
            outbox.borrow_mut().push(f.clone(), None).unwrap();
        }
        let (sender, _tap) = Sender::new(Trickle {
            out: Vec::new(),
            chunk: 50,
            calls: 0,
        });
        let mut writer = ClientWriter {
            sender,
            written: Written::default(),
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut done = false;
        for _ in 0..10_000 {
            match writer.write_out(&outbox, &mut cx, &hub) {
                Poll::Ready(Ok(())) => {
                    done = true;
                    break;
                }
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => {}
            }
        }
        assert!(done && writer.is_idle() && outbox.borrow().is_empty());
        let expect: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(writer.sender.socket().out, expect);
        assert_eq!(stats.messages_sent.get(), 150, "every frame counted once");
    }
}
