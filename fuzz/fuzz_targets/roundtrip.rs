//! Structured round trip: methods with argument tables, then a whole message (a content
//! method, properties with a headers table, a body), built from the fuzz input, encoded with
//! `encode_method` and `encode_content`, and parsed back with `parse_frame`.
//!
//! Asserts: encoding fails exactly when the model says it must (a short string or table key
//! over 255 bytes, tables nested deeper than `MAX_NESTING`, a method or header frame over
//! frame_max, a body with frame_max too small for any body byte), with that typed error and
//! nothing written; `encode_content` writes what `encode_method`, `encode_header` and one
//! body frame per `body_chunks` range write; the stream parses back frame by frame to equal
//! methods, tables, properties and a body that reassembles, in chunks of frame_max.

#![no_main]

use core::ops::ControlFlow;

use amqp_codec::method::{
    BasicConsume, BasicDeliver, BasicGetOk, BasicNack, BasicPublish, BasicReturn, ConnectionStartOk, ExchangeDeclare,
    QueueBind, QueueDeclare,
};
use amqp_codec::properties::BASIC_CLASS;
use amqp_codec::table::{Decimal, FieldTable, FieldValue, MAX_NESTING, Table};
use amqp_codec::{
    BasicProperties, ChannelId, ContentHeader, DeliveryTag, EncodeError, FRAME_MIN_SIZE, FRAME_OVERHEAD, Frame,
    FramePayload, Method, Parsed, ReplyCode, body_chunks, encode_content, encode_header, encode_heartbeat,
    encode_method, parse_frame,
};
use amqp_codec_fuzz::{frame_max_from, same_table};
use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    channel: u16,
    frame_max: FrameMax,
    heartbeat_first: bool,
    commands: Vec<Command>,
    content: Content,
    properties: Properties,
    body: Vec<u8>,
}

/// Mostly a negotiable frame_max; sometimes one below the spec's minimum (even below a
/// frame's 8 bytes of overhead), which the encoders must refuse cleanly.
#[derive(Arbitrary, Debug)]
enum FrameMax {
    Negotiated([u8; 2]),
    Small(u16),
}

/// Methods without content, encoded with `encode_method` before the message.
#[derive(Arbitrary, Debug)]
enum Command {
    QueueDeclare {
        reserved_1: u16,
        queue: String,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        no_wait: bool,
        arguments: ArbTable,
    },
    ExchangeDeclare {
        exchange: String,
        kind: String,
        flags: [bool; 5],
        arguments: ArbTable,
    },
    QueueBind {
        queue: String,
        exchange: String,
        routing_key: String,
        no_wait: bool,
        arguments: ArbTable,
    },
    BasicConsume {
        queue: String,
        consumer_tag: String,
        flags: [bool; 4],
        arguments: ArbTable,
    },
    BasicNack {
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    },
    ConnectionStartOk {
        client_properties: ArbTable,
        mechanism: String,
        response: Vec<u8>,
        locale: String,
    },
}

/// The methods that carry content.
#[derive(Arbitrary, Debug)]
enum Content {
    Publish { reserved_1: u16, exchange: String, routing_key: String, mandatory: bool, immediate: bool },
    Deliver { consumer_tag: String, delivery_tag: u64, redelivered: bool, exchange: String, routing_key: String },
    Return { reply_code: u16, reply_text: String, exchange: String, routing_key: String },
    GetOk { delivery_tag: u64, redelivered: bool, exchange: String, routing_key: String, message_count: u32 },
}

#[derive(Arbitrary, Debug)]
struct Properties {
    content_type: Option<String>,
    content_encoding: Option<String>,
    headers: Option<ArbTable>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    expiration: Option<String>,
    message_id: Option<String>,
    timestamp: Option<u64>,
    kind: Option<String>,
    user_id: Option<String>,
    app_id: Option<String>,
    cluster_id: Option<String>,
}

/// A field table of any shape, nested at most one level deeper than the codec allows, so that
/// `NestingTooDeep` is reachable but the recursion stays bounded.
#[derive(Debug)]
struct ArbTable(FieldTable);

fuzz_target!(|input: Input| check(&input));

/// What makes a model unencodable whatever frame_max is.
#[derive(Debug, Default)]
struct Problems {
    long_strings: Vec<usize>,
    too_deep: bool,
}

impl Problems {
    fn none(&self) -> bool {
        self.long_strings.is_empty() && !self.too_deep
    }

    fn short_str(&mut self, s: &str) {
        if s.len() > 255 {
            self.long_strings.push(s.len());
        }
    }

