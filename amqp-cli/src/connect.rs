//! The brokers named by `--uri` (repeatable, for failover): parsed once, so that a bad URI
//! fails before any work, then connected to as often as a command needs (perf opens one
//! connection per worker). A plain connection goes to the first broker that answers, in the
//! order given; a recovering one (`perf --recover`) also moves on to the next when one is lost.

use std::time::Duration;

use amqp_client::api::uri::AmqpUri;
use amqp_client::api::{Channel, Connection, ConnectionOptions, Error as AmqpError};
use mq_patterns::recovery::{Backoff, RecoveringConnection, RecoveryError, RecoveryOptions};

use crate::error::{Action, CliError, Doing};

/// The broker when neither `--uri` nor `AMQP_URI` names one.
pub const DEFAULT_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How a recovering connection retries: quickly at first, since a perf run is short, and
/// never more than two seconds apart.
const RECOVERY_BACKOFF: Backoff =
    Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), max_attempts: None };
/// How long a perf worker's call waits for its recovering connection before the run fails.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);

/// Where to connect, and as whom: one or more brokers, tried in the order given.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Never empty: `new` makes one from the default URI when given none.
    candidates: Vec<Candidate>,
}

#[derive(Debug, Clone)]
struct Candidate {
    options: ConnectionOptions,
    endpoint: String,
    user: String,
}

impl Broker {
    /// Parses every URI; the passwords stay inside the options and are never printed.
    pub fn new(uris: &[String]) -> Result<Broker, CliError> {
        let candidates = if uris.is_empty() {
            vec![Candidate::parse(DEFAULT_URI)?]
        } else {
            uris.iter().map(|uri| Candidate::parse(uri)).collect::<Result<_, _>>()?
        };
        Ok(Broker { candidates })
    }

    /// Opens a connection that the broker shows as `amqp <name>`.
    pub async fn connect(&self, name: &str) -> Result<Connection, CliError> {
        self.connect_with(name, None).await
    }

    /// Opens a connection whose consumers may hold `consumer_buffer` deliveries unread, so that
    /// a prefetch above the client's default buffer does not stall the socket. The brokers are
    /// tried in order; if none answers, the last one's failure is reported.
    pub async fn connect_with(&self, name: &str, consumer_buffer: Option<usize>) -> Result<Connection, CliError> {
        let mut failure = None;
        for candidate in &self.candidates {
            match Connection::connect_with(candidate.named(name, consumer_buffer)).await {
                Ok(conn) => return Ok(conn),
                Err(error) => failure = Some(candidate.failed(error)),
            }
        }
        Err(failure.unwrap_or_else(|| self.candidates_missing()))
    }

    /// Opens a connection that recovers by itself when lost, on the next broker in turn.
    pub async fn connect_recovering(
        &self,
        name: &str,
        consumer_buffer: Option<usize>,
    ) -> Result<RecoveringConnection, CliError> {
        let options = self.candidates.iter().map(|c| c.named(name, consumer_buffer)).collect();
        let recovery = RecoveryOptions::default().backoff(RECOVERY_BACKOFF).wait(RECOVERY_WAIT);
        match RecoveringConnection::connect(options, recovery).await {
            Ok(conn) => Ok(conn),
            // Every broker was tried once; the last one's failure is the one kept.
            Err(RecoveryError::Client(error)) => match self.candidates.last() {
                Some(last) => Err(last.failed(error)),
                None => Err(self.candidates_missing()),
            },
            Err(error) => Err(CliError::Recovery { action: Action::Connect, error }),
        }
    }

    /// A connection and one channel on it.
    pub async fn channel(&self, name: &str) -> Result<(Connection, Channel), CliError> {
        let conn = self.connect(name).await?;
        let channel = conn.open_channel().await.doing(|| Action::OpenChannel)?;
        Ok((conn, channel))
    }

    fn candidates_missing(&self) -> CliError {
        // `new` always makes at least one candidate; this only keeps the code total.
        let error = AmqpError::Connect { endpoint: String::new(), reason: "no broker URI given".into() };
        CliError::Connect { endpoint: String::new(), user: String::new(), error }
    }
}

impl Candidate {
    fn parse(uri: &str) -> Result<Candidate, CliError> {
        let parsed: AmqpUri = uri.parse().map_err(CliError::Uri)?;
        let options = ConnectionOptions::from_uri(uri).map_err(|error| match error {
            AmqpError::Uri(e) => CliError::Uri(e),
            // from_uri fails only on the URI, which parsed above; keep whatever it says.
            error => CliError::Connect { endpoint: String::new(), user: parsed.username.clone(), error },
        })?;
        let endpoint = if parsed.host.contains(':') {
            format!("[{}]:{}", parsed.host, parsed.port)
        } else {
            format!("{}:{}", parsed.host, parsed.port)
        };
        Ok(Candidate { options, endpoint, user: parsed.username })
    }

    fn named(&self, name: &str, consumer_buffer: Option<usize>) -> ConnectionOptions {
        let mut options = self.options.clone().connection_name(format!("amqp {name}"));
        if let Some(deliveries) = consumer_buffer {
            options = options.consumer_buffer(deliveries);
        }
        options
    }

    fn failed(&self, error: AmqpError) -> CliError {
        CliError::Connect { endpoint: self.endpoint.clone(), user: self.user.clone(), error }
    }
}

/// Closes a connection at the end of a command, reporting a failure like any other.
pub async fn close(conn: &Connection) -> Result<(), CliError> {
    conn.close().await.doing(|| Action::Close)
}
