//! The SQLite outbox store, the embedded default: [`SqliteOutbox::enqueue`] writes a message
//! through the application's own `rusqlite::Transaction`, and [`SqliteOutbox`] is the relay's
//! side, on a connection of its own to the same database file. Touches SQLite only.
//!
//! SQLite has one writer at a time, so a claim cannot race another claim; the blocking calls
//! run on tokio's blocking pool so that a slow disk does not stall the runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};

use super::{OutboxCounts, OutboxMessage, OutboxRow, OutboxStore, StoreError, decode_headers};

/// The relay's side of an outbox in SQLite. Cheap to clone; clones share one connection.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::outbox::{OutboxMessage, sqlite::SqliteOutbox};
/// let outbox = SqliteOutbox::open("shop.db")?; // creates the outbox table if missing
/// let mut db = rusqlite::Connection::open("shop.db")?;
/// let tx = db.transaction()?;
/// tx.execute("INSERT INTO orders (id, total) VALUES (?1, ?2)", (17, 4200))?;
/// let id = SqliteOutbox::enqueue(&tx, &OutboxMessage::new("shop", "order.created", "17"))?;
/// tx.commit()?; // the order and its message, or neither
/// println!("message {id} is pending");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOutbox {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteOutbox {
    /// Opens the database at `path` for the relay (a 5 s busy timeout) and creates the outbox
    /// table if it is missing. Puts the database in write-ahead-log mode if it is not: best
    /// done by the application when it creates the database, since the switch needs the
    /// database to itself.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // First, so that switching the journal waits for the application's writers too.
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets the application write while the relay reads. Switching takes the database
        // for a moment, so it is done only when the mode is not WAL yet.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        }
        Self::from_connection(conn)
    }

    /// Uses `conn` for the relay, creating the outbox table if it is missing. Its busy timeout
    /// is how long a claim waits for the application's write transactions.
    pub fn from_connection(conn: Connection) -> Result<Self, StoreError> {
        Self::create_table(&conn)?;
        Ok(SqliteOutbox { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Creates the outbox table and its index if they are missing (also from a migration).
    pub fn create_table(conn: &Connection) -> Result<(), StoreError> {
        conn.execute_batch(SCHEMA)?;
        Ok(())
    }

    /// Writes `message` into the outbox within the application's transaction `tx` and returns
    /// its `message-id`. It becomes visible to the relay when, and only if, `tx` commits.
    pub fn enqueue(tx: &Transaction<'_>, message: &OutboxMessage) -> Result<String, StoreError> {
        let id = message.id_for_enqueue();
        tx.execute(
            "INSERT INTO mq_outbox (id, exchange, routing_key, content_type, headers, persistent, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id,
                message.exchange,
                message.routing_key,
                message.content_type,
                message.header_bytes()?,
                message.persistent,
                &message.body[..],
                now_ms(),
            ],
        )?;
        Ok(id)
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a call panicked mid-way; SQLite rolled its transaction
            // back, so the connection itself is still sound.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

impl OutboxStore for SqliteOutbox {
    async fn claim_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with_conn(move |conn| {
            claim(
                conn,
                "SELECT id FROM mq_outbox WHERE state = 'pending' AND last_attempt_at IS NULL ORDER BY seq LIMIT ?2",
                params![now_ms(), limit_i64(limit)],
            )
        })
        .await
    }

    async fn claim_unconfirmed(&self, older_than: Duration, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with_conn(move |conn| {
            let now = now_ms();
            let cutoff = now.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
            claim(
                conn,
                "SELECT id FROM mq_outbox WHERE state = 'pending' AND last_attempt_at <= ?3
                 ORDER BY last_attempt_at, seq LIMIT ?2",
                params![now, limit_i64(limit), cutoff],
            )
        })
        .await
    }

    async fn mark_sent(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut mark = tx
                    .prepare("UPDATE mq_outbox SET state = 'sent', sent_at = ?2 WHERE id = ?1 AND state = 'pending'")?;
                let now = now_ms();
                for id in &ids {
                    mark.execute(params![id, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn counts(&self) -> Result<OutboxCounts, StoreError> {
        self.with_conn(|conn| {
            let counts = conn.query_row(
                "SELECT
                   COUNT(*) FILTER (WHERE state = 'pending' AND last_attempt_at IS NULL),
                   COUNT(*) FILTER (WHERE state = 'pending' AND last_attempt_at IS NOT NULL),
                   COUNT(*) FILTER (WHERE state = 'sent')
                 FROM mq_outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
            )?;
            Ok(OutboxCounts {
                pending: u64::try_from(counts.0).unwrap_or(0),
                unconfirmed: u64::try_from(counts.1).unwrap_or(0),
                sent: u64::try_from(counts.2).unwrap_or(0),
            })
        })
        .await
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            let cutoff = now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
            let deleted = conn.execute("DELETE FROM mq_outbox WHERE state = 'sent' AND sent_at <= ?1", [cutoff])?;
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
        })
        .await
    }
}

/// Stamps the attempt on the rows `select` picks (with `?2` its limit) and returns them, in
/// one immediate transaction: the stamp and the read cannot be split by a crash.
fn claim(conn: &mut Connection, select: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<OutboxRow>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = format!(
        "UPDATE mq_outbox SET attempts = attempts + 1, last_attempt_at = ?1 WHERE id IN ({select})
         RETURNING seq, id, exchange, routing_key, content_type, headers, persistent, body, attempts"
    );
    let mut rows = {
        let mut stmt = tx.prepare(&sql)?;
        let raw = stmt.query_map(params, read_row)?.collect::<Result<Vec<_>, _>>()?;
        raw.into_iter().map(|(seq, raw)| Ok((seq, raw.into_row()?))).collect::<Result<Vec<_>, StoreError>>()?
    };
    tx.commit()?;
    rows.sort_by_key(|(seq, _)| *seq); // RETURNING has no defined order.
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// A row as SQLite returns it, before its headers are decoded.
struct RawRow {
    row: OutboxRow,
    headers: Option<Vec<u8>>,
}

impl RawRow {
    fn into_row(self) -> Result<OutboxRow, StoreError> {
        let headers = decode_headers(&self.row.id, self.headers.as_deref())?;
        Ok(OutboxRow { headers, ..self.row })
    }
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<(i64, RawRow)> {
    let row = OutboxRow {
        id: r.get(1)?,
        exchange: r.get(2)?,
        routing_key: r.get(3)?,
        content_type: r.get(4)?,
        headers: Default::default(),
        persistent: r.get(6)?,
        body: r.get::<_, Vec<u8>>(7)?.into(),
        attempts: r.get(8)?,
    };
    Ok((r.get(0)?, RawRow { row, headers: r.get(5)? }))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch: SQLite has no time type, and integers compare exactly.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mq_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    exchange        TEXT    NOT NULL,
    routing_key     TEXT    NOT NULL,
    content_type    TEXT,
    headers         BLOB,
    persistent      INTEGER NOT NULL,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    sent_at         INTEGER
);
CREATE INDEX IF NOT EXISTS mq_outbox_pending ON mq_outbox (last_attempt_at, seq) WHERE state = 'pending';
";
