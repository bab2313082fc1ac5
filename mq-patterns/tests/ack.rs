//! The acking consumer against the real RabbitMQ: acks after success, retries counted by the
//! quorum queue's `x-delivery-count` and by `x-death` in a dead-letter loop, poison messages
//! dead-lettered or parked after N attempts, a delivery limit without a dead-letter exchange
//! refused, eight handlers at once with every message acked exactly once, and a malformed
//! `x-death` reported and parked rather than lost.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp_client::api::{BasicPublishOptions, Channel, Delivery, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::{BasicProperties, FieldTable, Table};
use mq_patterns::ack::{
    AckError, AckingConsumer, Action, AttemptError, DELIVERY_COUNT_HEADER, DeclareError, FailurePolicy, HandlerError,
    QueueSpecError, QuorumQueue, Report, RetryLoop,
};
use mq_patterns::dead_letter::{DeadLettering, DeathReason, XDeathError, declare_dead_letter_target, x_death};
use tokio::sync::mpsc;

mod support;
use support::{connect, unique};

fn exclusive() -> QueueDeclareOptions {
    QueueDeclareOptions { exclusive: true, ..Default::default() }
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    ch.basic_publish("", queue, BasicPublishOptions::default(), &BasicProperties::default(), body.to_owned())
        .await
        .unwrap();
}

async fn ready(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count
}

/// Waits (10 s at most) until `queue` holds `n` ready messages.
async fn wait_for_ready(ch: &Channel, queue: &str, n: u32) {
    for _ in 0..500 {
        if ready(ch, queue).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{queue} never held {n} messages");
}

/// The next message in `queue` (taken with auto-ack), waiting up to 10 s.
async fn next_in(ch: &Channel, queue: &str) -> Delivery {
    for _ in 0..500 {
        if let Some(d) = ch.basic_get(queue, true).await.unwrap() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing arrived in {queue}");
}

/// Runs `consumer` with `handler` until `n` deliveries were settled, cancels it, waits for
/// `run` to return, and gives back the reports.
async fn settle_n<F, Fut>(consumer: AckingConsumer, ch: &Channel, n: usize, handler: F) -> Vec<Report>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = consumer.on_settled(move |report| drop(tx.send(report)));
    let tag = consumer.consumer_tag().to_owned();
    let running = tokio::spawn(consumer.run(handler));
    let mut reports = Vec::new();
    while reports.len() < n {
        let report = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        reports.push(report.expect("a delivery was settled in time").expect("the consumer still runs"));
    }
    ch.basic_cancel(&tag).await.unwrap();
    running.await.unwrap().unwrap();
    while let Ok(extra) = rx.try_recv() {
        reports.push(extra);
    }
    reports
}

fn actions(reports: &[Report]) -> Vec<(Option<u32>, Action)> {
    reports.iter().map(|r| (r.attempt, r.action)).collect()
}

fn ok() -> Result<(), HandlerError> {
    Ok(())
}

/// A quorum work queue dead-lettering into a fresh DLX and queue; deleted by `cleanup`.
struct Quorum {
    work: String,
    dlx: String,
    dead: String,
}

impl Quorum {
    async fn declare(ch: &Channel, delivery_limit: u32) -> Self {
        let (work, dlx, dead) = (unique("quorum"), unique("dlx"), unique("dead"));
        declare_dead_letter_target(ch, &dlx, &dead).await.unwrap();
        QuorumQueue::new()
            .delivery_limit(delivery_limit)
            .dead_lettering(DeadLettering::to(dlx.as_str()))
            .declare(ch, &work)
            .await
            .unwrap();
        Quorum { work, dlx, dead }
    }

    async fn cleanup(&self, ch: &Channel) {
        for q in [&self.work, &self.dead] {
            ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
        }
        ch.exchange_delete(&self.dlx, Default::default()).await.unwrap();
    }
}

/// A classic work queue in a retry loop; the loop's durable parking pair is deleted by `cleanup`.
async fn retry_loop(ch: &Channel, delay: Duration) -> RetryLoop {
    let retry = RetryLoop::new(unique("work"), delay);
    retry.declare(ch, exclusive()).await.unwrap();
    retry
}

async fn cleanup_loop(ch: &Channel, retry: &RetryLoop) {
    ch.queue_delete(retry.park_queue(), QueueDeleteOptions::default()).await.unwrap();
    ch.exchange_delete(retry.park_exchange(), Default::default()).await.unwrap();
}

#[tokio::test]
async fn a_handled_message_is_acked_and_nothing_stays_unacked() {
    let (conn, ch) = connect().await;
    let queue = unique("plain");
    ch.queue_declare(&queue, exclusive(), &FieldTable::new()).await.unwrap();
    for body in ["a", "b", "c"] {
        publish(&ch, &queue, body).await;
    }
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &queue, 1, FailurePolicy::requeue(3)).await.unwrap();
    let reports = settle_n(consumer, &consuming, 3, |_| async { ok() }).await;
    assert_eq!(actions(&reports), [(Some(1), Action::Acked); 3]);
    assert!(reports.iter().all(|r| r.error.is_none()));
    // Unacked deliveries return to the queue when their channel closes: none do.
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, &queue).await, 0);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_failure_on_a_quorum_queue_is_requeued_counted_and_then_succeeds() {
    let (conn, ch) = connect().await;
    let q = Quorum::declare(&ch, 10).await;
    publish(&ch, &q.work, "flaky").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &q.work, 1, FailurePolicy::requeue(5)).await.unwrap();
    let counts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&counts);
    let reports = settle_n(consumer, &consuming, 3, move |d: Delivery| {
        let count = delivery_count(&d);
        seen.lock().unwrap().push(count);
        async move { if count.unwrap_or(0) < 2 { Err("not yet".into()) } else { ok() } }
    })
    .await;
    assert_eq!(actions(&reports), [(Some(1), Action::Requeued), (Some(2), Action::Requeued), (Some(3), Action::Acked)]);
    assert!(matches!(reports[0].error, Some(AckError::Handler(_))));
    // The attempt numbers came from the broker's own count.
    assert_eq!(*counts.lock().unwrap(), [None, Some(1), Some(2)]);
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, &q.work).await, 0);
    q.cleanup(&ch).await;
    conn.close().await.unwrap();
}

