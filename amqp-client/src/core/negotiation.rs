//! The opening handshake, as states consumed by value:
//!
//! ```text
//!  AwaitingStart --start/start-ok--> AwaitingTune --tune/tune-ok+open--> AwaitingOpenOk --open-ok--> open
//!        |                             |   ^ secure/secure-ok                   |
//!        +-----------------------------+---+------------------------------------+--> failed (ConnectionError)
//! ```
//!
//! Pure: it receives decoded methods and returns the frames to send and what it learned.
//! Touches `amqp-codec`, `sasl.rs` and `tuning.rs`.

use amqp_codec::method::{ConnectionOpen, ConnectionSecureOk, ConnectionStartOk, ConnectionTuneOk};
use amqp_codec::{ChannelId, FieldTable, FieldValue, Method, ReplyCode, Table, encode_method};
use bytes::BytesMut;

use super::error::ConnectionError;
use super::sasl::Mechanism;
use super::tuning::{Limits, Tuned};

/// What the client brings to the handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// User name.
    pub username: String,
    /// Password (unused by EXTERNAL).
    pub password: String,
    /// Virtual host to open.
    pub vhost: String,
    /// SASL mechanism.
    pub mechanism: Mechanism,
    /// The limits the client wants; the broker's tune may lower them.
    pub limits: Limits,
    /// Shown by the broker's management UI as the connection's name.
    pub connection_name: Option<String>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            username: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            mechanism: Mechanism::Plain,
            limits: Limits { channel_max: 2047, frame_max: 131_072, heartbeat: 60 },
            connection_name: None,
        }
    }
}

/// Where the handshake is.
#[derive(Debug)]
pub enum Handshake {
    /// Sent the protocol header; waiting for connection.start.
    AwaitingStart,
    /// Sent start-ok; waiting for tune (or a secure challenge).
    AwaitingTune {
        /// The broker's server-properties, kept for the caller.
        server_properties: FieldTable,
    },
    /// Sent tune-ok and open; waiting for open-ok.
    AwaitingOpenOk {
        /// The broker's server-properties.
        server_properties: FieldTable,
        /// The negotiated limits.
        tuned: Tuned,
    },
}

/// What one step of the handshake produced.
#[derive(Debug)]
pub enum Step {
    /// Still going.
    Continue(Handshake),
    /// open-ok arrived: the connection is open.
    Open {
        /// The broker's server-properties (product, version, capabilities, ...).
        server_properties: FieldTable,
        /// The negotiated limits.
        tuned: Tuned,
    },
}

/// The capabilities this client implements, announced in start-ok's client-properties.
const CAPABILITIES: [&str; 7] = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
];

