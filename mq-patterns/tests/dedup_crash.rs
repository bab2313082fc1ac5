//! The idempotent consumer's acceptance test, against the real RabbitMQ: the consumer is
//! killed 1,000 times at seeded random points — in the handler after its effect is written,
//! after the id is committed and before the ack, at a random moment (its task aborted), or by
//! cutting its TCP connection — and restarted each time; in the end every message's effect
//! exists exactly once. The effect is a row written in the same transaction that records the
//! id, in SQLite and (a second test) in PostgreSQL. `DEDUP_CRASH_SEED` replays a run (the
//! seed is printed).
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp_client::api::{
    BasicPublishOptions, BasicQosOptions, Channel, Connection, QueueDeclareOptions, QueueDeleteOptions,
};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::dedup::{
    Begun, BoxError, BoxFuture, DedupStore, Handled, IdempotentConsumer, StoreError, Transaction,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

mod support;
use support::unique;

const KILLS: u32 = 1_000;
/// Messages are published in batches of this many, whenever fewer than `REFILL_BELOW` wait
/// to be processed: every round has fresh work to be killed in.
const BATCH: u32 = 100;
const REFILL_BELOW: i64 = 40;
const PREFETCH: u16 = 10;

fn broker_addr() -> String {
    std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

fn seed() -> u64 {
    match std::env::var("DEDUP_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("DEDUP_CRASH_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// A durable store under test, and the effects its handler writes in the same transaction.
trait Durable: DedupStore + Clone + 'static {
    /// Writes `id`'s effect (one row) through the open transaction.
    fn write_effect(tx: &mut Self::Tx, id: String) -> BoxFuture<'_, Result<(), BoxError>>;
    /// Each id that has an effect, with how many rows it has.
    fn effects(&self) -> BoxFuture<'_, Vec<(String, i64)>>;
    /// How many ids the store has recorded.
    fn recorded(&self) -> BoxFuture<'_, i64>;
}

/// Where a round's consumer dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    /// In the handler, its effect written and not committed: the effect must roll back.
    AfterEffect,
    /// The id and effect committed, the ack not sent: the redelivery must be recognised.
    AfterCommit,
    /// The consumer's task aborted a seeded number of microseconds after its first
    /// delivery, at whatever await point it is, and its connection cut.
    RandomAbort,
    /// The TCP connection cut a seeded number of microseconds after the first delivery; the
    /// consumer is left to run into the dead connection.
    ConnectionCut,
}

/// One round's kill: at the `countdown`-th time (from 0) its point is reached.
struct Plan {
    point: Option<KillPoint>,
    countdown: AtomicU32,
    fired: Notify,
    started: Notify,
}

impl Plan {
    fn new(point: Option<KillPoint>, countdown: u32) -> Arc<Self> {
        Arc::new(Plan { point, countdown: AtomicU32::new(countdown), fired: Notify::new(), started: Notify::new() })
    }

    /// At the planned point, tells the killer and never returns (the killer aborts the task).
    async fn checkpoint(&self, point: KillPoint) {
        if self.point != Some(point) {
            return;
        }
        if self.countdown.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            self.fired.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// The store under test with the kill checkpoint after a commit: real store, real commit,
/// then the task stops where only the ack is missing. Counts the ids it finds recorded.
struct Killable<S> {
    inner: S,
    plan: Arc<Plan>,
    stats: Arc<Stats>,
}

struct KillableTx<T> {
    inner: T,
    plan: Arc<Plan>,
}

impl<S: DedupStore> DedupStore for Killable<S>
where
    S::Tx: 'static,
{
    type Tx = KillableTx<S::Tx>;

    fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<Self::Tx>, StoreError>> {
        Box::pin(async move {
            Ok(match self.inner.begin(message_id).await? {
                Begun::Fresh(inner) => Begun::Fresh(KillableTx { inner, plan: self.plan.clone() }),
                Begun::AlreadyProcessed => {
                    self.stats.recognised.fetch_add(1, Ordering::Relaxed);
                    Begun::AlreadyProcessed
                }
                Begun::InProgress => Begun::InProgress,
            })
        })
    }
}

impl<T: Transaction + 'static> Transaction for KillableTx<T> {
    fn commit(self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.commit().await?;
            self.plan.checkpoint(KillPoint::AfterCommit).await;
            Ok(())
        })
    }
}

/// A TCP forwarder for one client connection to the broker; aborting its task drops both
/// sockets at once, as a crashed process's kernel would.
struct Link {
    port: u16,
    task: JoinHandle<()>,
}

impl Link {
    async fn new() -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let Ok(mut server) = TcpStream::connect(broker_addr()).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        Link { port, task }
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn cut(&self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Stats {
    processed: AtomicU64,
    /// Redeliveries the store recognised (counted before their ack, which a kill may stop).
    recognised: AtomicU64,
    /// Redeliveries acked without processing and reported so.
    duplicates: AtomicU64,
    requeued: AtomicU64,
    redelivered: AtomicU64,
    errors: AtomicU64,
}

/// One consumer's life: consume and handle until the connection dies or the task is aborted.
async fn consume<D: Durable>(uri: String, queue: String, store: D, plan: Arc<Plan>, stats: Arc<Stats>)
where
    D::Tx: 'static,
{
    let Ok(conn) = Connection::connect(&uri).await else { return };
    let Ok(ch) = conn.open_channel().await else { return };
    if ch.basic_qos(PREFETCH, BasicQosOptions::default()).await.is_err() {
        return;
    }
    let Ok(mut consumer) = ch.basic_consume(&queue, Default::default(), &FieldTable::new()).await else { return };
    let dedup = IdempotentConsumer::new(Killable { inner: store, plan: plan.clone(), stats: stats.clone() });
    while let Some(delivery) = consumer.next_delivery().await {
        plan.started.notify_one();
        if delivery.redelivered() {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let plan = plan.clone();
        let outcome = dedup
            .handle(&delivery, move |d, tx: &mut KillableTx<D::Tx>| {
                let id = d.properties().message_id.unwrap_or_default().to_owned();
                Box::pin(async move {
                    D::write_effect(&mut tx.inner, id).await?;
                    plan.checkpoint(KillPoint::AfterEffect).await;
                    Ok(())
                })
            })
            .await;
        let counter = match outcome {
            Ok(Handled::Processed) => &stats.processed,
            Ok(Handled::Duplicate) => &stats.duplicates,
            Ok(Handled::Requeued) => &stats.requeued,
            // The connection was cut under it: the broker requeues whatever was unacked.
            Err(_) => &stats.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes ids m-`first` .. m-`first + BATCH`, persistent and confirmed.
async fn publish_batch(admin: &Channel, queue: &str, first: u32) {
    let mut confirms = Vec::new();
    for n in first..first + BATCH {
        let id = format!("m-{n}");
        let props = BasicProperties { message_id: Some(&id), delivery_mode: Some(2), ..Default::default() };
        confirms
            .push(admin.basic_publish("", queue, BasicPublishOptions::default(), &props, id.clone()).await.unwrap());
    }
    for confirm in confirms {
        confirm.wait().await.unwrap();
    }
}

async fn ready(ch: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count
}

/// Runs one round with a kill at `point`, and kills it; false if the point was never
/// reached (nothing left to process) and the round was killed on a timeout instead.
async fn killed_round<D: Durable>(
    queue: &str,
    store: &D,
    stats: &Arc<Stats>,
    point: KillPoint,
    rng: &mut fastrand::Rng,
) -> bool
where
    D::Tx: 'static,
{
    let countdown = rng.u64(..3) as u32;
    let delay = Duration::from_micros(rng.u64(..2_000));
    let plan = Plan::new(Some(point), countdown);
    let link = Link::new().await;
    let task = tokio::spawn(consume(link.uri(), queue.to_owned(), store.clone(), plan.clone(), stats.clone()));
    let give_up = Duration::from_secs(2);
    let reached = match point {
        KillPoint::AfterEffect | KillPoint::AfterCommit => {
            tokio::time::timeout(give_up, plan.fired.notified()).await.is_ok()
        }
        KillPoint::RandomAbort | KillPoint::ConnectionCut => {
            let started = tokio::time::timeout(give_up, plan.started.notified()).await.is_ok();
            tokio::time::sleep(delay).await;
            started
        }
    };
    let mut task = task;
    if point == KillPoint::ConnectionCut {
        link.cut();
        // The consumer runs into the dead socket and ends by itself; if it has not noticed
        // within 5 s, it is aborted like the others.
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_ok() {
            return reached;
        }
    }
    task.abort();
    link.cut();
    let _ = task.await;
    reached
}

/// The whole test on one store: publish, kill 1,000 times, drain, check every effect.
async fn crash_test<D: Durable>(store: D, name: &str, queue: &str)
where
    D::Tx: 'static,
{
    let seed = seed();
    println!("dedup crash test ({name}): seed {seed} (set DEDUP_CRASH_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let began = Instant::now();

    let admin_conn = Connection::connect(&format!("amqp://guest:guest@{}/%2f", broker_addr()))
        .await
        .expect("RabbitMQ must be running");
    let admin = admin_conn.open_channel().await.unwrap();
    // A run that fails leaves no queue behind: unused for ten minutes, the broker drops it.
    let mut expires = FieldTable::new();
    expires.insert("x-expires", 600_000i64);
    admin.queue_declare(queue, QueueDeclareOptions::default(), &expires).await.unwrap();

    admin.confirm_select().await.unwrap();
    let mut published = 0u32;
    let stats = Arc::new(Stats::default());
    let mut kills: BTreeMap<KillPoint, u32> = BTreeMap::new();
    let mut reached_after_commit = 0u64;
    let mut unreached = 0;
    for _ in 0..KILLS {
        if i64::from(published) - store.recorded().await < REFILL_BELOW {
            publish_batch(&admin, queue, published).await;
            published += BATCH;
        }
        let point = match rng.u64(..100) {
            0..35 => KillPoint::AfterCommit,
            35..60 => KillPoint::AfterEffect,
            60..85 => KillPoint::RandomAbort,
            _ => KillPoint::ConnectionCut,
        };
        match killed_round(queue, &store, &stats, point, &mut rng).await {
            true if point == KillPoint::AfterCommit => reached_after_commit += 1,
            true => {}
            false => unreached += 1,
        }
        *kills.entry(point).or_default() += 1;
    }
    let after_kills = began.elapsed();

    // The last consumer lives: it drains the queue, redeliveries of the last kills included.
    let plan = Plan::new(None, 0);
    let survivor = tokio::spawn(consume(
        format!("amqp://guest:guest@{}/%2f", broker_addr()),
        queue.to_owned(),
        store.clone(),
        plan,
        stats.clone(),
    ));
    // Done when every published id has its effect and nothing is ready; or, with a bug that
    // loses messages, when nothing has moved for a second (the assertions then say what).
    let (mut last, mut still) = (-1, 0);
    for _ in 0..1_200 {
        let effects = store.effects().await.len() as i64;
        if ready(&admin, queue).await == 0 {
            if effects == i64::from(published) || still >= 20 {
                break;
            }
            still = if effects == last { still + 1 } else { 0 };
        }
        last = effects;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything it was given it handled before its next delivery; let it see the rest.
    tokio::time::sleep(Duration::from_millis(300)).await;
    survivor.abort();
    let _ = survivor.await;
    let elapsed = began.elapsed();

    let rows = store.effects().await;
    let recorded = store.recorded().await;

    let recognised = stats.recognised.load(Ordering::Relaxed);
    println!(
        "dedup crash test ({name}): {} kills {kills:?} ({unreached} on a timeout, nothing left to reach), {published} messages, \
         {} processed and acked, {recognised} redeliveries recognised by the store ({} acked as duplicates before \
         the next kill), {} redeliveries in all, {} requeued as in progress, {} handle errors from cut connections; \
         kills took {after_kills:.2?}, all {elapsed:.2?}",
        kills.values().sum::<u32>(),
        stats.processed.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.redelivered.load(Ordering::Relaxed),
        stats.requeued.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );

    assert_eq!(kills.values().sum::<u32>(), KILLS);
    let duplicated: Vec<_> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(duplicated.is_empty(), "effects not exactly once: {duplicated:?}");
    let ids: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let expected: HashSet<String> = (0..published).map(|n| format!("m-{n}")).collect();
    let mut missing: Vec<_> = expected.iter().filter(|id| !ids.contains(id.as_str())).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} ids have no effect, among them {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(ids.len(), expected.len(), "effects of ids never published");
    assert_eq!(recorded, i64::from(published), "every id recorded once");
    // Every kill after a commit left a recorded, unacked message, which came back and was
    // recognised rather than processed again.
    assert!(reached_after_commit > 0);
    assert!(recognised >= reached_after_commit, "{recognised} recognised < {reached_after_commit} kills after commit");
    // Nothing is left in the broker: every message was acked in the end.
    assert_eq!(ready(&admin, queue).await, 0);

    admin.queue_delete(queue, QueueDeleteOptions::default()).await.unwrap();
    admin_conn.close().await.unwrap();
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use mq_patterns::dedup::sqlite::{SqliteStore, SqliteTx};

    impl Durable for SqliteStore {
        fn write_effect(tx: &mut SqliteTx, id: String) -> BoxFuture<'_, Result<(), BoxError>> {
            Box::pin(async move {
                tx.execute(move |db| db.execute("INSERT INTO effects (id) VALUES (?1)", [id])).await?;
                Ok(())
            })
        }

        fn effects(&self) -> BoxFuture<'_, Vec<(String, i64)>> {
            Box::pin(async move {
                let rows = self.with_connection(|db| {
                    let mut stmt = db.prepare("SELECT id, count(*) FROM effects GROUP BY id")?;
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
                });
                rows.await.unwrap()
            })
        }

        fn recorded(&self) -> BoxFuture<'_, i64> {
            let sql = "SELECT count(*) FROM mq_processed_messages";
            Box::pin(async move { self.with_connection(move |db| db.query_row(sql, [], |r| r.get(0))).await.unwrap() })
        }
    }

    /// The database file and its WAL files, removed on drop (a failed run's too).
    struct TempDb(std::path::PathBuf);

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_killed_1000_times_every_message_is_processed_exactly_once() {
        let queue = unique("dedup-crash-sqlite");
        let db = TempDb(std::env::temp_dir().join(format!("{queue}.db")));
        let store = SqliteStore::open(&db.0).await.unwrap();
        store.with_connection(|db| db.execute_batch("CREATE TABLE effects (id TEXT NOT NULL)")).await.unwrap();
        crash_test(store, "SQLite", &queue).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use mq_patterns::dedup::postgres::{PgTx, PostgresStore};

    /// The PostgreSQL store with this test's own tables, and a connection to read them.
    #[derive(Clone)]
    struct Pg {
        store: PostgresStore,
        reader: Arc<tokio_postgres::Client>,
        ids: String,
        effects: String,
    }

    impl DedupStore for Pg {
        type Tx = PgTx;

        fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<PgTx>, StoreError>> {
            self.store.begin(message_id)
        }
    }

    /// The effects table of this process's test (one per process, so a fixed name).
    fn effects_table() -> String {
        format!("dedup_crash_effects_{}", std::process::id())
    }

    impl Durable for Pg {
        fn write_effect(tx: &mut PgTx, id: String) -> BoxFuture<'_, Result<(), BoxError>> {
            Box::pin(async move {
                let sql = format!("INSERT INTO {} (id) VALUES ($1)", effects_table());
                tx.client().execute(&sql, &[&id]).await?;
                Ok(())
            })
        }

        fn effects(&self) -> BoxFuture<'_, Vec<(String, i64)>> {
            Box::pin(async move {
                let sql = format!("SELECT id, count(*) FROM {} GROUP BY id", self.effects);
                let rows = self.reader.query(&sql, &[]).await.unwrap();
                rows.iter().map(|r| (r.get(0), r.get(1))).collect()
            })
        }

        fn recorded(&self) -> BoxFuture<'_, i64> {
            Box::pin(async move {
                let sql = format!("SELECT count(*) FROM {}", self.ids);
                self.reader.query_one(&sql, &[]).await.unwrap().get(0)
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_killed_1000_times_every_message_is_processed_exactly_once() {
        let params = std::env::var("PG_TEST_PARAMS")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
        let (reader, connection) = tokio_postgres::connect(&params, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must be running (scripts/postgres.sh)");
        tokio::spawn(connection);
        let (ids, effects) = (format!("dedup_crash_ids_{}", std::process::id()), effects_table());
        reader.batch_execute(&format!("CREATE TABLE {effects} (id TEXT NOT NULL)")).await.unwrap();
        let store = PostgresStore::connect(&params, &ids).await.unwrap();
        let pg = Pg { store, reader: Arc::new(reader), ids: ids.clone(), effects: effects.clone() };
        crash_test(pg.clone(), "PostgreSQL", &unique("dedup-crash-pg")).await;
        pg.reader.batch_execute(&format!("DROP TABLE {effects}; DROP TABLE {ids}")).await.unwrap();
    }
}
