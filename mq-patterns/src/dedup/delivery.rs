//! What the idempotent consumer needs of a delivery: its `message-id`, its tag, and a way to
//! ack, nack and reject it. Implemented for the client's [`Delivery`] and for the recovering
//! consumer's [`RecoveredDelivery`], so that one [`IdempotentConsumer`](super::IdempotentConsumer)
//! serves a plain consumer and one that survives connection loss alike.
//!
//! The guarantee it keeps: an ack reaches the broker only through the delivery's own channel
//! and connection, never a later one. What it does not give: a [`RecoveredDelivery`] that came
//! on a connection since lost cannot be acked at all ([`RecoveryError::StaleDelivery`]); the
//! broker has requeued it and delivers it again, and the store recognises that redelivery
//! only if the id was committed before the loss.

use amqp_client::api::{Delivery, Error};

use super::{BoxFuture, DedupError};
use crate::recovery::{RecoveredDelivery, RecoveryError};

/// A delivery the idempotent consumer can de-duplicate and settle.
pub trait AckableDelivery: Send + Sync {
    /// Why an ack, nack or reject failed.
    type Error: Into<DedupError>;

    /// The `message-id` property, if any.
    fn message_id(&self) -> Option<&str>;

    /// The broker's delivery tag (for errors and logs).
    fn delivery_tag(&self) -> u64;

    /// basic.ack.
    fn ack(&self) -> BoxFuture<'_, Result<(), Self::Error>>;

    /// basic.nack, requeued or not.
    fn nack(&self, requeue: bool) -> BoxFuture<'_, Result<(), Self::Error>>;

    /// basic.reject, requeued or not.
    fn reject(&self, requeue: bool) -> BoxFuture<'_, Result<(), Self::Error>>;
}

impl AckableDelivery for Delivery {
    type Error = Error;

    fn message_id(&self) -> Option<&str> {
        self.properties().message_id
    }

    fn delivery_tag(&self) -> u64 {
        self.tag().tag.0
    }

    fn ack(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(Delivery::ack(self))
    }

    fn nack(&self, requeue: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(Delivery::nack(self, requeue))
    }

    fn reject(&self, requeue: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(Delivery::reject(self, requeue))
    }
}

impl AckableDelivery for RecoveredDelivery {
    type Error = RecoveryError;

    fn message_id(&self) -> Option<&str> {
        self.delivery().properties().message_id
    }

    fn delivery_tag(&self) -> u64 {
        self.delivery().tag().tag.0
    }

    fn ack(&self) -> BoxFuture<'_, Result<(), RecoveryError>> {
        Box::pin(RecoveredDelivery::ack(self))
    }

    fn nack(&self, requeue: bool) -> BoxFuture<'_, Result<(), RecoveryError>> {
        Box::pin(RecoveredDelivery::nack(self, requeue))
    }

    fn reject(&self, requeue: bool) -> BoxFuture<'_, Result<(), RecoveryError>> {
        Box::pin(RecoveredDelivery::reject(self, requeue))
    }
}
