//! The content header: class, weight, body size and the basic class's 14 properties behind
//! their property-flag words. Parsing borrows strings and the headers table from the input.
//! Touches `primitives.rs` and `table.rs`.

use bytes::BytesMut;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::ClassId;
use crate::primitives::{Domain, Field, Reader, Sizer, Writer};
use crate::table::Table;

/// The basic class: the only one in 0-9-1 that carries content.
pub const BASIC_CLASS: ClassId = ClassId(60);

/// A content header frame's payload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContentHeader<'a> {
    /// The class of the method this content belongs to; always 60 (basic).
    pub class_id: ClassId,
    /// Unused by 0-9-1; must be zero, kept as sent.
    pub weight: u16,
    /// Total size of the body frames that follow.
    pub body_size: u64,
    /// The message properties.
    pub properties: BasicProperties<'a>,
}

/// The basic class's message properties; `None` is "absent" (its flag bit clear).
///
/// ```
/// use amqp_codec::BasicProperties;
/// let props = BasicProperties {
///     content_type: Some("application/json"),
///     delivery_mode: Some(2), // persistent
///     message_id: Some("order-17"),
///     ..BasicProperties::default()
/// };
/// assert_eq!(props.flags(), 0x8000 | 0x1000 | 0x0080);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasicProperties<'a> {
    /// MIME content type.
    pub content_type: Option<&'a str>,
    /// MIME content encoding.
    pub content_encoding: Option<&'a str>,
    /// Application headers.
    pub headers: Option<Table<'a>>,
    /// 1 transient, 2 persistent.
    pub delivery_mode: Option<u8>,
    /// Priority, 0 to 9.
    pub priority: Option<u8>,
    /// Correlates a reply with its request.
    pub correlation_id: Option<&'a str>,
    /// Where to reply.
    pub reply_to: Option<&'a str>,
    /// Per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<&'a str>,
    /// Application message id.
    pub message_id: Option<&'a str>,
    /// Seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Message type name (the spec's `type`).
    pub kind: Option<&'a str>,
    /// The publishing user; RabbitMQ checks it against the connection's user.
    pub user_id: Option<&'a str>,
    /// The publishing application.
    pub app_id: Option<&'a str>,
    /// Reserved (was cluster-id); must be absent for RabbitMQ.
    pub cluster_id: Option<&'a str>,
}

/// The property names as the spec's XML gives them, in flag order (bit 15 first).
pub const PROPERTY_SPEC: [(&str, Domain); 14] = [
    ("content-type", Domain::ShortStr),
    ("content-encoding", Domain::ShortStr),
    ("headers", Domain::Table),
    ("delivery-mode", Domain::Octet),
    ("priority", Domain::Octet),
    ("correlation-id", Domain::ShortStr),
    ("reply-to", Domain::ShortStr),
    ("expiration", Domain::ShortStr),
    ("message-id", Domain::ShortStr),
    ("timestamp", Domain::Timestamp),
    ("type", Domain::ShortStr),
    ("user-id", Domain::ShortStr),
    ("app-id", Domain::ShortStr),
    ("reserved", Domain::ShortStr),
];

/// Bit 0 of a flag word: another flag word follows.
const CONTINUATION: u16 = 1;
/// Bits 15 down to 2 name the 14 properties; bit 1 names none.
const KNOWN: u16 = 0xfffc;

const fn flag(index: u32) -> u16 {
    1 << (15 - index)
}

impl<'a> ContentHeader<'a> {
    /// Parses a content header payload that began `base` bytes into the caller's input.
    #[inline]
    pub fn parse(payload: &'a [u8], base: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload, base);
        let class_at = r.offset();
        let class_id = ClassId(r.u16()?);
        if class_id != BASIC_CLASS {
            return Err(DecodeError::new(DecodeErrorKind::UnknownContentClass(class_id), class_at));
        }
        let weight = r.u16()?;
        let body_size = r.u64()?;
        let properties = BasicProperties::read(&mut r)?;
        r.finish()?;
        Ok(ContentHeader { class_id, weight, body_size, properties })
    }

    /// Encoded payload size; fails on a property that cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        self.properties.header_payload_len()
    }

    /// Writes the payload; call only after `encoded_len` succeeded.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        self.properties.write_header_payload(self.class_id, self.weight, self.body_size, out)
    }
}

