//! Options for connections and for each method, with the protocol's defaults (every flag
//! false). Builders where a value has several parts; plain structs with `Default` otherwise.

use std::time::Duration;

use super::error::Error;
use super::tls::TlsOptions;
use super::uri::{AmqpUri, UriError};
use crate::core::connection::Timeouts;
use crate::core::negotiation::HandshakeConfig;
use crate::core::sasl::Mechanism;
use crate::core::tuning::Limits;

/// How to connect: endpoints, credentials, vhost, limits and timeouts.
///
/// ```
/// use amqp_client::api::options::ConnectionOptions;
/// let options = ConnectionOptions::from_uri("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=30")
///     .unwrap()
///     .connection_name("billing")
///     .endpoint("127.0.0.2", 5672);
/// assert_eq!(options.endpoints().len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    pub(crate) endpoints: Vec<(String, u16)>,
    pub(crate) handshake: HandshakeConfig,
    pub(crate) timeouts: Timeouts,
    pub(crate) connect_timeout: Duration,
    pub(crate) consumer_buffer: usize,
    pub(crate) tls: Option<TlsOptions>,
}

impl ConnectionOptions {
    /// Options from an AMQP URI.
    pub fn from_uri(uri: &str) -> Result<Self, Error> {
        let uri: AmqpUri = uri.parse()?;
        let defaults = HandshakeConfig::default();
        let limits = Limits {
            channel_max: uri.channel_max.unwrap_or(defaults.limits.channel_max),
            frame_max: uri.frame_max.unwrap_or(defaults.limits.frame_max),
            heartbeat: uri.heartbeat.unwrap_or(defaults.limits.heartbeat),
        };
        Ok(ConnectionOptions {
            endpoints: vec![(uri.host, uri.port)],
            handshake: HandshakeConfig {
                username: uri.username,
                password: uri.password,
                vhost: uri.vhost,
                mechanism: uri.mechanism.unwrap_or_default(),
                limits,
                connection_name: None,
            },
            timeouts: Timeouts::default(),
            connect_timeout: uri.connection_timeout.unwrap_or(Duration::from_secs(30)),
            consumer_buffer: 2048,
            tls: uri.tls.then(|| TlsOptions {
                ca_file: uri.ca_file.map(Into::into),
                cert_file: uri.cert_file.map(Into::into),
                key_file: uri.key_file.map(Into::into),
                server_name: uri.server_name,
            }),
        })
    }

    /// Adds an endpoint to try, in order, when the ones before it do not answer.
    pub fn endpoint(mut self, host: impl Into<String>, port: u16) -> Self {
        self.endpoints.push((host.into(), port));
        self
    }

    /// Replaces the endpoints with these, tried in this order (a recovering connection
    /// rotates through them after a failure).
    ///
    /// ```
    /// use amqp_client::api::options::ConnectionOptions;
    /// let options = ConnectionOptions::from_uri("amqp://127.0.0.1:5672").unwrap().endpoint("127.0.0.2", 5672);
    /// let second = options.clone().with_endpoints([("127.0.0.2".to_string(), 5672)]);
    /// assert_eq!(second.endpoints(), &[("127.0.0.2".to_string(), 5672)]);
    /// ```
    pub fn with_endpoints(mut self, endpoints: impl IntoIterator<Item = (String, u16)>) -> Self {
        self.endpoints = endpoints.into_iter().collect();
        self
    }

