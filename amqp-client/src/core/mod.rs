//! The sans-IO client core: no socket, no clock, no task. Bytes and time go in; bytes,
//! deadlines and events come out. The tokio driver (built on this) only moves them.
//!
//! Built so far: SASL responses, tune negotiation, heartbeat deadlines and the opening
//! handshake. The `Connection` that ties them to channels comes next.

pub mod error;
pub mod heartbeat;
pub mod negotiation;
pub mod sasl;
pub mod tuning;
