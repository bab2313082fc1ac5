//! `RawTable::parse` on arbitrary table bytes (without the 32-bit length prefix).
//!
//! Asserts: every entry of an accepted table, nested tables and arrays included, can be read
//! back lazily; the owned copy (`to_owned`) encodes (`to_bytes`) to the input with booleans
//! made 0 or 1 and nothing else changed, and parses back to an equal owned table (floats
//! compared by bits, since NaN != NaN); `get` finds the first value under each key; a raw
//! table equals its owned copy exactly when no boolean needed normalising.

#![no_main]

use amqp_codec::table::{FieldValueRef, RawTable, Table};
use amqp_codec_fuzz::{canonical, check_decode_error, same_table, same_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = match RawTable::parse(data) {
        Ok(raw) => raw,
        Err(e) => return check_decode_error(&e, data.len()),
    };
    assert_eq!(raw.as_bytes(), data);
    visit_table(raw);

    let owned = raw.to_owned();
    let wire = owned.to_bytes().unwrap_or_else(|e| panic!("{owned:?} does not encode: {e}"));
    assert_eq!(&wire[..4], &(data.len() as u32).to_be_bytes()[..], "length prefix");
    let canonical = canonical::owned_table(data);
    assert_eq!(&wire[4..], &canonical[..], "re-encoding {owned:?}");

    let again = RawTable::parse(&wire[4..]).unwrap_or_else(|e| panic!("re-encoded {owned:?} does not parse: {e}"));
    let again = again.to_owned();
    assert!(same_table(&again, &owned), "{again:?} != {owned:?}");
    assert_eq!(again.to_bytes().expect("it encoded once"), wire, "encoding is not idempotent");

    // `to_owned` keeps duplicate keys; both `get`s answer the first.
    for (key, _) in owned.iter() {
        let first = raw.get(key).expect("a key the iterator yielded");
        let first_owned = owned.get(key).expect("a key the iterator yielded");
        assert!(same_value(&first.to_owned(), first_owned), "get({key:?})");
    }
    assert_eq!(Table::Raw(raw) == Table::Owned(&owned), canonical == data);
});

/// Reads every entry, descending into nested tables and arrays, checking that what the lazy
/// iterators yield accounts for every byte (an iterator that stopped early would leave some).
fn visit_table(raw: RawTable<'_>) {
    let mut entries = 0;
    let mut size = 0;
    for (key, value) in raw.iter() {
        entries += 1;
        size += 1 + key.len() + visit_value(value);
    }
    assert_eq!(size, raw.as_bytes().len(), "{entries} entries do not cover the table");
    assert_eq!(raw.is_empty(), entries == 0);
}

/// The encoded size of `value`, tag included.
fn visit_value(value: FieldValueRef<'_>) -> usize {
    1 + match value {
        FieldValueRef::Bool(_) | FieldValueRef::I8(_) | FieldValueRef::U8(_) => 1,
        FieldValueRef::I16(_) | FieldValueRef::U16(_) => 2,
        FieldValueRef::I32(_) | FieldValueRef::U32(_) | FieldValueRef::F32(_) => 4,
        FieldValueRef::I64(_) | FieldValueRef::F64(_) | FieldValueRef::Timestamp(_) => 8,
        FieldValueRef::Decimal(_) => 5,
        FieldValueRef::Void => 0,
        FieldValueRef::LongString(s) => {
            assert_eq!(value.as_str(), core::str::from_utf8(s).ok());
            4 + s.len()
        }
        FieldValueRef::ByteArray(b) => 4 + b.len(),
        FieldValueRef::Table(t) => {
            visit_table(t);
            4 + t.as_bytes().len()
        }
        FieldValueRef::Array(a) => {
            let mut size = 0;
            let mut values = 0;
            for v in a.iter() {
                values += 1;
                size += visit_value(v);
            }
            assert_eq!(size, a.as_bytes().len(), "{values} values do not cover the array");
            assert_eq!(a.is_empty(), values == 0);
            4 + size
        }
        other => panic!("a value type this target does not know: {other:?}"),
    }
}
