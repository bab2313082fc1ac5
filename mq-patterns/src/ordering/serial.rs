//! A per-key serial executor inside one consumer: deliveries with the same key are handled one
//! after another in arrival order, while different keys run in parallel (up to a bound), and
//! each delivery is acked exactly once, after its own handler succeeded.
//!
//! The guarantee: for each key, handler `n + 1` starts only after handler `n` finished and its
//! delivery was acked, so with an ordered source (one queue, one active consumer) each key's
//! messages take effect in publish order. Acks are single (`multiple = false`): a multiple ack
//! up to a tag would also ack other keys' deliveries whose handlers have not finished, and a
//! crash then would lose them. Not guaranteed: any order between keys, or exactly once (a
//! crash after a handler and before its ack redelivers the message: make handlers idempotent
//! or de-duplicate).
//!
//! # When a handler fails
//!
//! Requeueing just the failed delivery (`nack` with requeue) would break its key's order: the
//! key's later messages, already here, would run before it comes back. So the executor never
//! does that. It follows [`OnFailure`]:
//!
//! - [`OnFailure::Stop`] (the default): stop consuming, let running handlers finish (and ack
//!   them), then cancel the consumer and requeue (`nack`, requeue) every delivery not yet
//!   handled, the failed one included, in arrival order, and return the error. Nothing of the
//!   failed key ran past the failure; the queue puts the requeued messages back in their
//!   positions, so the next consumer (a single-active standby, or this one restarted) sees
//!   them in order. A message that always fails makes this a stop-restart loop: look at
//!   [`KeyedMessage::redelivered`] or switch to dead-lettering for it.
//! - [`OnFailure::DeadLetter`]: reject the failed delivery without requeue (the queue's
//!   dead-letter exchange gets it, with an `x-death` entry; without one, RabbitMQ drops it)
//!   and carry on with the key's next message. The key's order holds for the messages that
//!   succeed; the failed one is out of the sequence, on purpose and visibly.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use amqp_client::api::{Consumer, Delivery, Error};
use amqp_client::codec::BasicProperties;
use bytes::Bytes;
use tokio::task::{Id, JoinError, JoinSet};

/// What the executor does when a handler returns an error or panics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop, requeue what was not handled (in arrival order), and return the error.
    #[default]
    Stop,
    /// Reject the failed delivery without requeue (to the dead-letter exchange) and go on.
    DeadLetter,
}

/// Why [`SerialExecutor::run`] stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SerialError<K, E> {
    /// A handler returned an error (with [`OnFailure::Stop`]).
    #[error("the handler failed for key {key:?}: {error}")]
    Handler {
        /// The delivery's key.
        key: K,
        /// The handler's error.
        error: E,
    },
    /// A handler panicked (with [`OnFailure::Stop`]).
    #[error("the handler panicked for key {key:?}")]
    Panicked {
        /// The delivery's key.
        key: K,
    },
    /// An ack, reject or cancel failed: the channel or connection is gone, and the broker
    /// requeues whatever was not acked.
    #[error(transparent)]
    Client(#[from] Error),
}

/// What a run that ended with its consumer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Deliveries handled and acked.
    pub acked: u64,
    /// Deliveries rejected to the dead-letter exchange ([`OnFailure::DeadLetter`]).
    pub dead_lettered: u64,
}

/// A delivery as a handler sees it: its key and content, but no way to ack it, because the
/// executor acks (a second ack of a tag closes the channel with 406).
#[derive(Clone, Debug)]
pub struct KeyedMessage<K> {
    key: K,
    delivery: Delivery,
}

impl<K> KeyedMessage<K> {
    /// The key it is serialised under.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        self.delivery.body()
    }

    /// The properties.
    pub fn properties(&self) -> BasicProperties<'_> {
        self.delivery.properties()
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.delivery.routing_key()
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        self.delivery.exchange()
    }

    /// Delivered before (a requeue or a consumer that went away): it may have been handled.
    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered()
    }
}