fn delivery_count(d: &Delivery) -> Option<i64> {
    match d.properties().headers {
        Some(Table::Raw(raw)) => raw.get(DELIVERY_COUNT_HEADER).and_then(|v| v.as_i64()),
        _ => None,
    }
}

#[tokio::test]
async fn a_poison_message_on_a_quorum_queue_is_dead_lettered_after_max_attempts() {
    let (conn, ch) = connect().await;
    let q = Quorum::declare(&ch, 10).await;
    publish(&ch, &q.work, "poison").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &q.work, 1, FailurePolicy::requeue(3)).await.unwrap();
    let reports = settle_n(consumer, &consuming, 3, |_| async { Err::<(), HandlerError>("always".into()) }).await;
    assert_eq!(
        actions(&reports),
        [(Some(1), Action::Requeued), (Some(2), Action::Requeued), (Some(3), Action::DeadLettered)]
    );
    let dead = next_in(&ch, &q.dead).await;
    assert_eq!(&dead.body()[..], b"poison");
    let deaths = x_death(&dead.properties()).unwrap();
    assert_eq!(deaths.len(), 1);
    assert_eq!((deaths[0].reason.clone(), deaths[0].queue.as_str()), (DeathReason::Rejected, q.work.as_str()));
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, &q.work).await, 0);
    q.cleanup(&ch).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_delivery_limit_below_the_policy_dead_letters_through_the_broker_not_silently() {
    let (conn, ch) = connect().await;
    let q = Quorum::declare(&ch, 1).await;
    publish(&ch, &q.work, "over the limit").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &q.work, 1, FailurePolicy::requeue(5)).await.unwrap();
    let reports = settle_n(consumer, &consuming, 2, |_| async { Err::<(), HandlerError>("always".into()) }).await;
    assert_eq!(actions(&reports), [(Some(1), Action::Requeued), (Some(2), Action::Requeued)]);
    // The second return exceeded x-delivery-limit 1: the broker dead-lettered it, not dropped it.
    let dead = next_in(&ch, &q.dead).await;
    assert_eq!(&dead.body()[..], b"over the limit");
    assert_eq!(x_death(&dead.properties()).unwrap()[0].reason, DeathReason::DeliveryLimit);
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, &q.work).await, 0);
    q.cleanup(&ch).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_delivery_limit_without_a_dead_letter_exchange_is_refused_before_declaring() {
    let (conn, ch) = connect().await;
    let name = unique("unsafe");
    let refused = QuorumQueue::new().delivery_limit(3).declare(&ch, &name).await.unwrap_err();
    assert!(matches!(refused, DeclareError::Spec(QueueSpecError::DeliveryLimitWithoutDeadLetterExchange { limit: 3 })));
    // Nothing reached the broker: the queue does not exist (a passive declare is 404).
    let probe = conn.open_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let missing = probe.queue_declare(&name, passive, &FieldTable::new()).await.unwrap_err();
    assert_eq!(missing.reply_code(), Some(amqp_client::codec::ReplyCode::NOT_FOUND));
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_failure_in_a_retry_loop_returns_after_the_delay_and_then_succeeds() {
    let (conn, ch) = connect().await;
    let delay = Duration::from_millis(300);
    let retry = retry_loop(&ch, delay).await;
    publish(&ch, retry.queue(), "flaky").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), retry.queue(), 1, retry.policy(3)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let times = Arc::clone(&seen);
    let reports = settle_n(consumer, &consuming, 2, move |_| {
        let mut times = times.lock().unwrap();
        times.push(Instant::now());
        let first = times.len() == 1;
        async move { if first { Err("not yet".into()) } else { ok() } }
    })
    .await;
    assert_eq!(actions(&reports), [(Some(1), Action::Retried), (Some(2), Action::Acked)]);
    let times = seen.lock().unwrap().clone();
    assert!(times[1] - times[0] >= delay, "the retry waited in the delay queue");
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, retry.queue()).await, 0);
    assert_eq!(ready(&ch, retry.retry_queue()).await, 0);
    cleanup_loop(&ch, &retry).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_poison_message_in_a_retry_loop_is_parked_with_its_x_death_after_max_attempts() {
    let (conn, ch) = connect().await;
    let retry = retry_loop(&ch, Duration::from_millis(50)).await;
    publish(&ch, retry.queue(), "poison").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), retry.queue(), 1, retry.policy(3)).await.unwrap();
    let reports = settle_n(consumer, &consuming, 3, |_| async { Err::<(), HandlerError>("always".into()) }).await;
    assert_eq!(actions(&reports), [(Some(1), Action::Retried), (Some(2), Action::Retried), (Some(3), Action::Parked)]);
    let parked = next_in(&ch, retry.park_queue()).await;
    assert_eq!(&parked.body()[..], b"poison");
    let deaths = x_death(&parked.properties()).unwrap();
    let count = |queue: &str, reason: DeathReason| {
        deaths.iter().find(|d| d.queue == queue && d.reason == reason).map(|d| d.count)
    };
    assert_eq!(count(retry.queue(), DeathReason::Rejected), Some(2));
    assert_eq!(count(retry.retry_queue(), DeathReason::Expired), Some(2));
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, retry.queue()).await, 0);
    assert_eq!(ready(&ch, retry.retry_queue()).await, 0);
    cleanup_loop(&ch, &retry).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_counts_as_a_failure_and_its_message_is_retried() {
    let (conn, ch) = connect().await;
    let retry = retry_loop(&ch, Duration::from_millis(50)).await;
    publish(&ch, retry.queue(), "panics once").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), retry.queue(), 1, retry.policy(3)).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let reports = settle_n(consumer, &consuming, 2, move |_| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            assert!(!first, "a handler bug on the first attempt");
            ok()
        }
    })
    .await;
    assert_eq!(actions(&reports), [(Some(1), Action::Retried), (Some(2), Action::Acked)]);
    assert!(matches!(reports[0].error, Some(AckError::Panicked)));
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, retry.queue()).await, 0);
    cleanup_loop(&ch, &retry).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_malformed_x_death_is_a_typed_error_and_the_message_is_parked_unhandled() {
    let (conn, ch) = connect().await;
    let retry = retry_loop(&ch, Duration::from_millis(50)).await;
    let mut headers = FieldTable::new();
    headers.insert("x-death", "not an array");
    let props = BasicProperties { headers: Some(Table::Owned(&headers)), ..Default::default() };
    ch.basic_publish("", retry.queue(), BasicPublishOptions::default(), &props, "forged").await.unwrap();
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), retry.queue(), 1, retry.policy(3)).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let reports = settle_n(consumer, &consuming, 1, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { ok() }
    })
    .await;
    assert_eq!(actions(&reports), [(None, Action::Parked)]);
    assert!(matches!(reports[0].error, Some(AckError::Attempt(AttemptError::XDeath(XDeathError::NotAnArray)))));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the policy could not be applied, so the handler did not run");
    let parked = next_in(&ch, retry.park_queue()).await;
    assert_eq!(&parked.body()[..], b"forged", "not lost: parked as it came");
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, retry.queue()).await, 0);
    cleanup_loop(&ch, &retry).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn requeue_on_a_classic_queue_dead_letters_the_uncounted_redelivery_instead_of_looping() {
    let (conn, ch) = connect().await;
    let (dlx, dead, work) = (unique("dlx"), unique("dead"), unique("classic"));
    declare_dead_letter_target(&ch, &dlx, &dead).await.unwrap();
    ch.queue_declare(&work, exclusive(), &DeadLettering::to(dlx.as_str()).arguments()).await.unwrap();
    publish(&ch, &work, "uncounted").await;
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &work, 1, FailurePolicy::requeue(5)).await.unwrap();
    let reports = settle_n(consumer, &consuming, 2, |_| async { Err::<(), HandlerError>("always".into()) }).await;
    assert_eq!(actions(&reports), [(Some(1), Action::Requeued), (None, Action::DeadLettered)]);
    assert!(matches!(reports[1].error, Some(AckError::Attempt(AttemptError::Uncounted))));
    assert_eq!(&next_in(&ch, &dead).await.body()[..], b"uncounted");
    for q in [&work, &dead] {
        ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
    }
    ch.exchange_delete(&dlx, Default::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_handlers_run_at_once_and_every_message_is_acked_exactly_once() {
    const MESSAGES: usize = 200;
    const PREFETCH: u16 = 8;
    let (conn, ch) = connect().await;
    let queue = unique("concurrent");
    ch.queue_declare(&queue, exclusive(), &FieldTable::new()).await.unwrap();
    for i in 0..MESSAGES {
        publish(&ch, &queue, &i.to_string()).await;
    }
    wait_for_ready(&ch, &queue, MESSAGES as u32).await;

    let in_flight = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let handled: Arc<Mutex<HashMap<Vec<u8>, u32>>> = Arc::default();
    let (in_flight2, most2, handled2) = (Arc::clone(&in_flight), Arc::clone(&most), Arc::clone(&handled));
    let consuming = conn.open_channel().await.unwrap();
    let consumer = AckingConsumer::start(consuming.clone(), &queue, PREFETCH, FailurePolicy::requeue(3)).await.unwrap();
    let reports = settle_n(consumer, &consuming, MESSAGES, move |d: Delivery| {
        let (in_flight, most, handled) = (Arc::clone(&in_flight2), Arc::clone(&most2), Arc::clone(&handled2));
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // The first handlers wait until all eight run at once: this only ends if the
            // consumer really runs `prefetch` handlers concurrently (or at the 10 s limit).
            let deadline = Instant::now() + Duration::from_secs(10);
            while most.load(Ordering::SeqCst) < u32::from(PREFETCH) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            *handled.lock().unwrap().entry(d.body().to_vec()).or_default() += 1;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            ok()
        }
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), u32::from(PREFETCH), "eight at once, never more");
    assert_eq!(reports.len(), MESSAGES);
    assert!(reports.iter().all(|r| r.action == Action::Acked && r.error.is_none()));
    let mut tags: Vec<_> = reports.iter().map(|r| r.tag.tag).collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), MESSAGES, "each delivery settled once");
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled.len(), MESSAGES);
    assert!(handled.values().all(|&n| n == 1), "each message handled once");
    // Closing the channel would requeue anything left unacked: nothing is.
    consuming.close().await.unwrap();
    assert_eq!(ready(&ch, &queue).await, 0);
    conn.close().await.unwrap();
}
