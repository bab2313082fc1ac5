//! Delayed delivery: a publisher whose messages reach their exchange's queues only after a
//! delay. With the `rabbitmq_delayed_message_exchange` plugin where the broker has it (an
//! exchange of type `x-delayed-message` holds each message for its `x-delay` header), and
//! otherwise with a ladder of TTL queues chained by dead-lettering ([`DelayLadder`]). Which
//! one is detected ([`detect`], on a connection of its own), or forced by the caller.
//! Uses only `amqp-client`'s public API.
//!
//! # The guarantee
//!
//! No message is delivered before its delay: the delay is counted from the broker's receipt
//! of the publish, which is after the caller's call. It is delivered after at most its delay,
//! plus the rounding up to the ladder's resolution (fallback: below one resolution step; plugin:
//! below 1 ms), plus the broker's latency (fallback: one dead-lettering per set bit of the
//! delay). A long delay never holds back a short one: each delay queue holds messages of a
//! single TTL, so it never has a message waiting behind a later-expiring head — the
//! head-of-line blocking that per-message `expiration` in one queue causes.
//!
//! # Not guaranteed
//!
//! - An exact time, nor order between messages with different delays (nor, in the fallback,
//!   between equal delays published into ladders of different resolutions).
//! - With the plugin: the delayed messages are kept on one node (in Mnesia) and are not
//!   replicated; a lost node loses them. `mandatory` and returns do not work (the plugin
//!   routes later, when no one is there to return to), so this publisher does not set it.
//! - With the fallback: dead-lettering out of a classic queue is at most once, so a broker
//!   crash during a hop can lose a message; a message that the target exchange cannot route
//!   when its delay ends is dropped, and no confirm or return reports it. Publisher confirms
//!   (on the caller's channel) cover the publish into the ladder only.
//! - The fallback's hops leave `x-death` entries on the delivered message, so consumers that
//!   count retries by `x-death` see them; an incoming `x-death` header is removed at publish
//!   (a message re-delayed with its old history would look like a dead-letter cycle to
//!   RabbitMQ and be dropped silently). A per-message `expiration` is refused in the fallback
//!   (it would let a message leave a delay queue early). The delivered message also carries the
//!   ladder's routing headers (`mq-delay-bit-K`, one per level).
//!
//! The exchanges and queues are durable by default; whether a message survives a broker
//! restart is its own `delivery_mode` (2: persistent).

mod detect;
mod ladder;

use std::time::Duration;

use amqp_client::api::{
    BasicPublishOptions, Channel, ConnectionOptions, Error, ExchangeDeclareOptions, PublishConfirm,
};
use amqp_client::codec::{BasicProperties, FieldTable, FieldValue, Table};
use bytes::Bytes;

pub use detect::detect;
pub use ladder::DelayLadder;

/// The exchange type the plugin adds.
pub const PLUGIN_EXCHANGE_TYPE: &str = "x-delayed-message";

/// How a broker delays messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelaySupport {
    /// The delayed-message plugin: exchange type `x-delayed-message`, header `x-delay`.
    Plugin,
    /// A ladder of TTL queues and dead-lettering ([`DelayLadder`]).
    Fallback,
}

/// Why a delayed publisher could not be set up or could not publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelayError {
    /// The delay is longer than the publisher can hold a message.
    #[error("a delay of {delay:?} is longer than the longest this publisher supports ({max:?})")]
    TooLong {
        /// The delay asked for.
        delay: Duration,
        /// The longest possible.
        max: Duration,
    },
    /// A per-message TTL would let the message leave a delay queue early.
    #[error("a message with an expiration cannot be delayed by TTL queues: it would leave its delay queue early")]
    Expiration,
    /// Delays are published to a named exchange (the default exchange cannot be bound).
    #[error("delayed delivery needs a named exchange, not the default exchange")]
    DefaultExchange,
    /// A derived queue or exchange name is over AMQP's 255 bytes.
    #[error("the delay queue name {0} is longer than 255 bytes")]
    NameTooLong(String),
    /// The longest delay queue would need a TTL over RabbitMQ's limit (2^32 − 1 ms).
    #[error("resolution {resolution:?} with a longest delay of {max_delay:?} needs a queue TTL over 2^32-1 ms")]
    Shape {
        /// The resolution asked for.
        resolution: Duration,
        /// The longest delay asked for.
        max_delay: Duration,
    },
    /// The channel or connection failed.
    #[error(transparent)]
    Client(#[from] Error),
}

