//! The client against the real RabbitMQ, continued: concurrency, many channels, the remaining
//! methods (qos, recover, purge, unbind, tx, flow, cancel, nack, reject), and a heartbeat
//! timeout through a proxy that stalls.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::*;
use amqp_client::core::error::ConnectionError;
use amqp_codec::{BasicProperties, FieldTable};
use futures_util::StreamExt;
use tests::{exclusive, unique_name, uri, wait_for_count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_publish_concurrently_on_one_connection() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let tasks: Vec<_> = (0..1000u32)
        .map(|i| {
            let ch = ch.clone();
            let queue = q.name.clone();
            tokio::spawn(async move {
                let confirm = ch
                    .basic_publish(
                        "",
                        &queue,
                        BasicPublishOptions::default(),
                        &BasicProperties::default(),
                        i.to_string(),
                    )
                    .await
                    .unwrap();
                confirm.wait().await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Confirmation::Ack);
    }
    wait_for_count(&ch, &q.name, 1000).await;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(d) = ch.basic_get(&q.name, true).await.unwrap() {
        seen.insert(String::from_utf8(d.body().to_vec()).unwrap().parse::<u32>().unwrap());
    }
    assert_eq!(seen, (0..1000).collect(), "every message exactly once");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn five_hundred_channels_open_work_and_close() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let mut channels = Vec::new();
    for _ in 0..500 {
        channels.push(conn.open_channel().await.unwrap());
    }
    let mut ids: Vec<u16> = channels.iter().map(|c| c.id().0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    let no_args = FieldTable::new();
    let declares =
        futures_util::future::join_all(channels.iter().map(|c| c.queue_declare("", exclusive(), &no_args))).await;
    assert!(declares.iter().all(Result::is_ok));
    for c in &channels {
        c.close().await.unwrap();
    }
    // Numbers are given out in turn: a closed one is not reused at once (late frames of its
    // old channel may still be on the way).
    assert_eq!(conn.open_channel().await.unwrap().id().0, 501);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn nack_reject_recover_and_purge_do_what_the_broker_says() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    for body in ["a", "b", "c"] {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), body).await.unwrap();
    }
    wait_for_count(&ch, &q.name, 3).await;
    let a = ch.basic_get(&q.name, false).await.unwrap().unwrap();
    a.nack(true).await.unwrap(); // back to the queue
    let a_again = ch.basic_get(&q.name, false).await.unwrap().unwrap();
    assert_eq!(&a_again.body()[..], b"a");
    assert!(a_again.redelivered());
    a_again.reject(false).await.unwrap(); // gone (no dead-letter exchange)
    let b = ch.basic_get(&q.name, false).await.unwrap().unwrap();
    assert_eq!(&b.body()[..], b"b");
    ch.basic_recover(true).await.unwrap(); // b is requeued
    wait_for_count(&ch, &q.name, 2).await;
    assert_eq!(ch.queue_purge(&q.name, false).await.unwrap(), 2);
    assert!(ch.basic_get(&q.name, false).await.unwrap().is_none());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.tx_select().await.unwrap();
    ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), "kept").await.unwrap();
    ch.tx_commit().await.unwrap();
    ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), "dropped")
        .await
        .unwrap();
    ch.tx_rollback().await.unwrap();
    let info = ch
        .queue_declare(&q.name, QueueDeclareOptions { passive: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    assert_eq!(info.message_count, 1);
    let d = ch.basic_get(&q.name, true).await.unwrap().unwrap();
    assert_eq!(&d.body()[..], b"kept");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries_per_consumer_and_globally() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    for i in 0..20u32 {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    wait_for_count(&ch, &q.name, 20).await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    ch.basic_qos(5, BasicQosOptions { global: true }).await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let mut held = Vec::new();
    // Two quiet seconds after the third: the broker holds the rest back.
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
        held.push(d);
    }
    assert_eq!(held.len(), 3, "the per-consumer limit of 3 binds before the channel's 5");
    held.remove(0).ack().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap();
    assert_eq!(&next.body()[..], b"3");
    conn.close().await.unwrap();
}

/// An ack made while more deliveries wait may wait for theirs to share a write; it must still
/// reach the broker when the consumer reads nothing more (here: the broker then sends the
/// message the prefetch held back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_made_while_deliveries_wait_reaches_the_broker_though_nothing_more_is_read() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    // On a connection of its own: any request on the consumer's would carry the ack out.
    let watcher = Connection::connect(&uri()).await.unwrap();
    let observer = watcher.open_channel().await.unwrap();
    let q = ch
        .queue_declare(&unique_name("batched-ack"), QueueDeclareOptions::default(), &FieldTable::new())
        .await
        .unwrap();
    // Confirmed, so that they are out before the part under test.
    let publisher = conn.open_channel().await.unwrap();
    publisher.confirm_select().await.unwrap();
    for i in 0..3u32 {
        let props = BasicProperties::default();
        let confirm = publisher.basic_publish("", &q.name, BasicPublishOptions::default(), &props, i.to_string());
        assert_eq!(confirm.await.unwrap().wait().await.unwrap(), Confirmation::Ack);
    }
    wait_for_count(&observer, &q.name, 3).await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    // Both deliveries the prefetch allows arrive; the third stays ready in the queue.
    wait_for_count(&observer, &q.name, 1).await;
    let first = consumer.next_delivery().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.ack().await.unwrap();
    // The ack frees a prefetch slot, so the broker sends the third: the queue runs empty.
    wait_for_count(&observer, &q.name, 0).await;
    let rest: Vec<_> = std::iter::from_fn(|| consumer.try_next_delivery()).map(|d| d.body().clone()).collect();
    assert_eq!(rest, [&b"1"[..], b"2"], "the one that waited, then the one the ack let through");
    observer.queue_delete(&q.name, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
    watcher.close().await.unwrap();
}

/// Publishes in a burst gather to share writes; the last of a burst must still reach the
/// broker when the publisher then waits for nothing (no confirm, no reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_of_a_publish_burst_reaches_the_broker_though_the_publisher_waits_for_nothing() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    // On a connection of its own: any request on the publisher's would carry the tail out.
    let watcher = Connection::connect(&uri()).await.unwrap();
    let observer = watcher.open_channel().await.unwrap();
    let q =
        ch.queue_declare(&unique_name("burst-tail"), QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    for i in 0..50u32 {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    wait_for_count(&observer, &q.name, 50).await;
    observer.queue_delete(&q.name, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test]
async fn unbind_stops_routing_and_cancel_ends_the_stream() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let ex = unique_name("unbind-x");
    // Not auto-delete: that would go with its last binding, and the publish below would 404.
    ch.exchange_declare(&ex, "direct", ExchangeDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.queue_bind(&q.name, &ex, "k", false, &FieldTable::new()).await.unwrap();
    ch.queue_unbind(&q.name, &ex, "k", &FieldTable::new()).await.unwrap();
    ch.confirm_select().await.unwrap();
    let c = ch
        .basic_publish(
            &ex,
            "k",
            BasicPublishOptions { mandatory: true, ..Default::default() },
            &BasicProperties::default(),
            "x",
        )
        .await
        .unwrap();
    assert!(matches!(c.wait().await.unwrap(), Confirmation::Returned(_)), "unbound: unroutable");
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    ch.basic_cancel(consumer.tag()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.unwrap().is_none());
    assert!(ch.channel_flow(true).await.unwrap());
    ch.exchange_delete(&ex, ExchangeDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_ack_on_another_channel_is_a_typed_error_not_a_wrong_ack() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let other = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), "x").await.unwrap();
    wait_for_count(&ch, &q.name, 1).await;
    let d = ch.basic_get(&q.name, false).await.unwrap().unwrap();
    let err = other.basic_ack(d.tag(), false).await.unwrap_err();
    assert!(matches!(err, Error::StaleDelivery { .. }), "{err:?}");
    let second = Connection::connect(&uri()).await.unwrap();
    let foreign = second.open_channel().await.unwrap();
    assert_eq!(foreign.id(), ch.id(), "same channel number, other connection");
    assert!(matches!(foreign.basic_ack(d.tag(), false).await.unwrap_err(), Error::StaleDelivery { .. }));
    d.ack().await.unwrap();
    second.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_stalled_network_path_is_found_by_heartbeats() {
    let proxy = tests::proxy::Proxy::start(tests::broker_addr()).await;
    let conn = Connection::connect(&format!("amqp://guest:guest@{}/%2f?heartbeat=1", proxy.addr())).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    proxy.stall(true);
    let error = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.expect("noticed in bounded time");
    assert_eq!(error, ConnectionError::HeartbeatTimeout);
    let err = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap_err();
    assert!(matches!(err, Error::Connection(ConnectionError::HeartbeatTimeout) | Error::Channel(_)), "{err:?}");
}

#[tokio::test]
async fn update_secret_is_accepted_by_the_broker() {
    let conn = Connection::connect(&uri()).await.unwrap();
    conn.update_secret("guest", "rotation test").await.unwrap();
    // Still usable afterwards.
    let ch = conn.open_channel().await.unwrap();
    ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_first_endpoint_that_answers_is_used() {
    // A port nobody listens on: bind one, note it, close it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (host, port) = tests::broker_addr().rsplit_once(':').map(|(h, p)| (h.to_owned(), p.parse().unwrap())).unwrap();
    let options =
        ConnectionOptions::from_uri(&format!("amqp://guest:guest@127.0.0.1:{dead}/%2f")).unwrap().endpoint(host, port);
    let conn = Connection::connect_with(options).await.unwrap();
    conn.open_channel().await.unwrap();
    conn.close().await.unwrap();

    let only_dead = ConnectionOptions::from_uri(&format!("amqp://guest:guest@127.0.0.1:{dead}/%2f")).unwrap();
    let err = Connection::connect_with(only_dead).await.unwrap_err();
    assert!(matches!(&err, Error::Connect { endpoint, .. } if endpoint.ends_with(&dead.to_string())), "{err:?}");
}

#[tokio::test]
async fn a_consumer_that_does_not_read_stops_the_connection_reading_instead_of_buffering() {
    let options = ConnectionOptions::from_uri(&uri()).unwrap().consumer_buffer(16);
    let conn = Connection::connect_with(options).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    // Not exclusive: another connection observes it. x-expires cleans up after a failed run.
    let mut args = FieldTable::new();
    args.insert("x-expires", 60_000i32);
    let q = ch.queue_declare(&unique_name("slow-consumer"), QueueDeclareOptions::default(), &args).await.unwrap();
    let n = 20_000u32;
    let body = bytes::Bytes::from(vec![7u8; 4096]);
    ch.confirm_select().await.unwrap();
    let mut last = None;
    for _ in 0..n {
        last = Some(
            ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), body.clone())
                .await
                .unwrap(),
        );
    }
    last.unwrap().wait().await.unwrap();
    // No prefetch limit: the broker pushes as fast as the client reads. The consumer reads nothing.
    let mut consumer = ch
        .basic_consume(&q.name, BasicConsumeOptions { no_ack: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Observed from another connection: this one reads nothing until the consumer does, so
    // even a reply to it would wait (RabbitMQ closes a socket it cannot write to for 15 s;
    // a prefetch limit is what keeps a real consumer clear of that).
    let other = Connection::connect(&uri()).await.unwrap();
    let probe = other.open_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let ready = probe.queue_declare(&q.name, passive, &FieldTable::new()).await.unwrap().message_count;
    // 80 MB were ready; what left the queue is at most the client's small buffer plus what
    // the socket buffers on both sides hold, far below all of it.
    assert!(ready > n / 2, "only {ready} of {n} messages still in the queue: the client buffered the rest");
    let mut received = 0;
    while received < n {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.body().len(), 4096);
        received += 1;
    }
    probe.queue_delete(&q.name, QueueDeleteOptions::default()).await.unwrap();
    other.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn acking_from_a_consumer_whose_queue_is_full_does_not_deadlock() {
    // The consumer's queue (16) is smaller than the prefetch (500): deliveries wait behind a
    // full queue while the consumer awaits its acks. Replies must still reach it.
    let options = ConnectionOptions::from_uri(&uri()).unwrap().consumer_buffer(16);
    let conn = Connection::connect_with(options).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    let n = 3_000u32;
    for i in 0..n {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
    }
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch.basic_consume(&q.name, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("no deadlock").unwrap();
        assert_eq!(&d.body()[..], i.to_string().as_bytes(), "in order, none lost");
        tokio::time::timeout(Duration::from_secs(10), d.ack())
            .await
            .expect("the ack is not held behind deliveries")
            .unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn get_reports_the_remaining_count_and_a_consumer_can_be_polled_without_waiting() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let q = ch.queue_declare("", exclusive(), &FieldTable::new()).await.unwrap();
    for body in ["a", "b", "c"] {
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &BasicProperties::default(), body).await.unwrap();
    }
    wait_for_count(&ch, &q.name, 3).await;
    let first = ch.basic_get(&q.name, true).await.unwrap().unwrap();
    assert_eq!(first.message_count(), Some(2));
    let mut consumer = ch
        .basic_consume(&q.name, BasicConsumeOptions { no_ack: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..500 {
        while let Some(d) = consumer.try_next_delivery() {
            assert_eq!(d.message_count(), None);
            got.push(d.body().clone());
        }
        if got.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, [&b"b"[..], b"c"]);
    assert!(!consumer.is_ended());
    consumer.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !consumer.is_ended() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    conn.close().await.unwrap();
}