impl Handshake {
    /// Handles one method on channel 0; writes any answer into `out`.
    pub fn step(
        self,
        method: &Method<'_>,
        config: &HandshakeConfig,
        out: &mut BytesMut,
    ) -> Result<Step, ConnectionError> {
        match (self, method) {
            (Handshake::AwaitingStart, Method::ConnectionStart(start)) => {
                if (start.version_major, start.version_minor) != (0, 9) {
                    return Err(ConnectionError::ProtocolMismatch);
                }
                if !config.mechanism.offered_in(start.mechanisms) {
                    return Err(ConnectionError::MechanismNotOffered {
                        wanted: config.mechanism.name(),
                        offered: String::from_utf8_lossy(start.mechanisms).into_owned(),
                    });
                }
                let properties = client_properties(config);
                let response = config.mechanism.response(&config.username, &config.password);
                let start_ok = ConnectionStartOk {
                    client_properties: Table::from(&properties),
                    mechanism: config.mechanism.name(),
                    response: &response,
                    locale: "en_US",
                };
                send(out, start_ok.into())?;
                Ok(Step::Continue(Handshake::AwaitingTune {
                    server_properties: server_properties(&start.server_properties),
                }))
            }
            (state @ Handshake::AwaitingTune { .. }, Method::ConnectionSecure(_)) => {
                // PLAIN, AMQPLAIN and EXTERNAL finish in start-ok; a challenge gets the same
                // credentials again, which is what RabbitMQ expects of these mechanisms.
                let response = config.mechanism.response(&config.username, &config.password);
                send(out, ConnectionSecureOk { response: &response }.into())?;
                Ok(Step::Continue(state))
            }
            (Handshake::AwaitingTune { server_properties }, Method::ConnectionTune(tune)) => {
                let server =
                    Limits { channel_max: tune.channel_max, frame_max: tune.frame_max, heartbeat: tune.heartbeat };
                let agreed = config.limits.negotiate(server);
                let tune_ok = ConnectionTuneOk {
                    channel_max: agreed.channel_max,
                    frame_max: agreed.frame_max,
                    heartbeat: agreed.heartbeat,
                };
                send(out, tune_ok.into())?;
                let open = ConnectionOpen { virtual_host: &config.vhost, ..Default::default() };
                send(out, open.into())?;
                Ok(Step::Continue(Handshake::AwaitingOpenOk { server_properties, tuned: agreed.tuned() }))
            }
            (Handshake::AwaitingOpenOk { server_properties, tuned }, Method::ConnectionOpenOk(_)) => {
                Ok(Step::Open { server_properties, tuned })
            }
            (_, Method::ConnectionClose(close)) if close.reply_code == ReplyCode::ACCESS_REFUSED => {
                Err(ConnectionError::AccessRefused(close.reply_text.to_owned()))
            }
            (_, Method::ConnectionClose(close)) => Err(ConnectionError::ClosedByBroker {
                code: close.reply_code,
                text: close.reply_text.to_owned(),
                method: Some((close.class_id, close.method_id)).filter(|(c, _)| c.0 != 0),
            }),
            (_, other) => Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::COMMAND_INVALID,
                reason: format!("{} during the handshake", other.name()),
            }),
        }
    }
}

fn send(out: &mut BytesMut, method: Method<'_>) -> Result<(), ConnectionError> {
    // Before tune, frames may not exceed the spec's minimum frame size.
    encode_method(ChannelId::CONNECTION, &method, amqp_codec::FRAME_MIN_SIZE, out).map_err(|e| {
        ConnectionError::ProtocolViolation {
            code: ReplyCode::INTERNAL_ERROR,
            reason: format!("cannot encode {}: {e}", method.name()),
        }
    })
}

fn server_properties(table: &Table<'_>) -> FieldTable {
    table.to_owned()
}

