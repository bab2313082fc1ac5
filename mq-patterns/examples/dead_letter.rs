//! Dead-lettering, end to end against a local RabbitMQ: a work queue with a 1 s TTL and a
//! dead-letter exchange; one message is rejected, one expires, and both are read back from
//! the dead-letter queue with their `x-death` reason.
//!
//! ```text
//! cargo run -p mq-patterns --example dead_letter [-- AMQP_URI]
//! ```

use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::codec::BasicProperties;
use mq_patterns::dead_letter::{DeadLettering, declare_dead_letter_target, x_death};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&uri).await?;
    let ch = conn.open_channel().await?;
    let pid = std::process::id();
    let (dlx, dead, work) =
        (format!("example.dlx.{pid}"), format!("example.dead.{pid}"), format!("example.work.{pid}"));
    declare_dead_letter_target(&ch, &dlx, &dead).await?;
    let args = DeadLettering::to(dlx.as_str()).message_ttl(Duration::from_secs(1)).arguments();
    ch.queue_declare(&work, QueueDeclareOptions::default(), &args).await?;

    let props = BasicProperties::default();
    ch.basic_publish("", &work, BasicPublishOptions::default(), &props, "will be rejected").await?;
    ch.basic_publish("", &work, BasicPublishOptions::default(), &props, "will expire").await?;
    let first = loop {
        if let Some(d) = ch.basic_get(&work, false).await? {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    first.reject(false).await?;

    let mut seen = 0;
    while seen < 2 {
        match ch.basic_get(&dead, true).await? {
            Some(d) => {
                let deaths = x_death(&d.properties())?;
                let why = deaths.first().map(|x| format!("{:?} in {}", x.reason, x.queue)).unwrap_or_default();
                println!("dead-lettered: {:?} ({why})", String::from_utf8_lossy(d.body()));
                seen += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    for q in [&work, &dead] {
        ch.queue_delete(q, QueueDeleteOptions::default()).await?;
    }
    ch.exchange_delete(&dlx, Default::default()).await?;
    conn.close().await?;
    Ok(())
}
