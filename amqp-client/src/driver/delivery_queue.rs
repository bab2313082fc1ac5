//! A consumer's queue of deliveries: the driver fills it, the `Consumer` reads it. Bounded by
//! count (`consumer_buffer`) and by body bytes ([`CONSUMER_BYTES`]).
//!
//! Unlike a tokio mpsc channel, a push does not wake the reader: it hands back the reader's
//! waker, and the driver wakes each consumer once after it has dispatched everything one read
//! brought. Waking per delivery made the consumer's thread sleep and wake once per message
//! (it reads one faster than the driver queues the next), which was most of the CPU of a
//! consume-and-ack loop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::core::event::Message;

/// Body bytes a consumer's queue may hold unread before the driver stops reading the socket:
/// the delivery count alone (`consumer_buffer`) lets 1 MiB messages pile up to the prefetch,
/// which showed as the peak RSS of the large-message benchmark. A queue below the limit
/// takes one more message of any size, so a message larger than the limit still passes.
pub const CONSUMER_BYTES: usize = 4 << 20;

/// Why a delivery was not queued.
#[derive(Debug)]
pub enum Refused {
    /// The queue is full by count or by bytes; the message comes back.
    Full(Message),
    /// The consumer is gone.
    Closed,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Message>,
    /// Body bytes in `items`.
    bytes: usize,
    /// The reader's waker while it waits for a delivery.
    waker: Option<Waker>,
    /// No sender is left: once `items` is empty, the stream ends.
    sending_closed: bool,
    /// The reader is gone: nothing queued will be read.
    receiver_closed: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Signalled when a full queue gets room, or the consumer goes away.
    drained: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves only plain data behind (no invariant spans
        // two fields), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_full(&self, state: &State) -> bool {
        state.items.len() >= self.capacity || state.bytes >= CONSUMER_BYTES
    }
}

/// A queue of at most `capacity` deliveries: the sending and the receiving end.
pub fn channel(capacity: usize) -> (ConsumerTx, ConsumerRx) {
    let state = State { items: VecDeque::new(), bytes: 0, waker: None, sending_closed: false, receiver_closed: false };
    let shared = Arc::new(Shared { state: Mutex::new(state), capacity: capacity.max(1), drained: Notify::new() });
    let open = Arc::new(SendingOpen(shared.clone()));
    (ConsumerTx { shared: shared.clone(), _open: open }, ConsumerRx { shared })
}

/// Closes the sending side when the last `ConsumerTx` clone is dropped.
#[derive(Debug)]
struct SendingOpen(Arc<Shared>);

impl Drop for SendingOpen {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.sending_closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The driver's end of a consumer's queue. Cheap to clone; the stream ends when every clone
/// is gone and the queue is read empty.
#[derive(Debug, Clone)]
pub struct ConsumerTx {
    shared: Arc<Shared>,
    _open: Arc<SendingOpen>,
}

impl ConsumerTx {
    /// Queues `message` unless the queue is full or the consumer gone. On success, returns
    /// the reader's waker if it waits: the caller wakes it once its batch is queued.
    pub fn offer(&self, message: Message) -> Result<Option<Waker>, Refused> {
        let mut state = self.shared.lock();
        if state.receiver_closed {
            return Err(Refused::Closed);
        }
        if self.shared.is_full(&state) {
            return Err(Refused::Full(message));
        }
        state.bytes += message.body.len();
        state.items.push_back(message);
        Ok(state.waker.take())
    }

