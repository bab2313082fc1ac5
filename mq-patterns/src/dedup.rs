//! No duplicate processing: an idempotent consumer keyed by the `message-id` property (which
//! [`crate::confirms::ConfirmingPublisher`] stamps on every message), over a pluggable
//! [`DedupStore`] of the ids already processed.
//!
//! For each delivery [`IdempotentConsumer::handle`] reads the `message-id`, opens a
//! transaction in the store that records the id, runs the handler inside it, commits, and
//! only then acks. A crash anywhere before the commit leaves no record (the transaction rolls
//! back, the broker redelivers, the message is processed again as if for the first time);
//! a crash after the commit and before the ack leaves the record, so the redelivery is
//! recognised and only acked. Nothing is dropped silently: a delivery without a `message-id`
//! is dead-lettered or left unacked ([`MissingIdPolicy`]), and a failing store or handler
//! requeues it; each case returns a typed [`DedupError`].
//!
//! The guarantee: a message whose id the store holds is never handed to the handler again,
//! and no message is acked before its id is recorded. With a durable store (`sqlite::SqliteStore`,
//! `postgres::PostgresStore`, behind the cargo features `sqlite` (on by default) and
//! `postgres`) whose transaction the handler also writes its own changes through, each
//! message's effect is committed exactly once.
//! Not guaranteed: exactly-once for effects outside that transaction (an HTTP call, a
//! publish, another database): a crash after such an effect and before the commit repeats
//! it, so those get at-least-once and must be idempotent themselves. The in-memory store
//! ([`memory::MemoryStore`]) forgets on restart and forgets ids it evicts by count or age,
//! so it only recognises redeliveries within one process and within its bounds.
//!
//! It takes the client's deliveries and a [`crate::recovery::RecoveringConsumer`]'s alike
//! ([`AckableDelivery`]). Across a connection loss the two halves meet: a delivery processed
//! and committed whose ack was lost with the connection comes back redelivered, and the
//! store recognises it; its failed ack is [`DedupError::Recovery`].
//!
//! Uses only `amqp-client`'s public API.

mod delivery;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use amqp_client::api::{Consumer, Delivery, Error};

use crate::recovery::RecoveryError;
pub use delivery::AckableDelivery;
pub use memory::MemoryStore;

/// A boxed, sendable future: what the store and handler traits return, so that a store can
/// be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A handler's error, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A store of processed message ids.
///
/// [`DedupStore::begin`] starts recording an id: it answers whether the id was processed
/// already, and if not hands out a [`Transaction`] in which the handler runs. The id counts as
/// processed only once that transaction commits; a transaction dropped uncommitted (a handler
/// error, an aborted task, a crash) leaves no record.
pub trait DedupStore: Send + Sync {
    /// The open transaction the handler runs in (and, for SQL stores, writes through).
    type Tx: Transaction;

    /// Starts processing `message_id`.
    fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<Self::Tx>, StoreError>>;
}

/// An open transaction that records one id as processed when it commits.
pub trait Transaction: Send {
    /// Commits the record (and whatever the handler wrote through this transaction).
    fn commit(self) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// What [`DedupStore::begin`] found.
#[derive(Debug)]
pub enum Begun<T> {
    /// Never processed: process it inside this transaction.
    Fresh(T),
    /// Processed before: ack it, do not process it.
    AlreadyProcessed,
    /// Another handler of the same store is processing the same id right now: requeue it. It
    /// comes back (possibly more than once while that handler runs) until that one has
    /// committed (it is then recognised) or failed (it is then processed). Only the in-memory
    /// store answers this; the SQL stores make the second begin wait instead.
    InProgress,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached (refused, closed, gone away).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A table name that is not a plain identifier (letters, digits, `_`, not starting with a digit).
    #[error("{0:?} is not a usable table name")]
    InvalidTable(String),
    /// The blocking task that ran a SQLite call failed (it panicked, or the runtime shut down).
    #[error("the store's blocking task failed: {0}")]
    Task(String),
    /// SQLite refused or failed the statement.
    #[cfg(feature = "sqlite")]
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed the statement.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// What [`IdempotentConsumer::handle`] did with a delivery, when nothing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The handler ran, the id was recorded, the delivery was acked.
    Processed,
    /// The id was recorded before (a redelivery or a duplicate publish): acked, not processed.
    Duplicate,
    /// Another handler holds the same id right now: requeued (nack, requeue=true).
    Requeued,
}

/// What is done with a delivery that has no `message-id` (and so cannot be de-duplicated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingIdPolicy {
    /// Reject it without requeue: it goes to the queue's dead-letter exchange. On a queue
    /// without one RabbitMQ discards it, so give such queues a dead-letter exchange
    /// ([`crate::dead_letter`]) or choose [`MissingIdPolicy::LeaveUnacked`].
    #[default]
    DeadLetter,
    /// Neither ack nor reject it: the caller decides (the error carries the delivery tag),
    /// and until then the broker holds it unacked and redelivers it if the channel closes.
    LeaveUnacked,
}

