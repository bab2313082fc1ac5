//! What the API asks the core to do. Methods arrive as encoded frames: the API encodes them
//! (off the driver's task), and the core reads back only what it must know (which method,
//! whether a reply is due). Each command's outcome comes back as an `Event` with its id.

use amqp_codec::{ChannelId, DeliveryTag, ReplyCode};
use bytes::Bytes;

/// Names one command, so that its outcome can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request to the core.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Command {
    /// Opens a channel on the lowest free number; answered by `ChannelOpened`.
    OpenChannel,
    /// One method frame for an open channel, encoded with its channel number. Synchronous
    /// methods are answered by `Reply` (or `Failed`), others by `Sent` once queued in order.
    Method {
        /// The channel the frame is for.
        channel: ChannelId,
        /// The whole method frame.
        frame: Bytes,
    },
    /// A message: basic.publish and content header frames, then the body, which is framed by
    /// the core and queued without a copy. Answered by `Published` with its confirm sequence
    /// number when the channel is in confirm mode.
    Publish {
        /// The channel to publish on.
        channel: ChannelId,
        /// The basic.publish method frame and the content header frame, encoded.
        prefix: Bytes,
        /// The body.
        body: Bytes,
    },
    /// Acknowledges deliveries (basic.ack, basic.nack or basic.reject), encoded by the core
    /// straight into its output: the hot path of every consumer. Answered by `Sent`.
    Ack {
        /// The channel the deliveries came on.
        channel: ChannelId,
        /// The delivery tag.
        tag: DeliveryTag,
        /// Every delivery up to `tag` (not for reject).
        multiple: bool,
        /// Ack, nack or reject.
        verdict: Verdict,
    },
    /// Closes a channel; answered by `ChannelClosed` once the broker's close-ok arrives.
    CloseChannel {
        /// The channel.
        channel: ChannelId,
        /// Reply code to send (200 for a normal close).
        code: ReplyCode,
        /// Text to send.
        text: String,
    },
    /// connection.update-secret (RabbitMQ): a new credential, such as a refreshed OAuth 2
    /// token, for the open connection. Answered by `Sent` once update-secret-ok arrives.
    UpdateSecret {
        /// The new secret.
        secret: Bytes,
        /// Why, for the broker's log.
        reason: String,
    },
    /// Closes the connection; the last event is `Closed`.
    Close {
        /// Reply code to send (200 for a normal close).
        code: ReplyCode,
        /// Text to send.
        text: String,
    },
}

/// What a consumer says of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// basic.ack: processed.
    Ack,
    /// basic.nack (RabbitMQ): not processed; requeued or dead-lettered.
    Nack {
        /// Back to the queue (true) or dead-lettered/dropped (false).
        requeue: bool,
    },
    /// basic.reject: as nack, for one delivery only.
    Reject {
        /// Back to the queue (true) or dead-lettered/dropped (false).
        requeue: bool,
    },
}