    /// Resolves once the queue has room, or its consumer is gone.
    pub async fn room(&self) {
        loop {
            // Registered before the check, so that room made in between is not missed.
            let notified = self.shared.drained.notified();
            {
                let state = self.shared.lock();
                if state.receiver_closed || !self.shared.is_full(&state) {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// Tells whether deliveries wait in a consumer's queue: an ack while some do is followed by
/// more, so it may wait to share their write.
#[derive(Debug, Clone)]
pub struct Waiting(Arc<Shared>);

impl Waiting {
    /// True while at least one delivery waits to be read.
    pub fn any(&self) -> bool {
        !self.0.lock().items.is_empty()
    }
}

/// The consumer's end of its queue.
#[derive(Debug)]
pub struct ConsumerRx {
    shared: Arc<Shared>,
}

impl ConsumerRx {
    /// The next message; `Ready(None)` once the senders are gone and the queue is empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut state = self.shared.lock();
        if let Some(message) = self.pop(&mut state) {
            return Poll::Ready(Some(message));
        }
        if state.sending_closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// What tells whether deliveries wait here.
    pub fn waiting(&self) -> Waiting {
        Waiting(self.shared.clone())
    }

    /// The next message, or `None` once the senders are gone and the queue is empty.
    #[cfg(test)]
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Message> {
        let mut state = self.shared.lock();
        self.pop(&mut state)
    }

    /// True once no sender is left and nothing is queued: the stream has ended.
    pub fn is_ended(&self) -> bool {
        let state = self.shared.lock();
        state.sending_closed && state.items.is_empty()
    }

    fn pop(&self, state: &mut State) -> Option<Message> {
        let was_full = self.shared.is_full(state);
        let message = state.items.pop_front()?;
        state.bytes -= message.body.len();
        if was_full && !self.shared.is_full(state) {
            self.shared.drained.notify_one();
        }
        Some(message)
    }
}

impl Drop for ConsumerRx {
    fn drop(&mut self) {
        // Taken out under the lock and dropped after it: dropping a message returns its body
        // buffer to the pool, which is no business of this lock.
        let dropped = {
            let mut state = self.shared.lock();
            state.receiver_closed = true;
            state.bytes = 0;
            std::mem::take(&mut state.items)
        };
        drop(dropped);
        self.shared.drained.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn message(len: usize) -> Message {
        Message { method: Bytes::new(), header: Bytes::new(), body: Bytes::from(vec![7u8; len]) }
    }

    #[tokio::test]
    async fn a_queue_is_bounded_by_body_bytes_and_frees_as_it_is_read() {
        let (tx, mut rx) = channel(100);
        let big = CONSUMER_BYTES / 2;
        tx.offer(message(big)).unwrap();
        tx.offer(message(big - 1)).unwrap();
        // Below the limit by a byte: one more of any size fits.
        tx.offer(message(CONSUMER_BYTES)).unwrap();
        assert!(matches!(tx.offer(message(1)), Err(Refused::Full(_))), "over the limit");
        rx.recv().await.unwrap();
        rx.recv().await.unwrap();
        assert!(matches!(tx.offer(message(1)), Err(Refused::Full(_))), "the large message still fills it");
        let room = tokio::spawn({
            let tx = tx.clone();
            async move { tx.room().await }
        });
        rx.recv().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), room).await.unwrap().unwrap();
        tx.offer(message(1)).unwrap();
        assert_eq!(rx.shared.lock().bytes, 1);
    }

    #[tokio::test]
    async fn a_queue_is_bounded_by_count() {
        let (tx, mut rx) = channel(2);
        tx.offer(message(1)).unwrap();
        tx.offer(message(1)).unwrap();
        assert!(matches!(tx.offer(message(1)), Err(Refused::Full(_))));
        assert!(rx.try_recv().is_some());
        tx.offer(message(1)).unwrap();
    }

    #[tokio::test]
    async fn a_push_hands_back_the_waiting_readers_waker_instead_of_waking_it() {
        let (tx, mut rx) = channel(10);
        let reader = tokio::spawn(async move { rx.recv().await.map(|m| m.body.len()) });
        // Let the reader register its waker.
        while tx.shared.lock().waker.is_none() {
            tokio::task::yield_now().await;
        }
        let waker = tx.offer(message(3)).unwrap();
        assert!(waker.is_some(), "the reader waits, so its waker comes back");
        assert!(tx.offer(message(4)).unwrap().is_none(), "and only once");
        waker.unwrap().wake();
        assert_eq!(tokio::time::timeout(Duration::from_secs(30), reader).await.unwrap().unwrap(), Some(3));
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_last_sender_goes_after_what_was_queued() {
        let (tx, mut rx) = channel(10);
        let other = tx.clone();
        tx.offer(message(1)).unwrap();
        drop(tx);
        assert!(!rx.is_ended(), "a clone still sends");
        drop(other);
        assert!(rx.recv().await.is_some(), "what was queued is still read");
        assert!(rx.recv().await.is_none());
        assert!(rx.is_ended());
    }

    #[tokio::test]
    async fn waiting_for_room_ends_when_the_consumer_goes_away() {
        let (tx, rx) = channel(100);
        tx.offer(message(CONSUMER_BYTES)).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.room().await }
        });
        drop(rx);
        tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap();
        assert!(
            matches!(tx.offer(message(1)), Err(Refused::Closed)),
            "a gone consumer's queue is closed, not full, so the driver does not stall on it"
        );
    }
}