fn client_properties(config: &HandshakeConfig) -> FieldTable {
    let capabilities: FieldTable = CAPABILITIES.iter().map(|c| (*c, FieldValue::Bool(true))).collect();
    let mut properties = FieldTable::new();
    properties.insert("product", env!("CARGO_PKG_NAME"));
    properties.insert("version", env!("CARGO_PKG_VERSION"));
    properties.insert("platform", "Rust");
    properties.insert("capabilities", capabilities);
    if let Some(name) = &config.connection_name {
        properties.insert("connection_name", name.as_str());
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_codec::method::{ConnectionClose, ConnectionOpenOk, ConnectionStart, ConnectionTune};
    use amqp_codec::{FramePayload, Parsed, RawTable, parse_frame};

    fn start(mechanisms: &[u8]) -> Method<'_> {
        ConnectionStart { version_major: 0, version_minor: 9, mechanisms, locales: b"en_US", ..Default::default() }
            .into()
    }

    fn sent_methods(out: &BytesMut) -> Vec<String> {
        let mut input = &out[..];
        let mut names = Vec::new();
        while let Ok(Parsed::Complete { value, consumed }) = parse_frame(input, 4096) {
            if let FramePayload::Method(m) = value.payload {
                names.push(m.name().to_owned());
            }
            input = &input[consumed..];
        }
        names
    }

    #[test]
    fn start_tune_and_open_ok_open_the_connection_with_negotiated_limits() {
        let config = HandshakeConfig::default();
        let mut out = BytesMut::new();
        let Step::Continue(h) = Handshake::AwaitingStart.step(&start(b"AMQPLAIN PLAIN"), &config, &mut out).unwrap()
        else {
            panic!("still negotiating")
        };
        let tune = ConnectionTune { channel_max: 0, frame_max: 131_072, heartbeat: 30 }.into();
        let Step::Continue(h) = h.step(&tune, &config, &mut out).unwrap() else { panic!("still negotiating") };
        let Step::Open { tuned, .. } = h.step(&ConnectionOpenOk::default().into(), &config, &mut out).unwrap() else {
            panic!("open")
        };
        assert_eq!(tuned.channel_max, 2047);
        assert_eq!(tuned.frame_max, 131_072);
        assert_eq!(tuned.heartbeat, Some(std::time::Duration::from_secs(30)));
        assert_eq!(sent_methods(&out), ["connection.start-ok", "connection.tune-ok", "connection.open"]);
    }

    #[test]
    fn start_ok_announces_every_capability_and_plain_credentials() {
        let mut out = BytesMut::new();
        Handshake::AwaitingStart.step(&start(b"PLAIN"), &HandshakeConfig::default(), &mut out).unwrap();
        let Ok(Parsed::Complete { value, .. }) = parse_frame(&out, 4096) else { panic!("a frame") };
        let FramePayload::Method(Method::ConnectionStartOk(ok)) = value.payload else { panic!("start-ok") };
        assert_eq!(ok.mechanism, "PLAIN");
        assert_eq!(ok.response, b"\0guest\0guest");
        let Table::Raw(props) = ok.client_properties else { panic!("parsed") };
        let Some(amqp_codec::FieldValueRef::Table(caps)) = props.get("capabilities") else { panic!("capabilities") };
        for cap in CAPABILITIES {
            assert_eq!(caps.get(cap), Some(amqp_codec::FieldValueRef::Bool(true)), "{cap}");
        }
        let _: RawTable = caps;
    }

    #[test]
    fn a_mechanism_the_broker_does_not_offer_fails_before_sending_anything() {
        let config = HandshakeConfig { mechanism: Mechanism::External, ..Default::default() };
        let mut out = BytesMut::new();
        let err = Handshake::AwaitingStart.step(&start(b"AMQPLAIN PLAIN"), &config, &mut out).unwrap_err();
        assert!(matches!(err, ConnectionError::MechanismNotOffered { wanted: "EXTERNAL", .. }));
        assert!(out.is_empty());
    }

    #[test]
    fn access_refused_after_start_ok_is_reported_as_such() {
        let config = HandshakeConfig::default();
        let h = Handshake::AwaitingTune { server_properties: FieldTable::new() };
        let close = ConnectionClose {
            reply_code: ReplyCode::ACCESS_REFUSED,
            reply_text: "ACCESS_REFUSED - Login was refused",
            ..Default::default()
        };
        let err = h.step(&close.into(), &config, &mut BytesMut::new()).unwrap_err();
        assert!(matches!(err, ConnectionError::AccessRefused(text) if text.contains("Login was refused")));
    }

    #[test]
    fn unknown_vhost_is_a_broker_close_with_530() {
        let h = Handshake::AwaitingOpenOk {
            server_properties: FieldTable::new(),
            tuned: Limits { channel_max: 1, frame_max: 4096, heartbeat: 0 }.tuned(),
        };
        let close =
            ConnectionClose { reply_code: ReplyCode::NOT_ALLOWED, reply_text: "vhost not found", ..Default::default() };
        let err = h.step(&close.into(), &HandshakeConfig::default(), &mut BytesMut::new()).unwrap_err();
        assert!(matches!(err, ConnectionError::ClosedByBroker { code: ReplyCode::NOT_ALLOWED, method: None, .. }));
    }

    #[test]
    fn a_method_out_of_order_is_command_invalid() {
        let tune = ConnectionTune { channel_max: 0, frame_max: 131_072, heartbeat: 30 }.into();
        let err = Handshake::AwaitingStart.step(&tune, &HandshakeConfig::default(), &mut BytesMut::new()).unwrap_err();
        assert!(matches!(err, ConnectionError::ProtocolViolation { code: ReplyCode::COMMAND_INVALID, .. }));
    }
}