    /// Replaces the endpoints with a comma-separated address list, `host[:port],...` (as
    /// Spring's `addresses`): the port defaults to the first endpoint's. IPv6 hosts go in
    /// brackets (`[::1]:5672`).
    ///
    /// ```
    /// use amqp_client::api::options::ConnectionOptions;
    /// let options = ConnectionOptions::from_uri("amqp://127.0.0.1:5672").unwrap();
    /// let options = options.with_addresses("node-a, node-b:5673,[::1]").unwrap();
    /// let hosts: Vec<_> = options.endpoints().iter().map(|(h, p)| format!("{h}:{p}")).collect();
    /// assert_eq!(hosts, ["node-a:5672", "node-b:5673", "::1:5672"]);
    /// assert!(options.with_addresses("a:notaport").is_err());
    /// ```
    pub fn with_addresses(self, addresses: &str) -> Result<Self, Error> {
        let default_port = self.endpoints.first().map_or(5672, |(_, port)| *port);
        let bad = |value: &str| UriError::Parameter { name: "addresses".into(), value: value.into() };
        let mut endpoints = Vec::new();
        for address in addresses.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let (host, port) = match address.strip_prefix('[') {
                Some(rest) => {
                    let (host, after) = rest.split_once(']').ok_or_else(|| bad(address))?;
                    (host, after.strip_prefix(':'))
                }
                None => match address.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (address, None),
                },
            };
            let port = match port {
                Some(port) => port.parse().map_err(|_| bad(address))?,
                None => default_port,
            };
            endpoints.push((host.to_owned(), port));
        }
        if endpoints.is_empty() {
            return Err(UriError::NoHost.into());
        }
        Ok(self.with_endpoints(endpoints))
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.handshake.username
    }

    /// The virtual host.
    pub fn vhost(&self) -> &str {
        &self.handshake.vhost
    }

    /// The endpoints, in the order they are tried.
    pub fn endpoints(&self) -> &[(String, u16)] {
        &self.endpoints
    }

    /// The name the broker shows for this connection.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.handshake.connection_name = Some(name.into());
        self
    }

    /// Heartbeat interval to ask for, in seconds (0: none).
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.handshake.limits.heartbeat = seconds;
        self
    }

    /// Largest frame to ask for.
    pub fn frame_max(mut self, bytes: u32) -> Self {
        self.handshake.limits.frame_max = bytes;
        self
    }

    /// Highest channel number to ask for.
    pub fn channel_max(mut self, channels: u16) -> Self {
        self.handshake.limits.channel_max = channels;
        self
    }

    /// Time allowed for TCP connect plus the whole handshake.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.timeouts.handshake = timeout;
        self
    }

    /// The SASL mechanism.
    pub fn mechanism(mut self, mechanism: Mechanism) -> Self {
        self.handshake.mechanism = mechanism;
        self
    }

    /// Connects with TLS (as `amqps://` does), with these trust and identity settings.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How many deliveries a consumer may hold unread before the connection stops reading
    /// the socket (its prefetch normally keeps it below this). Independently of this count,
    /// the connection also stops reading while a consumer holds 4 MiB of unread bodies or
    /// more, so that large messages do not pile up in memory up to the prefetch.
    pub fn consumer_buffer(mut self, deliveries: usize) -> Self {
        self.consumer_buffer = deliveries.max(1);
        self
    }
}

/// exchange.declare's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeDeclareOptions {
    /// Only check that it exists (404 if not).
    pub passive: bool,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Publishers cannot publish to it directly.
    pub internal: bool,
    /// Do not wait for declare-ok.
    pub no_wait: bool,
}

/// exchange.delete's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeDeleteOptions {
    /// Only if it has no bindings.
    pub if_unused: bool,
    /// Do not wait for delete-ok.
    pub no_wait: bool,
}

/// queue.declare's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDeclareOptions {
    /// Only check that it exists (404 if not).
    pub passive: bool,
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by this connection only, deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Do not wait for declare-ok.
    pub no_wait: bool,
}

/// queue.delete's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDeleteOptions {
    /// Only if it has no consumers.
    pub if_unused: bool,
    /// Only if it holds no messages.
    pub if_empty: bool,
    /// Do not wait for delete-ok.
    pub no_wait: bool,
}

/// basic.consume's flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasicConsumeOptions {
    /// The consumer tag; empty asks the broker for one.
    pub consumer_tag: String,
    /// Do not deliver this connection's own publishes (RabbitMQ ignores it).
    pub no_local: bool,
    /// Deliveries count as acknowledged when sent (no ack needed, no redelivery).
    pub no_ack: bool,
    /// The only consumer of the queue.
    pub exclusive: bool,
}

/// basic.publish's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BasicPublishOptions {
    /// Return the message if no queue takes it.
    pub mandatory: bool,
    /// Not supported by RabbitMQ 3+ (the connection would be closed with 540).
    pub immediate: bool,
}

/// basic.qos's scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BasicQosOptions {
    /// RabbitMQ: the limit is shared by every consumer of the channel, instead of each.
    pub global: bool,
}
