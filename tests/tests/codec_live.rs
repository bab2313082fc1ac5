//! The codec against a live RabbitMQ, with no client in between: a handshake, a channel, a
//! server-named queue, a publish with properties and headers, basic.get, a channel error and
//! both close handshakes, every frame encoded and decoded by `amqp-codec` alone.
#![allow(clippy::unwrap_used)] // A test (or example) that fails says where, which is what unwrap does.

use amqp_codec::method::*;
use amqp_codec::{
    BasicProperties, ChannelId, ClassId, FieldTable, FieldValueRef, FramePayload, Method, MethodId, PROTOCOL_HEADER,
    ReplyCode, Table, encode_content,
};
use bytes::BytesMut;
use tests::WireConn;

/// Runs start … open-ok with PLAIN guest/guest and returns the connection.
fn handshake() -> WireConn {
    let mut conn = WireConn::connect();
    conn.send_raw(&PROTOCOL_HEADER);
    let (major, minor, mechanisms, product) = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::ConnectionStart(s)) => {
            let Table::Raw(props) = s.server_properties else { unreachable!("parsed tables are raw") };
            let product = props.get("product").and_then(|v| v.as_str()).map(str::to_owned);
            let has_caps = matches!(props.get("capabilities"), Some(FieldValueRef::Table(_)));
            assert!(has_caps, "RabbitMQ announces its capabilities");
            (s.version_major, s.version_minor, String::from_utf8_lossy(s.mechanisms).into_owned(), product)
        }
        other => panic!("expected connection.start, got {other:?}"),
    });
    assert_eq!((major, minor), (0, 9));
    assert!(mechanisms.split(' ').any(|m| m == "PLAIN"), "mechanisms: {mechanisms}");
    assert_eq!(product.as_deref(), Some("RabbitMQ"));

    let mut caps = FieldTable::new();
    caps.insert("publisher_confirms", true);
    let mut props = FieldTable::new();
    props.insert("product", "amqp-codec live test");
    props.insert("capabilities", caps);
    let response = b"\0guest\0guest";
    let start_ok =
        ConnectionStartOk { client_properties: Table::from(&props), mechanism: "PLAIN", response, locale: "en_US" };
    let mut out = BytesMut::new();
    amqp_codec::encode_method(ChannelId(0), &start_ok.into(), conn.frame_max, &mut out).unwrap();
    conn.send_raw(&out);

    let tune = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::ConnectionTune(t)) => t,
        other => panic!("expected connection.tune, got {other:?}"),
    });
    assert!(tune.frame_max >= amqp_codec::FRAME_MIN_SIZE);
    conn.send(0, ConnectionTuneOk { channel_max: tune.channel_max, frame_max: tune.frame_max, heartbeat: 0 });
    conn.frame_max = tune.frame_max;
    conn.send(0, ConnectionOpen { virtual_host: "/", ..Default::default() });
    assert_eq!(conn.recv_method_name(), "connection.open-ok");
    conn
}

#[test]
fn a_message_published_with_properties_comes_back_by_basic_get() {
    let mut conn = handshake();
    conn.send(1, ChannelOpen::default());
    assert_eq!(conn.recv_method_name(), "channel.open-ok");
    conn.send(1, QueueDeclare { exclusive: true, ..Default::default() });
    let queue = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::QueueDeclareOk(ok)) => ok.queue.to_owned(),
        other => panic!("expected queue.declare-ok, got {other:?}"),
    });
    assert!(queue.starts_with("amq.gen-"), "server-named: {queue}");

    let mut headers = FieldTable::new();
    headers.insert("attempt", 3i32);
    headers.insert("note", "héllo");
    let props = BasicProperties {
        content_type: Some("text/plain"),
        delivery_mode: Some(2),
        message_id: Some("m-1"),
        headers: Some(Table::from(&headers)),
        ..Default::default()
    };
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let publish = BasicPublish { routing_key: &queue, ..Default::default() };
    let mut out = BytesMut::new();
    encode_content(ChannelId(1), &publish, &props, &body, conn.frame_max, &mut out).unwrap();
    conn.send_raw(&out);

    conn.send(1, BasicGet { queue: &queue, no_ack: true, ..Default::default() });
    let (routing_key, count) = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::BasicGetOk(ok)) => (ok.routing_key.to_owned(), ok.message_count),
        other => panic!("expected basic.get-ok, got {other:?}"),
    });
    assert_eq!((routing_key.as_str(), count), (queue.as_str(), 0));
    let size = conn.recv(|f| match f.payload {
        FramePayload::Header(h) => {
            let props = h.properties().unwrap();
            assert_eq!(props.content_type, Some("text/plain"));
            assert_eq!(props.message_id, Some("m-1"));
            assert_eq!(props.delivery_mode, Some(2));
            let Some(Table::Raw(got)) = props.headers else { panic!("headers came back") };
            assert_eq!(got.to_owned(), headers);
            h.body_size
        }
        other => panic!("expected a content header, got {other:?}"),
    });
    assert_eq!(size, body.len() as u64);
    let mut got = Vec::new();
    while got.len() < body.len() {
        conn.recv(|f| match f.payload {
            FramePayload::Body(b) => got.extend_from_slice(b),
            other => panic!("expected a body frame, got {other:?}"),
        });
    }
    assert_eq!(got, body);

    conn.send(0, ConnectionClose { reply_code: ReplyCode::REPLY_SUCCESS, reply_text: "bye", ..Default::default() });
    assert_eq!(conn.recv_method_name(), "connection.close-ok");
}

#[test]
fn a_channel_error_arrives_as_channel_close_with_its_reply_code() {
    let mut conn = handshake();
    conn.send(7, ChannelOpen::default());
    assert_eq!(conn.recv_method_name(), "channel.open-ok");
    let missing = tests::unique_name("codec-live-missing");
    conn.send(7, QueueDeclare { queue: &missing, passive: true, ..Default::default() });
    let (channel, code, class, method) = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::ChannelClose(c)) => {
            assert!(c.reply_text.contains(&missing), "{}", c.reply_text);
            (f.channel, c.reply_code, c.class_id, c.method_id)
        }
        other => panic!("expected channel.close, got {other:?}"),
    });
    assert_eq!((channel, code), (ChannelId(7), ReplyCode::NOT_FOUND));
    assert_eq!((class, method), (ClassId(50), MethodId(10)), "it names queue.declare");
    conn.send(7, ChannelCloseOk {});

    // The connection survives a channel error: the same channel number opens again.
    conn.send(7, ChannelOpen::default());
    assert_eq!(conn.recv_method_name(), "channel.open-ok");
    conn.send(0, ConnectionClose { reply_code: ReplyCode::REPLY_SUCCESS, ..Default::default() });
    assert_eq!(conn.recv_method_name(), "connection.close-ok");
}

#[test]
fn a_frame_with_a_bad_end_octet_makes_rabbitmq_close_with_frame_error() {
    let mut conn = handshake();
    // channel.open on channel 1 with 0x00 where 0xCE must be.
    conn.send_raw(&[1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0x00]);
    let code = conn.recv(|f| match f.payload {
        FramePayload::Method(Method::ConnectionClose(c)) => c.reply_code,
        other => panic!("expected connection.close, got {other:?}"),
    });
    assert_eq!(code, ReplyCode::FRAME_ERROR);
    assert!(code.is_hard());
}
