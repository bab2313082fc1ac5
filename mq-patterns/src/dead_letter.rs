//! Dead-lettering: typed queue arguments that send a queue's rejected, expired and overflowing
//! messages to a dead-letter exchange, a helper that declares that exchange and a queue behind
//! it, and a typed reader of the `x-death` header RabbitMQ adds on the way.
//!
//! The guarantee: a message that is rejected without requeue, expires, or overflows a
//! `x-max-length` queue is routed to the dead-letter exchange instead of vanishing, with its
//! history in `x-death`. Not guaranteed: dead-lettering itself is not confirmed to the
//! original publisher, and a dead-letter exchange with nowhere to route drops the message.
//! Uses only `amqp-client`'s public API.

use std::time::Duration;

use amqp_client::api::{Channel, Error, ExchangeDeclareOptions, QueueDeclareOptions};
use amqp_client::codec::table::FieldValueRef;
use amqp_client::codec::{BasicProperties, FieldTable, Table};

/// What a full queue does with a new message (`x-overflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest message: RabbitMQ's default.
    DropHead,
    /// Refuse the new message (a nack to a publisher in confirm mode).
    RejectPublish,
    /// Refuse the new message and dead-letter it (quorum queues only before RabbitMQ 3.10).
    RejectPublishDlx,
}

impl Overflow {
    fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// Queue arguments for dead-lettering and the limits that cause it.
///
/// ```
/// use mq_patterns::dead_letter::{DeadLettering, Overflow};
/// use std::time::Duration;
/// let args = DeadLettering::to("orders.dlx")
///     .routing_key("orders.dead")
///     .message_ttl(Duration::from_secs(60))
///     .max_length(10_000)
///     .overflow(Overflow::DropHead)
///     .arguments();
/// assert_eq!(args.keys().collect::<Vec<_>>(),
///     ["x-dead-letter-exchange", "x-dead-letter-routing-key", "x-message-ttl", "x-max-length", "x-overflow"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLettering {
    exchange: String,
    routing_key: Option<String>,
    message_ttl: Option<Duration>,
    max_length: Option<u32>,
    max_length_bytes: Option<u64>,
    overflow: Option<Overflow>,
}

impl DeadLettering {
    /// Dead-letter to `exchange` ("" is the default exchange, routing by queue name).
    pub fn to(exchange: impl Into<String>) -> Self {
        DeadLettering { exchange: exchange.into(), ..Default::default() }
    }

    /// Dead-letter with this routing key instead of the message's own.
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Messages older than this expire and are dead-lettered (`x-message-ttl`, whole ms).
    pub fn message_ttl(mut self, ttl: Duration) -> Self {
        self.message_ttl = Some(ttl);
        self
    }

    /// At most this many ready messages (`x-max-length`).
    pub fn max_length(mut self, messages: u32) -> Self {
        self.max_length = Some(messages);
        self
    }

    /// At most this many bytes of ready message bodies (`x-max-length-bytes`).
    pub fn max_length_bytes(mut self, bytes: u64) -> Self {
        self.max_length_bytes = Some(bytes);
        self
    }

    /// What happens at the limit (`x-overflow`).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// The queue arguments, with the types RabbitMQ expects (longstr names, long integers).
    pub fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::new();
        args.insert("x-dead-letter-exchange", self.exchange.as_str());
        if let Some(key) = &self.routing_key {
            args.insert("x-dead-letter-routing-key", key.as_str());
        }
        if let Some(ttl) = self.message_ttl {
            args.insert("x-message-ttl", i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        }
        if let Some(n) = self.max_length {
            args.insert("x-max-length", i64::from(n));
        }
        if let Some(bytes) = self.max_length_bytes {
            args.insert("x-max-length-bytes", i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(overflow) = self.overflow {
            args.insert("x-overflow", overflow.as_str());
        }
        args
    }
}

/// Declares a durable fanout dead-letter exchange and a durable queue bound to it, so that
/// whatever is dead-lettered there is kept. Returns the queue's name.
pub async fn declare_dead_letter_target(channel: &Channel, exchange: &str, queue: &str) -> Result<String, Error> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(exchange, "fanout", durable, &FieldTable::new()).await?;
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    let info = channel.queue_declare(queue, options, &FieldTable::new()).await?;
    channel.queue_bind(&info.name, exchange, "", false, &FieldTable::new()).await?;
    Ok(info.name)
}

/// Why RabbitMQ dead-lettered a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeathReason {
    /// basic.reject or basic.nack without requeue.
    Rejected,
    /// Its TTL (per message or per queue) ran out.
    Expired,
    /// The queue was over `x-max-length` or `x-max-length-bytes`.
    MaxLen,
    /// A quorum queue's `x-delivery-limit` was reached.
    DeliveryLimit,
    /// A reason this library does not know.
    Other(String),
}

