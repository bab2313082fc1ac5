//! Dead-lettering against the real RabbitMQ: each of the three causes — reject without
//! requeue, TTL expiry, max length — sends the message to the dead-letter exchange, and the
//! x-death header read back names the reason, the queue and the count.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Channel, Connection, Delivery, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::BasicProperties;
use mq_patterns::dead_letter::{DeadLettering, DeathReason, Overflow, declare_dead_letter_target, x_death};

mod support;
use support::{unique, uri};

/// A work queue dead-lettering (with `configure`) into a fresh DLX and dead-letter queue.
struct Setup {
    conn: Connection,
    ch: Channel,
    work: String,
    dlx: String,
    dead: String,
}

impl Setup {
    async fn new(configure: impl FnOnce(DeadLettering) -> DeadLettering) -> Self {
        let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
        let ch = conn.open_channel().await.unwrap();
        let (dlx, dead, work) = (unique("dlx"), unique("dead"), unique("work"));
        declare_dead_letter_target(&ch, &dlx, &dead).await.unwrap();
        let args = configure(DeadLettering::to(dlx.as_str())).arguments();
        ch.queue_declare(&work, QueueDeclareOptions::default(), &args).await.unwrap();
        Setup { conn, ch, work, dlx, dead }
    }

    async fn publish(&self, body: &str) {
        let props = BasicProperties::default();
        self.ch.basic_publish("", &self.work, BasicPublishOptions::default(), &props, body.to_owned()).await.unwrap();
    }

    /// The next dead-lettered message, waiting up to 10 s.
    async fn next_dead(&self) -> Delivery {
        for _ in 0..500 {
            if let Some(d) = self.ch.basic_get(&self.dead, true).await.unwrap() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nothing was dead-lettered into {}", self.dead);
    }

    async fn cleanup(self) {
        for q in [&self.work, &self.dead] {
            self.ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
        }
        self.ch.exchange_delete(&self.dlx, Default::default()).await.unwrap();
        self.conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_reason_rejected() {
    let s = Setup::new(|d| d).await;
    s.publish("bad input").await;
    let got = loop {
        if let Some(d) = s.ch.basic_get(&s.work, false).await.unwrap() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    got.reject(false).await.unwrap();
    let dead = s.next_dead().await;
    assert_eq!(&dead.body()[..], b"bad input");
    let deaths = x_death(&dead.properties()).unwrap();
    assert_eq!(deaths.len(), 1);
    assert_eq!(deaths[0].reason, DeathReason::Rejected);
    assert_eq!((deaths[0].queue.as_str(), deaths[0].count), (s.work.as_str(), 1));
    assert_eq!(deaths[0].routing_keys, std::slice::from_ref(&s.work));
    assert!(deaths[0].time.is_some());
    s.cleanup().await;
}

#[tokio::test]
async fn an_expired_message_is_dead_lettered_with_reason_expired() {
    let s = Setup::new(|d| d.message_ttl(Duration::from_millis(100))).await;
    s.publish("too late").await;
    let dead = s.next_dead().await;
    assert_eq!(&dead.body()[..], b"too late");
    let deaths = x_death(&dead.properties()).unwrap();
    assert_eq!(deaths[0].reason, DeathReason::Expired);
    assert_eq!(deaths[0].queue, s.work);
    s.cleanup().await;
}

#[tokio::test]
async fn overflowing_max_length_dead_letters_the_oldest_with_reason_maxlen() {
    let s = Setup::new(|d| d.max_length(2).overflow(Overflow::DropHead)).await;
    for body in ["first", "second", "third"] {
        s.publish(body).await;
    }
    let dead = s.next_dead().await;
    assert_eq!(&dead.body()[..], b"first", "drop-head dead-letters the oldest");
    let deaths = x_death(&dead.properties()).unwrap();
    assert_eq!(deaths[0].reason, DeathReason::MaxLen);
    assert_eq!(deaths[0].queue, s.work);
    s.cleanup().await;
}

#[tokio::test]
async fn a_message_that_dies_twice_in_a_queue_has_one_entry_counting_both() {
    let conn = Connection::connect(&uri()).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    let (work, retry) = (unique("work"), unique("retry"));
    // work dead-letters to retry (through the default exchange); retry expires back into work.
    let to_retry = DeadLettering::to("").routing_key(retry.as_str()).arguments();
    let back = DeadLettering::to("").routing_key(work.as_str()).message_ttl(Duration::from_millis(50)).arguments();
    ch.queue_declare(&work, QueueDeclareOptions::default(), &to_retry).await.unwrap();
    ch.queue_declare(&retry, QueueDeclareOptions::default(), &back).await.unwrap();
    ch.basic_publish("", &work, BasicPublishOptions::default(), &BasicProperties::default(), "again").await.unwrap();
    for round in 1..=3u64 {
        let d = loop {
            if let Some(d) = ch.basic_get(&work, false).await.unwrap() {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let deaths = x_death(&d.properties()).unwrap();
        let rejected = deaths.iter().find(|x| x.reason == DeathReason::Rejected && x.queue == work);
        assert_eq!(rejected.map(|x| x.count).unwrap_or(0), round - 1, "rejections from work before round {round}");
        let expired = deaths.iter().find(|x| x.reason == DeathReason::Expired && x.queue == retry);
        assert_eq!(expired.map(|x| x.count).unwrap_or(0), round - 1);
        d.reject(false).await.unwrap();
    }
    for q in [&work, &retry] {
        ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
    }
    conn.close().await.unwrap();
}
