//! connection.blocked and unblocked from the real RabbitMQ: the test lowers the memory high
//! watermark so that the broker raises its alarm, then restores it. The alarm blocks every
//! publisher on the broker, so scripts/test.sh runs this binary alone, after the others.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::process::Command;
use std::time::Duration;

use amqp_client::api::*;
use amqp_codec::{BasicProperties, FieldTable};

/// Restores the watermark however the test ends.
struct Watermark(String);

impl Watermark {
    fn lower() -> Self {
        let original = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
        let original = original.trim().to_owned();
        assert!(original.parse::<f64>().is_ok(), "read the watermark: {original:?}");
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]);
        Watermark(original)
    }
}

impl Drop for Watermark {
    fn drop(&mut self) {
        rabbitmqctl(&["set_vm_memory_high_watermark", &self.0]);
    }
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out =
        Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs (scripts/rabbitmq.sh installs it)");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn publishes_wait_while_the_broker_blocks_and_flow_again_when_it_unblocks() {
    let conn = Connection::connect(&format!("amqp://guest:guest@{}/%2f", tests::broker_addr())).await.unwrap();
    let ch = conn.open_channel().await.unwrap();
    ch.confirm_select().await.unwrap();
    let q = ch
        .queue_declare("", QueueDeclareOptions { exclusive: true, ..Default::default() }, &FieldTable::new())
        .await
        .unwrap();
    let props = BasicProperties::default();

    let alarm = Watermark::lower();
    // RabbitMQ blocks a connection when it next publishes under the alarm.
    let first =
        ch.basic_publish("", &q.name, BasicPublishOptions::default(), &props, "during the alarm").await.unwrap();
    wait_until(|| conn.blocked().is_some(), "connection.blocked").await;
    assert!(conn.blocked().unwrap().contains("memory"), "{:?}", conn.blocked());

    // A publish now waits (in the client: the core's unit test
    // while_blocked_publishes_wait_but_acks_go_out shows it is held back, not sent) and is
    // confirmed only after the alarm clears.
    let ch2 = ch.clone();
    let queue = q.name.clone();
    let second = tokio::spawn(async move {
        let props = BasicProperties::default();
        let confirm = ch2.basic_publish("", &queue, BasicPublishOptions::default(), &props, "after the alarm").await?;
        confirm.wait().await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "no confirm while blocked");

    drop(alarm);
    wait_until(|| conn.blocked().is_none(), "connection.unblocked").await;
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), first.wait()).await.unwrap().unwrap(), Confirmation::Ack);
    let second = tokio::time::timeout(Duration::from_secs(30), second).await.unwrap().unwrap();
    assert_eq!(second.unwrap(), Confirmation::Ack);
    conn.close().await.unwrap();
}
