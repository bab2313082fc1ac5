//! The tokio driver: one task per connection reads the socket, keeps the timer, writes what
//! handles left queued (vectored: what is queued together goes out in one write) and hands
//! events to `waiters.rs`. Every protocol decision is the core's. The core itself lives in
//! `link.rs`, shared with the API's handles, which submit their requests to it directly.

pub mod delivery_queue;
pub mod link;
pub mod waiters;

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::core::command::Command;

use link::Link;
use waiters::Reply;

/// A request for the core: a command and how to answer it.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// How its outcome reaches the caller.
    pub reply: Reply,
    /// The caller will submit again at once (a consumer acking while more deliveries wait
    /// for it): its frames may wait, up to [`link::BATCH_WAIT`], to share a write.
    pub batch: bool,
}

impl Request {
    /// A request written as soon as the traffic allows.
    pub fn new(command: Command, reply: Reply) -> Request {
        Request { command, reply, batch: false }
    }
}

/// Free space kept in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;
/// After the core closed, how long queued bytes (a close-ok) may take to go out.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// What one turn of the loop may wait for, decided under the lock.
struct Turn {
    /// A consumer's queue the held deliveries wait for: reading stops until it has room.
    stalled_on: Option<delivery_queue::ConsumerTx>,
    closed: bool,
    wants_write: bool,
}

/// Runs a connection until it closes. Returns when every waiter has had its answer.
pub async fn run<R>(link: Arc<Link>, mut reader: R)
where
    R: AsyncRead + Unpin,
{
    let mut incoming = BytesMut::with_capacity(READ_RESERVE);
    let mut closed_at: Option<Instant> = None;
    let mut reading_paused = false;
    // One timer for the whole life of the connection. It is moved earlier when the core's
    // deadline comes sooner and otherwise left to fire: the heartbeat deadline moves later
    // with every write, and re-arming a timer per loop turn showed in the profile. A timer
    // that fires early only makes the core find nothing due.
    let timer = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let turn = {
            let mut state = link.lock();
            let now = Instant::now().into_std();
            state.pump(now);
            if state.waiters.is_stalled() != reading_paused {
                reading_paused = !reading_paused;
                state.core.handle_reading_paused(reading_paused, now);
            }
            let closed = state.core.is_closed();
            if closed {
                // Nothing will be read again, so a full consumer queue cannot be waited for:
                // what does not fit is dropped (unacked deliveries are redelivered).
                state.waiters.abandon_stall();
                let since = *closed_at.get_or_insert_with(Instant::now);
                if !state.wants_write() || since.elapsed() >= FLUSH_GRACE {
                    break;
                }
            }
            let deadline = match (state.core.poll_timeout(), state.flush_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(Instant::from_std);
            if let Some(at) = deadline.or(closed_at.map(|t| t + FLUSH_GRACE))
                && armed.is_none_or(|armed| at < armed)
            {
                timer.as_mut().reset(at);
                armed = Some(at);
                state.armed = Some(at.into_std());
            }
            link.room_made(&mut state);
            Turn { stalled_on: state.waiters.first_held(), closed, wants_write: state.wants_write() }
        };
        if incoming.capacity() - incoming.len() < READ_RESERVE / 4 {
            incoming.reserve(READ_RESERVE);
        }
        tokio::select! {
            written = poll_fn(|cx| link.lock().poll_write(cx)), if turn.wants_write => {
                if let Err(e) = written {
                    let mut state = link.lock();
                    state.outgoing.clear();
                    state.core.handle_eof(Instant::now().into_std(), &format!("write failed: {e}"));
                }
            }
            read = reader.read_buf(&mut incoming), if turn.stalled_on.is_none() && !turn.closed => {
                let now = Instant::now().into_std();
                let mut state = link.lock();
                match read {
                    Ok(0) => state.core.handle_eof(now, "the broker closed the socket"),
                    Ok(_) => state.core.handle_input(now, &mut incoming),
                    Err(e) => state.core.handle_eof(now, &format!("read failed: {e}")),
                }
            }
            () = link.driver.notified() => {}
            () = room(turn.stalled_on.as_ref()), if turn.stalled_on.is_some() => {
                link.lock().waiters.release_held();
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                let mut state = link.lock();
                state.armed = None;
                // Bytes left to wait for company go out on this turn.
                state.flush_by = None;
                if !state.core.is_closed() {
                    state.core.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }
    link.finish();
    let _ = poll_fn(|cx| link.lock().poll_shutdown(cx)).await;
}

/// Resolves once `queue` has room (or its consumer is gone).
async fn room(queue: Option<&delivery_queue::ConsumerTx>) {
    if let Some(queue) = queue {
        queue.room().await;
    }
}
