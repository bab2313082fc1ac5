//! Shared inputs for the benchmarks: the byte streams and messages that every codec is measured on.
//! Everything is built with `amqp-codec`'s own encoder; the peers' benches rebuild the same
//! message from the constants here, so that each codec sees the same bytes.

use amqp_codec::method::{BasicDeliver, BasicPublish};
use amqp_codec::{AmqpMethod, BasicProperties, ChannelId, DeliveryTag, FieldTable, encode_content};
use bytes::{Bytes, BytesMut};

/// The frame_max the streams are parsed and encoded with: RabbitMQ's default.
pub const FRAME_MAX: u32 = 131_072;
/// Every frame of every stream travels on this channel.
pub const CHANNEL: ChannelId = ChannelId(1);
/// Messages in one parsed stream.
pub const MESSAGES: usize = 1000;
/// Bytes of each message body: one body frame per message.
pub const BODY_LEN: usize = 128;
/// Frames in one message: method, content header, body.
pub const FRAMES_PER_MESSAGE: usize = 3;

/// The consumer tag of every basic.deliver.
pub const CONSUMER_TAG: &str = "ctag-1";
/// The exchange of every message: the default exchange.
pub const EXCHANGE: &str = "";
/// The routing key of every message.
pub const ROUTING_KEY: &str = "bench.queue";
/// The content-type property.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// The delivery-mode property: persistent.
pub const DELIVERY_MODE: u8 = 2;

/// Headers-table key of an `I` (signed 32-bit) value.
pub const RETRY_COUNT_KEY: &str = "x-retry-count";
/// Its value.
pub const RETRY_COUNT: i32 = 3;
/// Headers-table key of an `S` (long string) value.
pub const SOURCE_KEY: &str = "x-source";
/// Its value.
pub const SOURCE: &str = "billing-service";
/// Headers-table key of a second long string.
pub const TRACE_ID_KEY: &str = "x-trace-id";
/// Its value: a W3C trace id, as tracing middleware would set it.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The headers table every message carries. The keys are in byte order because amq-protocol
/// keeps its tables in a `BTreeMap`: in that order both codecs put the same bytes on the wire.
pub fn headers() -> FieldTable {
    let mut table = FieldTable::new();
    table.insert(RETRY_COUNT_KEY, RETRY_COUNT);
    table.insert(SOURCE_KEY, SOURCE);
    table.insert(TRACE_ID_KEY, TRACE_ID);
    table
}

/// The message-id of the `n`th message. Fixed width, so every message of a stream has the
/// same size and the streams are `MESSAGES` copies of one shape.
pub fn message_id(n: usize) -> String {
    format!("msg-{n:08}")
}

/// The properties every message carries, with its own message-id.
pub fn properties<'a>(headers: &'a FieldTable, message_id: &'a str) -> BasicProperties<'a> {
    BasicProperties {
        content_type: Some(CONTENT_TYPE),
        headers: Some(headers.into()),
        delivery_mode: Some(DELIVERY_MODE),
        message_id: Some(message_id),
        ..BasicProperties::default()
    }
}

/// A body of `BODY_LEN` bytes that is not all zeros.
pub fn body() -> Bytes {
    (0..BODY_LEN).map(|i| i as u8).collect()
}

/// What a consumer reads: `messages` deliveries, each basic.deliver with an increasing
/// delivery tag, a content header and one body frame.
pub fn deliver_stream(messages: usize) -> Vec<u8> {
    stream(messages, |n| BasicDeliver {
        consumer_tag: CONSUMER_TAG,
        delivery_tag: DeliveryTag(n as u64),
        redelivered: false,
        exchange: EXCHANGE,
        routing_key: ROUTING_KEY,
    })
}

/// What a publisher writes: `messages` times basic.publish, a content header and one body frame.
pub fn publish_stream(messages: usize) -> Vec<u8> {
    stream(messages, |_| BasicPublish { exchange: EXCHANGE, routing_key: ROUTING_KEY, ..BasicPublish::default() })
}

/// The number of frames in a stream of whole frames, from their headers alone.
pub fn count_frames(mut stream: &[u8]) -> usize {
    let mut frames = 0;
    while stream.len() >= 7 {
        let size = u32::from_be_bytes([stream[3], stream[4], stream[5], stream[6]]) as usize;
        stream = &stream[(size + 8).min(stream.len())..];
        frames += 1;
    }
    frames
}

/// Messages numbered from 1, as delivery tags are.
fn stream<M: AmqpMethod<'static>>(messages: usize, method: impl Fn(usize) -> M) -> Vec<u8> {
    let headers = headers();
    let body = body();
    let mut out = BytesMut::new();
    for n in 1..=messages {
        let id = message_id(n);
        // Cannot fail: every field is far below its wire limit and each frame below FRAME_MAX.
        encode_content(CHANNEL, &method(n), &properties(&headers, &id), &body, FRAME_MAX, &mut out)
            .expect("a bench message encodes");
    }
    out.to_vec()
}
