//! The 8-byte protocol header a client sends first (`AMQP\0\0\x09\x01`), and the one a server
//! sends back, instead of a frame, when it does not speak the client's version.
//! Touches nothing but the error types.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::frame::Parsed;

/// The header that opens an AMQP 0-9-1 connection.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// A protocol header: `AMQP`, a protocol id and a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolHeader {
    /// 0 for AMQP 0-9-1.
    pub protocol_id: u8,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Revision.
    pub revision: u8,
}

impl ProtocolHeader {
    /// AMQP 0-9-1.
    pub const AMQP_0_9_1: ProtocolHeader = ProtocolHeader { protocol_id: 0, major: 0, minor: 9, revision: 1 };

    /// Parses a header from the start of `input`.
    ///
    /// ```
    /// use amqp_codec::{Parsed, ProtocolHeader, PROTOCOL_HEADER};
    /// let parsed = ProtocolHeader::parse(&PROTOCOL_HEADER).unwrap();
    /// assert_eq!(parsed, Parsed::Complete { value: ProtocolHeader::AMQP_0_9_1, consumed: 8 });
    /// ```
    pub fn parse(input: &[u8]) -> Result<Parsed<ProtocolHeader>, DecodeError> {
        use nom::bytes::streaming::tag;
        use nom::number::streaming::be_u8;
        use nom::{Parser, sequence::preceded};
        let mut header = preceded(tag(&b"AMQP"[..]), (be_u8, be_u8, be_u8, be_u8));
        let parsed: nom::IResult<&[u8], _> = header.parse(input);
        match parsed {
            Ok((_, (protocol_id, major, minor, revision))) => {
                Ok(Parsed::Complete { value: ProtocolHeader { protocol_id, major, minor, revision }, consumed: 8 })
            }
            // nom asks for the next piece only; the header's size is known, so ask for all of it.
            Err(nom::Err::Incomplete(_)) => Ok(Parsed::incomplete(8 - input.len().min(7))),
            Err(nom::Err::Error(_) | nom::Err::Failure(_)) => {
                Err(DecodeError::new(DecodeErrorKind::BadProtocolHeader, 0))
            }
        }
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let ProtocolHeader { protocol_id, major, minor, revision } = self;
        [b'A', b'M', b'Q', b'P', protocol_id, major, minor, revision]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_header_asks_for_the_rest() {
        assert_eq!(ProtocolHeader::parse(b"AMQ").unwrap(), Parsed::incomplete(5));
    }

    #[test]
    fn garbage_is_not_a_header() {
        let err = ProtocolHeader::parse(b"HTTP/1.1").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadProtocolHeader);
    }
}
