//! Field tables and arrays. Parsing borrows: a [`RawTable`] is the validated wire bytes of a
//! table, read again lazily, so a parsed table costs no allocation. Building is owned:
//! a [`FieldTable`] keeps insertion order and the type tag of every value, so that tables
//! that came off the wire re-encode byte for byte. Types follow RabbitMQ's errata to the
//! 0-9-1 type table (`s` is a signed 16-bit integer, `x` a byte array, no unsigned 64-bit).
//! Touches `primitives.rs` only.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::primitives::{Domain, Field, Reader, Sizer, Writer, check_u32_len};

/// How deep tables and arrays may nest inside each other, counting the outermost as 1.
/// Deeper input is refused, so that neither parsing nor dropping recurses without bound.
pub const MAX_NESTING: usize = 32;

/// A decimal: `value / 10^scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value.
    pub value: u32,
}

/// A field table as it came off the wire: validated once, read lazily without allocating.
///
/// ```
/// use amqp_codec::table::{FieldTable, FieldValue, FieldValueRef, RawTable};
/// let mut table = FieldTable::new();
/// table.insert("x-max-length", 10i32);
/// let wire = table.to_bytes().unwrap();
/// let raw = RawTable::parse(&wire[4..]).unwrap(); // past the 32-bit length
/// assert_eq!(raw.get("x-max-length"), Some(FieldValueRef::I32(10)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawTable<'a> {
    bytes: &'a [u8],
}

/// A field array as it came off the wire: validated once, read lazily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawArray<'a> {
    bytes: &'a [u8],
}

/// One value of a parsed table or array, borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValueRef<'a> {
    /// `t`: boolean.
    Bool(bool),
    /// `b`: signed 8-bit.
    I8(i8),
    /// `B`: unsigned 8-bit.
    U8(u8),
    /// `s`: signed 16-bit.
    I16(i16),
    /// `u`: unsigned 16-bit.
    U16(u16),
    /// `I`: signed 32-bit.
    I32(i32),
    /// `i`: unsigned 32-bit.
    U32(u32),
    /// `l`: signed 64-bit.
    I64(i64),
    /// `f`: 32-bit float.
    F32(f32),
    /// `d`: 64-bit float.
    F64(f64),
    /// `D`: decimal.
    Decimal(Decimal),
    /// `S`: long string (bytes, usually UTF-8).
    LongString(&'a [u8]),
    /// `A`: array.
    Array(RawArray<'a>),
    /// `T`: timestamp, seconds since the epoch.
    Timestamp(u64),
    /// `F`: nested table.
    Table(RawTable<'a>),
    /// `V`: no value.
    Void,
    /// `x`: byte array.
    ByteArray(&'a [u8]),
}

/// One value of an owned table or array.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue {
    /// `t`: boolean.
    Bool(bool),
    /// `b`: signed 8-bit.
    I8(i8),
    /// `B`: unsigned 8-bit.
    U8(u8),
    /// `s`: signed 16-bit.
    I16(i16),
    /// `u`: unsigned 16-bit.
    U16(u16),
    /// `I`: signed 32-bit.
    I32(i32),
    /// `i`: unsigned 32-bit.
    U32(u32),
    /// `l`: signed 64-bit.
    I64(i64),
    /// `f`: 32-bit float.
    F32(f32),
    /// `d`: 64-bit float.
    F64(f64),
    /// `D`: decimal.
    Decimal(Decimal),
    /// `S`: long string (bytes, usually UTF-8).
    LongString(Bytes),
    /// `A`: array.
    Array(Vec<FieldValue>),
    /// `T`: timestamp, seconds since the epoch.
    Timestamp(u64),
    /// `F`: nested table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
    /// `x`: byte array.
    ByteArray(Bytes),
}

/// An owned field table that keeps its keys in insertion order.
///
/// ```
/// use amqp_codec::table::{FieldTable, FieldValue};
/// let mut args = FieldTable::new();
/// args.insert("x-message-ttl", 60_000i32);
/// args.insert("x-dead-letter-exchange", "dlx");
/// assert_eq!(args.get("x-message-ttl"), Some(&FieldValue::I32(60_000)));
/// assert_eq!(args.keys().collect::<Vec<_>>(), ["x-message-ttl", "x-dead-letter-exchange"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldTable {
    entries: Vec<(String, FieldValue)>,
}

/// A table field of a method or property: as parsed, or built by the caller.
#[derive(Clone, Copy, Debug)]
pub enum Table<'a> {
    /// Wire bytes, as parsed.
    Raw(RawTable<'a>),
    /// A table the caller built.
    Owned(&'a FieldTable),
}

impl<'a> RawTable<'a> {
    /// The empty table.
    pub const EMPTY: RawTable<'static> = RawTable { bytes: &[] };

    /// Validates the bytes of a table (without its 32-bit length prefix).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_at(bytes, 0, 1)
    }

    fn parse_at(bytes: &'a [u8], base: usize, depth: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, base);
        if depth > MAX_NESTING {
            return Err(r.error(DecodeErrorKind::NestingTooDeep(MAX_NESTING)));
        }
        while !r.remaining().is_empty() {
            r.skip_short_str()?;
            skip_value(&mut r, depth)?;
        }
        Ok(RawTable { bytes })
    }

    /// The validated wire bytes, without the length prefix.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The entries in wire order.
    pub fn iter(&self) -> RawTableIter<'a> {
        RawTableIter { r: Reader::new(self.bytes, 0) }
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<FieldValueRef<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy, keeping order and type tags.
    pub fn to_owned(&self) -> FieldTable {
        FieldTable { entries: self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect() }
    }
}

/// Iterator over a [`RawTable`]'s entries.
#[derive(Debug)]
pub struct RawTableIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for RawTableIter<'a> {
    type Item = (&'a str, FieldValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining().is_empty() {
            return None;
        }
        // The bytes were validated when the RawTable was made, so these reads succeed;
        // `ok()?` only keeps a broken invariant from becoming a panic.
        let key = self.r.short_str().ok()?;
        let value = read_value(&mut self.r, 1).ok()?;
        Some((key, value))
    }
}

