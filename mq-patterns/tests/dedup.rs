//! The idempotent consumer against the real RabbitMQ: a duplicate `message-id` is processed
//! once with each store; a message without an id, a failing handler and a store that is
//! down each give a typed error and lose no message.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_client::api::{
    BasicPublishOptions, Channel, Connection, Consumer, Delivery, QueueDeclareOptions, QueueDeleteOptions,
};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::dead_letter::{DeadLettering, declare_dead_letter_target};
use mq_patterns::dedup::{BoxError, DedupError, DedupStore, Handled, IdempotentConsumer, MemoryStore, MissingIdPolicy};

mod support;
use support::{unique, uri};

/// A work queue that dead-letters into its own DLX and dead-letter queue.
struct Setup {
    conn: Connection,
    ch: Channel,
    work: String,
    dlx: String,
    dead: String,
}

impl Setup {
    async fn new() -> Self {
        let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
        let ch = conn.open_channel().await.unwrap();
        let (dlx, dead, work) = (unique("dedup-dlx"), unique("dedup-dead"), unique("dedup-work"));
        declare_dead_letter_target(&ch, &dlx, &dead).await.unwrap();
        let args = DeadLettering::to(dlx.as_str()).arguments();
        ch.queue_declare(&work, QueueDeclareOptions::default(), &args).await.unwrap();
        Setup { conn, ch, work, dlx, dead }
    }

    async fn publish(&self, message_id: Option<&str>, body: &str) {
        let props = BasicProperties { message_id, ..Default::default() };
        let confirm =
            self.ch.basic_publish("", &self.work, BasicPublishOptions::default(), &props, body.to_owned()).await;
        confirm.unwrap();
    }

    /// A consumer on its own channel (so that closing it requeues what it left unacked).
    async fn consume(&self) -> (Channel, Consumer) {
        let ch = self.conn.open_channel().await.unwrap();
        let consumer = ch.basic_consume(&self.work, Default::default(), &FieldTable::new()).await.unwrap();
        (ch, consumer)
    }

    async fn ready(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        self.ch.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count
    }

    /// Waits (10 s at most) until `queue` holds `n` ready messages.
    async fn wait_ready(&self, queue: &str, n: u32) {
        for _ in 0..500 {
            if self.ready(queue).await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{queue} never held {n} ready messages (it holds {})", self.ready(queue).await);
    }

    async fn cleanup(self) {
        for q in [&self.work, &self.dead] {
            self.ch.queue_delete(q, QueueDeleteOptions::default()).await.unwrap();
        }
        self.ch.exchange_delete(&self.dlx, Default::default()).await.unwrap();
        self.conn.close().await.unwrap();
    }
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next_delivery()).await.unwrap().unwrap()
}

/// Publishes ids a, b, a, c, b, a through one queue: the handler runs once per id, every
/// delivery is acked, and the duplicates are reported as such. Returns the three ids.
async fn duplicates_are_processed_once<S: DedupStore>(store: S) -> Vec<String> {
    let s = Setup::new().await;
    let ids = ["a", "b", "a", "c", "b", "a"];
    let prefix = unique("id");
    for (n, id) in ids.iter().enumerate() {
        s.publish(Some(&format!("{prefix}-{id}")), &format!("copy {n}")).await;
    }
    let dedup = IdempotentConsumer::new(store);
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (ch, mut consumer) = s.consume().await;
    let mut outcomes = Vec::new();
    for _ in &ids {
        let delivery = next(&mut consumer).await;
        let runs = runs.clone();
        let outcome = dedup
            .handle(&delivery, move |d, _tx| {
                Box::pin(async move {
                    let id = d.properties().message_id.unwrap().to_owned();
                    *runs.lock().unwrap().entry(id).or_default() += 1;
                    Ok(())
                })
            })
            .await
            .unwrap();
        outcomes.push(outcome);
    }
    use Handled::{Duplicate, Processed};
    assert_eq!(outcomes, [Processed, Processed, Duplicate, Processed, Duplicate, Duplicate]);
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 3);
    assert!(runs.values().all(|&n| n == 1), "{runs:?}");
    // Every delivery was acked: closing the consumer's channel requeues nothing.
    ch.close().await.unwrap();
    assert_eq!(s.ready(&s.work).await, 0);
    assert_eq!(s.ready(&s.dead).await, 0);
    s.cleanup().await;
    let mut distinct: Vec<String> = runs.into_keys().collect();
    distinct.sort();
    distinct
}

