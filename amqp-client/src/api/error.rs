//! The API's error: every way a call can fail, from a bad URI to a broker's channel close.
//! Carries the core's typed errors (with their reply codes) rather than prose.

use amqp_codec::{DecodeError, EncodeError};

use super::uri::UriError;
use crate::core::error::{ChannelError, ConnectionError};

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI could not be used.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// No endpoint accepted a TCP connection.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// The last endpoint tried.
        endpoint: String,
        /// The socket's error.
        reason: String,
    },
    /// TLS could not be set up: a certificate file, a name, or the handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection failed or ended.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The channel failed or ended, or the request was refused.
    #[error(transparent)]
    Channel(ChannelError),
    /// A value the wire cannot carry (a name over 255 bytes, a frame over frame_max).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    /// The broker's reply did not decode.
    #[error("the broker's reply did not decode: {0}")]
    Decode(#[from] DecodeError),
    /// A delivery of another connection or channel was acknowledged here.
    #[error("delivery tag {tag} belongs to {owner}, not to this channel")]
    StaleDelivery {
        /// The tag.
        tag: u64,
        /// Where it came from.
        owner: String,
    },
    /// The broker answered with a method the call did not expect.
    #[error("unexpected reply {0}")]
    UnexpectedReply(&'static str),
}

impl From<ChannelError> for Error {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Connection(c) => Error::Connection(c),
            other => Error::Channel(other),
        }
    }
}

impl Error {
    /// The AMQP reply code behind the error, when the broker (or this client, closing on a
    /// protocol violation) gave one: 403 for a refused login, 404 for a missing queue, ...
    pub fn reply_code(&self) -> Option<amqp_codec::ReplyCode> {
        use amqp_codec::ReplyCode;
        match self {
            Error::Connection(ConnectionError::ClosedByBroker { code, .. })
            | Error::Connection(ConnectionError::ProtocolViolation { code, .. })
            | Error::Connection(ConnectionError::ClosedByClient { code, .. })
            | Error::Channel(ChannelError::ClosedByBroker { code, .. })
            | Error::Channel(ChannelError::ClosedByClient { code, .. }) => Some(*code),
            Error::Connection(ConnectionError::AccessRefused(_)) => Some(ReplyCode::ACCESS_REFUSED),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_codec::ReplyCode;

    #[test]
    fn reply_codes_are_read_through_the_layers() {
        let refused: Error = ConnectionError::AccessRefused("no".into()).into();
        assert_eq!(refused.reply_code(), Some(ReplyCode::ACCESS_REFUSED));
        let missing =
            Error::from(ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, text: "x".into(), method: None });
        assert_eq!(missing.reply_code(), Some(ReplyCode::NOT_FOUND));
        assert_eq!(Error::Tls("x".into()).reply_code(), None);
    }
}
