//! Publishing: the method and header are encoded on the caller's task, the body `Bytes` goes
//! to the socket without a copy, and on a channel in confirm mode the returned
//! [`PublishConfirm`] resolves with the broker's ack, nack or return.

use amqp_codec::method::BasicPublish;
use amqp_codec::{BasicProperties, encode_content_prefix};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::channel::Channel;
use super::error::Error;
use super::options::BasicPublishOptions;
use crate::core::command::Command;
use crate::core::error::ChannelError;
use crate::driver::Request;
pub use crate::driver::waiters::Confirmation;
use crate::driver::waiters::{Reply, Returnable};

/// A publish the broker has yet to confirm.
#[derive(Debug)]
pub struct PublishConfirm {
    confirm: oneshot::Receiver<Result<Confirmation, ChannelError>>,
    channel: Channel,
    /// Where its frames end in the connection's output.
    end: u64,
}

impl PublishConfirm {
    /// Waits for the broker's verdict: `Ack`, `Nack` or `Returned` in confirm mode, and
    /// `NotRequested` at once outside it. A publish that could not be sent (its channel
    /// closed first) is an error.
    pub async fn wait(self) -> Result<Confirmation, Error> {
        // No verdict will come once the channel or connection has ended: say which did.
        let channel = self.channel;
        channel.conn.inner.link.flush_to(self.end);
        match self.confirm.await {
            Ok(verdict) => verdict.map_err(Error::from),
            Err(_) => Err(match channel.close_reason() {
                Some(error) => error.into(),
                None => channel.conn.gone().into(),
            }),
        }
    }
}

impl Channel {
    /// basic.publish. Returns once the message is in the connection's queue, in order; in
    /// confirm mode, await the returned [`PublishConfirm`] for the broker's verdict. When the
    /// socket falls behind, this waits (the queue is bounded).
    ///
    /// A publish after a pause is written at once. One in a burst may wait to share a write:
    /// until 16 KiB have gathered, until this task waits for a confirm or another answer, or
    /// 2 ms at the most.
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
        if let Some(error) = self.close_reason() {
            return Err(error.into());
        }
        let body = body.into();
        let method = BasicPublish {
            exchange,
            routing_key,
            mandatory: options.mandatory,
            immediate: options.immediate,
            ..Default::default()
        };
        let frame_max = self.conn.inner.tuned.frame_max;
        let prefix = super::encode_buf::encode(|out| {
            encode_content_prefix(self.id, &method, properties, body.len() as u64, frame_max, 0, out)
        })?;
        let mandatory = options.mandatory.then(|| Returnable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body: body.clone(),
        });
        let (confirm_tx, confirm) = oneshot::channel();
        let reply = Reply::Publish { confirm: confirm_tx, mandatory };
        let command = Command::Publish { channel: self.id, prefix, body };
        let end = self.conn.submit(Request::new(command, reply)).await?;
        Ok(PublishConfirm { confirm, channel: self.clone(), end })
    }
}
