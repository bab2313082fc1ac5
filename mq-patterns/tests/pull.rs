//! Pulling a batch with basic.get against the real RabbitMQ: at most N, stopping at
//! get-empty, in queue order, and unacked pulls redelivered when their channel closes.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::pull::pull_batch;

mod support;
use support::uri;

#[tokio::test]
async fn a_batch_stops_at_its_size_or_at_get_empty_and_unacked_pulls_come_back() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let queue = format!("pull-{}", std::process::id());
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    for i in 0..5u32 {
        ch.basic_publish("", &queue, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    while ch.queue_declare(&queue, passive, &FieldTable::new()).await.unwrap().message_count < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = pull_batch(&ch, &queue, 3, false).await.unwrap();
    let bodies: Vec<_> = first.iter().map(|d| d.body().clone()).collect();
    assert_eq!(bodies, [&b"0"[..], b"1", b"2"]);
    let rest = pull_batch(&ch, &queue, 10, false).await.unwrap();
    assert_eq!(rest.len(), 2, "stops at get-empty");
    for d in first.iter().chain(&rest).take(4) {
        d.ack().await.unwrap();
    }
    // The fifth was pulled but not acked: closing the channel returns it to the queue.
    ch.close().await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let again = pull_batch(&ch, &queue, 10, true).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].body()[..], b"4");
    assert!(again[0].redelivered());
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}
