//! The content header: class, weight, body size and the basic class's 14 properties behind
//! their property-flag words. Touches `primitives.rs` and `table.rs`.
//!
//! Parsing a header is lazy about the property values. [`ContentHeader::parse`] checks what
//! frames the header (the class id, weight, body size and every property-flag word) and keeps
//! the property values as the borrowed bytes that follow the flags; they are decoded, and the
//! headers table validated, only when [`ContentHeader::properties`] is called. Malformed
//! values fail there, with the same [`DecodeError`] (kind and offset, counted from the input
//! the header was parsed from) that an eager parse would have returned. A consumer that reads
//! only the body size pays for no property it does not read; callgrind put decoding the
//! properties at half the instructions of parsing a consumer's stream.

use core::fmt;

use bytes::BytesMut;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::ClassId;
use crate::primitives::{Domain, Field, Reader, Sizer, Writer};
use crate::table::Table;

/// The basic class: the only one in 0-9-1 that carries content.
pub const BASIC_CLASS: ClassId = ClassId(60);

/// A content header frame's payload: parsed from the wire, or built for encoding.
///
/// A parsed header checks its frame-level fields when it is parsed and decodes its property
/// values only when [`properties`](Self::properties) is called, which is where malformed
/// values are reported (see the [module docs](self)). Encoding a parsed header writes its
/// property bytes back as they came, less any continuation flag words, without decoding them.
///
/// ```
/// use amqp_codec::{encode_header, BasicProperties, ChannelId, ContentHeader, FramePayload, Parsed, parse_frame};
///
/// let props = BasicProperties { content_type: Some("text/plain"), ..Default::default() };
/// let mut wire = bytes::BytesMut::new();
/// encode_header(ChannelId(1), &ContentHeader::new(5, &props), 4096, &mut wire).unwrap();
///
/// let Ok(Parsed::Complete { value, .. }) = parse_frame(&wire, 4096) else { panic!() };
/// let FramePayload::Header(header) = value.payload else { panic!() };
/// assert_eq!(header.body_size, 5);
/// assert_eq!(header.property_flags(), 0x8000); // content-type only, nothing decoded yet
/// assert_eq!(header.properties().unwrap().content_type, Some("text/plain"));
/// ```
#[derive(Clone, Copy)]
pub struct ContentHeader<'a> {
    /// The class of the method this content belongs to; always 60 (basic).
    pub class_id: ClassId,
    /// Unused by 0-9-1; must be zero, kept as sent.
    pub weight: u16,
    /// Total size of the body frames that follow.
    pub body_size: u64,
    properties: Properties<'a>,
}

/// Where a header's properties come from.
#[derive(Clone, Copy, Debug)]
enum Properties<'a> {
    /// As parsed: not yet decoded.
    Raw(RawProperties<'a>),
    /// Built by the caller, for encoding.
    Built(&'a BasicProperties<'a>),
}

/// A parsed header's properties, undecoded: the flag word (continuation bit cleared) and the
/// bytes of the values it names, which began `at` bytes into the parser's input.
#[derive(Clone, Copy, Debug)]
struct RawProperties<'a> {
    flags: u16,
    values: &'a [u8],
    at: usize,
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
    /// A basic-class header (weight 0) for a body of `body_size` bytes, to encode.
    pub fn new(body_size: u64, properties: &'a BasicProperties<'a>) -> Self {
        ContentHeader { class_id: BASIC_CLASS, weight: 0, body_size, properties: Properties::Built(properties) }
    }

    /// This header (class, weight and body size kept) with `properties` as its values: a
    /// parsed header encodes its property bytes back as they came, this one from the
    /// decoded form, as a check of the property decoder and encoder wants.
    ///
    /// ```
    /// use amqp_codec::{BasicProperties, ContentHeader};
    /// let props = BasicProperties { priority: Some(3), ..Default::default() };
    /// let header = ContentHeader::new(10, &props);
    /// let other = BasicProperties { priority: Some(7), ..Default::default() };
    /// let rebuilt = header.with_properties(&other);
    /// assert_eq!((rebuilt.body_size, rebuilt.properties().unwrap().priority), (10, Some(7)));
    /// ```
    pub fn with_properties<'b>(&self, properties: &'b BasicProperties<'b>) -> ContentHeader<'b> {
        let ContentHeader { class_id, weight, body_size, .. } = *self;
        ContentHeader { class_id, weight, body_size, properties: Properties::Built(properties) }
    }

    /// Parses a content header payload that began `base` bytes into the caller's input.
    ///
    /// Checks the class (basic, 60), the weight and body size being there, and the
    /// property-flag words (no flag for a property basic lacks; continuation words name
    /// nothing). The property values are only stepped over: [`properties`](Self::properties)
    /// decodes them, and reports malformed ones.
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
        let flags = read_flags(&mut r)?;
        let raw = RawProperties { flags, values: r.remaining(), at: r.offset() };
        Ok(ContentHeader { class_id, weight, body_size, properties: Properties::Raw(raw) })
    }

    /// The property-flag word: which properties are present (bit 15 for content-type, down to
    /// bit 2 for the reserved cluster-id), known without decoding any of them.
    #[inline]
    pub fn property_flags(&self) -> u16 {
        match self.properties {
            Properties::Raw(raw) => raw.flags,
            Properties::Built(props) => props.flags(),
        }
    }

    /// The message properties, decoded from the header's bytes on each call; strings and the
    /// headers table borrow from the input.
    ///
    /// A parsed header whose property values are malformed (a value cut short, bytes left
    /// after the last one, a string that is not UTF-8, a bad headers table) fails here with
    /// the error and offset an eager parse would have reported at [`parse`](Self::parse).
    ///
    /// ```
    /// use amqp_codec::{ContentHeader, DecodeErrorKind};
    /// // class 60, weight 0, body size 0, flags: content-type; then a 2-byte string with 1 byte.
    /// let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 2, b'x'];
    /// let header = ContentHeader::parse(&payload, 7).unwrap(); // the frame is fine...
    /// let err = header.properties().unwrap_err(); // ...its content-type is not
    /// assert_eq!(err.kind, DecodeErrorKind::Truncated { needed: 1 });
    /// assert_eq!(err.offset, 7 + 15);
    /// ```
    #[inline]
    pub fn properties(&self) -> Result<BasicProperties<'a>, DecodeError> {
        match self.properties {
            Properties::Raw(raw) => raw.decode(),
            Properties::Built(props) => Ok(props.clone()),
        }
    }

    /// Encoded payload size; fails on a property that cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        match self.properties {
            Properties::Raw(raw) => Ok(HEADER_FIXED_LEN + 2 + raw.values.len()),
            Properties::Built(props) => props.header_payload_len(),
        }
    }

    /// Writes the payload; call only after `encoded_len` succeeded.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        match self.properties {
            Properties::Raw(raw) => {
                let mut w = Writer::new(out);
                w.u16(self.class_id.0);
                w.u16(self.weight);
                w.u64(self.body_size);
                w.u16(raw.flags);
                w.bytes(raw.values);
            }
            Properties::Built(props) => props.write_header_payload(self.class_id, self.weight, self.body_size, out),
        }
    }
}

