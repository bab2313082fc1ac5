//! The fault proxy's own faults, seen by the plain client: a throttled path still carries
//! messages intact, and a cut after N bytes downstream (mid-frame) ends the connection with
//! the loss said. (Cut, reset, stall and refuse are exercised by the recovery tests.)
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::*;
use amqp_client::core::error::ConnectionError;
use amqp_codec::{BasicProperties, FieldTable};
use tests::proxy::{Direction, Proxy};

fn through(proxy: &Proxy) -> String {
    format!("amqp://guest:guest@{}/%2f", proxy.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_path_carries_a_large_message_intact() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    proxy.throttle(2 * 1024 * 1024);
    let conn = Connection::connect(&through(&proxy)).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", tests::exclusive(), &FieldTable::new()).await.unwrap();
    ch.confirm_select().await.unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let props = BasicProperties::default();
    let confirm = ch.basic_publish("", &q.name, BasicPublishOptions::default(), &props, body.clone()).await.unwrap();
    assert_eq!(confirm.wait().await.unwrap(), Confirmation::Ack);
    let got = ch.basic_get(&q.name, true).await.unwrap().expect("the message");
    assert_eq!(&got.body()[..], &body[..]);
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_frame_downstream_ends_the_connection_with_the_loss_said() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let conn = Connection::connect(&through(&proxy)).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", tests::exclusive(), &FieldTable::new()).await.unwrap();
    let props = BasicProperties::default();
    ch.basic_publish("", &q.name, BasicPublishOptions::default(), &props, vec![7u8; 100_000]).await.unwrap();
    tests::wait_for_count(&ch, &q.name, 1).await;
    // The delivery is ~100 kB: the cut lands inside its body frame.
    proxy.cut_after(Direction::Downstream, 50_000);
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), consumer.next_delivery()).await.unwrap();
    assert!(next.is_none(), "no partial delivery comes out");
    let cause = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.unwrap();
    assert!(matches!(cause, ConnectionError::Lost(_)), "{cause:?}");
}
