//! Why a call on a recovering connection failed.

use std::time::Duration;

use amqp_client::Error;
use amqp_client::codec::ReplyCode;

/// Why a call on a recovering connection, channel, consumer or publish failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The client refused the call: a channel error (404, 406, ...) the caller must handle,
    /// an encoding error, or the first connection failing.
    #[error(transparent)]
    Client(#[from] Error),
    /// The connection was down and did not come back within the caller's wait (or the caller
    /// asked to fail fast).
    #[error("not connected (waited {waited:?})")]
    NotConnected {
        /// How long the call waited.
        waited: Duration,
    },
    /// The user closed the recovering connection.
    #[error("the recovering connection was closed")]
    Closed,
    /// Recovery gave up after its attempt limit.
    #[error("recovery gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made in the last outage.
        attempts: u32,
        /// The last attempt's error.
        last: Error,
    },
    /// The channel was closed by the broker (a channel error) and is not reopened.
    #[error("the channel is closed: {0}")]
    ChannelClosed(String),
    /// A delivery of an earlier connection was acknowledged after a recovery: the broker has
    /// already requeued it, and will deliver it again (flagged redelivered).
    #[error("delivery of connection generation {delivered_on} cannot be acknowledged on generation {current}")]
    StaleDelivery {
        /// The generation it came on.
        delivered_on: u64,
        /// The generation now.
        current: u64,
    },
    /// The broker nacked the publish.
    #[error("message {message_id} was nacked by the broker")]
    Nacked {
        /// The message's id.
        message_id: String,
    },
    /// The broker returned a mandatory publish as unroutable.
    #[error("message {message_id} is unroutable: {code} {text}")]
    Unroutable {
        /// The message's id.
        message_id: String,
        /// The broker's reply code.
        code: ReplyCode,
        /// The broker's reply text.
        text: String,
    },
}
