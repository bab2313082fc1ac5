//! Guaranteed delivery: the transactional outbox. The application writes its message into an
//! outbox table of its own database IN THE SAME TRANSACTION as the business change the message
//! announces; a [`Relay`] publishes the pending rows with publisher confirms and marks each row
//! sent only after the broker's ack; its sweep re-sends rows that were published (or claimed)
//! but stayed unmarked longer than a threshold, as happens when a relay dies between the
//! publish and the mark. Here live the message, the row and the storage trait; the stores are
//! `sqlite::SqliteOutbox` (feature `sqlite`, the embedded default) and
//! `postgres::PostgresOutbox` (feature `postgres`, for production); the relay is [`relay`].
//!
//! The guarantee: every committed business change reaches the broker at least once (a rolled
//! back transaction takes its message with it, and a committed one is retried until confirmed),
//! each time with the same `message-id`, stamped at enqueue. Together with the idempotent
//! consumer ([`crate::dedup`]), which records each processed id, every message is processed
//! exactly once. Not guaranteed: order across relays or across re-sends (a swept row is
//! published after younger ones), nor latency: a message waits up to the relay's poll
//! interval, and a re-send up to the sweep threshold. A row the broker refuses (unroutable,
//! or nacked every attempt) is not dropped: it stays unmarked, the sweep tries it again, and
//! each pass reports it ([`PassReport::refused`]). Uses only `amqp-client`'s public API.
//!
//! ```text
//!   enqueue (in the app's tx)      claim (relay)              confirm + mark (relay)
//!  ─────────────────────────▶ pending ──────────▶ pending, attempted ──────────▶ sent
//!                                                  │  ▲
//!                                                  └──┘ sweep: unmarked longer than the threshold
//! ```

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod relay;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amqp_client::codec::{BasicProperties, FieldTable, FieldValue, RawTable, Table};
use bytes::Bytes;

pub use relay::{PassReport, Relay, RelayConfig, RelayError};

/// The table every store keeps its rows in.
pub const TABLE: &str = "mq_outbox";

/// A message the application wants published once its transaction commits.
///
/// ```
/// use mq_patterns::outbox::OutboxMessage;
/// let message = OutboxMessage::new("orders", "order.created", r#"{"order":17}"#)
///     .with_content_type("application/json")
///     .with_header("tenant", "acme");
/// assert_eq!(message.routing_key(), "order.created");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxMessage {
    message_id: Option<String>,
    exchange: String,
    routing_key: String,
    content_type: Option<String>,
    headers: FieldTable,
    persistent: bool,
    body: Bytes,
}

impl OutboxMessage {
    /// A persistent message for `exchange` with `routing_key`; its id is stamped at enqueue.
    pub fn new(exchange: impl Into<String>, routing_key: impl Into<String>, body: impl Into<Bytes>) -> Self {
        OutboxMessage {
            message_id: None,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            content_type: None,
            headers: FieldTable::new(),
            persistent: true,
            body: body.into(),
        }
    }

    /// Uses `id` as the `message-id` instead of a stamped one (a business key, say). It must
    /// be unique in the outbox: enqueueing it twice fails the second transaction.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// The `content-type` property.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// Delivery mode 2 (persistent, the default) or 1 (transient).
    pub fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// The exchange it goes to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Its routing key.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The `content-type` it carries.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Its headers.
    pub fn headers(&self) -> &FieldTable {
        &self.headers
    }

    /// Whether it is published persistent (delivery mode 2).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The `message-id` to store with it: the caller's, or a fresh unique one (for stores
    /// written outside this crate; the built-in ones call it at enqueue).
    pub fn id_for_enqueue(&self) -> String {
        self.message_id.clone().unwrap_or_else(|| ids().next())
    }

    /// The headers as table wire bytes without the length prefix, or `None` for no headers:
    /// what a store keeps, and [`decode_headers`] reads back.
    pub fn header_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        let encoded = self.headers.to_bytes().map_err(|e| StoreError::BadMessage(e.to_string()))?;
        // The first four bytes are the table's length prefix, which `RawTable::parse` does not want.
        Ok(Some(encoded.get(4..).unwrap_or_default().to_vec()))
    }
}

/// A row the relay claimed: a message to publish, as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    /// The `message-id`, stamped at enqueue.
    pub id: String,
    /// The exchange.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The `content-type` property.
    pub content_type: Option<String>,
    /// The headers (empty for none).
    pub headers: FieldTable,
    /// Delivery mode 2 when true, 1 otherwise.
    pub persistent: bool,
    /// The body.
    pub body: Bytes,
    /// Publishes so far, this one included.
    pub attempts: u32,
}

impl OutboxRow {
    /// The properties to publish with: the stored ones and the row's id as `message-id`.
    pub fn properties(&self) -> BasicProperties<'_> {
        BasicProperties {
            message_id: Some(&self.id),
            content_type: self.content_type.as_deref(),
            headers: (!self.headers.is_empty()).then_some(Table::Owned(&self.headers)),
            delivery_mode: Some(if self.persistent { 2 } else { 1 }),
            ..Default::default()
        }
    }
}

