//! How a message is shown: deliveries (consume, get) as a text block or one JSON object, and
//! content-header properties and field tables as text (also for `amqp decode`) or JSON.
//! Bodies that are not UTF-8 are shown as base64, never as lossy text.

use std::io::{self, Write};

use amqp_client::api::Delivery;
use amqp_codec::{BasicProperties, FieldTable, FieldValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// One property that is present, in flag order, with the spec's name (`content-type`).
#[derive(Debug, Clone)]
pub enum Property {
    /// A short string property.
    Str(&'static str, String),
    /// delivery-mode, priority, timestamp.
    Number(&'static str, u64),
    /// headers.
    Table(&'static str, FieldTable),
}

/// The properties present.
pub fn properties(p: &BasicProperties<'_>) -> Vec<Property> {
    let mut out = Vec::new();
    let text = |out: &mut Vec<Property>, name, v: Option<&str>| {
        if let Some(v) = v {
            out.push(Property::Str(name, v.to_owned()));
        }
    };
    let number = |out: &mut Vec<Property>, name, v: Option<u64>| {
        if let Some(v) = v {
            out.push(Property::Number(name, v));
        }
    };
    text(&mut out, "content-type", p.content_type);
    text(&mut out, "content-encoding", p.content_encoding);
    if let Some(headers) = &p.headers {
        out.push(Property::Table("headers", headers.to_owned()));
    }
    number(&mut out, "delivery-mode", p.delivery_mode.map(u64::from));
    number(&mut out, "priority", p.priority.map(u64::from));
    text(&mut out, "correlation-id", p.correlation_id);
    text(&mut out, "reply-to", p.reply_to);
    text(&mut out, "expiration", p.expiration);
    text(&mut out, "message-id", p.message_id);
    number(&mut out, "timestamp", p.timestamp);
    text(&mut out, "type", p.kind);
    text(&mut out, "user-id", p.user_id);
    text(&mut out, "app-id", p.app_id);
    text(&mut out, "cluster-id", p.cluster_id);
    out
}

/// `name=value` pairs separated by spaces.
pub fn properties_text(p: &BasicProperties<'_>) -> String {
    let shown: Vec<String> = properties(p)
        .iter()
        .map(|prop| match prop {
            Property::Str(name, v) => format!("{name}={v:?}"),
            Property::Number(name, n) => format!("{name}={n}"),
            Property::Table(name, t) => format!("{name}={}", table_text(t)),
        })
        .collect();
    shown.join(" ")
}

/// A JSON object with snake_case keys (`content_type`).
pub fn properties_json(p: &BasicProperties<'_>) -> Value {
    let mut map = Map::new();
    for prop in properties(p) {
        let (name, value) = match prop {
            Property::Str(name, v) => (name, Value::from(v)),
            Property::Number(name, n) => (name, Value::from(n)),
            Property::Table(name, t) => (name, table_json(&t)),
        };
        map.insert(name.replace('-', "_"), value);
    }
    Value::Object(map)
}

/// `{key: value, ...}`, strings quoted.
pub fn table_text(table: &FieldTable) -> String {
    let entries: Vec<String> = table.iter().map(|(k, v)| format!("{k}: {}", value_text(v))).collect();
    format!("{{{}}}", entries.join(", "))
}

/// A table as a JSON object.
pub fn table_json(table: &FieldTable) -> Value {
    Value::Object(table.iter().map(|(k, v)| (k.to_owned(), value_json(v))).collect())
}

fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::I8(n) => n.to_string(),
        FieldValue::U8(n) => n.to_string(),
        FieldValue::I16(n) => n.to_string(),
        FieldValue::U16(n) => n.to_string(),
        FieldValue::I32(n) => n.to_string(),
        FieldValue::U32(n) => n.to_string(),
        FieldValue::I64(n) => n.to_string(),
        FieldValue::F32(n) => n.to_string(),
        FieldValue::F64(n) => n.to_string(),
        FieldValue::Decimal(d) => decimal(d.value, d.scale).to_string(),
        FieldValue::Timestamp(t) => t.to_string(),
        FieldValue::LongString(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{s:?}"),
            Err(_) => format!("base64:{}", BASE64.encode(b)),
        },
        FieldValue::ByteArray(b) => format!("base64:{}", BASE64.encode(b)),
        FieldValue::Array(values) => {
            format!("[{}]", values.iter().map(value_text).collect::<Vec<_>>().join(", "))
        }
        FieldValue::Table(t) => table_text(t),
        FieldValue::Void => "void".to_owned(),
        _ => "?".to_owned(),
    }
}

fn value_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::from(*b),
        FieldValue::I8(n) => Value::from(*n),
        FieldValue::U8(n) => Value::from(*n),
        FieldValue::I16(n) => Value::from(*n),
        FieldValue::U16(n) => Value::from(*n),
        FieldValue::I32(n) => Value::from(*n),
        FieldValue::U32(n) => Value::from(*n),
        FieldValue::I64(n) => Value::from(*n),
        FieldValue::F32(n) => Value::from(*n),
        FieldValue::F64(n) => Value::from(*n),
        FieldValue::Decimal(d) => Value::from(decimal(d.value, d.scale)),
        FieldValue::Timestamp(t) => Value::from(*t),
        FieldValue::LongString(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::from(s),
            Err(_) => json!({ "base64": BASE64.encode(b) }),
        },
        FieldValue::ByteArray(b) => json!({ "base64": BASE64.encode(b) }),
        FieldValue::Array(values) => Value::Array(values.iter().map(value_json).collect()),
        FieldValue::Table(t) => table_json(t),
        _ => Value::Null,
    }
}

fn decimal(value: u32, scale: u8) -> f64 {
    f64::from(value) / 10f64.powi(i32::from(scale))
}

/// Writes a delivery as a line of its envelope and properties, then its body.
pub fn write_text(out: &mut impl Write, d: &Delivery, message_count: Option<u32>) -> io::Result<()> {
    write!(
        out,
        "exchange={:?} routing-key={:?} delivery-tag={} redelivered={} size={}",
        d.exchange(),
        d.routing_key(),
        d.tag().tag,
        d.redelivered(),
        d.body().len()
    )?;
    if let Some(n) = message_count {
        write!(out, " remaining={n}")?;
    }
    let props = properties_text(&d.properties());
    if !props.is_empty() {
        write!(out, " {props}")?;
    }
    match std::str::from_utf8(d.body()) {
        Ok(text) => writeln!(out, "\n{text}"),
        Err(_) => writeln!(out, "\nbase64:{}", BASE64.encode(d.body())),
    }
}

/// Writes a delivery as one JSON object on one line. `message_count` is what basic.get-ok
/// reports as left in the queue.
pub fn write_json(out: &mut impl Write, d: &Delivery, message_count: Option<u32>) -> io::Result<()> {
    let (body, encoding) = match std::str::from_utf8(d.body()) {
        Ok(text) => (Value::from(text), "utf8"),
        Err(_) => (Value::from(BASE64.encode(d.body())), "base64"),
    };
    let mut object = json!({
        "exchange": d.exchange(),
        "routing_key": d.routing_key(),
        "delivery_tag": d.tag().tag.0,
        "redelivered": d.redelivered(),
        "properties": properties_json(&d.properties()),
        "body": body,
        "body_encoding": encoding,
    });
    if let (Some(n), Value::Object(map)) = (message_count, &mut object) {
        map.insert("message_count".to_owned(), Value::from(n));
    }
    writeln!(out, "{object}")
}