impl<'a> RawArray<'a> {
    fn parse_at(bytes: &'a [u8], base: usize, depth: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, base);
        if depth > MAX_NESTING {
            return Err(r.error(DecodeErrorKind::NestingTooDeep(MAX_NESTING)));
        }
        while !r.remaining().is_empty() {
            skip_value(&mut r, depth)?;
        }
        Ok(RawArray { bytes })
    }

    /// True when the array has no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The validated wire bytes, without the length prefix.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The values in wire order.
    pub fn iter(&self) -> RawArrayIter<'a> {
        RawArrayIter { r: Reader::new(self.bytes, 0) }
    }
}

/// Iterator over a [`RawArray`]'s values.
#[derive(Debug)]
pub struct RawArrayIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for RawArrayIter<'a> {
    type Item = FieldValueRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining().is_empty() {
            return None;
        }
        // Validated when the RawArray was made; see RawTableIter::next.
        read_value(&mut self.r, 1).ok()
    }
}

/// Width of each fixed-size value by type tag; `VARIABLE` for S, x, F and A, `UNKNOWN` for
/// tags RabbitMQ does not define. Validation looks widths up here instead of building a
/// value it would throw away (callgrind: table validation was a third of parsing a header).
const VARIABLE: u8 = 0xfe;
const UNKNOWN: u8 = 0xff;
const WIDTHS: [u8; 256] = {
    let mut w = [UNKNOWN; 256];
    w[b't' as usize] = 1;
    w[b'b' as usize] = 1;
    w[b'B' as usize] = 1;
    w[b's' as usize] = 2;
    w[b'u' as usize] = 2;
    w[b'I' as usize] = 4;
    w[b'i' as usize] = 4;
    w[b'f' as usize] = 4;
    w[b'l' as usize] = 8;
    w[b'd' as usize] = 8;
    w[b'T' as usize] = 8;
    w[b'D' as usize] = 5;
    w[b'V' as usize] = 0;
    w[b'S' as usize] = VARIABLE;
    w[b'x' as usize] = VARIABLE;
    w[b'F' as usize] = VARIABLE;
    w[b'A' as usize] = VARIABLE;
    w
};

