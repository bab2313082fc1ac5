//! A zero-copy codec for AMQP 0-9-1 as RabbitMQ speaks it.
//!
//! - Every class and method of the RabbitMQ-extended 0-9-1 spec, plus connection.blocked,
//!   unblocked and update-secret ([`method`]).
//! - Frames parsed incrementally ([`parse_frame`], [`parse_raw_frame`]): a frame and the bytes it
//!   used, or "N more bytes", or a [`DecodeError`] with the offending offset and the AMQP reply
//!   code to close with. The announced size is checked against frame_max before any payload
//!   is needed, so no length field ever decides an allocation.
//! - Field tables ([`table`]) with every type RabbitMQ reads and writes, parsed without
//!   allocating and built as owned, ordered [`FieldTable`]s.
//! - Content headers ([`ContentHeader`]) with the 14 basic properties ([`BasicProperties`]),
//!   decoded on demand by [`ContentHeader::properties`], and bodies split by frame_max
//!   ([`body_chunks`], [`encode_content`]).
//!
//! It knows nothing of sockets, tasks or clocks.
//!
//! ```
//! use amqp_codec::{encode_content, parse_frame, BasicProperties, ChannelId, FramePayload, Method, Parsed};
//! use amqp_codec::method::BasicPublish;
//!
//! let mut wire = bytes::BytesMut::new();
//! let publish = BasicPublish { exchange: "", routing_key: "greetings", ..Default::default() };
//! let props = BasicProperties { content_type: Some("text/plain"), ..Default::default() };
//! encode_content(ChannelId(1), &publish, &props, b"hello", 131_072, &mut wire).unwrap();
//!
//! let mut input = &wire[..];
//! let mut kinds = Vec::new();
//! while let Parsed::Complete { value: frame, consumed } = parse_frame(input, 131_072).unwrap() {
//!     kinds.push(match frame.payload {
//!         FramePayload::Method(m) => m.name().to_string(),
//!         FramePayload::Header(h) => format!("header {}", h.body_size),
//!         FramePayload::Body(b) => String::from_utf8_lossy(b).into_owned(),
//!         FramePayload::Heartbeat => "heartbeat".into(),
//!     });
//!     input = &input[consumed..];
//! }
//! assert_eq!(kinds, ["basic.publish", "header 5", "hello"]);
//! ```

pub mod body;
pub mod error;
pub mod frame;
pub mod ids;
pub mod method;
pub mod primitives;
pub mod properties;
pub mod protocol_header;
pub mod table;

pub use body::{BodyChunks, body_chunks, encode_content, encode_content_prefix};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use frame::{
    FRAME_END, FRAME_HEADER_SIZE, FRAME_MIN_SIZE, FRAME_OVERHEAD, Frame, FramePayload, FrameType, Parsed, RawFrame,
    encode_header, encode_heartbeat, encode_method, frame_header, parse_frame, parse_raw_frame,
};
pub use ids::{ChannelId, ClassId, DeliveryTag, MethodId, ReplyCode};
pub use method::{AmqpMethod, Method};
pub use properties::{BasicProperties, ContentHeader};
pub use protocol_header::{PROTOCOL_HEADER, ProtocolHeader};
pub use table::{FieldTable, FieldValue, FieldValueRef, RawTable, Table};
