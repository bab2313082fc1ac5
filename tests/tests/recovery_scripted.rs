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
