//! Reliable-messaging patterns for RabbitMQ on the public API of [`amqp_client`]: publisher
//! confirms, manual acknowledgement, prefetch, dead-lettering, delayed delivery, recovery,
//! de-duplication, the outbox and ordered consumption.
//!
//! The patterns are built after the client (see the project's issue on them); this crate holds
//! their place in the workspace until then.

pub use amqp_client as client;
