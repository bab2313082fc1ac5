//! The failure policy of the acking consumer: how a failed delivery is retried, how its
//! attempts are counted from what the broker wrote on it (`x-delivery-count` or `x-death`), and
//! where it goes once it has failed too often. Pure: reads properties, touches no channel.

use amqp_client::codec::{BasicProperties, FieldValue, Table};

use crate::dead_letter::{DeathReason, XDeathError, x_death};

/// The header a quorum queue counts returned deliveries in.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// How a failed delivery is retried, and where a poison message (one that failed
/// `max_attempts` times) goes instead of looping.
///
/// ```
/// use mq_patterns::ack::{FailurePolicy, Retry};
/// let quorum = FailurePolicy::requeue(5);
/// assert_eq!(quorum.max_attempts(), 5);
/// assert!(matches!(quorum.retry(), Retry::Requeue));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    max_attempts: u32,
    retry: Retry,
}

/// The two retry designs that count attempts on RabbitMQ 3.10.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Quorum queues: basic.nack with requeue; the queue counts returns in
    /// `x-delivery-count`. A poison message is rejected without requeue and goes to the
    /// queue's dead-letter exchange. Retries are immediate (no delay). A classic queue counts
    /// nothing, so a redelivery without the header there is an [`AttemptError::Uncounted`].
    /// A queue's `x-delivery-limit` below `max_attempts - 1` makes the broker dead-letter the
    /// message first (reason `delivery_limit`); at or above it, the limit is only a backstop.
    Requeue,
    /// Any queue whose dead-letter exchange leads to a delay queue that dead-letters back
    /// (see [`RetryLoop`](super::RetryLoop)): reject without requeue; RabbitMQ counts the
    /// rejections in `x-death`. A poison message cannot take that same exchange, so it is
    /// published to `park_exchange` under a publisher confirm and only then acked.
    DeadLetterLoop {
        /// Where poison messages are published.
        park_exchange: String,
        /// Their routing key there.
        park_routing_key: String,
    },
}

impl FailurePolicy {
    /// Retry by requeueing on a quorum queue, `max_attempts` deliveries in all (at least 1).
    pub fn requeue(max_attempts: u32) -> Self {
        FailurePolicy { max_attempts: max_attempts.max(1), retry: Retry::Requeue }
    }

    /// Retry through a dead-letter loop, `max_attempts` deliveries in all (at least 1); park
    /// poison messages at `park_exchange` with `park_routing_key`.
    pub fn dead_letter_loop(
        max_attempts: u32,
        park_exchange: impl Into<String>,
        park_routing_key: impl Into<String>,
    ) -> Self {
        let retry =
            Retry::DeadLetterLoop { park_exchange: park_exchange.into(), park_routing_key: park_routing_key.into() };
        FailurePolicy { max_attempts: max_attempts.max(1), retry }
    }

    /// Deliveries in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How a failure is retried.
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// Which attempt this delivery from `queue` is (1 for the first), read from the headers the
    /// policy's retry design makes the broker write.
    pub fn attempt(
        &self,
        queue: &str,
        properties: &BasicProperties<'_>,
        redelivered: bool,
    ) -> Result<u32, AttemptError> {
        let earlier = match self.retry {
            Retry::Requeue => delivery_count(properties, redelivered)?,
            Retry::DeadLetterLoop { .. } => rejections(queue, properties)?,
        };
        Ok(u32::try_from(earlier).unwrap_or(u32::MAX).saturating_add(1))
    }
}

/// Why the attempt count of a delivery could not be read. The delivery is then treated as
/// poison: the policy cannot be applied, and looping is worse than parking it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// The `x-death` header is malformed.
    #[error("malformed x-death header: {0}")]
    XDeath(#[from] XDeathError),
    /// `x-delivery-count` is not a non-negative integer.
    #[error("x-delivery-count is not a non-negative integer")]
    DeliveryCount,
    /// A redelivery without `x-delivery-count`: the queue does not count (a classic queue
    /// under [`Retry::Requeue`]), so requeueing could loop forever.
    #[error("redelivered without x-delivery-count: the queue does not count deliveries (not a quorum queue?)")]
    Uncounted,
}