    fn table(&mut self, t: &FieldTable) {
        self.too_deep |= table_depth(t) > MAX_NESTING;
        self.keys(t);
    }

    fn keys(&mut self, t: &FieldTable) {
        for (k, v) in t.iter() {
            self.short_str(k);
            self.value_keys(v);
        }
    }

    fn value_keys(&mut self, v: &FieldValue) {
        match v {
            FieldValue::Table(t) => self.keys(t),
            FieldValue::Array(values) => values.iter().for_each(|v| self.value_keys(v)),
            _ => {}
        }
    }
}

/// A frame we expect to parse back, in order.
enum Expected<'a> {
    Heartbeat,
    Method(Method<'a>),
    Header(ContentHeader<'a>),
    Body(&'a [u8]),
}

fn check(input: &Input) {
    let frame_max = input.frame_max.get();
    let channel = ChannelId(input.channel);
    let mut out = BytesMut::new();
    let mut expected = Vec::new();
    // A heartbeat is 8 bytes whatever frame_max says; one below that allows no frame at all.
    if input.heartbeat_first && frame_max as usize >= FRAME_OVERHEAD {
        encode_heartbeat(&mut out);
        expected.push(Expected::Heartbeat);
    }

    for command in &input.commands {
        let method = command.method();
        let mut problems = Problems::default();
        command.problems(&mut problems);
        let before = out.len();
        let result = encode_method(channel, &method, frame_max, &mut out);
        let sizes = problems.none().then(|| vec![method.encoded_len().expect("no problems") + FRAME_OVERHEAD]);
        check_outcome(&result, &problems, sizes.as_deref(), frame_max, out.len() - before);
        if result.is_ok() {
            expected.push(Expected::Method(method));
        }
    }

    let props = input.properties.borrow();
    let body = &input.body[..];
    let method = input.content.method();
    let header = ContentHeader::new(body.len() as u64, &props);
    let mut problems = Problems::default();
    input.content.problems(&mut problems);
    input.properties.problems(&mut problems);
    let before = out.len();
    let result = input.content.encode(channel, &props, body, frame_max, &mut out);
    let sizes = problems.none().then(|| {
        let mut sizes = vec![
            method.encoded_len().expect("no problems") + FRAME_OVERHEAD,
            header.encoded_len().expect("no problems") + FRAME_OVERHEAD,
        ];
        if !body.is_empty() {
            sizes.push(FRAME_OVERHEAD + 1);
        }
        sizes
    });
    check_outcome(&result, &problems, sizes.as_deref(), frame_max, out.len() - before);
    if result.is_ok() {
        check_content_is_its_frames(&out[before..], channel, &method, &header, body, frame_max);
        expected.push(Expected::Method(method));
        expected.push(Expected::Header(header));
        let chunks = body_chunks(body.len(), frame_max).expect("encode_content cut this body");
        expected.extend(chunks.map(|range| Expected::Body(&body[range])));
    }

    check_parses_back(&out, &expected, channel, frame_max, input);
}

/// Success exactly when nothing is wrong with the model and every frame fits (`sizes` are the
/// frames' sizes, or for a body the smallest body frame); otherwise the error names a real
/// problem, and nothing was written.
fn check_outcome(
    result: &Result<(), EncodeError>,
    problems: &Problems,
    sizes: Option<&[usize]>,
    frame_max: u32,
    written: usize,
) {
    let fits = sizes.map(|sizes| sizes.iter().all(|&s| s <= frame_max as usize));
    match result {
        Ok(()) => assert_eq!(fits, Some(true), "encoded despite {problems:?} or sizes {sizes:?} > {frame_max}"),
        Err(e) => {
            assert_eq!(written, 0, "{e} but {written} bytes were written");
            match *e {
                EncodeError::ShortStringTooLong(n) => assert!(problems.long_strings.contains(&n), "{e}: {problems:?}"),
                EncodeError::NestingTooDeep(n) => {
                    assert_eq!(n, MAX_NESTING);
                    assert!(problems.too_deep, "{e}");
                }
                EncodeError::FrameTooLarge { size, max } => {
                    assert_eq!(max, frame_max);
                    assert!(size > max as usize, "{e}");
                    if let Some(sizes) = sizes {
                        assert!(sizes.contains(&size), "{e}: the frames are {sizes:?}");
                    }
                }
                ref other => panic!("unexpected {other:?}"),
            }
            assert!(fits != Some(true), "{e} though nothing is wrong and every frame fits");
        }
    }
}

/// `encode_content` writes the same bytes as the three one-frame encoders.
fn check_content_is_its_frames(
    wire: &[u8],
    channel: ChannelId,
    method: &Method<'_>,
    header: &ContentHeader<'_>,
    body: &[u8],
    frame_max: u32,
) {
    let mut out = BytesMut::new();
    encode_method(channel, method, frame_max, &mut out).expect("encode_content encoded it");
    encode_header(channel, header, frame_max, &mut out).expect("encode_content encoded it");
    for range in body_chunks(body.len(), frame_max).expect("encode_content cut it") {
        let frame = Frame { channel, payload: FramePayload::Body(&body[range]) };
        frame.encode(frame_max, &mut out).expect("a chunk fits");
    }
    assert_eq!(&out[..], wire, "encode_content differs from its frames");
}

fn check_parses_back(wire: &[u8], expected: &[Expected<'_>], channel: ChannelId, frame_max: u32, input: &Input) {
    let mut rest = wire;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        match parse_frame(rest, frame_max) {
            Ok(Parsed::Complete { value, consumed }) => {
                let mut again = BytesMut::new();
                value.encode(frame_max, &mut again).expect("it was encoded once");
                assert_eq!(&again[..], &rest[..consumed], "re-encoding {value:?}");
                frames.push(value);
                rest = &rest[consumed..];
            }
            other => panic!("our own encoding parses as {other:?} at {}", wire.len() - rest.len()),
        }
    }
    assert_eq!(frames.len(), expected.len(), "frames {frames:?}");
    let mut body = Vec::new();
    let chunk_max = (frame_max as usize).saturating_sub(FRAME_OVERHEAD);
    for (frame, want) in frames.iter().zip(expected) {
        match (&frame.payload, want) {
            (FramePayload::Heartbeat, Expected::Heartbeat) => assert_eq!(frame.channel, ChannelId::CONNECTION),
            (FramePayload::Method(got), Expected::Method(want)) => {
                assert_eq!(frame.channel, channel);
                assert_eq!(got, want);
                for (got, want) in tables(got).into_iter().zip(tables(want)) {
                    assert!(same_table(&got.to_owned(), &want.to_owned()), "{got:?} != {want:?}");
                }
            }
            (FramePayload::Header(got), Expected::Header(want)) => {
                assert_eq!(frame.channel, channel);
                assert_eq!(got, want);
                assert_eq!(got.class_id, BASIC_CLASS);
                assert_eq!(got.property_flags(), want.property_flags());
                let got = got.properties().unwrap_or_else(|e| panic!("encoded properties do not decode: {e}"));
                let want = want.properties().expect("built properties");
                assert_eq!(got, want);
                if let (Some(got), Some(want)) = (&got.headers, &want.headers) {
                    assert!(same_table(&got.to_owned(), &want.to_owned()), "{got:?} != {want:?}");
                }
            }
            (FramePayload::Body(got), Expected::Body(want)) => {
                assert_eq!(frame.channel, channel);
                assert_eq!(got, want);
                assert!(!got.is_empty() && got.len() <= chunk_max, "a body frame of {}", got.len());
                body.extend_from_slice(got);
            }
            (got, _) => panic!("frame {got:?} out of order"),
        }
    }
    let content_sent = expected.iter().any(|e| matches!(e, Expected::Header(_)));
    if content_sent {
        assert_eq!(body, input.body, "the body does not reassemble");
    }
}

/// The argument tables of the methods this target builds.
fn tables<'m, 'a>(m: &'m Method<'a>) -> Vec<&'m Table<'a>> {
    match m {
        Method::QueueDeclare(m) => vec![&m.arguments],
        Method::ExchangeDeclare(m) => vec![&m.arguments],
        Method::QueueBind(m) => vec![&m.arguments],
        Method::BasicConsume(m) => vec![&m.arguments],
        Method::ConnectionStartOk(m) => vec![&m.client_properties],
        _ => vec![],
    }
}

impl FrameMax {
    fn get(&self) -> u32 {
        match *self {
            FrameMax::Negotiated(selector) => frame_max_from(selector),
            FrameMax::Small(n) => u32::from(n) % (FRAME_MIN_SIZE + 1),
        }
    }
}

impl Command {
    fn method(&self) -> Method<'_> {
        match self {
            Command::QueueDeclare {
                reserved_1,
                queue,
                passive,
                durable,
                exclusive,
                auto_delete,
                no_wait,
                arguments,
            } => QueueDeclare {
                reserved_1: *reserved_1,
                queue,
                passive: *passive,
                durable: *durable,
                exclusive: *exclusive,
                auto_delete: *auto_delete,
                no_wait: *no_wait,
                arguments: Table::Owned(&arguments.0),
            }
            .into(),
            Command::ExchangeDeclare {
                exchange,
                kind,
                flags: [passive, durable, auto_delete, internal, no_wait],
                arguments,
            } => ExchangeDeclare {
                reserved_1: 0,
                exchange,
                kind,
                passive: *passive,
                durable: *durable,
                auto_delete: *auto_delete,
                internal: *internal,
                no_wait: *no_wait,
                arguments: Table::Owned(&arguments.0),
            }
            .into(),
            Command::QueueBind { queue, exchange, routing_key, no_wait, arguments } => QueueBind {
                reserved_1: 0,
                queue,
                exchange,
                routing_key,
                no_wait: *no_wait,
                arguments: Table::Owned(&arguments.0),
            }
            .into(),
            Command::BasicConsume { queue, consumer_tag, flags: [no_local, no_ack, exclusive, no_wait], arguments } => {
                BasicConsume {
                    reserved_1: 0,
                    queue,
                    consumer_tag,
                    no_local: *no_local,
                    no_ack: *no_ack,
                    exclusive: *exclusive,
                    no_wait: *no_wait,
                    arguments: Table::Owned(&arguments.0),
                }
                .into()
            }
            Command::BasicNack { delivery_tag, multiple, requeue } => {
                BasicNack { delivery_tag: DeliveryTag(*delivery_tag), multiple: *multiple, requeue: *requeue }.into()
            }
            Command::ConnectionStartOk { client_properties, mechanism, response, locale } => {
                ConnectionStartOk { client_properties: Table::Owned(&client_properties.0), mechanism, response, locale }
                    .into()
            }
        }
    }

    fn problems(&self, p: &mut Problems) {
        match self {
            Command::QueueDeclare { queue, arguments, .. } => {
                p.short_str(queue);
                p.table(&arguments.0);
            }
            Command::ExchangeDeclare { exchange, kind, arguments, .. } => {
                p.short_str(exchange);
                p.short_str(kind);
                p.table(&arguments.0);
            }
            Command::QueueBind { queue, exchange, routing_key, arguments, .. } => {
                [queue, exchange, routing_key].into_iter().for_each(|s| p.short_str(s));
                p.table(&arguments.0);
            }
            Command::BasicConsume { queue, consumer_tag, arguments, .. } => {
                p.short_str(queue);
                p.short_str(consumer_tag);
                p.table(&arguments.0);
            }
            Command::BasicNack { .. } => {}
            Command::ConnectionStartOk { client_properties, mechanism, locale, .. } => {
                p.table(&client_properties.0);
                p.short_str(mechanism);
                p.short_str(locale);
            }
        }
    }
}

impl Content {
    fn method(&self) -> Method<'_> {
        match self {
            Content::Publish { .. } => self.publish().into(),
            Content::Deliver { .. } => self.deliver().into(),
            Content::Return { .. } => self.basic_return().into(),
            Content::GetOk { .. } => self.get_ok().into(),
        }
    }

    fn encode(
        &self,
        channel: ChannelId,
        props: &BasicProperties<'_>,
        body: &[u8],
        frame_max: u32,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self {
            Content::Publish { .. } => encode_content(channel, &self.publish(), props, body, frame_max, out),
            Content::Deliver { .. } => encode_content(channel, &self.deliver(), props, body, frame_max, out),
            Content::Return { .. } => encode_content(channel, &self.basic_return(), props, body, frame_max, out),
            Content::GetOk { .. } => encode_content(channel, &self.get_ok(), props, body, frame_max, out),
        }
    }

    fn publish(&self) -> BasicPublish<'_> {
        match self {
            Content::Publish { reserved_1, exchange, routing_key, mandatory, immediate } => BasicPublish {
                reserved_1: *reserved_1,
                exchange,
                routing_key,
                mandatory: *mandatory,
                immediate: *immediate,
            },
            _ => unreachable!("called on a publish only"),
        }
    }

    fn deliver(&self) -> BasicDeliver<'_> {
        match self {
            Content::Deliver { consumer_tag, delivery_tag, redelivered, exchange, routing_key } => BasicDeliver {
                consumer_tag,
                delivery_tag: DeliveryTag(*delivery_tag),
                redelivered: *redelivered,
                exchange,
                routing_key,
            },
            _ => unreachable!("called on a deliver only"),
        }
    }

    fn basic_return(&self) -> BasicReturn<'_> {
        match self {
            Content::Return { reply_code, reply_text, exchange, routing_key } => {
                BasicReturn { reply_code: ReplyCode(*reply_code), reply_text, exchange, routing_key }
            }
            _ => unreachable!("called on a return only"),
        }
    }

    fn get_ok(&self) -> BasicGetOk<'_> {
        match self {
            Content::GetOk { delivery_tag, redelivered, exchange, routing_key, message_count } => BasicGetOk {
                delivery_tag: DeliveryTag(*delivery_tag),
                redelivered: *redelivered,
                exchange,
                routing_key,
                message_count: *message_count,
            },
            _ => unreachable!("called on a get-ok only"),
        }
    }

    fn problems(&self, p: &mut Problems) {
        let strings: &[&String] = match self {
            Content::Publish { exchange, routing_key, .. } => &[exchange, routing_key],
            Content::Deliver { consumer_tag, exchange, routing_key, .. } => &[consumer_tag, exchange, routing_key],
            Content::Return { reply_text, exchange, routing_key, .. } => &[reply_text, exchange, routing_key],
            Content::GetOk { exchange, routing_key, .. } => &[exchange, routing_key],
        };
        strings.iter().for_each(|s| p.short_str(s));
    }
}

