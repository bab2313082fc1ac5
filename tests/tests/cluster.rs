//! Failover in a real cluster: three RabbitMQ nodes on this machine (scripts/cluster.sh starts
//! and joins them on 127.0.0.1:5681-5683; scripts/test.sh runs it first), a quorum queue, a
//! publisher with confirms and a consumer both connected to node 1. Node 1 is stopped mid-run;
//! both fail over to the other nodes and no confirmed message is lost. The main broker on 5672
//! is not touched.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::BTreeSet;
use std::time::Duration;

use amqp_client::api::*;
use amqp_codec::{BasicProperties, FieldTable};
use mq_patterns::recovery::*;
use tests::{rabbitmqctl, unique_name};

const NODE_1: &str = "rabbit-c1@localhost";

/// The three nodes, node 1 first.
fn nodes(name: &str) -> Vec<ConnectionOptions> {
    (1..=3)
        .map(|n| ConnectionOptions::from_uri(&format!("amqp://guest:guest@127.0.0.1:568{n}/%2f")).unwrap())
        .map(|o| o.connection_name(name).heartbeat(5))
        .collect()
}

fn options() -> RecoveryOptions {
    let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: None };
    RecoveryOptions::default().backoff(backoff).wait(Duration::from_secs(60))
}

/// Starts node 1 again when the test ends, however it ends.
struct RestartNode1;

impl Drop for RestartNode1 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["-q", "-n", NODE_1, "start_app"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_fail_over_when_their_node_stops_and_no_confirmed_message_is_lost() {
    let publisher = RecoveringConnection::connect(nodes(&unique_name("cluster-pub")), options())
        .await
        .expect("the test cluster runs (scripts/cluster.sh start)");
    let consumer_conn = RecoveringConnection::connect(nodes(&unique_name("cluster-sub")), options()).await.unwrap();
    let mut publisher_events = publisher.events();
    let ch = publisher.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let queue = unique_name("cluster-quorum");
    let mut arguments = FieldTable::new();
    arguments.insert("x-queue-type", "quorum");
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(&queue, durable, &arguments).await.unwrap();

    let sub = consumer_conn.open_channel().await.unwrap();
    sub.basic_qos(200, BasicQosOptions::default()).await.unwrap();
    let mut consumer = sub.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let received = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while seen.len() < 3000 {
            let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(90), consumer.next_delivery()).await
            else {
                break;
            };
            seen.insert(String::from_utf8_lossy(delivery.delivery().body()).parse::<u32>().unwrap());
            // An ack of a delivery from before the failover is refused; it comes again.
            let _ = delivery.ack().await;
        }
        seen
    });

    let _restart = RestartNode1;
    let persistent = BasicProperties { delivery_mode: Some(2), ..Default::default() };
    let mut confirms = Vec::new();
    for i in 0..3000u32 {
        if i == 1000 {
            rabbitmqctl(&["-q", "-n", NODE_1, "stop_app"]);
        }
        let confirm = ch.basic_publish("", &queue, BasicPublishOptions::default(), &persistent, i.to_string());
        confirms.push(confirm.await.unwrap());
    }
    let mut confirmed = BTreeSet::new();
    for (i, confirm) in confirms.into_iter().enumerate() {
        let published = tokio::time::timeout(Duration::from_secs(90), confirm.wait()).await.unwrap();
        published.unwrap_or_else(|e| panic!("message {i} was not confirmed: {e}"));
        confirmed.insert(i as u32);
    }
    let restored = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(RecoveryEvent::Recovered(restored)) = publisher_events.recv().await {
                return restored;
            }
        }
    });
    // The publisher may have recovered before we listened; its stats say so either way.
    let _ = restored.await;
    assert!(publisher.stats().recoveries >= 1, "the publisher failed over");
    assert!(consumer_conn.stats().recoveries >= 1, "the consumer failed over");
    assert_ne!(publisher.current().unwrap().generation(), 0);

    let seen = received.await.unwrap();
    let lost: Vec<_> = confirmed.difference(&seen).take(10).collect();
    assert!(lost.is_empty(), "confirmed but never delivered (first 10): {lost:?}");
    eprintln!(
        "cluster failover: {} confirmed, {} delivered, node 1 stopped at message 1000",
        confirmed.len(),
        seen.len()
    );

    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    publisher.close().await.unwrap();
    consumer_conn.close().await.unwrap();
}
