//! The bytes the codec must write back for input it accepted, computed by a walker that shares
//! no code with the codec's reader: the input itself, less the three things the codec
//! normalises. Those are, and are only:
//!
//! - packed bits (`bit` method fields): bits of the octet that name no field are dropped;
//! - property flags: continuation words (which may name no basic property) are dropped, and
//!   the first word's continuation bit is cleared;
//! - a `t` (boolean) table value other than 0 or 1 becomes 1 — but only when a table goes
//!   through the owned `FieldTable`; a parsed table inside a method or a content header is
//!   re-encoded from its raw bytes, verbatim.
//!
//! Each walker is called only on input the codec accepted, so a length or tag the walker
//! cannot follow means the codec accepted something malformed: that panics, on purpose.

use amqp_codec::method::SPEC;
use amqp_codec::primitives::Domain;
use amqp_codec::{ClassId, FRAME_END, MethodId};

/// A whole frame as `Frame::encode` must write it back, from the bytes `parse_frame` used.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let payload = &bytes[7..bytes.len() - 1];
    let payload = match bytes[0] {
        1 => method_payload(payload),
        2 => header_payload(payload),
        _ => payload.to_vec(),
    };
    let mut out = bytes[..3].to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.push(FRAME_END);
    out
}

/// A method frame's payload with the unused bits of each packed-bit octet cleared.
pub fn method_payload(payload: &[u8]) -> Vec<u8> {
    let class = ClassId(be16(payload, 0));
    let method = MethodId(be16(payload, 2));
    let spec = SPEC
        .iter()
        .find(|m| m.class_id == class && m.method_id == method)
        .unwrap_or_else(|| panic!("the codec accepted method {class}.{method}, which SPEC lacks"));
    let mut out = payload.to_vec();
    let mut at = 4;
    // The open bit octet: where it is and how many bits of it name a field.
    let mut bits: Option<(usize, u32)> = None;
    for &(name, domain) in spec.fields {
        if domain == Domain::Bit {
            bits = match bits {
                Some((octet, used)) if used < 8 => Some((octet, used + 1)),
                _ => {
                    close_bits(&mut out, bits);
                    at += 1;
                    Some((at - 1, 1))
                }
            };
            continue;
        }
        close_bits(&mut out, bits.take());
        at += match domain {
            Domain::Octet => 1,
            Domain::Short => 2,
            Domain::Long => 4,
            Domain::LongLong | Domain::Timestamp => 8,
            Domain::ShortStr => 1 + usize::from(byte(payload, at)),
            Domain::LongStr | Domain::Table => 4 + be32(payload, at) as usize,
            other => panic!("{}: field {name} has an unexpected domain {other:?}", spec.name),
        };
    }
    close_bits(&mut out, bits);
    assert_eq!(at, payload.len(), "{}: the fields do not cover the payload the codec accepted", spec.name);
    out
}

fn close_bits(out: &mut [u8], bits: Option<(usize, u32)>) {
    if let Some((octet, used)) = bits {
        let mask = ((1u16 << used) - 1) as u8;
        out[octet] &= mask;
    }
}

/// A content header payload without continuation flag words.
pub fn header_payload(payload: &[u8]) -> Vec<u8> {
    let flags = be16(payload, 12);
    let mut at = 14;
    let mut more = flags & 1 != 0;
    while more {
        more = be16(payload, at) & 1 != 0;
        at += 2;
    }
    let mut out = payload[..12].to_vec();
    out.extend_from_slice(&(flags & !1).to_be_bytes());
    out.extend_from_slice(&payload[at..]);
    out
}

/// A table's bytes (no length prefix) as an owned `FieldTable` writes them back: booleans
/// become 0 or 1, nothing else changes.
pub fn owned_table(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let key = 1 + usize::from(byte(bytes, at));
        out.extend_from_slice(slice(bytes, at, key));
        at = value(bytes, at + key, &mut out);
    }
    out
}

fn owned_array(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        at = value(bytes, at, &mut out);
    }
    out
}

/// Appends the canonical form of the value at `at`; returns where the next one starts.
fn value(bytes: &[u8], at: usize, out: &mut Vec<u8>) -> usize {
    let tag = byte(bytes, at);
    out.push(tag);
    let at = at + 1;
    let fixed = match tag {
        b't' => {
            out.push(u8::from(byte(bytes, at) != 0));
            return at + 1;
        }
        b'b' | b'B' => 1,
        b's' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'l' | b'd' | b'T' => 8,
        b'D' => 5,
        b'V' => 0,
        b'S' | b'x' => 4 + be32(bytes, at) as usize,
        b'F' | b'A' => {
            let len = be32(bytes, at) as usize;
            let inner = slice(bytes, at + 4, len);
            let inner = if tag == b'F' { owned_table(inner) } else { owned_array(inner) };
            assert_eq!(inner.len(), len, "normalising booleans changed a length");
            out.extend_from_slice(&bytes[at..at + 4]);
            out.extend_from_slice(&inner);
            return at + 4 + len;
        }
        other => panic!("the codec accepted a table value with tag {other:#04x}"),
    };
    out.extend_from_slice(slice(bytes, at, fixed));
    at + fixed
}

fn slice(bytes: &[u8], at: usize, len: usize) -> &[u8] {
    bytes
        .get(at..at.saturating_add(len))
        .unwrap_or_else(|| panic!("the codec accepted {len} bytes at {at} of a {}-byte buffer", bytes.len()))
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    slice(bytes, at, 1)[0]
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(slice(bytes, at, 2).try_into().expect("two bytes"))
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(slice(bytes, at, 4).try_into().expect("four bytes"))
}
