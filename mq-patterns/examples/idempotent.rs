//! The idempotent consumer with the SQLite store, against a local RabbitMQ: five orders are
//! each published twice with the same `message-id`; each is processed once, its row written
//! in the same SQLite transaction that records its id, and the copies are only acked.
//!
//! ```text
//! cargo run -p mq-patterns --example idempotent [-- AMQP_URI]
//! ```

use amqp_client::api::{BasicPublishOptions, Connection, QueueDeclareOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::dedup::sqlite::SqliteStore;
use mq_patterns::dedup::{Handled, IdempotentConsumer};

const ORDERS: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let path = std::env::temp_dir().join(format!("example-idempotent-{}.db", std::process::id()));
    let outcome = run(&uri, &path).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    outcome
}

async fn run(uri: &str, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect(uri).await?;
    let channel = conn.open_channel().await?;
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = channel.queue_declare("", exclusive, &FieldTable::new()).await?.name;

    // A producer that retried (or a relay that re-sent) delivers every order twice.
    for copy in ["first", "second"] {
        for n in 1..=ORDERS {
            let id = format!("order-{n}");
            let props = BasicProperties { message_id: Some(&id), ..Default::default() };
            let body = format!("{copy} copy of order {n}");
            channel.basic_publish("", &queue, BasicPublishOptions::default(), &props, body).await?;
        }
    }

    let store = SqliteStore::open(path).await?;
    store.with_connection(|db| db.execute_batch("CREATE TABLE orders (id TEXT, body TEXT)")).await?;
    let dedup = IdempotentConsumer::new(store.clone());
    let mut consumer = channel.basic_consume(&queue, Default::default(), &FieldTable::new()).await?;
    for _ in 0..2 * ORDERS {
        let delivery = consumer.next_delivery().await.ok_or("the consumer ended early")?;
        let outcome = dedup
            .handle(&delivery, |d, tx| {
                let id = d.properties().message_id.unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(d.body()).into_owned();
                Box::pin(async move {
                    tx.execute(move |db| db.execute("INSERT INTO orders (id, body) VALUES (?1, ?2)", [id, body]))
                        .await?;
                    Ok(())
                })
            })
            .await?;
        let what = match outcome {
            Handled::Processed => "processed",
            Handled::Duplicate => "duplicate: acked, not processed",
            Handled::Requeued => "requeued: in progress elsewhere",
        };
        println!(
            "{:<9} {:<28} {what}",
            delivery.properties().message_id.unwrap_or("?"),
            String::from_utf8_lossy(delivery.body())
        );
    }

    let rows =
        store.with_connection(|db| db.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0))).await?;
    println!("{} deliveries, {rows} orders written", 2 * ORDERS);
    conn.close().await?;
    if rows != ORDERS as i64 {
        return Err(format!("expected {ORDERS} orders, found {rows}").into());
    }
    Ok(())
}
