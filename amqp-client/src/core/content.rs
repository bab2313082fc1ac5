//! Content assembly for one channel: a content-carrying method (deliver, get-ok, return), then
//! its header, then body frames until body-size bytes have come. A one-frame body stays a
//! slice of the read buffer; only a body split over several frames is copied together (into
//! a buffer from `body_pool.rs`).
//! Pure: it receives frame payloads and hands back whole messages.

use amqp_codec::{ContentHeader, ReplyCode};
use bytes::Bytes;

use super::body_pool::BodyPool;
use super::command::RequestId;
use super::error::ConnectionError;
use super::event::Message;

/// Which method a message arrived by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    /// basic.deliver, for a consumer.
    Deliver,
    /// basic.get-ok, for this basic.get.
    GetOk(RequestId),
    /// basic.return.
    Return,
}

/// Where content assembly is.
#[derive(Debug, Default)]
pub enum Content {
    /// No message in progress.
    #[default]
    Idle,
    /// A method came; its header is next.
    AwaitingHeader {
        /// What carried it.
        kind: ContentKind,
        /// The method payload.
        method: Bytes,
    },
    /// The header came; body frames are next.
    Body {
        /// What carried it.
        kind: ContentKind,
        /// The method payload.
        method: Bytes,
        /// The header payload.
        header: Bytes,
        /// Body bytes still to come.
        remaining: u64,
        /// What came so far.
        body: Body,
    },
}

/// A body as it arrives.
#[derive(Debug, Default)]
pub enum Body {
    /// Nothing yet.
    #[default]
    Empty,
    /// One frame's payload, not copied.
    One(Bytes),
    /// Several frames' payloads, copied together into a pooled buffer.
    Many(Vec<u8>),
}

/// The cap on what a body reserves up front: the header's body-size is the peer's word, and
/// a length field must not decide an allocation. Larger bodies grow as their bytes arrive.
const MAX_BODY_RESERVE: u64 = 1 << 20;

fn unexpected(what: &str) -> ConnectionError {
    ConnectionError::ProtocolViolation { code: ReplyCode::UNEXPECTED_FRAME, reason: what.to_owned() }
}

impl Content {
    /// True when no message is in progress, so a method frame may come.
    pub fn is_idle(&self) -> bool {
        matches!(self, Content::Idle)
    }

    /// A content-carrying method arrived.
    pub fn start(&mut self, kind: ContentKind, method: Bytes) -> Result<(), ConnectionError> {
        match self {
            Content::Idle => {
                *self = Content::AwaitingHeader { kind, method };
                Ok(())
            }
            _ => Err(unexpected("a method frame in the middle of a message's content")),
        }
    }

    /// A content header frame arrived; returns the message if its body is empty.
    pub fn header(&mut self, payload: Bytes) -> Result<Option<(ContentKind, Message)>, ConnectionError> {
        let Content::AwaitingHeader { kind, method } = core::mem::take(self) else {
            return Err(unexpected("a content header without a content method before it"));
        };
        let parsed = ContentHeader::parse(&payload, 0).map_err(|e| ConnectionError::from(&e))?;
        // The codec decodes properties only on demand. Decoding them here, once, keeps a
        // malformed message a connection error (502) at arrival, and lets the API's
        // `Delivery::properties` rely on them decoding.
        parsed.properties().map_err(|e| ConnectionError::from(&e))?;
        let remaining = parsed.body_size;
        if remaining == 0 {
            return Ok(Some((kind, Message { method, header: payload, body: Bytes::new() })));
        }
        *self = Content::Body { kind, method, header: payload, remaining, body: Body::Empty };
        Ok(None)
    }

