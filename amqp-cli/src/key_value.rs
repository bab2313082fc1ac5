//! `KEY=VALUE` arguments (`--header`, `--arg`) with typed values, parsed by clap so that a
//! malformed one is a usage error. Touches the codec's `FieldValue` and `FieldTable` only.

use amqp_codec::{FieldTable, FieldValue};

/// One `KEY=VALUE` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The key, as given.
    pub key: String,
    /// The typed value.
    pub value: FieldValue,
}

/// Parses `KEY=VALUE`: `true`/`false` are booleans, integers are 32-bit (`I`) when they fit and
/// 64-bit (`l`) otherwise, as pika and the Java client send them; `"…"` is always a string (for a
/// string that looks like a number); anything else is a string.
pub fn parse(arg: &str) -> Result<KeyValue, String> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    if key.len() > 255 {
        return Err("the key is longer than 255 bytes".to_owned());
    }
    Ok(KeyValue { key: key.to_owned(), value: typed(value) })
}

/// The pairs as a table, later keys replacing earlier ones.
pub fn table(pairs: &[KeyValue]) -> FieldTable {
    let mut table = FieldTable::new();
    for pair in pairs {
        table.insert(pair.key.clone(), pair.value.clone());
    }
    table
}

fn typed(value: &str) -> FieldValue {
    if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return FieldValue::from(quoted);
    }
    match value {
        "true" => return FieldValue::Bool(true),
        "false" => return FieldValue::Bool(false),
        _ => {}
    }
    match value.parse::<i64>() {
        Ok(n) => i32::try_from(n).map_or(FieldValue::I64(n), FieldValue::I32),
        Err(_) => FieldValue::from(value),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.
    use super::*;

    #[test]
    fn values_are_typed_by_their_look() {
        assert_eq!(parse("n=7").unwrap().value, FieldValue::I32(7));
        assert_eq!(parse("n=-7").unwrap().value, FieldValue::I32(-7));
        assert_eq!(parse("n=5000000000").unwrap().value, FieldValue::I64(5_000_000_000));
        assert_eq!(parse("b=true").unwrap().value, FieldValue::Bool(true));
        assert_eq!(parse("s=hello").unwrap().value, FieldValue::from("hello"));
        assert_eq!(parse("s=\"42\"").unwrap().value, FieldValue::from("42"));
        assert_eq!(parse("s=a=b").unwrap(), KeyValue { key: "s".into(), value: FieldValue::from("a=b") });
        assert_eq!(parse("s=").unwrap().value, FieldValue::from(""));
    }

    #[test]
    fn a_pair_needs_a_key_and_an_equals_sign() {
        assert!(parse("novalue").is_err());
        assert!(parse("=v").is_err());
    }

    #[test]
    fn later_keys_replace_earlier_ones() {
        let t = table(&[parse("a=1").unwrap(), parse("b=x").unwrap(), parse("a=2").unwrap()]);
        assert_eq!(t.get("a"), Some(&FieldValue::I32(2)));
        assert_eq!(t.len(), 2);
    }
}