/// Reads stored header bytes (from [`OutboxMessage::header_bytes`]) back into a table for
/// the row with message id `id`; bytes that are not a valid table (the row was written by
/// hand) are a typed error, not a message published without its headers.
pub fn decode_headers(id: &str, stored: Option<&[u8]>) -> Result<FieldTable, StoreError> {
    match stored {
        None => Ok(FieldTable::new()),
        Some(bytes) => RawTable::parse(bytes)
            .map(|raw| raw.to_owned())
            .map_err(|e| StoreError::BadRow { id: id.to_owned(), reason: format!("headers: {e}") }),
    }
}

/// How many rows are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Pending and never claimed by a relay.
    pub pending: u64,
    /// Claimed (and perhaps published) but not yet marked sent.
    pub unconfirmed: u64,
    /// Confirmed by the broker and marked sent.
    pub sent: u64,
}

/// The storage of an outbox, as the relay sees it. The application's side (enqueue within its
/// own transaction) is on each store, because it takes that database's transaction type.
///
/// A claim stamps `last_attempt_at` and counts the attempt in the same statement, so a relay
/// that dies after claiming leaves rows that the sweep finds later: nothing is lost. Two relays
/// on one PostgreSQL outbox claim disjoint rows (`FOR UPDATE SKIP LOCKED`).
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` pending rows that no relay has attempted yet, oldest first.
    fn claim_pending(&self, limit: usize) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;

    /// Claims up to `limit` rows attempted at least `older_than` ago and still not marked
    /// sent, oldest attempt first.
    fn claim_unconfirmed(
        &self,
        older_than: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;

    /// Marks the rows with these ids sent, in one transaction.
    fn mark_sent(&self, ids: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts the rows in each state.
    fn counts(&self) -> impl Future<Output = Result<OutboxCounts, StoreError>> + Send;

    /// Deletes the rows marked sent more than `older_than` ago, and says how many: the outbox
    /// keeps sent rows (for audit, and to answer "was it sent?") until this is called.
    fn purge_sent(&self, older_than: Duration) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What went wrong in an outbox store: the database's error, or data it cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (unavailable, locked, full, …).
    #[cfg(feature = "sqlite")]
    #[error("sqlite outbox: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (down, connection lost, …).
    #[cfg(feature = "postgres")]
    #[error("postgres outbox: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The message cannot be stored (its headers do not encode).
    #[error("the message cannot be stored: {0}")]
    BadMessage(String),
    /// A stored row cannot be published as it is.
    #[error("outbox row {id} is unusable: {reason}")]
    BadRow {
        /// The row's message id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker that runs the blocking database call died (it panicked or the runtime is
    /// shutting down).
    #[error("the database worker failed: {0}")]
    Worker(String),
}

/// Message ids unique across processes and restarts: a random 64-bit prefix per process (from
/// the standard library's randomly seeded hasher and the clock) and a counter.
#[derive(Debug)]
struct IdSource {
    prefix: u64,
    next: AtomicU64,
}

impl IdSource {
    fn next(&self) -> String {
        format!("outbox-{:016x}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

fn ids() -> &'static IdSource {
    static IDS: OnceLock<IdSource> = OnceLock::new();
    IDS.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        hasher.write_u32(std::process::id());
        IdSource { prefix: hasher.finish(), next: AtomicU64::new(0) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_ids_are_unique_and_a_given_id_is_kept() {
        let m = OutboxMessage::new("x", "k", "b");
        assert_ne!(m.id_for_enqueue(), m.id_for_enqueue());
        assert_eq!(m.with_message_id("order-17").id_for_enqueue(), "order-17");
    }

    #[test]
    fn headers_survive_the_row_round_trip() {
        let m = OutboxMessage::new("x", "k", "b")
            .with_header("tenant", "acme")
            .with_header("n", 7i32)
            .with_content_type("text/plain");
        let stored = m.header_bytes().unwrap();
        let row = OutboxRow {
            id: "m1".into(),
            exchange: "x".into(),
            routing_key: "k".into(),
            content_type: m.content_type.clone(),
            headers: decode_headers("m1", stored.as_deref()).unwrap(),
            persistent: true,
            body: m.body.clone(),
            attempts: 1,
        };
        let props = row.properties();
        let Some(Table::Owned(headers)) = props.headers else { panic!("headers are set: {props:?}") };
        assert_eq!(headers, &m.headers);
        assert_eq!(
            (props.message_id, props.content_type, props.delivery_mode),
            (Some("m1"), Some("text/plain"), Some(2))
        );
    }

    #[test]
    fn corrupt_stored_headers_are_a_typed_error() {
        let decoded = decode_headers("m1", Some(&[3, b'a', b'b']));
        assert!(matches!(decoded, Err(StoreError::BadRow { ref id, .. }) if id == "m1"), "{decoded:?}");
        assert!(decode_headers("m2", None).unwrap().is_empty());
    }
}