/// Checks one tagged value without decoding it; nested tables and arrays at `depth + 1`.
#[inline]
fn skip_value(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    let tag_at = r.offset();
    let tag = r.u8()?;
    match WIDTHS[usize::from(tag)] {
        UNKNOWN => Err(DecodeError::new(DecodeErrorKind::UnknownFieldType(tag), tag_at)),
        VARIABLE => {
            let base = r.offset() + 4;
            let bytes = r.long_str()?;
            match tag {
                b'F' => RawTable::parse_at(bytes, base, depth + 1).map(drop),
                b'A' => RawArray::parse_at(bytes, base, depth + 1).map(drop),
                _ => Ok(()),
            }
        }
        width => r.skip(width.into()),
    }
}

/// Reads one tagged value; nested tables and arrays are validated at `depth + 1`.
fn read_value<'a>(r: &mut Reader<'a>, depth: usize) -> Result<FieldValueRef<'a>, DecodeError> {
    let tag_at = r.offset();
    let tag = r.u8()?;
    Ok(match tag {
        b't' => FieldValueRef::Bool(r.u8()? != 0),
        b'b' => FieldValueRef::I8(r.u8()? as i8),
        b'B' => FieldValueRef::U8(r.u8()?),
        b's' => FieldValueRef::I16(r.u16()? as i16),
        b'u' => FieldValueRef::U16(r.u16()?),
        b'I' => FieldValueRef::I32(r.u32()? as i32),
        b'i' => FieldValueRef::U32(r.u32()?),
        b'l' => FieldValueRef::I64(r.u64()? as i64),
        b'f' => FieldValueRef::F32(f32::from_bits(r.u32()?)),
        b'd' => FieldValueRef::F64(f64::from_bits(r.u64()?)),
        b'D' => FieldValueRef::Decimal(Decimal { scale: r.u8()?, value: r.u32()? }),
        b'S' => FieldValueRef::LongString(r.long_str()?),
        b'x' => FieldValueRef::ByteArray(r.long_str()?),
        b'T' => FieldValueRef::Timestamp(r.u64()?),
        b'V' => FieldValueRef::Void,
        b'F' => {
            let base = r.offset() + 4;
            FieldValueRef::Table(RawTable::parse_at(r.long_str()?, base, depth + 1)?)
        }
        b'A' => {
            let base = r.offset() + 4;
            FieldValueRef::Array(RawArray::parse_at(r.long_str()?, base, depth + 1)?)
        }
        other => return Err(DecodeError::new(DecodeErrorKind::UnknownFieldType(other), tag_at)),
    })
}

impl<'a> FieldValueRef<'a> {
    /// An owned copy, keeping the type tag.
    pub fn to_owned(&self) -> FieldValue {
        match *self {
            FieldValueRef::Bool(v) => FieldValue::Bool(v),
            FieldValueRef::I8(v) => FieldValue::I8(v),
            FieldValueRef::U8(v) => FieldValue::U8(v),
            FieldValueRef::I16(v) => FieldValue::I16(v),
            FieldValueRef::U16(v) => FieldValue::U16(v),
            FieldValueRef::I32(v) => FieldValue::I32(v),
            FieldValueRef::U32(v) => FieldValue::U32(v),
            FieldValueRef::I64(v) => FieldValue::I64(v),
            FieldValueRef::F32(v) => FieldValue::F32(v),
            FieldValueRef::F64(v) => FieldValue::F64(v),
            FieldValueRef::Decimal(v) => FieldValue::Decimal(v),
            FieldValueRef::LongString(v) => FieldValue::LongString(Bytes::copy_from_slice(v)),
            FieldValueRef::Array(a) => FieldValue::Array(a.iter().map(|v| v.to_owned()).collect()),
            FieldValueRef::Timestamp(v) => FieldValue::Timestamp(v),
            FieldValueRef::Table(t) => FieldValue::Table(t.to_owned()),
            FieldValueRef::Void => FieldValue::Void,
            FieldValueRef::ByteArray(v) => FieldValue::ByteArray(Bytes::copy_from_slice(v)),
        }
    }

