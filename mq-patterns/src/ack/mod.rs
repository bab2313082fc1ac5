//! No loss on the way out: a consumer that runs a handler per delivery, acks only after the
//! handler succeeded, and on failure retries or parks the message by a [`FailurePolicy`] that
//! counts attempts from what RabbitMQ wrote on the message (`x-delivery-count` on quorum
//! queues, `x-death` in a dead-letter [`RetryLoop`]). Handlers run concurrently, at most
//! `prefetch` at once; each delivery is settled (acked, nacked or rejected) exactly once.
//!
//! The guarantee: at-least-once processing. A message leaves the queue only after its handler
//! returned `Ok`, or after the policy moved it to a dead-letter exchange, a retry queue or the
//! parking exchange; a crash or lost connection in between makes the broker redeliver it. A
//! poison message stops after `max_attempts` deliveries instead of looping, and a message whose
//! attempt count cannot be read (a malformed `x-death`) is parked with a typed error, never
//! acked. Not guaranteed: exactly-once. A redelivery after a crash between handler and ack runs
//! the handler again, and a parked message can be parked twice if the consumer dies between
//! the parking confirm and the ack; de-duplicate by `message-id` where that matters.
//!
//! Which retry design works on RabbitMQ 3.10:
//! - Quorum queues ([`Retry::Requeue`]): basic.nack with requeue; the queue counts returns in
//!   `x-delivery-count`, and the last failure rejects without requeue into the queue's
//!   dead-letter exchange. Declare the queue with [`QuorumQueue`], which refuses an
//!   `x-delivery-limit` without a dead-letter exchange (RabbitMQ would drop the message).
//! - Classic queues ([`Retry::DeadLetterLoop`]): a requeue is not counted, so a failure rejects
//!   without requeue into a delay queue that dead-letters back, and RabbitMQ counts the
//!   rejections in `x-death`. The work queue's dead-letter exchange is taken by the loop, so a
//!   poison message is published to a parking exchange under a publisher confirm, then acked.
//!
//! # Push or pull
//! This consumer is push: basic.consume streams messages under a prefetch limit, with no round
//! trip per message. It fits every steady workload. Pull ([`crate::pull`], basic.get until
//! get-empty) fits bursty batch jobs that set their own pace: a cron job that drains what has
//! piled up, or a worker that takes N messages only when it has room for N. Each basic.get is a
//! round trip, so pulling a steady stream is slower and busier than consuming it.

mod policy;
mod quorum;
mod retry_loop;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use amqp_client::api::{AckTag, BasicConsumeOptions, Channel, ChannelError, Consumer, Delivery, Error};
use amqp_client::codec::FieldTable;
use tokio::task::{JoinError, JoinSet};

use crate::confirms::{ConfirmingPublisher, PublishError, RetryPolicy};
use crate::prefetch::Prefetch;
pub use policy::{AttemptError, DELIVERY_COUNT_HEADER, FailurePolicy, Retry};
pub use quorum::{DeclareError, QueueSpecError, QuorumQueue, check_quorum_arguments};
pub use retry_loop::RetryLoop;

/// What a handler returns on failure: any error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Processes one delivery. Implemented for every `Fn(Delivery) -> impl Future<Output =
/// Result<(), HandlerError>>`; the consumer settles the delivery, the handler must not.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery; `Ok` means it may be acked.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(delivery)
    }
}

/// How a delivery was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// basic.ack after the handler succeeded.
    Acked,
    /// basic.nack with requeue, for another attempt ([`Retry::Requeue`]).
    Requeued,
    /// basic.reject without requeue into the retry loop ([`Retry::DeadLetterLoop`]).
    Retried,
    /// basic.reject without requeue into the queue's dead-letter exchange: poison.
    DeadLettered,
    /// Published to the parking exchange, confirmed, then acked: poison.
    Parked,
    /// The ack, nack or reject could not be sent (the channel is gone): the broker redelivers.
    Unsettled,
}

