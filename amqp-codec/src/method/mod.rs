//! Every method of AMQP 0-9-1 with RabbitMQ's extensions: one file per class holds the field
//! lists, and this file holds the table of class and method ids, the [`Method`] enum and its
//! dispatch. Touches `primitives.rs` and `table.rs` through the field types.

pub mod basic;
pub mod channel;
pub mod confirm;
pub mod connection;
pub mod exchange;
pub(crate) mod fields;
pub mod queue;
pub mod tx;

pub use basic::*;
pub use channel::*;
pub use confirm::*;
pub use connection::*;
pub use exchange::*;
pub use fields::Fields;
pub use queue::*;
pub use tx::*;

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{ClassId, MethodId};
use crate::primitives::{Domain, Reader, Sizer, Writer};

/// A method type's identity on the wire.
pub trait AmqpMethod<'a>: Fields<'a> + Into<Method<'a>> {
    /// Class id.
    const CLASS_ID: ClassId;
    /// Method id within the class.
    const METHOD_ID: MethodId;
    /// `class.method` as the spec writes it, e.g. `basic.publish`.
    const NAME: &'static str;
}

/// One method of the spec as this codec implements it: for checking against the spec's XML.
#[derive(Clone, Copy, Debug)]
pub struct MethodSpec {
    /// Class id.
    pub class_id: ClassId,
    /// Method id.
    pub method_id: MethodId,
    /// `class.method`, e.g. `basic.publish`.
    pub name: &'static str,
    /// The fields, in wire order (names with `_` for the spec's `-`).
    pub fields: &'static [(&'static str, Domain)],
}

macro_rules! methods {
    ($lt:lifetime; $( $variant:ident $(<$vlt:lifetime>)? = $class:literal, $method:literal, $name:literal; )*) => {
        /// Any method, decoded (borrowing from the input) or to be encoded.
        ///
        /// ```
        /// use amqp_codec::{Method, method::BasicQos};
        /// let qos: Method = BasicQos { prefetch_count: 100, ..Default::default() }.into();
        /// assert_eq!(qos.name(), "basic.qos");
        /// ```
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum Method<$lt> {
            $(
                #[doc = concat!("`", $name, "` (", $class, ",", $method, ")")]
                $variant($variant $(<$vlt>)?),
            )*
        }

        impl<$lt> Method<$lt> {
            /// Parses a method frame's payload that began `base` bytes into the caller's input.
            pub fn parse(payload: &$lt [u8], base: usize) -> Result<Self, DecodeError> {
                // The ids and a jump: everything else is out of line, so that this is a tail
                // call to the method's reader, with no frame of its own.
                let Some((&[c0, c1, m0, m1], fields)) = payload.split_first_chunk::<4>() else {
                    return Err(Reader::new(payload, base).truncated_ids());
                };
                let (class, method) = (u16::from_be_bytes([c0, c1]), u16::from_be_bytes([m0, m1]));
                let at = base + 4;
                match (class, method) {
                    $( ($class, $method) => read_method::<$variant $(<$vlt>)?>(fields, at), )*
                    _ => unknown_method(class, method, base),
                }
            }

            /// Class and method id.
            pub fn id(&self) -> (ClassId, MethodId) {
                match self {
                    $( Method::$variant(_) => (ClassId($class), MethodId($method)), )*
                }
            }

            /// `class.method` as the spec writes it.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Method::$variant(_) => $name, )*
                }
            }

            /// Size of the encoded payload (ids included); fails on a value the wire cannot carry.
            pub fn encoded_len(&self) -> Result<usize, EncodeError> {
                let mut s = Sizer::new();
                s.fixed(4);
                match self {
                    $( Method::$variant(m) => m.size(&mut s)?, )*
                }
                Ok(s.len)
            }

            /// Writes the payload; only after `encoded_len` succeeded.
            pub(crate) fn write(&self, w: &mut Writer<'_>) {
                let (class, method) = self.id();
                w.u16(class.0);
                w.u16(method.0);
                match self {
                    $( Method::$variant(m) => m.write(w), )*
                }
            }
        }

        $(
            impl<$lt> From<$variant $(<$vlt>)?> for Method<$lt> {
                fn from(m: $variant $(<$vlt>)?) -> Self {
                    Method::$variant(m)
                }
            }

            impl<$lt> AmqpMethod<$lt> for $variant $(<$vlt>)? {
                const CLASS_ID: ClassId = ClassId($class);
                const METHOD_ID: MethodId = MethodId($method);
                const NAME: &'static str = $name;
            }
        )*

        /// Every method this codec knows, in the order of the spec.
        pub const SPEC: &[MethodSpec] = &[
            $( MethodSpec {
                class_id: ClassId($class),
                method_id: MethodId($method),
                name: $name,
                fields: <$variant as Fields<'static>>::FIELDS,
            }, )*
        ];
    };
}

