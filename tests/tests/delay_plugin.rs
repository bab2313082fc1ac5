//! The delayed publisher in plugin mode, against a scripted peer that plays a broker with the
//! rabbitmq-delayed-message-exchange plugin (the local RabbitMQ does not have it): detection
//! on its own connection, and the exact frames the publisher sends — exchange.declare of type
//! `x-delayed-message` with `x-delayed-type`, and a publish whose headers carry `x-delay`.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::{Channel, Connection, ConnectionOptions};
use amqp_codec::method::*;
use amqp_codec::{BasicProperties, ClassId, FieldTable, FieldValue, FramePayload, Method, MethodId, ReplyCode, Table};
use mq_patterns::delay::{DelaySupport, DelayedExchange, DelayedPublisher, detect};
use tests::peer::{Peer, PeerConn};

const BOUND: Duration = Duration::from_secs(10);

/// An exchange.declare as the peer saw it.
#[derive(Debug, PartialEq)]
struct Declare {
    exchange: String,
    kind: String,
    durable: bool,
    arguments: FieldTable,
}

async fn open_channel(server: &mut PeerConn) {
    assert_eq!(server.recv_method_name().await, "channel.open");
    server.send_method(1, ChannelOpenOk::default()).await;
}

async fn recv_declare(server: &mut PeerConn) -> Declare {
    let declare = server
        .recv(|f| match f.payload {
            FramePayload::Method(Method::ExchangeDeclare(d)) => Declare {
                exchange: d.exchange.to_owned(),
                kind: d.kind.to_owned(),
                durable: d.durable,
                arguments: d.arguments.to_owned(),
            },
            other => panic!("expected exchange.declare, got {other:?}"),
        })
        .await
        .expect("exchange.declare before EOF");
    server.send_method(1, ExchangeDeclareOk {}).await;
    declare
}

/// Plays a broker that has the plugin through one detection: channel, probe declare, delete,
/// close. Returns the probe's declare.
async fn accept_probe(peer: &Peer) -> Declare {
    let mut probe = peer.accept_open(0).await;
    open_channel(&mut probe).await;
    let declare = recv_declare(&mut probe).await;
    assert_eq!(probe.recv_method_name().await, "exchange.delete");
    probe.send_method(1, ExchangeDeleteOk {}).await;
    assert_eq!(probe.expect_close().await, ReplyCode::REPLY_SUCCESS.0);
    declare
}

fn direct() -> FieldTable {
    let mut args = FieldTable::new();
    args.insert("x-delayed-type", "direct");
    args
}

#[tokio::test]
async fn detection_finds_the_plugin_when_the_probe_declare_is_accepted() {
    let peer = Peer::bind().await;
    let options = ConnectionOptions::from_uri(&peer.uri("?heartbeat=0")).unwrap();
    let (support, probe) = tokio::time::timeout(BOUND, async { tokio::join!(detect(&options), accept_probe(&peer)) })
        .await
        .expect("detection ends within bounded time");
    assert_eq!(support.unwrap(), DelaySupport::Plugin);
    assert_eq!(probe.kind, "x-delayed-message");
    assert!(probe.exchange.starts_with("mq.delay.probe."), "{}", probe.exchange);
    assert!(!probe.durable);
    assert_eq!(probe.arguments, direct());
}

#[tokio::test]
async fn detection_reads_a_503_on_the_probe_connection_as_no_plugin() {
    let peer = Peer::bind().await;
    let options = ConnectionOptions::from_uri(&peer.uri("?heartbeat=0")).unwrap();
    let script = async {
        let mut probe = peer.accept_open(0).await;
        open_channel(&mut probe).await;
        assert_eq!(probe.recv_method_name().await, "exchange.declare");
        // What RabbitMQ without the plugin answers: a connection error.
        let close = ConnectionClose {
            reply_code: ReplyCode::COMMAND_INVALID,
            reply_text: "COMMAND_INVALID - unknown exchange type 'x-delayed-message'",
            class_id: ClassId(40),
            method_id: MethodId(10),
        };
        probe.send_method(0, close).await;
        assert_eq!(probe.recv_method_name().await, "connection.close-ok");
    };
    let (support, ()) = tokio::time::timeout(BOUND, async { tokio::join!(detect(&options), script) }).await.unwrap();
    assert_eq!(support.unwrap(), DelaySupport::Fallback);
}

