//! Consuming: `basic_consume` returns a [`Consumer`], a `Stream` of [`Delivery`]s whose bodies
//! are `Bytes` slices of the read buffer; `basic_get` pulls one message. A delivery's
//! [`AckTag`] names its connection and channel, so an ack after a reconnect is an error.

use std::pin::Pin;
use std::task::{Context, Poll};

use amqp_codec::method::{BasicCancel, BasicConsume, BasicGet};
use amqp_codec::{BasicProperties, ChannelId, DeliveryTag, FieldTable, Method, Table};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::channel::Channel;
use super::connection::unexpected;
use super::error::Error;
use super::options::BasicConsumeOptions;
use crate::core::command::{Command, Verdict};
use crate::core::event::Message;
use crate::driver::Request;
use crate::driver::delivery_queue::{self, ConsumerRx, Waiting};
use crate::driver::waiters::{Outcome, Reply};

/// A delivery tag with the connection generation and channel it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AckTag {
    /// The connection's generation ([`super::Connection::generation`]).
    pub generation: u64,
    /// The channel.
    pub channel: ChannelId,
    /// The broker's delivery tag.
    pub tag: DeliveryTag,
}

/// A message from basic.deliver or basic.get-ok.
#[derive(Clone, Debug)]
pub struct Delivery {
    message: Message,
    tag: AckTag,
    redelivered: bool,
    channel: Channel,
    /// The queue of the consumer it came from (none for basic.get).
    queue: Option<Waiting>,
}

impl Delivery {
    /// `None` for a message that is not a delivery or get-ok (the core only passes those).
    fn new(message: Message, channel: Channel) -> Option<Self> {
        let (tag, redelivered) = match message.method().ok()? {
            Method::BasicDeliver(d) => (d.delivery_tag, d.redelivered),
            Method::BasicGetOk(g) => (g.delivery_tag, g.redelivered),
            _ => return None,
        };
        let tag = AckTag { generation: channel.conn.generation(), channel: channel.id, tag };
        Some(Delivery { message, tag, redelivered, channel, queue: None })
    }

    /// The body, sharing the buffer it was read into.
    pub fn body(&self) -> &Bytes {
        &self.message.body
    }

    /// The tag to acknowledge it with.
    pub fn tag(&self) -> AckTag {
        self.tag
    }

    /// The broker delivered it before, to this or another consumer.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        // The core parsed this payload when it arrived, so it parses again.
        match self.message.method() {
            Ok(Method::BasicDeliver(d)) => d.exchange,
            Ok(Method::BasicGetOk(g)) => g.exchange,
            _ => "",
        }
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        match self.message.method() {
            Ok(Method::BasicDeliver(d)) => d.routing_key,
            Ok(Method::BasicGetOk(g)) => g.routing_key,
            _ => "",
        }
    }

    /// The consumer it was delivered to (`None` for basic.get).
    pub fn consumer_tag(&self) -> Option<&str> {
        match self.message.method() {
            Ok(Method::BasicDeliver(d)) => Some(d.consumer_tag),
            _ => None,
        }
    }

    /// For basic.get: how many messages the queue still held (`None` for deliveries).
    pub fn message_count(&self) -> Option<u32> {
        match self.message.method() {
            Ok(Method::BasicGetOk(g)) => Some(g.message_count),
            _ => None,
        }
    }

    /// The message properties, borrowed from the content header.
    pub fn properties(&self) -> BasicProperties<'_> {
        // The core decoded them once on arrival; a default is unreachable in practice.
        self.message.header().and_then(|h| h.properties()).unwrap_or_default()
    }

    /// The raw frames' payloads.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Acknowledges it.
    ///
    /// While more deliveries wait in its consumer's queue, the ack may wait for theirs (2 ms
    /// at most) to go out in one write; otherwise it is written at once.
    pub async fn ack(&self) -> Result<(), Error> {
        self.channel.ack_with(self.tag, false, Verdict::Ack, self.more_waiting()).await
    }

    /// Rejects it (RabbitMQ's basic.nack), requeued or dead-lettered.
    pub async fn nack(&self, requeue: bool) -> Result<(), Error> {
        self.channel.ack_with(self.tag, false, Verdict::Nack { requeue }, self.more_waiting()).await
    }

    /// Rejects it (basic.reject).
    pub async fn reject(&self, requeue: bool) -> Result<(), Error> {
        self.channel.ack_with(self.tag, false, Verdict::Reject { requeue }, self.more_waiting()).await
    }

    fn more_waiting(&self) -> bool {
        self.queue.as_ref().is_some_and(Waiting::any)
    }
}

