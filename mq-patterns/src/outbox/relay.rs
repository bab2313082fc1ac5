//! The outbox relay: claims pending rows, publishes them through a [`ConfirmingPublisher`] and
//! marks each row sent only after the broker acked it; its sweep re-sends rows that stayed
//! unmarked longer than a threshold. Touches an [`OutboxStore`] and the publisher, nothing else.
//!
//! A relay that dies anywhere loses nothing: before the mark, the row is still unmarked and the
//! next sweep (by this relay or another) publishes it again with the same `message-id`, which
//! the idempotent consumer recognises. The price is duplicates at the broker, never gaps.

use std::time::Duration;

use tokio::task::JoinSet;

use super::{OutboxRow, OutboxStore, StoreError};
use crate::confirms::{ConfirmingPublisher, PublishError};

/// How a relay paces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Rows claimed, published and marked together.
    pub batch: usize,
    /// The wait after a pass that found nothing to do: the latency a new message may see.
    pub poll_interval: Duration,
    /// A claimed row still unmarked after this long is published again. Keep it well above the
    /// time a batch takes to be confirmed, or healthy rows are sent twice.
    pub resend_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { batch: 500, poll_interval: Duration::from_millis(200), resend_after: Duration::from_secs(30) }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows confirmed by the broker and marked sent.
    pub sent: usize,
    /// Rows the broker refused (nacked every attempt, or unroutable): they stay unmarked and
    /// the sweep tries them again after `resend_after`.
    pub refused: Vec<PublishError>,
}

/// Why a pass stopped early. The rows it claimed stay unmarked for the sweep: none is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The outbox's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The channel or connection to the broker failed.
    #[error("publishing failed: {0}")]
    Client(#[from] amqp_client::Error),
    /// A publishing task died (it panicked, or the runtime is shutting down).
    #[error("a publishing task failed: {0}")]
    Task(String),
}

/// Publishes an outbox's rows with confirms.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::confirms::{ConfirmingPublisher, RetryPolicy};
/// use mq_patterns::outbox::{Relay, RelayConfig, sqlite::SqliteOutbox};
/// let store = SqliteOutbox::open("shop.db")?;
/// let publisher = ConfirmingPublisher::new(channel, 500, RetryPolicy::default()).await?;
/// let relay = Relay::new(store, publisher, RelayConfig::default());
/// let report = relay.relay_pending().await?; // one batch; `relay.run()` loops forever
/// println!("{} sent", report.sent);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay<S> {
    store: S,
    publisher: ConfirmingPublisher,
    config: RelayConfig,
}

impl<S: OutboxStore> Relay<S> {
    /// A relay over `store` that publishes through `publisher`.
    pub fn new(store: S, publisher: ConfirmingPublisher, config: RelayConfig) -> Self {
        Relay { store, publisher, config: RelayConfig { batch: config.batch.max(1), ..config } }
    }

    /// The store it reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Publishes one batch of pending rows that no relay has attempted yet.
    pub async fn relay_pending(&self) -> Result<PassReport, RelayError> {
        let rows = self.store.claim_pending(self.config.batch).await?;
        self.publish(rows).await
    }

    /// Publishes again one batch of rows that stayed unmarked longer than `resend_after`.
    pub async fn sweep(&self) -> Result<PassReport, RelayError> {
        let rows = self.store.claim_unconfirmed(self.config.resend_after, self.config.batch).await?;
        self.publish(rows).await
    }

    /// Relays and sweeps until an error, waiting `poll_interval` whenever a pass of both finds
    /// nothing to do. Stop it by dropping (or aborting) the future: that is safe at any point.
    pub async fn run(&self) -> Result<std::convert::Infallible, RelayError> {
        loop {
            let fresh = self.relay_pending().await?;
            let swept = self.sweep().await?;
            if fresh.claimed == 0 && swept.claimed == 0 {
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
    }

    /// Publishes `rows` at once (the publisher's window bounds what is unconfirmed), then marks
    /// the confirmed ones sent. On a broker failure the confirmed rows are still marked first,
    /// so that fewer are sent twice.
    async fn publish(&self, rows: Vec<OutboxRow>) -> Result<PassReport, RelayError> {
        let mut report = PassReport { claimed: rows.len(), ..Default::default() };
        // A JoinSet, so that dropping this future (a relay killed) aborts its publishes too.
        let mut publishes = JoinSet::new();
        for row in rows {
            let publisher = self.publisher.clone();
            publishes.spawn(async move {
                publisher.publish(&row.exchange, &row.routing_key, &row.properties(), row.body.clone()).await
            });
        }
        let mut confirmed = Vec::new();
        let mut broker_failure = None;
        while let Some(joined) = publishes.join_next().await {
            match joined.map_err(|e| RelayError::Task(e.to_string()))? {
                Ok(c) => confirmed.push(c.message_id),
                Err(PublishError::Client(e)) => broker_failure = Some(e),
                Err(refused) => report.refused.push(refused),
            }
        }
        if !confirmed.is_empty() {
            self.store.mark_sent(&confirmed).await?;
        }
        report.sent = confirmed.len();
        match broker_failure {
            Some(e) => Err(RelayError::Client(e)),
            None => Ok(report),
        }
    }
}
