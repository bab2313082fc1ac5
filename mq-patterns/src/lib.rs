//! Reliable-messaging patterns for RabbitMQ on the public API of [`amqp_client`]: publisher
//! confirms, manual acknowledgement, prefetch, dead-lettering, delayed delivery, recovery,
//! de-duplication, the outbox and ordered consumption.
//!
//! Built so far: [`ack`], [`confirms`], [`dead_letter`], [`dedup`], [`delay`], [`ordering`], [`prefetch`], [`pull`] and [`recovery`]. The other patterns follow (see the project's issue on them).

pub mod ack;
pub mod confirms;
pub mod dead_letter;
pub mod dedup;
pub mod delay;
mod message_id;
pub mod ordering;
pub mod prefetch;
pub mod pull;
pub mod recovery;

pub use amqp_client as client;
