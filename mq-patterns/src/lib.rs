//! Reliable-messaging patterns for RabbitMQ on the public API of [`amqp_client`]: publisher
//! confirms, manual acknowledgement, prefetch, dead-lettering, delayed delivery, recovery,
//! de-duplication, the outbox and ordered consumption.
//!
//! Built so far: [`confirms`], [`dead_letter`], [`dedup`] (the idempotent consumer), [`outbox`] and [`pull`]. The other patterns follow (see the project's issue on them).

pub mod confirms;
pub mod dead_letter;
pub mod dedup;
pub mod outbox;
pub mod pull;

pub use amqp_client as client;
