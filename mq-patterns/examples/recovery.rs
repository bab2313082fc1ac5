//! A recovering connection riding out a forced close: publishes 500 messages with confirms and
//! consumes them, while (halfway) the broker is told to close the connection — as an operator's
//! `rabbitmqctl close_connection` or a node shutdown would. Prints the recovery events and what
//! arrived. Needs `rabbitmqctl` (on the broker's machine) for the fault.
//!
//! ```text
//! cargo run -p mq-patterns --example recovery [AMQP_URI]
//! ```

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use mq_patterns::client::api::*;
use mq_patterns::client::codec::{BasicProperties, FieldTable};
use mq_patterns::recovery::{RecoveringConnection, RecoveryEvent, RecoveryOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let name = format!("mq-patterns-recovery-example-{}", std::process::id());
    let options = ConnectionOptions::from_uri(&uri)?.connection_name(&name);
    let conn = RecoveringConnection::connect(vec![options], RecoveryOptions::default()).await?;
    let mut events = conn.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                RecoveryEvent::Disconnected { cause } => println!("disconnected: {cause}"),
                RecoveryEvent::Reconnecting { attempt, delay, endpoint } => {
                    println!("reconnecting to {endpoint} (attempt {attempt}, after {delay:?})")
                }
                RecoveryEvent::Recovered(r) => println!(
                    "recovered: {} channel(s), {} queue(s), {} consumer(s), {} publish(es) sent again",
                    r.channels, r.queues, r.consumers, r.republished
                ),
                other => println!("{other:?}"),
            }
        }
    });

    let channel = conn.open_channel().await?;
    channel.confirm_select().await?;
    channel.basic_qos(100, BasicQosOptions::default()).await?;
    let queue = format!("mq-patterns.recovery-example.{}", std::process::id());
    channel
        .queue_declare(&queue, QueueDeclareOptions { durable: true, ..Default::default() }, &FieldTable::new())
        .await?;
    let mut consumer = channel.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await?;
    let receiving = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while seen.len() < 500 {
            match tokio::time::timeout(Duration::from_secs(30), consumer.next_delivery()).await {
                Ok(Some(delivery)) => {
                    seen.insert(String::from_utf8_lossy(delivery.delivery().body()).into_owned());
                    // A delivery of the closed connection cannot be acked; the broker sends it again.
                    let _ = delivery.ack().await;
                }
                _ => break,
            }
        }
        seen
    });

    let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
    let mut confirms = Vec::new();
    for i in 0..500 {
        if i == 250 {
            close_connection_named(&name);
        }
        confirms.push(channel.basic_publish("", &queue, BasicPublishOptions::default(), &props, format!("{i}")).await?);
    }
    let mut resent = 0;
    for confirm in confirms {
        resent += usize::from(confirm.wait().await?.resent());
    }
    let seen = receiving.await?;
    println!("published 500, all confirmed ({resent} sent again); received {} distinct", seen.len());
    channel.queue_delete(&queue, QueueDeleteOptions::default()).await?;
    conn.close().await?;
    if seen.len() != 500 {
        return Err(format!("{} messages never arrived", 500 - seen.len()).into());
    }
    Ok(())
}

/// Has the broker close our connection with 320 CONNECTION_FORCED, through rabbitmqctl.
fn close_connection_named(name: &str) {
    let listing = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "--no-table-headers", "pid", "client_properties"])
        .output();
    let Ok(listing) = listing else {
        println!("rabbitmqctl is not available here: no fault injected");
        return;
    };
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    for line in String::from_utf8_lossy(&listing.stdout).lines().filter(|l| l.contains(&needle)) {
        if let Some(pid) = line.split_whitespace().next() {
            println!("asking the broker to close connection {pid}");
            let _ = Command::new("rabbitmqctl").args(["-q", "close_connection", pid, "recovery example"]).status();
        }
    }
}
