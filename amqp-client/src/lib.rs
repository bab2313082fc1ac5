//! An AMQP 0-9-1 client for RabbitMQ, built on [`amqp_codec`].
//!
//! Three layers, each using only the one below it:
//!
//! - [`core`]: the connection and channel state machine. It owns no socket, no clock and no
//!   task: bytes and time go in (`handle_input`, `handle_timeout`, `submit`), and bytes,
//!   deadlines and events come out (`poll_transmit`, `poll_timeout`, `poll_event`). Every
//!   protocol decision is made here, and it is tested by feeding it scripted frames.
//! - the driver (internal): the core sits behind one lock shared by a tokio task per
//!   connection and the API's handles. Handles submit to it directly and write their own
//!   frames when traffic is sparse (a round trip then costs no wake-up of another thread);
//!   in a burst, frames gather and go out in one write. The task reads the TCP or TLS
//!   stream, sleeps until the core's next deadline, writes what is left, and routes events
//!   to waiters.
//! - [`api`]: [`Connection`], [`Channel`], publishing with confirms, consumers as streams.
//!
//! ```no_run
//! use amqp_client::{Connection, api::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions}};
//! use amqp_codec::{BasicProperties, FieldTable};
//!
//! # async fn demo() -> Result<(), amqp_client::api::Error> {
//! let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//! let channel = conn.open_channel().await?;
//! let queue = channel.queue_declare("", QueueDeclareOptions { exclusive: true, ..Default::default() }, &FieldTable::new()).await?;
//!
//! channel.confirm_select().await?;
//! let props = BasicProperties { content_type: Some("text/plain"), ..Default::default() };
//! let confirm = channel.basic_publish("", &queue.name, BasicPublishOptions::default(), &props, "hello").await?;
//! confirm.wait().await?; // the broker's ack
//!
//! let mut consumer = channel.basic_consume(&queue.name, BasicConsumeOptions::default(), &FieldTable::new()).await?;
//! if let Some(delivery) = consumer.next_delivery().await {
//!     assert_eq!(&delivery.body()[..], b"hello");
//!     delivery.ack().await?;
//! }
//! conn.close().await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod core;
pub(crate) mod driver;

pub use amqp_codec as codec;
pub use api::{Channel, Connection, Error};