    /// Any integer type, widened; `None` for other types.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValueRef::I8(v) => Some(v.into()),
            FieldValueRef::U8(v) => Some(v.into()),
            FieldValueRef::I16(v) => Some(v.into()),
            FieldValueRef::U16(v) => Some(v.into()),
            FieldValueRef::I32(v) => Some(v.into()),
            FieldValueRef::U32(v) => Some(v.into()),
            FieldValueRef::I64(v) => Some(v),
            _ => None,
        }
    }

    /// A long string that is UTF-8; `None` otherwise.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            FieldValueRef::LongString(v) => core::str::from_utf8(v).ok(),
            _ => None,
        }
    }
}

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, keeping the key's place if it was present; returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Option<FieldValue> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => Some(core::mem::replace(old, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The encoded table, 32-bit length prefix included.
    pub fn to_bytes(&self) -> Result<BytesMut, EncodeError> {
        let mut s = Sizer::new();
        self.size(&mut s, 1)?;
        let mut out = BytesMut::with_capacity(s.len);
        self.write(&mut Writer::new(&mut out));
        Ok(out)
    }

    /// Adds the size of the table with its length prefix.
    fn size(&self, s: &mut Sizer, depth: usize) -> Result<(), EncodeError> {
        if depth > MAX_NESTING {
            return Err(EncodeError::NestingTooDeep(MAX_NESTING));
        }
        let start = s.len;
        s.fixed(4);
        for (k, v) in &self.entries {
            s.short_str(k)?;
            v.size(s, depth)?;
        }
        check_u32_len(s.len - start - 4)?;
        Ok(())
    }

    fn write(&self, w: &mut Writer<'_>) {
        let len_at = w.out.len();
        w.u32(0);
        for (k, v) in &self.entries {
            w.short_str(k);
            v.write(w);
        }
        patch_len(w, len_at);
    }
}

/// Writes the length of what followed `len_at` into its 32-bit prefix. The sizer checked
/// that it fits, so the cast cannot truncate.
fn patch_len(w: &mut Writer<'_>, len_at: usize) {
    let len = (w.out.len() - len_at - 4) as u32;
    w.out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

impl<K: Into<String>, V: Into<FieldValue>> FromIterator<(K, V)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut table = FieldTable::new();
        for (k, v) in iter {
            table.insert(k, v);
        }
        table
    }
}

