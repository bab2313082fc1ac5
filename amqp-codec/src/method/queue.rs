//! The queue class (50): declare, bind, unbind, purge, delete. Field lists only.

use super::fields::method_structs;
use crate::table::Table;

method_structs! {
    /// queue.declare (50,10); an empty name asks the server to name the queue.
    QueueDeclare<'a> {
        reserved_1: u16,
        queue: &'a str,
        passive: bool,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// queue.declare-ok (50,11): the queue's name and counts.
    QueueDeclareOk<'a> {
        queue: &'a str,
        message_count: u32,
        consumer_count: u32,
    }
    /// queue.bind (50,20).
    QueueBind<'a> {
        reserved_1: u16,
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// queue.bind-ok (50,21).
    QueueBindOk {}
    /// queue.unbind (50,50); it has no no-wait.
    QueueUnbind<'a> {
        reserved_1: u16,
        queue: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
        arguments: Table<'a>,
    }
    /// queue.unbind-ok (50,51).
    QueueUnbindOk {}
    /// queue.purge (50,30).
    QueuePurge<'a> {
        reserved_1: u16,
        queue: &'a str,
        no_wait: bool,
    }
    /// queue.purge-ok (50,31).
    QueuePurgeOk {
        message_count: u32,
    }
    /// queue.delete (50,40).
    QueueDelete<'a> {
        reserved_1: u16,
        queue: &'a str,
        if_unused: bool,
        if_empty: bool,
        no_wait: bool,
    }
    /// queue.delete-ok (50,41).
    QueueDeleteOk {
        message_count: u32,
    }
}
