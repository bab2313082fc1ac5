//! The wire's primitive types: integers, packed bits, short and long strings, read with `nom`
//! from a payload that is already complete, and written into a `BytesMut` sized up front.
//! `Reader`, `Sizer` and `Writer` keep the bit-packing state that consecutive bit fields share.
//! Touches only `bytes`, `nom` and the error types.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::ids::{ClassId, DeliveryTag, MethodId, ReplyCode};

/// The AMQP domain of a method field or property, as the spec's XML names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Domain {
    /// A single bit, packed with its neighbours into octets.
    Bit,
    /// 8-bit unsigned.
    Octet,
    /// 16-bit unsigned.
    Short,
    /// 32-bit unsigned.
    Long,
    /// 64-bit unsigned.
    LongLong,
    /// Up to 255 bytes of UTF-8 behind an 8-bit length.
    ShortStr,
    /// Bytes behind a 32-bit length.
    LongStr,
    /// 64-bit POSIX time in seconds.
    Timestamp,
    /// A field table.
    Table,
}

impl Domain {
    /// The spec's name of the domain (`"shortstr"`, `"longlong"`, ...).
    pub fn spec_name(self) -> &'static str {
        match self {
            Domain::Bit => "bit",
            Domain::Octet => "octet",
            Domain::Short => "short",
            Domain::Long => "long",
            Domain::LongLong => "longlong",
            Domain::ShortStr => "shortstr",
            Domain::LongStr => "longstr",
            Domain::Timestamp => "timestamp",
            Domain::Table => "table",
        }
    }
}

/// Reads fields off a complete payload. Offsets in errors are relative to the start of the
/// buffer the caller handed to the public parser, so `base` is where this payload began.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    end: usize,
    bits: u8,
    bit_pos: u8,
}

impl<'a> Reader<'a> {
    /// A reader over `payload`, which began `base` bytes into the caller's input.
    pub(crate) fn new(payload: &'a [u8], base: usize) -> Self {
        Reader { rest: payload, end: base + payload.len(), bits: 0, bit_pos: 8 }
    }

    /// Absolute offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.end - self.rest.len()
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(kind, self.offset())
    }

    /// Fails unless every byte was used.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }

    /// The error for a read of `wanted` bytes that ran past the end. It is built out of line
    /// from plain values: handing `&self` to a call the optimizer cannot see into kept every
    /// reader in memory, its position stored back after each field (callgrind: 18 of 134
    /// instructions reading a basic.deliver).
    #[inline(always)]
    fn truncated(&self, wanted: usize) -> DecodeError {
        truncated(self.offset(), wanted - self.rest.len())
    }

    // The reads below slice directly rather than through nom's `Input` for `&[u8]`: its
    // `take_from` is not inlinable across crates, and callgrind put it at 10% of parsing a
    // consumer's stream. A payload is complete here, so running short is an error, built
    // out of line.

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.bit_pos = 8;
        match self.rest.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.rest = rest;
                Ok(*head)
            }
            None => Err(self.truncated(N)),
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.rest.split_at_checked(n) {
            Some((head, rest)) => {
                self.rest = rest;
                Ok(head)
            }
            None => Err(self.truncated(n)),
        }
    }

    /// Steps over `n` bytes.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(drop)
    }

    /// A bit packed with its neighbours: the first of a run opens an octet, low bit first.
    #[inline]
    pub(crate) fn bit(&mut self) -> Result<bool, DecodeError> {
        if self.bit_pos == 8 {
            self.bits = self.u8()?;
            self.bit_pos = 0;
        }
        let bit = self.bits >> self.bit_pos & 1 == 1;
        self.bit_pos += 1;
        Ok(bit)
    }

    /// The error for a payload too short for the class and method ids, as reading them as two
    /// shorts reports it.
    #[cold]
    #[inline(never)]
    pub(crate) fn truncated_ids(mut self) -> DecodeError {
        match self.u16().and_then(|_| self.u16()) {
            Err(e) => e,
            Ok(_) => self.truncated(4), // Unreachable: the payload was shorter than 4 bytes.
        }
    }

    /// A short string: 8-bit length, then UTF-8 (the spec's rule for shortstr).
    #[inline(always)]
    pub(crate) fn short_str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u8()?;
        let bytes = self.bytes(len.into())?;
        // Where the string began is worked out only for the error.
        utf8(bytes).map_err(|valid_up_to| {
            DecodeError::new(DecodeErrorKind::InvalidUtf8, self.offset() - bytes.len() + valid_up_to)
        })
    }

    /// A short string whose text is not needed, only checked (table keys while validating).
    #[inline]
    pub(crate) fn skip_short_str(&mut self) -> Result<(), DecodeError> {
        let len = self.u8()?;
        let at = self.offset();
        let bytes = self.bytes(len.into())?;
        if is_ascii(bytes) {
            return Ok(());
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) => Err(DecodeError::new(DecodeErrorKind::InvalidUtf8, at + e.valid_up_to())),
        }
    }

    /// A long string: 32-bit length, then bytes (not necessarily text).
    #[inline]
    pub(crate) fn long_str(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()?;
        // A u32 always fits in usize on the 32- and 64-bit targets this crate builds for.
        self.bytes(len as usize)
    }
}

