//! Where a message's ordering key comes from: its routing key, a header, or a prefix of its
//! `message-id`. Each extractor is a plain function of a delivery, for
//! [`SerialExecutor`](super::serial::SerialExecutor) or any closure of the caller's own.
//!
//! A message without the key (no such header, say) gets the empty key: such messages are
//! serialised together with each other, never dropped and never run out of order.

use amqp_client::api::Delivery;
use amqp_client::codec::Table;
use amqp_client::codec::table::FieldValueRef;

/// The routing key the message was published with: the natural key behind a
/// [consistent-hash exchange](super::partitioned) that hashes on it.
pub fn routing_key(delivery: &Delivery) -> String {
    delivery.routing_key().to_owned()
}

/// Reads a header as the key: a string as it is, an integer in decimal; missing or of another
/// type, the empty key.
///
/// ```
/// let by_account = mq_patterns::ordering::key::header("account");
/// # fn check(_: impl Fn(&amqp_client::api::Delivery) -> String) {}
/// check(by_account);
/// ```
pub fn header(name: &str) -> impl Fn(&Delivery) -> String + Send + Sync + 'static {
    let name = name.to_owned();
    move |delivery: &Delivery| header_value(delivery, &name).unwrap_or_default()
}

/// The part of the `message-id` before the first `separator` (`"order-17:3"` with `':'` is
/// `"order-17"`); the whole id if it has no separator, the empty key if there is no id.
pub fn message_id_prefix(separator: char) -> impl Fn(&Delivery) -> String + Send + Sync + 'static {
    move |delivery: &Delivery| {
        let properties = delivery.properties();
        let id = properties.message_id.unwrap_or_default();
        id.split(separator).next().unwrap_or_default().to_owned()
    }
}

fn header_value(delivery: &Delivery, name: &str) -> Option<String> {
    let properties = delivery.properties();
    let value = match properties.headers? {
        Table::Raw(raw) => raw.get(name)?,
        // A delivery's properties are parsed from its content header: always wire tables.
        Table::Owned(_) => return None,
    };
    match value {
        FieldValueRef::LongString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        other => other.as_i64().map(|n| n.to_string()),
    }
}
