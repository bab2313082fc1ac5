//! How a perf worker talks to the broker: over a plain client connection, or with `--recover`
//! over mq-patterns' recovering connection, which comes back by itself after a loss with its
//! channel, QoS, confirm mode and consumer, and sends the unconfirmed publishes again. The
//! producers and consumers are written once against these few operations.
//!
//! What recovery does not hide, and perf therefore counts (with `--verify`): a publish without
//! confirms may be lost with its connection, a re-sent publish may reach the queue twice, and
//! deliveries that were not acked before a loss come again (flagged redelivered).

use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use amqp_client::api::{
    AckTag, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, Channel, Confirmation, Connection, Consumer,
    Delivery, PublishConfirm,
};
use amqp_codec::{BasicProperties, FieldTable};
use bytes::Bytes;
use futures_core::Stream;
use mq_patterns::recovery::{
    RecoveredDelivery, RecoveringChannel, RecoveringConfirm, RecoveringConnection, RecoveringConsumer, RecoveryError,
    RecoveryStats,
};

use crate::connect::Broker;
use crate::error::{Action, CliError, Doing};

/// One worker's connection.
#[derive(Debug, Clone)]
pub enum Link {
    /// A client connection: a loss ends the run.
    Plain(Connection),
    /// A recovering connection (`--recover`).
    Recovering(RecoveringConnection),
}

impl Link {
    /// Connects as `amqp <name>`, recovering or not.
    pub async fn open(
        broker: &Broker,
        name: &str,
        consumer_buffer: Option<usize>,
        recover: bool,
    ) -> Result<Link, CliError> {
        Ok(match recover {
            false => Link::Plain(broker.connect_with(name, consumer_buffer).await?),
            true => Link::Recovering(broker.connect_recovering(name, consumer_buffer).await?),
        })
    }

    /// A channel: a recovering one on a recovering connection.
    pub async fn open_channel(&self) -> Result<PerfChannel, CliError> {
        match self {
            Link::Plain(conn) => conn.open_channel().await.doing(|| Action::OpenChannel).map(PerfChannel::Plain),
            Link::Recovering(conn) => {
                conn.open_channel().await.doing(|| Action::OpenChannel).map(PerfChannel::Recovering)
            }
        }
    }

    /// The client connection to use now: a recovering one's current connection, waiting
    /// (bounded) while it recovers.
    pub async fn connection(&self) -> Result<Connection, CliError> {
        match self {
            Link::Plain(conn) => Ok(conn.clone()),
            Link::Recovering(conn) => conn.wait_until_up().await.doing(|| Action::Connect),
        }
    }

    /// The client connection if it is up now, without waiting.
    pub fn current(&self) -> Option<Connection> {
        match self {
            Link::Plain(conn) => conn.close_reason().is_none().then(|| conn.clone()),
            Link::Recovering(conn) => conn.current(),
        }
    }

    /// What recovery did on this connection; `None` without recovery.
    pub fn stats(&self) -> Option<RecoveryStats> {
        match self {
            Link::Plain(_) => None,
            Link::Recovering(conn) => Some(conn.stats()),
        }
    }

    /// Closes the connection (and stops recovering it).
    pub async fn close(&self) -> Result<(), CliError> {
        match self {
            Link::Plain(conn) => conn.close().await.doing(|| Action::Close),
            Link::Recovering(conn) => conn.close().await.doing(|| Action::Close),
        }
    }
}

/// A worker's channel.
#[derive(Debug, Clone)]
pub enum PerfChannel {
    /// On a client connection.
    Plain(Channel),
    /// Reopened by each recovery.
    Recovering(RecoveringChannel),
}

impl PerfChannel {
    /// confirm.select.
    pub async fn confirm_select(&self) -> Result<(), CliError> {
        match self {
            PerfChannel::Plain(c) => c.confirm_select().await.doing(|| Action::ConfirmSelect),
            PerfChannel::Recovering(c) => c.confirm_select().await.doing(|| Action::ConfirmSelect),
        }
    }

    /// basic.qos for the channel's consumers.
    pub async fn qos(&self, prefetch: u16) -> Result<(), CliError> {
        let options = BasicQosOptions::default();
        match self {
            PerfChannel::Plain(c) => c.basic_qos(prefetch, options).await.doing(|| Action::Qos),
            PerfChannel::Recovering(c) => c.basic_qos(prefetch, options).await.doing(|| Action::Qos),
        }
    }

    /// Publishes `body` to `queue` through the default exchange.
    pub async fn publish(&self, queue: &str, body: Bytes) -> Result<PerfConfirm, CliError> {
        let action = || Action::Publish { exchange: String::new(), routing_key: queue.to_owned() };
        let (options, properties) = (BasicPublishOptions::default(), BasicProperties::default());
        match self {
            PerfChannel::Plain(c) => {
                c.basic_publish("", queue, options, &properties, body).await.doing(action).map(PerfConfirm::Plain)
            }
            PerfChannel::Recovering(c) => {
                let confirm = c.basic_publish("", queue, options, &properties, body).await.doing(action)?;
                Ok(PerfConfirm::Recovering(confirm))
            }
        }
    }

