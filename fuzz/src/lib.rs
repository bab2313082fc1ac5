//! Helpers the fuzz targets share: the canonical bytes the codec must write back
//! ([`canonical`]), the checks every `DecodeError` must pass, and a table comparison that
//! treats two NaNs with the same bits as equal. Touches only `amqp-codec`'s public API.

pub mod canonical;

use amqp_codec::table::{FieldTable, FieldValue};
use amqp_codec::{DecodeError, FRAME_MIN_SIZE, ReplyCode};

/// The largest frame_max the frame targets use: RabbitMQ's default.
pub const FRAME_MAX_CEILING: u32 = 131_072;

/// Maps two input bytes onto frame_max in `FRAME_MIN_SIZE..=FRAME_MAX_CEILING`, both ends
/// included (0x0000 is 4096, 0xffff is 131072).
pub fn frame_max_from(selector: [u8; 2]) -> u32 {
    let x = u64::from(u16::from_be_bytes(selector));
    let span = u64::from(FRAME_MAX_CEILING - FRAME_MIN_SIZE);
    // Cannot truncate: at most FRAME_MAX_CEILING.
    FRAME_MIN_SIZE + (x * span / u64::from(u16::MAX)) as u32
}

/// What every decoding error must satisfy: it points into the input (at most one past its
/// end, where a truncated field would have continued), and it maps to a connection
/// exception's reply code.
pub fn check_decode_error(e: &DecodeError, input_len: usize) {
    assert!(e.offset <= input_len, "{e:?} points past the {input_len}-byte input");
    let code = e.reply_code();
    assert!(
        [ReplyCode::FRAME_ERROR, ReplyCode::SYNTAX_ERROR, ReplyCode::COMMAND_INVALID, ReplyCode::UNEXPECTED_FRAME]
            .contains(&code),
        "{e:?} maps to {code}",
    );
    assert!(code.is_hard(), "{e:?} maps to a channel exception");
    assert!(!e.to_string().is_empty());
}

/// Equal keys, order, tags and values, with floats compared by their bits (so NaN == NaN).
pub fn same_table(a: &FieldTable, b: &FieldTable) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

/// See [`same_table`].
pub fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::F32(x), FieldValue::F32(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::F64(x), FieldValue::F64(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::Table(x), FieldValue::Table(y)) => same_table(x, y),
        (FieldValue::Array(x), FieldValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        _ => a == b,
    }
}
