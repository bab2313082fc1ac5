//! What the pattern tests share: where the broker is and names no other test uses.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use amqp_client::api::{Channel, Connection};

/// `amqp://guest:guest@ADDR/%2f`, with `AMQP_TEST_ADDR` or RabbitMQ's default port on loopback.
pub fn uri() -> String {
    let addr = std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".into());
    format!("amqp://guest:guest@{addr}/%2f")
}

/// `prefix` plus the process id and a counter: unique across tests and runs.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A connection to the test broker and a channel on it, failing loudly without a broker.
pub async fn connect() -> (Connection, Channel) {
    let conn = Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.expect("a channel opens");
    (conn, ch)
}
