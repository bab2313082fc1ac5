//! The transactional outbox with SQLite, against a local RabbitMQ: a shop writes each order and
//! its message in one transaction (one order is rolled back, and its message goes with it); a
//! relay "crashes" after publishing some rows and before marking them sent; a second relay
//! publishes the rest with confirms and re-sends those with its sweep; an idempotent consumer
//! writes one shipment per order and recognises the re-sent copies. Prints the counts and
//! exits 0 when every committed order was shipped exactly once.
//!
//! ```text
//! cargo run -p mq-patterns --example outbox [-- AMQP_URI]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amqp_client::api::{Connection, QueueDeclareOptions};
use amqp_client::codec::FieldTable;
use mq_patterns::confirms::{ConfirmingPublisher, RetryPolicy};
use mq_patterns::dedup::sqlite::SqliteStore;
use mq_patterns::dedup::{Handled, IdempotentConsumer};
use mq_patterns::outbox::sqlite::SqliteOutbox;
use mq_patterns::outbox::{OutboxMessage, OutboxStore, Relay, RelayConfig};

const ORDERS: i64 = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let dir = std::env::temp_dir();
    let (shop, shipping) = (temp_db(&dir, "shop"), temp_db(&dir, "shipping"));
    let outcome = run(&uri, &shop, &shipping).await;
    for db in [&shop, &shipping] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    outcome
}

async fn run(uri: &str, shop: &Path, shipping: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect(uri).await?;
    let channel = conn.open_channel().await?;
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = channel.queue_declare("", exclusive, &FieldTable::new()).await?.name;

    place_orders(shop, &queue)?;
    let outbox = SqliteOutbox::open(shop)?;
    println!("after the orders: {:?}", outbox.counts().await?);

    // A relay that claimed ten rows, published them, and died before marking them sent.
    let publisher = ConfirmingPublisher::new(conn.open_channel().await?, 100, RetryPolicy::default()).await?;
    let crashed = outbox.claim_pending(10).await?;
    for row in &crashed {
        publisher.publish(&row.exchange, &row.routing_key, &row.properties(), row.body.clone()).await?;
    }
    println!("a relay published {} rows and crashed before marking them: {:?}", crashed.len(), outbox.counts().await?);

    // The next relay sends the rest at once, and the ten again after `resend_after`.
    let config = RelayConfig { resend_after: Duration::from_secs(1), ..Default::default() };
    let relay = Relay::new(outbox.clone(), publisher, config);
    let relaying = tokio::spawn(async move { relay.run().await });

    let store = SqliteStore::open(shipping).await?;
    store.with_connection(|db| db.execute_batch("CREATE TABLE shipments (order_id TEXT NOT NULL)")).await?;
    let dedup = IdempotentConsumer::new(store.clone());
    let mut consumer = channel.basic_consume(&queue, Default::default(), &FieldTable::new()).await?;
    let (mut processed, mut duplicates) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while processed < ORDERS - 1 || duplicates < crashed.len() {
        let next = tokio::time::timeout_at(deadline.into(), consumer.next_delivery()).await;
        let delivery = next.map_err(|_| "timed out waiting for the orders")?.ok_or("the consumer ended")?;
        let handled = dedup
            .handle(&delivery, |d, tx| {
                let order = String::from_utf8_lossy(d.body()).into_owned();
                Box::pin(async move {
                    tx.execute(move |db| db.execute("INSERT INTO shipments (order_id) VALUES (?1)", [order])).await?;
                    Ok(())
                })
            })
            .await?;
        match handled {
            Handled::Processed => processed += 1,
            Handled::Duplicate => duplicates += 1,
            Handled::Requeued => {}
        }
    }
    relaying.abort();
    let shipments = store
        .with_connection(|db| {
            db.query_row("SELECT count(*), count(DISTINCT order_id) FROM shipments", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
        })
        .await?;
    let counts = outbox.counts().await?;
    println!("outbox at the end: {counts:?}");
    println!("{processed} orders processed, {duplicates} duplicates recognised, shipments {shipments:?}");
    conn.close().await?;
    if shipments != (ORDERS - 1, ORDERS - 1) || counts.sent != (ORDERS - 1) as u64 {
        return Err("every committed order must be shipped exactly once".into());
    }
    Ok(())
}

/// Orders 1..=ORDERS, one transaction each; order 13 fails and is rolled back.
fn place_orders(shop: &Path, queue: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut db = rusqlite::Connection::open(shop)?;
    db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    db.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL)")?;
    SqliteOutbox::create_table(&db)?;
    for order in 1..=ORDERS {
        let tx = db.transaction()?;
        tx.execute("INSERT INTO orders (id, total) VALUES (?1, ?2)", [order, order * 100])?;
        let message = OutboxMessage::new("", queue, order.to_string()).with_content_type("text/plain");
        SqliteOutbox::enqueue(&tx, &message)?;
        if order == 13 {
            tx.rollback()?; // payment declined: no order, and no message
        } else {
            tx.commit()?;
        }
    }
    Ok(())
}

fn temp_db(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("example-outbox-{name}-{}.db", std::process::id()))
}
