//! `Channel`: an async method for every exchange, queue, basic, tx and confirm method. Each
//! encodes its frame on the caller's task and hands it to the driver; synchronous methods
//! wait for their reply. Publishing and consuming live in `publish.rs` and `consumer.rs`.

use amqp_codec::method::*;
use amqp_codec::{ChannelId, FieldTable, Method, ReplyCode, Table, encode_method};
use bytes::Bytes;
use tokio::sync::watch;

use super::connection::{Connection, unexpected};
use super::consumer::AckTag;
use super::error::Error;
use super::options::*;
use crate::core::command::{Command, Verdict};
use crate::core::error::ChannelError;
use crate::driver::Request;
use crate::driver::waiters::{Outcome, Reply};

/// A channel: one lane of a connection. Cheap to clone; clones share the channel.
#[derive(Clone, Debug)]
pub struct Channel {
    pub(crate) conn: Connection,
    pub(crate) id: ChannelId,
    closed: watch::Receiver<Option<ChannelError>>,
}

/// What queue.declare reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's name (the broker's, for a server-named queue).
    pub name: String,
    /// Messages ready in it.
    pub message_count: u32,
    /// Its consumers.
    pub consumer_count: u32,
}

impl Channel {
    pub(crate) fn new(conn: Connection, id: ChannelId, closed: watch::Receiver<Option<ChannelError>>) -> Self {
        Channel { conn, id, closed }
    }

    /// The channel number.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The connection the channel belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Why the channel ended, if it has.
    pub fn close_reason(&self) -> Option<ChannelError> {
        self.closed.borrow().clone()
    }

    /// Resolves when the channel has ended, with why.
    pub async fn closed(&self) -> ChannelError {
        let mut closed = self.closed.clone();
        loop {
            if let Some(error) = closed.borrow_and_update().clone() {
                return error;
            }
            if closed.changed().await.is_err() {
                return ChannelError::Connection(self.conn.gone());
            }
        }
    }

    pub(crate) fn encode(&self, method: Method<'_>) -> Result<Bytes, Error> {
        let frame_max = self.conn.inner.tuned.frame_max;
        Ok(super::encode_buf::encode(|out| encode_method(self.id, &method, frame_max, out))?)
    }

    /// Sends a method and returns its outcome.
    pub(crate) async fn send(&self, method: Method<'_>) -> Result<Outcome, Error> {
        let frame = self.encode(method)?;
        match self.conn.request(Command::Method { channel: self.id, frame }).await? {
            Outcome::Failed(error) => Err(error.into()),
            outcome => Ok(outcome),
        }
    }

