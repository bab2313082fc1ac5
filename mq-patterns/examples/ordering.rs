//! Ordering by key, end to end against a local RabbitMQ (with the consistent-hash exchange
//! plugin, which `scripts/rabbitmq.sh` enables): three accounts' entries go through two
//! consistent-hash partitions, each drained by a serial executor with concurrent handlers,
//! and every account's entries are applied in the order they were published.
//!
//! ```text
//! cargo run -p mq-patterns --example ordering [-- AMQP_URI]
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_client::api::Connection;
use amqp_client::codec::BasicProperties;
use mq_patterns::ordering::key;
use mq_patterns::ordering::partitioned::Partitions;
use mq_patterns::ordering::serial::SerialExecutor;

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const ENTRIES: u32 = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&uri).await?;
    let ch = conn.open_channel().await?;
    let partitions = Partitions::new(format!("example.ledger.{}", std::process::id()), 2).durable(false);
    partitions.declare(&ch).await?;

    ch.confirm_select().await?;
    for entry in 0..ENTRIES {
        for account in ACCOUNTS {
            let props = BasicProperties::default();
            partitions.publish(&ch, account, &props, entry.to_string()).await?.wait().await?;
        }
    }

    let applied: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
    let mut runs = Vec::new();
    for partition in 0..partitions.count() {
        let partition_ch = conn.open_channel().await?;
        let consumer = partitions.consume(&partition_ch, partition, 10).await?;
        let tag = consumer.tag().to_owned();
        let applied = Arc::clone(&applied);
        let run = tokio::spawn(async move {
            SerialExecutor::new(key::routing_key)
                .run(consumer, move |message| {
                    let applied = Arc::clone(&applied);
                    async move {
                        let entry: u32 = std::str::from_utf8(message.body())?.parse()?;
                        // Later entries of other accounts may overtake; this account's may not.
                        tokio::time::sleep(Duration::from_millis(u64::from(ENTRIES - entry))).await;
                        println!("partition {partition}: {} entry {entry}", message.key());
                        applied.lock().map_err(|_| "poisoned")?.entry(message.key().clone()).or_default().push(entry);
                        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                    }
                })
                .await
        });
        runs.push((partition_ch, tag, run));
    }

    let total = ACCOUNTS.len() * ENTRIES as usize;
    while applied.lock().map_err(|_| "poisoned")?.values().map(Vec::len).sum::<usize>() < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (partition_ch, tag, run) in runs {
        partition_ch.basic_cancel(&tag).await?;
        run.await??;
        partition_ch.close().await?;
    }
    let applied = applied.lock().map_err(|_| "poisoned")?.clone();
    for (account, entries) in &applied {
        println!("{account}: {entries:?}");
        if *entries != (0..ENTRIES).collect::<Vec<_>>() {
            return Err(format!("{account}'s entries were applied out of order: {entries:?}").into());
        }
    }
    partitions.delete(&ch).await?;
    conn.close().await?;
    Ok(())
}
