//! SASL mechanisms the client offers in connection.start-ok: PLAIN, AMQPLAIN and EXTERNAL.
//! Pure: builds response bytes from credentials. Touches `amqp-codec`'s tables only.

use amqp_codec::{FieldTable, FieldValue};
use bytes::{Bytes, BytesMut};

/// How the client proves who it is.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616): `\0user\0password`. RabbitMQ's default.
    #[default]
    Plain,
    /// `AMQPLAIN`: a field table with `LOGIN` and `PASSWORD`, without its length prefix.
    AmqPlain,
    /// `EXTERNAL`: identity from outside AMQP, such as a TLS client certificate; empty response.
    External,
}

impl Mechanism {
    /// The name as it appears in connection.start's mechanisms list.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::AmqPlain => "AMQPLAIN",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// Parses a name as in a URI's `auth_mechanism` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "AMQPLAIN" => Some(Mechanism::AmqPlain),
            "EXTERNAL" => Some(Mechanism::External),
            _ => None,
        }
    }

    /// True when the server's space-separated `mechanisms` list offers this one.
    pub fn offered_in(&self, mechanisms: &[u8]) -> bool {
        mechanisms.split(|b| *b == b' ').any(|m| m == self.name().as_bytes())
    }

    /// The start-ok response for these credentials.
    pub fn response(&self, username: &str, password: &str) -> Bytes {
        match self {
            Mechanism::Plain => {
                let mut out = BytesMut::with_capacity(2 + username.len() + password.len());
                out.extend_from_slice(b"\0");
                out.extend_from_slice(username.as_bytes());
                out.extend_from_slice(b"\0");
                out.extend_from_slice(password.as_bytes());
                out.freeze()
            }
            Mechanism::AmqPlain => {
                let mut table = FieldTable::new();
                table.insert("LOGIN", FieldValue::from(username));
                table.insert("PASSWORD", FieldValue::from(password));
                // AMQPLAIN sends the table's entries without the 32-bit length. Credentials
                // longer than 4 GiB cannot occur (they came from a URI or a config string),
                // so the only encode error is a key over 255 bytes, and these keys are fixed.
                match table.to_bytes() {
                    Ok(bytes) => bytes.freeze().slice(4..),
                    Err(_) => Bytes::new(),
                }
            }
            Mechanism::External => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_codec::RawTable;

    #[test]
    fn plain_response_is_nul_separated() {
        assert_eq!(&Mechanism::Plain.response("guest", "pw")[..], b"\0guest\0pw");
    }

    #[test]
    fn amqplain_response_is_a_table_without_its_length() {
        let response = Mechanism::AmqPlain.response("u", "p");
        let table = RawTable::parse(&response).unwrap();
        assert_eq!(table.get("LOGIN").and_then(|v| v.as_str()), Some("u"));
        assert_eq!(table.get("PASSWORD").and_then(|v| v.as_str()), Some("p"));
    }

    #[test]
    fn offered_mechanisms_are_matched_whole() {
        assert!(Mechanism::Plain.offered_in(b"AMQPLAIN PLAIN"));
        assert!(!Mechanism::External.offered_in(b"AMQPLAIN PLAIN"));
        assert!(!Mechanism::Plain.offered_in(b"PLAINX"));
        assert_eq!(Mechanism::from_name("external"), Some(Mechanism::External));
    }
}