impl DeathReason {
    fn parse(text: &str) -> Self {
        match text {
            "rejected" => DeathReason::Rejected,
            "expired" => DeathReason::Expired,
            "maxlen" => DeathReason::MaxLen,
            "delivery_limit" => DeathReason::DeliveryLimit,
            other => DeathReason::Other(other.to_owned()),
        }
    }
}

/// One entry of the `x-death` header: a queue the message died in, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XDeath {
    /// How many times it died in this queue for this reason.
    pub count: u64,
    /// Why.
    pub reason: DeathReason,
    /// The queue it died in.
    pub queue: String,
    /// The exchange it had been published to.
    pub exchange: String,
    /// When it (last) died, seconds since the epoch.
    pub time: Option<u64>,
    /// The routing keys it had (including CC and BCC).
    pub routing_keys: Vec<String>,
}

/// An `x-death` header that is not what RabbitMQ writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XDeathError {
    /// `x-death` is not an array of tables.
    #[error("x-death is not an array of tables")]
    NotAnArray,
    /// An entry lacks a field, or has it with the wrong type.
    #[error("x-death entry {index}: field {field} is missing or mistyped")]
    Field {
        /// Which entry.
        index: usize,
        /// Which field.
        field: &'static str,
    },
}

/// Reads the `x-death` header: most recent death first, as RabbitMQ orders it. No header (a
/// message that never died) is an empty list.
pub fn x_death(properties: &BasicProperties<'_>) -> Result<Vec<XDeath>, XDeathError> {
    let Some(Table::Raw(headers)) = properties.headers else {
        return match &properties.headers {
            Some(Table::Owned(table)) if table.get("x-death").is_some() => Err(XDeathError::NotAnArray),
            _ => Ok(Vec::new()),
        };
    };
    let Some(value) = headers.get("x-death") else { return Ok(Vec::new()) };
    let FieldValueRef::Array(entries) = value else { return Err(XDeathError::NotAnArray) };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let FieldValueRef::Table(t) = entry else { return Err(XDeathError::NotAnArray) };
            let text = |field: &'static str| {
                t.get(field).and_then(|v| v.as_str()).map(str::to_owned).ok_or(XDeathError::Field { index, field })
            };
            let count = t
                .get("count")
                .and_then(|v| v.as_i64())
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(XDeathError::Field { index, field: "count" })?;
            let time = match t.get("time") {
                Some(FieldValueRef::Timestamp(ts)) => Some(ts),
                _ => None,
            };
            let routing_keys = match t.get("routing-keys") {
                Some(FieldValueRef::Array(keys)) => keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            Ok(XDeath {
                count,
                reason: DeathReason::parse(&text("reason")?),
                queue: text("queue")?,
                exchange: text("exchange")?,
                time,
                routing_keys,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_client::codec::FieldValue;
    use amqp_client::codec::table::RawTable;

    #[test]
    fn x_death_reads_what_rabbitmq_writes() {
        let mut death = FieldTable::new();
        death.insert("count", 2i64);
        death.insert("reason", "expired");
        death.insert("queue", "orders");
        death.insert("time", FieldValue::Timestamp(1_700_000_000));
        death.insert("exchange", "");
        death.insert("routing-keys", vec![FieldValue::from("orders")]);
        let mut headers = FieldTable::new();
        headers.insert("x-death", vec![FieldValue::Table(death)]);
        let wire = headers.to_bytes().unwrap();
        let raw = RawTable::parse(&wire[4..]).unwrap();
        let props = BasicProperties { headers: Some(Table::Raw(raw)), ..Default::default() };
        let deaths = x_death(&props).unwrap();
        assert_eq!(
            deaths,
            [XDeath {
                count: 2,
                reason: DeathReason::Expired,
                queue: "orders".into(),
                exchange: String::new(),
                time: Some(1_700_000_000),
                routing_keys: vec!["orders".into()],
            }]
        );
        assert!(x_death(&BasicProperties::default()).unwrap().is_empty());
    }

    #[test]
    fn a_mistyped_x_death_is_a_typed_error() {
        let mut headers = FieldTable::new();
        headers.insert("x-death", "not an array");
        let wire = headers.to_bytes().unwrap();
        let raw = RawTable::parse(&wire[4..]).unwrap();
        let props = BasicProperties { headers: Some(Table::Raw(raw)), ..Default::default() };
        assert_eq!(x_death(&props), Err(XDeathError::NotAnArray));
    }
}
