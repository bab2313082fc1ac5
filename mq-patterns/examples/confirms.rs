//! Publishing with confirms through `ConfirmingPublisher`, against a local RabbitMQ: 10,000
//! persistent messages into a durable queue with at most 500 unconfirmed, then one
//! unroutable message, which comes back as an error instead of a silent success.
//!
//! ```text
//! cargo run -p mq-patterns --example confirms [-- AMQP_URI]
//! ```

use std::time::Instant;

use amqp_client::api::{Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::confirms::{ConfirmingPublisher, PublishError, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&uri).await?;
    let admin = conn.open_channel().await?;
    let queue = format!("example.confirms.{}", std::process::id());
    admin
        .queue_declare(&queue, QueueDeclareOptions { durable: true, ..Default::default() }, &FieldTable::new())
        .await?;

    let publisher = ConfirmingPublisher::new(conn.open_channel().await?, 500, RetryPolicy::default()).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..10_000u32)
        .map(|i| {
            let (publisher, queue) = (publisher.clone(), queue.clone());
            tokio::spawn(async move {
                let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
                publisher.publish("", &queue, &props, format!("message {i}")).await
            })
        })
        .collect();
    let mut confirmed = 0;
    for task in tasks {
        task.await??;
        confirmed += 1;
    }
    println!("{confirmed} messages confirmed in {:.2?}", started.elapsed());

    match publisher.publish("", "no-such-queue-anywhere", &BasicProperties::default(), "lost?").await {
        Err(PublishError::Unroutable { code, .. }) => println!("unroutable message reported: {code}"),
        other => println!("unexpected: {other:?}"),
    }
    admin.queue_delete(&queue, QueueDeleteOptions::default()).await?;
    conn.close().await?;
    Ok(())
}
