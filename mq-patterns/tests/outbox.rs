//! The outbox on SQLite against the real RabbitMQ: relays killed between publish and mark-sent
//! lose nothing and the idempotent consumer processes each of 10,000 messages once; a rolled
//! back business change sends nothing; sent rows are purged by age; a stale claim is swept, a fresh one is not; an
//! unroutable row stays for later; a database that is locked or missing is a typed error with
//! nothing marked and nothing lost.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod outbox_scenario;

use std::path::{Path, PathBuf};
use std::time::Duration;

use amqp_client::api::{Channel, Connection, QueueDeclareOptions};
use amqp_client::codec::{FieldTable, FieldValue, Table};
use mq_patterns::confirms::{ConfirmingPublisher, PublishError, RetryPolicy};
use mq_patterns::dedup::IdempotentConsumer;
use mq_patterns::dedup::sqlite::SqliteStore;
use mq_patterns::outbox::sqlite::SqliteOutbox;
use mq_patterns::outbox::{OutboxCounts, OutboxMessage, OutboxStore, Relay, RelayConfig, RelayError, StoreError};
use outbox_scenario::{Broker, Run, assert_exactly_once, unique, uri};
use rusqlite::ErrorCode;

/// A database file in the temp directory, removed (with its WAL files) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        TempDb(std::env::temp_dir().join(format!("{}.db", unique("outbox-test"))))
    }

    /// The application's connection, with its business table and the outbox table.
    fn app(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)").unwrap();
        SqliteOutbox::create_table(&conn).unwrap();
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// Places orders `from..to`, `per_tx` in each transaction, each with its message to
/// `exchange` with `routing_key`.
fn place_orders(db: &Path, exchange: &str, routing_key: &str, from: u64, to: u64, per_tx: u64) -> Vec<String> {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut ids = Vec::new();
    for start in (from..to).step_by(per_tx as usize) {
        let tx = conn.transaction().unwrap();
        for order in start..(start + per_tx).min(to) {
            tx.execute("INSERT INTO orders (id, item) VALUES (?1, 'book')", [order as i64]).unwrap();
            let message =
                OutboxMessage::new(exchange, routing_key, format!("order {order}")).with_content_type("text/plain");
            ids.push(SqliteOutbox::enqueue(&tx, &message).unwrap());
        }
        tx.commit().unwrap();
    }
    ids
}

async fn publisher(conn: &Connection) -> ConfirmingPublisher {
    ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 100, RetryPolicy::default()).await.unwrap()
}

async fn exclusive_queue(ch: &Channel) -> String {
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    ch.queue_declare(&unique("outbox"), exclusive, &FieldTable::new()).await.unwrap().name
}

