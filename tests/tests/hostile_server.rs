//! The client against a scripted hostile server: each bad input ends in a typed error within
//! bounded time, with no panic, no hang, and every pending future and stream resolved.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::*;
use amqp_client::core::error::{ChannelError, ConnectionError};
use amqp_codec::method::*;
use amqp_codec::{DeliveryTag, FieldTable, ReplyCode};
use tests::peer::Peer;

const BOUND: Duration = Duration::from_secs(10);

async fn connected(peer: &Peer, heartbeat: u16) -> (Connection, tests::peer::PeerConn) {
    let uri = peer.uri(&format!("?heartbeat={heartbeat}"));
    let (conn, server) = tokio::join!(Connection::connect(&uri), peer.accept_open(heartbeat));
    (conn.unwrap(), server)
}

async fn open_channel(conn: &Connection, server: &mut tests::peer::PeerConn) -> Channel {
    let (ch, ()) = tokio::join!(conn.open_channel(), async {
        assert_eq!(server.recv_method_name().await, "channel.open");
        server.send_method(1, ChannelOpenOk::default()).await;
    });
    ch.unwrap()
}

/// A queue.declare left pending on its own task, to see how it resolves when the server misbehaves.
fn spawn_declare(ch: &Channel) -> tokio::task::JoinHandle<Result<QueueInfo, Error>> {
    let ch = ch.clone();
    tokio::spawn(async move { ch.queue_declare("q", QueueDeclareOptions::default(), &FieldTable::new()).await })
}

/// Sends `bytes`, expects the client to close with `code`, and checks that the connection
/// ends with a protocol violation carrying that code.
async fn violation_closes_with(bytes: &[u8], code: ReplyCode) {
    let peer = Peer::bind().await;
    let (conn, mut server) = connected(&peer, 0).await;
    let ch = open_channel(&conn, &mut server).await;
    let pending = spawn_declare(&ch);
    assert_eq!(server.recv_method_name().await, "queue.declare");
    server.send_raw(bytes).await;
    assert_eq!(tokio::time::timeout(BOUND, server.expect_close()).await.unwrap(), code.0);
    let error = tokio::time::timeout(BOUND, conn.closed()).await.unwrap();
    assert!(matches!(&error, ConnectionError::ProtocolViolation { code: c, .. } if *c == code), "{error:?}");
    let declare = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(matches!(declare, Err(Error::Connection(ConnectionError::ProtocolViolation { .. }))), "{declare:?}");
}