    /// Sends a synchronous method and returns its reply's payload (None for no-wait).
    async fn call(&self, method: Method<'_>) -> Result<Option<Bytes>, Error> {
        match self.send(method).await? {
            Outcome::Reply(payload) => Ok(Some(payload)),
            Outcome::Sent => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the channel (channel.close, then close-ok), after every request sent before.
    pub async fn close(&self) -> Result<(), Error> {
        let command = Command::CloseChannel {
            channel: self.id,
            code: ReplyCode::REPLY_SUCCESS,
            text: "closed by the client".into(),
        };
        match self.conn.request(command).await? {
            Outcome::Sent => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// exchange.declare.
    pub async fn exchange_declare(
        &self,
        exchange: &str,
        kind: &str,
        options: ExchangeDeclareOptions,
        arguments: &FieldTable,
    ) -> Result<(), Error> {
        let ExchangeDeclareOptions { passive, durable, auto_delete, internal, no_wait } = options;
        let method = ExchangeDeclare {
            exchange,
            kind,
            passive,
            durable,
            auto_delete,
            internal,
            no_wait,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        self.call(method.into()).await.map(drop)
    }

    /// exchange.delete.
    pub async fn exchange_delete(&self, exchange: &str, options: ExchangeDeleteOptions) -> Result<(), Error> {
        let method =
            ExchangeDelete { exchange, if_unused: options.if_unused, no_wait: options.no_wait, ..Default::default() };
        self.call(method.into()).await.map(drop)
    }

    /// exchange.bind (RabbitMQ): messages routed to `source` also go to `destination`.
    pub async fn exchange_bind(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        no_wait: bool,
        arguments: &FieldTable,
    ) -> Result<(), Error> {
        let method = ExchangeBind {
            destination,
            source,
            routing_key,
            no_wait,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        self.call(method.into()).await.map(drop)
    }

    /// exchange.unbind (RabbitMQ).
    pub async fn exchange_unbind(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        no_wait: bool,
        arguments: &FieldTable,
    ) -> Result<(), Error> {
        let method = ExchangeUnbind {
            destination,
            source,
            routing_key,
            no_wait,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        self.call(method.into()).await.map(drop)
    }

    /// queue.declare; an empty name asks the broker to name the queue. With `no_wait` the
    /// counts are zero and the name is the one given.
    pub async fn queue_declare(
        &self,
        queue: &str,
        options: QueueDeclareOptions,
        arguments: &FieldTable,
    ) -> Result<QueueInfo, Error> {
        let QueueDeclareOptions { passive, durable, exclusive, auto_delete, no_wait } = options;
        let method = QueueDeclare {
            queue,
            passive,
            durable,
            exclusive,
            auto_delete,
            no_wait,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        let Some(reply) = self.call(method.into()).await? else {
            return Ok(QueueInfo { name: queue.to_owned(), message_count: 0, consumer_count: 0 });
        };
        match Method::parse(&reply, 0)? {
            Method::QueueDeclareOk(ok) => Ok(QueueInfo {
                name: ok.queue.to_owned(),
                message_count: ok.message_count,
                consumer_count: ok.consumer_count,
            }),
            other => Err(Error::UnexpectedReply(other.name())),
        }
    }

    /// queue.bind.
    pub async fn queue_bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        no_wait: bool,
        arguments: &FieldTable,
    ) -> Result<(), Error> {
        let method = QueueBind {
            queue,
            exchange,
            routing_key,
            no_wait,
            arguments: Table::from(arguments),
            ..Default::default()
        };
        self.call(method.into()).await.map(drop)
    }

    /// queue.unbind.
    pub async fn queue_unbind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), Error> {
        let method =
            QueueUnbind { queue, exchange, routing_key, arguments: Table::from(arguments), ..Default::default() };
        self.call(method.into()).await.map(drop)
    }

    /// queue.purge; returns how many messages were removed (0 with `no_wait`).
    pub async fn queue_purge(&self, queue: &str, no_wait: bool) -> Result<u32, Error> {
        let reply = self.call(QueuePurge { queue, no_wait, ..Default::default() }.into()).await?;
        message_count(reply)
    }

    /// queue.delete; returns how many messages were deleted with it (0 with `no_wait`).
    pub async fn queue_delete(&self, queue: &str, options: QueueDeleteOptions) -> Result<u32, Error> {
        let QueueDeleteOptions { if_unused, if_empty, no_wait } = options;
        let reply = self.call(QueueDelete { queue, if_unused, if_empty, no_wait, ..Default::default() }.into()).await?;
        message_count(reply)
    }

    /// basic.qos: at most `prefetch_count` unacknowledged deliveries per consumer (or, with
    /// `global`, for the whole channel). 0 is no limit.
    pub async fn basic_qos(&self, prefetch_count: u16, options: BasicQosOptions) -> Result<(), Error> {
        self.call(BasicQos { prefetch_size: 0, prefetch_count, global: options.global }.into()).await.map(drop)
    }

    /// basic.recover: redeliver this channel's unacknowledged messages (requeued if `requeue`).
    pub async fn basic_recover(&self, requeue: bool) -> Result<(), Error> {
        self.call(BasicRecover { requeue }.into()).await.map(drop)
    }

    /// basic.ack for a delivery of this channel. Returns once the ack is queued for the
    /// socket: the protocol has no answer to an ack, so there is nothing more to wait for.
    pub async fn basic_ack(&self, tag: AckTag, multiple: bool) -> Result<(), Error> {
        self.ack_with(tag, multiple, Verdict::Ack, false).await
    }

    /// basic.nack (RabbitMQ) for a delivery of this channel; queued as `basic_ack` is.
    pub async fn basic_nack(&self, tag: AckTag, multiple: bool, requeue: bool) -> Result<(), Error> {
        self.ack_with(tag, multiple, Verdict::Nack { requeue }, false).await
    }

    /// basic.reject for a delivery of this channel; queued as `basic_ack` is.
    pub async fn basic_reject(&self, tag: AckTag, requeue: bool) -> Result<(), Error> {
        self.ack_with(tag, false, Verdict::Reject { requeue }, false).await
    }

    /// Queues an ack, nack or reject without a round trip to the driver: nobody answers it.
    /// `batch`: more deliveries wait for the caller, so the next ack is coming.
    pub(crate) async fn ack_with(
        &self,
        tag: AckTag,
        multiple: bool,
        verdict: Verdict,
        batch: bool,
    ) -> Result<(), Error> {
        let tag = self.own(tag)?;
        if let Some(error) = self.close_reason() {
            return Err(error.into());
        }
        let command = Command::Ack { channel: self.id, tag, multiple, verdict };
        self.conn.submit(Request { command, reply: Reply::Nothing, batch }).await.map(drop)
    }

    /// The wire tag of a delivery of this channel; a tag of another channel or connection
    /// (one from before a reconnect) is an error, never a wrong ack.
    fn own(&self, tag: AckTag) -> Result<amqp_codec::DeliveryTag, Error> {
        if tag.generation != self.conn.generation() || tag.channel != self.id {
            return Err(Error::StaleDelivery {
                tag: tag.tag.0,
                owner: format!("connection {} channel {}", tag.generation, tag.channel),
            });
        }
        Ok(tag.tag)
    }

    /// confirm.select (RabbitMQ): the broker acks or nacks every later publish.
    pub async fn confirm_select(&self) -> Result<(), Error> {
        self.call(ConfirmSelect { nowait: false }.into()).await.map(drop)
    }

    /// tx.select.
    pub async fn tx_select(&self) -> Result<(), Error> {
        self.call(TxSelect {}.into()).await.map(drop)
    }

    /// tx.commit.
    pub async fn tx_commit(&self) -> Result<(), Error> {
        self.call(TxCommit {}.into()).await.map(drop)
    }

    /// tx.rollback.
    pub async fn tx_rollback(&self) -> Result<(), Error> {
        self.call(TxRollback {}.into()).await.map(drop)
    }

    /// channel.flow: ask the broker to stop (false) or resume (true) deliveries.
    pub async fn channel_flow(&self, active: bool) -> Result<bool, Error> {
        let reply = self.call(ChannelFlow { active }.into()).await?;
        match reply.as_deref().map(|r| Method::parse(r, 0)).transpose()? {
            Some(Method::ChannelFlowOk(ok)) => Ok(ok.active),
            Some(other) => Err(Error::UnexpectedReply(other.name())),
            None => Err(Error::UnexpectedReply("no reply")),
        }
    }
}

fn message_count(reply: Option<Bytes>) -> Result<u32, Error> {
    let Some(reply) = reply else { return Ok(0) };
    match Method::parse(&reply, 0)? {
        Method::QueuePurgeOk(ok) => Ok(ok.message_count),
        Method::QueueDeleteOk(ok) => Ok(ok.message_count),
        other => Err(Error::UnexpectedReply(other.name())),
    }
}