/// The exchange delayed messages go to, and how the fallback ladder under it is shaped.
///
/// ```
/// use mq_patterns::delay::DelayedExchange;
/// use std::time::Duration;
/// let exchange = DelayedExchange::new("reminders")
///     .kind("topic")
///     .resolution(Duration::from_millis(250))
///     .max_delay(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(exchange.name(), "reminders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayedExchange {
    name: String,
    kind: String,
    durable: bool,
    resolution: Duration,
    max_delay: Duration,
}

impl DelayedExchange {
    /// A durable `direct` exchange `name`, with delays up to a day in steps of 100 ms.
    pub fn new(name: impl Into<String>) -> Self {
        DelayedExchange {
            name: name.into(),
            kind: "direct".into(),
            durable: true,
            resolution: Duration::from_millis(100),
            max_delay: Duration::from_secs(24 * 3600),
        }
    }

    /// How the exchange routes once a delay is over: `direct`, `topic`, `fanout`, `headers`
    /// (the plugin's `x-delayed-type`).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Whether the exchange and the delay queues survive a broker restart (default: yes).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Fallback only: delays are rounded up to a multiple of this (whole milliseconds).
    pub fn resolution(mut self, step: Duration) -> Self {
        self.resolution = step;
        self
    }

    /// The longest delay wanted; the fallback declares one queue per bit it needs in steps.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// The exchange's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A publisher of delayed messages to one exchange. Cheap to clone.
///
/// Declares the exchange: with the plugin as `x-delayed-message` with `x-delayed-type` set to
/// the exchange's kind, otherwise as an ordinary exchange of that kind with a
/// [`DelayLadder`] in front of it. Bind queues to it as to any exchange of that kind. An
/// exchange keeps the type it was first declared with: moving a broker to or from the plugin
/// means deleting the exchange first (RabbitMQ refuses a redeclare of another type, 406).
///
/// ```no_run
/// # async fn demo() -> Result<(), mq_patterns::delay::DelayError> {
/// use amqp_client::api::{Connection, ConnectionOptions};
/// use amqp_client::codec::BasicProperties;
/// use mq_patterns::delay::{DelayedExchange, DelayedPublisher};
/// use std::time::Duration;
/// let options = ConnectionOptions::from_uri("amqp://guest:guest@127.0.0.1:5672/%2f")?;
/// let conn = Connection::connect_with(options.clone()).await?;
/// let channel = conn.open_channel().await?;
/// let publisher = DelayedPublisher::new(channel, DelayedExchange::new("reminders"), &options).await?;
/// let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
/// publisher.publish("email", Duration::from_secs(90), &props, "remind me").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DelayedPublisher {
    channel: Channel,
    exchange: String,
    mode: Mode,
}

#[derive(Clone, Debug)]
enum Mode {
    Plugin,
    Fallback(DelayLadder),
}

impl DelayedPublisher {
    /// Detects the broker's support on a separate connection made with `options` (see
    /// [`detect`]; the caller's connection is never put at risk), then declares.
    pub async fn new(
        channel: Channel,
        exchange: DelayedExchange,
        options: &ConnectionOptions,
    ) -> Result<Self, DelayError> {
        let support = detect(options).await?;
        DelayedPublisher::with_support(channel, exchange, support).await
    }

    /// Declares for `support` without detecting, for callers who know their broker. Forcing
    /// [`DelaySupport::Plugin`] on a broker without it closes the channel's connection (503).
    pub async fn with_support(
        channel: Channel,
        exchange: DelayedExchange,
        support: DelaySupport,
    ) -> Result<Self, DelayError> {
        if exchange.name.is_empty() {
            return Err(DelayError::DefaultExchange);
        }
        let options = ExchangeDeclareOptions { durable: exchange.durable, ..Default::default() };
        let mode = match support {
            DelaySupport::Plugin => {
                let mut arguments = FieldTable::new();
                arguments.insert("x-delayed-type", exchange.kind.as_str());
                channel.exchange_declare(&exchange.name, PLUGIN_EXCHANGE_TYPE, options, &arguments).await?;
                Mode::Plugin
            }
            DelaySupport::Fallback => {
                let ladder =
                    DelayLadder::new(&exchange.name, exchange.resolution, exchange.max_delay, exchange.durable)?;
                channel.exchange_declare(&exchange.name, &exchange.kind, options, &FieldTable::new()).await?;
                ladder.declare(&channel).await?;
                Mode::Fallback(ladder)
            }
        };
        Ok(DelayedPublisher { channel, exchange: exchange.name, mode })
    }