    /// basic.consume.
    pub async fn consume(&self, queue: &str, options: BasicConsumeOptions) -> Result<PerfConsumer, CliError> {
        let action = || Action::Consume(queue.to_owned());
        let arguments = FieldTable::new();
        match self {
            PerfChannel::Plain(c) => {
                c.basic_consume(queue, options, &arguments).await.doing(action).map(PerfConsumer::Plain)
            }
            PerfChannel::Recovering(c) => {
                c.basic_consume(queue, options, &arguments).await.doing(action).map(PerfConsumer::Recovering)
            }
        }
    }

    /// basic.ack with multiple=true up to `tag`. On a recovering channel an ack that cannot
    /// be sent is no failure: its deliveries came on a connection since lost (the client
    /// refuses a tag of an earlier connection), and the broker delivers them again.
    pub async fn ack_up_to(&self, tag: AckTag, queue: &str) -> Result<(), CliError> {
        match self {
            PerfChannel::Plain(c) => c.basic_ack(tag, true).await.doing(|| Action::Consume(queue.to_owned())),
            PerfChannel::Recovering(c) => {
                if let Some(current) = c.current() {
                    let _ = current.basic_ack(tag, true).await;
                }
                Ok(())
            }
        }
    }

    /// basic.cancel; a channel already gone has no consumer left to cancel.
    pub async fn cancel(&self, tag: &str) {
        let channel = match self {
            PerfChannel::Plain(c) => Some(c.clone()),
            // The consumer ends when its client consumer is cancelled and is not restarted.
            PerfChannel::Recovering(c) => c.current(),
        };
        if let Some(channel) = channel {
            let _ = channel.basic_cancel(tag).await;
        }
    }
}

/// The broker's verdict on one publish, to come.
#[derive(Debug)]
pub enum PerfConfirm {
    /// On a client channel.
    Plain(PublishConfirm),
    /// Kept and re-sent across recoveries until confirmed.
    Recovering(RecoveringConfirm),
}

/// What the broker said of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Acked; `resent` when it went out again after a connection loss (a possible duplicate).
    Ack {
        /// Sent more than once.
        resent: bool,
    },
    /// Refused (or returned, which perf's publishes never ask for).
    Nack,
}

impl PerfConfirm {
    /// Waits for the verdict; an error ends the run.
    pub async fn wait(self, queue: &str) -> Result<Verdict, CliError> {
        let action = || Action::Publish { exchange: String::new(), routing_key: queue.to_owned() };
        match self {
            PerfConfirm::Plain(confirm) => match confirm.wait().await.doing(action)? {
                Confirmation::Nack | Confirmation::Returned(_) => Ok(Verdict::Nack),
                // NotRequested does not come: perf waits for confirms only in confirm mode.
                _ => Ok(Verdict::Ack { resent: false }),
            },
            PerfConfirm::Recovering(confirm) => match confirm.wait().await {
                Ok(published) => Ok(Verdict::Ack { resent: published.resent() }),
                Err(RecoveryError::Nacked { .. } | RecoveryError::Unroutable { .. }) => Ok(Verdict::Nack),
                Err(error) => Err(error).doing(action),
            },
        }
    }
}

/// A worker's consumer.
#[derive(Debug)]
pub enum PerfConsumer {
    /// Ends with its connection.
    Plain(Consumer),
    /// Goes on across recoveries.
    Recovering(RecoveringConsumer),
}

/// A delivery from either kind of consumer.
#[derive(Debug)]
pub enum Got {
    /// From a client consumer.
    Plain(Delivery),
    /// From a recovering consumer.
    Recovering(RecoveredDelivery),
}

impl Got {
    /// The client's delivery.
    pub fn delivery(&self) -> &Delivery {
        match self {
            Got::Plain(d) => d,
            Got::Recovering(d) => d.delivery(),
        }
    }
}

impl PerfConsumer {
    /// The consumer tag (the same on every connection of a recovering one).
    pub fn tag(&self) -> &str {
        match self {
            PerfConsumer::Plain(c) => c.tag(),
            PerfConsumer::Recovering(c) => c.tag(),
        }
    }

    /// The next delivery, waiting; `None` once the consumer has ended.
    pub async fn next(&mut self) -> Option<Got> {
        match self {
            PerfConsumer::Plain(c) => c.next_delivery().await.map(Got::Plain),
            PerfConsumer::Recovering(c) => c.next_delivery().await.map(Got::Recovering),
        }
    }

    /// The next delivery if one is already here, without waiting (`None` if none is).
    pub fn ready(&mut self) -> Option<Option<Got>> {
        // A no-op waker is enough: when nothing is ready the caller awaits `next`, which
        // registers the task's real waker.
        let mut cx = Context::from_waker(Waker::noop());
        let polled = match self {
            PerfConsumer::Plain(c) => Pin::new(c).poll_next(&mut cx).map(|d| d.map(Got::Plain)),
            // Dropping the future after one poll loses nothing: it waits only on channel
            // receives, which keep what they have not yet returned.
            PerfConsumer::Recovering(c) => pin!(c.next_delivery()).poll(&mut cx).map(|d| d.map(Got::Recovering)),
        };
        match polled {
            Poll::Ready(delivery) => Some(delivery),
            Poll::Pending => None,
        }
    }
}
