//! The chaos test of recovery (issue #8): 20,000 messages published with confirms through a
//! recovering confirm-mode channel, consumed through a recovering consumer and the idempotent
//! consumer, while two fault proxies — one in front of the publisher's connection, one in
//! front of the consumer's — end each connection at 50 seeded points with a mix of FIN
//! cuts, RSTs and cuts after a random number of bytes (mid-frame, most often). It runs once
//! with the in-memory store and once with the SQLite one.
//!
//! Shown: every confirm resolves Ok, every published id is processed exactly once, and every
//! copy left in the queue (re-sent publishes, unacked redeliveries) is recognised as a
//! duplicate; the run ends by itself, or fails after [`DEADLINE`].
//!
//! The seed is printed; `CHAOS_SEED=<seed>` repeats the same fault plan (where each fault
//! falls in the message stream, its kind and its byte count). The interleaving with the
//! network and the broker is not reproducible, so a failure may need a few runs to repeat.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amqp_client::api::*;
use amqp_codec::{BasicProperties, FieldTable};
use mq_patterns::dedup::sqlite::SqliteStore;
use mq_patterns::dedup::{AckableDelivery, DedupError, DedupStore, Handled, IdempotentConsumer, MemoryStore};
use mq_patterns::recovery::*;
use tests::proxy::{Direction, Proxy};
use tests::unique_name;
use tokio::sync::mpsc;

const MESSAGES: usize = 20_000;
const FAULTS: usize = 50;
/// Generous: a run takes seconds. Reaching it fails the test with where each side stood.
const DEADLINE: Duration = Duration::from_secs(240);
/// How long an armed cut-after may take to end its connection (its bytes may be slow to
/// come) before a plain cut replaces it.
const ARMED_FOR: Duration = Duration::from_secs(3);

fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(seed) => seed.trim().parse().expect("CHAOS_SEED is a u64"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Cut,
    Reset,
    CutAfter(Direction, u64),
}

/// `FAULTS` faults at sorted points of a side's progress, clear of both ends of the stream
/// so that traffic still flows to carry an armed cut.
fn plan(rng: &mut fastrand::Rng) -> Vec<(usize, Fault)> {
    let mut points: Vec<usize> = (0..FAULTS).map(|_| 200 + rng.u64(..MESSAGES as u64 - 1200) as usize).collect();
    points.sort_unstable();
    let fault = |rng: &mut fastrand::Rng| match rng.u64(..4) {
        0 => Fault::Cut,
        1 => Fault::Reset,
        2 => Fault::CutAfter(Direction::Upstream, 1 + rng.u64(..2048)),
        _ => Fault::CutAfter(Direction::Downstream, 1 + rng.u64(..2048)),
    };
    points.into_iter().map(|p| (p, fault(rng))).collect()
}

/// One side's chaos: its proxy, its plan, how far its worker got, and the faults made.
struct Chaos {
    side: &'static str,
    proxy: Proxy,
    plan: Vec<(usize, Fault)>,
    progress: AtomicUsize,
    made: AtomicUsize,
    /// Armed cuts whose bytes never came, replaced by a plain cut.
    replaced: AtomicUsize,
    done: AtomicBool,
}

impl Chaos {
    async fn new(side: &'static str, rng: &mut fastrand::Rng) -> Arc<Self> {
        Arc::new(Chaos {
            side,
            proxy: Proxy::start(tests::broker_addr()).await,
            plan: plan(rng),
            progress: AtomicUsize::new(0),
            made: AtomicUsize::new(0),
            replaced: AtomicUsize::new(0),
            done: AtomicBool::new(false),
        })
    }

    fn options(&self) -> ConnectionOptions {
        let uri = format!("amqp://guest:guest@{}/%2f", self.proxy.addr());
        ConnectionOptions::from_uri(&uri).unwrap().connection_name(unique_name(&format!("chaos-{}", self.side)))
    }