/// Why a delivery was not processed. Every variant says what became of the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// The delivery had no (or an empty) `message-id`: disposed of by the [`MissingIdPolicy`].
    #[error("delivery {delivery_tag} has no message-id; {policy:?} applied")]
    MissingMessageId {
        /// The broker's delivery tag.
        delivery_tag: u64,
        /// What was done with it.
        policy: MissingIdPolicy,
    },
    /// The store failed: nothing was recorded, the delivery was requeued (nack, requeue=true).
    #[error("store failed for message {message_id}; requeued: {source}")]
    Store {
        /// The message's id.
        message_id: String,
        /// Why.
        source: StoreError,
    },
    /// The handler failed: its transaction rolled back, the delivery was requeued.
    #[error("handler failed for message {message_id}; requeued: {source}")]
    Handler {
        /// The message's id.
        message_id: String,
        /// The handler's error.
        source: BoxError,
    },
    /// An ack, nack or reject could not be sent. The broker still holds the message unacked
    /// and redelivers it when the channel closes; if the id was recorded the redelivery is
    /// recognised.
    #[error(transparent)]
    Client(#[from] Error),
    /// An ack, nack or reject of a [`RecoveredDelivery`](crate::recovery::RecoveredDelivery)
    /// failed. [`RecoveryError::StaleDelivery`] means the connection it came on was lost: the
    /// broker has requeued it and delivers it again, and if its id was recorded (a
    /// [`Handled::Processed`] that only missed its ack) the redelivery is recognised.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// An idempotent consumer: de-duplicates deliveries by `message-id` through a [`DedupStore`].
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use amqp_client::codec::FieldTable;
/// use mq_patterns::dedup::{Handled, IdempotentConsumer, MemoryStore};
///
/// let dedup = IdempotentConsumer::new(MemoryStore::new(100_000, Duration::from_secs(3600)));
/// let mut consumer = channel.basic_consume("orders", Default::default(), &FieldTable::new()).await?;
/// while let Some(delivery) = consumer.next_delivery().await {
///     let outcome = dedup
///         .handle(&delivery, |d, _tx| {
///             Box::pin(async move {
///                 println!("processing {:?}", d.properties().message_id);
///                 Ok(())
///             })
///         })
///         .await?;
///     if outcome == Handled::Duplicate {
///         println!("a redelivery, recognised and acked");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IdempotentConsumer<S> {
    store: S,
    missing_id: MissingIdPolicy,
}

impl<S: DedupStore> IdempotentConsumer<S> {
    /// A consumer over `store`, dead-lettering deliveries without a `message-id`.
    pub fn new(store: S) -> Self {
        IdempotentConsumer { store, missing_id: MissingIdPolicy::default() }
    }

    /// Chooses what happens to deliveries without a `message-id`.
    pub fn on_missing_id(mut self, policy: MissingIdPolicy) -> Self {
        self.missing_id = policy;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Processes one delivery at most once: records its id and runs `handler` in one store
    /// transaction, commits, then acks. A duplicate is acked without running the handler.
    /// On a store or handler error the delivery is requeued and nothing is recorded.
    /// `delivery` is the client's [`Delivery`] or a recovering consumer's
    /// [`RecoveredDelivery`](crate::recovery::RecoveredDelivery) (see [`AckableDelivery`]).
    pub async fn handle<D, F>(&self, delivery: &D, handler: F) -> Result<Handled, DedupError>
    where
        D: AckableDelivery,
        F: for<'t> FnOnce(&'t D, &'t mut S::Tx) -> BoxFuture<'t, Result<(), BoxError>>,
    {
        let Some(message_id) = delivery.message_id().filter(|id| !id.is_empty()) else {
            return Err(self.refuse_missing_id(delivery).await);
        };
        let mut tx = match self.store.begin(message_id).await {
            Ok(Begun::Fresh(tx)) => tx,
            Ok(Begun::AlreadyProcessed) => {
                delivery.ack().await.map_err(Into::into)?;
                return Ok(Handled::Duplicate);
            }
            Ok(Begun::InProgress) => {
                delivery.nack(true).await.map_err(Into::into)?;
                return Ok(Handled::Requeued);
            }
            Err(source) => {
                return Err(requeue(delivery, DedupError::Store { message_id: message_id.into(), source }).await);
            }
        };
        if let Err(source) = handler(delivery, &mut tx).await {
            drop(tx); // rolls back before the message can come back
            return Err(requeue(delivery, DedupError::Handler { message_id: message_id.into(), source }).await);
        }
        if let Err(source) = tx.commit().await {
            return Err(requeue(delivery, DedupError::Store { message_id: message_id.into(), source }).await);
        }
        // The record is committed: from here a crash costs a redelivery that is recognised.
        delivery.ack().await.map_err(Into::into)?;
        Ok(Handled::Processed)
    }

    /// Handles every delivery of `consumer` with `handler` until the consumer ends, and
    /// returns at the first error (with that delivery already requeued or disposed of as
    /// the error says), so that the caller sees every failure and decides whether to go on.
    pub async fn run<F>(&self, consumer: &mut Consumer, mut handler: F) -> Result<(), DedupError>
    where
        F: for<'t> FnMut(&'t Delivery, &'t mut S::Tx) -> BoxFuture<'t, Result<(), BoxError>>,
    {
        while let Some(delivery) = consumer.next_delivery().await {
            self.handle(&delivery, &mut handler).await?;
        }
        Ok(())
    }

    async fn refuse_missing_id<D: AckableDelivery>(&self, delivery: &D) -> DedupError {
        let delivery_tag = delivery.delivery_tag();
        if self.missing_id == MissingIdPolicy::DeadLetter {
            if let Err(e) = delivery.reject(false).await {
                return e.into();
            }
        }
        DedupError::MissingMessageId { delivery_tag, policy: self.missing_id }
    }
}

/// Requeues `delivery` and returns `error`. A failed nack is not reported in its place: it
/// means the channel is gone, and the broker requeues every unacked message of a closed
/// channel, so the message is requeued either way and the first cause is the one to see.
async fn requeue<D: AckableDelivery>(delivery: &D, error: DedupError) -> DedupError {
    let _ = delivery.nack(true).await;
    error
}

/// Table names are spliced into SQL, so only plain identifiers are accepted.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn checked_table(table: &str) -> Result<&str, StoreError> {
    let mut chars = table.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && table.len() <= 63;
    if plain { Ok(table) } else { Err(StoreError::InvalidTable(table.to_owned())) }
}
