//! Newtypes for the numbers AMQP gives meaning to: channel, class and method ids, delivery tags
//! and reply codes. Plain data; touches nothing else.

use core::fmt;

/// A channel number on one connection; [`ChannelId::CONNECTION`] (0) is the connection itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u16);

impl ChannelId {
    /// Channel 0: connection-level methods and heartbeats.
    pub const CONNECTION: ChannelId = ChannelId(0);
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An AMQP class id (10 connection, 20 channel, 60 basic, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u16);

impl fmt::Display for ClassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A method id within its class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodId(pub u16);

impl fmt::Display for MethodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A delivery tag: the broker's number for a delivery (or, in confirm mode, the publisher's
/// sequence number) on one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryTag(pub u64);

impl fmt::Display for DeliveryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A reply code as carried by connection.close, channel.close and basic.return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(pub u16);

macro_rules! reply_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $hard:literal; )*) => {
        impl ReplyCode {
            $( $(#[$doc])* pub const $name: ReplyCode = ReplyCode($code); )*

            /// The spec's name for this code (`NOT_FOUND`), if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $code => Some(stringify!($name)), )*
                    _ => None,
                }
            }

            /// True for connection exceptions (the whole connection closes), false for channel
            /// exceptions and for codes the spec does not define.
            pub fn is_hard(self) -> bool {
                match self.0 {
                    $( $code => $hard, )*
                    _ => false,
                }
            }
        }
    };
}

reply_codes! {
    /// 200: the close was asked for and nothing went wrong.
    REPLY_SUCCESS = 200, false;
    /// 311: the message was too large for the broker to accept.
    CONTENT_TOO_LARGE = 311, false;
    /// 312: a mandatory message could not be routed to any queue.
    NO_ROUTE = 312, false;
    /// 313: an immediate message found no consumer.
    NO_CONSUMERS = 313, false;
    /// 320: an operator closed the connection.
    CONNECTION_FORCED = 320, true;
    /// 402: an invalid virtual host path.
    INVALID_PATH = 402, true;
    /// 403: the user may not access this resource.
    ACCESS_REFUSED = 403, false;
    /// 404: the entity does not exist.
    NOT_FOUND = 404, false;
    /// 405: another connection holds the entity exclusively.
    RESOURCE_LOCKED = 405, false;
    /// 406: the request's preconditions do not hold (inequivalent arguments, unknown tag, ...).
    PRECONDITION_FAILED = 406, false;
    /// 501: a frame that could not be decoded.
    FRAME_ERROR = 501, true;
    /// 502: a frame with illegal field values.
    SYNTAX_ERROR = 502, true;
    /// 503: a method that is not allowed in this state.
    COMMAND_INVALID = 503, true;
    /// 504: a channel that is not open, or was misused.
    CHANNEL_ERROR = 504, true;
    /// 505: a frame of a type not expected here (a body without a header, ...).
    UNEXPECTED_FRAME = 505, true;
    /// 506: the server lacks the resources for the request.
    RESOURCE_ERROR = 506, true;
    /// 530: the request is not allowed (vhost access, ...).
    NOT_ALLOWED = 530, true;
    /// 540: a feature the server does not implement.
    NOT_IMPLEMENTED = 540, true;
    /// 541: an internal error in the server.
    INTERNAL_ERROR = 541, true;
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} {}", self.0, name),
            None => self.0.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_know_their_names_and_severity() {
        assert_eq!(ReplyCode::NOT_FOUND.to_string(), "404 NOT_FOUND");
        assert!(!ReplyCode::NOT_FOUND.is_hard());
        assert!(ReplyCode::CONNECTION_FORCED.is_hard());
        assert_eq!(ReplyCode(999).to_string(), "999");
        assert!(!ReplyCode(999).is_hard());
    }
}
