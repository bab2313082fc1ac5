//! The PostgreSQL outbox store, for production: [`PostgresOutbox::enqueue`] writes a message
//! through the application's own `tokio_postgres::Transaction`, and [`PostgresOutbox`] is the
//! relay's side, on a client of its own. Touches PostgreSQL only.
//!
//! Claims take `FOR UPDATE SKIP LOCKED`, so several relays on one outbox publish disjoint
//! batches; times are the server's (`now()`), so relays on machines with skewed clocks agree
//! on what is stale. The table lives in the client's `search_path` (one schema per service,
//! or per test).

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, GenericClient, NoTls, Row, Transaction};

use super::{OutboxCounts, OutboxMessage, OutboxRow, OutboxStore, StoreError, decode_headers};

/// The relay's side of an outbox in PostgreSQL. Cheap to clone; clones share one client.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mq_patterns::outbox::{OutboxMessage, postgres::PostgresOutbox};
/// let outbox = PostgresOutbox::connect("host=127.0.0.1 user=postgres dbname=shop").await?;
/// let (mut app, connection) = tokio_postgres::connect("host=127.0.0.1 user=postgres dbname=shop", tokio_postgres::NoTls).await?;
/// tokio::spawn(connection);
/// let tx = app.transaction().await?;
/// tx.execute("INSERT INTO orders (id, total) VALUES ($1, $2)", &[&17i64, &4200i64]).await?;
/// let id = PostgresOutbox::enqueue(&tx, &OutboxMessage::new("shop", "order.created", "17")).await?;
/// tx.commit().await?; // the order and its message, or neither
/// println!("message {id} is pending; {:?}", outbox.counts().await?);
/// # Ok(()) }
/// # use mq_patterns::outbox::OutboxStore;
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOutbox {
    client: Arc<Client>,
}

impl PostgresOutbox {
    /// Connects without TLS (`config` as `tokio_postgres::connect` takes it, e.g.
    /// `host=127.0.0.1 user=postgres dbname=shop`), drives the connection on a spawned task,
    /// and creates the outbox table if it is missing.
    pub async fn connect(config: &str) -> Result<Self, StoreError> {
        let (client, connection) = tokio_postgres::connect(config, NoTls).await?;
        // The task ends when the client is dropped or the server goes away; the error, if any,
        // reaches the relay through its next query.
        tokio::spawn(connection);
        Self::new(client).await
    }

    /// Uses `client` for the relay, creating the outbox table if it is missing.
    pub async fn new(client: Client) -> Result<Self, StoreError> {
        Self::create_table(&client).await?;
        Ok(PostgresOutbox { client: Arc::new(client) })
    }

    /// Creates the outbox table and its index if they are missing (also from a migration).
    pub async fn create_table(client: &impl GenericClient) -> Result<(), StoreError> {
        client.batch_execute(SCHEMA).await?;
        Ok(())
    }

    /// Writes `message` into the outbox within the application's transaction `tx` and returns
    /// its `message-id`. It becomes visible to the relay when, and only if, `tx` commits.
    pub async fn enqueue(tx: &Transaction<'_>, message: &OutboxMessage) -> Result<String, StoreError> {
        let id = message.id_for_enqueue();
        tx.execute(
            "INSERT INTO mq_outbox (id, exchange, routing_key, content_type, headers, persistent, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &message.exchange,
                &message.routing_key,
                &message.content_type,
                &message.header_bytes()?,
                &message.persistent,
                &&message.body[..],
            ],
        )
        .await?;
        Ok(id)
    }
}

impl OutboxStore for PostgresOutbox {
    async fn claim_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = claim_sql("last_attempt_at IS NULL ORDER BY seq LIMIT $1");
        let rows = self.client.query(&sql, &[&limit_i64(limit)]).await?;
        rows_in_order(rows)
    }

    async fn claim_unconfirmed(&self, older_than: Duration, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let sql =
            claim_sql("last_attempt_at <= now() - make_interval(secs => $2) ORDER BY last_attempt_at, seq LIMIT $1");
        let rows = self.client.query(&sql, &[&limit_i64(limit), &older_than.as_secs_f64()]).await?;
        rows_in_order(rows)
    }

    async fn mark_sent(&self, ids: &[String]) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE mq_outbox SET state = 'sent', sent_at = now() WHERE id = ANY($1) AND state = 'pending'",
                &[&ids],
            )
            .await?;
        Ok(())
    }

    async fn counts(&self) -> Result<OutboxCounts, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT
                   count(*) FILTER (WHERE state = 'pending' AND last_attempt_at IS NULL),
                   count(*) FILTER (WHERE state = 'pending' AND last_attempt_at IS NOT NULL),
                   count(*) FILTER (WHERE state = 'sent')
                 FROM mq_outbox",
                &[],
            )
            .await?;
        let count = |i: usize| row.try_get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
        Ok(OutboxCounts { pending: count(0)?, unconfirmed: count(1)?, sent: count(2)? })
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StoreError> {
        let deleted = self
            .client
            .execute(
                "DELETE FROM mq_outbox WHERE state = 'sent' AND sent_at <= now() - make_interval(secs => $1)",
                &[&older_than.as_secs_f64()],
            )
            .await?;
        Ok(deleted)
    }
}

/// One statement that picks pending rows by `condition`, stamps the attempt and returns them:
/// the stamp and the read cannot be split by a crash, and locked rows are skipped.
fn claim_sql(condition: &str) -> String {
    format!(
        "UPDATE mq_outbox SET attempts = attempts + 1, last_attempt_at = now()
         WHERE id IN (SELECT id FROM mq_outbox WHERE state = 'pending' AND {condition} FOR UPDATE SKIP LOCKED)
         RETURNING seq, id, exchange, routing_key, content_type, headers, persistent, body, attempts"
    )
}

fn rows_in_order(rows: Vec<Row>) -> Result<Vec<OutboxRow>, StoreError> {
    let mut read = rows.iter().map(read_row).collect::<Result<Vec<_>, _>>()?;
    read.sort_by_key(|(seq, _)| *seq); // RETURNING has no defined order.
    Ok(read.into_iter().map(|(_, row)| row).collect())
}

fn read_row(r: &Row) -> Result<(i64, OutboxRow), StoreError> {
    let id: String = r.try_get(1)?;
    let headers: Option<Vec<u8>> = r.try_get(5)?;
    let row = OutboxRow {
        headers: decode_headers(&id, headers.as_deref())?,
        id,
        exchange: r.try_get(2)?,
        routing_key: r.try_get(3)?,
        content_type: r.try_get(4)?,
        persistent: r.try_get(6)?,
        body: r.try_get::<_, Vec<u8>>(7)?.into(),
        attempts: u32::try_from(r.try_get::<_, i32>(8)?).unwrap_or(0),
    };
    Ok((r.try_get(0)?, row))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mq_outbox (
    seq             BIGSERIAL   PRIMARY KEY,
    id              TEXT        NOT NULL UNIQUE,
    exchange        TEXT        NOT NULL,
    routing_key     TEXT        NOT NULL,
    content_type    TEXT,
    headers         BYTEA,
    persistent      BOOLEAN     NOT NULL,
    body            BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    state           TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS mq_outbox_pending ON mq_outbox (last_attempt_at, seq) WHERE state = 'pending';
";