/// Earlier deliveries, from a quorum queue's `x-delivery-count` (absent on a first delivery).
fn delivery_count(properties: &BasicProperties<'_>, redelivered: bool) -> Result<u64, AttemptError> {
    let Some(headers) = &properties.headers else {
        return if redelivered { Err(AttemptError::Uncounted) } else { Ok(0) };
    };
    let value = match headers {
        Table::Raw(raw) => raw.get(DELIVERY_COUNT_HEADER).map(|v| v.as_i64()),
        Table::Owned(owned) => owned.get(DELIVERY_COUNT_HEADER).map(owned_integer),
    };
    match value {
        None if redelivered => Err(AttemptError::Uncounted),
        None => Ok(0),
        Some(n) => n.and_then(|n| u64::try_from(n).ok()).ok_or(AttemptError::DeliveryCount),
    }
}

fn owned_integer(value: &FieldValue) -> Option<i64> {
    use FieldValue as V;
    match *value {
        V::I8(v) => Some(v.into()),
        V::U8(v) => Some(v.into()),
        V::I16(v) => Some(v.into()),
        V::U16(v) => Some(v.into()),
        V::I32(v) => Some(v.into()),
        V::U32(v) => Some(v.into()),
        V::I64(v) => Some(v),
        _ => None,
    }
}

/// Earlier rejections from `queue`, from the `x-death` entry RabbitMQ keeps for (queue, reason).
fn rejections(queue: &str, properties: &BasicProperties<'_>) -> Result<u64, AttemptError> {
    let deaths = x_death(properties)?;
    Ok(deaths.iter().filter(|d| d.queue == queue && d.reason == DeathReason::Rejected).map(|d| d.count).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_client::codec::FieldTable;
    use amqp_client::codec::table::RawTable;

    fn with_headers(headers: &FieldTable, f: impl FnOnce(&BasicProperties<'_>)) {
        let wire = headers.to_bytes().unwrap();
        let raw = RawTable::parse(&wire[4..]).unwrap();
        f(&BasicProperties { headers: Some(Table::Raw(raw)), ..Default::default() });
    }

    #[test]
    fn a_quorum_delivery_count_of_two_is_the_third_attempt() {
        let mut headers = FieldTable::new();
        headers.insert(DELIVERY_COUNT_HEADER, 2i64);
        with_headers(&headers, |props| assert_eq!(FailurePolicy::requeue(5).attempt("q", props, true), Ok(3)));
        let first = BasicProperties::default();
        assert_eq!(FailurePolicy::requeue(5).attempt("q", &first, false), Ok(1));
    }

    #[test]
    fn a_redelivery_without_a_count_is_uncounted_under_requeue() {
        let props = BasicProperties::default();
        assert_eq!(FailurePolicy::requeue(5).attempt("q", &props, true), Err(AttemptError::Uncounted));
    }

    #[test]
    fn a_mistyped_delivery_count_is_a_typed_error() {
        let mut headers = FieldTable::new();
        headers.insert(DELIVERY_COUNT_HEADER, "three");
        with_headers(&headers, |props| {
            assert_eq!(FailurePolicy::requeue(5).attempt("q", props, true), Err(AttemptError::DeliveryCount));
        });
    }

    #[test]
    fn only_rejections_from_the_consumed_queue_count_in_a_dead_letter_loop() {
        let death = |queue: &str, reason: &str, count: i64| {
            let mut t = FieldTable::new();
            t.insert("count", count);
            t.insert("reason", reason);
            t.insert("queue", queue);
            t.insert("exchange", "");
            FieldValue::Table(t)
        };
        let mut headers = FieldTable::new();
        headers.insert(
            "x-death",
            vec![death("work", "rejected", 2), death("work.retry", "expired", 2), death("other", "rejected", 7)],
        );
        let policy = FailurePolicy::dead_letter_loop(5, "park", "");
        with_headers(&headers, |props| assert_eq!(policy.attempt("work", props, false), Ok(3)));
    }

    #[test]
    fn a_malformed_x_death_is_a_typed_error_in_a_dead_letter_loop() {
        let mut headers = FieldTable::new();
        headers.insert("x-death", 42i64);
        let policy = FailurePolicy::dead_letter_loop(5, "park", "");
        with_headers(&headers, |props| {
            assert_eq!(policy.attempt("work", props, true), Err(AttemptError::XDeath(XDeathError::NotAnArray)));
        });
    }
}
