//! A consumer whose stream continues across recoveries: when its connection is lost it waits
//! for the recovery to start it again (same tag, same arguments, on the queue's current name)
//! and goes on. Deliveries carry their connection's generation: one received before a loss
//! cannot be acknowledged after it (the broker has already requeued it and will deliver it
//! again, flagged redelivered), and trying is a typed error.

use std::sync::Arc;

use amqp_client::Channel;
use amqp_client::api::{BasicConsumeOptions, Consumer, Delivery};
use amqp_client::codec::FieldTable;
use amqp_client::core::error::ChannelError;
use tokio::sync::mpsc;

use super::channel::{ChannelState, lock};
use super::error::RecoveryError;

/// What recovery needs to start a consumer again.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerRecord {
    /// The queue's name when it was consumed (recovery maps it to the current one).
    pub(crate) queue: String,
    /// With the consumer tag always set.
    pub(crate) options: BasicConsumeOptions,
    pub(crate) arguments: FieldTable,
    /// Where recovery hands the restarted consumer.
    pub(crate) replace: mpsc::UnboundedSender<(Consumer, Channel)>,
}

/// A consumer that survives connection loss. Ends when it is cancelled (by either side), when
/// its channel fails with a channel error, or when recovery gives up.
#[derive(Debug)]
pub struct RecoveringConsumer {
    state: Arc<ChannelState>,
    tag: String,
    current: Consumer,
    /// The channel `current` is on.
    on: Channel,
    replacements: mpsc::UnboundedReceiver<(Consumer, Channel)>,
}

impl RecoveringConsumer {
    pub(crate) fn new(
        state: Arc<ChannelState>,
        (current, on): (Consumer, Channel),
        replacements: mpsc::UnboundedReceiver<(Consumer, Channel)>,
    ) -> Self {
        RecoveringConsumer { state, tag: current.tag().to_owned(), current, on, replacements }
    }

    /// The consumer tag, the same on every connection.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The next delivery, waiting through recoveries; `None` once the consumer has ended.
    pub async fn next_delivery(&mut self) -> Option<RecoveredDelivery> {
        loop {
            if let Some(delivery) = self.current.next_delivery().await {
                return Some(RecoveredDelivery { delivery, state: self.state.clone() });
            }
            if !self.lost_with_connection() {
                self.forget();
                return None;
            }
            // Closed by the broker, to be reopened: on a channel only consumed from, no other
            // call would notice, so this one has it reopened (which restarts its consumers).
            if matches!(self.on.close_reason(), Some(ChannelError::ClosedByBroker { .. }))
                && self.state.shared.options.reopen_on_channel_error
                && self.state.channel().await.is_err()
            {
                self.forget();
                return None;
            }
            // Recovery hands over the restarted consumer, or drops the sender when it gives up.
            (self.current, self.on) = self.replacements.recv().await?;
            // A restore that had to start again sends a newer one after it.
            while let Ok(newer) = self.replacements.try_recv() {
                (self.current, self.on) = newer;
            }
        }
    }

    /// Cancels the consumer; it is not restarted by later recoveries.
    pub async fn cancel(&self) -> Result<(), RecoveryError> {
        self.forget();
        // By tag on the channel as it is now: a recovery may have restarted this consumer on
        // a channel that `next_delivery` has not switched to yet.
        let current = self.state.current.borrow().clone();
        match current.filter(|c| c.close_reason().is_none()) {
            Some(channel) => Ok(channel.basic_cancel(&self.tag).await?),
            None => Ok(self.current.cancel().await?),
        }
    }

    /// Whether the consumer ended because its connection did, or its channel was replaced or
    /// is being reopened — recovery then restarts it — as opposed to a cancel or a channel
    /// error that ends it.
    fn lost_with_connection(&self) -> bool {
        if self.state.is_ended() {
            return false;
        }
        let connection_gone = self.on.connection().close_reason().is_some();
        let closed_by_broker = matches!(self.on.close_reason(), Some(ChannelError::ClosedByBroker { .. }));
        let reopening = self.state.shared.options.reopen_on_channel_error && closed_by_broker;
        // Recovery reopened the channel under this consumer (another consumer's restart
        // failed and closed it): a replacement follows.
        let current_live = self
            .state
            .current
            .borrow()
            .as_ref()
            .is_some_and(|c| c.close_reason().is_none() && c.connection().close_reason().is_none());
        let replaced = self.on.close_reason().is_some() && current_live;
        connection_gone || reopening || replaced
    }

    /// Drops the consumer from the record; an auto-delete queue whose last consumer this was
    /// leaves the record too, as the broker deletes it.
    fn forget(&self) {
        let queue = {
            let mut records = lock(&self.state.consumers);
            let queue = records.iter().find(|r| r.options.consumer_tag == self.tag).map(|r| r.queue.clone());
            records.retain(|r| r.options.consumer_tag != self.tag);
            queue
        };
        if let Some(queue) = queue {
            let left = self.state.shared.consumers_of(&queue);
            self.state.shared.topology().consumer_gone_from(&queue, left);
        }
    }
}

/// A dropped consumer is not restarted by later recoveries.
impl Drop for RecoveringConsumer {
    fn drop(&mut self) {
        lock(&self.state.consumers).retain(|r| r.options.consumer_tag != self.tag);
    }
}

/// A delivery from a [`RecoveringConsumer`] or a recovering `basic_get`.
#[derive(Debug)]
pub struct RecoveredDelivery {
    delivery: Delivery,
    state: Arc<ChannelState>,
}

impl RecoveredDelivery {
    /// The client's delivery: body, properties, routing.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The connection generation it arrived on.
    pub fn generation(&self) -> u64 {
        self.delivery.tag().generation
    }

    /// The broker delivered it before (to this consumer before a loss, or to another).
    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered()
    }

    /// basic.ack. Fails with [`RecoveryError::StaleDelivery`] if the connection it came on
    /// has been replaced since, or with the connection's error if it is lost and not yet
    /// replaced: either way the ack is lost and the broker delivers the message again.
    pub async fn ack(&self) -> Result<(), RecoveryError> {
        self.check_current()?;
        Ok(self.delivery.ack().await?)
    }

    /// basic.nack (`requeue` or dead-letter / drop).
    pub async fn nack(&self, requeue: bool) -> Result<(), RecoveryError> {
        self.check_current()?;
        Ok(self.delivery.nack(requeue).await?)
    }

    /// basic.reject (`requeue` or dead-letter / drop).
    pub async fn reject(&self, requeue: bool) -> Result<(), RecoveryError> {
        self.check_current()?;
        Ok(self.delivery.reject(requeue).await?)
    }

    fn check_current(&self) -> Result<(), RecoveryError> {
        let current = self.state.current.borrow().as_ref().map(|c| c.connection().generation());
        let delivered_on = self.generation();
        match current {
            Some(current) if current != delivered_on => Err(RecoveryError::StaleDelivery { delivered_on, current }),
            _ => Ok(()),
        }
    }
}
