//! The broker named by `--uri`: parsed once, so that a bad URI fails before any work, then
//! connected to as often as a command needs (perf opens one connection per worker).

use amqp_client::api::uri::AmqpUri;
use amqp_client::api::{Channel, Connection, ConnectionOptions, Error as AmqpError};

use crate::error::{Action, CliError, Doing};

/// Where to connect, and as whom.
#[derive(Debug, Clone)]
pub struct Broker {
    options: ConnectionOptions,
    endpoint: String,
    user: String,
}

impl Broker {
    /// Parses the URI; the password stays inside the options and is never printed.
    pub fn new(uri: &str) -> Result<Broker, CliError> {
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
        Ok(Broker { options, endpoint, user: parsed.username })
    }

    /// Opens a connection that the broker shows as `amqp <name>`.
    pub async fn connect(&self, name: &str) -> Result<Connection, CliError> {
        self.connect_with(name, None).await
    }

    /// Opens a connection whose consumers may hold `consumer_buffer` deliveries unread, so that
    /// a prefetch above the client's default buffer does not stall the socket.
    pub async fn connect_with(&self, name: &str, consumer_buffer: Option<usize>) -> Result<Connection, CliError> {
        let mut options = self.options.clone().connection_name(format!("amqp {name}"));
        if let Some(deliveries) = consumer_buffer {
            options = options.consumer_buffer(deliveries);
        }
        Connection::connect_with(options).await.map_err(|error| CliError::Connect {
            endpoint: self.endpoint.clone(),
            user: self.user.clone(),
            error,
        })
    }

    /// A connection and one channel on it.
    pub async fn channel(&self, name: &str) -> Result<(Connection, Channel), CliError> {
        let conn = self.connect(name).await?;
        let channel = conn.open_channel().await.doing(|| Action::OpenChannel)?;
        Ok((conn, channel))
    }
}

/// Closes a connection at the end of a command, reporting a failure like any other.
pub async fn close(conn: &Connection) -> Result<(), CliError> {
    conn.close().await.doing(|| Action::Close)
}
