//! The recovering connection (mq-patterns' `recovery`) against the real RabbitMQ, with faults
//! injected on purpose: the broker closing the connection (320), cuts and resets through the
//! fault proxy, a stall until the heartbeat times out, refused reconnections, and a failover
//! across endpoints. The broker-wide faults (close_all_connections, a restart) run alone in
//! `recovery_broker.rs`.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use amqp_client::api::*;
use amqp_client::core::error::ConnectionError;
use amqp_codec::{BasicProperties, FieldTable, ReplyCode};
use mq_patterns::recovery::*;
use tests::proxy::{Direction, Proxy};
use tests::{close_connections_named, unique_name, uri};
use tokio::sync::broadcast;

fn options(name: &str) -> ConnectionOptions {
    ConnectionOptions::from_uri(&uri()).unwrap().connection_name(name)
}

fn via(proxy: &Proxy, name: &str) -> ConnectionOptions {
    let uri = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    ConnectionOptions::from_uri(&uri).unwrap().connection_name(name)
}

fn quick() -> RecoveryOptions {
    let backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500), max_attempts: None };
    RecoveryOptions::default().backoff(backoff).wait(Duration::from_secs(30))
}

/// The next event that `wanted` picks, within 30 s.
async fn event<T>(events: &mut broadcast::Receiver<RecoveryEvent>, wanted: impl Fn(RecoveryEvent) -> Option<T>) -> T {
    let found = async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = wanted(event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("recovery events ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), found).await.expect("the event came within 30 s")
}

fn recovered(event: RecoveryEvent) -> Option<Restored> {
    match event {
        RecoveryEvent::Recovered(restored) => Some(restored),
        _ => None,
    }
}

fn disconnected(event: RecoveryEvent) -> Option<ConnectionError> {
    match event {
        RecoveryEvent::Disconnected { cause } => Some(cause),
        _ => None,
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

async fn next(consumer: &mut RecoveringConsumer) -> RecoveredDelivery {
    tokio::time::timeout(Duration::from_secs(30), consumer.next_delivery()).await.unwrap().expect("a delivery")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_close_restores_qos_topology_and_consumers_under_new_names() {
    let name = unique_name("recover-forced");
    let conn = RecoveringConnection::connect(vec![options(&name)], quick()).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    let (front, back) = (unique_name("recover-front"), unique_name("recover-back"));
    let auto = ExchangeDeclareOptions { auto_delete: false, ..Default::default() };
    ch.exchange_declare(&front, "fanout", auto, &FieldTable::new()).await.unwrap();
    ch.exchange_declare(&back, "direct", auto, &FieldTable::new()).await.unwrap();
    ch.exchange_bind(&back, &front, "", &FieldTable::new()).await.unwrap();
    // Deleted by the user before the loss: not declared again.
    let gone = unique_name("recover-gone");
    ch.exchange_declare(&gone, "fanout", auto, &FieldTable::new()).await.unwrap();
    ch.exchange_bind(&gone, &front, "", &FieldTable::new()).await.unwrap();
    ch.exchange_delete(&gone, ExchangeDeleteOptions::default()).await.unwrap();
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await.unwrap();
    ch.queue_bind(&queue, &back, "k", &FieldTable::new()).await.unwrap();
    let mut consumer = ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();

    let publish = |body: &'static str| {
        let ch = ch.clone();
        let front = front.clone();
        async move {
            let props = BasicProperties::default();
            let confirm = ch.basic_publish(&front, "k", BasicPublishOptions::default(), &props, body).await;
            confirm.unwrap().wait().await.unwrap();
        }
    };
    publish("before").await;
    let first = next(&mut consumer).await;
    assert_eq!(text(first.delivery().body()), "before");
    first.ack().await.unwrap();

    assert_eq!(close_connections_named(&name), 1);
    let cause = event(&mut events, disconnected).await;
    assert!(
        matches!(cause, ConnectionError::ClosedByBroker { code: ReplyCode::CONNECTION_FORCED, .. }),
        "the cause is said: {cause:?}"
    );
    let restored = event(&mut events, recovered).await;
    assert_eq!((restored.channels, restored.exchanges, restored.queues), (1, 2, 1), "{restored:?}");
    assert_eq!((restored.bindings, restored.consumers), (2, 1), "{restored:?}");
    assert!(restored.failures.is_empty(), "{:?}", restored.failures);
    let new_name = conn.queue_name(&queue);
    assert_ne!(new_name, queue, "a server-named queue comes back under a new name");
    assert_eq!(restored.renamed, vec![(queue.clone(), new_name.clone())]);

    // The consumer's stream goes on, and the bindings followed the new name.
    publish("after").await;
    let second = next(&mut consumer).await;
    assert_eq!(text(second.delivery().body()), "after");
    second.ack().await.unwrap();

    // Prefetch came back: of 10 unacknowledged messages, 7 arrive.
    for _ in 0..10 {
        publish("held").await;
    }
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(next(&mut consumer).await);
    }
    let eighth = tokio::time::timeout(Duration::from_secs(2), consumer.next_delivery()).await;
    assert!(eighth.is_err(), "prefetch 7 holds back the eighth message");
    for delivery in &held {
        delivery.ack().await.unwrap();
    }
    assert_eq!(conn.stats().recoveries, 1);
    let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
    let probe = conn.open_channel().await.unwrap();
    let missing = probe.exchange_declare(&gone, "fanout", passive, &FieldTable::new()).await;
    assert!(matches!(missing, Err(RecoveryError::Client(ref e)) if e.reply_code() == Some(ReplyCode::NOT_FOUND)));
    ch.exchange_delete(&front, ExchangeDeleteOptions::default()).await.unwrap();
    ch.exchange_delete(&back, ExchangeDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

/// Publishes `count` numbered messages on a recovering confirm channel, and returns each
/// number's confirm.
async fn publish_numbered(ch: &RecoveringChannel, queue: &str, count: u32) -> Vec<(u32, Published)> {
    let mut confirms = Vec::new();
    for i in 0..count {
        let confirm = ch
            .basic_publish("", queue, BasicPublishOptions::default(), &BasicProperties::default(), i.to_string())
            .await
            .unwrap();
        confirms.push((i, confirm));
    }
    let mut published = Vec::new();
    for (i, confirm) in confirms {
        published.push((i, confirm.wait().await.unwrap()));
    }
    published
}

/// Drains `queue` with basic.get: each message's number and message-id, in queue order.
async fn drain(queue: &str) -> Vec<(u32, String)> {
    let (conn, ch) = tests::channel().await;
    let mut seen = Vec::new();
    while let Some(d) = ch.basic_get(queue, true).await.unwrap() {
        let id = d.properties().message_id.unwrap().to_owned();
        seen.push((text(d.body()).parse().unwrap(), id));
    }
    ch.queue_delete(queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_publishes_are_sent_again_in_order_with_their_first_message_id() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-resend");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick()).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let queue = unique_name("recover-resend-q");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();

    // Cut mid-stream (mid-frame, most likely) once ~100 KB of publishes have gone up.
    proxy.cut_after(Direction::Upstream, 100_000);
    let published = publish_numbered(&ch, &queue, 5000).await;
    event(&mut events, recovered).await;

    let resent = published.iter().filter(|(_, p)| p.resent()).count();
    assert!(resent > 0, "the cut left publishes unconfirmed, which were sent again");
    assert_eq!(conn.stats().republished as usize, resent);
    let ids: HashMap<u32, String> = published.iter().map(|(i, p)| (*i, p.message_id.clone())).collect();

    let seen = drain(&queue).await;
    let mut first_seen = BTreeMap::new();
    let mut order = Vec::new();
    for (i, id) in &seen {
        assert_eq!(&ids[i], id, "message {i} keeps the message-id it was first sent with");
        if first_seen.insert(*i, ()).is_none() {
            order.push(*i);
        }
    }
    assert_eq!(first_seen.len(), 5000, "every message arrived");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "re-sent in their original order");
    let duplicates = seen.len() - 5000;
    eprintln!("cut mid-stream: {resent} of 5000 re-sent, {duplicates} arrived twice");
    assert!(duplicates <= resent, "only re-sent messages may be duplicated ({duplicates} > {resent})");
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_path_is_noticed_by_the_heartbeat_and_recovered() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-stall");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name).heartbeat(1)], quick()).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    proxy.stall(true);
    let cause = event(&mut events, disconnected).await;
    assert_eq!(cause, ConnectionError::HeartbeatTimeout);
    proxy.stall(false);
    event(&mut events, recovered).await;
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await;
    assert!(queue.unwrap().starts_with("amq.gen-"));
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_of_the_lost_connection_cannot_be_acked_and_comes_again_redelivered() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-stale");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick()).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    let queue = unique_name("recover-stale-q");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    ch.basic_publish("", &queue, BasicPublishOptions::default(), &BasicProperties::default(), "once").await.unwrap();
    let mut consumer = ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let first = next(&mut consumer).await;
    assert!(!first.redelivered());

    proxy.reset();
    let restored = event(&mut events, recovered).await;
    let error = first.ack().await.unwrap_err();
    assert_eq!(error, RecoveryError::StaleDelivery { delivered_on: first.generation(), current: restored.generation });
    let again = next(&mut consumer).await;
    assert_eq!(text(again.delivery().body()), "once");
    assert!(again.redelivered(), "the broker flags the redelivery");
    again.ack().await.unwrap();
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_error_is_the_callers_and_the_channel_is_reopened_only_on_request() {
    let missing = unique_name("recover-missing");
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    for reopen in [false, true] {
        let options = quick().reopen_on_channel_error(reopen);
        let conn = RecoveringConnection::connect(vec![options_named("recover-chan")], options).await.unwrap();
        let ch = conn.open_channel().await.unwrap();
        let error = ch.queue_declare(&missing, passive, &FieldTable::new()).await.unwrap_err();
        match &error {
            RecoveryError::Client(e) => assert_eq!(e.reply_code(), Some(ReplyCode::NOT_FOUND)),
            other => panic!("a 404 is returned as it is: {other:?}"),
        }
        let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
        let after = ch.queue_declare("", exclusive, &FieldTable::new()).await;
        match (reopen, after) {
            (false, Err(RecoveryError::ChannelClosed(reason))) => assert!(reason.contains("404"), "{reason}"),
            (true, Ok(name)) => assert!(name.starts_with("amq.gen-")),
            (reopen, other) => panic!("reopen {reopen}: {other:?}"),
        }
        assert_eq!(conn.stats().disconnects, 0, "a channel error is not a connection loss");
        conn.close().await.unwrap();
    }
}

fn options_named(prefix: &str) -> ConnectionOptions {
    options(&unique_name(prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_down_calls_wait_bounded_or_fail_fast_and_then_go_through() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-wait");
    let options = quick().wait(Duration::from_millis(300));
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], options).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let queue = unique_name("recover-wait-q");
    ch.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();

    proxy.refuse(true);
    proxy.cut();
    event(&mut events, disconnected).await;
    let props = BasicProperties::default();
    let started = tokio::time::Instant::now();
    let waited = ch.basic_publish("", &queue, BasicPublishOptions::default(), &props, "x").await.unwrap_err();
    assert_eq!(waited, RecoveryError::NotConnected { waited: Duration::from_millis(300) });
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited before failing");

    let fast = RecoveringConnection::connect(vec![via(&proxy, &name)], quick().fail_fast(true)).await;
    assert!(fast.is_err(), "a refused first connection is an error at once");

    proxy.refuse(false);
    event(&mut events, recovered).await;
    let confirm = ch.basic_publish("", &queue, BasicPublishOptions::default(), &props, "y").await.unwrap();
    assert_eq!(confirm.wait().await.unwrap().sends, 1);
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_calls_fail_at_once_while_down() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-fast");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick().fail_fast(true)).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    proxy.refuse(true);
    proxy.cut();
    event(&mut events, disconnected).await;
    let error = ch.queue_declare("", QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap_err();
    assert_eq!(error, RecoveryError::NotConnected { waited: Duration::ZERO });
    proxy.refuse(false);
    event(&mut events, recovered).await;
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_gives_up_after_its_attempt_limit_and_fails_what_is_pending() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-give-up");
    let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(50), max_attempts: Some(3) };
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick().backoff(backoff)).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    proxy.stall(true);
    // Sent into the stall: never confirmed, kept for re-sending.
    let props = BasicProperties::default();
    let pending = ch.basic_publish("", "nowhere", BasicPublishOptions::default(), &props, "x").await.unwrap();
    proxy.refuse(true);
    proxy.cut();
    let error = event(&mut events, |e| match e {
        RecoveryEvent::Failed(error) => Some(error),
        _ => None,
    })
    .await;
    assert!(matches!(error, RecoveryError::GaveUp { attempts: 3, .. }), "{error:?}");
    assert!(matches!(pending.wait().await, Err(RecoveryError::GaveUp { .. })));
    let after = ch.queue_declare("", QueueDeclareOptions::default(), &FieldTable::new()).await;
    assert!(matches!(after, Err(RecoveryError::GaveUp { .. })), "{after:?}");
    assert_eq!((conn.stats().attempts, conn.stats().failures), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_fails_over_to_the_next_endpoint() {
    let (first, second) = (Proxy::start(tests::broker_addr()).await, Proxy::start(tests::broker_addr()).await);
    let name = unique_name("recover-failover");
    // A comma-separated address list with a closed port first (the initial connection skips
    // it), then another URI.
    let listed = via(&first, &name).with_addresses(&format!("127.0.0.1:1, {}", first.addr())).unwrap();
    let endpoints = vec![listed, via(&second, &name)];
    let conn = RecoveringConnection::connect(endpoints, quick()).await.unwrap();
    let mut events = conn.events();
    assert_eq!(first.accepted(), 1);
    first.refuse(true);
    first.cut();
    let restored = event(&mut events, recovered).await;
    assert_eq!(restored.endpoint, second.addr());
    assert!(conn.current().is_some());
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_handler_that_declares_topology_does_not_deadlock_recovery() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-handler");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let mut events = conn.events();
    let handler_channel = ch.clone();
    let handler = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            // Declaring on every event, including the ones during recovery.
            let options = QueueDeclareOptions { exclusive: true, ..Default::default() };
            let declared = handler_channel.queue_declare("", options, &FieldTable::new()).await;
            if matches!(event, RecoveryEvent::Recovered(_)) {
                return declared;
            }
        }
        panic!("events ended")
    });
    proxy.cut();
    let declared = tokio::time::timeout(Duration::from_secs(30), handler).await.expect("no deadlock").unwrap();
    assert!(declared.unwrap().starts_with("amq.gen-"));
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_while_reconnecting_cancels_recovery() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-cancel");
    let backoff = Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(2), max_attempts: None };
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick().backoff(backoff)).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    proxy.refuse(true);
    proxy.cut();
    event(&mut events, disconnected).await;
    event(&mut events, |e| matches!(e, RecoveryEvent::Reconnecting { attempt: 2, .. }).then_some(())).await;
    tokio::time::timeout(Duration::from_secs(10), conn.close()).await.expect("close ends recovery").unwrap();
    let after = ch.queue_declare("", QueueDeclareOptions::default(), &FieldTable::new()).await;
    assert_eq!(after, Err(RecoveryError::Closed));
    let attempts = conn.stats().attempts;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(conn.stats().attempts, attempts, "no attempt after the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_client_cannot_encode_fails_at_once_and_frees_its_window_slot() {
    let conn =
        RecoveringConnection::connect(vec![options_named("recover-encode")], quick().max_unconfirmed(1)).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let too_long = "k".repeat(300);
    let props = BasicProperties::default();
    for _ in 0..3 {
        let confirm = ch.basic_publish("", &too_long, BasicPublishOptions::default(), &props, "x");
        let confirm = tokio::time::timeout(Duration::from_secs(10), confirm).await.expect("the slot was freed");
        let verdict = confirm.unwrap().wait().await;
        assert!(matches!(verdict, Err(RecoveryError::Client(Error::Encode(_)))), "{verdict:?}");
    }
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cannot_be_restored_ends_alone_and_its_channel_mates_go_on() {
    let proxy = Proxy::start(tests::broker_addr()).await;
    let name = unique_name("recover-mates");
    let conn = RecoveringConnection::connect(vec![via(&proxy, &name)], quick()).await.unwrap();
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    let (kept, doomed) = (unique_name("recover-kept"), unique_name("recover-doomed"));
    ch.queue_declare(&kept, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    // Declared by another application: not in this connection's record.
    let (other, other_ch) = tests::channel().await;
    other_ch.queue_declare(&doomed, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let mut first = ch.basic_consume(&kept, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let mut second = ch.basic_consume(&doomed, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();

    proxy.refuse(true);
    proxy.cut();
    event(&mut events, disconnected).await;
    other_ch.queue_delete(&doomed, QueueDeleteOptions::default()).await.unwrap();
    proxy.refuse(false);
    let restored = event(&mut events, recovered).await;
    assert_eq!(restored.failures.len(), 1, "{:?}", restored.failures);

    let ended = tokio::time::timeout(Duration::from_secs(10), second.next_delivery()).await.unwrap();
    assert!(ended.is_none(), "the consumer of the deleted queue ends");
    let props = BasicProperties::default();
    ch.basic_publish("", &kept, BasicPublishOptions::default(), &props, "still here").await.unwrap();
    let delivery = next(&mut first).await;
    assert_eq!(text(delivery.delivery().body()), "still here");
    delivery.ack().await.unwrap();
    ch.queue_delete(&kept, QueueDeleteOptions::default()).await.unwrap();
    other.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_to_reopen_a_consume_only_channel_the_broker_closed_comes_back_with_its_consumer() {
    let options = quick().reopen_on_channel_error(true);
    let conn = RecoveringConnection::connect(vec![options_named("recover-reopen")], options).await.unwrap();
    let consuming = conn.open_channel().await.unwrap();
    let publishing = conn.open_channel().await.unwrap();
    let queue = unique_name("recover-reopen-q");
    publishing.queue_declare(&queue, QueueDeclareOptions::default(), &FieldTable::new()).await.unwrap();
    let mut consumer =
        consuming.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let props = BasicProperties::default();
    publishing.basic_publish("", &queue, BasicPublishOptions::default(), &props, "one").await.unwrap();
    let one = next(&mut consumer).await;
    one.ack().await.unwrap();
    // A second ack of the same tag: the broker closes the channel with 406.
    one.ack().await.unwrap();
    publishing.basic_publish("", &queue, BasicPublishOptions::default(), &props, "two").await.unwrap();
    let two = next(&mut consumer).await;
    assert_eq!(text(two.delivery().body()), "two");
    two.ack().await.unwrap();
    assert_eq!(conn.stats().disconnects, 0);
    publishing.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}
