//! Decoding and encoding errors. A `DecodeError` says what was wrong, where (byte offset from
//! the start of the input given to the parser), and which AMQP reply code the connection must
//! close with. Touches nothing but the ids in `ids.rs`.

use crate::ids::{ClassId, MethodId, ReplyCode};

/// Input that is not valid AMQP 0-9-1: what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Offset of the offending byte from the start of the input the parser was given.
    pub offset: usize,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }

    /// The reply code a peer closes the connection with when it receives this input.
    pub fn reply_code(&self) -> ReplyCode {
        self.kind.reply_code()
    }
}

/// The kinds of invalid input. Each maps to the reply code of the connection exception it causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The peer answered with a protocol header instead of a frame: it does not speak this version.
    #[error("the peer speaks another protocol version: AMQP {major}-{minor}-{revision} (id {protocol_id})")]
    ProtocolMismatch {
        /// Protocol id octet (0 for AMQP 0-9-1, 1 for the old 0-8 style headers).
        protocol_id: u8,
        /// Major version the peer offers.
        major: u8,
        /// Minor version the peer offers.
        minor: u8,
        /// Revision the peer offers.
        revision: u8,
    },
    /// The 8 bytes that should be a protocol header are not one.
    #[error("not an AMQP protocol header")]
    BadProtocolHeader,
    /// A frame type octet that is none of method (1), header (2), body (3) or heartbeat (8).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The announced frame is larger than the negotiated frame_max.
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// Whole frame size announced (header, payload and end octet).
        size: u64,
        /// The limit in force.
        max: u32,
    },
    /// The octet after the payload is not 0xCE.
    #[error("frame end octet is {0:#04x}, not 0xce")]
    BadFrameEnd(u8),
    /// A heartbeat frame on a channel other than 0, or one with a payload.
    #[error("malformed heartbeat frame")]
    BadHeartbeat,
    /// A payload ended before a field did.
    #[error("payload truncated: {needed} more bytes needed")]
    Truncated {
        /// How many more bytes the field needed.
        needed: usize,
    },
    /// A payload had bytes left after its last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// A method that neither AMQP 0-9-1 nor RabbitMQ defines.
    #[error("unknown method {class}.{method}")]
    UnknownMethod {
        /// The class id on the wire.
        class: ClassId,
        /// The method id on the wire.
        method: MethodId,
    },
    /// A content header for a class that carries no content.
    #[error("content header for class {0}, which has no content")]
    UnknownContentClass(ClassId),
    /// A property flag set for a property the class does not have.
    #[error("property flags {0:#06x} name properties that do not exist")]
    UnknownPropertyFlags(u16),
    /// A field-table or array value with a type tag RabbitMQ does not define.
    #[error("unknown field type {0:#04x}")]
    UnknownFieldType(u8),
    /// A short string (or table key) that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// Tables and arrays nested deeper than [`crate::table::MAX_NESTING`].
    #[error("tables nested deeper than {0} levels")]
    NestingTooDeep(usize),
}

impl DecodeErrorKind {
    /// The reply code of the connection exception this input causes.
    pub fn reply_code(&self) -> ReplyCode {
        use DecodeErrorKind::*;
        match self {
            ProtocolMismatch { .. }
            | BadProtocolHeader
            | UnknownFrameType(_)
            | FrameTooLarge { .. }
            | BadFrameEnd(_)
            | BadHeartbeat
            | Truncated { .. }
            | TrailingBytes(_) => ReplyCode::FRAME_ERROR,
            UnknownFieldType(_) | InvalidUtf8 | NestingTooDeep(_) | UnknownPropertyFlags(_) => ReplyCode::SYNTAX_ERROR,
            UnknownMethod { .. } | UnknownContentClass(_) => ReplyCode::COMMAND_INVALID,
        }
    }
}

/// A value that cannot be put on the wire as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A short string (or table key) longer than 255 bytes.
    #[error("short string of {0} bytes is longer than 255")]
    ShortStringTooLong(usize),
    /// A long string, table or array longer than 4 GiB.
    #[error("value of {0} bytes does not fit a 32-bit length")]
    TooLong(usize),
    /// Tables and arrays nested deeper than [`crate::table::MAX_NESTING`].
    #[error("tables nested deeper than {0} levels")]
    NestingTooDeep(usize),
    /// A method or content header frame that would exceed frame_max (bodies are split instead).
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// Whole frame size it would have.
        size: usize,
        /// The limit in force.
        max: u32,
    },
}
