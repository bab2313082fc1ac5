//! Delayed delivery, end to end against a local RabbitMQ: detects whether the broker has the
//! delayed-message plugin (on a connection of its own), publishes a 2 s and then a 1 s delay,
//! consumes both and prints how long each took.
//!
//! ```text
//! cargo run -p mq-patterns --example delayed [-- AMQP_URI]
//! ```

use std::time::{Duration, Instant};

use amqp_client::api::{BasicConsumeOptions, Connection, ConnectionOptions, QueueDeclareOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::delay::{DelayedExchange, DelayedPublisher};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let options = ConnectionOptions::from_uri(&uri)?;
    let conn = Connection::connect_with(options.clone()).await?;
    let ch = conn.open_channel().await?;
    // A transient exchange of this run only, deleted at the end with its delay queues.
    let exchange = DelayedExchange::new(format!("example.delayed.{}", std::process::id()))
        .durable(false)
        .max_delay(Duration::from_secs(10));
    let publisher = DelayedPublisher::new(ch.clone(), exchange, &options).await?;
    println!("broker support: {:?}", publisher.support());

    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await?.name;
    ch.queue_bind(&queue, publisher.exchange(), "reminders", false, &FieldTable::new()).await?;
    let consume = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = ch.basic_consume(&queue, consume, &FieldTable::new()).await?;

    let start = Instant::now();
    for seconds in [2, 1] {
        let body = format!("{seconds} s");
        publisher.publish("reminders", Duration::from_secs(seconds), &BasicProperties::default(), body).await?;
    }
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next_delivery())
            .await?
            .ok_or("the consumer ended")?;
        let took = start.elapsed();
        println!("delay {} arrived after {} ms", String::from_utf8_lossy(delivery.body()), took.as_millis());
    }

    if let Some(ladder) = publisher.ladder() {
        ladder.delete(&ch).await?;
    }
    ch.exchange_delete(publisher.exchange(), Default::default()).await?;
    conn.close().await?;
    Ok(())
}
