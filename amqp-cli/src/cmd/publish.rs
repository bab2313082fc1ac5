//! `amqp publish`: one message from `--body`, one per `--file`, or one from standard input,
//! with properties and headers from flags. The channel is in confirm mode and every publish
//! waits for its confirm, so a nack or (with `--mandatory`) a return is an error.

use std::io::{Read, Write};
use std::path::PathBuf;

use amqp_client::api::{BasicPublishOptions, Confirmation};
use amqp_codec::{BasicProperties, Method};
use bytes::Bytes;
use clap::{Args, value_parser};

use crate::connect::{Broker, close};
use crate::error::{Action, CliError, Doing};
use crate::key_value::{self, KeyValue};

/// Arguments of `amqp publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The routing key; for the default exchange, the name of the queue.
    routing_key: String,
    /// The exchange [default: the default exchange, which routes by queue name]
    #[arg(short, long, default_value = "", hide_default_value = true)]
    exchange: String,
    /// The body as text; without --body or --file, standard input is the body.
    #[arg(short, long, conflicts_with = "file")]
    body: Option<String>,
    /// A file whose bytes are one message's body; repeat for several messages.
    #[arg(short, long, value_name = "PATH")]
    file: Vec<PathBuf>,
    /// The content-type property (a MIME type).
    #[arg(long)]
    content_type: Option<String>,
    /// The content-encoding property.
    #[arg(long)]
    content_encoding: Option<String>,
    /// The delivery-mode property: 1 transient, 2 persistent.
    #[arg(long, value_parser = value_parser!(u8).range(1..=2), conflicts_with = "persistent")]
    delivery_mode: Option<u8>,
    /// Shorthand for --delivery-mode 2.
    #[arg(long)]
    persistent: bool,
    /// The message-id property.
    #[arg(long)]
    message_id: Option<String>,
    /// The correlation-id property.
    #[arg(long)]
    correlation_id: Option<String>,
    /// The reply-to property.
    #[arg(long)]
    reply_to: Option<String>,
    /// The expiration property: the message's TTL in milliseconds.
    #[arg(long, value_name = "MS")]
    expiration: Option<u32>,
    /// The priority property, 0 to 255 (a priority queue caps it at its x-max-priority).
    #[arg(long)]
    priority: Option<u8>,
    /// The type property.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// The app-id property.
    #[arg(long)]
    app_id: Option<String>,
    /// A header; values `true`/`false` are booleans, integers are integers, `"…"` and anything
    /// else are strings. Repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = key_value::parse)]
    headers: Vec<KeyValue>,
    /// Fail if no queue takes the message, instead of letting the broker drop it.
    #[arg(long)]
    mandatory: bool,
}

/// Publishes, waits for every confirm, and says how many were confirmed.
pub async fn run(broker: &Broker, args: PublishArgs) -> Result<(), CliError> {
    let bodies = bodies(&args)?;
    let (conn, channel) = broker.channel("publish").await?;
    channel.confirm_select().await.doing(|| Action::ConfirmSelect)?;
    let headers = key_value::table(&args.headers);
    let expiration = args.expiration.map(|ms| ms.to_string());
    let properties = BasicProperties {
        content_type: args.content_type.as_deref(),
        content_encoding: args.content_encoding.as_deref(),
        headers: (!headers.is_empty()).then(|| (&headers).into()),
        delivery_mode: if args.persistent { Some(2) } else { args.delivery_mode },
        priority: args.priority,
        correlation_id: args.correlation_id.as_deref(),
        reply_to: args.reply_to.as_deref(),
        expiration: expiration.as_deref(),
        message_id: args.message_id.as_deref(),
        kind: args.kind.as_deref(),
        app_id: args.app_id.as_deref(),
        ..Default::default()
    };
    let options = BasicPublishOptions { mandatory: args.mandatory, ..Default::default() };
    let action = || Action::Publish { exchange: args.exchange.clone(), routing_key: args.routing_key.clone() };
    let (count, bytes) = (bodies.len(), bodies.iter().map(Bytes::len).sum::<usize>());
    // Publish all, then wait: the confirms of a batch come back together.
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let publish = channel.basic_publish(&args.exchange, &args.routing_key, options, &properties, body);
        confirms.push(publish.await.doing(action)?);
    }
    for confirm in confirms {
        match confirm.wait().await.doing(action)? {
            Confirmation::Ack => {}
            Confirmation::Nack => {
                return Err(CliError::Nacked { exchange: args.exchange, routing_key: args.routing_key });
            }
            Confirmation::Returned(message) => {
                let reply_text = match message.method() {
                    Ok(Method::BasicReturn(r)) => r.reply_text.to_owned(),
                    _ => String::new(),
                };
                return Err(CliError::Returned { exchange: args.exchange, routing_key: args.routing_key, reply_text });
            }
            // The channel is in confirm mode, so NotRequested cannot come; a verdict this CLI
            // does not know is no ack either.
            _ => return Err(CliError::Nacked { exchange: args.exchange, routing_key: args.routing_key }),
        }
    }
    close(&conn).await?;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    writeln!(
        std::io::stdout(),
        "published {count} message{} ({bytes} byte{}), confirmed by the broker",
        plural(count),
        plural(bytes)
    )?;
    Ok(())
}

/// The bodies to publish, read before connecting so that a missing file costs no connection.
fn bodies(args: &PublishArgs) -> Result<Vec<Bytes>, CliError> {
    if let Some(body) = &args.body {
        return Ok(vec![Bytes::from(body.clone())]);
    }
    if args.file.is_empty() {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).map_err(CliError::Stdin)?;
        return Ok(vec![Bytes::from(body)]);
    }
    args.file
        .iter()
        .map(|path| std::fs::read(path).map(Bytes::from).map_err(|error| CliError::Read { path: path.clone(), error }))
        .collect()
}
