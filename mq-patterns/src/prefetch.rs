//! Rate limiting with prefetch: basic.qos per consumer and per channel, typed so that the two
//! scopes are not confused. RabbitMQ reads AMQP's `global` flag its own way: `global = false`
//! limits each consumer started on the channel afterwards; `global = true` is one limit shared
//! by all consumers of the channel (not the whole connection, as the spec has it). A
//! per-consumer basic.qos lifts the channel's limit, so [`Prefetch::apply`] sends it first.
//!
//! The guarantee: the broker never has more unacknowledged deliveries outstanding than the
//! limits allow (to each consumer, and across the channel), so a slow consumer holds at most
//! that many messages and the rest stay in the queue for others. Not guaranteed: a consumer
//! started before the per-consumer limit keeps its old limit, and a limit of 0 means no limit;
//! prefetch bounds messages, not bytes (RabbitMQ ignores `prefetch_size`).

use amqp_client::api::{BasicQosOptions, Channel, Error};

/// The prefetch limits of one channel; `None` leaves a scope unlimited.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), amqp_client::Error> {
/// use mq_patterns::prefetch::Prefetch;
/// // Each consumer holds at most 10 unacked messages, all of them together at most 50.
/// Prefetch::per_consumer(10).and_per_channel(50).apply(&channel).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefetch {
    per_consumer: Option<u16>,
    per_channel: Option<u16>,
}

impl Prefetch {
    /// At most `count` unacked deliveries per consumer (basic.qos `global = false`).
    pub fn per_consumer(count: u16) -> Self {
        Prefetch { per_consumer: Some(count), per_channel: None }
    }

    /// At most `count` unacked deliveries across the channel's consumers (`global = true`).
    pub fn per_channel(count: u16) -> Self {
        Prefetch { per_consumer: None, per_channel: Some(count) }
    }

    /// Adds a per-consumer limit.
    pub fn and_per_consumer(self, count: u16) -> Self {
        Prefetch { per_consumer: Some(count), ..self }
    }

    /// Adds a per-channel limit.
    pub fn and_per_channel(self, count: u16) -> Self {
        Prefetch { per_channel: Some(count), ..self }
    }

    /// The per-consumer limit.
    pub fn consumer_limit(&self) -> Option<u16> {
        self.per_consumer
    }

    /// The per-channel limit.
    pub fn channel_limit(&self) -> Option<u16> {
        self.per_channel
    }

    /// Sends one basic.qos per limit set, the per-consumer one first. Call it before
    /// basic.consume: a per-consumer limit applies to consumers started after it.
    pub async fn apply(&self, channel: &Channel) -> Result<(), Error> {
        // RabbitMQ lifts the channel's limit when it receives a per-consumer basic.qos, so the
        // per-channel one must come second or it is silently lost (seen on 3.10, and in
        // rabbit_channel's handling of `global = false`).
        if let Some(count) = self.per_consumer {
            channel.basic_qos(count, BasicQosOptions { global: false }).await?;
        }
        if let Some(count) = self.per_channel {
            channel.basic_qos(count, BasicQosOptions { global: true }).await?;
        }
        Ok(())
    }
}
