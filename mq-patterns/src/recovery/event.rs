//! What recovery tells its observers: a stream of events (a `tokio::sync::broadcast`, so a
//! slow observer misses events rather than stalling recovery) and counters that a metrics
//! exporter can read at any time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amqp_client::core::error::ConnectionError;

use super::error::RecoveryError;

/// One step of recovery.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RecoveryEvent {
    /// The connection was lost, and why.
    Disconnected {
        /// The cause: socket error or EOF, heartbeat timeout, the broker's connection.close, ...
        cause: ConnectionError,
    },
    /// An attempt to reconnect is about to be made, after `delay`.
    Reconnecting {
        /// Attempts so far in this outage, from 1.
        attempt: u32,
        /// How long recovery waits before this attempt.
        delay: Duration,
        /// The endpoint it will try first.
        endpoint: String,
    },
    /// Connected again and restored.
    Recovered(Restored),
    /// Recovery gave up (attempt limit) or was stopped; the connection stays down.
    Failed(RecoveryError),
}

/// What a recovery restored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// The new connection's generation.
    pub generation: u64,
    /// The endpoint it connected to (`host:port`).
    pub endpoint: String,
    /// Channels reopened.
    pub channels: usize,
    /// Exchanges re-declared.
    pub exchanges: usize,
    /// Queues re-declared.
    pub queues: usize,
    /// Bindings re-made.
    pub bindings: usize,
    /// Consumers restarted.
    pub consumers: usize,
    /// Unconfirmed publishes sent again.
    pub republished: usize,
    /// Server-named queues that came back under a new name: (old, new).
    pub renamed: Vec<(String, String)>,
    /// What could not be restored, in words (a declare the broker now refuses, ...).
    pub failures: Vec<String>,
}

/// Counts since the recovering connection was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Connections lost.
    pub disconnects: u64,
    /// Reconnection attempts made.
    pub attempts: u64,
    /// Recoveries completed.
    pub recoveries: u64,
    /// Recoveries given up.
    pub failures: u64,
    /// Publishes sent again after a loss.
    pub republished: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) disconnects: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) recoveries: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) republished: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RecoveryStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RecoveryStats {
            disconnects: read(&self.disconnects),
            attempts: read(&self.attempts),
            recoveries: read(&self.recoveries),
            failures: read(&self.failures),
            republished: read(&self.republished),
        }
    }
}