async fn drain_ids(ch: &Channel, queue: &str) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(d) = ch.basic_get(queue, true).await.unwrap() {
        ids.push(d.properties().message_id.unwrap().to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_killed_between_publish_and_mark_sent_lose_nothing_and_each_message_is_processed_once() {
    const MESSAGES: u64 = 10_000;
    const KILLS: usize = 8;
    let seed = outbox_scenario::seed();
    println!("outbox kill test (SQLite): seed {seed} (replay with OUTBOX_SEED={seed})");
    let db = TempDb::new();
    drop(db.app());
    let broker = Broker::new("outbox-kill").await;
    let producer = {
        let (path, exchange) = (db.0.clone(), broker.exchange.clone());
        tokio::task::spawn_blocking(move || place_orders(&path, &exchange, "", 0, MESSAGES, 50))
    };
    let open = || async { SqliteOutbox::open(&db.0).unwrap() };
    // The consuming service's own database, where the idempotent consumer records each id.
    // One consumer: the SQLite store has one connection, so more would only wait on it.
    let processed_db = TempDb::new();
    let dedup = IdempotentConsumer::new(SqliteStore::open(&processed_db.0).await.unwrap());

    let (outcome, ids, tally) = broker
        .relay_killed_and_restarted(open, producer, dedup, Run { messages: MESSAGES, kills: KILLS, seed, workers: 1 })
        .await;

    println!("{MESSAGES} messages, {outcome}");
    assert_exactly_once(&outcome, &ids, &tally, MESSAGES);
    let orders: i64 = db.app().query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).unwrap();
    assert_eq!(orders as u64, MESSAGES, "every business change committed");
}

#[tokio::test]
async fn a_rolled_back_business_change_takes_its_message_with_it() {
    let db = TempDb::new();
    let mut app = db.app();
    let tx = app.transaction().unwrap();
    tx.execute("INSERT INTO orders (id, item) VALUES (1, 'book')", []).unwrap();
    SqliteOutbox::enqueue(&tx, &OutboxMessage::new("", "nowhere", "order 1")).unwrap();
    tx.rollback().unwrap();
    let tx = app.transaction().unwrap();
    SqliteOutbox::enqueue(&tx, &OutboxMessage::new("", "nowhere", "order 2")).unwrap();
    tx.commit().unwrap();
    let store = SqliteOutbox::open(&db.0).unwrap();
    assert_eq!(store.counts().await.unwrap(), OutboxCounts { pending: 1, unconfirmed: 0, sent: 0 });
}

#[tokio::test]
async fn a_message_arrives_with_its_id_content_type_and_headers() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let queue = exclusive_queue(&ch).await;
    let db = TempDb::new();
    let mut app = db.app();
    let tx = app.transaction().unwrap();
    let message = OutboxMessage::new("", queue.as_str(), "{\"order\":1}")
        .with_message_id("order-1")
        .with_content_type("application/json")
        .with_header("tenant", "acme")
        .with_header("attempt", 3i32)
        .with_persistent(false);
    assert_eq!(SqliteOutbox::enqueue(&tx, &message).unwrap(), "order-1");
    tx.commit().unwrap();

    let relay = Relay::new(SqliteOutbox::open(&db.0).unwrap(), publisher(&conn).await, RelayConfig::default());
    let report = relay.relay_pending().await.unwrap();
    assert_eq!((report.claimed, report.sent), (1, 1));
    let got = ch.basic_get(&queue, true).await.unwrap().unwrap();
    let props = got.properties();
    assert_eq!(props.message_id, Some("order-1"));
    assert_eq!(props.content_type, Some("application/json"));
    assert_eq!(props.delivery_mode, Some(1));
    let Some(Table::Raw(headers)) = props.headers else { panic!("headers arrive: {props:?}") };
    assert_eq!(headers.to_owned().get("attempt"), Some(&FieldValue::I32(3)));
    assert_eq!(headers.get("tenant").and_then(|v| v.as_str()), Some("acme"));
    assert_eq!(&got.body()[..], b"{\"order\":1}");
    assert_eq!(relay.store().counts().await.unwrap(), OutboxCounts { pending: 0, unconfirmed: 0, sent: 1 });
    assert_eq!(relay.store().purge_sent(Duration::from_secs(3600)).await.unwrap(), 0, "sent too recently");
    assert_eq!(relay.store().purge_sent(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(relay.store().counts().await.unwrap(), OutboxCounts::default());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_claim_left_unmarked_is_swept_after_the_threshold_and_not_before() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let queue = exclusive_queue(&ch).await;
    let db = TempDb::new();
    drop(db.app());
    let ids = place_orders(&db.0, "", &queue, 0, 30, 10);
    // A relay that claimed the rows and died before publishing or marking any.
    let dead = SqliteOutbox::open(&db.0).unwrap();
    assert_eq!(dead.claim_pending(100).await.unwrap().len(), 30);

    let threshold = Duration::from_millis(800);
    let config = RelayConfig { resend_after: threshold, ..Default::default() };
    let relay = Relay::new(SqliteOutbox::open(&db.0).unwrap(), publisher(&conn).await, config);
    assert_eq!(relay.relay_pending().await.unwrap().claimed, 0, "claimed rows are not pending");
    assert_eq!(relay.sweep().await.unwrap().claimed, 0, "too young to sweep");
    tokio::time::sleep(threshold).await;
    let swept = relay.sweep().await.unwrap();
    assert_eq!((swept.claimed, swept.sent), (30, 30));
    assert_eq!(drain_ids(&ch, &queue).await, ids, "all of them, oldest first");
    assert_eq!(relay.store().counts().await.unwrap(), OutboxCounts { pending: 0, unconfirmed: 0, sent: 30 });
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_unroutable_row_is_refused_and_stays_for_the_sweep() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let db = TempDb::new();
    let mut app = db.app();
    let tx = app.transaction().unwrap();
    SqliteOutbox::enqueue(&tx, &OutboxMessage::new("", unique("no-such-queue"), "lost?")).unwrap();
    tx.commit().unwrap();
    let relay = Relay::new(SqliteOutbox::open(&db.0).unwrap(), publisher(&conn).await, RelayConfig::default());
    let report = relay.relay_pending().await.unwrap();
    assert_eq!((report.claimed, report.sent), (1, 0));
    assert!(matches!(report.refused[..], [PublishError::Unroutable { .. }]), "{report:?}");
    assert_eq!(relay.store().counts().await.unwrap(), OutboxCounts { pending: 0, unconfirmed: 1, sent: 0 });
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_locked_database_is_a_typed_error_with_nothing_published_marked_or_lost() {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let queue = exclusive_queue(&ch).await;
    let db = TempDb::new();
    drop(db.app());
    let ids = place_orders(&db.0, "", &queue, 0, 20, 20);
    let relay_conn = rusqlite::Connection::open(&db.0).unwrap();
    relay_conn.busy_timeout(Duration::from_millis(100)).unwrap();
    let relay =
        Relay::new(SqliteOutbox::from_connection(relay_conn).unwrap(), publisher(&conn).await, RelayConfig::default());

    // Another writer holds the database: the relay cannot claim.
    let blocker = db.app();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = relay.relay_pending().await.unwrap_err();
    let RelayError::Store(StoreError::Sqlite(ref e)) = err else { panic!("a store error: {err:?}") };
    assert_eq!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy), "{err}");
    blocker.execute_batch("ROLLBACK").unwrap();

    assert!(drain_ids(&ch, &queue).await.is_empty(), "nothing was published");
    assert_eq!(relay.store().counts().await.unwrap(), OutboxCounts { pending: 20, unconfirmed: 0, sent: 0 });
    let report = relay.relay_pending().await.unwrap();
    assert_eq!(report.sent, 20, "once the database is back, everything goes");
    assert_eq!(drain_ids(&ch, &queue).await, ids);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_a_typed_error() {
    let missing = std::env::temp_dir().join(unique("no-such-dir")).join("outbox.db");
    let err = SqliteOutbox::open(&missing).unwrap_err();
    let StoreError::Sqlite(ref e) = err else { panic!("a store error: {err:?}") };
    assert_eq!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen), "{err}");
}
