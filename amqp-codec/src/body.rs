//! Content bodies split into body frames for a frame_max, and a whole message (method, header,
//! bodies) encoded at once with its exact size reserved up front. Touches `frame.rs`,
//! `method` and `properties.rs`.

use core::ops::Range;

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::frame::{FRAME_END, FRAME_OVERHEAD, FrameType, check_frame_size, frame_header};
use crate::ids::ChannelId;
use crate::method::AmqpMethod;
use crate::primitives::{Sizer, Writer};
use crate::properties::{BASIC_CLASS, BasicProperties};

/// The pieces a body of `len` bytes is cut into for `frame_max`: byte ranges of the body,
/// each a body frame's payload. An empty body has no body frames.
///
/// ```
/// use amqp_codec::body_chunks;
/// let chunks: Vec<_> = body_chunks(10_000, 4096).unwrap().collect();
/// assert_eq!(chunks, [0..4088, 4088..8176, 8176..10_000]);
/// ```
pub fn body_chunks(len: usize, frame_max: u32) -> Result<BodyChunks, EncodeError> {
    let max = (frame_max as usize).saturating_sub(FRAME_OVERHEAD);
    if max == 0 && len > 0 {
        return Err(EncodeError::FrameTooLarge { size: FRAME_OVERHEAD + 1, max: frame_max });
    }
    Ok(BodyChunks { at: 0, len, max })
}

/// Iterator of body frame payload ranges; see [`body_chunks`].
#[derive(Clone, Debug)]
pub struct BodyChunks {
    at: usize,
    len: usize,
    max: usize,
}

impl Iterator for BodyChunks {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.at >= self.len {
            return None;
        }
        let end = self.len.min(self.at + self.max);
        let range = self.at..end;
        self.at = end;
        Some(range)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.len - self.at).div_ceil(self.max.max(1));
        (n, Some(n))
    }
}

impl ExactSizeIterator for BodyChunks {}

/// Appends a whole message: the method frame, the content header and the body frames, in
/// one reservation of exactly the size they take.
///
/// ```
/// use amqp_codec::{encode_content, BasicProperties, ChannelId, method::BasicPublish};
/// let publish = BasicPublish { routing_key: "orders", ..Default::default() };
/// let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
/// let mut out = bytes::BytesMut::new();
/// encode_content(ChannelId(1), &publish, &props, &[7u8; 5000], 4096, &mut out).unwrap();
/// assert_eq!(out.len(), (8 + 15) + (8 + 15) + (8 + 4088) + (8 + 912));
/// ```
pub fn encode_content<'a, M: AmqpMethod<'a>>(
    channel: ChannelId,
    method: &M,
    properties: &BasicProperties<'_>,
    body: &[u8],
    frame_max: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let chunks = body_chunks(body.len(), frame_max)?;
    let bodies = body.len() + FRAME_OVERHEAD * chunks.len();
    encode_content_prefix(channel, method, properties, body.len() as u64, frame_max, bodies, out)?;
    for range in chunks {
        out.put_slice(&frame_header(FrameType::Body, channel, range.len()));
        out.put_slice(&body[range]);
        out.put_u8(FRAME_END);
    }
    Ok(())
}

/// Appends a message's method frame and content header, for a body of `body_size` bytes that
/// the caller frames itself (with [`body_chunks`]) and may send without copying. `reserve_more`
/// is added to the reservation, for what the caller appends next.
pub fn encode_content_prefix<'a, M: AmqpMethod<'a>>(
    channel: ChannelId,
    method: &M,
    properties: &BasicProperties<'_>,
    body_size: u64,
    frame_max: u32,
    reserve_more: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut s = Sizer::new();
    s.fixed(4);
    method.size(&mut s)?;
    let method_len = s.len;
    check_frame_size(method_len, frame_max)?;
    let header_len = properties.header_payload_len()?;
    check_frame_size(header_len, frame_max)?;
    out.reserve(method_len + header_len + 2 * FRAME_OVERHEAD + reserve_more);

    out.put_slice(&frame_header(FrameType::Method, channel, method_len));
    let mut w = Writer::new(out);
    w.u16(M::CLASS_ID.0);
    w.u16(M::METHOD_ID.0);
    method.write(&mut w);
    out.put_u8(FRAME_END);

    out.put_slice(&frame_header(FrameType::Header, channel, header_len));
    properties.write_header_payload(BASIC_CLASS, 0, body_size, out);
    out.put_u8(FRAME_END);
    Ok(())
}
