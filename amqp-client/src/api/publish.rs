//! Publishing: the method and header are encoded on the caller's task, the body `Bytes` goes
//! to the socket without a copy, and on a channel in confirm mode the returned
//! [`PublishConfirm`] resolves with the broker's ack, nack or return.

use amqp_codec::method::BasicPublish;
use amqp_codec::{BasicProperties, DeliveryTag, encode_content_prefix};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::channel::Channel;
use super::connection::unexpected;
use super::error::Error;
use super::options::BasicPublishOptions;
use crate::core::command::Command;
use crate::driver::Request;
pub use crate::driver::waiters::Confirmation;
use crate::driver::waiters::{Outcome, Reply, Returnable};

/// A publish the broker has yet to confirm.
#[derive(Debug)]
pub struct PublishConfirm {
    sequence: Option<DeliveryTag>,
    confirm: oneshot::Receiver<Confirmation>,
    channel: Channel,
}

impl PublishConfirm {
    /// The confirm sequence number, in confirm mode.
    pub fn sequence(&self) -> Option<DeliveryTag> {
        self.sequence
    }

    /// Waits for the broker's verdict. Outside confirm mode there is none to wait for, and
    /// this answers `Ack` at once (the message is on its way, nothing more is known).
    pub async fn wait(self) -> Result<Confirmation, Error> {
        if self.sequence.is_none() {
            return Ok(Confirmation::Ack);
        }
        // No verdict will come once the channel or connection has ended: say which did.
        let channel = self.channel;
        self.confirm.await.map_err(|_| match channel.close_reason() {
            Some(error) => error.into(),
            None => channel.conn.gone().into(),
        })
    }
}

impl Channel {
    /// basic.publish. Returns once the message is queued for the socket, in order; in confirm
    /// mode, await the returned [`PublishConfirm`] for the broker's verdict.
    ///
    /// ```no_run
    /// # async fn demo(channel: amqp_client::api::Channel) -> Result<(), amqp_client::api::Error> {
    /// use amqp_client::api::{BasicPublishOptions, Confirmation};
    /// use amqp_codec::BasicProperties;
    /// channel.confirm_select().await?;
    /// let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
    /// let confirm = channel.basic_publish("", "orders", BasicPublishOptions::default(), &props, "hello").await?;
    /// assert_eq!(confirm.wait().await?, Confirmation::Ack);
    /// # Ok(()) }
    /// ```
    pub async fn basic_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        properties: &BasicProperties<'_>,
        body: impl Into<Bytes>,
    ) -> Result<PublishConfirm, Error> {
        let body = body.into();
        let method = BasicPublish {
            exchange,
            routing_key,
            mandatory: options.mandatory,
            immediate: options.immediate,
            ..Default::default()
        };
        let mut prefix = BytesMut::new();
        let frame_max = self.conn.inner.tuned.frame_max;
        encode_content_prefix(self.id, &method, properties, body.len() as u64, frame_max, 0, &mut prefix)?;
        let mandatory = options.mandatory.then(|| Returnable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body: body.clone(),
        });
        let (outcome_tx, outcome) = oneshot::channel();
        let (confirm_tx, confirm) = oneshot::channel();
        let reply = Reply::Publish { outcome: outcome_tx, confirm: Some(confirm_tx), mandatory };
        let command = Command::Publish { channel: self.id, prefix: prefix.freeze(), body };
        self.conn.submit(Request { command, reply }).await?;
        match self.conn.outcome(outcome).await? {
            Outcome::Published(sequence) => Ok(PublishConfirm { sequence, confirm, channel: self.clone() }),
            other => Err(unexpected(other)),
        }
    }
}
