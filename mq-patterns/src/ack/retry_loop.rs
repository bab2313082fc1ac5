//! The dead-letter retry loop for queues that do not count deliveries (classic queues): the
//! work queue dead-letters rejected messages into a delay queue whose TTL dead-letters them
//! back, so RabbitMQ itself counts the rejections in `x-death`; and a parking exchange and queue
//! for the messages that failed too often.
//!
//! The guarantee: a message rejected without requeue waits `delay` and returns to the work
//! queue with its rejection counted, with no client-side copy (a broker-internal move). Not
//! guaranteed: order (a retried message returns behind newer ones), nor dead-lettering under a
//! broker failure (classic queues dead-letter at most once). RabbitMQ allows this cycle because
//! it contains a rejection; a cycle of expiries alone would be dropped.

use std::time::Duration;

use amqp_client::api::{Channel, Error, QueueDeclareOptions};
use amqp_client::codec::FieldTable;

use super::policy::FailurePolicy;
use crate::dead_letter::{DeadLettering, declare_dead_letter_target};

/// The queues of a retry loop around one work queue. Names default to the work queue's name
/// with `.retry`, `.parked` (the queue) and `.parked.x` (the exchange).
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), amqp_client::Error> {
/// use mq_patterns::ack::RetryLoop;
/// use std::time::Duration;
/// let retry = RetryLoop::new("orders", Duration::from_secs(5));
/// retry.declare(&channel, Default::default()).await?;
/// let policy = retry.policy(3); // three deliveries, then parked in "orders.parked"
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryLoop {
    queue: String,
    retry_queue: String,
    park_exchange: String,
    park_queue: String,
    delay: Duration,
}

impl RetryLoop {
    /// A loop around `queue` that holds each rejected message `delay` before it returns.
    pub fn new(queue: impl Into<String>, delay: Duration) -> Self {
        let queue = queue.into();
        RetryLoop {
            retry_queue: format!("{queue}.retry"),
            park_exchange: format!("{queue}.parked.x"),
            park_queue: format!("{queue}.parked"),
            queue,
            delay,
        }
    }

    /// The work queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The delay queue rejected messages wait in.
    pub fn retry_queue(&self) -> &str {
        &self.retry_queue
    }

    /// The exchange poison messages are published to.
    pub fn park_exchange(&self) -> &str {
        &self.park_exchange
    }

    /// The queue behind it.
    pub fn park_queue(&self) -> &str {
        &self.park_queue
    }

    /// The work queue's arguments: dead-letter into the delay queue through the default exchange.
    pub fn work_arguments(&self) -> FieldTable {
        DeadLettering::to("").routing_key(self.retry_queue.as_str()).arguments()
    }

    /// The delay queue's arguments: expire after `delay`, then dead-letter back.
    pub fn retry_arguments(&self) -> FieldTable {
        DeadLettering::to("").routing_key(self.queue.as_str()).message_ttl(self.delay).arguments()
    }

    /// Declares the work and delay queues (with `options`) and the durable parking exchange and
    /// queue.
    pub async fn declare(&self, channel: &Channel, options: QueueDeclareOptions) -> Result<(), Error> {
        channel.queue_declare(&self.queue, options, &self.work_arguments()).await?;
        channel.queue_declare(&self.retry_queue, options, &self.retry_arguments()).await?;
        declare_dead_letter_target(channel, &self.park_exchange, &self.park_queue).await?;
        Ok(())
    }

    /// The failure policy for this loop: `max_attempts` deliveries, then parked.
    pub fn policy(&self, max_attempts: u32) -> FailurePolicy {
        FailurePolicy::dead_letter_loop(max_attempts, self.park_exchange.as_str(), self.queue.as_str())
    }
}