    /// A body frame arrived; returns the message once the body is complete.
    pub fn body(&mut self, payload: Bytes, pool: &BodyPool) -> Result<Option<(ContentKind, Message)>, ConnectionError> {
        let Content::Body { remaining, body, .. } = self else {
            return Err(unexpected("a body frame without a content header before it"));
        };
        let len = payload.len() as u64;
        if len > *remaining {
            return Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::FRAME_ERROR,
                reason: format!("{len} body bytes where {remaining} remained"),
            });
        }
        let rest_after = *remaining - len;
        *body = match core::mem::take(body) {
            Body::Empty if rest_after == 0 => Body::One(payload),
            Body::Empty => {
                let reserve = (len + rest_after).min(MAX_BODY_RESERVE) as usize;
                let mut all = pool.take(reserve);
                all.extend_from_slice(&payload);
                Body::Many(all)
            }
            Body::One(first) => {
                let mut all = pool.take((first.len() as u64 + len + rest_after).min(MAX_BODY_RESERVE) as usize);
                all.extend_from_slice(&first);
                all.extend_from_slice(&payload);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&payload);
                Body::Many(all)
            }
        };
        *remaining = rest_after;
        if rest_after > 0 {
            return Ok(None);
        }
        let Content::Body { kind, method, header, body, .. } = core::mem::take(self) else {
            unreachable!("matched as Body above")
        };
        let body = match body {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(all) => pool.freeze(all),
        };
        Ok(Some((kind, Message { method, header, body })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_codec::{BasicProperties, ChannelId, FramePayload, Parsed, parse_frame};
    use bytes::BytesMut;

    fn header_payload(body_size: u64) -> Bytes {
        let props = BasicProperties::default();
        let h = ContentHeader::new(body_size, &props);
        let mut out = BytesMut::new();
        amqp_codec::encode_header(ChannelId(1), &h, 4096, &mut out).unwrap();
        let Ok(Parsed::Complete { value, .. }) = parse_frame(&out, 4096) else { panic!() };
        assert!(matches!(value.payload, FramePayload::Header(_)));
        Bytes::copy_from_slice(&out[7..out.len() - 1])
    }

    #[test]
    fn a_one_frame_body_is_the_frame_payload_itself() {
        let mut c = Content::default();
        c.start(ContentKind::Deliver, Bytes::from_static(b"m")).unwrap();
        assert!(c.header(header_payload(3)).unwrap().is_none());
        let frame = Bytes::from_static(b"xxabcxx");
        let body = frame.slice(2..5);
        let (kind, msg) = c.body(body, &BodyPool::default()).unwrap().unwrap();
        assert_eq!(kind, ContentKind::Deliver);
        assert_eq!(&msg.body[..], b"abc");
        assert_eq!(msg.body.as_ptr(), frame[2..].as_ptr(), "not copied");
        assert!(c.is_idle());
    }

    #[test]
    fn a_body_over_several_frames_is_joined() {
        let pool = BodyPool::default();
        let mut c = Content::default();
        c.start(ContentKind::Return, Bytes::new()).unwrap();
        c.header(header_payload(5)).unwrap();
        assert!(c.body(Bytes::from_static(b"ab"), &pool).unwrap().is_none());
        assert!(c.body(Bytes::from_static(b"cd"), &pool).unwrap().is_none());
        let (_, msg) = c.body(Bytes::from_static(b"e"), &pool).unwrap().unwrap();
        assert_eq!(&msg.body[..], b"abcde");
    }

    #[test]
    fn an_empty_body_completes_at_the_header() {
        let mut c = Content::default();
        c.start(ContentKind::Deliver, Bytes::new()).unwrap();
        let (_, msg) = c.header(header_payload(0)).unwrap().unwrap();
        assert!(msg.body.is_empty());
    }

    #[test]
    fn frames_out_of_order_are_unexpected_frame_errors() {
        let pool = BodyPool::default();
        let mut c = Content::default();
        let err = c.header(header_payload(1)).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::UNEXPECTED_FRAME, .. }));
        let err = c.body(Bytes::from_static(b"x"), &pool).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::UNEXPECTED_FRAME, .. }));
        c.start(ContentKind::Deliver, Bytes::new()).unwrap();
        let err = c.start(ContentKind::Deliver, Bytes::new()).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::UNEXPECTED_FRAME, .. }));
    }

    #[test]
    fn a_header_whose_properties_do_not_decode_is_a_syntax_error_on_arrival() {
        let mut c = Content::default();
        c.start(ContentKind::Deliver, Bytes::new()).unwrap();
        // Body size 0, content-type present, its one byte not UTF-8.
        let payload = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 1, 0xff]);
        let err = c.header(payload).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::SYNTAX_ERROR, .. }));
    }

    #[test]
    fn a_body_longer_than_announced_is_a_frame_error() {
        let pool = BodyPool::default();
        let mut c = Content::default();
        c.start(ContentKind::Deliver, Bytes::new()).unwrap();
        c.header(header_payload(2)).unwrap();
        let err = c.body(Bytes::from_static(b"abc"), &pool).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::FRAME_ERROR, .. }));
    }

    #[test]
    fn a_huge_announced_body_reserves_little() {
        let pool = BodyPool::default();
        let mut c = Content::default();
        c.start(ContentKind::Deliver, Bytes::new()).unwrap();
        c.header(header_payload(u64::MAX)).unwrap();
        c.body(Bytes::from_static(b"ab"), &pool).unwrap();
        let Content::Body { body: Body::Many(all), .. } = &c else { panic!("in progress") };
        assert!(all.capacity() <= MAX_BODY_RESERVE as usize);
    }
}
