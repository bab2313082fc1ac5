//! `amqp declare queue|exchange NAME`: queue.declare or exchange.declare with their flags, a
//! queue type, and `--arg KEY=VALUE` arguments; prints what the broker answered.

use std::io::Write;

use amqp_client::api::{ExchangeDeclareOptions, QueueDeclareOptions};
use amqp_codec::FieldValue;
use clap::{Args, Subcommand, ValueEnum};

use crate::connect::{Broker, close};
use crate::error::{Action, CliError, Doing};
use crate::key_value::{self, KeyValue};

/// Arguments of `amqp declare`.
#[derive(Args, Debug)]
pub struct DeclareArgs {
    #[command(subcommand)]
    what: Declare,
}

#[derive(Subcommand, Debug)]
enum Declare {
    /// Declare a queue (an empty NAME asks the broker to name it).
    Queue(QueueArgs),
    /// Declare an exchange.
    Exchange(ExchangeArgs),
}

#[derive(Args, Debug)]
struct QueueArgs {
    /// The queue's name; "" for a name the broker chooses.
    name: String,
    /// Survive a broker restart (quorum and stream queues always do).
    #[arg(long)]
    durable: bool,
    /// Delete the queue when its last consumer goes.
    #[arg(long)]
    auto_delete: bool,
    /// Only this connection may use it, and it goes with the connection, which ends as soon
    /// as this command does: useful only to check that the name is free.
    #[arg(long)]
    exclusive: bool,
    /// Only check that the queue exists.
    #[arg(long)]
    passive: bool,
    /// The queue type (the x-queue-type argument).
    #[arg(long = "type", value_enum)]
    kind: Option<QueueType>,
    /// An argument such as x-max-length=1000 or x-dead-letter-exchange=dlx. Repeatable.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = key_value::parse)]
    arguments: Vec<KeyValue>,
}

#[derive(Args, Debug)]
struct ExchangeArgs {
    /// The exchange's name.
    name: String,
    /// The exchange type: direct, fanout, topic, headers, or a plugin's.
    #[arg(long = "type", default_value = "direct")]
    kind: String,
    /// Survive a broker restart.
    #[arg(long)]
    durable: bool,
    /// Delete the exchange when its last binding goes.
    #[arg(long)]
    auto_delete: bool,
    /// Publishers cannot publish to it, only other exchanges.
    #[arg(long)]
    internal: bool,
    /// Only check that the exchange exists.
    #[arg(long)]
    passive: bool,
    /// An argument such as alternate-exchange=unrouted. Repeatable.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = key_value::parse)]
    arguments: Vec<KeyValue>,
}

/// RabbitMQ's queue types.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    /// The classic queue.
    Classic,
    /// A replicated Raft queue; always durable.
    Quorum,
    /// An append-only log; always durable.
    Stream,
}

impl QueueType {
    /// The x-queue-type value.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// Declares and prints the broker's answer.
pub async fn run(broker: &Broker, args: DeclareArgs) -> Result<(), CliError> {
    let (conn, channel) = broker.channel("declare").await?;
    let mut out = std::io::stdout().lock();
    match args.what {
        Declare::Queue(q) => {
            let mut arguments = key_value::table(&q.arguments);
            if let Some(kind) = q.kind {
                arguments.insert("x-queue-type", FieldValue::from(kind.name()));
            }
            let options = QueueDeclareOptions {
                passive: q.passive,
                // RabbitMQ refuses a non-durable quorum or stream queue; asking for the type is
                // asking for durability.
                durable: q.durable || q.kind.is_some_and(|k| k != QueueType::Classic),
                exclusive: q.exclusive,
                auto_delete: q.auto_delete,
                no_wait: false,
            };
            let action = || Action::DeclareQueue(q.name.clone());
            let info = channel.queue_declare(&q.name, options, &arguments).await.doing(action)?;
            let verb = if q.passive { "exists" } else { "declared" };
            writeln!(
                out,
                "queue {:?} {verb}: {} messages, {} consumers",
                info.name, info.message_count, info.consumer_count
            )?;
        }
        Declare::Exchange(x) => {
            let arguments = key_value::table(&x.arguments);
            let options = ExchangeDeclareOptions {
                passive: x.passive,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                no_wait: false,
            };
            let action = || Action::DeclareExchange(x.name.clone());
            channel.exchange_declare(&x.name, &x.kind, options, &arguments).await.doing(action)?;
            // A passive declare checks the name only; the type given is not compared.
            if x.passive {
                writeln!(out, "exchange {:?} exists", x.name)?;
            } else {
                writeln!(out, "exchange {:?} ({}) declared", x.name, x.kind)?;
            }
        }
    }
    close(&conn).await
}