    /// Which mechanism this publisher uses.
    pub fn support(&self) -> DelaySupport {
        match self.mode {
            Mode::Plugin => DelaySupport::Plugin,
            Mode::Fallback(_) => DelaySupport::Fallback,
        }
    }

    /// The fallback's ladder (to read its names, or delete it); `None` with the plugin.
    pub fn ladder(&self) -> Option<&DelayLadder> {
        match &self.mode {
            Mode::Plugin => None,
            Mode::Fallback(ladder) => Some(ladder),
        }
    }

    /// The exchange messages are delivered through.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The delay a message published with `delay` is held for at least: `delay` rounded up to
    /// the resolution (fallback) or to whole milliseconds (plugin).
    pub fn effective_delay(&self, delay: Duration) -> Result<Duration, DelayError> {
        match &self.mode {
            Mode::Plugin => plugin_delay_ms(delay).map(|ms| Duration::from_millis(ms.unsigned_abs())),
            Mode::Fallback(ladder) => ladder.rounded(delay),
        }
    }

    /// Publishes a message that reaches the exchange's queues, routed by `routing_key`, after
    /// `delay`. Returns the client's [`PublishConfirm`]: on a channel in confirm mode it
    /// resolves when the broker has taken the message into its delay (not when it is delivered).
    pub async fn publish(
        &self,
        routing_key: &str,
        delay: Duration,
        properties: &BasicProperties<'_>,
        body: impl Into<Bytes>,
    ) -> Result<PublishConfirm, DelayError> {
        let mut headers = properties.headers.as_ref().map(Table::to_owned).unwrap_or_default();
        let exchange = match &self.mode {
            Mode::Plugin => {
                headers.insert("x-delay", delay_header(plugin_delay_ms(delay)?));
                self.exchange.clone()
            }
            Mode::Fallback(ladder) => {
                if properties.expiration.is_some() {
                    return Err(DelayError::Expiration);
                }
                for key in DEAD_LETTER_HISTORY {
                    headers.remove(key);
                }
                ladder.bit_headers(delay, &mut headers)?;
                ladder.entry()
            }
        };
        let properties = BasicProperties { headers: Some(Table::Owned(&headers)), ..properties.clone() };
        let options = BasicPublishOptions::default();
        Ok(self.channel.basic_publish(&exchange, routing_key, options, &properties, body).await?)
    }
}

/// What RabbitMQ writes when it dead-letters; stale copies make it see a cycle.
const DEAD_LETTER_HISTORY: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// The plugin holds a message at most 2^32 − 1 ms (its timer's limit).
const PLUGIN_MAX_MS: i64 = u32::MAX as i64;

/// The delay in whole milliseconds, rounded up so that it is never shorter than asked.
fn plugin_delay_ms(delay: Duration) -> Result<i64, DelayError> {
    let ms = delay.as_nanos().div_ceil(1_000_000);
    match i64::try_from(ms) {
        Ok(ms) if ms <= PLUGIN_MAX_MS => Ok(ms),
        _ => Err(DelayError::TooLong { delay, max: Duration::from_millis(PLUGIN_MAX_MS.unsigned_abs()) }),
    }
}

/// A signed 32-bit integer where it fits (what the Java client sends), a long otherwise; the
/// plugin accepts any integer type.
fn delay_header(ms: i64) -> FieldValue {
    match i32::try_from(ms) {
        Ok(ms) => FieldValue::I32(ms),
        Err(_) => FieldValue::I64(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_delays_round_up_to_whole_milliseconds() {
        assert_eq!(plugin_delay_ms(Duration::from_micros(1_500)).unwrap(), 2);
        assert_eq!(plugin_delay_ms(Duration::from_secs(1)).unwrap(), 1_000);
        assert_eq!(delay_header(1_000), FieldValue::I32(1_000));
        assert_eq!(delay_header(3_000_000_000), FieldValue::I64(3_000_000_000));
        assert!(matches!(plugin_delay_ms(Duration::from_millis(1 << 32)), Err(DelayError::TooLong { .. })));
    }
}
