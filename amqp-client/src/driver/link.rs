//! What the driver task and the API's handles share, behind one lock: the core, the waiters,
//! the bytes waiting for the socket and the socket's writing half.
//!
//! A handle submits its command itself, under the lock, instead of sending it to the driver
//! over a queue, and decides when its frames are written:
//! - sparse traffic (the last request is [`SPARSE`] ago or more), and acks with no more
//!   deliveries waiting: written at once from the caller's task. A publish awaited for its
//!   confirm, or an RPC, then costs one write and no wake-up of the driver's thread, which
//!   here cost more than the rest of the round trip;
//! - a burst (and an ack while more deliveries wait): gathered. The caller writes once
//!   [`WRITE_AT`] bytes wait, or when it is about to wait for an answer (`flush`: a confirm,
//!   an RPC reply, a consumer's next delivery); otherwise the driver's timer writes them
//!   [`BATCH_WAIT`] later at the most.
//!
//! While the socket is full, its waker must be the driver's, so handles only queue.
//! Reading, timers and everything after the socket fails stay with the driver (`mod.rs`).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use super::Request;
use super::waiters::Waiters;
use crate::core::Connection;
use crate::core::command::Command;
use amqp_codec::ReplyCode;

/// Handles wait to submit while this many bytes wait to be written: a publisher that outruns
/// the socket waits instead of growing memory.
pub const HIGH_WATER: usize = 1 << 20;
/// At most this many chunks go into one vectored write.
const MAX_IOVECS: usize = 64;
/// A request this long after the previous one is written by its caller at once; closer ones
/// are left for the driver to gather. About the cost of waking the driver's thread here: below
/// it, the next request is likely to come before that wake-up would have, and share its write.
const SPARSE: Duration = Duration::from_micros(50);
/// How long a batched request's frames may wait for the next ones to share their write.
pub const BATCH_WAIT: Duration = Duration::from_millis(2);
/// In a burst, the caller writes once this many bytes have gathered.
const WRITE_AT: usize = 16 * 1024;

/// The driver has ended: a request can no longer be taken.
#[derive(Debug, Clone, Copy)]
pub struct Finished;

/// The socket's writing half, whatever the transport.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The shared state and the two signals around it.
pub struct Link {
    state: Mutex<State>,
    /// Wakes the driver: bytes to write, a deadline or a close it must see.
    pub(super) driver: Notify,
    /// Wakes handles waiting for the backlog to fall below [`HIGH_WATER`].
    room: Notify,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// Everything behind the lock.
pub struct State {
    pub(super) core: Connection,
    pub(super) waiters: Waiters,
    pub(super) outgoing: Outgoing,
    writer: Writer,
    /// Written without a flush since: a TLS stream may hold the bytes until flushed.
    needs_flush: bool,
    /// The last write would have blocked: the socket holds a waker for when it has room,
    /// which must be the driver's, so handles leave the writing to it until then.
    write_blocked: bool,
    /// The driver has ended: nothing will be read or written again.
    pub(super) finished: bool,
    /// When the last request was submitted.
    last_request: Option<Instant>,
    /// A handle waits for the backlog to fall.
    room_wanted: bool,
    /// The deadline the driver's timer is set for, so that a handle can tell it of an
    /// earlier one.
    pub(super) armed: Option<Instant>,
    /// Batched bytes wait in `outgoing` no later than this.
    pub(super) flush_by: Option<Instant>,
}

impl Link {
    /// A link for a connection whose core is `core`, writing to `writer`.
    pub fn new(core: Connection, waiters: Waiters, writer: Writer) -> Link {
        let state = State {
            core,
            waiters,
            outgoing: Outgoing::default(),
            writer,
            needs_flush: false,
            write_blocked: false,
            finished: false,
            last_request: None,
            room_wanted: false,
            armed: None,
            flush_by: None,
        };
        Link { state: Mutex::new(state), driver: Notify::new(), room: Notify::new() }
    }

    /// The state, locked. Held only for synchronous work: never across an await.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves the core mid-step; the driver then sees its callers
        // fail rather than this lock fail for ever: what the core holds is still sound data.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Submits a request, waiting while the backlog is over [`HIGH_WATER`]. Fails once the
    /// connection is over (the caller reads why from the status); every other failure
    /// reaches the request's reply. Returns where its frames end in the connection's output
    /// (see [`Link::flush_to`]).
    pub async fn submit(&self, request: Request) -> Result<u64, Finished> {
        let mut request = Some(request);
        loop {
            // Registered before the check, so that room made in between is not missed.
            let room = self.room.notified();
            if let Some(result) = self.try_submit(&mut request) {
                return result;
            }
            room.await;
        }
    }

    fn try_submit(&self, request: &mut Option<Request>) -> Option<Result<u64, Finished>> {
        let mut state = self.lock();
        if state.finished || state.core.is_closed() {
            // Its Closed event is dispatched first, so that the caller reads why.
            state.pump(Instant::now());
            return Some(Err(Finished));
        }
        if state.backlog() >= HIGH_WATER {
            state.room_wanted = true;
            return None;
        }
        let Request { command, reply, batch } = request.take()?;
        // An ack is written at once (when nothing is queued): nothing answers it, and a
        // consumer's thread would otherwise wake the driver's for every one.
        let settles = matches!(reply, super::waiters::Reply::Nothing);
        let now = Instant::now();
        let id = state.core.submit(now, command);
        state.waiters.insert(id, reply);
        let sparse = settles || state.last_request.is_none_or(|last| now.duration_since(last) >= SPARSE);
        state.last_request = Some(now);
        let idle = !state.write_blocked;
        state.pump(now);
        let wake_to_write = if batch || !sparse {
            state.gather(now)
        } else {
            if idle && state.wants_write() {
                state.write_now();
            }
            state.wants_write()
        };
        let wake = wake_to_write
            || state.core.is_closed()
            || state.core.poll_timeout().is_some_and(|at| state.armed.is_none_or(|armed| at < armed));
        let end = state.outgoing.pushed;
        drop(state);
        if wake {
            self.driver.notify_one();
        }
        Some(Ok(end))
    }

