//! The idempotent consumer (mq-patterns' `dedup`) on a recovering consumer: a delivery whose
//! connection is lost after its id was committed and before its ack cannot be acked, comes
//! back redelivered, and is recognised rather than processed again.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use amqp_client::api::*;
use amqp_codec::{BasicProperties, FieldTable};
use mq_patterns::dedup::{DedupError, Handled, IdempotentConsumer, MemoryStore};
use mq_patterns::recovery::*;
use tests::proxy::Proxy;
use tests::unique_name;

async fn next(consumer: &mut RecoveringConsumer) -> RecoveredDelivery {
    tokio::time::timeout(Duration::from_secs(30), consumer.next_delivery()).await.unwrap().expect("a delivery")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_delivery_whose_ack_was_lost_is_recognised_when_it_comes_again() {
    let proxy = Arc::new(Proxy::start(tests::broker_addr()).await);
    let uri = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let options = ConnectionOptions::from_uri(&uri).unwrap().connection_name(unique_name("dedup-recovered"));
    let backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500), max_attempts: None };
    let conn = RecoveringConnection::connect(vec![options], RecoveryOptions::default().backoff(backoff)).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let queue = unique_name("dedup-recovered-q");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let props = BasicProperties { message_id: Some("order-1"), ..Default::default() };
    ch.basic_publish("", &queue, BasicPublishOptions::default(), &props, "once").await.unwrap();
    let mut consumer = ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();

    let dedup = IdempotentConsumer::new(MemoryStore::default());
    let runs = Arc::new(AtomicU32::new(0));
    let first = next(&mut consumer).await;
    let (cut, counted, mut events) = (proxy.clone(), runs.clone(), conn.events());
    let outcome = dedup
        .handle(&first, move |_, _| {
            Box::pin(async move {
                counted.fetch_add(1, Ordering::SeqCst);
                // The connection goes after the effect and before the commit and the ack.
                cut.reset();
                while !matches!(events.recv().await, Ok(RecoveryEvent::Recovered(_))) {}
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(outcome, Err(DedupError::Recovery(RecoveryError::StaleDelivery { .. }))),
        "the ack of a lost connection's delivery fails as stale: {outcome:?}"
    );
    assert!(dedup.store().contains("order-1"), "the id was committed before the ack failed");

    let again = next(&mut consumer).await;
    assert!(again.redelivered());
    let counted = runs.clone();
    let outcome = dedup
        .handle(&again, move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        })
        .await
        .unwrap();
    assert_eq!(outcome, Handled::Duplicate, "recognised, acked, not processed again");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let left = ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    assert_eq!(left, 0, "the duplicate's ack on the new connection settled it");
    conn.close().await.unwrap();
}
