//! `Connection`: connect to one of several endpoints, run the driver task, open channels,
//! learn at once when the connection ends and why. Touches the driver and the core's types.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use amqp_codec::{FieldTable, ReplyCode};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use super::channel::Channel;
use super::error::Error;
use super::options::ConnectionOptions;
use crate::core::command::Command;
use crate::core::error::ConnectionError;
use crate::core::tuning::Tuned;
use crate::driver::link::{Link, Writer};
use crate::driver::waiters::{Outcome, Reply, Status, Waiters};
use crate::driver::{self, Request};

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A connection to RabbitMQ. Cheap to clone; the connection closes when the last clone and
/// the last of its channels are dropped, or on [`Connection::close`].
///
/// ```no_run
/// # async fn demo() -> Result<(), amqp_client::api::Error> {
/// use amqp_client::api::Connection;
/// let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let channel = conn.open_channel().await?;
/// channel.close().await?;
/// conn.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) link: Arc<Link>,
    pub(crate) status: watch::Receiver<Status>,
    pub(crate) server_properties: FieldTable,
    pub(crate) tuned: Tuned,
    pub(crate) generation: u64,
    pub(crate) consumer_buffer: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.link.handles_dropped();
    }
}

impl Connection {
    /// Connects with the options an AMQP URI gives.
    pub async fn connect(uri: &str) -> Result<Connection, Error> {
        Connection::connect_with(ConnectionOptions::from_uri(uri)?).await
    }

    /// Connects to the first endpoint that answers, and runs the handshake.
    pub async fn connect_with(options: ConnectionOptions) -> Result<Connection, Error> {
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let (host, stream) = connect_any(&options, deadline).await?;
        let core = crate::core::Connection::new(options.handshake.clone(), options.timeouts, Instant::now());
        let (status_tx, status) = watch::channel(Status { closed: None, blocked: None });
        let (opened_tx, opened) = oneshot::channel();
        let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("amqp_connection", endpoint = %host, generation, tls = options.tls.is_some());
        let waiters = Waiters::new(status_tx, opened_tx, span.clone());
        let link = match &options.tls {
            Some(tls) => {
                let stream = match tokio::time::timeout_at(deadline, tls.connect(&host, stream)).await {
                    Ok(stream) => stream?,
                    Err(_) => return Err(ConnectionError::Timeout("the TLS handshake").into()),
                };
                let (reader, writer) = tokio::io::split(stream);
                let link = Arc::new(Link::new(core, waiters, Box::pin(writer) as Writer));
                tokio::spawn(driver::run(link.clone(), reader));
                link
            }
            None => {
                let (reader, writer) = stream.into_split();
                let link = Arc::new(Link::new(core, waiters, Box::pin(writer) as Writer));
                tokio::spawn(driver::run(link.clone(), reader));
                link
            }
        };

        let (server_properties, tuned) = match tokio::time::timeout_at(deadline, opened).await {
            Ok(Ok(Ok(opened))) => opened,
            Ok(Ok(Err(error))) => return Err(error.into()),
            Ok(Err(_)) => return Err(ConnectionError::Lost("the driver stopped during the handshake".into()).into()),
            Err(_) => return Err(ConnectionError::Timeout("the handshake").into()),
        };
        span.in_scope(|| {
            tracing::info!(channel_max = tuned.channel_max, frame_max = tuned.frame_max, heartbeat = ?tuned.heartbeat, "connection open")
        });
        let inner =
            Inner { link, status, server_properties, tuned, generation, consumer_buffer: options.consumer_buffer };
        Ok(Connection { inner: Arc::new(inner) })
    }