    /// Called by the worker before each step: it may run past one planned point whose fault
    /// is not made yet (the fault lands amid its traffic), not two, so that every fault falls
    /// while the stream still flows however fast the worker is.
    async fn step(&self) {
        let at = self.progress.fetch_add(1, Ordering::SeqCst) + 1;
        let passed = self.plan.iter().filter(|(p, _)| *p < at).count();
        while passed > self.made.load(Ordering::SeqCst) + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Makes each planned fault once the worker reaches its point and the connection is up,
    /// and waits until it has ended that connection and recovery has brought up the next.
    async fn drive(self: Arc<Self>, conn: RecoveringConnection) {
        for (k, (point, fault)) in self.plan.iter().enumerate() {
            while self.progress.load(Ordering::SeqCst) < *point {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let up = conn.wait_until_up().await.unwrap();
            match fault {
                Fault::Cut => self.proxy.cut(),
                Fault::Reset => self.proxy.reset(),
                Fault::CutAfter(direction, bytes) => self.proxy.cut_after(*direction, *bytes),
            }
            self.made.store(k + 1, Ordering::SeqCst);
            if !ended(&up, ARMED_FOR).await {
                if let Fault::CutAfter(direction, _) = fault {
                    self.proxy.cut_after(*direction, u64::MAX); // disarm
                }
                self.replaced.fetch_add(1, Ordering::SeqCst);
                self.proxy.cut();
                assert!(ended(&up, ARMED_FOR).await, "{} fault {k} ({fault:?}) ended its connection", self.side);
            }
            let next = conn.wait_until_up().await.unwrap();
            assert!(next.generation() > up.generation(), "{}: recovered after fault {k}", self.side);
        }
        // The counter follows the link coming up by a hair.
        let counted = async {
            while conn.stats().recoveries < FAULTS as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), counted).await.unwrap();
        self.done.store(true, Ordering::SeqCst);
    }

    fn kinds(&self) -> String {
        let count = |f: fn(&Fault) -> bool| self.plan.iter().filter(|(_, x)| f(x)).count();
        let (cut, reset) = (count(|f| *f == Fault::Cut), count(|f| *f == Fault::Reset));
        let up = count(|f| matches!(f, Fault::CutAfter(Direction::Upstream, _)));
        let down = count(|f| matches!(f, Fault::CutAfter(Direction::Downstream, _)));
        let replaced = self.replaced.load(Ordering::SeqCst);
        format!("{cut} cut, {reset} reset, {up} cut-after up, {down} cut-after down ({replaced} too slow, cut instead)")
    }
}

/// Whether the client connection `conn` ends within `within`.
async fn ended(conn: &Connection, within: Duration) -> bool {
    tokio::time::timeout(within, conn.closed()).await.is_ok()
}

fn recovery_options() -> RecoveryOptions {
    let backoff = Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200), max_attempts: None };
    RecoveryOptions::default().backoff(backoff).wait(Duration::from_secs(30))
}

/// What the consumer saw.
#[derive(Debug, Default)]
struct Consumed {
    /// How many times the handler ran for each message-id: the effect to be exactly once.
    effects: HashMap<String, u32>,
    deliveries: usize,
    /// Duplicates recognised: broker redeliveries (flagged), and copies of re-sent publishes.
    redeliveries_recognised: usize,
    copies_recognised: usize,
    /// Acks that failed because the delivery's connection was gone (it comes back).
    lost_acks: usize,
}

/// Where a run stands, for the summary and for a run that hits the deadline.
struct Run {
    seed: u64,
    publisher: Arc<Chaos>,
    consumer: Arc<Chaos>,
    confirmed: AtomicUsize,
    processed: AtomicUsize,
}

