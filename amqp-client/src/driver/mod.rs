//! The tokio driver: one task owns the core `Connection` and the socket, and moves bytes,
//! timers and requests between them. Every protocol decision is the core's; this loop only
//! reads, writes (vectored: what is queued together goes out in one write), sleeps until the
//! core's next deadline, and hands events to `waiters.rs`.

pub mod waiters;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::Connection;
use crate::core::command::Command;
use amqp_codec::ReplyCode;

use waiters::{Reply, Waiters};

/// A request for the driver: a command for the core and how to answer it.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// How its outcome reaches the caller.
    pub reply: Reply,
}

/// The driver stops taking requests while this many bytes wait to be written: a publisher
/// that outruns the socket waits on the bounded request queue instead of growing memory.
const HIGH_WATER: usize = 1 << 20;
/// Free space kept in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;
/// At most this many chunks go into one vectored write.
const MAX_IOVECS: usize = 64;
/// Requests taken from the queue in one turn of the loop, at most.
const REQUESTS_PER_TURN: usize = 256;
/// After the core closed, how long queued bytes (a close-ok) may take to go out.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Runs a connection until it closes. Returns when every waiter has had its answer.
pub async fn run<S>(mut core: Connection, io: S, mut requests: mpsc::Receiver<Request>, mut waiters: Waiters)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut incoming = BytesMut::with_capacity(READ_RESERVE);
    let mut outgoing = Outgoing::default();
    let mut closed_at: Option<Instant> = None;
    let mut requests_open = true;
    let mut reading_paused = false;
    // One timer for the whole life of the connection. It is moved earlier when the core's
    // deadline comes sooner and otherwise left to fire: the heartbeat deadline moves later
    // with every write, and re-arming a timer per loop turn showed in the profile. A timer
    // that fires early only makes the core find nothing due.
    let timer = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let now = Instant::now().into_std();
        while let Some(chunk) = core.poll_transmit(now) {
            outgoing.push(chunk);
        }
        while let Some(event) = core.poll_event() {
            waiters.dispatch(event);
        }
        if waiters.is_stalled() != reading_paused {
            reading_paused = !reading_paused;
            core.handle_reading_paused(reading_paused, Instant::now().into_std());
        }
        if core.is_closed() {
            // Nothing will be read again, so a full consumer queue cannot be waited for: what
            // does not fit is dropped (unacked deliveries are redelivered by the broker).
            waiters.abandon_stall();
            let since = *closed_at.get_or_insert_with(Instant::now);
            if outgoing.is_empty() || since.elapsed() >= FLUSH_GRACE {
                break;
            }
        }
        let backlog = outgoing.len + core.pending_transmit();
        let deadline = core.poll_timeout().map(Instant::from_std);
        if let Some(at) = deadline.or(closed_at.map(|t| t + FLUSH_GRACE))
            && armed.is_none_or(|armed| at < armed)
        {
            timer.as_mut().reset(at);
            armed = Some(at);
        }
        if incoming.capacity() - incoming.len() < READ_RESERVE / 4 {
            incoming.reserve(READ_RESERVE);
        }
        tokio::select! {
            written = outgoing.write_some(&mut writer), if !outgoing.is_empty() => {
                if let Err(e) = written {
                    outgoing.clear();
                    core.handle_eof(Instant::now().into_std(), &format!("write failed: {e}"));
                }
            }
            read = reader.read_buf(&mut incoming), if !waiters.is_stalled() && !core.is_closed() => {
                let now = Instant::now().into_std();
                match read {
                    Ok(0) => core.handle_eof(now, "the broker closed the socket"),
                    Ok(_) => core.handle_input(now, &mut incoming),
                    Err(e) => core.handle_eof(now, &format!("read failed: {e}")),
                }
            }
            request = requests.recv(), if requests_open && backlog < HIGH_WATER && !core.is_closed() => {
                let now = Instant::now().into_std();
                match request {
                    Some(Request { command, reply }) => {
                        let id = core.submit(now, command);
                        waiters.insert(id, reply);
                        // Take what else is waiting in one turn: a publisher's burst costs one
                        // wake-up, not one per message.
                        let mut budget = REQUESTS_PER_TURN;
                        while budget > 0 && outgoing.len + core.pending_transmit() < HIGH_WATER {
                            let Ok(Request { command, reply }) = requests.try_recv() else { break };
                            let id = core.submit(now, command);
                            waiters.insert(id, reply);
                            budget -= 1;
                        }
                    }
                    None => {
                        // Every handle is gone: nobody can use the connection, so close it.
                        requests_open = false;
                        core.submit(now, Command::Close { code: ReplyCode::REPLY_SUCCESS, text: "client dropped the connection".into() });
                    }
                }
            }
            () = waiters.unstall(), if waiters.is_stalled() => {}
            () = &mut timer, if armed.is_some() => {
                armed = None;
                if !core.is_closed() {
                    core.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }
    let _ = writer.shutdown().await;
}

/// Chunks waiting for the socket, and their total size (the backpressure measure).
#[derive(Default)]
struct Outgoing {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Outgoing {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// One vectored write of what is queued; drops what went out.
    async fn write_some<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> std::io::Result<()> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        let mut written = writer.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.len -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            if written >= front.len() {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
        Ok(())
    }
}
