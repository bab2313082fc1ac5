//! Pull: take up to N messages with basic.get, stopping at the first get-empty. For bursty
//! batch jobs that set their own pace; for everything else, push (`basic_consume`) is better:
//! each basic.get is a round trip, while a consumer has messages streamed to it under a
//! prefetch limit. Uses only `amqp-client`'s public API.

use amqp_client::api::{Channel, Delivery, Error};

/// Takes up to `max` messages from `queue`, fewer if it runs empty first. With `no_ack`
/// false, every returned delivery must be acked (or nacked) by the caller; until then the
/// broker holds it as unacknowledged, and redelivers it if the channel closes.
///
/// ```no_run
/// # async fn demo(channel: amqp_client::Channel) -> Result<(), amqp_client::Error> {
/// let batch = mq_patterns::pull::pull_batch(&channel, "reports", 100, false).await?;
/// for delivery in &batch {
///     // ... process ...
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub async fn pull_batch(channel: &Channel, queue: &str, max: usize, no_ack: bool) -> Result<Vec<Delivery>, Error> {
    let mut batch = Vec::with_capacity(max.min(1024));
    while batch.len() < max {
        match channel.basic_get(queue, no_ack).await? {
            Some(delivery) => batch.push(delivery),
            None => break,
        }
    }
    Ok(batch)
}
