//! Ordering against the real RabbitMQ: per-key order over consistent-hash partitions with
//! one consumer each and concurrent handlers; single-active-consumer failover; the serial
//! executor's parallelism across keys; and its two failure policies.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Channel, Connection, Delivery, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::{BasicProperties, FieldTable, Table};
use mq_patterns::dead_letter::{DeadLettering, declare_dead_letter_target};
use mq_patterns::ordering::key;
use mq_patterns::ordering::partitioned::Partitions;
use mq_patterns::ordering::serial::{OnFailure, SerialError, SerialExecutor};
use mq_patterns::ordering::single_active::{consume_single_active, declare_single_active_queue};

mod support;
use support::{unique, uri};

async fn connect() -> Connection {
    Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)")
}

/// A small deterministic generator, so that a failing interleaving can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A pseudo-random handler delay of 0 to 2 ms, fixed by the message.
fn delay_for(key: &str, seq: u32) -> Duration {
    let mut h = XorShift(u64::from(seq) * 0x9E37_79B9 + key.len() as u64 * 31 + 1);
    Duration::from_micros(h.next() % 2_000)
}

fn body_seq(body: &[u8]) -> u32 {
    std::str::from_utf8(body).unwrap().parse().unwrap()
}

/// Waits (60 s at most) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Ready messages in `queue`, after its consumers' channels closed (so any delivery left
/// unacked would have been requeued and counted here).
async fn ready_count(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count
}

/// Records what handlers do: the order each key's sequence numbers were started in, which
/// keys are in a handler right now, and how many handlers ran at once.
#[derive(Default)]
struct Journal {
    seen: Mutex<HashMap<String, Vec<u32>>>,
    partitions: Mutex<HashMap<String, HashSet<usize>>>,
    in_flight: Mutex<HashSet<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    handled: AtomicUsize,
    overlaps: AtomicUsize,
}

