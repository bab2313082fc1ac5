//! The sans-IO client core: no socket, no clock, no task. Bytes and time go in; bytes,
//! deadlines and events come out. The tokio driver (built on this) only moves them.
//!
//! Built so far: SASL responses, tune negotiation, heartbeat deadlines, the opening
//! handshake, content assembly, the request table and one channel's state machine. The
//! `Connection` that ties them together comes next.

pub mod body_pool;
pub mod channel;
pub mod command;
pub mod connection;
pub mod content;
pub mod error;
pub mod event;
pub mod heartbeat;
pub mod negotiation;
pub mod rpc;
pub mod sasl;
pub mod transmit;
pub mod tuning;

#[cfg(test)]
pub(crate) mod testing;
pub use connection::Connection;
