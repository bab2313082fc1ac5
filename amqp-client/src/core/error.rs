//! What fails in the client core, and who caused it. Connection errors end every channel;
//! channel errors end one. Each carries the AMQP reply code that was (or will be) on the wire.

use amqp_codec::{ClassId, DecodeError, MethodId, ReplyCode};

/// Why a connection ended (or never opened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The broker sent connection.close.
    #[error("broker closed the connection: {code} {text}")]
    ClosedByBroker {
        /// The broker's reply code.
        code: ReplyCode,
        /// The broker's explanation.
        text: String,
        /// The method that caused it, if the broker named one.
        method: Option<(ClassId, MethodId)>,
    },
    /// The broker refused the credentials (403 during the handshake).
    #[error("access refused: {0}")]
    AccessRefused(String),
    /// The broker does not offer the SASL mechanism the client was told to use.
    #[error("the broker does not offer the {wanted} mechanism (it offers: {offered})")]
    MechanismNotOffered {
        /// The mechanism configured.
        wanted: &'static str,
        /// What the broker offered.
        offered: String,
    },
    /// The broker answered with another protocol version's header.
    #[error("the broker does not speak AMQP 0-9-1")]
    ProtocolMismatch,
    /// The broker sent something this client could not accept; the client closed the
    /// connection with `code`.
    #[error("protocol violation by the broker ({code}): {reason}")]
    ProtocolViolation {
        /// The reply code the client closed with.
        code: ReplyCode,
        /// What was wrong.
        reason: String,
    },
    /// The client closed the connection, as the user asked.
    #[error("closed by this client: {code} {text}")]
    ClosedByClient {
        /// The reply code sent.
        code: ReplyCode,
        /// The text sent.
        text: String,
    },
    /// No frame from the broker for two heartbeat intervals.
    #[error("the broker sent nothing for two heartbeat intervals")]
    HeartbeatTimeout,
    /// The handshake or a close handshake did not finish in time.
    #[error("the broker did not answer in time during {0}")]
    Timeout(&'static str),
    /// The socket closed (or failed) before the connection was closed by the protocol.
    #[error("the connection to the broker was lost: {0}")]
    Lost(String),
}

/// Undecodable input from the broker: the client closes with the error's reply code.
impl From<&DecodeError> for ConnectionError {
    fn from(err: &DecodeError) -> Self {
        ConnectionError::ProtocolViolation { code: err.reply_code(), reason: err.to_string() }
    }
}

/// Why a channel ended, or why a request on it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The broker closed the channel (404, 406, 403, 405, ...).
    #[error("broker closed the channel: {code} {text}")]
    ClosedByBroker {
        /// The broker's reply code.
        code: ReplyCode,
        /// The broker's explanation.
        text: String,
        /// The method that caused it, if the broker named one.
        method: Option<(ClassId, MethodId)>,
    },
    /// The client closed the channel.
    #[error("channel closed by this client: {code} {text}")]
    ClosedByClient {
        /// The reply code sent.
        code: ReplyCode,
        /// The text sent.
        text: String,
    },
    /// The channel is not open (never opened, or already closed).
    #[error("channel {0} is not open")]
    NotOpen(u16),
    /// No channel number is free below channel_max.
    #[error("all {0} channels are in use")]
    NoFreeChannel(u16),
    /// The request is not one this channel can send (bad bytes from the API layer, a method of
    /// another channel, a connection-level method).
    #[error("not a request for this channel: {0}")]
    BadRequest(String),
    /// The connection ended.
    #[error("the connection is gone: {0}")]
    Connection(#[from] ConnectionError),
}