/// Runs a consumer's deliveries through a handler, one at a time per key, several keys at
/// once.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::ordering::{key, serial::SerialExecutor, single_active::consume_single_active};
/// let consumer = consume_single_active(&channel, "ledger", 64).await?;
/// let executor = SerialExecutor::new(key::header("account")).concurrency(16);
/// let drained = executor
///     .run(consumer, |message| async move {
///         // Entries of one account apply in order; other accounts run meanwhile.
///         println!("{:?}: {:?}", message.key(), message.body());
///         Ok::<(), std::io::Error>(())
///     })
///     .await?;
/// println!("{} acked", drained.acked);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SerialExecutor<F> {
    key: F,
    concurrency: usize,
    max_held: usize,
    on_failure: OnFailure,
}

impl<K, F> SerialExecutor<F>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    F: Fn(&Delivery) -> K,
{
    /// An executor keying deliveries by `key` (see [`super::key`]), running up to 16
    /// handlers at once, holding up to 1024 deliveries, stopping on failure.
    pub fn new(key: F) -> Self {
        SerialExecutor { key, concurrency: 16, max_held: 1024, on_failure: OnFailure::Stop }
    }

    /// At most this many handlers at once (at least 1). More than the consumer's prefetch
    /// cannot be used.
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.max(1);
        self
    }

    /// At most this many deliveries held (running or waiting behind their key) before the
    /// executor stops reading the consumer: a bound for consumers without a prefetch limit.
    pub fn max_held(mut self, deliveries: usize) -> Self {
        self.max_held = deliveries.max(1);
        self
    }

    /// What to do when a handler fails.
    pub fn on_failure(mut self, policy: OnFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// Handles the consumer's deliveries until it ends (cancelled, or its channel closed),
    /// then finishes what it holds and returns the counts; or stops early on a failure (see
    /// the module docs). Handlers run as tokio tasks.
    ///
    /// To stop it cleanly, cancel the consumer (`Channel::basic_cancel` with the tag read
    /// before handing the consumer over): what was received is still handled and acked.
    /// Dropping the returned future instead aborts the running handlers; their deliveries
    /// stay unacked until the channel closes, and then the broker requeues them.
    pub async fn run<H, Fut, E>(&self, mut consumer: Consumer, handler: H) -> Result<Drained, SerialError<K, E>>
    where
        H: Fn(KeyedMessage<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        let handler = Arc::new(handler);
        let mut state = Dispatch::new(self.concurrency);
        let mut consuming = true;
        let mut stop: Option<SerialError<K, E>> = None;
        loop {
            if stop.is_none() {
                state.start_ready(&handler);
            }
            if state.running.is_empty() && (!consuming || stop.is_some()) {
                break;
            }
            let reading = consuming && stop.is_none() && state.held < self.max_held;
            tokio::select! {
                Some(joined) = state.running.join_next_with_id(), if !state.running.is_empty() => {
                    if let Err(e) = self.finish(&mut state, joined).await {
                        stop.get_or_insert(e);
                    }
                }
                next = consumer.next_delivery(), if reading => match next {
                    Some(delivery) => state.enqueue((self.key)(&delivery), delivery),
                    None => consuming = false,
                },
            }
        }
        match stop {
            None => Ok(state.drained),
            Some(error) => Err(requeue_the_rest(consumer, consuming, state, error).await),
        }
    }

    /// Acks (or rejects) a finished handler's delivery and frees its key; an error means stop.
    async fn finish<E>(
        &self,
        state: &mut Dispatch<K, E>,
        joined: Result<(Id, Result<(), E>), JoinError>,
    ) -> Result<(), SerialError<K, E>> {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome.map_err(Failure::Error)),
            Err(e) => (e.id(), Err(Failure::Panicked)),
        };
        // Cannot be missing: every spawned task's id was recorded with its delivery.
        let Some((key, delivery)) = state.tasks.remove(&id) else { return Ok(()) };
        match outcome {
            Ok(()) => {
                delivery.ack().await?;
                state.drained.acked += 1;
            }
            Err(_) if self.on_failure == OnFailure::DeadLetter => {
                delivery.reject(false).await?;
                state.drained.dead_lettered += 1;
            }
            Err(failure) => {
                // The failed delivery goes back to the front of its key, to be requeued first.
                state.waiting.entry(key.clone()).or_default().push_front(delivery);
                return Err(failure.into_error(key));
            }
        }
        state.release(key);
        Ok(())
    }
}

