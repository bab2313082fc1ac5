//! Reliable-messaging patterns for RabbitMQ, built on the public API of [`amqp_client`] alone:
//! the patterns every RabbitMQ user ends up writing by hand, written once. Together they make
//! "no message lost, none processed twice" true and checkable.
//!
//! | Pattern | Module | The guarantee it gives | What it does not give | Example |
//! |---|---|---|---|---|
//! | Publisher confirms | [`confirms`] | `publish` returns `Ok` only after the broker's ack; a bounded window; nacks retried, unroutable messages an error; a `message-id` on every message | exactly-once (a retry may duplicate) | `confirms` |
//! | Manual ack | [`ack`] | at-least-once processing: ack only after the handler succeeded; retries counted from `x-death` / `x-delivery-count`; poison messages parked or dead-lettered, never looping | exactly-once (see `dedup`) | `manual_ack` |
//! | Prefetch | [`prefetch`] | at most N unacknowledged deliveries per consumer and per channel | a byte limit | `manual_ack`, `prefetch-bench` |
//! | Push and pull | [`ack`], [`pull`] | push streams under prefetch; pull takes up to N and stops at empty | pull's throughput (a round trip per message) | `manual_ack` |
//! | Dead-lettering | [`dead_letter`] | rejected, expired and overflowing messages go to a dead-letter exchange, with a typed `x-death` | confirms of the dead-lettering itself | `dead_letter` |
//! | Delayed delivery | [`delay`] | never before its delay; no head-of-line blocking; the plugin detected, else a TTL ladder | exact timing; order across delays | `delayed` |
//! | De-duplication | [`dedup`] | a `message-id` is processed once: recorded in the handler's transaction, acked after | exactly-once for effects outside the store's transaction | `idempotent` |
//! | Outbox | [`outbox`] | a message committed with its business change is published (with confirms) at least once, by a relay that marks it sent after the ack and a sweep that re-sends what stayed unmarked | order across relays; latency below the relay's poll interval | `outbox` |
//! | Ordering | [`ordering`] | per-key order through single active consumers, consistent-hash partitions and a per-key serial executor | order across keys or publishers | `ordering` |
//! | Recovery | [`recovery`] | reconnects and restores topology, QoS and consumers; unconfirmed publishes re-sent in order with their first `message-id` | exactly-once (a re-send may duplicate: pair with `dedup`) | `recovery` |
//!
//! Run an example against a local RabbitMQ with `cargo run -p mq-patterns --example NAME`.

pub mod ack;
pub mod confirms;
pub mod dead_letter;
pub mod dedup;
pub mod delay;
mod message_id;
pub mod ordering;
pub mod outbox;
pub mod prefetch;
pub mod pull;
pub mod recovery;

pub use amqp_client as client;
