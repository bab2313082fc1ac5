//! The production durable de-duplication store: processed ids in a PostgreSQL table, each
//! recorded in the same transaction as the handler's own writes ([`PgTx::client`]). Keeps a
//! few idle connections; a transaction that is dropped uncommitted closes its connection,
//! and the server rolls it back.
//!
//! The guarantee: an id survives restarts once its transaction commits, and a handler that
//! writes its effects through [`PgTx::client`] has them committed together with the id, so
//! each message's effect lands exactly once, also with several consumers (a second insert of
//! the same id waits for the first transaction and then finds it). Not guaranteed: effects the
//! handler makes elsewhere (at-least-once). Connections are plain TCP (no TLS).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};

use super::{Begun, BoxFuture, DedupStore, StoreError, Transaction, checked_table};

/// Connections kept open between transactions.
const MAX_IDLE: usize = 4;

/// Processed ids in a PostgreSQL table. Cheap to clone; clones share the idle connections.
///
/// ```no_run
/// # async fn demo(delivery: amqp_client::api::Delivery) -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::dedup::IdempotentConsumer;
/// use mq_patterns::dedup::postgres::PostgresStore;
///
/// let store = PostgresStore::connect("host=127.0.0.1 user=postgres dbname=test", "processed").await?;
/// let dedup = IdempotentConsumer::new(store);
/// dedup
///     .handle(&delivery, |d, tx| {
///         let body = d.body().to_vec();
///         Box::pin(async move {
///             // Committed together with the message id, or not at all.
///             tx.client().execute("INSERT INTO orders (body) VALUES ($1)", &[&body]).await?;
///             Ok(())
///         })
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    table: String,
    created: OnceCell<()>,
    idle: Mutex<Vec<Client>>,
}

impl PostgresStore {
    /// A store on the database that `params` names (libpq's `key=value` form or a
    /// `postgresql://` URL), recording ids in `table`. Connects on first use, so it can be
    /// made while the database is down: each call then fails with a typed error.
    pub fn new(params: &str, table: &str) -> Result<Self, StoreError> {
        let table = checked_table(table)?.to_owned();
        let mut config: Config =
            params.parse().map_err(|e: tokio_postgres::Error| StoreError::Unavailable(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let shared = Shared { config, table, created: OnceCell::new(), idle: Mutex::new(Vec::new()) };
        Ok(PostgresStore { shared: Arc::new(shared) })
    }

    /// Like [`PostgresStore::new`], then connects and creates the table, so that a database
    /// that is down or refuses the user fails here.
    pub async fn connect(params: &str, table: &str) -> Result<Self, StoreError> {
        let store = PostgresStore::new(params, table)?;
        let client = store.checkout().await?;
        store.checkin(client);
        Ok(store)
    }

    /// Whether `message_id` is recorded as processed.
    pub async fn contains(&self, message_id: &str) -> Result<bool, StoreError> {
        let client = self.checkout().await?;
        let sql = format!("SELECT count(*) FROM {} WHERE id = $1", self.shared.table);
        let count: i64 = client.query_one(&sql, &[&message_id]).await?.get(0);
        self.checkin(client);
        Ok(count > 0)
    }

    /// Forgets ids processed more than `age` ago, and says how many. A redelivery of a
    /// forgotten id is processed again, so keep `age` well above the longest time a message
    /// can spend in the broker.
    pub async fn purge_older_than(&self, age: Duration) -> Result<u64, StoreError> {
        let client = self.checkout().await?;
        let sql = format!("DELETE FROM {} WHERE processed_at < now() - make_interval(secs => $1)", self.shared.table);
        let removed = client.execute(&sql, &[&age.as_secs_f64()]).await?;
        self.checkin(client);
        Ok(removed)
    }

    /// An idle connection, or a new one; the table exists once this returns.
    async fn checkout(&self) -> Result<Client, StoreError> {
        let idle = self.shared.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let client = match idle.filter(|c| !c.is_closed()) {
            Some(client) => client,
            None => self.open().await?,
        };
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            self.shared.table
        );
        self.shared.created.get_or_try_init(|| async { client.batch_execute(&create).await }).await?;
        Ok(client)
    }

    async fn open(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            self.shared.config.connect(NoTls).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // The connection ends when its client is dropped (or the server goes away).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Keeps a connection that is outside any transaction for the next call.
    fn checkin(&self, client: Client) {
        let mut idle = self.shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE && !client.is_closed() {
            idle.push(client);
        }
    }

    async fn begin_on(&self, message_id: &str) -> Result<Begun<PgTx>, StoreError> {
        let client = self.checkout().await?;
        let insert = format!("INSERT INTO {} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", self.shared.table);
        client.batch_execute("BEGIN").await?;
        // Waits while another transaction holds the same id, then sees whether it committed.
        if client.execute(&insert, &[&message_id]).await? == 0 {
            client.batch_execute("ROLLBACK").await?;
            self.checkin(client);
            return Ok(Begun::AlreadyProcessed);
        }
        Ok(Begun::Fresh(PgTx { client, store: self.clone() }))
    }
}

impl DedupStore for PostgresStore {
    type Tx = PgTx;

    fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<PgTx>, StoreError>> {
        Box::pin(self.begin_on(message_id))
    }
}

/// An open PostgreSQL transaction that has recorded one id; the handler writes through
/// [`PgTx::client`]. Dropped uncommitted, it closes its connection, which the server takes
/// as a rollback.
#[derive(Debug)]
pub struct PgTx {
    client: Client,
    store: PostgresStore,
}

impl PgTx {
    /// The connection, inside the transaction: statements run here commit with the id.
    /// (Do not commit or roll back through it; [`Transaction::commit`] does.)
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Transaction for PgTx {
    fn commit(self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            self.client.batch_execute("COMMIT").await?;
            self.store.checkin(self.client);
            Ok(())
        })
    }
}