#[tokio::test]
async fn memory_store_processes_a_duplicate_id_once() {
    let store = MemoryStore::default();
    let ids = duplicates_are_processed_once(store.clone()).await;
    assert!(ids.iter().all(|id| store.contains(id)));
}

fn never_called(_: &Delivery, _: &mut impl Send) -> mq_patterns::dedup::BoxFuture<'static, Result<(), BoxError>> {
    panic!("the handler must not run for a message without an id")
}

#[tokio::test]
async fn a_message_without_id_is_dead_lettered_with_a_typed_error() {
    let s = Setup::new().await;
    s.publish(None, "who am I").await;
    let dedup = IdempotentConsumer::new(MemoryStore::default());
    let (_ch, mut consumer) = s.consume().await;
    let delivery = next(&mut consumer).await;
    let err = dedup.handle(&delivery, |d, tx| never_called(d, tx)).await.unwrap_err();
    assert!(
        matches!(err, DedupError::MissingMessageId { policy: MissingIdPolicy::DeadLetter, .. }),
        "unexpected: {err:?}"
    );
    s.wait_ready(&s.dead, 1).await;
    let dead = s.ch.basic_get(&s.dead, true).await.unwrap().unwrap();
    assert_eq!(&dead.body()[..], b"who am I");
    s.cleanup().await;
}

#[tokio::test]
async fn a_message_without_id_can_be_left_unacked_for_the_caller() {
    let s = Setup::new().await;
    s.publish(None, "who am I").await;
    let dedup = IdempotentConsumer::new(MemoryStore::default()).on_missing_id(MissingIdPolicy::LeaveUnacked);
    let (ch, mut consumer) = s.consume().await;
    let delivery = next(&mut consumer).await;
    let err = dedup.handle(&delivery, |d, tx| never_called(d, tx)).await.unwrap_err();
    let DedupError::MissingMessageId { delivery_tag, policy: MissingIdPolicy::LeaveUnacked } = err else {
        panic!("unexpected: {err:?}")
    };
    assert_eq!(delivery_tag, delivery.tag().tag.0);
    // Still held unacked: the channel's close gives it back to the queue.
    ch.close().await.unwrap();
    s.wait_ready(&s.work, 1).await;
    assert_eq!(s.ready(&s.dead).await, 0);
    s.cleanup().await;
}

#[tokio::test]
async fn a_failing_handler_requeues_and_records_nothing() {
    let s = Setup::new().await;
    let id = unique("fails-once");
    s.publish(Some(&id), "flaky").await;
    let store = MemoryStore::default();
    let dedup = IdempotentConsumer::new(store.clone());
    let (_ch, mut consumer) = s.consume().await;
    let first = next(&mut consumer).await;
    let err = dedup
        .handle(&first, |_, _| Box::pin(async { Err::<(), BoxError>("the disk is full".into()) }))
        .await
        .unwrap_err();
    assert!(matches!(&err, DedupError::Handler { message_id, .. } if *message_id == id), "unexpected: {err:?}");
    assert!(!store.contains(&id));
    let again = next(&mut consumer).await;
    assert!(again.redelivered());
    let outcome = dedup.handle(&again, |_, _| Box::pin(async { Ok(()) })).await.unwrap();
    assert_eq!(outcome, Handled::Processed);
    assert!(store.contains(&id));
    s.cleanup().await;
}

