//! An AMQP 0-9-1 client for RabbitMQ, built on [`amqp_codec`]: a sans-IO connection and channel
//! state machine ([`core`]) and, on top of it, a thin tokio driver.
//!
//! The core is being built piece by piece (see the project's issue on the client): the
//! handshake, tuning, SASL and heartbeat logic are here and tested with scripted frames.

pub mod api;
pub mod core;
pub mod driver;

pub use amqp_codec as codec;