impl Properties {
    fn borrow(&self) -> BasicProperties<'_> {
        BasicProperties {
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            headers: self.headers.as_ref().map(|t| Table::Owned(&t.0)),
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id: self.correlation_id.as_deref(),
            reply_to: self.reply_to.as_deref(),
            expiration: self.expiration.as_deref(),
            message_id: self.message_id.as_deref(),
            timestamp: self.timestamp,
            kind: self.kind.as_deref(),
            user_id: self.user_id.as_deref(),
            app_id: self.app_id.as_deref(),
            cluster_id: self.cluster_id.as_deref(),
        }
    }

    fn problems(&self, p: &mut Problems) {
        let strings = [
            &self.content_type,
            &self.content_encoding,
            &self.correlation_id,
            &self.reply_to,
            &self.expiration,
            &self.message_id,
            &self.kind,
            &self.user_id,
            &self.app_id,
            &self.cluster_id,
        ];
        strings.into_iter().flatten().for_each(|s| p.short_str(s));
        if let Some(headers) = &self.headers {
            p.table(&headers.0);
        }
    }
}

/// Nesting depth as the codec counts it: a table is 1, each table or array inside adds 1.
fn table_depth(t: &FieldTable) -> usize {
    1 + t.iter().map(|(_, v)| value_depth(v)).max().unwrap_or(0)
}