#[tokio::test]
async fn a_duplicate_in_progress_elsewhere_is_requeued_then_recognised() {
    let s = Setup::new().await;
    let id = unique("twice");
    s.publish(Some(&id), "copy 1").await;
    s.publish(Some(&id), "copy 2").await;
    let dedup = IdempotentConsumer::new(MemoryStore::default());
    let (_ch, mut consumer) = s.consume().await;
    let (one, two) = (next(&mut consumer).await, next(&mut consumer).await);
    // The first copy's handler runs until the second copy has been dealt with.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let first = dedup.handle(&one, move |_, _| {
        Box::pin(async move {
            released.await.ok();
            Ok(())
        })
    });
    let second = async {
        let outcome = dedup.handle(&two, |_, _| Box::pin(async { Ok(()) })).await;
        release.send(()).unwrap();
        outcome
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), Handled::Processed);
    assert_eq!(second.unwrap(), Handled::Requeued);
    let again = next(&mut consumer).await;
    assert!(again.redelivered());
    assert_eq!(&again.body()[..], b"copy 2");
    let outcome = dedup.handle(&again, |_, _| Box::pin(async { Ok(()) })).await.unwrap();
    assert_eq!(outcome, Handled::Duplicate);
    s.cleanup().await;
}

#[tokio::test]
async fn run_handles_deliveries_until_the_first_error() {
    let s = Setup::new().await;
    let id = unique("before-the-bad-one");
    s.publish(Some(&id), "good").await;
    s.publish(None, "bad").await;
    let dedup = IdempotentConsumer::new(MemoryStore::default());
    let (_ch, mut consumer) = s.consume().await;
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = runs.clone();
    let run = dedup.run(&mut consumer, move |_, _| {
        let counter = counter.clone();
        Box::pin(async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    });
    let err = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap_err();
    assert!(matches!(err, DedupError::MissingMessageId { .. }), "unexpected: {err:?}");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(dedup.store().contains(&id));
    s.wait_ready(&s.dead, 1).await;
    s.cleanup().await;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Handles one delivery whose store is down (or busy): a typed store error, and the message
/// is requeued, not acked and not dead-lettered.
async fn a_store_failure_requeues<S: DedupStore>(
    store: S,
    expected: impl FnOnce(&mq_patterns::dedup::StoreError) -> bool,
) {
    let s = Setup::new().await;
    let id = unique("store-down");
    s.publish(Some(&id), "keep me").await;
    let dedup = IdempotentConsumer::new(store);
    let (ch, mut consumer) = s.consume().await;
    let delivery = next(&mut consumer).await;
    let err = dedup.handle(&delivery, |_, _| Box::pin(async { Ok(()) })).await.unwrap_err();
    let DedupError::Store { message_id, source } = &err else { panic!("unexpected: {err:?}") };
    assert_eq!(*message_id, id);
    assert!(expected(source), "unexpected store error: {source:?}");
    // Requeued (nack requeue=true): it comes straight back, and stays once nobody consumes.
    let again = next(&mut consumer).await;
    assert!(again.redelivered());
    assert_eq!(again.properties().message_id, Some(id.as_str()));
    ch.close().await.unwrap();
    s.wait_ready(&s.work, 1).await;
    assert_eq!(s.ready(&s.dead).await, 0);
    s.cleanup().await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use mq_patterns::dedup::StoreError;
    use mq_patterns::dedup::sqlite::{SqliteConfig, SqliteStore};

    /// A database file in the temporary directory, removed (with its WAL files) on drop.
    pub(crate) struct TempDb(pub std::path::PathBuf);

    impl TempDb {
        pub(crate) fn new() -> Self {
            TempDb(std::env::temp_dir().join(format!("{}.db", unique("mq-dedup"))))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[tokio::test]
    async fn sqlite_store_processes_a_duplicate_id_once() {
        let db = TempDb::new();
        let store = SqliteStore::open(&db.0).await.unwrap();
        let ids = duplicates_are_processed_once(store.clone()).await;
        // Durable: a store opened afresh on the same file still knows the ids.
        drop(store);
        let reopened = SqliteStore::open(&db.0).await.unwrap();
        for id in &ids {
            assert!(reopened.contains(id).await.unwrap(), "{id} was forgotten");
        }
    }

    #[tokio::test]
    async fn a_busy_sqlite_database_is_a_typed_error_and_the_message_stays_queued() {
        let db = TempDb::new();
        let config = SqliteConfig { busy_timeout: Duration::from_millis(50), ..Default::default() };
        let store = SqliteStore::open_with(&db.0, config).await.unwrap();
        // Another process's writer holds the database's lock for the whole test.
        let holder = rusqlite::Connection::open(&db.0).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        a_store_failure_requeues(store, |e| matches!(e, StoreError::Sqlite(_))).await;
        holder.execute_batch("ROLLBACK").unwrap();
    }

    #[tokio::test]
    async fn a_table_name_that_is_not_an_identifier_is_refused() {
        let db = TempDb::new();
        let config = SqliteConfig { table: "x; DROP TABLE y".into(), ..Default::default() };
        let err = SqliteStore::open_with(&db.0, config).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidTable(_)), "unexpected: {err:?}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use mq_patterns::dedup::StoreError;
    use mq_patterns::dedup::postgres::PostgresStore;

    /// A table name no other test or run uses (a plain SQL identifier).
    fn unique_table(prefix: &str) -> String {
        unique(prefix).replace('-', "_")
    }

    /// A port on loopback where nothing listens (bound, then released).
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    pub(crate) fn params() -> String {
        std::env::var("PG_TEST_PARAMS").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
    }

    pub(crate) async fn drop_table(table: &str) {
        let (client, connection) = tokio_postgres::connect(&params(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.unwrap();
    }

    #[tokio::test]
    async fn postgres_store_processes_a_duplicate_id_once() {
        let table = unique_table("dedup_dup");
        let store =
            PostgresStore::connect(&params(), &table).await.expect("PostgreSQL must be running (scripts/postgres.sh)");
        let ids = duplicates_are_processed_once(store.clone()).await;
        // Durable: a store connected afresh still knows the ids, until they are purged.
        drop(store);
        let reopened = PostgresStore::connect(&params(), &table).await.unwrap();
        for id in &ids {
            assert!(reopened.contains(id).await.unwrap(), "{id} was forgotten");
        }
        assert_eq!(reopened.purge_older_than(Duration::ZERO).await.unwrap(), 3);
        assert!(!reopened.contains(&ids[0]).await.unwrap());
        drop_table(&table).await;
    }

    /// Two consumers sharing the database: the second begin of an id waits for the first
    /// transaction, then finds the id recorded (commit) or takes it over (rollback).
    #[tokio::test]
    async fn a_concurrent_begin_of_the_same_id_waits_for_the_first_transaction() {
        use mq_patterns::dedup::{Begun, Transaction};
        let table = unique_table("dedup_race");
        let store = PostgresStore::connect(&params(), &table).await.unwrap();
        let other = PostgresStore::connect(&params(), &table).await.unwrap();
        for commit in [true, false] {
            let id = unique("race");
            let Begun::Fresh(tx) = store.begin(&id).await.unwrap() else { panic!("{id} is new") };
            let waiting = {
                let (other, id) = (other.clone(), id.clone());
                tokio::spawn(async move { other.begin(&id).await.map(|b| matches!(b, Begun::AlreadyProcessed)) })
            };
            // Lower bound only: it is still waiting on the row lock after a while.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!waiting.is_finished(), "the second begin did not wait for the first transaction");
            if commit {
                tx.commit().await.unwrap();
            } else {
                drop(tx);
            }
            let found_recorded = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
            assert_eq!(found_recorded.unwrap(), commit);
        }
        drop_table(&table).await;
    }

    #[tokio::test]
    async fn a_postgres_store_that_is_down_is_a_typed_error_and_the_message_stays_queued() {
        let params = format!("host=127.0.0.1 port={} user=postgres dbname=test", closed_port());
        let store = PostgresStore::new(&params, "never_created").unwrap();
        a_store_failure_requeues(store, |e| matches!(e, StoreError::Unavailable(_))).await;
    }
}
