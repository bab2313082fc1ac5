//! The confirming publisher against the real RabbitMQ: acks, a bounded window, stamped and
//! kept message ids, unroutable messages as errors, and nacks retried until the broker
//! takes the message or the attempts run out.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::{Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::{BasicProperties, FieldTable, ReplyCode};
use mq_patterns::confirms::{ConfirmingPublisher, PublishError, RetryPolicy};

mod support;
use support::uri;

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(100) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_acked_within_a_bounded_window_with_a_message_id() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let q = ch
        .queue_declare("", QueueDeclareOptions { exclusive: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    let publisher =
        ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 8, RetryPolicy::default()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let (p, queue) = (publisher.clone(), q.name.clone());
        tasks.push(tokio::spawn(async move {
            let props = if i == 0 {
                BasicProperties { message_id: Some("mine"), ..Default::default() }
            } else {
                BasicProperties::default()
            };
            p.publish("", &queue, &props, i.to_string()).await.unwrap()
        }));
    }
    // 200 publishers at once fill the window of 8 and no more: the rest wait their turn.
    let mut peak = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak = peak.max(publisher.outstanding());
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert_eq!(peak, 8, "the window filled");
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let c = t.await.unwrap();
        assert_eq!(c.attempts, 1);
        ids.insert(c.message_id);
    }
    assert_eq!(ids.len(), 200, "every id distinct");
    assert!(ids.contains("mine"), "a given id is kept");
    assert_eq!(publisher.outstanding(), 0);
    // What the consumer sees carries the same ids.
    let mut seen = std::collections::BTreeSet::new();
    while let Some(d) = ch.basic_get(&q.name, true).await.unwrap() {
        seen.insert(d.properties().message_id.unwrap().to_owned());
    }
    assert_eq!(seen, ids);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_unroutable_message_is_an_error_not_a_success() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let publisher =
        ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 10, RetryPolicy::default()).await.unwrap();
    let err = publisher
        .publish("", &format!("nowhere-{}", std::process::id()), &BasicProperties::default(), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { code: ReplyCode::NO_ROUTE, .. }), "{err:?}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn nacks_are_retried_until_the_broker_takes_the_message_or_attempts_run_out() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    // A queue of one message that refuses more: RabbitMQ nacks the overflow.
    let mut args = FieldTable::new();
    args.insert("x-max-length", 1i32);
    args.insert("x-overflow", "reject-publish");
    let queue = format!("confirm-nack-{}", std::process::id());
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &args).await.unwrap();
    let publisher = ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 10, fast_retry(3)).await.unwrap();
    publisher.publish("", &queue, &BasicProperties::default(), "fills it").await.unwrap();

    let err = publisher.publish("", &queue, &BasicProperties::default(), "no room").await.unwrap_err();
    assert!(matches!(err, PublishError::Nacked { attempts: 3, .. }), "{err:?}");

    // Room appears while the publisher is retrying: the retry succeeds.
    let patient = ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 10, fast_retry(50)).await.unwrap();
    let retrying = tokio::spawn({
        let queue = queue.clone();
        async move { patient.publish("", &queue, &BasicProperties::default(), "later").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // long after its first nack
    ch.basic_get(&queue, true).await.unwrap().unwrap();
    let confirmed = tokio::time::timeout(Duration::from_secs(10), retrying).await.unwrap().unwrap().unwrap();
    assert!(confirmed.attempts > 1, "it was nacked first, then retried: {confirmed:?}");
    let got = ch.basic_get(&queue, true).await.unwrap().unwrap();
    assert_eq!(&got.body()[..], b"later");
    assert_eq!(got.properties().message_id, Some(confirmed.message_id.as_str()));
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}