fn value_depth(v: &FieldValue) -> usize {
    match v {
        FieldValue::Table(t) => table_depth(t),
        FieldValue::Array(values) => 1 + values.iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// How deep generated tables may nest: one level past what the codec accepts.
const DEEPEST: usize = MAX_NESTING + 1;

impl<'a> Arbitrary<'a> for ArbTable {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        arb_table(u, 1).map(ArbTable)
    }
}

/// A table at nesting level `depth`.
fn arb_table(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<FieldTable> {
    let mut table = FieldTable::new();
    u.arbitrary_loop(None, Some(16), |u| {
        let key: String = u.arbitrary()?;
        table.insert(key, arb_value(u, depth)?);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(table)
}

/// A value inside a table or array at nesting level `depth`.
fn arb_value(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<FieldValue> {
    Ok(match u.int_in_range(0u8..=16)? {
        0 => FieldValue::Bool(u.arbitrary()?),
        1 => FieldValue::I8(u.arbitrary()?),
        2 => FieldValue::U8(u.arbitrary()?),
        3 => FieldValue::I16(u.arbitrary()?),
        4 => FieldValue::U16(u.arbitrary()?),
        5 => FieldValue::I32(u.arbitrary()?),
        6 => FieldValue::U32(u.arbitrary()?),
        7 => FieldValue::I64(u.arbitrary()?),
        8 => FieldValue::F32(u.arbitrary()?),
        9 => FieldValue::F64(u.arbitrary()?),
        10 => FieldValue::Decimal(Decimal { scale: u.arbitrary()?, value: u.arbitrary()? }),
        11 => FieldValue::LongString(Bytes::from(u.arbitrary::<Vec<u8>>()?)),
        12 => FieldValue::Timestamp(u.arbitrary()?),
        13 => FieldValue::ByteArray(Bytes::from(u.arbitrary::<Vec<u8>>()?)),
        14 if depth < DEEPEST => FieldValue::Table(arb_table(u, depth + 1)?),
        15 if depth < DEEPEST => {
            let mut values = Vec::new();
            u.arbitrary_loop(None, Some(16), |u| {
                values.push(arb_value(u, depth + 1)?);
                Ok(ControlFlow::Continue(()))
            })?;
            FieldValue::Array(values)
        }
        _ => FieldValue::Void,
    })
}