impl FieldValue {
    fn size(&self, s: &mut Sizer, depth: usize) -> Result<(), EncodeError> {
        s.fixed(1);
        match self {
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => s.fixed(1),
            FieldValue::I16(_) | FieldValue::U16(_) => s.fixed(2),
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => s.fixed(4),
            FieldValue::I64(_) | FieldValue::F64(_) | FieldValue::Timestamp(_) => s.fixed(8),
            FieldValue::Decimal(_) => s.fixed(5),
            FieldValue::Void => {}
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => s.long_str(b)?,
            FieldValue::Table(t) => t.size(s, depth + 1)?,
            FieldValue::Array(values) => {
                if depth + 1 > MAX_NESTING {
                    return Err(EncodeError::NestingTooDeep(MAX_NESTING));
                }
                let start = s.len;
                s.fixed(4);
                for v in values {
                    v.size(s, depth + 1)?;
                }
                check_u32_len(s.len - start - 4)?;
            }
        }
        Ok(())
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.tag());
        match self {
            FieldValue::Bool(v) => w.u8(u8::from(*v)),
            FieldValue::I8(v) => w.u8(*v as u8),
            FieldValue::U8(v) => w.u8(*v),
            FieldValue::I16(v) => w.u16(*v as u16),
            FieldValue::U16(v) => w.u16(*v),
            FieldValue::I32(v) => w.u32(*v as u32),
            FieldValue::U32(v) => w.u32(*v),
            FieldValue::I64(v) => w.u64(*v as u64),
            FieldValue::F32(v) => w.u32(v.to_bits()),
            FieldValue::F64(v) => w.u64(v.to_bits()),
            FieldValue::Decimal(d) => {
                w.u8(d.scale);
                w.u32(d.value);
            }
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => w.long_str(b),
            FieldValue::Timestamp(v) => w.u64(*v),
            FieldValue::Void => {}
            FieldValue::Table(t) => t.write(w),
            FieldValue::Array(values) => {
                let len_at = w.out.len();
                w.u32(0);
                values.iter().for_each(|v| v.write(w));
                patch_len(w, len_at);
            }
        }
    }

    /// The wire type tag (RabbitMQ's table of types).
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }
}

macro_rules! field_value_from {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for FieldValue {
            fn from(v: $ty) -> Self {
                FieldValue::$variant(v.into())
            }
        })*
    };
}

field_value_from! {
    bool => Bool, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32, i64 => I64,
    f32 => F32, f64 => F64, Decimal => Decimal, Bytes => LongString, String => LongString,
    Vec<FieldValue> => Array, FieldTable => Table,
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()))
    }
}

impl<'a> Table<'a> {
    /// The entries as an owned table.
    pub fn to_owned(&self) -> FieldTable {
        match self {
            Table::Raw(raw) => raw.to_owned(),
            Table::Owned(table) => (*table).clone(),
        }
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        match self {
            Table::Raw(raw) => raw.is_empty(),
            Table::Owned(table) => table.is_empty(),
        }
    }
}

impl Default for Table<'_> {
    fn default() -> Self {
        Table::Raw(RawTable::EMPTY)
    }
}

impl<'a> From<&'a FieldTable> for Table<'a> {
    fn from(table: &'a FieldTable) -> Self {
        Table::Owned(table)
    }
}

impl<'a> From<RawTable<'a>> for Table<'a> {
    fn from(table: RawTable<'a>) -> Self {
        Table::Raw(table)
    }
}

/// Tables are equal when they encode to the same bytes: same keys, order, tags and values.
impl PartialEq for Table<'_> {
    fn eq(&self, other: &Self) -> bool {
        let encode = |t: &Table<'_>| {
            let mut s = Sizer::new();
            t.size(&mut s).ok()?;
            let mut out = BytesMut::with_capacity(s.len);
            t.write(&mut Writer::new(&mut out));
            Some(out)
        };
        encode(self) == encode(other)
    }
}

impl<'a> Field<'a> for Table<'a> {
    const DOMAIN: Domain = Domain::Table;

    #[inline]
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let base = r.offset() + 4;
        let bytes = r.long_str()?;
        RawTable::parse_at(bytes, base, 1).map(Table::Raw)
    }

    #[inline]
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        match self {
            Table::Raw(raw) => s.long_str(raw.bytes),
            Table::Owned(table) => table.size(s, 1),
        }
    }

    #[inline]
    fn write(&self, w: &mut Writer<'_>) {
        match self {
            Table::Raw(raw) => w.long_str(raw.bytes),
            Table::Owned(table) => table.write(w),
        }
    }
}