/// One settled delivery, for the caller's logs and metrics.
#[derive(Debug)]
pub struct Report {
    /// The delivery.
    pub tag: AckTag,
    /// Which attempt it was, when that could be read.
    pub attempt: Option<u32>,
    /// What was done with it.
    pub action: Action,
    /// Why it was not simply acked.
    pub error: Option<AckError>,
}

/// Why a delivery was not simply acked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The handler returned an error.
    #[error("handler failed: {0}")]
    Handler(#[source] HandlerError),
    /// The handler panicked.
    #[error("handler panicked")]
    Panicked,
    /// The attempt count could not be read, so the policy could not be applied.
    #[error(transparent)]
    Attempt(#[from] AttemptError),
    /// A poison message could not be parked; it was sent round the retry loop instead.
    #[error("parking failed: {0}")]
    Park(#[from] PublishError),
    /// The ack, nack or reject failed.
    #[error(transparent)]
    Client(#[from] Error),
}

/// A push consumer with manual acks, concurrent handlers and a failure policy.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), amqp_client::Error> {
/// use mq_patterns::ack::{AckingConsumer, FailurePolicy};
/// let consumer = AckingConsumer::start(channel, "orders", 10, FailurePolicy::requeue(3))
///     .await?
///     .on_settled(|report| eprintln!("{:?}: {:?}", report.tag, report.action));
/// consumer
///     .run(|delivery: amqp_client::api::Delivery| async move {
///         let text = std::str::from_utf8(delivery.body())?;
///         println!("order {text}");
///         Ok(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct AckingConsumer {
    channel: Channel,
    consumer: Consumer,
    queue: String,
    concurrency: usize,
    policy: FailurePolicy,
    parking: Option<ConfirmingPublisher>,
    observer: Option<Box<dyn FnMut(Report) + Send>>,
}

/// A delivery whose handler is running.
struct Running {
    delivery: Delivery,
    attempt: u32,
}

impl AckingConsumer {
    /// Sets a per-consumer prefetch of `prefetch` (at least 1) on `channel` and starts a
    /// consumer on `queue`; at most `prefetch` handlers run at once. RabbitMQ lifts a
    /// per-channel limit set on `channel` before this; set one afterwards if you need it. A dead-letter-loop policy
    /// also opens a second channel, in confirm mode, to park poison messages on.
    pub async fn start(channel: Channel, queue: &str, prefetch: u16, policy: FailurePolicy) -> Result<Self, Error> {
        let prefetch = prefetch.max(1);
        Prefetch::per_consumer(prefetch).apply(&channel).await?;
        let parking = match policy.retry() {
            Retry::DeadLetterLoop { .. } => {
                let park_channel = channel.connection().open_channel().await?;
                Some(ConfirmingPublisher::new(park_channel, 16, RetryPolicy::default()).await?)
            }
            _ => None,
        };
        let consumer = channel.basic_consume(queue, BasicConsumeOptions::default(), &FieldTable::new()).await?;
        Ok(AckingConsumer {
            channel,
            consumer,
            queue: queue.to_owned(),
            concurrency: usize::from(prefetch),
            policy,
            parking,
            observer: None,
        })
    }

    /// Calls `observer` with a report of every settled delivery.
    pub fn on_settled(mut self, observer: impl FnMut(Report) + Send + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The consumer tag, to cancel it with [`Channel::basic_cancel`]: [`run`](Self::run) then
    /// finishes the deliveries it already has and returns.
    pub fn consumer_tag(&self) -> &str {
        self.consumer.tag()
    }

    /// Runs `handler` on every delivery until the consumer ends (cancelled, or its channel
    /// closed), then waits for the running handlers and settles their deliveries. Errors
    /// only if the channel or connection failed; each delivery's own fate is in its
    /// [`Report`].
    pub async fn run<H: Handler>(mut self, handler: H) -> Result<(), Error> {
        let handler = Arc::new(handler);
        let mut tasks = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Running> = HashMap::new();
        let mut ended = false;
        while !(ended && tasks.is_empty()) {
            tokio::select! {
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, Ok(result)),
                        Err(error) => (error.id(), Err(error)),
                    };
                    // Every spawned task was inserted under its id before the loop came back here.
                    if let Some(done) = running.remove(&id) {
                        self.settle(done, result).await;
                    }
                }
                next = self.consumer.next_delivery(), if !ended && tasks.len() < self.concurrency => match next {
                    None => ended = true,
                    Some(delivery) => self.dispatch(delivery, &handler, &mut tasks, &mut running).await,
                },
            }
        }
        match self.channel.close_reason() {
            None | Some(ChannelError::ClosedByClient { .. }) => Ok(()),
            Some(error) => Err(error.into()),
        }
    }

    /// Starts the handler on a delivery whose attempt count reads; parks one whose does not.
    async fn dispatch<H: Handler>(
        &mut self,
        delivery: Delivery,
        handler: &Arc<H>,
        tasks: &mut JoinSet<Result<(), HandlerError>>,
        running: &mut HashMap<tokio::task::Id, Running>,
    ) {
        match self.policy.attempt(&self.queue, &delivery.properties(), delivery.redelivered()) {
            Ok(attempt) => {
                let handler = Arc::clone(handler);
                let given = delivery.clone();
                let id = tasks.spawn(async move { handler.handle(given).await }).id();
                running.insert(id, Running { delivery, attempt });
            }
            Err(error) => self.poison(&delivery, None, Some(AckError::Attempt(error))).await,
        }
    }

    /// Settles a delivery whose handler finished (or panicked).
    async fn settle(&mut self, done: Running, result: Result<Result<(), HandlerError>, JoinError>) {
        let Running { delivery, attempt } = done;
        let error = match result {
            Ok(Ok(())) => {
                let (action, error) = settled(delivery.ack().await, Action::Acked);
                return self.report(delivery.tag(), Some(attempt), action, error);
            }
            Ok(Err(error)) => AckError::Handler(error),
            Err(_) => AckError::Panicked,
        };
        if attempt >= self.policy.max_attempts() {
            return self.poison(&delivery, Some(attempt), Some(error)).await;
        }
        let (action, failure) = match self.policy.retry() {
            Retry::DeadLetterLoop { .. } => settled(delivery.reject(false).await, Action::Retried),
            _ => settled(delivery.nack(true).await, Action::Requeued),
        };
        self.report(delivery.tag(), Some(attempt), action, failure.or(Some(error)));
    }

    /// Takes a message out of the retry cycle: into the queue's dead-letter exchange, or parked.
    async fn poison(&mut self, delivery: &Delivery, attempt: Option<u32>, error: Option<AckError>) {
        let (action, failure) = match (self.policy.retry(), &self.parking) {
            (Retry::DeadLetterLoop { park_exchange, park_routing_key }, Some(parking)) => {
                let properties = delivery.properties();
                match parking.publish(park_exchange, park_routing_key, &properties, delivery.body().clone()).await {
                    // Acked only once the broker confirmed the parked copy: a crash in between
                    // leaves the original to be redelivered, never lost.
                    Ok(_) => settled(delivery.ack().await, Action::Parked),
                    Err(park) => {
                        let (action, failure) = settled(delivery.reject(false).await, Action::Retried);
                        (action, failure.or(Some(AckError::Park(park))))
                    }
                }
            }
            _ => settled(delivery.reject(false).await, Action::DeadLettered),
        };
        self.report(delivery.tag(), attempt, action, failure.or(error));
    }

    fn report(&mut self, tag: AckTag, attempt: Option<u32>, action: Action, error: Option<AckError>) {
        if let Some(observer) = self.observer.as_mut() {
            observer(Report { tag, attempt, action, error });
        }
    }
}

/// The action taken, or `Unsettled` with the client's error when it could not be sent.
fn settled(sent: Result<(), Error>, action: Action) -> (Action, Option<AckError>) {
    match sent {
        Ok(()) => (action, None),
        Err(error) => (Action::Unsettled, Some(AckError::Client(error))),
    }
}
