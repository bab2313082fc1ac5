//! Manual acks with a retry loop, end to end against a local RabbitMQ: five orders, of which
//! one fails once and is retried after a short delay, and one always fails and is parked after
//! three attempts; the others are acked at the first attempt. Four handlers run at once.
//!
//! ```text
//! cargo run -p mq-patterns --example manual_ack [-- AMQP_URI]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Connection, Delivery, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::BasicProperties;
use mq_patterns::ack::{AckingConsumer, Action, HandlerError, RetryLoop};
use mq_patterns::dead_letter::x_death;
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&uri).await?;
    let ch = conn.open_channel().await?;
    let retry = RetryLoop::new(format!("example.orders.{}", std::process::id()), Duration::from_millis(200));
    retry.declare(&ch, QueueDeclareOptions { exclusive: true, ..Default::default() }).await?;
    for order in ["order-1", "order-2 (flaky)", "order-3", "order-4 (poison)", "order-5"] {
        ch.basic_publish("", retry.queue(), BasicPublishOptions::default(), &BasicProperties::default(), order).await?;
    }

    let consuming = conn.open_channel().await?;
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let consumer =
        AckingConsumer::start(consuming.clone(), retry.queue(), 4, retry.policy(3)).await?.on_settled(move |report| {
            println!(
                "{:>3}  attempt {:?}  {:?}  {}",
                report.tag.tag.0,
                report.attempt,
                report.action,
                report.error.as_ref().map(ToString::to_string).unwrap_or_default()
            );
            if matches!(report.action, Action::Acked | Action::Parked) {
                let _ = done_tx.send(());
            }
        });
    let tag = consumer.consumer_tag().to_owned();
    let failed_once = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(consumer.run(move |delivery: Delivery| {
        let failed_once = Arc::clone(&failed_once);
        async move { handle(&delivery, &failed_once).await }
    }));
    for _ in 0..5 {
        done.recv().await.ok_or("the consumer stopped early")?;
    }
    consuming.basic_cancel(&tag).await?;
    running.await??;

    let parked = loop {
        if let Some(d) = ch.basic_get(retry.park_queue(), true).await? {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rejected = x_death(&parked.properties())?.iter().find(|d| d.queue == retry.queue()).map(|d| d.count);
    println!("parked: {:?}, rejected {} times before", String::from_utf8_lossy(parked.body()), rejected.unwrap_or(0));
    ch.queue_delete(retry.park_queue(), QueueDeleteOptions::default()).await?;
    ch.exchange_delete(retry.park_exchange(), Default::default()).await?;
    conn.close().await?;
    Ok(())
}

/// The application's work: the poison order always fails, the flaky one fails once.
async fn handle(delivery: &Delivery, failed_once: &AtomicBool) -> Result<(), HandlerError> {
    let order = std::str::from_utf8(delivery.body())?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    if order.contains("poison") {
        return Err(format!("cannot process {order}").into());
    }
    if order.contains("flaky") && !failed_once.swap(true, Ordering::SeqCst) {
        return Err(format!("{order}: database busy, try again").into());
    }
    Ok(())
}
