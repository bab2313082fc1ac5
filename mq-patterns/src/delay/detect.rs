//! Finding out whether the broker has the delayed-message plugin, on a throwaway connection:
//! RabbitMQ answers an exchange.declare of an unknown type with a CONNECTION error (503
//! command-invalid), which would take the caller's channels down with it.
//! Uses `amqp-client`'s public API only.

use std::hash::{BuildHasher, Hasher};

use amqp_client::api::{Connection, ConnectionOptions, Error, ExchangeDeclareOptions, ExchangeDeleteOptions};
use amqp_client::codec::{FieldTable, ReplyCode};

use super::{DelaySupport, PLUGIN_EXCHANGE_TYPE};

/// Asks the broker behind `options` whether it has the delayed-message plugin.
///
/// Opens its own short-lived connection, declares a probe exchange of type
/// `x-delayed-message` there and deletes it again. The broker's server-properties do not help:
/// RabbitMQ (3.10 checked) lists capabilities there, never plugins. A refusal with 503 means
/// "no plugin"; any other failure (the broker down, the user not allowed to declare
/// exchanges) is returned, since it says nothing about the plugin.
///
/// ```no_run
/// # async fn demo() -> Result<(), amqp_client::api::Error> {
/// use amqp_client::api::ConnectionOptions;
/// use mq_patterns::delay::{detect, DelaySupport};
/// let options = ConnectionOptions::from_uri("amqp://guest:guest@127.0.0.1:5672/%2f")?;
/// match detect(&options).await? {
///     DelaySupport::Plugin => println!("the broker delays messages itself"),
///     DelaySupport::Fallback => println!("delays by TTL and dead-lettering"),
/// }
/// # Ok(()) }
/// ```
pub async fn detect(options: &ConnectionOptions) -> Result<DelaySupport, Error> {
    let conn = Connection::connect_with(options.clone().connection_name("mq-patterns delay probe")).await?;
    let probed = probe(&conn).await;
    match probed {
        Ok(()) => {
            conn.close().await?;
            Ok(DelaySupport::Plugin)
        }
        // The broker has closed the probe connection already; nothing to close.
        Err(e) if e.reply_code() == Some(ReplyCode::COMMAND_INVALID) => Ok(DelaySupport::Fallback),
        Err(e) => {
            // The probe failed for another reason; the close is best effort and its own
            // failure would hide the one that matters.
            let _ = conn.close().await;
            Err(e)
        }
    }
}

async fn probe(conn: &Connection) -> Result<(), Error> {
    let channel = conn.open_channel().await?;
    let name = probe_name();
    let mut arguments = FieldTable::new();
    arguments.insert("x-delayed-type", "direct");
    // Not durable: a probe interrupted before its delete leaves an exchange that no binding
    // uses and that a broker restart removes.
    let options = ExchangeDeclareOptions::default();
    channel.exchange_declare(&name, PLUGIN_EXCHANGE_TYPE, options, &arguments).await?;
    channel.exchange_delete(&name, ExchangeDeleteOptions::default()).await
}

/// A name no concurrent probe uses: probes from many processes may run at once.
fn probe_name() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("mq.delay.probe.{:016x}", hasher.finish())
}
