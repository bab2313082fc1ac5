//! The outbox on PostgreSQL (the local server, database `test`; `scripts/postgres.sh` starts it)
//! against the real RabbitMQ: relays killed between publish and mark-sent lose nothing and the
//! idempotent consumer (PostgreSQL store) processes each of 10,000 messages once; a rolled back
//! business change sends nothing; a relay whose database connection dies, or whose server is
//! down, gets a typed error with nothing published, marked or lost. Each test works in a
//! schema of its own, dropped at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod outbox_scenario;

use amqp_client::api::{Connection, QueueDeclareOptions};
use amqp_client::codec::FieldTable;
use mq_patterns::confirms::{ConfirmingPublisher, RetryPolicy};
use mq_patterns::dedup::IdempotentConsumer;
use mq_patterns::dedup::postgres::PostgresStore;
use mq_patterns::outbox::postgres::PostgresOutbox;
use mq_patterns::outbox::{OutboxCounts, OutboxMessage, OutboxStore, Relay, RelayConfig, RelayError, StoreError};
use outbox_scenario::{Broker, Run, assert_exactly_once, unique, uri};
use tokio_postgres::{Client, NoTls};

fn base_params() -> String {
    std::env::var("PG_TEST_PARAMS").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

async fn client(params: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(params, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be running (scripts/postgres.sh): {e}"));
    tokio::spawn(connection);
    client
}

/// A schema of this test's own; `params` put every connection's tables there.
struct Schema {
    name: String,
    params: String,
    admin: Client,
}

impl Schema {
    async fn new() -> Self {
        let admin = client(&base_params()).await;
        let name = unique("outbox").replace('-', "_");
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let params = format!("{} options='-c search_path={name}'", base_params());
        let app = client(&params).await;
        app.batch_execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, item TEXT NOT NULL)").await.unwrap();
        PostgresOutbox::create_table(&app).await.unwrap();
        Schema { name, params, admin }
    }

    /// Params that also name the connection, so that the test can find it and end it.
    fn named(&self, application: &str) -> String {
        format!("{} application_name={application}", self.params)
    }

    async fn drop(self) {
        self.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await.unwrap();
    }
}

/// Places orders `from..to`, `per_tx` in each transaction, each with its message to
/// `exchange` with `routing_key`.
async fn place_orders(params: &str, exchange: &str, routing_key: &str, from: i64, to: i64, per_tx: i64) -> Vec<String> {
    let mut app = client(params).await;
    let mut ids = Vec::new();
    for start in (from..to).step_by(per_tx as usize) {
        let tx = app.transaction().await.unwrap();
        for order in start..(start + per_tx).min(to) {
            tx.execute("INSERT INTO orders (id, item) VALUES ($1, 'book')", &[&order]).await.unwrap();
            let message = OutboxMessage::new(exchange, routing_key, format!("order {order}"));
            ids.push(PostgresOutbox::enqueue(&tx, &message).await.unwrap());
        }
        tx.commit().await.unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_killed_between_publish_and_mark_sent_lose_nothing_and_each_message_is_processed_once() {
    const MESSAGES: u64 = 10_000;
    const KILLS: usize = 8;
    let seed = outbox_scenario::seed();
    println!("outbox kill test (PostgreSQL): seed {seed} (replay with OUTBOX_SEED={seed})");
    let schema = Schema::new().await;
    let broker = Broker::new("outbox-kill-pg").await;
    let producer = {
        let (params, exchange) = (schema.params.clone(), broker.exchange.clone());
        tokio::spawn(async move { place_orders(&params, &exchange, "", 0, MESSAGES as i64, 50).await })
    };
    let open = || {
        let params = schema.params.clone();
        async move { PostgresOutbox::connect(&params).await.unwrap() }
    };
    // Four consumers share the store's connection pool, as workers of one service would.
    let dedup = IdempotentConsumer::new(PostgresStore::connect(&schema.params, "processed").await.unwrap());

    let (outcome, ids, tally) = broker
        .relay_killed_and_restarted(open, producer, dedup, Run { messages: MESSAGES, kills: KILLS, seed, workers: 4 })
        .await;

    println!("{MESSAGES} messages, {outcome}");
    assert_exactly_once(&outcome, &ids, &tally, MESSAGES);
    let app = client(&schema.params).await;
    let recorded: i64 = app.query_one("SELECT count(*) FROM processed", &[]).await.unwrap().get(0);
    assert_eq!(recorded as u64, MESSAGES, "the dedup store recorded every id once");
    drop(app);
    schema.drop().await;
}

#[tokio::test]
async fn a_rolled_back_business_change_takes_its_message_with_it() {
    let schema = Schema::new().await;
    let mut app = client(&schema.params).await;
    let tx = app.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id, item) VALUES (1, 'book')", &[]).await.unwrap();
    PostgresOutbox::enqueue(&tx, &OutboxMessage::new("", "nowhere", "order 1")).await.unwrap();
    tx.rollback().await.unwrap();
    let tx = app.transaction().await.unwrap();
    PostgresOutbox::enqueue(&tx, &OutboxMessage::new("", "nowhere", "order 2")).await.unwrap();
    tx.commit().await.unwrap();
    let store = PostgresOutbox::connect(&schema.params).await.unwrap();
    assert_eq!(store.counts().await.unwrap(), OutboxCounts { pending: 1, unconfirmed: 0, sent: 0 });
    drop((app, store));
    schema.drop().await;
}

#[tokio::test]
async fn a_relay_whose_database_connection_dies_gets_a_typed_error_and_nothing_is_marked_or_lost() {
    let schema = Schema::new().await;
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.unwrap();
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare(&unique("outbox-pg-down"), exclusive, &FieldTable::new()).await.unwrap().name;
    let ids = place_orders(&schema.params, "", &queue, 0, 20, 20).await;
    let application = unique("outbox_relay").replace('-', "_");
    let store = PostgresOutbox::connect(&schema.named(&application)).await.unwrap();
    let publisher = ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 100, RetryPolicy::default());
    let relay = Relay::new(store, publisher.await.unwrap(), RelayConfig::default());

    // The server ends the relay's session, as a restart or failover would.
    let ended: bool = schema
        .admin
        .query_one(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended, "the relay's session was found and ended");
    let err = relay.relay_pending().await.unwrap_err();
    assert!(matches!(err, RelayError::Store(StoreError::Postgres(_))), "{err:?}");

    assert!(ch.basic_get(&queue, true).await.unwrap().is_none(), "nothing was published");
    let fresh = PostgresOutbox::connect(&schema.params).await.unwrap();
    assert_eq!(fresh.counts().await.unwrap(), OutboxCounts { pending: 20, unconfirmed: 0, sent: 0 });
    let publisher = ConfirmingPublisher::new(conn.open_channel().await.unwrap(), 100, RetryPolicy::default());
    let relay = Relay::new(fresh, publisher.await.unwrap(), RelayConfig::default());
    assert_eq!(relay.relay_pending().await.unwrap().sent, 20, "a relay with a working session sends everything");
    let mut got = Vec::new();
    while let Some(d) = ch.basic_get(&queue, true).await.unwrap() {
        got.push(d.properties().message_id.unwrap().to_owned());
    }
    assert_eq!(got, ids);
    assert_eq!(relay.store().purge_sent(std::time::Duration::from_secs(3600)).await.unwrap(), 0, "sent too recently");
    assert_eq!(relay.store().purge_sent(std::time::Duration::ZERO).await.unwrap(), 20);
    conn.close().await.unwrap();
    drop(relay);
    schema.drop().await;
}

#[tokio::test]
async fn a_relay_store_on_a_server_that_is_down_is_a_typed_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err =
        PostgresOutbox::connect(&format!("host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=5"))
            .await
            .unwrap_err();
    assert!(matches!(err, StoreError::Postgres(_)), "{err:?}");
}
