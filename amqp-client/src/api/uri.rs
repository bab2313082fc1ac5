//! AMQP URIs as RabbitMQ documents them: `amqp://user:pass@host:port/vhost?heartbeat=10`, with
//! `amqps://` for TLS, percent-decoded user info and vhost (`%2f` is `/`, an empty path is the
//! default vhost `/`), and the query parameters heartbeat, frame_max, channel_max,
//! connection_timeout (milliseconds), auth_mechanism, and for TLS cacertfile, certfile, keyfile
//! and server_name_indication. Parsing and percent-decoding are the
//! `url` and `percent-encoding` crates'.

use std::time::Duration;

use crate::core::sasl::Mechanism;

/// A parsed AMQP URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUri {
    /// `amqps`: connect with TLS.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (5672, or 5671 for amqps, when not given).
    pub port: u16,
    /// User name (`guest` when not given).
    pub username: String,
    /// Password (`guest` when not given).
    pub password: String,
    /// Virtual host (`/` when not given).
    pub vhost: String,
    /// `heartbeat` in seconds.
    pub heartbeat: Option<u16>,
    /// `frame_max` in bytes.
    pub frame_max: Option<u32>,
    /// `channel_max`.
    pub channel_max: Option<u16>,
    /// `connection_timeout` in milliseconds.
    pub connection_timeout: Option<Duration>,
    /// `auth_mechanism`.
    pub mechanism: Option<Mechanism>,
    /// `cacertfile`: CA certificates (PEM) to trust for amqps.
    pub ca_file: Option<String>,
    /// `certfile`: the client certificate chain (PEM).
    pub cert_file: Option<String>,
    /// `keyfile`: the client's private key (PEM).
    pub key_file: Option<String>,
    /// `server_name_indication`: the name to verify the broker's certificate against.
    pub server_name: Option<String>,
}

/// A URI that is not an AMQP URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Not a URL at all.
    #[error("not a URI: {0}")]
    Syntax(String),
    /// A scheme other than amqp or amqps.
    #[error("scheme {0:?} is not amqp or amqps")]
    Scheme(String),
    /// No host.
    #[error("the URI names no host")]
    NoHost,
    /// A query parameter with a bad or unknown value.
    #[error("bad value {value:?} for {name}")]
    Parameter {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
    },
    /// Percent-encoding that is not UTF-8.
    #[error("percent-encoded text is not UTF-8")]
    Encoding,
}

impl std::str::FromStr for AmqpUri {
    type Err = UriError;

    /// ```
    /// use amqp_client::api::uri::AmqpUri;
    /// let uri: AmqpUri = "amqp://user:p%40ss@broker:5673/%2fprod?heartbeat=5".parse().unwrap();
    /// assert_eq!((uri.host.as_str(), uri.port, uri.password.as_str()), ("broker", 5673, "p@ss"));
    /// assert_eq!(uri.vhost, "/prod");
    /// assert_eq!(uri.heartbeat, Some(5));
    /// ```
    fn from_str(s: &str) -> Result<Self, UriError> {
        let url = url::Url::parse(s).map_err(|e| UriError::Syntax(e.to_string()))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => return Err(UriError::Scheme(other.to_owned())),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(UriError::NoHost)?;
        // IPv6 literals come bracketed from the url crate; sockets want them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let decode = |s: &str| percent_decode(s).ok_or(UriError::Encoding);
        let username = if url.username().is_empty() { "guest".to_owned() } else { decode(url.username())? };
        let password = match url.password() {
            Some(p) => decode(p)?,
            None => "guest".to_owned(),
        };
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        let vhost = if path.is_empty() { "/".to_owned() } else { decode(path)? };
        let mut uri = AmqpUri {
            tls,
            host,
            port: url.port().unwrap_or(if tls { 5671 } else { 5672 }),
            username,
            password,
            vhost,
            heartbeat: None,
            frame_max: None,
            channel_max: None,
            connection_timeout: None,
            mechanism: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
        };
        for (name, value) in url.query_pairs() {
            let bad = || UriError::Parameter { name: name.to_string(), value: value.to_string() };
            match &*name {
                "heartbeat" => uri.heartbeat = Some(value.parse().map_err(|_| bad())?),
                "frame_max" => uri.frame_max = Some(value.parse().map_err(|_| bad())?),
                "channel_max" => uri.channel_max = Some(value.parse().map_err(|_| bad())?),
                "connection_timeout" => {
                    uri.connection_timeout = Some(Duration::from_millis(value.parse().map_err(|_| bad())?))
                }
                "auth_mechanism" => uri.mechanism = Some(Mechanism::from_name(&value).ok_or_else(bad)?),
                "cacertfile" => uri.ca_file = Some(value.into_owned()),
                "certfile" => uri.cert_file = Some(value.into_owned()),
                "keyfile" => uri.key_file = Some(value.into_owned()),
                "server_name_indication" => uri.server_name = Some(value.into_owned()),
                _ => return Err(bad()),
            }
        }
        Ok(uri)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AmqpUri, UriError> {
        s.parse()
    }

    #[test]
    fn defaults_follow_rabbitmq() {
        let uri = parse("amqp://localhost").unwrap();
        assert_eq!(
            (uri.port, uri.username.as_str(), uri.password.as_str(), uri.vhost.as_str()),
            (5672, "guest", "guest", "/")
        );
        assert_eq!(parse("amqps://localhost").unwrap().port, 5671);
        assert_eq!(parse("amqp://localhost/").unwrap().vhost, "/");
        assert_eq!(parse("amqp://localhost/%2f").unwrap().vhost, "/");
        assert_eq!(parse("amqp://localhost/dev").unwrap().vhost, "dev");
    }

    #[test]
    fn every_query_parameter_is_read() {
        let uri = parse(
            "amqp://h?heartbeat=10&frame_max=8192&channel_max=64&connection_timeout=2500&auth_mechanism=external",
        )
        .unwrap();
        assert_eq!(uri.heartbeat, Some(10));
        assert_eq!(uri.frame_max, Some(8192));
        assert_eq!(uri.channel_max, Some(64));
        assert_eq!(uri.connection_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(uri.mechanism, Some(Mechanism::External));
        let tls =
            parse("amqps://h?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&server_name_indication=b").unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some("/ca.pem"));
        assert_eq!((tls.cert_file.as_deref(), tls.key_file.as_deref()), (Some("/c.pem"), Some("/k.pem")));
        assert_eq!(tls.server_name.as_deref(), Some("b"));
    }

    #[test]
    fn bad_uris_are_typed_errors() {
        assert!(matches!(parse("http://h"), Err(UriError::Scheme(s)) if s == "http"));
        assert!(matches!(parse("not a uri"), Err(UriError::Syntax(_))));
        assert!(matches!(parse("amqp://h?heartbeat=soon"), Err(UriError::Parameter { .. })));
        assert!(matches!(parse("amqp://h?colour=blue"), Err(UriError::Parameter { .. })));
        assert!(matches!(parse("amqp://h/%ff"), Err(UriError::Encoding)));
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        assert_eq!(parse("amqp://[::1]:5672").unwrap().host, "::1");
    }
}