    /// Opens a channel.
    pub async fn open_channel(&self) -> Result<Channel, Error> {
        match self.request(Command::OpenChannel).await? {
            Outcome::ChannelOpened(id, closed) => Ok(Channel::new(self.clone(), id, closed)),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the connection (connection.close, then close-ok) and waits until it is closed.
    pub async fn close(&self) -> Result<(), Error> {
        let command = Command::Close { code: ReplyCode::REPLY_SUCCESS, text: "closed by the client".into() };
        if let Err(error) = self.request(command).await {
            // The request can finish the driver before `submit` returns, which then reports
            // the connection gone: closed by this client is what was asked for.
            return match self.close_reason() {
                Some(ConnectionError::ClosedByClient { .. }) => Ok(()),
                _ => Err(error),
            };
        }
        match self.closed().await {
            ConnectionError::ClosedByClient { .. } => Ok(()),
            other => Err(other.into()),
        }
    }

    /// connection.update-secret (RabbitMQ): hands the broker a new secret (a refreshed OAuth 2
    /// token) for this connection, and waits for update-secret-ok.
    pub async fn update_secret(&self, secret: impl Into<bytes::Bytes>, reason: &str) -> Result<(), Error> {
        let command = Command::UpdateSecret { secret: secret.into(), reason: reason.to_owned() };
        match self.request(command).await? {
            Outcome::Sent => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Resolves when the connection has ended, with why.
    pub async fn closed(&self) -> ConnectionError {
        let mut status = self.inner.status.clone();
        loop {
            if let Some(error) = status.borrow_and_update().closed.clone() {
                return error;
            }
            if status.changed().await.is_err() {
                return status.borrow().closed.clone().unwrap_or(ConnectionError::Lost("the driver stopped".into()));
            }
        }
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.inner.status.borrow().closed.clone()
    }

    /// The broker's reason while it blocks publishing (a resource alarm).
    pub fn blocked(&self) -> Option<String> {
        self.inner.status.borrow().blocked.clone()
    }

    /// The broker's server-properties: product, version, capabilities, cluster_name.
    pub fn server_properties(&self) -> &FieldTable {
        &self.inner.server_properties
    }

    /// The negotiated limits.
    pub fn tuned(&self) -> Tuned {
        self.inner.tuned
    }

    /// This connection's generation: a number no other connection in this process has, carried
    /// by its delivery tags so that a delivery cannot be acknowledged on another connection.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    pub(crate) async fn request(&self, command: Command) -> Result<Outcome, Error> {
        let (tx, rx) = oneshot::channel();
        self.submit(Request::new(command, Reply::Once(tx))).await?;
        self.outcome(rx).await
    }

    /// Submits a request; returns where its frames end in the connection's output.
    pub(crate) async fn submit(&self, request: Request) -> Result<u64, Error> {
        self.inner.link.submit(request).await.map_err(|_| self.gone().into())
    }

    pub(crate) async fn outcome<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, Error> {
        self.flush();
        rx.await.map_err(|_| self.gone().into())
    }

    /// Writes what a burst left gathered: the caller is about to wait for an answer.
    pub(crate) fn flush(&self) {
        self.inner.link.flush();
    }

    /// The error for a request the driver will never answer.
    pub(crate) fn gone(&self) -> ConnectionError {
        self.close_reason().unwrap_or_else(|| ConnectionError::Lost("the connection's task ended".into()))
    }
}

pub(crate) fn unexpected(outcome: Outcome) -> Error {
    match outcome {
        Outcome::Failed(error) => error.into(),
        Outcome::ChannelOpened(..) => Error::UnexpectedReply("channel.open-ok"),
        Outcome::Reply(_) => Error::UnexpectedReply("a method reply"),
        Outcome::Sent => Error::UnexpectedReply("sent"),
        Outcome::GetOk(_) => Error::UnexpectedReply("basic.get-ok"),
    }
}

async fn connect_any(
    options: &ConnectionOptions,
    deadline: tokio::time::Instant,
) -> Result<(String, TcpStream), Error> {
    let mut last = Error::Connect { endpoint: "(none)".into(), reason: "no endpoint given".into() };
    for (host, port) in &options.endpoints {
        let endpoint = format!("{host}:{port}");
        match tokio::time::timeout_at(deadline, TcpStream::connect((host.as_str(), *port))).await {
            Ok(Ok(stream)) => {
                // Frames are written whole and at once; Nagle would only delay the last one.
                let _ = stream.set_nodelay(true);
                return Ok((host.clone(), stream));
            }
            Ok(Err(e)) => last = Error::Connect { endpoint, reason: e.to_string() },
            Err(_) => last = Error::Connect { endpoint, reason: "timed out".into() },
        }
        tracing::info!(%last, "endpoint did not answer; trying the next");
    }
    Err(last)
}