impl<'a> BasicProperties<'a> {
    /// The property-flag word for the properties present.
    pub fn flags(&self) -> u16 {
        let bit = |present: bool, index: u32| if present { flag(index) } else { 0 };
        bit(self.content_type.is_some(), 0)
            | bit(self.content_encoding.is_some(), 1)
            | bit(self.headers.is_some(), 2)
            | bit(self.delivery_mode.is_some(), 3)
            | bit(self.priority.is_some(), 4)
            | bit(self.correlation_id.is_some(), 5)
            | bit(self.reply_to.is_some(), 6)
            | bit(self.expiration.is_some(), 7)
            | bit(self.message_id.is_some(), 8)
            | bit(self.timestamp.is_some(), 9)
            | bit(self.kind.is_some(), 10)
            | bit(self.user_id.is_some(), 11)
            | bit(self.app_id.is_some(), 12)
            | bit(self.cluster_id.is_some(), 13)
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags_at = r.offset();
        let flags = r.u16()?;
        if flags & !KNOWN & !CONTINUATION != 0 {
            return Err(DecodeError::new(DecodeErrorKind::UnknownPropertyFlags(flags), flags_at));
        }
        // Basic has 14 properties, so any continuation word must name none of them.
        let mut more = flags & CONTINUATION != 0;
        while more {
            let at = r.offset();
            let word = r.u16()?;
            if word & !CONTINUATION != 0 {
                return Err(DecodeError::new(DecodeErrorKind::UnknownPropertyFlags(word), at));
            }
            more = word & CONTINUATION != 0;
        }
        let has = |i: u32| flags & flag(i) != 0;
        #[inline(always)]
        fn opt<'a, T: Field<'a>>(r: &mut Reader<'a>, present: bool) -> Result<Option<T>, DecodeError> {
            if present { T::read(r).map(Some) } else { Ok(None) }
        }
        Ok(BasicProperties {
            content_type: opt(r, has(0))?,
            content_encoding: opt(r, has(1))?,
            headers: opt(r, has(2))?,
            delivery_mode: opt(r, has(3))?,
            priority: opt(r, has(4))?,
            correlation_id: opt(r, has(5))?,
            reply_to: opt(r, has(6))?,
            expiration: opt(r, has(7))?,
            message_id: opt(r, has(8))?,
            timestamp: opt(r, has(9))?,
            kind: opt(r, has(10))?,
            user_id: opt(r, has(11))?,
            app_id: opt(r, has(12))?,
            cluster_id: opt(r, has(13))?,
        })
    }

    /// Size of a content header payload carrying these properties.
    pub(crate) fn header_payload_len(&self) -> Result<usize, EncodeError> {
        let mut s = Sizer::new();
        s.fixed(12);
        self.size(&mut s)?;
        Ok(s.len)
    }

    /// Writes a content header payload carrying these properties, without copying them into
    /// a `ContentHeader` first (the publish hot path).
    pub(crate) fn write_header_payload(&self, class_id: ClassId, weight: u16, body_size: u64, out: &mut BytesMut) {
        let mut w = Writer::new(out);
        w.u16(class_id.0);
        w.u16(weight);
        w.u64(body_size);
        self.write(&mut w);
    }

    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        fn opt<'a, T: Field<'a>>(s: &mut Sizer, v: &Option<T>) -> Result<(), EncodeError> {
            v.as_ref().map_or(Ok(()), |v| v.size(s))
        }
        s.fixed(2);
        opt(s, &self.content_type)?;
        opt(s, &self.content_encoding)?;
        opt(s, &self.headers)?;
        opt(s, &self.delivery_mode)?;
        opt(s, &self.priority)?;
        opt(s, &self.correlation_id)?;
        opt(s, &self.reply_to)?;
        opt(s, &self.expiration)?;
        opt(s, &self.message_id)?;
        opt(s, &self.timestamp)?;
        opt(s, &self.kind)?;
        opt(s, &self.user_id)?;
        opt(s, &self.app_id)?;
        opt(s, &self.cluster_id)
    }

    fn write(&self, w: &mut Writer<'_>) {
        fn opt<'a, T: Field<'a>>(w: &mut Writer<'_>, v: &Option<T>) {
            if let Some(v) = v {
                v.write(w)
            }
        }
        w.u16(self.flags());
        opt(w, &self.content_type);
        opt(w, &self.content_encoding);
        opt(w, &self.headers);
        opt(w, &self.delivery_mode);
        opt(w, &self.priority);
        opt(w, &self.correlation_id);
        opt(w, &self.reply_to);
        opt(w, &self.expiration);
        opt(w, &self.message_id);
        opt(w, &self.timestamp);
        opt(w, &self.kind);
        opt(w, &self.user_id);
        opt(w, &self.app_id);
        opt(w, &self.cluster_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_for_a_class_without_content_is_command_invalid() {
        let payload = [0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let err = ContentHeader::parse(&payload, 7).unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::UnknownContentClass(ClassId(10)), 7));
    }

    #[test]
    fn flag_bit_one_names_no_property() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let err = ContentHeader::parse(&payload, 0).unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::UnknownPropertyFlags(2), 12));
    }

    #[test]
    fn empty_continuation_words_are_accepted() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x80, 1, 0, 0, 1, b'x'];
        let header = ContentHeader::parse(&payload, 0).unwrap();
        assert_eq!(header.body_size, 5);
        assert_eq!(header.properties.content_type, Some("x"));
    }
}
