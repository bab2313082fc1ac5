//! Recovery from faults of the whole broker: `rabbitmqctl close_all_connections` and a broker
//! restart (`stop_app` / `start_app`). They cut every connection on the broker, so this binary
//! runs alone, after the rest of the suite (scripts/test.sh).
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::time::Duration;

use amqp_client::api::*;
use amqp_codec::{BasicProperties, FieldTable};
use mq_patterns::recovery::*;
use tests::{rabbitmqctl, unique_name, uri};

fn quick() -> RecoveryOptions {
    let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: None };
    RecoveryOptions::default().backoff(backoff).wait(Duration::from_secs(60))
}

async fn connect(name: &str) -> RecoveringConnection {
    let options = ConnectionOptions::from_uri(&uri()).unwrap().connection_name(name);
    RecoveringConnection::connect(vec![options], quick()).await.unwrap()
}

async fn recovered(events: &mut tokio::sync::broadcast::Receiver<RecoveryEvent>) -> Restored {
    let wait = async {
        loop {
            if let Ok(RecoveryEvent::Recovered(restored)) = events.recv().await {
                return restored;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), wait).await.expect("recovered within 90 s")
}

async fn next(consumer: &mut RecoveringConsumer) -> RecoveredDelivery {
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next_delivery()).await;
    delivery.expect("a delivery within 60 s").expect("the consumer goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_connections_then_a_broker_restart_lose_no_confirmed_persistent_message() {
    let conn = connect(&unique_name("recover-broker")).await;
    let mut events = conn.events();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    ch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let queue = unique_name("recover-broker-q");
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(&queue, durable, &FieldTable::new()).await.unwrap();
    let persistent = BasicProperties { delivery_mode: Some(2), ..Default::default() };
    let publish = |body: String| {
        let (ch, queue, persistent) = (ch.clone(), queue.clone(), persistent.clone());
        async move {
            let confirm = ch.basic_publish("", &queue, BasicPublishOptions::default(), &persistent, body).await;
            confirm.unwrap().wait().await.unwrap()
        }
    };

    // An operator closes every connection: the consumer goes on.
    let mut consumer = ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    publish("one".into()).await;
    next(&mut consumer).await.ack().await.unwrap();
    rabbitmqctl(&["close_all_connections", "closed by the recovery test"]);
    recovered(&mut events).await;
    publish("two".into()).await;
    let two = next(&mut consumer).await;
    assert_eq!(&two.delivery().body()[..], b"two");
    two.ack().await.unwrap();
    consumer.cancel().await.unwrap();

    // Confirmed persistent messages in a durable queue survive a restart of the broker.
    for i in 0..100 {
        publish(format!("kept-{i}")).await;
    }
    rabbitmqctl(&["stop_app"]);
    // A publish while the broker is down waits for it, then goes through.
    let waiting = tokio::spawn(publish("during".into()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    recovered(&mut events).await;
    let during = waiting.await.unwrap();
    assert!(during.confirmed);

    let mut consumer = ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..101 {
        let delivery = next(&mut consumer).await;
        bodies.push(String::from_utf8_lossy(delivery.delivery().body()).into_owned());
        delivery.ack().await.unwrap();
    }
    let expected: Vec<String> = (0..100).map(|i| format!("kept-{i}")).chain(["during".to_owned()]).collect();
    assert_eq!(bodies, expected, "every confirmed message survived the restart, in order");
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    assert!(conn.stats().recoveries >= 2);
    conn.close().await.unwrap();
}
