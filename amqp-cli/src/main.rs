//! `amqp`: a command line for RabbitMQ on this workspace's client and codec. This file holds
//! the arguments and the one place where a failure becomes a sentence on stderr and an exit
//! code (2 for bad usage, including a bad URI; 1 for anything else); the commands are in `cmd/`.

mod cmd;
mod connect;
mod error;
mod key_value;
mod message;

use std::io::ErrorKind;
use std::process::ExitCode;

use amqp_client::api::Error as AmqpError;
use amqp_client::core::error::{ChannelError, ConnectionError};
use clap::{ArgAction, Parser, Subcommand};

use crate::connect::{Broker, DEFAULT_URI};
use crate::error::{Action, CliError, os_reason};

/// A command line for RabbitMQ: publish, consume, get, declare, decode captured traffic, and
/// measure throughput and latency like PerfTest.
#[derive(Parser, Debug)]
#[command(name = "amqp", version)]
struct Cli {
    /// The broker, as amqp://user:password@host:port/vhost (a vhost "/" is written %2f). Repeat
    /// it for failover: a connection goes to the first broker that answers, in the order given,
    /// and with `perf --recover` a lost connection comes back on the next one in turn.
    #[arg(long, global = true, env = "AMQP_URI", default_value = DEFAULT_URI, hide_env_values = true, action = ArgAction::Append)]
    uri: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure throughput and latency: producers and consumers through one queue.
    Perf(cmd::perf::PerfArgs),
    /// Publish a message and wait for the broker's confirm.
    Publish(cmd::publish::PublishArgs),
    /// Print the messages of a queue as they arrive.
    Consume(cmd::consume::ConsumeArgs),
    /// Take one message from a queue.
    Get(cmd::get::GetArgs),
    /// Declare a queue or an exchange.
    Declare(cmd::declare::DeclareArgs),
    /// Print the frames of captured AMQP 0-9-1 byte streams.
    Decode(cmd::decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `amqp consume q | head`: the reader has all it wanted; that is no failure.
        Err(CliError::Stdout(e)) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("amqp: {}", sentence(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let broker = match cli.command {
        // Decoding reads files: no broker, no runtime, and no URI to check.
        Command::Decode(args) => return cmd::decode::run(args),
        _ => Broker::new(&cli.uri)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        match cli.command {
            Command::Perf(args) => cmd::perf::run(&broker, args).await,
            Command::Publish(args) => cmd::publish::run(&broker, args).await,
            Command::Consume(args) => cmd::consume::run(&broker, args).await,
            Command::Get(args) => cmd::get::run(&broker, args).await,
            Command::Declare(args) => cmd::declare::run(&broker, args).await,
            Command::Decode(args) => cmd::decode::run(args),
        }
    })
}

fn exit_code(error: &CliError) -> u8 {
    match error {
        CliError::Uri(_) => 2,
        _ => 1,
    }
}

/// The one sentence the user reads: what could not be done, and why, in the broker's words
/// where it gave any. No Debug output, no backtrace.
fn sentence(error: &CliError) -> String {
    match error {
        CliError::Uri(e) => format!("the broker URI (--uri or AMQP_URI) is not valid: {e}"),
        CliError::Connect { endpoint, user, error } => connect_failure(endpoint, user, error),
        CliError::Broker { action, error } => format!("cannot {}: {}", doing(action), broker_failure(error)),
        CliError::Recovery { action, error } => format!("cannot {}: {error}", doing(action)),
        CliError::Nacked { exchange, routing_key } => format!(
            "the broker refused (nacked) the message published to {} with routing key {routing_key:?}",
            exchange_name(exchange)
        ),
        CliError::Returned { exchange, routing_key, reply_text } => format!(
            "no queue took the message published to {} with routing key {routing_key:?}, so the broker returned it ({reply_text})",
            exchange_name(exchange)
        ),
        CliError::ConsumerCancelled { queue } => {
            format!("the broker cancelled the consumer of queue {queue:?}, most likely because the queue was deleted")
        }
        CliError::Read { path, error } => format!("cannot read {}: {}", path.display(), io_failure(error)),
        CliError::Stdin(e) => format!("cannot read standard input: {}", io_failure(e)),
        CliError::Stdout(e) => format!("cannot write to standard output: {}", io_failure(e)),
        CliError::Runtime(e) => format!("cannot start the async runtime: {}", io_failure(e)),
        CliError::DecodeFailed { failed, files } => {
            format!("{failed} failure(s) while decoding {files} file(s); the lines marked FAILED say where")
        }
        CliError::Plot { path, reason } => format!("cannot write the plot {}: {reason}", path.display()),
    }
}

fn connect_failure(endpoint: &str, user: &str, error: &AmqpError) -> String {
    match error {
        AmqpError::Connect { reason, .. } => {
            format!("cannot connect to the broker at {endpoint}: {} (is RabbitMQ running there?)", os_reason(reason))
        }
        AmqpError::Connection(ConnectionError::AccessRefused(_)) => {
            format!("the broker at {endpoint} refused the login of user {user:?}: wrong user name or password")
        }
        AmqpError::Connection(ConnectionError::ClosedByBroker { text, .. }) => {
            format!("the broker at {endpoint} refused the connection: {text}")
        }
        AmqpError::Connection(ConnectionError::Timeout(during)) => {
            format!("the broker at {endpoint} did not answer in time during {during}")
        }
        AmqpError::Connection(ConnectionError::ProtocolMismatch) => {
            format!("the server at {endpoint} does not speak AMQP 0-9-1")
        }
        AmqpError::Connection(ConnectionError::Lost(reason)) => {
            format!("the broker at {endpoint} closed the connection during the handshake ({})", os_reason(reason))
        }
        AmqpError::Tls(reason) => format!("TLS with the broker at {endpoint} failed: {reason}"),
        other => format!("cannot connect to the broker at {endpoint}: {other}"),
    }
}

fn broker_failure(error: &AmqpError) -> String {
    match error {
        AmqpError::Channel(ChannelError::ClosedByBroker { text, .. }) => format!("the broker said {text}"),
        AmqpError::Connection(ConnectionError::ClosedByBroker { text, .. }) => {
            format!("the broker closed the connection: {text}")
        }
        AmqpError::Connection(ConnectionError::Lost(reason)) => {
            format!("the connection to the broker was lost ({})", os_reason(reason))
        }
        AmqpError::Connection(ConnectionError::HeartbeatTimeout) => {
            "the broker stopped answering (no heartbeat for two intervals)".to_owned()
        }
        other => other.to_string(),
    }
}

fn doing(action: &Action) -> String {
    match action {
        Action::Connect => "connect".to_owned(),
        Action::OpenChannel => "open a channel".to_owned(),
        Action::ConfirmSelect => "turn on publisher confirms".to_owned(),
        Action::Qos => "set the prefetch".to_owned(),
        Action::DeclareQueue(q) => format!("declare queue {q:?}"),
        Action::DeclareExchange(x) => format!("declare exchange {x:?}"),
        Action::DeleteQueue(q) => format!("delete queue {q:?}"),
        Action::Publish { exchange, routing_key } => {
            format!("publish to {} with routing key {routing_key:?}", exchange_name(exchange))
        }
        Action::Consume(q) => format!("consume from queue {q:?}"),
        Action::Get(q) => format!("get a message from queue {q:?}"),
        Action::Close => "close the connection".to_owned(),
    }
}

fn exchange_name(exchange: &str) -> String {
    if exchange.is_empty() { "the default exchange".to_owned() } else { format!("exchange {exchange:?}") }
}

fn io_failure(error: &std::io::Error) -> String {
    os_reason(&error.to_string())
}