/// A consumer's deliveries. Ends when the consumer is cancelled (by either side), or its
/// channel or connection closes.
#[derive(Debug)]
pub struct Consumer {
    tag: String,
    deliveries: ConsumerRx,
    channel: Channel,
}

impl Consumer {
    fn received(&self, message: Message) -> Option<Delivery> {
        let mut delivery = Delivery::new(message, self.channel.clone())?;
        delivery.queue = Some(self.deliveries.waiting());
        Some(delivery)
    }

    /// The consumer tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The next delivery, or `None` once the consumer has ended.
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.poll_delivery(cx)).await
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        loop {
            match self.deliveries.poll_recv(cx) {
                Poll::Ready(Some(message)) => {
                    if let Some(d) = self.received(message) {
                        return Poll::Ready(Some(d));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    // Acks made while deliveries waited go out before this task sleeps.
                    self.channel.conn.flush();
                    return Poll::Pending;
                }
            }
        }
    }

    /// The next delivery if one is waiting, without waiting for one. `None` both when none
    /// is waiting and when the consumer has ended; `is_ended` tells them apart.
    pub fn try_next_delivery(&mut self) -> Option<Delivery> {
        while let Some(message) = self.deliveries.try_recv() {
            if let Some(d) = self.received(message) {
                return Some(d);
            }
        }
        None
    }

    /// True once the consumer has ended and every delivery it received has been read.
    pub fn is_ended(&self) -> bool {
        self.deliveries.is_ended()
    }

    /// Cancels the consumer (basic.cancel); deliveries already received stay readable.
    pub async fn cancel(&self) -> Result<(), Error> {
        self.channel.send(BasicCancel { consumer_tag: &self.tag, no_wait: false }.into()).await.map(drop)
    }
}

impl futures_core::Stream for Consumer {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.poll_delivery(cx)
    }
}

impl Channel {
    /// basic.consume: starts a consumer on `queue`.
    pub async fn basic_consume(
        &self,
        queue: &str,
        options: BasicConsumeOptions,
        arguments: &FieldTable,
    ) -> Result<Consumer, Error> {
        let BasicConsumeOptions { consumer_tag, no_local, no_ack, exclusive } = options;
        let method = BasicConsume {
            queue,
            consumer_tag: &consumer_tag,
            no_local,
            no_ack,
            exclusive,
            no_wait: false,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        let frame = self.encode(method.into())?;
        let (deliveries_tx, deliveries) = delivery_queue::channel(self.conn.inner.consumer_buffer);
        let (tx, rx) = oneshot::channel();
        let reply = Reply::Consume { outcome: tx, deliveries: deliveries_tx };
        self.conn.submit(Request::new(Command::Method { channel: self.id, frame }, reply)).await?;
        let payload = match self.conn.outcome(rx).await? {
            Outcome::Reply(payload) => payload,
            other => return Err(unexpected(other)),
        };
        let tag = match Method::parse(&payload, 0)? {
            Method::BasicConsumeOk(ok) => ok.consumer_tag.to_owned(),
            other => return Err(Error::UnexpectedReply(other.name())),
        };
        Ok(Consumer { tag, deliveries, channel: self.clone() })
    }

    /// basic.cancel by tag.
    pub async fn basic_cancel(&self, consumer_tag: &str) -> Result<(), Error> {
        self.send(BasicCancel { consumer_tag, no_wait: false }.into()).await.map(drop)
    }

    /// basic.get: one message, or `None` when the queue is empty.
    pub async fn basic_get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>, Error> {
        match self.send(BasicGet { queue, no_ack, ..Default::default() }.into()).await? {
            Outcome::GetOk(message) => Ok(Delivery::new(message, self.clone())),
            Outcome::Reply(_) => Ok(None), // basic.get-empty
            other => Err(unexpected(other)),
        }
    }
}
