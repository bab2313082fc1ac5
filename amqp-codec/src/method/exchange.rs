//! The exchange class (40): declare, delete, and RabbitMQ's exchange-to-exchange bind and
//! unbind. Field lists only.

use super::fields::method_structs;
use crate::table::Table;

method_structs! {
    /// exchange.declare (40,10).
    ExchangeDeclare<'a> {
        reserved_1: u16,
        exchange: &'a str,
        kind = "type": &'a str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// exchange.declare-ok (40,11).
    ExchangeDeclareOk {}
    /// exchange.delete (40,20).
    ExchangeDelete<'a> {
        reserved_1: u16,
        exchange: &'a str,
        if_unused: bool,
        no_wait: bool,
    }
    /// exchange.delete-ok (40,21).
    ExchangeDeleteOk {}
    /// exchange.bind (40,30), RabbitMQ: routes from `source` to `destination`.
    ExchangeBind<'a> {
        reserved_1: u16,
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// exchange.bind-ok (40,31).
    ExchangeBindOk {}
    /// exchange.unbind (40,40), RabbitMQ.
    ExchangeUnbind<'a> {
        reserved_1: u16,
        destination: &'a str,
        source: &'a str,
        routing_key: &'a str,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// exchange.unbind-ok (40,51): RabbitMQ numbers it 51, not 41.
    ExchangeUnbindOk {}
}
