//! Delayed delivery against the real RabbitMQ (which has no delayed-message plugin here, so
//! the fallback ladder is what runs): no message arrives before its delay, all arrive, a long
//! delay published first does not hold back a short one, and detection reports "no plugin"
//! without harming the caller's connection.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amqp_client::api::{
    BasicConsumeOptions, Channel, Confirmation, Connection, ConnectionOptions, Consumer, QueueDeclareOptions,
};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::delay::{DelayError, DelaySupport, DelayedExchange, DelayedPublisher, detect};

mod support;
use support::{connect, unique, uri};

/// A fallback publisher on a fresh exchange (transient, since the test deletes it) with an
/// exclusive queue bound to it by `key`, consumed.
struct Setup {
    conn: Connection,
    ch: Channel,
    publisher: DelayedPublisher,
    consumer: Consumer,
}

impl Setup {
    async fn new(key: &str, max_delay: Duration) -> Self {
        let (conn, ch) = connect().await;
        ch.confirm_select().await.unwrap();
        let exchange = DelayedExchange::new(unique("delay-test")).durable(false).max_delay(max_delay);
        let publisher = DelayedPublisher::with_support(ch.clone(), exchange, DelaySupport::Fallback).await.unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
        let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await.unwrap().name;
        ch.queue_bind(&queue, publisher.exchange(), key, false, &FieldTable::new()).await.unwrap();
        let consume = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let consumer = ch.basic_consume(&queue, consume, &FieldTable::new()).await.unwrap();
        Setup { conn, ch, publisher, consumer }
    }

    /// Publishes `id` with `delay` and waits for the confirm; returns the instant before the publish.
    async fn publish(&self, key: &str, id: &str, delay: Duration) -> Instant {
        let props = BasicProperties { message_id: Some(id), ..Default::default() };
        let sent = Instant::now();
        let confirm = self.publisher.publish(key, delay, &props, id.to_owned()).await.unwrap();
        assert_eq!(confirm.wait().await.unwrap(), Confirmation::Ack);
        sent
    }

    /// The message ids in arrival order with their arrival instants, `n` of them, within `bound`.
    async fn receive(&mut self, n: usize, bound: Duration) -> Vec<(String, Instant)> {
        let mut got = Vec::new();
        while got.len() < n {
            let delivery = tokio::time::timeout(bound, self.consumer.next_delivery())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} delayed messages arrived: {got:?}", got.len()))
                .unwrap();
            got.push((String::from_utf8(delivery.body().to_vec()).unwrap(), Instant::now()));
        }
        got
    }

    async fn cleanup(self) {
        self.publisher.ladder().unwrap().delete(&self.ch).await.unwrap();
        self.ch.exchange_delete(self.publisher.exchange(), Default::default()).await.unwrap();
        self.conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_30_s_delay_published_first_does_not_hold_back_a_1_s_delay() {
    let mut s = Setup::new("k", Duration::from_secs(60)).await;
    let long_sent = s.publish("k", "30s", Duration::from_secs(30)).await;
    let short_sent = s.publish("k", "1s", Duration::from_secs(1)).await;
    let got = s.receive(2, Duration::from_secs(60)).await;
    assert_eq!(got[0].0, "1s", "the 1 s message comes first, not behind the 30 s one");
    assert_eq!(got[1].0, "30s");
    let short_delay = got[0].1 - short_sent;
    let long_delay = got[1].1 - long_sent;
    println!(
        "observed: the 1 s delay took {} ms, the 30 s delay {} ms",
        short_delay.as_millis(),
        long_delay.as_millis()
    );
    assert!(short_delay >= Duration::from_secs(1), "early: {short_delay:?}");
    assert!(long_delay >= Duration::from_secs(30), "early: {long_delay:?}");
    assert!(got[0].1 < long_sent + Duration::from_secs(30), "the 1 s message arrived while the 30 s one was waiting");
    s.cleanup().await;
}

#[tokio::test]
async fn every_message_arrives_and_none_before_its_delay() {
    let mut s = Setup::new("k", Duration::from_secs(10)).await;
    // Out of order on purpose, with delays off the 100 ms grid and a zero delay.
    let delays_ms = [2_500u64, 0, 730, 3_100, 120, 1_000, 1, 1_999, 400, 50];
    let mut sent = HashMap::new();
    for ms in delays_ms {
        let id = format!("{ms}ms");
        let at = s.publish("k", &id, Duration::from_millis(ms)).await;
        sent.insert(id, (at, Duration::from_millis(ms)));
    }
    let got = s.receive(delays_ms.len(), Duration::from_secs(30)).await;
    let mut observed = Vec::new();
    for (id, arrived) in &got {
        let (at, delay) = sent.remove(id).unwrap_or_else(|| panic!("{id} arrived twice or was never sent"));
        let took = *arrived - at;
        assert!(took >= delay, "{id} arrived after {took:?}, before its delay");
        observed.push(format!("{id}: {} ms", took.as_millis()));
    }
    assert!(sent.is_empty(), "never arrived: {sent:?}");
    println!("observed delays: {}", observed.join(", "));
    s.cleanup().await;
}

#[tokio::test]
async fn the_routing_key_survives_the_ladder() {
    let mut s = Setup::new("wanted", Duration::from_secs(5)).await;
    s.publish("unwanted", "other key", Duration::from_millis(300)).await;
    let sent = s.publish("wanted", "right key", Duration::from_millis(300)).await;
    let got = s.receive(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].0, "right key");
    assert!(got[0].1 - sent >= Duration::from_millis(300));
    // The other message went through the ladder as well and was dropped by the target exchange.
    assert!(s.consumer.try_next_delivery().is_none());
    s.cleanup().await;
}

