//! The connection class (10): negotiation, tuning, open and close, plus RabbitMQ's
//! blocked/unblocked and update-secret. Field lists only; see `fields.rs` for the machinery.

use super::fields::method_structs;
use crate::ids::{ClassId, MethodId, ReplyCode};
use crate::table::Table;

method_structs! {
    /// connection.start (10,10): the server proposes a protocol version, its properties and
    /// the SASL mechanisms it accepts.
    ConnectionStart<'a> {
        version_major: u8,
        version_minor: u8,
        server_properties: Table<'a>,
        mechanisms: &'a [u8],
        locales: &'a [u8],
    }
    /// connection.start-ok (10,11): the client picks a mechanism and locale and answers.
    ConnectionStartOk<'a> {
        client_properties: Table<'a>,
        mechanism: &'a str,
        response: &'a [u8],
        locale: &'a str,
    }
    /// connection.secure (10,20): a further SASL challenge.
    ConnectionSecure<'a> {
        challenge: &'a [u8],
    }
    /// connection.secure-ok (10,21): the answer to a challenge.
    ConnectionSecureOk<'a> {
        response: &'a [u8],
    }
    /// connection.tune (10,30): the server's limits for channels, frame size and heartbeat.
    ConnectionTune {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    }
    /// connection.tune-ok (10,31): the limits the client settles on.
    ConnectionTuneOk {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    }
    /// connection.open (10,40): opens a virtual host.
    ConnectionOpen<'a> {
        virtual_host: &'a str,
        reserved_1: &'a str,
        reserved_2: bool,
    }
    /// connection.open-ok (10,41).
    ConnectionOpenOk<'a> {
        reserved_1: &'a str,
    }
    /// connection.close (10,50): either side closes, saying why and which method failed.
    ConnectionClose<'a> {
        reply_code: ReplyCode,
        reply_text: &'a str,
        class_id: ClassId,
        method_id: MethodId,
    }
    /// connection.close-ok (10,51).
    ConnectionCloseOk {}
    /// connection.blocked (10,60), RabbitMQ: the broker stops reading publishes (an alarm).
    ConnectionBlocked<'a> {
        reason: &'a str,
    }
    /// connection.unblocked (10,61), RabbitMQ: the alarm cleared.
    ConnectionUnblocked {}
    /// connection.update-secret (10,70), RabbitMQ: a new credential (an OAuth token) for the
    /// live connection.
    ConnectionUpdateSecret<'a> {
        new_secret: &'a [u8],
        reason: &'a str,
    }
    /// connection.update-secret-ok (10,71), RabbitMQ.
    ConnectionUpdateSecretOk {}
}
