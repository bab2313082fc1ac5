//! The CLI's one error type: what failed and while doing what, as data. `main.rs` alone turns
//! it into the sentence the user reads and the exit code; commands only return it.

use std::io;
use std::path::PathBuf;

use amqp_client::api::Error as AmqpError;
use amqp_client::api::uri::UriError;
use mq_patterns::recovery::RecoveryError;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// `--uri` (or `AMQP_URI`) is not an AMQP URI.
    Uri(UriError),
    /// No connection: the socket, the login, the vhost or the handshake failed.
    Connect {
        /// `host:port` tried.
        endpoint: String,
        /// The user logging in.
        user: String,
        /// The client's error.
        error: AmqpError,
    },
    /// A request to the broker failed.
    Broker {
        /// What the command was doing.
        action: Action,
        /// The client's error.
        error: AmqpError,
    },
    /// A recovering connection (`perf --recover`) gave up, or a call on it waited too long.
    Recovery {
        /// What the command was doing.
        action: Action,
        /// Recovery's error.
        error: RecoveryError,
    },
    /// The broker nacked a publish: it could not take the message.
    Nacked {
        /// The exchange published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// A mandatory publish came back: no queue was bound for it.
    Returned {
        /// The exchange published to.
        exchange: String,
        /// The routing key.
        routing_key: String,
        /// The broker's reply text (`NO_ROUTE`).
        reply_text: String,
    },
    /// The broker cancelled a consumer (its queue was deleted, or a quorum queue moved).
    ConsumerCancelled {
        /// The queue consumed from.
        queue: String,
    },
    /// A file to read could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// Standard input could not be read.
    Stdin(io::Error),
    /// Standard output could not be written (a closed pipe is not an error: see `main.rs`).
    Stdout(io::Error),
    /// The async runtime could not start (no threads, no file descriptors).
    Runtime(io::Error),
    /// `amqp decode` found frames it could not decode or re-encode.
    DecodeFailed {
        /// How many failed.
        failed: usize,
        /// Of how many files.
        files: usize,
    },
    /// `amqp perf --plot` could not draw or write the SVG.
    Plot {
        /// The file.
        path: PathBuf,
        /// The plotting library's error.
        reason: String,
    },
}

/// What the CLI was doing when the broker or the connection said no.
#[derive(Debug, Clone)]
pub enum Action {
    /// Connecting (a recovering connection's first connect).
    Connect,
    /// channel.open.
    OpenChannel,
    /// confirm.select.
    ConfirmSelect,
    /// basic.qos.
    Qos,
    /// queue.declare.
    DeclareQueue(String),
    /// exchange.declare.
    DeclareExchange(String),
    /// queue.delete.
    DeleteQueue(String),
    /// basic.publish, or waiting for its confirm.
    Publish {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// basic.consume, or acking its deliveries.
    Consume(String),
    /// basic.get, or acking what it got.
    Get(String),
    /// connection.close.
    Close,
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        CliError::Stdout(error)
    }
}

/// Attaches the action to a client error.
pub trait Doing<T> {
    /// `Err(e)` becomes `CliError::Broker { action, error: e }`.
    fn doing(self, action: impl FnOnce() -> Action) -> Result<T, CliError>;
}

impl<T> Doing<T> for Result<T, AmqpError> {
    fn doing(self, action: impl FnOnce() -> Action) -> Result<T, CliError> {
        self.map_err(|error| CliError::Broker { action: action(), error })
    }
}

impl<T> Doing<T> for Result<T, RecoveryError> {
    fn doing(self, action: impl FnOnce() -> Action) -> Result<T, CliError> {
        self.map_err(|error| match error {
            // The client's own errors read as they do without recovery.
            RecoveryError::Client(error) => CliError::Broker { action: action(), error },
            error => CliError::Recovery { action: action(), error },
        })
    }
}

/// An OS error as a clause: "Connection refused (os error 111)" reads "connection refused".
pub fn os_reason(reason: &str) -> String {
    let reason = match reason.find(" (os error") {
        Some(at) => &reason[..at],
        None => reason,
    };
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