#[tokio::test]
async fn detection_reports_no_plugin_and_leaves_the_callers_connection_usable() {
    let (conn, ch) = connect().await;
    let options = ConnectionOptions::from_uri(&uri()).unwrap();
    assert_eq!(detect(&options).await.unwrap(), DelaySupport::Fallback);
    // The probe's 503 closed the probe's own connection only.
    assert_eq!(conn.close_reason(), None);
    assert_eq!(ch.close_reason(), None);
    let name = unique("after-detect");
    ch.exchange_declare(&name, "direct", Default::default(), &FieldTable::new()).await.unwrap();
    ch.exchange_delete(&name, Default::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_detecting_publisher_falls_back_on_this_broker_and_delivers() {
    let (conn, ch) = connect().await;
    let options = ConnectionOptions::from_uri(&uri()).unwrap();
    let exchange = DelayedExchange::new(unique("delay-detect")).durable(false).max_delay(Duration::from_secs(2));
    let publisher = DelayedPublisher::new(ch.clone(), exchange, &options).await.unwrap();
    assert_eq!(publisher.support(), DelaySupport::Fallback);
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await.unwrap().name;
    ch.queue_bind(&queue, publisher.exchange(), "k", false, &FieldTable::new()).await.unwrap();
    let sent = Instant::now();
    publisher.publish("k", Duration::from_millis(500), &BasicProperties::default(), "later").await.unwrap();
    let delivery = loop {
        if let Some(d) = ch.basic_get(&queue, true).await.unwrap() {
            break d;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "the delayed message never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sent.elapsed() >= Duration::from_millis(500));
    assert_eq!(&delivery.body()[..], b"later");
    publisher.ladder().unwrap().delete(&ch).await.unwrap();
    ch.exchange_delete(publisher.exchange(), Default::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn publishers_with_the_same_exchange_share_one_ladder() {
    let (conn, ch) = connect().await;
    let exchange = DelayedExchange::new(unique("delay-shared")).durable(false).max_delay(Duration::from_secs(1));
    let first = DelayedPublisher::with_support(ch.clone(), exchange.clone(), DelaySupport::Fallback).await.unwrap();
    let (_conn2, ch2) = connect().await;
    let second = DelayedPublisher::with_support(ch2, exchange, DelaySupport::Fallback).await.unwrap();
    let (a, b) = (first.ladder().unwrap(), second.ladder().unwrap());
    assert_eq!(a, b);
    for k in 0..a.levels() {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        ch.queue_declare(&a.queue(k), passive, &FieldTable::new()).await.unwrap();
    }
    a.delete(&ch).await.unwrap();
    ch.exchange_delete(first.exchange(), Default::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_fallback_refuses_what_it_cannot_honour() {
    let (conn, ch) = connect().await;
    let exchange = DelayedExchange::new(unique("delay-refuse")).durable(false).max_delay(Duration::from_secs(1));
    let publisher = DelayedPublisher::with_support(ch.clone(), exchange, DelaySupport::Fallback).await.unwrap();
    let expiring = BasicProperties { expiration: Some("60000"), ..Default::default() };
    let err = publisher.publish("k", Duration::from_millis(200), &expiring, "x").await.unwrap_err();
    assert_eq!(err, DelayError::Expiration);
    let err = publisher.publish("k", Duration::from_secs(2), &BasicProperties::default(), "x").await.unwrap_err();
    assert!(matches!(err, DelayError::TooLong { .. }), "{err:?}");
    let default = DelayedExchange::new("");
    let err = DelayedPublisher::with_support(ch.clone(), default, DelaySupport::Fallback).await.unwrap_err();
    assert_eq!(err, DelayError::DefaultExchange);
    assert_eq!(ch.close_reason(), None, "refusals happen before anything is sent");
    publisher.ladder().unwrap().delete(&ch).await.unwrap();
    ch.exchange_delete(publisher.exchange(), Default::default()).await.unwrap();
    conn.close().await.unwrap();
}