impl<'a> Field<'a> for FieldTable {
    const DOMAIN: Domain = Domain::Table;

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Table::read(r).map(|t| t.to_owned())
    }

    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError> {
        FieldTable::size(self, s, 1)
    }

    fn write(&self, w: &mut Writer<'_>) {
        FieldTable::write(self, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(bytes: &[u8]) -> Result<RawTable<'_>, DecodeError> {
        RawTable::parse(bytes)
    }

    #[test]
    fn every_type_round_trips_through_owned_and_raw() {
        let nested: FieldTable = [("inner", FieldValue::I64(-5))].into_iter().collect();
        let table: FieldTable = [
            ("t", FieldValue::Bool(true)),
            ("b", FieldValue::I8(-1)),
            ("B", FieldValue::U8(255)),
            ("s", FieldValue::I16(-300)),
            ("u", FieldValue::U16(65000)),
            ("I", FieldValue::I32(-70000)),
            ("i", FieldValue::U32(4_000_000_000)),
            ("l", FieldValue::I64(i64::MIN)),
            ("f", FieldValue::F32(1.5)),
            ("d", FieldValue::F64(-2.25)),
            ("D", FieldValue::Decimal(Decimal { scale: 2, value: 12345 })),
            ("S", FieldValue::from("héllo")),
            ("A", FieldValue::Array(vec![FieldValue::Void, FieldValue::Table(nested.clone())])),
            ("T", FieldValue::Timestamp(1_700_000_000)),
            ("F", FieldValue::Table(nested)),
            ("V", FieldValue::Void),
            ("x", FieldValue::ByteArray(Bytes::from_static(&[0, 1, 2]))),
        ]
        .into_iter()
        .collect();
        let wire = table.to_bytes().unwrap();
        let raw = RawTable::parse(&wire[4..]).unwrap();
        assert_eq!(raw.to_owned(), table);
        assert_eq!(raw.get("S").and_then(|v| v.as_str()), Some("héllo"));
        assert_eq!(raw.get("I").and_then(|v| v.as_i64()), Some(-70000));
    }

    #[test]
    fn unknown_type_tag_is_a_syntax_error_at_the_tag() {
        let err = parse_one(b"\x01kZ").unwrap_err();
        assert_eq!(err, DecodeError::new(DecodeErrorKind::UnknownFieldType(b'Z'), 2));
    }

    #[test]
    fn key_that_is_not_utf8_is_refused() {
        let err = parse_one(b"\x01\xffV").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidUtf8);
        assert_eq!(err.offset, 1);
    }

    #[test]
    fn value_longer_than_the_table_is_truncated() {
        let err = parse_one(b"\x01kS\x00\x00\x00\x09abc").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated { needed: 6 });
        assert_eq!(err.offset, 7, "where the string's bytes run out, after its length");
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_both_ways() {
        let mut table = FieldTable::new();
        for _ in 0..MAX_NESTING {
            let mut outer = FieldTable::new();
            outer.insert("n", table);
            table = outer;
        }
        assert_eq!(table.to_bytes().unwrap_err(), EncodeError::NestingTooDeep(MAX_NESTING));

        // Build the too-deep wire form by hand: each level is `\x01nF` + length + inner.
        let mut wire: Vec<u8> = Vec::new();
        for _ in 0..=MAX_NESTING {
            let mut outer = b"\x01nF".to_vec();
            outer.extend_from_slice(&(wire.len() as u32).to_be_bytes());
            outer.extend_from_slice(&wire);
            wire = outer;
        }
        let err = parse_one(&wire).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NestingTooDeep(MAX_NESTING));
        assert_eq!(err.offset, MAX_NESTING * 7);
    }

    #[test]
    fn insert_keeps_the_first_place_of_a_key() {
        let mut t = FieldTable::new();
        t.insert("a", 1i32);
        t.insert("b", 2i32);
        assert_eq!(t.insert("a", 3i32), Some(FieldValue::I32(1)));
        assert_eq!(t.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.remove("a"), Some(FieldValue::I32(3)));
        assert_eq!(t.len(), 1);
    }
}
