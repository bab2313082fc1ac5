//! Partitioned ordering by key: a consistent-hash exchange (type `x-consistent-hash`, from the
//! `rabbitmq_consistent_hash_exchange` plugin that ships with RabbitMQ) sends every message
//! of a key to the same one of N partition queues, and each partition has one
//! single-active consumer. Order per key holds while the work spreads over N consumers.
//!
//! The guarantee: with a fixed set of partitions, all messages of a key land in one queue, in
//! the order one channel published them, and with one active consumer per queue they are
//! delivered in that order. Not guaranteed: order between keys, and order while partitions
//! are added or removed (the hash ring changes, so some keys move to another queue while
//! older messages of theirs still wait in the old one: drain before resizing). Nor is the
//! split even: the ring balances *keys* by weight, and a hot key still loads one partition.
//!
//! The plugin must be enabled (`rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`).
//! Without it RabbitMQ refuses the exchange type with a *connection* error (503), so a
//! failed [`Partitions::declare`] has closed the channel's connection too.

use amqp_client::api::{
    BasicPublishOptions, Channel, Consumer, Error, ExchangeDeclareOptions, ExchangeDeleteOptions, PublishConfirm,
    QueueDeclareOptions, QueueDeleteOptions,
};
use amqp_client::codec::{BasicProperties, FieldTable, ReplyCode, Table};
use bytes::Bytes;

use super::single_active::{consume_single_active, declare_single_active_queue};

/// The consistent-hash exchange type.
pub const CONSISTENT_HASH: &str = "x-consistent-hash";

/// What the exchange hashes to choose a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashOn {
    /// The routing key (the plugin's default).
    #[default]
    RoutingKey,
    /// A header's value (the exchange's `hash-header` argument), for publishers whose routing
    /// key means something else.
    Header(String),
}

/// Why partitions could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// Zero partitions were asked for.
    #[error("a partitioned exchange needs at least one partition")]
    NoPartitions,
    /// The broker does not know `x-consistent-hash`; it closed the connection (503).
    #[error("the broker lacks the rabbitmq_consistent_hash_exchange plugin: {0}")]
    PluginMissing(Error),
    /// Another failure of the channel or connection.
    #[error(transparent)]
    Client(#[from] Error),
}

/// N partition queues behind one consistent-hash exchange. Queue `i` is named
/// `"{exchange}.{i}"`, is declared single-active-consumer and bound with the partition weight
/// (the plugin reads a binding key as the partition's share of the hash ring).
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use amqp_client::codec::BasicProperties;
/// use mq_patterns::ordering::partitioned::Partitions;
/// let accounts = Partitions::new("accounts", 4);
/// accounts.declare(&channel).await?;
/// accounts.publish(&channel, "account-17", &BasicProperties::default(), "debit 5").await?;
/// // One process (or task, on its own channel) per partition; extra ones stand by.
/// let mut consumer = accounts.consume(&channel, 2, 50).await?;
/// while let Some(delivery) = consumer.next_delivery().await {
///     // every "account-17" message comes to the same partition, in publish order
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Partitions {
    exchange: String,
    count: usize,
    weight: u32,
    hash_on: HashOn,
    durable: bool,
    queue_arguments: FieldTable,
}

impl Partitions {
    /// `count` partitions of weight 1 behind `exchange`, hashing the routing key; durable.
    pub fn new(exchange: impl Into<String>, count: usize) -> Self {
        Partitions {
            exchange: exchange.into(),
            count,
            weight: 1,
            hash_on: HashOn::RoutingKey,
            durable: true,
            queue_arguments: FieldTable::new(),
        }
    }

    /// Each partition's weight on the hash ring (at least 1). Equal weights split keys evenly.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// What to hash.
    pub fn hash_on(mut self, hash_on: HashOn) -> Self {
        self.hash_on = hash_on;
        self
    }