impl Run {
    fn standing(&self) -> String {
        let side = |c: &Chaos| {
            format!(
                "{} at {} with {} faults made",
                c.side,
                c.progress.load(Ordering::SeqCst),
                c.made.load(Ordering::SeqCst)
            )
        };
        format!(
            "seed {}: {}, {} confirmed; {}, {} processed",
            self.seed,
            side(&self.publisher),
            self.confirmed.load(Ordering::SeqCst),
            side(&self.consumer),
            self.processed.load(Ordering::SeqCst)
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_messages_through_fifty_cuts_each_side_are_processed_exactly_once() {
    chaos_with(MemoryStore::new(100_000, Duration::from_secs(3600)), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_chaos_with_the_sqlite_store() {
    let db = TempDb(std::env::temp_dir().join(format!("{}.db", unique_name("chaos-dedup"))));
    chaos_with(SqliteStore::open(&db.0).await.unwrap(), "SQLite").await;
}

/// A SQLite database file that goes with the test, passed or failed.
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

async fn chaos_with<S: DedupStore + 'static>(store: S, name: &str) {
    let seed = seed();
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} repeats this fault plan), {name} store");
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = Arc::new(Run {
        seed,
        publisher: Chaos::new("publisher", &mut rng).await,
        consumer: Chaos::new("consumer", &mut rng).await,
        confirmed: AtomicUsize::new(0),
        processed: AtomicUsize::new(0),
    });
    let outcome = tokio::time::timeout(DEADLINE, chaos(run.clone(), store, name)).await;
    assert!(outcome.is_ok(), "the chaos run did not end within {DEADLINE:?}: {}", run.standing());
}

async fn chaos<S: DedupStore + 'static>(run: Arc<Run>, store: S, name: &str) {
    let started = Instant::now();
    let queue = unique_name("chaos-q");
    // Not exclusive, so that it outlives each connection; it expires if a failed run leaves it.
    let mut arguments = FieldTable::new();
    arguments.insert("x-expires", 600_000i32);
    let declare = |ch: RecoveringChannel| {
        let (queue, arguments) = (queue.clone(), arguments.clone());
        async move { ch.queue_declare(&queue, QueueDeclareOptions::default(), &arguments).await.unwrap() }
    };

    let pub_conn = RecoveringConnection::connect(vec![run.publisher.options()], recovery_options()).await.unwrap();
    let pub_ch = pub_conn.open_channel().await.unwrap();
    pub_ch.confirm_select().await.unwrap();
    declare(pub_ch.clone()).await;
    let con_conn = RecoveringConnection::connect(vec![run.consumer.options()], recovery_options()).await.unwrap();
    let con_ch = con_conn.open_channel().await.unwrap();
    declare(con_ch.clone()).await;
    con_ch.basic_qos(200, BasicQosOptions::default()).await.unwrap();
    let consumer = con_ch.basic_consume(&queue, BasicConsumeOptions::default(), &FieldTable::new()).await.unwrap();

    let pub_faults = tokio::spawn(run.publisher.clone().drive(pub_conn.clone()));
    let con_faults = tokio::spawn(run.consumer.clone().drive(con_conn.clone()));
    let dedup = Arc::new(IdempotentConsumer::new(store));
    let consuming = tokio::spawn(consume(run.clone(), con_conn.clone(), consumer, dedup.clone()));
    let (published, ids) = publish(run.clone(), &pub_ch, &queue).await;
    pub_faults.await.unwrap();
    let consumed = consuming.await.unwrap();
    con_faults.await.unwrap();

    let (pub_stats, con_stats) = (pub_conn.stats(), con_conn.stats());
    pub_conn.close().await.unwrap();
    con_conn.close().await.unwrap();
    let leftovers = drain_leftovers(&queue, &dedup).await;

    let resent = published.iter().filter(|p| p.resent()).count();
    eprintln!(
        "chaos ({name} store): seed {} | publisher: {} faults ({}), {} disconnects | consumer: {} faults ({}), {} disconnects | \
         {MESSAGES} messages, {resent} re-sent publishes ({} re-sends), {} redeliveries and {} re-sent copies recognised \
         (+{leftovers} left in the queue), {} acks lost with their connection, {} deliveries | {:.1?}",
        run.seed,
        run.publisher.made.load(Ordering::SeqCst),
        run.publisher.kinds(),
        pub_stats.disconnects,
        run.consumer.made.load(Ordering::SeqCst),
        run.consumer.kinds(),
        con_stats.disconnects,
        pub_stats.republished,
        consumed.redeliveries_recognised,
        consumed.copies_recognised,
        consumed.lost_acks,
        consumed.deliveries,
        started.elapsed(),
    );

    assert_eq!(published.len(), MESSAGES, "every confirm resolved Ok");
    assert_eq!(ids.len(), MESSAGES, "every message has its own id");
    let processed: HashSet<&String> = consumed.effects.keys().collect();
    let missing = ids.iter().filter(|id| !processed.contains(id)).count();
    assert_eq!(missing, 0, "no published message is lost");
    let unknown = consumed.effects.keys().filter(|id| !ids.contains(*id)).count();
    assert_eq!(unknown, 0, "nothing unpublished is processed");
    let twice: Vec<_> = consumed.effects.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "each message is processed exactly once: {twice:?}");
    for (chaos, stats) in [(&run.publisher, pub_stats), (&run.consumer, con_stats)] {
        assert_eq!(chaos.made.load(Ordering::SeqCst), FAULTS, "{} made every fault", chaos.side);
        assert!(stats.disconnects >= FAULTS as u64, "{}: each fault ended a connection: {stats:?}", chaos.side);
        assert_eq!(stats.recoveries, stats.disconnects, "{}: each loss was recovered: {stats:?}", chaos.side);
    }
    assert!(resent as u64 <= pub_stats.republished);
}

