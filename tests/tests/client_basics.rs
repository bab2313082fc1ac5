//! The client against the real RabbitMQ: connecting, declaring, publishing, getting,
//! consuming and acknowledging, and the errors a broker raises.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use amqp_client::api::*;
use amqp_client::core::error::{ChannelError, ConnectionError};
use amqp_codec::{BasicProperties, FieldTable, FieldValue, ReplyCode};
use futures_util::StreamExt;
use std::time::Duration;
use tests::{channel, exclusive, unique_name, uri};

#[tokio::test]
async fn a_published_message_comes_back_by_basic_get_with_its_properties() {
    let (conn, ch) = channel().await;
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    assert!(q.name.starts_with("amq.gen-"), "{}", q.name);
    let mut headers = FieldTable::new();
    headers.insert("attempt", 2i32);
    let props = BasicProperties {
        content_type: Some("text/plain"),
        message_id: Some("m-1"),
        headers: Some((&headers).into()),
        ..Default::default()
    };
    ch.basic_publish("", &q.name, BasicPublishOptions::default(), &props, "hello").await.unwrap();
    let got = loop {
        if let Some(d) = ch.basic_get(&q.name, false).await.unwrap() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(&got.body()[..], b"hello");
    assert_eq!(got.routing_key(), q.name);
    assert_eq!(got.properties().message_id, Some("m-1"));
    assert_eq!(got.properties().headers.unwrap().to_owned().get("attempt"), Some(&FieldValue::I32(2)));
    got.ack().await.unwrap();
    assert!(ch.basic_get(&q.name, false).await.unwrap().is_none(), "get-empty after the ack");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_receives_in_order_and_acks() {
    let (conn, ch) = channel().await;
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    for i in 0..100u32 {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    for i in 0..100u32 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.unwrap().unwrap();
        assert_eq!(&d.body()[..], i.to_string().as_bytes());
        assert_eq!(d.consumer_tag(), Some(consumer.tag()));
        d.ack().await.unwrap();
    }
    consumer.cancel().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn confirms_under_load_ack_every_message_exactly_once() {
    let (conn, ch) = channel().await;
    ch.confirm_select().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let n = 100_000u64;
    let mut pending = Vec::with_capacity(n as usize);
    let props = BasicProperties::default();
    for _ in 0..n {
        pending
            .push(ch.basic_publish("", &q.name, BasicPublishOptions::default(), &props, vec![0u8; 16]).await.unwrap());
    }
    let mut acks = 0;
    for confirm in pending {
        match tokio::time::timeout(Duration::from_secs(60), confirm.wait()).await.unwrap().unwrap() {
            Confirmation::Ack => acks += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, n);
    let again = ch
        .queue_declare(&q.name, QueueDeclareOptions { passive: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    assert_eq!(u64::from(again.message_count), n);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_mandatory_publish_to_nowhere_comes_back_as_returned() {
    let (conn, ch) = channel().await;
    ch.confirm_select().await.unwrap();
    let key = unique_name("nowhere");
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = ch.basic_publish("", &key, opts, &BasicProperties::default(), "lost?").await.unwrap();
    match confirm.wait().await.unwrap() {
        Confirmation::Returned(message) => {
            assert_eq!(&message.body[..], b"lost?");
            let amqp_codec::Method::BasicReturn(ret) = message.method().unwrap() else { panic!("a return") };
            assert_eq!(ret.reply_code, ReplyCode::NO_ROUTE);
            assert_eq!(ret.routing_key, key);
        }
        other => panic!("expected a return, got {other:?}"),
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_confirm_pending_when_the_channel_closes_reports_the_channels_error() {
    let (conn, ch) = channel().await;
    ch.confirm_select().await.unwrap();
    let missing = unique_name("no-such-exchange");
    let confirm = ch
        .basic_publish(&missing, "k", BasicPublishOptions::default(), &BasicProperties::default(), "x")
        .await
        .unwrap();
    let err = confirm.wait().await.unwrap_err();
    assert!(matches!(err, Error::Channel(ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, .. })), "{err:?}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn outside_confirm_mode_a_publish_reports_that_no_confirm_was_requested() {
    let (conn, ch) = channel().await;
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let c =
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), "x").await.unwrap();
    assert_eq!(c.wait().await.unwrap(), Confirmation::NotRequested);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_access_refused() {
    let bad = format!("amqp://guest:wrong@{}/%2f", tests::broker_addr());
    let err = Connection::connect(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Connection(ConnectionError::AccessRefused(_))), "{err:?}");
}

#[tokio::test]
async fn an_unknown_vhost_is_refused_with_530() {
    let bad = format!("amqp://guest:guest@{}/{}", tests::broker_addr(), unique_name("no-such-vhost"));
    let err = Connection::connect(&bad).await.unwrap_err();
    assert!(
        matches!(err, Error::Connection(ConnectionError::ClosedByBroker { code: ReplyCode::NOT_ALLOWED, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_queue_is_404_and_closes_only_that_channel() {
    let (conn, ch) = channel().await;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let err = ch.queue_declare(&unique_name("missing"), passive, &FieldTable::new()).await.unwrap_err();
    assert!(matches!(&err, Error::Channel(ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, .. })), "{err:?}");
    assert!(matches!(ch.closed().await, ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, .. }));
    let later = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap_err();
    assert!(matches!(later, Error::Channel(ChannelError::NotOpen(_))), "{later:?}");
    let other = conn.open_channel().await.unwrap();
    other.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_inequivalent_redeclare_is_406() {
    let (conn, ch) = channel().await;
    let name = unique_name("inequivalent");
    ch.queue_declare(&name, exclusive(), &FieldTable::new()).await.unwrap();
    let mut args = FieldTable::new();
    args.insert("x-max-length", 10i32);
    let err = ch.queue_declare(&name, exclusive(), &args).await.unwrap_err();
    assert!(
        matches!(err, Error::Channel(ChannelError::ClosedByBroker { code: ReplyCode::PRECONDITION_FAILED, .. })),
        "{err:?}"
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn exchange_to_exchange_bindings_route() {
    let (conn, ch) = channel().await;
    let (src, dst) = (unique_name("e2e-src"), unique_name("e2e-dst"));
    let auto = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
    ch.exchange_declare(&src, "fanout", auto, &FieldTable::new()).await.unwrap();
    ch.exchange_declare(&dst, "direct", auto, &FieldTable::new()).await.unwrap();
    ch.exchange_bind(&dst, &src, "", false, &FieldTable::new()).await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.queue_bind(&q.name, &dst, "k", false, &FieldTable::new()).await.unwrap();
    ch.basic_publish(&src, "k", BasicPublishOptions::default(), &BasicProperties::default(), "via e2e").await.unwrap();
    let got = loop {
        if let Some(d) = ch.basic_get(&q.name, true).await.unwrap() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(got.exchange(), src);
    ch.exchange_unbind(&dst, &src, "", false, &FieldTable::new()).await.unwrap();
    ch.exchange_delete(&src, ExchangeDeleteOptions::default()).await.unwrap();
    ch.exchange_delete(&dst, ExchangeDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_16_mib_and_an_empty_message_cross_with_frame_max_4096() {
    let conn = Connection::connect(&format!("{}?frame_max=4096", uri())).await.unwrap();
    assert_eq!(conn.tuned().frame_max, 4096);
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    ch.confirm_select().await.unwrap();
    let c1 = ch
        .basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), big.clone())
        .await
        .unwrap();
    let c2 =
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), "").await.unwrap();
    assert_eq!(c1.wait().await.unwrap(), Confirmation::Ack);
    assert_eq!(c2.wait().await.unwrap(), Confirmation::Ack);
    let mut consumer = ch
        .basic_consume(&q.name, BasicConsumeOptions { no_ack: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await.unwrap().unwrap();
    assert!(first.body()[..] == big[..], "16 MiB body intact");
    let second = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.unwrap().unwrap();
    assert!(second.body().is_empty());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn deleting_the_queue_ends_its_consumer_stream() {
    let (conn, ch) = channel().await;
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let other = conn.open_channel().await.unwrap();
    other.queue_delete(&q.name, QueueDeleteOptions::default()).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.unwrap();
    assert!(end.is_none(), "the broker's basic.cancel ends the stream");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn closing_the_connection_resolves_everything_pending() {
    let (conn, ch) = channel().await;
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.confirm_select().await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let mut confirms = Vec::new();
    for _ in 0..1000 {
        confirms.push(
            ch.basic_publish("", "", BasicPublishOptions::default(), &BasicProperties::default(), "x").await.unwrap(),
        );
    }
    let closer = conn.clone();
    let close = tokio::spawn(async move { closer.close().await });
    for c in confirms {
        // Each resolves: acked before the close, or failed with the connection's end.
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await.expect("every confirm resolves");
    }
    while tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("the stream ends").is_some() {}
    close.await.unwrap().unwrap();
    let err = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap_err();
    assert!(matches!(err, Error::Connection(_) | Error::Channel(ChannelError::NotOpen(_))), "{err:?}");
}
