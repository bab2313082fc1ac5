//! The outbox's acceptance scenario, shared by the SQLite and PostgreSQL tests: relays are
//! killed (their task aborted, their connection dropped) at seeded random points between a
//! publish and its mark-sent, restarted, and an idempotent consumer still processes every
//! message exactly once, checked by id.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp_client::api::{BasicQosOptions, Channel, Connection, Consumer, ExchangeDeclareOptions, QueueDeclareOptions};
use amqp_client::codec::FieldTable;
use mq_patterns::confirms::{ConfirmingPublisher, RetryPolicy};
use mq_patterns::dedup::{DedupStore, Handled, IdempotentConsumer};
use mq_patterns::outbox::{OutboxCounts, OutboxStore, Relay, RelayConfig, RelayError};
use tokio::task::JoinHandle;

pub fn uri() -> String {
    let addr = std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".into());
    format!("amqp://guest:guest@{addr}/%2f")
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The seed: `OUTBOX_SEED` to replay a run, else the clock.
pub fn seed() -> u64 {
    match std::env::var("OUTBOX_SEED") {
        Ok(s) => s.parse().expect("OUTBOX_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// splitmix64: enough randomness for kill points, and reproducible from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the consumer saw.
#[derive(Default)]
pub struct Tally {
    /// Times the handler ran, per message id.
    pub processed: HashMap<String, u32>,
    /// Deliveries from the broker, duplicates included.
    pub deliveries: u64,
    /// Deliveries the idempotent consumer recognised and acked without processing.
    pub duplicates: u64,
    /// Deliveries requeued because another consumer held the same id at that moment.
    pub requeued: u64,
}

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Messages enqueued, each in a business transaction.
    pub messages: u64,
    /// Relays killed before the last one finishes.
    pub kills: usize,
    /// Seeds the kill points.
    pub seed: u64,
    /// Consumers sharing the idempotent consumer.
    pub workers: usize,
}

/// One kill of a relay.
#[derive(Debug)]
pub struct Kill {
    /// Rows marked sent when the kill was triggered.
    pub after_sent: u64,
    /// Publishes of the killed relay that it had not marked sent: the broker has these
    /// messages, and the sweep sends them again.
    pub published_unmarked: u64,
}

/// The numbers of one run.
#[derive(Debug)]
pub struct Outcome {
    pub kills: Vec<Kill>,
    pub deliveries: u64,
    pub duplicates: u64,
    pub requeued: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kills: Vec<_> = self.kills.iter().map(|k| format!("{}/{}", k.after_sent, k.published_unmarked)).collect();
        write!(
            f,
            "{} kills (sent when killed / published and unmarked: {}), {} deliveries, {} re-sends recognised, {} requeued while another consumer held the id, {:.2?}",
            self.kills.len(),
            kills.join(" "),
            self.deliveries,
            self.duplicates,
            self.requeued,
            self.elapsed,
        )
    }
}

/// A fanout exchange for the run into the consumer's queue and a witness queue that nobody
/// consumes: its length counts every message the broker took, re-sends included. All owned
/// by the consumer's connection.
pub struct Broker {
    conn: Connection,
    admin: Channel,
    pub exchange: String,
    queue: String,
    witness: String,
}

impl Broker {
    pub async fn new(prefix: &str) -> Self {
        let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
        let admin = conn.open_channel().await.unwrap();
        let (exchange, queue, witness) = (unique(prefix), unique(prefix), unique(&format!("{prefix}-witness")));
        let auto_delete = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
        admin.exchange_declare(&exchange, "fanout", auto_delete, &FieldTable::new()).await.unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
        for q in [&queue, &witness] {
            admin.queue_declare(q, exclusive, &FieldTable::new()).await.unwrap();
            admin.queue_bind(q, &exchange, "", false, &FieldTable::new()).await.unwrap();
        }
        Broker { conn, admin, exchange, queue, witness }
    }

    async fn ready(&self, queue: &str) -> u64 {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        self.admin.queue_declare(queue, passive, &FieldTable::new()).await.unwrap().message_count.into()
    }

    /// Messages the broker took so far, re-sends included, less the rows marked sent: it
    /// grows when a relay publishes and drops back when it marks.
    async fn published_beyond_sent<S: OutboxStore>(&self, observer: &S) -> (i64, u64) {
        // Both at once: the slower this check, the likelier a batch is marked before the kill.
        let (counts, published) = tokio::join!(observer.counts(), self.ready(&self.witness));
        let sent = counts.unwrap().sent;
        (published as i64 - sent as i64, sent)
    }

    /// The same once a killed relay's last publishes have all reached the witness queue (the
    /// broker routes them after its channel is gone): two reads 50 ms apart agree.
    async fn settled_beyond_sent<S: OutboxStore>(&self, observer: &S) -> (i64, u64) {
        let mut last = self.published_beyond_sent(observer).await;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.published_beyond_sent(observer).await;
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Runs the scenario: `kills` relays are started over stores from `open_store`, each
    /// killed once the outbox has `sent` a seeded random number of rows and the relay has
    /// published rows it has not marked yet (the witness queue says so), then a last relay
    /// finishes the outbox; `workers` consumers process through `dedup`. `producer` enqueues the
    /// messages (in business transactions) and yields their ids; the relays start once it is done.
    pub async fn relay_killed_and_restarted<S, F, Fut, D>(
        self,
        open_store: F,
        producer: JoinHandle<Vec<String>>,
        dedup: IdempotentConsumer<D>,
        run: Run,
    ) -> (Outcome, Vec<String>, Tally)
    where
        S: OutboxStore + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = S>,
        D: DedupStore + 'static,
    {
        let Run { messages, kills, seed, workers } = run;
        let started = Instant::now();
        let mut rng = Rng::new(seed);
        let config = RelayConfig {
            batch: 500,
            poll_interval: Duration::from_millis(20),
            resend_after: Duration::from_millis(1_000),
        };
        let tally = Arc::new(Mutex::new(Tally::default()));
        let consumers = self.spawn_consumers(dedup, workers, Arc::clone(&tally)).await;
        let observer = open_store().await;
        // All the business changes are committed first, so that every relay works on full
        // batches: with a slow producer, each row would be marked almost as soon as published.
        let ids = producer.await.unwrap();
        println!("phase: {} messages committed with their business changes at {:.2?}", ids.len(), started.elapsed());

        let mut points: Vec<u64> = (0..kills).map(|_| messages / 10 + rng.below(messages * 8 / 10)).collect();
        points.sort_unstable();
        let mut record = Vec::new();
        for point in points {
            // No relay runs here, so this is what earlier relays and re-sends left.
            let (baseline, _) = self.settled_beyond_sent(&observer).await;
            let relay = start_relay(open_store().await, config).await;
            wait_until(&observer, |c| c.sent >= point).await;
            // Kill only between publish and mark: this relay has published rows it has not
            // marked yet. The point lies below the number of messages, so that comes.
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.published_beyond_sent(&observer).await.0 <= baseline {
                assert!(Instant::now() < deadline, "the relay never published beyond what it marked");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            relay.kill().await;
            let (beyond, after_sent) = self.settled_beyond_sent(&observer).await;
            let published_unmarked = u64::try_from(beyond - baseline).unwrap_or(0);
            record.push(Kill { after_sent, published_unmarked });
        }

        println!("phase: {kills} kills done at {:.2?}", started.elapsed());
        let last = start_relay(open_store().await, config).await;
        wait_until(&observer, |c| c.sent == messages && c.pending == 0 && c.unconfirmed == 0).await;
        last.kill().await;
        println!("phase: every row marked sent at {:.2?}", started.elapsed());
        self.wait_until_drained(&tally, messages).await;
        println!("phase: consumer drained at {:.2?}", started.elapsed());
        for consumer in consumers {
            consumer.abort();
            let _ = consumer.await;
        }
        self.conn.close().await.unwrap();

        let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
        let outcome = Outcome {
            kills: record,
            deliveries: tally.deliveries,
            duplicates: tally.duplicates,
            requeued: tally.requeued,
            elapsed: started.elapsed(),
        };
        (outcome, ids, tally)
    }

    /// `workers` consumers on channels of their own sharing one idempotent consumer, as a
    /// service with several workers runs: a re-sent copy may reach one while another holds
    /// the id.
    async fn spawn_consumers<D: DedupStore + 'static>(
        &self,
        dedup: IdempotentConsumer<D>,
        workers: usize,
        tally: Arc<Mutex<Tally>>,
    ) -> Vec<JoinHandle<()>> {
        let dedup = Arc::new(dedup);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let ch = self.conn.open_channel().await.unwrap();
            ch.basic_qos(200, BasicQosOptions::default()).await.unwrap();
            let consumer = ch.basic_consume(&self.queue, Default::default(), &FieldTable::new()).await.unwrap();
            tasks.push(tokio::spawn(consume(Arc::clone(&dedup), consumer, Arc::clone(&tally))));
        }
        tasks
    }

    /// Waits until every id was processed, the queue is empty and no delivery came for a
    /// while: re-sent copies still on their way are counted too.
    async fn wait_until_drained(&self, tally: &Mutex<Tally>, messages: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = (u64::MAX, Instant::now());
        loop {
            assert!(Instant::now() < deadline, "the consumer never drained the queue");
            let (processed, deliveries) = {
                let t = tally.lock().unwrap();
                (t.processed.len() as u64, t.deliveries)
            };
            if deliveries != last.0 {
                last = (deliveries, Instant::now());
            } else if processed == messages
                && last.1.elapsed() > Duration::from_millis(500)
                && self.ready(&self.queue).await == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn consume<D: DedupStore>(dedup: Arc<IdempotentConsumer<D>>, mut consumer: Consumer, tally: Arc<Mutex<Tally>>) {
    while let Some(delivery) = consumer.next_delivery().await {
        let processed = Arc::clone(&tally);
        let handled = dedup
            .handle(&delivery, move |d, _tx| {
                Box::pin(async move {
                    let id = d.properties().message_id.unwrap_or_default().to_owned();
                    *processed.lock().unwrap().processed.entry(id).or_default() += 1;
                    Ok(())
                })
            })
            .await
            .unwrap();
        let mut t = tally.lock().unwrap();
        t.deliveries += 1;
        match handled {
            Handled::Processed => {}
            Handled::Duplicate => t.duplicates += 1,
            Handled::Requeued => t.requeued += 1,
        }
    }
}

/// A running relay: its own connection (as a relay process has) and its task.
struct RunningRelay {
    conn: Connection,
    task: JoinHandle<RelayError>,
}

impl RunningRelay {
    /// Kills it as a crash would: the task stops at whatever await it is in, and its
    /// connection goes away with the unconfirmed publishes.
    async fn kill(self) {
        self.task.abort();
        if let Ok(failed) = self.task.await {
            panic!("the relay stopped on its own before the kill: {failed}");
        }
        let _ = self.conn.close().await;
    }
}

async fn start_relay<S: OutboxStore + 'static>(store: S, config: RelayConfig) -> RunningRelay {
    let conn = Connection::connect(&uri()).await.unwrap();
    let publisher = ConfirmingPublisher::new(conn.open_channel().await.unwrap(), config.batch, RetryPolicy::default())
        .await
        .unwrap();
    let relay = Relay::new(store, publisher, config);
    let task = tokio::spawn(async move {
        match relay.run().await {
            Err(failed) => failed,
        }
    });
    RunningRelay { conn, task }
}

async fn wait_until<S: OutboxStore>(store: &S, done: impl Fn(OutboxCounts) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.counts().await.unwrap();
        if done(counts) {
            return;
        }
        assert!(Instant::now() < deadline, "the outbox never got there: {counts:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The acceptance checks: every id processed exactly once, and re-sends really happened and
/// were recognised.
pub fn assert_exactly_once(outcome: &Outcome, ids: &[String], tally: &Tally, messages: u64) {
    assert_eq!(ids.len() as u64, messages);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len() as u64, messages, "ids are distinct");
    assert_eq!(tally.processed.len() as u64, messages, "every message was processed");
    for id in ids {
        assert_eq!(tally.processed.get(id), Some(&1), "{id} processed exactly once");
    }
    // A kill can still land during a mark, which then completes (the database call it had
    // sent is not cancelled): about one in twenty did on a quiet machine, up to half on a
    // loaded one. A quarter must land between a publish and its mark.
    let in_window = outcome.kills.iter().filter(|k| k.published_unmarked > 0).count();
    assert!(in_window * 4 >= outcome.kills.len(), "kills fell between a publish and its mark: {:?}", outcome.kills);
    assert!(outcome.duplicates > 0, "re-sent rows reached the consumer and were recognised: {outcome:?}");
    assert_eq!(
        outcome.deliveries,
        messages + outcome.duplicates + outcome.requeued,
        "each delivery was processed, recognised or requeued"
    );
}
