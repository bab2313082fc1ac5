//! No loss on the way in: a publisher that puts every message under a publisher confirm,
//! keeps at most `window` of them unconfirmed (a publisher that outruns the broker waits
//! instead of queueing without limit), retries nacked messages by a policy, turns an
//! unroutable mandatory publish into an error, and stamps a `message-id` on every message
//! that has none so that consumers can de-duplicate.
//!
//! The guarantee: `publish` returns `Ok` only after the broker acked the message, so the
//! broker took responsibility for it (for a durable queue and a persistent message: on
//! disk). Not guaranteed: exactly once. A retried message, or one re-sent after a lost
//! connection, may arrive twice; its `message-id` is the same each time, for the consumer
//! to recognise. Uses only `amqp-client`'s public API.

use std::sync::Arc;
use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Channel, Confirmation, Error};
use amqp_client::codec::{BasicProperties, Method, ReplyCode};
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::message_id::IdSource;

/// How nacked messages are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Publishes in all, the first included (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each later one.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Why a message was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No queue took the mandatory message (basic.return, usually 312 NO_ROUTE).
    #[error("message {message_id} is unroutable: {code} {text}")]
    Unroutable {
        /// The message's id.
        message_id: String,
        /// The broker's reply code.
        code: ReplyCode,
        /// The broker's reply text.
        text: String,
    },
    /// The broker nacked every attempt.
    #[error("message {message_id} was nacked {attempts} times")]
    Nacked {
        /// The message's id.
        message_id: String,
        /// How many times it was published.
        attempts: u32,
    },
    /// The channel or connection failed.
    #[error(transparent)]
    Client(#[from] Error),
}

/// A confirmed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The message id it carried (stamped by the publisher if the caller gave none).
    pub message_id: String,
    /// How many times it was published before the ack (1 unless retried).
    pub attempts: u32,
}

/// A publisher with confirms on one channel. Cheap to clone; clones share the window.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), mq_patterns::confirms::PublishError> {
/// use mq_patterns::confirms::{ConfirmingPublisher, RetryPolicy};
/// use amqp_client::codec::BasicProperties;
/// let publisher = ConfirmingPublisher::new(channel, 1_000, RetryPolicy::default()).await?;
/// let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
/// let confirmed = publisher.publish("", "orders", &props, "order 17").await?;
/// println!("the broker has {}", confirmed.message_id);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConfirmingPublisher {
    channel: Channel,
    window: Arc<Semaphore>,
    size: usize,
    retry: RetryPolicy,
    ids: Arc<IdSource>,
}

impl ConfirmingPublisher {
    /// Puts `channel` in confirm mode; at most `window` messages (at least 1) wait for their
    /// confirm at once.
    pub async fn new(channel: Channel, window: usize, retry: RetryPolicy) -> Result<Self, Error> {
        channel.confirm_select().await?;
        let size = window.max(1);
        Ok(ConfirmingPublisher {
            channel,
            window: Arc::new(Semaphore::new(size)),
            size,
            retry: RetryPolicy { attempts: retry.attempts.max(1), ..retry },
            ids: Arc::new(IdSource::new()),
        })
    }

    /// Messages published and not yet confirmed.
    pub fn outstanding(&self) -> usize {
        self.size - self.window.available_permits()
    }

    /// Publishes a mandatory message and waits for its confirm, retrying nacks by the policy.
    /// Waits first while `window` messages are unconfirmed.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties<'_>,
        body: impl Into<Bytes>,
    ) -> Result<Confirmed, PublishError> {
        let body = body.into();
        let stamped;
        let message_id = match properties.message_id {
            Some(id) => id,
            None => {
                stamped = self.ids.next();
                stamped.as_str()
            }
        };
        let properties = BasicProperties { message_id: Some(message_id), ..properties.clone() };
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        // The semaphore is never closed, so acquire cannot fail; a closed one would mean the
        // publisher is gone, and publishing unbounded is not an option.
        let _permit = self.window.acquire().await.map_err(|_| Error::UnexpectedReply("closed window"))?;
        for attempt in 1..=self.retry.attempts {
            let confirm = self.channel.basic_publish(exchange, routing_key, options, &properties, body.clone()).await?;
            match confirm.wait().await? {
                Confirmation::Ack => return Ok(Confirmed { message_id: message_id.to_owned(), attempts: attempt }),
                Confirmation::Returned(message) => {
                    let (code, text) = match message.method() {
                        Ok(Method::BasicReturn(r)) => (r.reply_code, r.reply_text.to_owned()),
                        _ => (ReplyCode::NO_ROUTE, String::new()),
                    };
                    return Err(PublishError::Unroutable { message_id: message_id.to_owned(), code, text });
                }
                Confirmation::Nack if attempt < self.retry.attempts => {
                    tokio::time::sleep(self.retry.delay(attempt - 1)).await;
                }
                _ => {}
            }
        }
        Err(PublishError::Nacked { message_id: message_id.to_owned(), attempts: self.retry.attempts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy =
            RetryPolicy { attempts: 10, backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1) };
        let delays: Vec<_> = (0..6).map(|r| policy.delay(r).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(1));
    }
}
