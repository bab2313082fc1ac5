//! amqps: the client's TLS against the real RabbitMQ behind a TLS terminator (a throwaway CA),
//! a CA that does not match, and EXTERNAL with a client certificate against a scripted peer.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use amqp_client::api::*;
use amqp_codec::method::{ConnectionOpenOk, ConnectionStart, ConnectionTune};
use amqp_codec::{BasicProperties, FieldTable, FramePayload, Method};
use tests::tls::Pki;

#[tokio::test]
async fn amqps_with_a_custom_ca_reaches_the_broker() {
    let pki = Pki::new();
    let port = pki.terminator(tests::broker_addr(), false).await;
    let uri = format!("amqps://guest:guest@localhost:{port}/%2f?cacertfile={}", pki.ca.display());
    let conn = Connection::connect(&uri).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch
        .queue_declare("", QueueDeclareOptions { exclusive: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    ch.confirm_select().await.unwrap();
    let confirm = ch
        .basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), vec![9u8; 300_000])
        .await
        .unwrap();
    assert_eq!(confirm.wait().await.unwrap(), Confirmation::Ack);
    let got = ch.basic_get(&q.name, true).await.unwrap().unwrap();
    assert_eq!(got.body().len(), 300_000);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_broker_certificate_from_another_ca_is_refused() {
    let (pki, other) = (Pki::new(), Pki::new());
    let port = pki.terminator(tests::broker_addr(), false).await;
    let uri = format!("amqps://guest:guest@localhost:{port}/%2f?cacertfile={}", other.ca.display());
    let err = Connection::connect(&uri).await.unwrap_err();
    assert!(matches!(&err, Error::Tls(reason) if reason.contains("certificate")), "{err:?}");
}

#[tokio::test]
async fn external_authentication_presents_the_client_certificate() {
    let pki = Pki::new();
    let peer = tests::peer::Peer::bind().await;
    let plain = peer.uri("").trim_start_matches("amqp://guest:guest@").trim_end_matches("/%2f").to_owned();
    let port = pki.terminator(plain, true).await;
    let uri = format!(
        "amqps://localhost:{port}/%2f?auth_mechanism=external&cacertfile={}&certfile={}&keyfile={}",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let server = async {
        let mut conn = peer.accept().await; // only reached through a verified client certificate
        conn.send_method(
            0,
            ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN EXTERNAL", ..Default::default() },
        )
        .await;
        let (mechanism, response) = conn
            .recv(|f| match f.payload {
                FramePayload::Method(Method::ConnectionStartOk(ok)) => (ok.mechanism.to_owned(), ok.response.to_vec()),
                other => panic!("{other:?}"),
            })
            .await
            .unwrap();
        conn.send_method(0, ConnectionTune { channel_max: 0, frame_max: 131_072, heartbeat: 0 }).await;
        assert_eq!(conn.recv_method_name().await, "connection.tune-ok");
        assert_eq!(conn.recv_method_name().await, "connection.open");
        conn.send_method(0, ConnectionOpenOk::default()).await;
        (mechanism, response, conn)
    };
    let (client, (mechanism, response, _conn)) = tokio::join!(Connection::connect(&uri), server);
    client.unwrap();
    assert_eq!(mechanism, "EXTERNAL");
    assert!(response.is_empty(), "EXTERNAL sends no credentials");
}

#[tokio::test]
async fn without_a_client_certificate_a_server_that_requires_one_refuses() {
    let pki = Pki::new();
    let port = pki.terminator(tests::broker_addr(), true).await;
    let uri =
        format!("amqps://guest:guest@localhost:{port}/%2f?cacertfile={}&connection_timeout=5000", pki.ca.display());
    let err = Connection::connect(&uri).await.unwrap_err();
    // TLS 1.3 reports the refusal after the handshake, as the connection dropping.
    assert!(matches!(err, Error::Tls(_) | Error::Connection(_)), "{err:?}");
}