/// Publishes `MESSAGES` numbered messages (their ids stamped by the channel) and waits for
/// every confirm, in order, on a task of its own so that publishing never waits for one.
async fn publish(run: Arc<Run>, ch: &RecoveringChannel, queue: &str) -> (Vec<Published>, HashSet<String>) {
    let (tx, mut confirms) = mpsc::unbounded_channel::<RecoveringConfirm>();
    let waiter = {
        let run = run.clone();
        tokio::spawn(async move {
            let mut published = Vec::with_capacity(MESSAGES);
            while let Some(confirm) = confirms.recv().await {
                let id = confirm.message_id().to_owned();
                match confirm.wait().await {
                    Ok(p) => published.push(p),
                    Err(error) => panic!("the publish of {id} failed: {error}"),
                }
                run.confirmed.fetch_add(1, Ordering::SeqCst);
            }
            published
        })
    };
    let mut ids = HashSet::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        run.publisher.step().await;
        let props = BasicProperties::default();
        let confirm = ch.basic_publish("", queue, BasicPublishOptions::default(), &props, i.to_string()).await;
        let confirm = confirm.unwrap_or_else(|e| {
            let up = ch.current().map(|c| (c.connection().generation(), c.close_reason()));
            panic!("publish {i} was refused: {e} (channel now {up:?}; {})", run.standing())
        });
        ids.insert(confirm.message_id().to_owned());
        tx.send(confirm).unwrap();
    }
    drop(tx);
    (waiter.await.unwrap(), ids)
}

/// Consumes until every message is processed and the consumer side's faults are all made.
async fn consume<S: DedupStore>(
    run: Arc<Run>,
    conn: RecoveringConnection,
    mut consumer: RecoveringConsumer,
    dedup: Arc<IdempotentConsumer<S>>,
) -> Consumed {
    let effects = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let mut seen = Consumed::default();
    while run.processed.load(Ordering::SeqCst) < MESSAGES || !run.consumer.done.load(Ordering::SeqCst) {
        // Wake now and then to see whether it is over: the last deliveries may be long gone.
        let next = tokio::time::timeout(Duration::from_millis(50), consumer.next_delivery()).await;
        let Ok(delivery) = next else { continue };
        let delivery = delivery.expect("the recovering consumer goes on through every fault");
        run.consumer.step().await;
        seen.deliveries += 1;
        let (effects, run) = (effects.clone(), run.clone());
        let outcome = dedup
            .handle(&delivery, move |d, _tx| {
                let id = d.message_id().unwrap_or_default().to_owned();
                Box::pin(async move {
                    let mut effects = effects.lock().unwrap();
                    let runs = effects.entry(id).or_default();
                    *runs += 1;
                    if *runs == 1 {
                        run.processed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                })
            })
            .await;
        match outcome {
            Ok(Handled::Processed) => {}
            Ok(Handled::Duplicate) if delivery.redelivered() => seen.redeliveries_recognised += 1,
            Ok(Handled::Duplicate) => seen.copies_recognised += 1,
            // Processed (or recognised) and committed, but the ack went with the connection:
            // refused as stale once recovery has replaced it, or failed as it went.
            Err(DedupError::Recovery(RecoveryError::StaleDelivery { .. })) => seen.lost_acks += 1,
            Err(DedupError::Recovery(RecoveryError::Client(amqp_client::Error::Connection(_)))) => seen.lost_acks += 1,
            other => panic!(
                "delivery {:?} of generation {} (now {:?}): {other:?}",
                delivery.message_id(),
                delivery.generation(),
                conn.current().map(|c| c.generation())
            ),
        }
    }
    seen.effects = std::mem::take(&mut effects.lock().unwrap());
    seen
}

/// After both connections closed: every message still in the queue (copies of re-sent
/// publishes, deliveries unacked at the close) is recognised by the store. Returns how many.
async fn drain_leftovers<S: DedupStore>(queue: &str, dedup: &IdempotentConsumer<S>) -> usize {
    let (conn, ch) = tests::channel().await;
    let mut leftovers = 0;
    while let Some(delivery) = ch.basic_get(queue, false).await.unwrap() {
        let outcome = dedup.handle(&delivery, |_, _| Box::pin(async { Err("processed again".into()) })).await;
        assert_eq!(outcome.unwrap(), Handled::Duplicate, "{:?} was left and is recognised", delivery.message_id());
        leftovers += 1;
    }
    let left = ch.queue_delete(queue, QueueDeleteOptions::default()).await.unwrap();
    assert_eq!(left, 0, "the queue is empty at the end");
    conn.close().await.unwrap();
    leftovers
}