methods! { 'a;
    ConnectionStart<'a> = 10, 10, "connection.start";
    ConnectionStartOk<'a> = 10, 11, "connection.start-ok";
    ConnectionSecure<'a> = 10, 20, "connection.secure";
    ConnectionSecureOk<'a> = 10, 21, "connection.secure-ok";
    ConnectionTune = 10, 30, "connection.tune";
    ConnectionTuneOk = 10, 31, "connection.tune-ok";
    ConnectionOpen<'a> = 10, 40, "connection.open";
    ConnectionOpenOk<'a> = 10, 41, "connection.open-ok";
    ConnectionClose<'a> = 10, 50, "connection.close";
    ConnectionCloseOk = 10, 51, "connection.close-ok";
    ConnectionBlocked<'a> = 10, 60, "connection.blocked";
    ConnectionUnblocked = 10, 61, "connection.unblocked";
    ConnectionUpdateSecret<'a> = 10, 70, "connection.update-secret";
    ConnectionUpdateSecretOk = 10, 71, "connection.update-secret-ok";
    ChannelOpen<'a> = 20, 10, "channel.open";
    ChannelOpenOk<'a> = 20, 11, "channel.open-ok";
    ChannelFlow = 20, 20, "channel.flow";
    ChannelFlowOk = 20, 21, "channel.flow-ok";
    ChannelClose<'a> = 20, 40, "channel.close";
    ChannelCloseOk = 20, 41, "channel.close-ok";
    ExchangeDeclare<'a> = 40, 10, "exchange.declare";
    ExchangeDeclareOk = 40, 11, "exchange.declare-ok";
    ExchangeDelete<'a> = 40, 20, "exchange.delete";
    ExchangeDeleteOk = 40, 21, "exchange.delete-ok";
    ExchangeBind<'a> = 40, 30, "exchange.bind";
    ExchangeBindOk = 40, 31, "exchange.bind-ok";
    ExchangeUnbind<'a> = 40, 40, "exchange.unbind";
    ExchangeUnbindOk = 40, 51, "exchange.unbind-ok";
    QueueDeclare<'a> = 50, 10, "queue.declare";
    QueueDeclareOk<'a> = 50, 11, "queue.declare-ok";
    QueueBind<'a> = 50, 20, "queue.bind";
    QueueBindOk = 50, 21, "queue.bind-ok";
    QueuePurge<'a> = 50, 30, "queue.purge";
    QueuePurgeOk = 50, 31, "queue.purge-ok";
    QueueDelete<'a> = 50, 40, "queue.delete";
    QueueDeleteOk = 50, 41, "queue.delete-ok";
    QueueUnbind<'a> = 50, 50, "queue.unbind";
    QueueUnbindOk = 50, 51, "queue.unbind-ok";
    BasicQos = 60, 10, "basic.qos";
    BasicQosOk = 60, 11, "basic.qos-ok";
    BasicConsume<'a> = 60, 20, "basic.consume";
    BasicConsumeOk<'a> = 60, 21, "basic.consume-ok";
    BasicCancel<'a> = 60, 30, "basic.cancel";
    BasicCancelOk<'a> = 60, 31, "basic.cancel-ok";
    BasicPublish<'a> = 60, 40, "basic.publish";
    BasicReturn<'a> = 60, 50, "basic.return";
    BasicDeliver<'a> = 60, 60, "basic.deliver";
    BasicGet<'a> = 60, 70, "basic.get";
    BasicGetOk<'a> = 60, 71, "basic.get-ok";
    BasicGetEmpty<'a> = 60, 72, "basic.get-empty";
    BasicAck = 60, 80, "basic.ack";
    BasicReject = 60, 90, "basic.reject";
    BasicRecoverAsync = 60, 100, "basic.recover-async";
    BasicRecover = 60, 110, "basic.recover";
    BasicRecoverOk = 60, 111, "basic.recover-ok";
    BasicNack = 60, 120, "basic.nack";
    ConfirmSelect = 85, 10, "confirm.select";
    ConfirmSelectOk = 85, 11, "confirm.select-ok";
    TxSelect = 90, 10, "tx.select";
    TxSelectOk = 90, 11, "tx.select-ok";
    TxCommit = 90, 20, "tx.commit";
    TxCommitOk = 90, 21, "tx.commit-ok";
    TxRollback = 90, 30, "tx.rollback";
    TxRollbackOk = 90, 31, "tx.rollback-ok";
}