#[tokio::test]
async fn a_bad_frame_end_closes_with_501() {
    violation_closes_with(&[8, 0, 0, 0, 0, 0, 0, 0x00], ReplyCode::FRAME_ERROR).await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_501_before_its_payload_arrives() {
    // Announces 1 GiB; no payload follows. The client must not wait for it.
    violation_closes_with(&[3, 0, 1, 0x40, 0, 0, 0], ReplyCode::FRAME_ERROR).await;
}

#[tokio::test]
async fn a_truncated_method_payload_closes_with_501() {
    // basic.ack on channel 1 with a 3-byte delivery tag.
    violation_closes_with(&[1, 0, 1, 0, 0, 0, 7, 0, 60, 0, 80, 0, 0, 0, 0xCE], ReplyCode::FRAME_ERROR).await;
}

#[tokio::test]
async fn a_method_on_an_unopened_channel_closes_with_504() {
    let mut frame = bytes::BytesMut::new();
    amqp_codec::encode_method(
        amqp_codec::ChannelId(9),
        &BasicAck { delivery_tag: DeliveryTag(1), multiple: false }.into(),
        4096,
        &mut frame,
    )
    .unwrap();
    violation_closes_with(&frame, ReplyCode::CHANNEL_ERROR).await;
}

#[tokio::test]
async fn a_method_out_of_state_closes_with_503() {
    let mut frame = bytes::BytesMut::new();
    amqp_codec::encode_method(amqp_codec::ChannelId(0), &ConnectionTune::default().into(), 4096, &mut frame).unwrap();
    violation_closes_with(&frame, ReplyCode::COMMAND_INVALID).await;
}

#[tokio::test]
async fn a_content_header_without_a_method_closes_with_505() {
    let props = amqp_codec::BasicProperties::default();
    let header = amqp_codec::ContentHeader::new(1, &props);
    let mut frame = bytes::BytesMut::new();
    amqp_codec::encode_header(amqp_codec::ChannelId(1), &header, 4096, &mut frame).unwrap();
    violation_closes_with(&frame, ReplyCode::UNEXPECTED_FRAME).await;
}

#[tokio::test]
async fn a_server_that_stops_answering_mid_handshake_times_out() {
    let peer = Peer::bind().await;
    let uri = peer.uri("?connection_timeout=500");
    let server = async {
        let mut conn = peer.accept().await;
        conn.send_method(
            0,
            ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN", ..Default::default() },
        )
        .await;
        assert_eq!(conn.recv_method_name().await, "connection.start-ok");
        tokio::time::sleep(Duration::from_secs(3)).await; // and never tunes
        conn
    };
    let (result, _server) = tokio::join!(tokio::time::timeout(BOUND, Connection::connect(&uri)), server);
    let err = result.expect("bounded").unwrap_err();
    assert!(matches!(err, Error::Connection(ConnectionError::Timeout(_))), "{err:?}");
}

#[tokio::test]
async fn a_half_open_socket_is_found_by_heartbeats_and_fails_everything() {
    let peer = Peer::bind().await;
    let (conn, mut server) = connected(&peer, 1).await;
    let ch = open_channel(&conn, &mut server).await;
    let (ch2, consumer) = (ch.clone(), async {
        assert_eq!(server.recv_method_name().await, "basic.consume");
        server.send_method(1, BasicConsumeOk { consumer_tag: "c1" }).await;
    });
    let (mut consumer, ()) = tokio::join!(
        async { ch2.basic_consume("q", BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap() },
        consumer
    );
    let pending = spawn_declare(&ch);
    // The server keeps the socket open and says nothing more, not even heartbeats.
    let error = tokio::time::timeout(BOUND, conn.closed()).await.expect("found within bounded time");
    assert_eq!(error, ConnectionError::HeartbeatTimeout);
    let declare = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(matches!(declare, Err(Error::Connection(ConnectionError::HeartbeatTimeout))), "{declare:?}");
    assert!(tokio::time::timeout(BOUND, consumer.next_delivery()).await.unwrap().is_none(), "the stream ends");
    assert!(matches!(ch.closed().await, ChannelError::Connection(ConnectionError::HeartbeatTimeout)));
    drop(server);
}

#[tokio::test]
async fn a_server_that_drops_the_socket_mid_frame_fails_everything() {
    let peer = Peer::bind().await;
    let (conn, mut server) = connected(&peer, 0).await;
    let ch = open_channel(&conn, &mut server).await;
    let pending = spawn_declare(&ch);
    assert_eq!(server.recv_method_name().await, "queue.declare");
    server.send_raw(&[1, 0, 1, 0, 0, 0, 20, 0, 50]).await; // half a frame, then gone
    drop(server);
    let error = tokio::time::timeout(BOUND, conn.closed()).await.unwrap();
    assert!(matches!(error, ConnectionError::Lost(_)), "{error:?}");
    let declare = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(matches!(declare, Err(Error::Connection(ConnectionError::Lost(_)))), "{declare:?}");
}

#[tokio::test]
async fn the_server_answering_with_another_protocol_header_is_a_mismatch() {
    let peer = Peer::bind().await;
    let uri = peer.uri("");
    let server = async {
        let mut conn = peer.accept().await;
        conn.send_raw(b"AMQP\x00\x00\x08\x00").await;
        conn
    };
    let (result, _server) = tokio::join!(tokio::time::timeout(BOUND, Connection::connect(&uri)), server);
    let err = result.expect("bounded").unwrap_err();
    assert!(matches!(err, Error::Connection(ConnectionError::ProtocolMismatch)), "{err:?}");
}

#[tokio::test]
async fn a_full_consumer_loses_nothing_and_learns_of_the_end_as_it_drains() {
    let peer = Peer::bind().await;
    let uri = peer.uri("");
    let options = ConnectionOptions::from_uri(&uri).unwrap().consumer_buffer(1);
    let (conn, mut server) = tokio::join!(Connection::connect_with(options), peer.accept_open(0));
    let conn = conn.unwrap();
    let ch = open_channel(&conn, &mut server).await;
    let no_args = FieldTable::new();
    let (consumer, ()) = tokio::join!(ch.basic_consume("q", BasicConsumeOptions::default(), &no_args), async {
        assert_eq!(server.recv_method_name().await, "basic.consume");
        server.send_method(1, BasicConsumeOk { consumer_tag: "c1" }).await;
    });
    let mut consumer = consumer.unwrap();
    for tag in 1..=3u64 {
        server
            .send_method(1, BasicDeliver { consumer_tag: "c1", delivery_tag: DeliveryTag(tag), ..Default::default() })
            .await;
        let props = amqp_codec::BasicProperties::default();
        let header = amqp_codec::ContentHeader::new(0, &props);
        let mut frame = bytes::BytesMut::new();
        amqp_codec::encode_header(amqp_codec::ChannelId(1), &header, 4096, &mut frame).unwrap();
        server.send_raw(&frame).await;
    }
    let pending = spawn_declare(&ch);
    tokio::time::sleep(Duration::from_millis(200)).await; // the consumer's one slot fills; the rest wait
    drop(server);
    // While the consumer is full the connection reads nothing, so it learns of the end only
    // as the consumer drains: every delivery that arrived is handed over, then the stream ends.
    let mut got = 0;
    while tokio::time::timeout(BOUND, consumer.next_delivery()).await.unwrap().is_some() {
        got += 1;
    }
    assert_eq!(got, 3, "no delivery lost or duplicated behind the full queue");
    let error = tokio::time::timeout(BOUND, conn.closed()).await.unwrap();
    assert!(matches!(error, ConnectionError::Lost(_)), "{error:?}");
    let declare = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(matches!(declare, Err(Error::Connection(ConnectionError::Lost(_)))), "{declare:?}");
}
