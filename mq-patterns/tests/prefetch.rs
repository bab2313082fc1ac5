//! Prefetch against the real RabbitMQ: with a limit of N and no acks exactly N deliveries
//! arrive; an ack lets exactly one more through; a per-consumer limit holds for each consumer
//! of the channel and a per-channel (global) limit for all of them together.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Channel, Connection, Consumer, Delivery, QueueDeclareOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::prefetch::Prefetch;

mod support;
use support::uri;

const MESSAGES: u32 = 20;
/// How long no further delivery may arrive once the limit is reached. A violation shows up
/// well within it; a pass does not depend on it.
const QUIET: Duration = Duration::from_secs(1);

/// A connection, a channel, and an exclusive queue holding `MESSAGES` messages.
async fn filled_queue() -> (Connection, Channel, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let queue = format!("prefetch-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    ch.queue_declare(&queue, exclusive, &FieldTable::new()).await.unwrap();
    for i in 0..MESSAGES {
        ch.basic_publish("", &queue, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    while ready(&ch, &queue).await < MESSAGES {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (conn, ch, queue)
}

async fn ready(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count
}

async fn consume(ch: &Channel, queue: &str) -> Consumer {
    ch.basic_consume(queue, Default::default(), &FieldTable::new()).await.unwrap()
}

/// Takes `n` deliveries (10 s at most each), then checks that no more arrive for `QUIET`.
async fn exactly(consumer: &mut Consumer, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), consumer.next_delivery()).await;
        got.push(next.expect("a delivery within the limit arrives").expect("the consumer runs"));
    }
    tokio::time::sleep(QUIET).await;
    assert!(consumer.try_next_delivery().is_none(), "more than {n} deliveries arrived unacked");
    got
}

#[tokio::test]
async fn a_per_consumer_limit_of_five_lets_exactly_five_through_until_one_is_acked() {
    let (conn, ch, queue) = filled_queue().await;
    let consuming = conn.open_channel().await.unwrap();
    Prefetch::per_consumer(5).apply(&consuming).await.unwrap();
    let mut consumer = consume(&consuming, &queue).await;
    let held = exactly(&mut consumer, 5).await;
    assert_eq!(ready(&ch, &queue).await, MESSAGES - 5);
    held[0].ack().await.unwrap();
    let more = exactly(&mut consumer, 1).await;
    assert_eq!(&more[0].body()[..], b"5", "the next in queue order");
    assert_eq!(ready(&ch, &queue).await, MESSAGES - 6);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_per_consumer_limit_holds_for_each_consumer_of_the_channel() {
    let (conn, ch, queue) = filled_queue().await;
    let consuming = conn.open_channel().await.unwrap();
    Prefetch::per_consumer(3).apply(&consuming).await.unwrap();
    let (mut a, mut b) = (consume(&consuming, &queue).await, consume(&consuming, &queue).await);
    exactly(&mut a, 3).await;
    exactly(&mut b, 3).await;
    assert_eq!(ready(&ch, &queue).await, MESSAGES - 6);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_per_channel_limit_is_shared_by_all_consumers_of_the_channel() {
    let (conn, ch, queue) = filled_queue().await;
    let consuming = conn.open_channel().await.unwrap();
    Prefetch::per_channel(4).apply(&consuming).await.unwrap();
    let (mut a, mut b) = (consume(&consuming, &queue).await, consume(&consuming, &queue).await);
    // Wait until the channel holds four, whichever consumer got them.
    let mut held = 0;
    while held < 4 {
        tokio::select! {
            Some(_) = a.next_delivery() => held += 1,
            Some(_) = b.next_delivery() => held += 1,
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("only {held} deliveries arrived"),
        }
    }
    tokio::time::sleep(QUIET).await;
    assert!(a.try_next_delivery().is_none() && b.try_next_delivery().is_none(), "over the channel's limit");
    assert_eq!(ready(&ch, &queue).await, MESSAGES - 4);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn both_limits_together_cap_each_consumer_and_the_channel() {
    let (conn, ch, queue) = filled_queue().await;
    let consuming = conn.open_channel().await.unwrap();
    let limits = Prefetch::per_consumer(3).and_per_channel(4);
    assert_eq!((limits.consumer_limit(), limits.channel_limit()), (Some(3), Some(4)));
    limits.apply(&consuming).await.unwrap();
    let mut a = consume(&consuming, &queue).await;
    exactly(&mut a, 3).await;
    let mut b = consume(&consuming, &queue).await;
    // With the two basic.qos in the other order RabbitMQ drops the channel's limit and b gets 3.
    exactly(&mut b, 1).await;
    assert_eq!(ready(&ch, &queue).await, MESSAGES - 4);
    conn.close().await.unwrap();
}
