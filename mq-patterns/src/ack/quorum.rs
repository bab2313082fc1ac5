//! Quorum queue declarations that cannot drop a message silently: a delivery limit
//! (`x-delivery-limit`) is only accepted together with a dead-letter exchange, because without
//! one RabbitMQ discards a message once it has been returned that many times.
//!
//! The guarantee: a queue declared through [`QuorumQueue`], or whose arguments passed
//! [`check_quorum_arguments`], dead-letters a message over the limit instead of dropping it.
//! Not guaranteed: that the dead-letter exchange routes anywhere (declare its target with
//! [`declare_dead_letter_target`](crate::dead_letter::declare_dead_letter_target)), nor that
//! dead-lettering itself survives a broker failure (RabbitMQ's default dead-letter strategy is
//! at-most-once; `x-dead-letter-strategy = at-least-once` needs `x-overflow = reject-publish`).

use amqp_client::api::{Channel, Error, QueueDeclareOptions, QueueInfo};
use amqp_client::codec::{FieldTable, FieldValue};

use crate::dead_letter::DeadLettering;

/// A quorum queue's arguments, checked before they reach the broker.
///
/// ```
/// use mq_patterns::ack::{QuorumQueue, QueueSpecError};
/// use mq_patterns::dead_letter::DeadLettering;
/// let refused = QuorumQueue::new().delivery_limit(5).arguments();
/// assert_eq!(refused, Err(QueueSpecError::DeliveryLimitWithoutDeadLetterExchange { limit: 5 }));
/// let args = QuorumQueue::new().delivery_limit(5).dead_lettering(DeadLettering::to("orders.dlx")).arguments();
/// assert!(args.is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumQueue {
    delivery_limit: Option<u32>,
    dead_lettering: Option<DeadLettering>,
}

/// Queue arguments that would let RabbitMQ drop messages silently, or that it would misread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueSpecError {
    /// `x-delivery-limit` without `x-dead-letter-exchange`: messages over the limit would be
    /// dropped.
    #[error("x-delivery-limit {limit} without x-dead-letter-exchange drops messages over the limit")]
    DeliveryLimitWithoutDeadLetterExchange {
        /// The limit given.
        limit: i64,
    },
    /// `x-delivery-limit` is not a non-negative integer.
    #[error("x-delivery-limit is not a non-negative integer")]
    DeliveryLimitMistyped,
}

/// Why a checked declaration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclareError {
    /// The arguments were refused before anything was sent.
    #[error(transparent)]
    Spec(#[from] QueueSpecError),
    /// The broker refused the declaration, or the channel failed.
    #[error(transparent)]
    Client(#[from] Error),
}

impl QuorumQueue {
    /// A quorum queue with no limit and no dead-lettering.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dead-letter (or, without a dead-letter exchange, drop) a message after it has been
    /// returned `limit` times (`x-delivery-limit`).
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = Some(limit);
        self
    }

    /// Where rejected and over-limit messages go.
    pub fn dead_lettering(mut self, dead_lettering: DeadLettering) -> Self {
        self.dead_lettering = Some(dead_lettering);
        self
    }

    /// The queue arguments (`x-queue-type = quorum` first), or why they are refused.
    pub fn arguments(&self) -> Result<FieldTable, QueueSpecError> {
        let mut args = FieldTable::new();
        args.insert("x-queue-type", "quorum");
        if let Some(limit) = self.delivery_limit {
            args.insert("x-delivery-limit", i64::from(limit));
        }
        if let Some(dead_lettering) = &self.dead_lettering {
            for (key, value) in dead_lettering.arguments().iter() {
                args.insert(key, value.clone());
            }
        }
        check_quorum_arguments(&args)?;
        Ok(args)
    }

    /// Checks the arguments, then declares the queue durable (quorum queues always are).
    pub async fn declare(&self, channel: &Channel, name: &str) -> Result<QueueInfo, DeclareError> {
        let args = self.arguments()?;
        let options = QueueDeclareOptions { durable: true, ..Default::default() };
        Ok(channel.queue_declare(name, options, &args).await?)
    }
}

/// Refuses queue arguments with a delivery limit and no dead-letter exchange, for callers who
/// build their own table.
pub fn check_quorum_arguments(args: &FieldTable) -> Result<(), QueueSpecError> {
    let Some(limit) = args.get("x-delivery-limit") else { return Ok(()) };
    let limit = match *limit {
        FieldValue::I8(v) => i64::from(v),
        FieldValue::U8(v) => i64::from(v),
        FieldValue::I16(v) => i64::from(v),
        FieldValue::U16(v) => i64::from(v),
        FieldValue::I32(v) => i64::from(v),
        FieldValue::U32(v) => i64::from(v),
        FieldValue::I64(v) => v,
        _ => return Err(QueueSpecError::DeliveryLimitMistyped),
    };
    if limit < 0 {
        return Err(QueueSpecError::DeliveryLimitMistyped);
    }
    match args.get("x-dead-letter-exchange") {
        Some(FieldValue::LongString(_)) => Ok(()),
        _ => Err(QueueSpecError::DeliveryLimitWithoutDeadLetterExchange { limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_built_table_with_a_limit_and_no_exchange_is_refused() {
        let mut args = FieldTable::new();
        args.insert("x-queue-type", "quorum");
        args.insert("x-delivery-limit", 3i32);
        assert_eq!(
            check_quorum_arguments(&args),
            Err(QueueSpecError::DeliveryLimitWithoutDeadLetterExchange { limit: 3 })
        );
        args.insert("x-dead-letter-exchange", "dlx");
        assert_eq!(check_quorum_arguments(&args), Ok(()));
        args.insert("x-delivery-limit", "three");
        assert_eq!(check_quorum_arguments(&args), Err(QueueSpecError::DeliveryLimitMistyped));
    }

    #[test]
    fn no_limit_needs_no_exchange() {
        assert!(QuorumQueue::new().arguments().is_ok());
    }
}
