//! What the core tells its driver: outcomes of commands, and what the broker sent on its own
//! (deliveries, returns, confirms, cancellations, flow, blocked). Messages keep the frames'
//! payloads as `Bytes` slices of the read buffer and decode them on demand.

use amqp_codec::{ChannelId, ContentHeader, DecodeError, DeliveryTag, FieldTable, Method};
use bytes::Bytes;

use super::command::RequestId;
use super::error::{ChannelError, ConnectionError};
use super::tuning::Tuned;

/// An output of the core.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The handshake finished; the connection is open.
    Opened {
        /// The broker's server-properties.
        server_properties: FieldTable,
        /// The negotiated limits.
        tuned: Tuned,
    },
    /// The connection ended; no event follows.
    Closed(ConnectionError),
    /// The broker stopped reading publishes (an alarm): publishes wait until `Unblocked`.
    Blocked {
        /// The broker's reason.
        reason: String,
    },
    /// The broker reads publishes again.
    Unblocked,
    /// A channel opened.
    ChannelOpened {
        /// The `OpenChannel` command.
        request: RequestId,
        /// Its number.
        channel: ChannelId,
    },
    /// A channel ended: closed by the broker, or by the client once close-ok came back.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Why.
        error: ChannelError,
    },
    /// A synchronous method's reply arrived.
    Reply {
        /// The command.
        request: RequestId,
        /// The channel it came on.
        channel: ChannelId,
        /// The reply method's payload; decode with [`Method::parse`].
        method: Bytes,
    },
    /// A command without a reply went on the wire queue in its turn.
    Sent {
        /// The command.
        request: RequestId,
    },
    /// A publish went on the wire queue; in confirm mode it carries the sequence number the
    /// broker's ack or nack will name.
    Published {
        /// The command.
        request: RequestId,
        /// The channel.
        channel: ChannelId,
        /// Confirm sequence number, in confirm mode.
        sequence: Option<DeliveryTag>,
    },
    /// A command failed.
    Failed {
        /// The command.
        request: RequestId,
        /// Why.
        error: ChannelError,
    },
    /// basic.deliver with its content, for a consumer.
    Delivery {
        /// The channel.
        channel: ChannelId,
        /// The message.
        message: Message,
    },
    /// basic.get-ok with its content, answering a basic.get.
    GetOk {
        /// The basic.get command.
        request: RequestId,
        /// The message.
        message: Message,
    },
    /// basic.return with its content: a mandatory message that could not be routed.
    Returned {
        /// The channel.
        channel: ChannelId,
        /// The message.
        message: Message,
    },
    /// basic.ack or basic.nack from the broker, on a channel in confirm mode.
    Confirmed {
        /// The channel.
        channel: ChannelId,
        /// The sequence number.
        tag: DeliveryTag,
        /// Covers every sequence number up to `tag`.
        multiple: bool,
        /// Ack (true) or nack (false).
        ack: bool,
    },
    /// The broker cancelled a consumer (its queue went away).
    Cancelled {
        /// The channel.
        channel: ChannelId,
        /// The consumer.
        consumer_tag: String,
    },
    /// channel.flow from the broker.
    Flow {
        /// The channel.
        channel: ChannelId,
        /// Whether content may flow.
        active: bool,
    },
}

/// A message as it came off the wire: the method, the content header and the body, each a
/// `Bytes` that shares the read buffer where one frame held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The basic.deliver, basic.get-ok or basic.return payload.
    pub method: Bytes,
    /// The content header payload.
    pub header: Bytes,
    /// The body.
    pub body: Bytes,
}

impl Message {
    /// The method that carried the message.
    pub fn method(&self) -> Result<Method<'_>, DecodeError> {
        Method::parse(&self.method, 0)
    }

    /// The content header; [`ContentHeader::properties`] decodes its properties (the core
    /// decoded them once on arrival, so that succeeds).
    pub fn header(&self) -> Result<ContentHeader<'_>, DecodeError> {
        ContentHeader::parse(&self.header, 0)
    }
}