/// Reads one method's fields and checks that they used the whole payload.
///
/// One copy per method, kept out of `Method::parse` on purpose: inlined there, the 64 arms
/// met in one `Method` value, which LLVM assembled byte by byte from every variant's layout
/// (callgrind: 335 instructions to parse a basic.deliver, most of them moving bytes).
/// It takes the fields' bytes rather than a `Reader`: a reader passed in lives in the
/// caller's memory, and every field's read was stored back there.
#[inline(never)]
fn read_method<'a, M: Fields<'a> + Into<Method<'a>>>(fields: &'a [u8], base: usize) -> Result<Method<'a>, DecodeError> {
    let mut r = Reader::new(fields, base);
    let method = M::read(&mut r)?;
    r.finish()?;
    Ok(method.into())
}

#[cold]
#[inline(never)]
fn unknown_method<'a>(class: u16, method: u16, base: usize) -> Result<Method<'a>, DecodeError> {
    let kind = DecodeErrorKind::UnknownMethod { class: ClassId(class), method: MethodId(method) };
    Err(DecodeError::new(kind, base))
}

impl Method<'_> {
    /// True for methods followed by a content header and body (publish, return, deliver, get-ok).
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicPublish(_) | Method::BasicReturn(_) | Method::BasicDeliver(_) | Method::BasicGetOk(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeliveryTag;

    #[test]
    fn unknown_method_is_command_invalid_at_the_payload_start() {
        let err = Method::parse(&[0, 60, 0, 99], 7).unwrap_err();
        let kind = DecodeErrorKind::UnknownMethod { class: ClassId(60), method: MethodId(99) };
        assert_eq!(err, DecodeError::new(kind, 7));
        assert_eq!(err.reply_code(), crate::ids::ReplyCode::COMMAND_INVALID);
    }

    #[test]
    fn a_payload_too_short_for_the_ids_is_truncated_where_they_run_out() {
        let truncated = |needed, offset| DecodeError::new(DecodeErrorKind::Truncated { needed }, offset);
        assert_eq!(Method::parse(&[], 7).unwrap_err(), truncated(2, 7));
        assert_eq!(Method::parse(&[0], 7).unwrap_err(), truncated(1, 7));
        assert_eq!(Method::parse(&[0, 60], 7).unwrap_err(), truncated(2, 9));
        assert_eq!(Method::parse(&[0, 60, 0], 7).unwrap_err(), truncated(1, 9));
    }

    #[test]
    fn unknown_class_is_command_invalid() {
        let err = Method::parse(&[0, 30, 0, 10], 0).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::UnknownMethod { class: ClassId(30), .. }));
    }

    #[test]
    fn trailing_bytes_after_the_last_field_are_a_frame_error() {
        let err = Method::parse(&[0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9], 0).unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::TrailingBytes(1), 13));
    }

    #[test]
    fn ack_parses_with_its_packed_bit() {
        let m = Method::parse(&[0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 7, 1], 0).unwrap();
        assert_eq!(m, Method::BasicAck(BasicAck { delivery_tag: DeliveryTag(7), multiple: true }));
    }
}