/// Headers are equal when their fixed fields are, and their properties: byte for byte when
/// both were parsed, decoded otherwise (a header whose properties do not decode equals only
/// a parsed one with the same bytes).
impl PartialEq for ContentHeader<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same_properties = match (self.properties, other.properties) {
            (Properties::Raw(a), Properties::Raw(b)) => a.flags == b.flags && a.values == b.values,
            _ => matches!((self.properties(), other.properties()), (Ok(a), Ok(b)) if a == b),
        };
        (self.class_id, self.weight, self.body_size) == (other.class_id, other.weight, other.body_size)
            && same_properties
    }
}

/// Shows the properties decoded when they decode, and the raw bytes with the error when not.
impl fmt::Debug for ContentHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ContentHeader");
        d.field("class_id", &self.class_id).field("weight", &self.weight).field("body_size", &self.body_size);
        match (self.properties(), self.properties) {
            (Ok(props), _) => d.field("properties", &props),
            (Err(e), Properties::Raw(raw)) => d.field("properties", &raw).field("properties_error", &e),
            (Err(e), Properties::Built(_)) => d.field("properties_error", &e),
        };
        d.finish()
    }
}

impl<'a> RawProperties<'a> {
    fn decode(&self) -> Result<BasicProperties<'a>, DecodeError> {
        let mut r = Reader::new(self.values, self.at);
        let props = BasicProperties::read_values(self.flags, &mut r)?;
        r.finish()?;
        Ok(props)
    }
}

/// Class id, weight and body size: the bytes before the first property-flag word.
const HEADER_FIXED_LEN: usize = 12;

/// Reads the property-flag words; answers the first with its continuation bit cleared.
#[inline]
fn read_flags(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
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
    Ok(flags & !CONTINUATION)
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

    /// Reads the values that `flags` names; the reader stands after the flag words.
    #[inline]
    fn read_values(flags: u16, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
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
        s.fixed(HEADER_FIXED_LEN);
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
        assert_eq!(header.property_flags(), 0x8000);
        assert_eq!(header.properties().unwrap().content_type, Some("x"));
    }

    #[test]
    fn malformed_values_parse_and_fail_when_decoded_at_their_offset() {
        // content-type "a", then a headers table that claims 9 bytes and has 3.
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0, 1, b'a', 0, 0, 0, 9, 1, b'k', b'V'];
        let header = ContentHeader::parse(&payload, 7).unwrap();
        assert_eq!(header.property_flags(), 0xa000);
        let err = header.properties().unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::Truncated { needed: 6 }, 7 + 20));
    }

    #[test]
    fn a_string_that_is_not_utf8_fails_when_decoded_at_the_bad_byte() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 2, b'a', 0xff];
        let err = ContentHeader::parse(&payload, 0).unwrap().properties().unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::InvalidUtf8, 16));
        assert_eq!(err.reply_code(), crate::ReplyCode::SYNTAX_ERROR);
    }

    #[test]
    fn bytes_after_the_last_value_fail_when_decoded() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 2, 9];
        let err = ContentHeader::parse(&payload, 0).unwrap().properties().unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::TrailingBytes(1), 15));
    }

    #[test]
    fn a_bad_table_in_the_headers_fails_when_decoded_at_its_tag() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 3, 1, b'k', b'Z'];
        let err = ContentHeader::parse(&payload, 0).unwrap().properties().unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::UnknownFieldType(b'Z'), 20));
    }

    #[test]
    fn a_parsed_header_encodes_its_bytes_without_continuation_words() {
        let payload = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x80, 1, 0, 0, 1, b'x'];
        let header = ContentHeader::parse(&payload, 0).unwrap();
        let mut out = BytesMut::new();
        assert_eq!(header.encoded_len(), Ok(16));
        header.write(&mut out);
        assert_eq!(&out[..], [&payload[..12], &[0x80, 0], &payload[16..]].concat());
        let props = header.properties().unwrap();
        assert_eq!(ContentHeader::parse(&out, 0).unwrap(), ContentHeader::new(5, &props));
    }
}
