//! The embedded durable de-duplication store: processed ids in a SQLite table, each recorded
//! in the same transaction as the handler's own writes ([`SqliteTx::execute`]). SQLite's
//! calls block, so every one runs on tokio's blocking pool.
//!
//! The guarantee: an id survives restarts once its transaction commits, and a handler that
//! writes its effects through [`SqliteTx::execute`] has them committed together with the id,
//! so each message's effect lands exactly once. Not guaranteed: effects the handler makes
//! elsewhere (at-least-once), and throughput: one store holds one connection, so the
//! messages it de-duplicates are processed one at a time (open one store per consumer for
//! more; SQLite itself then serialises the writers, waiting up to `busy_timeout`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{Begun, BoxFuture, DedupStore, StoreError, Transaction, checked_table};

/// How a [`SqliteStore`] opens its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The table of processed ids (created if missing).
    pub table: String,
    /// How long a write waits for another connection's lock before it fails as busy.
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig { table: "mq_processed_messages".into(), busy_timeout: Duration::from_secs(5) }
    }
}

/// Processed ids in a SQLite database. Cheap to clone; clones share the one connection.
///
/// ```no_run
/// # async fn demo(delivery: amqp_client::api::Delivery) -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::dedup::IdempotentConsumer;
/// use mq_patterns::dedup::sqlite::SqliteStore;
///
/// let store = SqliteStore::open("processed.db").await?;
/// store.with_connection(|db| db.execute_batch("CREATE TABLE IF NOT EXISTS orders (body BLOB)")).await?;
/// let dedup = IdempotentConsumer::new(store);
/// dedup
///     .handle(&delivery, |d, tx| {
///         let body = d.body().to_vec();
///         Box::pin(async move {
///             // Committed together with the message id, or not at all.
///             tx.execute(move |db| db.execute("INSERT INTO orders (body) VALUES (?1)", [body])).await?;
///             Ok(())
///         })
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    table: Arc<str>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` with the default [`SqliteConfig`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        SqliteStore::open_with(path, SqliteConfig::default()).await
    }

    /// Opens (or creates) the database at `path`, and its table of processed ids.
    pub async fn open_with(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let table = checked_table(&config.table)?;
        let path = path.as_ref().to_owned();
        let create =
            format!("CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY NOT NULL, processed_at INTEGER NOT NULL)");
        let conn = blocking(move || {
            let conn = Connection::open(path)?;
            conn.busy_timeout(config.busy_timeout)?;
            // WAL: readers do not block the writer, and a commit costs one sync, not several.
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.execute_batch(&create)?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), table: table.into() })
    }

    /// Runs `f` on the store's connection outside any transaction: to create the handler's
    /// tables, or to read what it wrote.
    pub async fn with_connection<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let guard = self.conn.clone().lock_owned().await;
        blocking(move || {
            roll_back_leftover(&guard);
            f(&guard)
        })
        .await
    }

    /// Whether `message_id` is recorded as processed.
    pub async fn contains(&self, message_id: &str) -> Result<bool, StoreError> {
        let sql = format!("SELECT count(*) FROM {} WHERE id = ?1", self.table);
        let id = message_id.to_owned();
        self.with_connection(move |db| db.query_row(&sql, [id], |row| row.get::<_, i64>(0)).map(|n| n > 0)).await
    }

    /// Forgets ids processed more than `age` ago, and says how many. A redelivery of a
    /// forgotten id is processed again, so keep `age` well above the longest time a message
    /// can spend in the broker.
    pub async fn purge_older_than(&self, age: Duration) -> Result<usize, StoreError> {
        let sql = format!("DELETE FROM {} WHERE processed_at < ?1", self.table);
        let cutoff = unix_seconds().saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
        self.with_connection(move |db| db.execute(&sql, [cutoff])).await
    }
}

impl DedupStore for SqliteStore {
    type Tx = SqliteTx;

    fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<SqliteTx>, StoreError>> {
        let insert =
            format!("INSERT INTO {} (id, processed_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING", self.table);
        let id = message_id.to_owned();
        Box::pin(async move {
            let guard = self.conn.clone().lock_owned().await;
            let (guard, inserted) = blocking_with(guard, move |db| {
                roll_back_leftover(db);
                // IMMEDIATE takes the write lock now, so a busy database fails here, before the
                // handler runs, rather than at commit.
                db.execute_batch("BEGIN IMMEDIATE")?;
                db.execute(&insert, rusqlite::params![id, unix_seconds()])
            })
            .await?;
            if inserted == 0 {
                blocking_with(guard, |db| db.execute_batch("ROLLBACK")).await?;
                return Ok(Begun::AlreadyProcessed);
            }
            Ok(Begun::Fresh(SqliteTx { conn: Some(guard) }))
        })
    }
}

/// An open SQLite transaction that has recorded one id; the handler writes through it. It
/// holds the store's connection until it commits or is dropped (which rolls it back), so a
/// handler must not call the store's other methods (they would wait for it forever).
#[derive(Debug)]
pub struct SqliteTx {
    /// `None` once a blocking call that held it failed: the transaction is then lost.
    conn: Option<OwnedMutexGuard<Connection>>,
}

impl SqliteTx {
    /// Runs `f` on the connection inside this transaction, on the blocking pool. If `f`
    /// fails, the transaction is rolled back and lost: later calls and the commit fail.
    pub async fn execute<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let guard = self.conn.take().ok_or_else(lost)?;
        let (guard, value) = blocking_with(guard, f).await?;
        self.conn = Some(guard);
        Ok(value)
    }
}

impl Transaction for SqliteTx {
    fn commit(mut self) -> BoxFuture<'static, Result<(), StoreError>> {
        let guard = self.conn.take();
        Box::pin(async move {
            let guard = guard.ok_or_else(lost)?;
            blocking_with(guard, |db| db.execute_batch("COMMIT")).await.map(drop)
        })
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(guard) = self.conn.take() {
            // The guard travels with the rollback, so the next transaction waits for it.
            let roll_back = move || roll_back_leftover(&guard);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(roll_back)),
                Err(_) => roll_back(),
            }
        }
    }
}

/// A transaction left open by a task aborted while its blocking call ran (the call finished
/// and dropped the guard) is rolled back before the connection is used again.
fn roll_back_leftover(db: &Connection) {
    if !db.is_autocommit() {
        let _ = db.execute_batch("ROLLBACK");
    }
}

fn lost() -> StoreError {
    StoreError::Task("the transaction was lost with a failed blocking call".into())
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

/// Runs `f` on the guarded connection on the blocking pool and hands the guard back.
async fn blocking_with<T, F>(
    guard: OwnedMutexGuard<Connection>,
    f: F,
) -> Result<(OwnedMutexGuard<Connection>, T), StoreError>
where
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(move || {
        let result = f(&guard);
        if result.is_err() {
            // A failed statement ends the transaction: holding SQLite's write lock until the
            // connection's next use would stall every other writer of the file.
            roll_back_leftover(&guard);
        }
        (guard, result)
    })
    .await
    {
        Ok((guard, Ok(value))) => Ok((guard, value)),
        Ok((_, Err(e))) => Err(e.into()),
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

fn unix_seconds() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}