    /// Whether the exchange and queues survive a broker restart (default: yes).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Extra arguments for each partition queue (dead-lettering, say); the
    /// single-active-consumer flag is added to them.
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.queue_arguments = arguments;
        self
    }

    /// The exchange's name.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// How many partitions.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Partition `i`'s queue name.
    pub fn queue(&self, partition: usize) -> String {
        format!("{}.{partition}", self.exchange)
    }

    /// The exchange's arguments (`hash-header` when hashing a header).
    pub fn exchange_arguments(&self) -> FieldTable {
        let mut args = FieldTable::new();
        if let HashOn::Header(name) = &self.hash_on {
            args.insert("hash-header", name.as_str());
        }
        args
    }

    /// Declares the exchange and the partition queues and binds each with its weight.
    /// Idempotent with the same settings.
    pub async fn declare(&self, channel: &Channel) -> Result<(), PartitionError> {
        if self.count == 0 {
            return Err(PartitionError::NoPartitions);
        }
        let options = ExchangeDeclareOptions { durable: self.durable, ..Default::default() };
        if let Err(e) =
            channel.exchange_declare(&self.exchange, CONSISTENT_HASH, options, &self.exchange_arguments()).await
        {
            return Err(match e.reply_code() {
                Some(ReplyCode::COMMAND_INVALID) => PartitionError::PluginMissing(e),
                _ => PartitionError::Client(e),
            });
        }
        let weight = self.weight.to_string();
        let options = QueueDeclareOptions { durable: self.durable, ..Default::default() };
        for partition in 0..self.count {
            let queue = self.queue(partition);
            declare_single_active_queue(channel, &queue, options, self.queue_arguments.clone()).await?;
            channel.queue_bind(&queue, &self.exchange, &weight, false, &FieldTable::new()).await?;
        }
        Ok(())
    }

    /// Publishes `body` under `key`: as the routing key, and also as the hash header when
    /// hashing one (added to the caller's headers). Every message of a key goes to one
    /// partition; publish a key's messages on one channel to fix their order.
    pub async fn publish(
        &self,
        channel: &Channel,
        key: &str,
        properties: &BasicProperties<'_>,
        body: impl Into<Bytes>,
    ) -> Result<PublishConfirm, Error> {
        let options = BasicPublishOptions::default();
        let HashOn::Header(name) = &self.hash_on else {
            return channel.basic_publish(&self.exchange, key, options, properties, body).await;
        };
        let mut headers = properties.headers.as_ref().map(Table::to_owned).unwrap_or_default();
        headers.insert(name.as_str(), key);
        let properties = BasicProperties { headers: Some(Table::Owned(&headers)), ..properties.clone() };
        channel.basic_publish(&self.exchange, key, options, &properties, body).await
    }

    /// Subscribes to one partition as a single-active consumer with at most `prefetch`
    /// unacked deliveries. Give each partition's consumer its own channel (the prefetch is
    /// set on the channel).
    pub async fn consume(&self, channel: &Channel, partition: usize, prefetch: u16) -> Result<Consumer, Error> {
        consume_single_active(channel, &self.queue(partition), prefetch).await
    }

    /// Deletes the partition queues (with their messages) and the exchange.
    pub async fn delete(&self, channel: &Channel) -> Result<(), Error> {
        for partition in 0..self.count {
            channel.queue_delete(&self.queue(partition), QueueDeleteOptions::default()).await?;
        }
        channel.exchange_delete(&self.exchange, ExchangeDeleteOptions::default()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_client::codec::table::FieldValue;

    #[test]
    fn partitions_are_named_after_the_exchange_and_hash_a_header_when_asked() {
        let p = Partitions::new("orders", 3).hash_on(HashOn::Header("account".into())).weight(0);
        assert_eq!((p.queue(0), p.queue(2)), ("orders.0".to_owned(), "orders.2".to_owned()));
        assert_eq!(p.exchange_arguments().get("hash-header"), Some(&FieldValue::from("account")));
        assert_eq!(p.weight, 1, "a zero weight would take the partition off the ring");
        assert!(Partitions::new("orders", 3).exchange_arguments().is_empty());
    }
}
