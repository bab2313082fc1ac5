//! Single active consumer: a queue declared with `x-single-active-consumer: true` lets any
//! number of consumers subscribe but delivers to one of them at a time; when it goes, the
//! broker makes the next one (in subscription order) active.
//!
//! The guarantee: one consumer per queue keeps the queue's order, and single-active gives
//! that consumer failover without two consumers ever racing on the queue. Not guaranteed: a
//! message the old consumer handled but had not acked when it went is redelivered to the new
//! one (with `redelivered` set), so it may be handled twice; and order holds only inside the
//! queue, not across queues.
//!
//! How the active consumer goes matters. When its channel or connection closes (or the process
//! dies), the queue requeues its unacked messages at their original positions and the next
//! consumer starts with them: order kept. A `basic.cancel` alone does not requeue: the
//! cancelled consumer keeps its unacked deliveries while the next one starts on the messages
//! after them, so for a clean handover finish and ack (or close the channel) before or
//! right after cancelling. The flag is fixed at declaration: declaring an existing queue
//! with another value fails with 406 PRECONDITION_FAILED.

use amqp_client::api::{
    BasicConsumeOptions, BasicQosOptions, Channel, Consumer, Error, QueueDeclareOptions, QueueInfo,
};
use amqp_client::codec::FieldTable;

/// The queue argument that turns single-active-consumer on.
pub const SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";

/// Adds `x-single-active-consumer: true` to queue arguments (to combine it with, say,
/// dead-lettering arguments).
///
/// ```
/// use mq_patterns::dead_letter::DeadLettering;
/// use mq_patterns::ordering::single_active::with_single_active_consumer;
/// let args = with_single_active_consumer(DeadLettering::to("orders.dlx").arguments());
/// assert_eq!(args.keys().collect::<Vec<_>>(), ["x-dead-letter-exchange", "x-single-active-consumer"]);
/// ```
pub fn with_single_active_consumer(mut arguments: FieldTable) -> FieldTable {
    arguments.insert(SINGLE_ACTIVE_CONSUMER, true);
    arguments
}

/// Declares a single-active-consumer queue with these options and extra arguments.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), amqp_client::Error> {
/// use amqp_client::api::QueueDeclareOptions;
/// use amqp_client::codec::FieldTable;
/// use mq_patterns::ordering::single_active::{consume_single_active, declare_single_active_queue};
/// let durable = QueueDeclareOptions { durable: true, ..Default::default() };
/// declare_single_active_queue(&channel, "ledger", durable, FieldTable::new()).await?;
/// // Run this in every replica: one receives, the others wait to take over.
/// let mut consumer = consume_single_active(&channel, "ledger", 100).await?;
/// while let Some(delivery) = consumer.next_delivery().await {
///     // ... apply the entry ...
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub async fn declare_single_active_queue(
    channel: &Channel,
    queue: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> Result<QueueInfo, Error> {
    channel.queue_declare(queue, options, &with_single_active_consumer(arguments)).await
}

/// Subscribes to a single-active-consumer queue with manual acks and at most `prefetch`
/// unacked deliveries (0: no limit). Until this consumer becomes the active one it receives
/// nothing; that is the standby waiting, not a fault.
///
/// Sets the channel's per-consumer prefetch, so give each ordered consumer its own channel.
pub async fn consume_single_active(channel: &Channel, queue: &str, prefetch: u16) -> Result<Consumer, Error> {
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    channel.basic_consume(queue, BasicConsumeOptions::default(), &FieldTable::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_client::codec::table::FieldValue;

    #[test]
    fn the_flag_is_a_boolean_true_added_to_the_given_arguments() {
        let mut given = FieldTable::new();
        given.insert("x-max-length", 10i64);
        let args = with_single_active_consumer(given);
        assert_eq!(args.get(SINGLE_ACTIVE_CONSUMER), Some(&FieldValue::Bool(true)));
        assert_eq!(args.get("x-max-length"), Some(&FieldValue::I64(10)));
    }
}