impl Journal {
    fn enter(&self, key: &str, seq: u32) {
        // Counted, not asserted here: a panic inside a handler would stop the executor.
        if !self.in_flight.lock().unwrap().insert(key.to_owned()) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.seen.lock().unwrap().entry(key.to_owned()).or_default().push(seq);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self, key: &str) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.in_flight.lock().unwrap().remove(key);
        self.handled.fetch_add(1, Ordering::SeqCst);
    }

    /// No key overlapped itself, and each key's sequence, in the order handled, is exactly
    /// 0, 1, ..., n-1.
    fn assert_complete_and_in_order(&self, expected: &HashMap<String, u32>) {
        assert_eq!(self.overlaps.load(Ordering::SeqCst), 0, "two handlers of one key overlapped");
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), expected.len(), "every key was handled");
        for (key, &count) in expected {
            let got = &seen[key];
            assert!(got.windows(2).all(|w| w[0] < w[1]), "key {key} out of order: {got:?}");
            assert_eq!(*got, (0..count).collect::<Vec<_>>(), "key {key} complete, each once");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_keeps_its_order_across_hash_partitions_with_concurrent_handlers() {
    const PARTITIONS: usize = 4;
    const KEYS: u64 = 50;
    const MESSAGES: u32 = 5_000;
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let partitions = Partitions::new(unique("ordering.hash"), PARTITIONS).durable(false);
    partitions.declare(&ch).await.unwrap();

    // Keys interleave at random; each key's messages carry 0, 1, 2, ... in publish order.
    ch.confirm_select().await.unwrap();
    let mut rng = XorShift(0x5EED_0F0D_E5E5);
    let mut next_seq: HashMap<String, u32> = HashMap::new();
    let mut confirms = Vec::new();
    for _ in 0..MESSAGES {
        let key = format!("key-{}", rng.next() % KEYS);
        let seq = next_seq.entry(key.clone()).or_default();
        let props = BasicProperties::default();
        confirms.push(partitions.publish(&ch, &key, &props, seq.to_string()).await.unwrap());
        *seq += 1;
    }
    for confirm in confirms {
        assert_eq!(confirm.wait().await.unwrap(), amqp_client::api::Confirmation::Ack);
    }

    // One consumer per partition, each on its own connection, each with concurrent handlers.
    let journal = Arc::new(Journal::default());
    let mut runs = Vec::new();
    for partition in 0..PARTITIONS {
        let consumer_conn = connect().await;
        let consumer_ch = consumer_conn.open_channel().await.unwrap();
        let consumer = partitions.consume(&consumer_ch, partition, 32).await.unwrap();
        let tag = consumer.tag().to_owned();
        let journal = Arc::clone(&journal);
        let executor = SerialExecutor::new(key::routing_key).concurrency(8);
        let run = tokio::spawn(async move {
            executor
                .run(consumer, move |message| {
                    let journal = Arc::clone(&journal);
                    async move {
                        let (key, seq) = (message.key().clone(), body_seq(message.body()));
                        journal.enter(&key, seq);
                        journal.partitions.lock().unwrap().entry(key.clone()).or_default().insert(partition);
                        tokio::time::sleep(delay_for(&key, seq)).await;
                        journal.leave(&key);
                        Ok::<(), std::convert::Infallible>(())
                    }
                })
                .await
        });
        runs.push((consumer_conn, consumer_ch, tag, run));
    }

    wait_until("every message is handled", || journal.handled.load(Ordering::SeqCst) >= MESSAGES as usize).await;
    let mut acked = 0;
    for (consumer_conn, consumer_ch, tag, run) in runs {
        consumer_ch.basic_cancel(&tag).await.unwrap();
        acked += run.await.unwrap().unwrap().acked;
        consumer_conn.close().await.unwrap();
    }

    assert_eq!(acked, u64::from(MESSAGES), "each delivery acked exactly once");
    assert_eq!(journal.handled.load(Ordering::SeqCst), MESSAGES as usize, "nothing handled twice");
    journal.assert_complete_and_in_order(&next_seq);
    let homes = journal.partitions.lock().unwrap().clone();
    assert!(homes.values().all(|p| p.len() == 1), "a key lives in one partition: {homes:?}");
    let used: HashSet<usize> = homes.values().flatten().copied().collect();
    assert_eq!(used.len(), PARTITIONS, "the ring spreads 50 keys over all partitions");
    assert!(journal.max_running.load(Ordering::SeqCst) > 1, "handlers ran concurrently");
    for partition in 0..PARTITIONS {
        assert_eq!(ready_count(&ch, &partitions.queue(partition)).await, 0, "partition {partition} is empty");
    }
    partitions.delete(&ch).await.unwrap();
    conn.close().await.unwrap();
}

/// The next delivery, failing the test after 10 s.
async fn next(consumer: &mut amqp_client::api::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next_delivery()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_single_active_standby_receives_nothing_then_takes_over_in_order() {
    let admin = connect().await;
    let ch = admin.open_channel().await.unwrap();
    let queue = unique("ordering.sac");
    declare_single_active_queue(&ch, &queue, QueueDeclareOptions::default(), FieldTable::new()).await.unwrap();
    let publish = |from: u32, to: u32| {
        let (ch, queue) = (ch.clone(), queue.clone());
        async move {
            for n in from..to {
                let props = BasicProperties::default();
                ch.basic_publish("", &queue, BasicPublishOptions::default(), &props, n.to_string()).await.unwrap();
            }
        }
    };

    let (first_conn, second_conn) = (connect().await, connect().await);
    let first_ch = first_conn.open_channel().await.unwrap();
    let mut first = consume_single_active(&first_ch, &queue, 100).await.unwrap();
    let second_ch = second_conn.open_channel().await.unwrap();
    let mut second = consume_single_active(&second_ch, &queue, 100).await.unwrap();

    publish(0, 10).await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(next(&mut first).await);
    }
    assert_eq!(got.iter().map(|d| body_seq(d.body())).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    // The first five are done; 5..10 are in the active consumer's hands when its channel closes.
    for d in &got[..5] {
        d.ack().await.unwrap();
    }
    assert!(second.try_next_delivery().is_none(), "the standby received nothing while the first was active");
    first_ch.close().await.unwrap();

    let mut taken_over = Vec::new();
    for round in 0..10 {
        if round == 5 {
            // Published only now, so that none of these can be caught in the closing channel.
            publish(10, 15).await;
        }
        let d = next(&mut second).await;
        taken_over.push((body_seq(d.body()), d.redelivered()));
        d.ack().await.unwrap();
    }
    let expected: Vec<_> = (5..15).map(|n| (n, n < 10)).collect();
    assert_eq!(taken_over, expected, "the standby continues at 5, the unacked ones redelivered first");

    second_ch.close().await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 0);
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    for conn in [first_conn, second_conn, admin] {
        conn.close().await.unwrap();
    }
}

/// Publishes `per_key` messages for each of `keys` keys into `queue`, interleaved, with the
/// key in the `account` header and the key's sequence number as the body.
async fn publish_keyed(ch: &Channel, queue: &str, keys: u32, per_key: u32) -> HashMap<String, u32> {
    for seq in 0..per_key {
        for k in 0..keys {
            let mut headers = FieldTable::new();
            headers.insert("account", format!("acct-{k}"));
            let props = BasicProperties { headers: Some(Table::Owned(&headers)), ..Default::default() };
            ch.basic_publish("", queue, BasicPublishOptions::default(), &props, seq.to_string()).await.unwrap();
        }
    }
    (0..keys).map(|k| (format!("acct-{k}"), per_key)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_runs_keys_in_parallel_but_never_one_key_twice_at_once() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let queue = unique("ordering.serial");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let expected = publish_keyed(&ch, &queue, 10, 20).await;

    let consumer_ch = conn.open_channel().await.unwrap();
    let consumer = consume_single_active(&consumer_ch, &queue, 50).await.unwrap();
    let tag = consumer.tag().to_owned();
    let journal = Arc::new(Journal::default());
    let handlers = Arc::clone(&journal);
    let executor = SerialExecutor::new(key::header("account")).concurrency(8);
    let run = tokio::spawn(async move {
        executor
            .run(consumer, move |message| {
                let journal = Arc::clone(&handlers);
                async move {
                    let seq = body_seq(message.body());
                    journal.enter(message.key(), seq);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    journal.leave(message.key());
                    Ok::<(), std::convert::Infallible>(())
                }
            })
            .await
    });
    wait_until("all 200 are handled", || journal.handled.load(Ordering::SeqCst) >= 200).await;
    consumer_ch.basic_cancel(&tag).await.unwrap();
    assert_eq!(run.await.unwrap().unwrap().acked, 200);

    let max = journal.max_running.load(Ordering::SeqCst);
    assert!(max > 1, "different keys ran in parallel (at most {max} at once)");
    assert!(max <= 8, "never more than the concurrency bound ({max})");
    journal.assert_complete_and_in_order(&expected);
    consumer_ch.close().await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 0, "every delivery was acked");
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_its_key_and_requeues_the_rest_so_a_restart_resumes_in_order() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let queue = unique("ordering.stop");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let expected = publish_keyed(&ch, &queue, 3, 10).await;

    // acct-1 fails at 4 (the first time only); the other keys may run on meanwhile.
    let journal = Arc::new(Journal::default());
    let failed_once = Arc::new(AtomicUsize::new(0));
    let handler = {
        let journal = Arc::clone(&journal);
        move |message: mq_patterns::ordering::serial::KeyedMessage<String>| {
            let (journal, failed_once) = (Arc::clone(&journal), Arc::clone(&failed_once));
            async move {
                let seq = body_seq(message.body());
                if message.key() == "acct-1" && seq == 4 && failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(format!("cannot apply {seq}"));
                }
                journal.enter(message.key(), seq);
                tokio::time::sleep(Duration::from_millis(1)).await;
                journal.leave(message.key());
                Ok(())
            }
        }
    };
    let handler = Arc::new(handler);

    let consumer_ch = conn.open_channel().await.unwrap();
    let consumer = consume_single_active(&consumer_ch, &queue, 30).await.unwrap();
    let executor = SerialExecutor::new(key::header("account")).concurrency(4);
    let h = Arc::clone(&handler);
    let stopped = executor.run(consumer, move |m| h(m)).await;
    match stopped {
        Err(SerialError::Handler { key, error }) => {
            assert_eq!((key.as_str(), error.as_str()), ("acct-1", "cannot apply 4"))
        }
        other => panic!("expected the handler's failure, got {other:?}"),
    }
    assert_eq!(journal.seen.lock().unwrap()["acct-1"], [0, 1, 2, 3], "nothing of acct-1 ran past its failure");

    // Restarted, the executor starts acct-1 at 4 (requeued in place) and finishes every key.
    let consumer = consume_single_active(&consumer_ch, &queue, 30).await.unwrap();
    let tag = consumer.tag().to_owned();
    let h = Arc::clone(&handler);
    let run = tokio::spawn(async move { executor.run(consumer, move |m| h(m)).await });
    wait_until("all 30 are handled", || journal.handled.load(Ordering::SeqCst) >= 30).await;
    consumer_ch.basic_cancel(&tag).await.unwrap();
    run.await.unwrap().unwrap();
    journal.assert_complete_and_in_order(&expected);
    consumer_ch.close().await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 0);
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dead_lettering_a_failed_message_leaves_and_its_key_goes_on() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let (dlx, dead, queue) = (unique("ordering.dlx"), unique("ordering.dead"), unique("ordering.work"));
    declare_dead_letter_target(&ch, &dlx, &dead).await.unwrap();
    let args = DeadLettering::to(dlx.as_str()).arguments();
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &args).await.unwrap();
    publish_keyed(&ch, &queue, 2, 5).await;

    let journal = Arc::new(Journal::default());
    let handlers = Arc::clone(&journal);
    let consumer_ch = conn.open_channel().await.unwrap();
    let consumer = consume_single_active(&consumer_ch, &queue, 10).await.unwrap();
    let tag = consumer.tag().to_owned();
    let executor = SerialExecutor::new(key::header("account")).on_failure(OnFailure::DeadLetter);
    let run = tokio::spawn(async move {
        executor
            .run(consumer, move |message| {
                let journal = Arc::clone(&handlers);
                async move {
                    let seq = body_seq(message.body());
                    journal.handled.fetch_add(1, Ordering::SeqCst);
                    if message.key() == "acct-0" && seq == 2 {
                        return Err("poison");
                    }
                    journal.seen.lock().unwrap().entry(message.key().clone()).or_default().push(seq);
                    Ok(())
                }
            })
            .await
    });
    wait_until("all 10 are handled", || journal.handled.load(Ordering::SeqCst) >= 10).await;
    consumer_ch.basic_cancel(&tag).await.unwrap();
    let drained = run.await.unwrap().unwrap();
    assert_eq!((drained.acked, drained.dead_lettered), (9, 1));
    let seen = journal.seen.lock().unwrap().clone();
    assert_eq!(seen["acct-0"], [0, 1, 3, 4], "the key went on past the dead-lettered message");
    assert_eq!(seen["acct-1"], [0, 1, 2, 3, 4]);
    let got = loop {
        if let Some(d) = ch.basic_get(&dead, true).await.unwrap() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((key::header("account")(&got), body_seq(got.body())), ("acct-0".to_owned(), 2));
    consumer_ch.close().await.unwrap();
    assert_eq!(ready_count(&ch, &queue).await, 0);
    for q in [&queue, &dead] {
        ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
    }
    ch.exchange_delete(&dlx, Default::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn after_a_cancel_the_standby_goes_on_from_where_the_active_one_stopped() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let queue = unique("ordering.sac-cancel");
    declare_single_active_queue(&ch, &queue, QueueDeclareOptions::default(), FieldTable::new()).await.unwrap();
    let (active_ch, standby_ch) = (conn.open_channel().await.unwrap(), conn.open_channel().await.unwrap());
    let mut active = consume_single_active(&active_ch, &queue, 10).await.unwrap();
    let mut standby = consume_single_active(&standby_ch, &queue, 10).await.unwrap();
    let props = BasicProperties::default();
    let publish = |n: u32| ch.basic_publish("", &queue, BasicPublishOptions::default(), &props, n.to_string());

    for n in 0..5 {
        publish(n).await.unwrap();
    }
    for n in 0..5 {
        let d = next(&mut active).await;
        assert_eq!(body_seq(d.body()), n);
        d.ack().await.unwrap();
    }
    // Everything it received is acked, so a cancel hands over cleanly.
    active.cancel().await.unwrap();
    for n in 5..10 {
        publish(n).await.unwrap();
    }
    let mut rest = Vec::new();
    for _ in 5..10 {
        let d = next(&mut standby).await;
        rest.push((body_seq(d.body()), d.redelivered()));
        d.ack().await.unwrap();
    }
    assert_eq!(rest, (5..10).map(|n| (n, false)).collect::<Vec<_>>());
    assert!(active.next_delivery().await.is_none(), "the cancelled consumer's stream ended");
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn partitions_can_hash_a_header_instead_of_the_routing_key() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let partitions = Partitions::new(unique("ordering.hash-header"), 3)
        .hash_on(mq_patterns::ordering::partitioned::HashOn::Header("account".into()))
        .durable(false);
    partitions.declare(&ch).await.unwrap();
    ch.confirm_select().await.unwrap();
    // Odd entries go out with one routing key for all and only the header to tell them apart:
    // if the exchange hashed the routing key, they would all land in one partition, away
    // from their key's even entries.
    for seq in 0..4u32 {
        for k in 0..20 {
            let key = format!("acct-{k}");
            let confirm = if seq % 2 == 0 {
                partitions.publish(&ch, &key, &BasicProperties::default(), seq.to_string()).await
            } else {
                let mut headers = FieldTable::new();
                headers.insert("account", key.as_str());
                let props = BasicProperties { headers: Some(Table::Owned(&headers)), ..Default::default() };
                let options = BasicPublishOptions::default();
                ch.basic_publish(partitions.exchange(), "same-for-all", options, &props, seq.to_string()).await
            };
            assert_eq!(confirm.unwrap().wait().await.unwrap(), amqp_client::api::Confirmation::Ack);
        }
    }
    let by_header = key::header("account");
    let mut homes: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for partition in 0..partitions.count() {
        while let Some(d) = ch.basic_get(&partitions.queue(partition), true).await.unwrap() {
            homes.entry(by_header(&d)).or_default().insert(partition);
            seen.entry(by_header(&d)).or_default().push(body_seq(d.body()));
        }
    }
    assert_eq!(seen.len(), 20, "every key arrived, with its header");
    assert!(seen.values().all(|s| *s == [0, 1, 2, 3]), "each key complete and in order: {seen:?}");
    assert!(homes.values().all(|p| p.len() == 1), "a key lives in one partition: {homes:?}");
    assert!(homes.values().flatten().collect::<HashSet<_>>().len() > 1, "the header spreads keys");
    partitions.delete(&ch).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_stops_the_executor_and_loses_nothing() {
    let conn = connect().await;
    let ch = conn.open_channel().await.unwrap();
    let queue = unique("ordering.panic");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    publish_keyed(&ch, &queue, 2, 5).await;
    let consumer_ch = conn.open_channel().await.unwrap();
    let consumer = consume_single_active(&consumer_ch, &queue, 10).await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let stopped = SerialExecutor::new(key::header("account"))
        .run(consumer, move |message| {
            let counter = Arc::clone(&counter);
            async move {
                assert!(body_seq(message.body()) != 3, "a bug in the handler");
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .await;
    assert!(matches!(stopped, Err(SerialError::Panicked { .. })), "got {stopped:?}");
    // What was handled is acked; everything else, the panicked message included, is back.
    consumer_ch.close().await.unwrap();
    let handled = handled.load(Ordering::SeqCst) as u32;
    // At least 0, 1, 2 of the key that panicked first; at most 0, 1, 2 of both.
    assert!((3..=6).contains(&handled), "{handled} handled before the stop");
    assert_eq!(ready_count(&ch, &queue).await, 10 - handled);
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}
