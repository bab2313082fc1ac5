//! Recovery: a connection that comes back by itself after the network, the broker or a
//! cluster node fails, with its channels, QoS, confirm mode, exchanges, queues, bindings and
//! consumers, and with the publishes that were not confirmed sent again.
//!
//! **Guarantee.** On a channel in confirm mode, every publish is confirmed exactly once to its
//! caller — on the connection it was first sent on or on a later one — or fails with a typed
//! error; none is lost to a connection loss. A re-sent publish carries the `message-id` it was
//! first sent with, and its [`Published::sends`] says it was re-sent.
//!
//! **Not guaranteed.** Exactly-once: a message whose confirm was lost with the connection is
//! sent again and may reach the queue twice (pair this with the idempotent consumer).
//! Deliveries received before a loss cannot be acknowledged after it; the broker redelivers
//! them (flagged redelivered). Publishes on a channel without confirm mode are handed to the
//! connection once and may be lost with it. Channel errors (404, 406, ...) are not retried.
//!
//! - [`RecoveringConnection`]: the supervisor; [`RecoveryOptions`], [`Backoff`].
//! - [`RecoveringChannel`]: declares (recorded), QoS, confirm mode, publish, consume.
//! - [`RecoveringConsumer`] and [`RecoveredDelivery`]: a stream that continues across recoveries.
//! - [`RecoveryEvent`] and [`RecoveryStats`]: what happened, for logs and metrics.

mod backoff;
mod channel;
mod connection;
mod consumer;
mod error;
mod event;
mod publish;
mod topology;

pub use backoff::Backoff;
pub use channel::RecoveringChannel;
pub use connection::{RecoveringConnection, RecoveryOptions};
pub use consumer::{RecoveredDelivery, RecoveringConsumer};
pub use error::RecoveryError;
pub use event::{RecoveryEvent, RecoveryStats, Restored};
pub use publish::{Published, RecoveringConfirm};
