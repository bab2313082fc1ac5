//! The async API: connections, channels, publishing and consuming, on top of the driver.

pub mod channel;
pub mod connection;
pub mod consumer;
mod encode_buf;
pub mod error;
pub mod options;
pub mod publish;
pub mod tls;
pub mod uri;

pub use crate::core::error::{ChannelError, ConnectionError};
pub use channel::{Channel, QueueInfo};
pub use connection::Connection;
pub use consumer::{AckTag, Consumer, Delivery};
pub use error::Error;
pub use options::*;
pub use publish::{Confirmation, PublishConfirm};
pub use tls::TlsOptions;