/// Why a handler's task did not succeed, before its key is known.
enum Failure<E> {
    Error(E),
    Panicked,
}

impl<E> Failure<E> {
    fn into_error<K>(self, key: K) -> SerialError<K, E> {
        match self {
            Failure::Error(error) => SerialError::Handler { key, error },
            Failure::Panicked => SerialError::Panicked { key },
        }
    }
}

/// The executor's bookkeeping: which keys are running, what waits behind each, and which keys
/// are ready to run next (in the order they became ready, so no key starves).
struct Dispatch<K, E> {
    concurrency: usize,
    waiting: HashMap<K, VecDeque<Delivery>>,
    busy: HashSet<K>,
    ready: VecDeque<K>,
    running: JoinSet<Result<(), E>>,
    tasks: HashMap<Id, (K, Delivery)>,
    held: usize,
    drained: Drained,
}

impl<K: Clone + Eq + Hash, E> Dispatch<K, E> {
    fn new(concurrency: usize) -> Self {
        Dispatch {
            concurrency,
            waiting: HashMap::new(),
            busy: HashSet::new(),
            ready: VecDeque::new(),
            running: JoinSet::new(),
            tasks: HashMap::new(),
            held: 0,
            drained: Drained::default(),
        }
    }

    fn enqueue(&mut self, key: K, delivery: Delivery) {
        self.held += 1;
        let queue = self.waiting.entry(key.clone()).or_default();
        queue.push_back(delivery);
        if queue.len() == 1 && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
    }

    fn start_ready<H, Fut>(&mut self, handler: &Arc<H>)
    where
        K: Send + 'static,
        E: Send + 'static,
        H: Fn(KeyedMessage<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        while self.running.len() < self.concurrency {
            let Some(key) = self.ready.pop_front() else { return };
            let Some(delivery) = self.waiting.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
            self.busy.insert(key.clone());
            let message = KeyedMessage { key: key.clone(), delivery: delivery.clone() };
            let handler = Arc::clone(handler);
            let task = self.running.spawn(async move { handler(message).await });
            self.tasks.insert(task.id(), (key, delivery));
        }
    }

    /// The key's handler is done: its next delivery (if any) becomes ready.
    fn release(&mut self, key: K) {
        self.held -= 1;
        self.busy.remove(&key);
        match self.waiting.get(&key) {
            Some(queue) if !queue.is_empty() => self.ready.push_back(key),
            _ => {
                self.waiting.remove(&key);
            }
        }
    }
}

/// After a failure, with no handler running: cancels the consumer and requeues every
/// delivery not handled, in arrival order (delivery tags grow with arrival on a channel).
async fn requeue_the_rest<K, E>(
    mut consumer: Consumer,
    consuming: bool,
    state: Dispatch<K, E>,
    failure: SerialError<K, E>,
) -> SerialError<K, E> {
    // Errors while cancelling or requeueing are not reported over the failure that caused
    // them: they mean the channel is gone, and then the broker requeues every unacked
    // delivery itself.
    let mut rest: Vec<Delivery> = state.waiting.into_values().flatten().collect();
    if consuming {
        if consumer.cancel().await.is_err() {
            return failure;
        }
        while let Some(delivery) = consumer.next_delivery().await {
            rest.push(delivery);
        }
    }
    rest.sort_by_key(|d| d.tag().tag);
    for delivery in rest {
        if delivery.nack(true).await.is_err() {
            break;
        }
    }
    failure
}
