//! Recovery against scripted failures that a real broker will not produce on demand: a server
//! that dies in the middle of the reconnection handshake, and one that refuses the login on
//! every reconnection. The scripted peer (`tests::peer`) plays the server frame by frame.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::ConnectionOptions;
use amqp_client::core::error::ConnectionError;
use amqp_codec::ReplyCode;
use amqp_codec::method::{ChannelOpenOk, ConnectionClose, ConnectionStart};
use mq_patterns::recovery::*;
use tests::peer::Peer;

fn options() -> RecoveryOptions {
    let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(50), max_attempts: Some(4) };
    RecoveryOptions::default().backoff(backoff).wait(Duration::from_secs(10))
}

async fn event<T>(
    events: &mut tokio::sync::broadcast::Receiver<RecoveryEvent>,
    wanted: impl Fn(RecoveryEvent) -> Option<T>,
) -> T {
    let found = async {
        loop {
            if let Some(found) = wanted(events.recv().await.unwrap()) {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), found).await.expect("the event within 10 s")
}

#[tokio::test]
async fn a_server_dying_mid_handshake_is_retried_and_the_channel_reopened() {
    let peer = Peer::bind().await;
    let options_for_peer = ConnectionOptions::from_uri(&peer.uri("?connection_timeout=2000")).unwrap();
    let (conn, mut first) = tokio::join!(RecoveringConnection::connect(vec![options_for_peer], options()), async {
        peer.accept_open(0).await
    });
    let conn = conn.unwrap();
    let mut events = conn.events();
    let (channel, _) = tokio::join!(conn.open_channel(), async {
        assert_eq!(first.recv_method_name().await, "channel.open");
        first.send_method(1, ChannelOpenOk::default()).await;
    });
    let channel = channel.unwrap();

    drop(first); // the socket closes: EOF
    let cause = event(&mut events, |e| match e {
        RecoveryEvent::Disconnected { cause } => Some(cause),
        _ => None,
    })
    .await;
    assert!(matches!(cause, ConnectionError::Lost(_)), "{cause:?}");

    // The first reconnection gets connection.start and then a dead socket.
    let mut dying = peer.accept().await;
    let start = ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN", ..Default::default() };
    dying.send_method(0, start).await;
    assert_eq!(dying.recv_method_name().await, "connection.start-ok");
    drop(dying);

    // The next one is served, and the channel is opened on it again.
    let mut third = peer.accept_open(0).await;
    assert_eq!(third.recv_method_name().await, "channel.open");
    third.send_method(1, ChannelOpenOk::default()).await;
    let restored = event(&mut events, |e| match e {
        RecoveryEvent::Recovered(restored) => Some(restored),
        _ => None,
    })
    .await;
    assert_eq!(restored.channels, 1);
    assert_eq!(conn.stats().attempts, 2, "one attempt died mid-handshake, the next one recovered");
    assert_eq!(channel.current().unwrap().connection().generation(), restored.generation);
}

#[tokio::test]
async fn a_refused_login_on_every_reconnection_gives_up_with_the_brokers_reason() {
    let peer = Peer::bind().await;
    let options_for_peer = ConnectionOptions::from_uri(&peer.uri("")).unwrap();
    let (conn, first) =
        tokio::join!(RecoveringConnection::connect(vec![options_for_peer], options()), peer.accept_open(0));
    let conn = conn.unwrap();
    let mut events = conn.events();
    drop(first);
    for _ in 0..4 {
        let mut refusing = peer.accept().await;
        let start = ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN", ..Default::default() };
        refusing.send_method(0, start).await;
        assert_eq!(refusing.recv_method_name().await, "connection.start-ok");
        let close = ConnectionClose {
            reply_code: ReplyCode::ACCESS_REFUSED,
            reply_text: "ACCESS_REFUSED - Login was refused",
            ..Default::default()
        };
        refusing.send_method(0, close).await;
    }
    let failed = event(&mut events, |e| match e {
        RecoveryEvent::Failed(error) => Some(error),
        _ => None,
    })
    .await;
    match failed {
        RecoveryError::GaveUp { attempts: 4, last } => {
            assert_eq!(last.reply_code(), Some(ReplyCode::ACCESS_REFUSED), "{last:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.stats().failures, 1);
}

#[tokio::test]
async fn a_failed_write_is_noticed_at_once_and_said() {
    use amqp_client::api::{BasicConsumeOptions, BasicPublishOptions};
    use amqp_codec::method::{BasicConsumeOk, BasicDeliver};
    use amqp_codec::{BasicProperties, ChannelId, DeliveryTag, FieldTable, FramePayload, Method, encode_content};

    let peer = Peer::bind().await;
    // A consumer buffer of one delivery: with it full, the client stops reading the socket, so
    // the reset below can only be found by a write.
    let client_options = ConnectionOptions::from_uri(&peer.uri("")).unwrap().consumer_buffer(1);
    let (conn, server) =
        tokio::join!(RecoveringConnection::connect(vec![client_options], options()), peer.accept_open(0));
    let (conn, mut server) = (conn.unwrap(), server);
    let mut events = conn.events();
    let (channel, _) = tokio::join!(conn.open_channel(), async {
        assert_eq!(server.recv_method_name().await, "channel.open");
        server.send_method(1, ChannelOpenOk::default()).await;
    });
    let channel = channel.unwrap();
    let no_arguments = FieldTable::new();
    let (consumer, _) =
        tokio::join!(channel.basic_consume("q", BasicConsumeOptions::default(), &no_arguments), async {
            let tag = server
                .recv(|f| match f.payload {
                    FramePayload::Method(Method::BasicConsume(c)) => c.consumer_tag.to_owned(),
                    other => panic!("expected basic.consume, got {other:?}"),
                })
                .await
                .unwrap();
            server.send_method(1, BasicConsumeOk { consumer_tag: &tag }).await;
            let mut out = bytes::BytesMut::new();
            for n in 1..=3 {
                let deliver = BasicDeliver { consumer_tag: &tag, delivery_tag: DeliveryTag(n), ..Default::default() };
                encode_content(ChannelId(1), &deliver, &BasicProperties::default(), b"x", 131_072, &mut out).unwrap();
            }
            server.send_raw(&out).await;
        });
    let _unread = consumer.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // the client reads them, and stops
    server.stream.set_zero_linger().unwrap();
    drop(server); // an RST
    tokio::time::sleep(Duration::from_millis(100)).await;
    let props = BasicProperties::default();
    let _ = channel.basic_publish("", "q", BasicPublishOptions::default(), &props, "x").await;
    let cause = event(&mut events, |e| match e {
        RecoveryEvent::Disconnected { cause } => Some(cause),
        _ => None,
    })
    .await;
    match cause {
        ConnectionError::Lost(reason) => assert!(reason.starts_with("write failed"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
