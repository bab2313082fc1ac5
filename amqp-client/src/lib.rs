//! An AMQP 0-9-1 client for RabbitMQ, built on [`amqp_codec`]: a sans-IO connection and channel
//! state machine and a thin tokio driver.
//!
//! The state machine and the async API are being built (see the project's issue on the client);
//! until then this crate re-exports the codec it is built on.

pub use amqp_codec as codec;