#[cold]
#[inline(never)]
fn truncated(offset: usize, needed: usize) -> DecodeError {
    DecodeError::new(DecodeErrorKind::Truncated { needed }, offset)
}

/// Checks UTF-8, answering the offset of the first bad byte on failure. Short strings on the
/// wire are nearly always ASCII, and `is_ascii` checks a word at a time where `from_utf8`
/// walks short input byte by byte: callgrind counted UTF-8 validation at 25% of parsing a
/// consumer's stream (8 short strings a message) before this fast path.
#[inline]
#[allow(unsafe_code)]
fn utf8(bytes: &[u8]) -> Result<&str, usize> {
    if is_ascii(bytes) {
        // SAFETY: every byte is below 0x80, and a sequence of ASCII bytes is valid UTF-8.
        return Ok(unsafe { core::str::from_utf8_unchecked(bytes) });
    }
    core::str::from_utf8(bytes).map_err(|e| e.valid_up_to())
}

/// `bytes.is_ascii()`, quicker for the short strings that names and tags are: up to 16 bytes
/// are checked with two loads that may overlap, instead of `is_ascii`'s alignment prologue
/// and byte-by-byte tail (callgrind: 55 -> 44 instructions to read a 6- or 11-byte string).
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = bytes.len();
    // The chunks are always there for these lengths; the fallback only keeps that implicit.
    match n {
        0 => true,
        1..4 => (bytes[0] | bytes[n / 2] | bytes[n - 1]) < 0x80,
        4..8 => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(a), Some(b)) => (u32::from_ne_bytes(*a) | u32::from_ne_bytes(*b)) & HIGH as u32 == 0,
            _ => bytes.is_ascii(),
        },
        8..=16 => match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (Some(a), Some(b)) => (u64::from_ne_bytes(*a) | u64::from_ne_bytes(*b)) & HIGH == 0,
            _ => bytes.is_ascii(),
        },
        _ => bytes.is_ascii(),
    }
}

/// Adds up the encoded size of fields, checking each against the wire's limits.
#[derive(Debug, Default)]
pub struct Sizer {
    pub(crate) len: usize,
    bit_pos: u8,
}

impl Sizer {
    pub(crate) fn new() -> Self {
        Sizer { len: 0, bit_pos: 8 }
    }

    #[inline]
    pub(crate) fn fixed(&mut self, n: usize) {
        self.bit_pos = 8;
        self.len += n;
    }

    #[inline]
    pub(crate) fn bit(&mut self) {
        if self.bit_pos == 8 {
            self.len += 1;
            self.bit_pos = 0;
        }
        self.bit_pos += 1;
    }

    #[inline]
    pub(crate) fn short_str(&mut self, s: &str) -> Result<(), EncodeError> {
        if s.len() > 255 {
            return Err(EncodeError::ShortStringTooLong(s.len()));
        }
        self.fixed(1 + s.len());
        Ok(())
    }

    #[inline]
    pub(crate) fn long_str(&mut self, s: &[u8]) -> Result<(), EncodeError> {
        check_u32_len(s.len())?;
        self.fixed(4 + s.len());
        Ok(())
    }
}

pub(crate) fn check_u32_len(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong(len))
}

/// Writes fields whose sizes a `Sizer` has already checked.
#[derive(Debug)]
pub struct Writer<'b> {
    pub(crate) out: &'b mut BytesMut,
    bit_at: usize,
    bit_pos: u8,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(out: &'b mut BytesMut) -> Self {
        Writer { out, bit_at: 0, bit_pos: 8 }
    }

    #[inline]
    pub(crate) fn u8(&mut self, v: u8) {
        self.bit_pos = 8;
        self.out.put_u8(v);
    }

    #[inline]
    pub(crate) fn u16(&mut self, v: u16) {
        self.bit_pos = 8;
        self.out.put_u16(v);
    }

    #[inline]
    pub(crate) fn u32(&mut self, v: u32) {
        self.bit_pos = 8;
        self.out.put_u32(v);
    }

    #[inline]
    pub(crate) fn u64(&mut self, v: u64) {
        self.bit_pos = 8;
        self.out.put_u64(v);
    }

    #[inline]
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.bit_pos = 8;
        self.out.put_slice(v);
    }

    #[inline]
    pub(crate) fn bit(&mut self, v: bool) {
        if self.bit_pos == 8 {
            self.bit_at = self.out.len();
            self.out.put_u8(0);
            self.bit_pos = 0;
        }
        self.out[self.bit_at] |= u8::from(v) << self.bit_pos;
        self.bit_pos += 1;
    }

    /// The length was checked by `Sizer::short_str`; the cast cannot truncate.
    #[inline]
    pub(crate) fn short_str(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.bytes(s.as_bytes());
    }

    /// The length was checked by `Sizer::long_str`; the cast cannot truncate.
    #[inline]
    pub(crate) fn long_str(&mut self, s: &[u8]) {
        self.u32(s.len() as u32);
        self.bytes(s);
    }
}