    /// Writes what waits to be written: the caller is about to wait for an answer.
    pub fn flush(&self) {
        self.flush_to(u64::MAX);
    }

    /// Writes what waits to be written if the output up to `end` (as `submit` returned it)
    /// is not all out: a publisher awaiting the confirm of a message written long ago does
    /// not write the one it queued just now, which would cost a write per message when it
    /// keeps a window of confirms.
    pub fn flush_to(&self, end: u64) {
        let wake = {
            let mut state = self.lock();
            let unwritten = state.outgoing.written < end.min(state.outgoing.pushed);
            (unwritten || state.needs_flush) && state.flush()
        };
        if wake {
            self.driver.notify_one();
        }
    }

    /// Every handle is gone: nobody can use the connection, so close it.
    pub fn handles_dropped(&self) {
        let command = Command::Close { code: ReplyCode::REPLY_SUCCESS, text: "client dropped the connection".into() };
        let mut state = self.lock();
        if !state.finished {
            state.core.submit(Instant::now(), command);
            drop(state);
            self.driver.notify_one();
        }
    }

    /// Wakes handles waiting for room, if there is room now.
    pub(super) fn room_made(&self, state: &mut State) {
        if state.room_wanted && (state.backlog() < HIGH_WATER || state.core.is_closed()) {
            state.room_wanted = false;
            self.room.notify_waiters();
        }
    }

    /// The driver has ended: handles waiting for room must look again, and fail.
    pub(super) fn finish(&self) {
        self.lock().finished = true;
        self.room.notify_waiters();
    }
}

impl State {
    /// Moves what the core produced where it goes: bytes to `outgoing`, events to waiters.
    pub(super) fn pump(&mut self, now: Instant) {
        while let Some(chunk) = self.core.poll_transmit(now) {
            self.outgoing.push(chunk);
        }
        while let Some(event) = self.core.poll_event() {
            self.waiters.dispatch(event);
        }
        self.waiters.wake_consumers();
    }

    /// In a burst: writes from the caller's task once [`WRITE_AT`] bytes have gathered, and
    /// otherwise leaves them for company. True if the driver must be woken.
    fn gather(&mut self, now: Instant) -> bool {
        if !self.write_blocked && self.outgoing.len >= WRITE_AT {
            self.write_now();
        }
        self.wait_for_company(now)
    }

    /// Writes what waits, from the caller's task, or wakes the driver for it when the socket
    /// is full: the caller is about to wait for an answer to it.
    fn flush(&mut self) -> bool {
        if !self.wants_write() {
            return false;
        }
        if !self.write_blocked {
            self.write_now();
        }
        self.wants_write()
    }

    /// Leaves queued bytes for the next request's write, or the driver's, no later than
    /// [`BATCH_WAIT`] from `now`. True if the driver must be woken to set its timer for it.
    fn wait_for_company(&mut self, now: Instant) -> bool {
        if !self.wants_write() {
            return false;
        }
        let by = now + BATCH_WAIT;
        match self.flush_by {
            Some(at) if at <= by => false,
            _ => {
                self.flush_by = Some(by);
                self.armed.is_none_or(|armed| armed > by)
            }
        }
    }

    /// Bytes waiting to be written, in the core and here.
    pub(super) fn backlog(&self) -> usize {
        self.outgoing.len + self.core.pending_transmit()
    }

    /// Writes what it can without waiting, from a handle's task: a no-op waker stands in for
    /// one, since the driver is woken to finish whatever is left.
    fn write_now(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Err(e)) = self.poll_write(&mut cx) {
            // The driver learns of it when it next writes (the socket stays failed) or reads.
            tracing::debug!(error = %e, "a write from the caller's task failed");
        }
    }

    /// Writes queued bytes until none are left or the socket would block, then flushes.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = self.poll_write_all(cx);
        self.write_blocked = result.is_pending();
        result
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.outgoing.is_empty() {
            let written = std::task::ready!(self.outgoing.poll_write_some(self.writer.as_mut(), cx))?;
            self.needs_flush = true;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
        }
        if self.needs_flush {
            std::task::ready!(self.writer.as_mut().poll_flush(cx))?;
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// True while there is something to write or flush.
    pub(super) fn wants_write(&self) -> bool {
        !self.outgoing.is_empty() || self.needs_flush
    }

    /// Shuts the writing half down, once the connection is over.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

/// Chunks waiting for the socket, and their total size (the backpressure measure).
#[derive(Default)]
pub struct Outgoing {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// Bytes ever queued here, and ever written: where a request's frames end, and whether
    /// they are out.
    pushed: u64,
    written: u64,
}

impl Outgoing {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.pushed += chunk.len() as u64;
        self.chunks.push_back(chunk);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        // Dropped unwritten: nothing will be written again, so nobody waits for them.
        self.written += self.len as u64;
        self.len = 0;
    }

    /// One vectored write of what is queued; drops what went out.
    fn poll_write_some(
        &mut self,
        writer: Pin<&mut (dyn AsyncWrite + Send)>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        let written = std::task::ready!(writer.poll_write_vectored(cx, &slices[..n]))?;
        self.len -= written;
        self.written += written as u64;
        let mut left = written;
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            if left >= front.len() {
                left -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        Poll::Ready(Ok(written))
    }
}