#[tokio::test]
async fn the_plugin_publisher_declares_x_delayed_message_and_publishes_with_x_delay() {
    let peer = Peer::bind().await;
    let options = ConnectionOptions::from_uri(&peer.uri("?heartbeat=0")).unwrap();
    let (conn, mut server) = tokio::join!(Connection::connect_with(options.clone()), peer.accept_open(0));
    let conn = conn.unwrap();
    let (ch, ()) = tokio::join!(conn.open_channel(), open_channel(&mut server));
    let ch: Channel = ch.unwrap();

    let mut user_headers = FieldTable::new();
    user_headers.insert("tenant", "acme");
    let client = async {
        let publisher = DelayedPublisher::new(ch, DelayedExchange::new("orders.delayed"), &options).await.unwrap();
        assert_eq!(publisher.support(), DelaySupport::Plugin);
        assert!(publisher.ladder().is_none());
        let props = BasicProperties {
            message_id: Some("m-1"),
            delivery_mode: Some(2),
            headers: Some(Table::Owned(&user_headers)),
            ..Default::default()
        };
        publisher.publish("orders.eu", Duration::from_millis(1_500), &props, "ship it").await.unwrap();
        // Sub-millisecond parts round up, never down: 1.0001 ms is held 2 ms.
        publisher.publish("orders.eu", Duration::from_micros(1_001), &BasicProperties::default(), "b").await.unwrap();
    };
    let script = async {
        accept_probe(&peer).await;
        let declare = recv_declare(&mut server).await;
        let expected = Declare {
            exchange: "orders.delayed".into(),
            kind: "x-delayed-message".into(),
            durable: true,
            arguments: direct(),
        };
        assert_eq!(declare, expected);

        let mut headers = user_headers.clone();
        headers.insert("x-delay", FieldValue::I32(1_500));
        let (props, body) = recv_publish(&mut server, "orders.delayed", "orders.eu").await;
        assert_eq!(props, (Some("m-1".to_owned()), Some(2), headers));
        assert_eq!(body, b"ship it");

        let mut headers = FieldTable::new();
        headers.insert("x-delay", FieldValue::I32(2));
        let (props, _) = recv_publish(&mut server, "orders.delayed", "orders.eu").await;
        assert_eq!(props.2, headers);
    };
    tokio::time::timeout(BOUND, async { tokio::join!(client, script) }).await.expect("bounded");
}

/// Reads basic.publish (checking its exchange and key, and that it is not mandatory: the
/// plugin cannot return), its content header and body; returns (message-id, delivery-mode,
/// headers) and the body.
async fn recv_publish(
    server: &mut PeerConn,
    exchange: &str,
    routing_key: &str,
) -> ((Option<String>, Option<u8>, FieldTable), Vec<u8>) {
    let publish = server
        .recv(|f| match f.payload {
            FramePayload::Method(Method::BasicPublish(p)) => {
                (p.exchange.to_owned(), p.routing_key.to_owned(), p.mandatory, p.immediate)
            }
            other => panic!("expected basic.publish, got {other:?}"),
        })
        .await
        .unwrap();
    assert_eq!(publish, (exchange.to_owned(), routing_key.to_owned(), false, false));
    let header = server
        .recv(|f| match f.payload {
            FramePayload::Header(h) => {
                let p = h.properties().expect("the properties decode");
                (p.message_id.map(str::to_owned), p.delivery_mode, p.headers.map(|t| t.to_owned()).unwrap_or_default())
            }
            other => panic!("expected a content header, got {other:?}"),
        })
        .await
        .unwrap();
    let body = server
        .recv(|f| match f.payload {
            FramePayload::Body(b) => b.to_vec(),
            other => panic!("expected a body frame, got {other:?}"),
        })
        .await
        .unwrap();
    (header, body)
}
