//! Ordered consumption: a queue delivers in order to one consumer, and these helpers keep
//! that order through failover ([`single_active`]), across partitions chosen by a key
//! ([`partitioned`]), and through concurrent handlers inside one consumer ([`serial`]), with
//! the keys read from messages by [`key`].
//!
//! # The guarantee, and the one not given
//!
//! A RabbitMQ queue hands its messages out in the order they were enqueued, and one channel
//! delivers them to one consumer in that order. Everything here builds on that, so the
//! guarantee is: **messages with the same key are handled one after another, in the order the
//! publisher's channel published them**, as long as they go through one publishing channel
//! and the queue is consumed by one active consumer. Not guaranteed: any order *between*
//! keys (they run in parallel, on purpose), any order between two publishers, and order
//! across a change of partition count (keys move to other partitions).
//!
//! # What breaks order, and what the helpers do about it
//!
//! | Cause | Why it reorders | What to use |
//! |---|---|---|
//! | Several competing consumers on one queue | each takes the next message; a slow one finishes later | [`single_active`]: the broker lets one consumer at a time receive, the others wait as hot standbys |
//! | Scaling out by adding consumers | as above | [`partitioned`]: a consistent-hash exchange sends each key to one of N queues, each with one (single-active) consumer |
//! | Concurrent handlers in one consumer | a later message's handler may finish first | [`serial::SerialExecutor`]: same key one after another, other keys in parallel |
//! | `basic.nack`/`basic.reject` with requeue, `basic.recover` | the message goes back while later ones of its key are handled; it comes back after them | the executor never requeues a single failed message while its key goes on: by default it stops ([`serial::OnFailure::Stop`]) |
//! | A consumer crash or a lost connection | unacked messages are requeued and redelivered (`redelivered` set); with competing consumers another one may already be past them | a single active consumer: the next one starts with the requeued messages, which RabbitMQ puts back in their original positions |
//! | Message priorities (`x-max-priority`) | higher priority overtakes | do not use priorities on ordered queues |
//! | Dead-letter retry loops (reject → DLX → TTL → back) | the retried message re-enters behind newer ones | [`serial::OnFailure::DeadLetter`] parks a failed message in the dead-letter queue for a person or a repair job, rather than looping it back |
//! | Publisher-side retries (a nacked publish re-sent) | the re-sent message is behind newer ones | publish a key's messages one confirm at a time, or carry a sequence number and check it |
//!
//! Redelivery after a crash also means a message may be handled twice (the ack was lost):
//! ordering does not de-duplicate. Uses only `amqp-client`'s public API.

pub mod key;
pub mod partitioned;
pub mod serial;
pub mod single_active;