/// A value that can be a method field: how it is read, sized and written, and its domain.
pub trait Field<'a>: Sized {
    /// The spec domain this Rust type carries.
    const DOMAIN: Domain;
    /// Reads the field.
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError>;
    /// Adds the field's size, failing if it cannot be encoded.
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError>;
    /// Writes the field; only called after `size` succeeded.
    fn write(&self, w: &mut Writer<'_>);
}

macro_rules! int_field {
    ($ty:ty, $domain:ident, $read:ident, $write:ident, $n:literal $(, $wrap:ident)?) => {
        impl<'a> Field<'a> for $ty {
            const DOMAIN: Domain = Domain::$domain;
            #[inline]
            fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
                int_field!(@read r, $read $(, $wrap)?)
            }
            #[inline]
            fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
                s.fixed($n);
                Ok(())
            }
            #[inline]
            fn write(&self, w: &mut Writer<'_>) {
                w.$write(int_field!(@raw self $(, $wrap)?));
            }
        }
    };
    (@read $r:ident, $read:ident) => { $r.$read() };
    (@read $r:ident, $read:ident, $wrap:ident) => { $r.$read().map($wrap) };
    (@raw $v:ident) => { *$v };
    (@raw $v:ident, $wrap:ident) => { $v.0 };
}

int_field!(u8, Octet, u8, u8, 1);
int_field!(u16, Short, u16, u16, 2);
int_field!(u32, Long, u32, u32, 4);
int_field!(u64, LongLong, u64, u64, 8);
int_field!(ClassId, Short, u16, u16, 2, ClassId);
int_field!(MethodId, Short, u16, u16, 2, MethodId);
int_field!(ReplyCode, Short, u16, u16, 2, ReplyCode);
int_field!(DeliveryTag, LongLong, u64, u64, 8, DeliveryTag);

impl<'a> Field<'a> for bool {
    const DOMAIN: Domain = Domain::Bit;
    #[inline]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        r.bit()
    }
    #[inline]
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        s.bit();
        Ok(())
    }
    #[inline]
    fn write(&self, w: &mut Writer<'_>) {
        w.bit(*self)
    }
}

impl<'a> Field<'a> for &'a str {
    const DOMAIN: Domain = Domain::ShortStr;
    #[inline(always)]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        r.short_str()
    }
    #[inline]
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        s.short_str(self)
    }
    #[inline]
    fn write(&self, w: &mut Writer<'_>) {
        w.short_str(self)
    }
}

impl<'a> Field<'a> for &'a [u8] {
    const DOMAIN: Domain = Domain::LongStr;
    #[inline]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        r.long_str()
    }
    #[inline]
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        s.long_str(self)
    }
    #[inline]
    fn write(&self, w: &mut Writer<'_>) {
        w.long_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_bits_share_an_octet_and_the_ninth_opens_another() {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out);
        for i in 0..9 {
            w.bit(i % 2 == 0);
        }
        w.u8(7);
        w.bit(true);
        assert_eq!(&out[..], &[0b0101_0101, 0b1, 7, 1]);
        let mut s = Sizer::new();
        (0..9).for_each(|_| s.bit());
        s.fixed(1);
        s.bit();
        assert_eq!(s.len, 4);
        let mut r = Reader::new(&out, 0);
        let bits: Vec<bool> = (0..9).map(|_| r.bit().unwrap()).collect();
        assert_eq!(bits, (0..9).map(|i| i % 2 == 0).collect::<Vec<_>>());
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bit().unwrap());
        r.finish().unwrap();
    }

    #[test]
    fn truncated_field_reports_how_much_is_missing_and_where() {
        let mut r = Reader::new(&[0, 1, 0], 10);
        r.u8().unwrap();
        let err = r.u32().unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::Truncated { needed: 2 }, 11));
    }

    #[test]
    fn short_string_that_is_not_utf8_is_a_syntax_error_at_the_bad_byte() {
        let mut r = Reader::new(&[3, b'a', 0xff, b'b'], 0);
        let err = r.short_str().unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidUtf8);
        assert_eq!(err.offset, 2);
        assert_eq!(err.reply_code(), ReplyCode::SYNTAX_ERROR);
    }

    #[test]
    fn the_short_ascii_check_finds_a_high_byte_at_every_position_of_every_length() {
        for len in 0..=40 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii), "{len} ASCII bytes");
            for at in 0..len {
                let mut bytes = ascii.clone();
                bytes[at] = 0x80;
                assert!(!is_ascii(&bytes), "a high byte at {at} of {len}");
            }
        }
    }

    #[test]
    fn short_string_over_255_bytes_cannot_be_encoded() {
        let long = "x".repeat(256);
        assert_eq!(Sizer::new().short_str(&long), Err(EncodeError::ShortStringTooLong(256)));
        assert!(Sizer::new().short_str(&long[..255]).is_ok());
    }
}
