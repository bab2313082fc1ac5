//! The record of what the user declared — exchanges, queues, bindings — kept in declaration
//! order so that recovery can declare it again. Pure data: no I/O. Deletions remove what they
//! delete (and what the broker deletes along with it), and a server-named queue that comes
//! back under a new name takes its bindings and consumers with it.

use std::collections::HashMap;

use amqp_client::api::{ExchangeDeclareOptions, QueueDeclareOptions};
use amqp_client::codec::FieldTable;

/// An exchange as declared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExchangeRecord {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) options: ExchangeDeclareOptions,
    pub(crate) arguments: FieldTable,
}

/// A queue as declared; `name` is the broker's current name for it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueueRecord {
    pub(crate) name: String,
    /// Declared with an empty name: the broker names it, anew on each recovery.
    pub(crate) server_named: bool,
    pub(crate) options: QueueDeclareOptions,
    pub(crate) arguments: FieldTable,
}

/// What a binding's destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    Queue,
    Exchange,
}

/// A binding as made.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BindingRecord {
    pub(crate) kind: Destination,
    pub(crate) destination: String,
    pub(crate) source: String,
    pub(crate) routing_key: String,
    pub(crate) arguments: FieldTable,
}

/// Everything declared on a recovering connection, in order.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    pub(crate) exchanges: Vec<ExchangeRecord>,
    pub(crate) queues: Vec<QueueRecord>,
    pub(crate) bindings: Vec<BindingRecord>,
    /// Every earlier name of a renamed server-named queue, to its current one.
    renamed: HashMap<String, String>,
}

impl Topology {
    pub(crate) fn exchange_declared(&mut self, record: ExchangeRecord) {
        match self.exchanges.iter_mut().find(|e| e.name == record.name) {
            Some(existing) => *existing = record,
            None => self.exchanges.push(record),
        }
    }

    pub(crate) fn exchange_deleted(&mut self, name: &str) {
        self.exchanges.retain(|e| e.name != name);
        self.bindings.retain(|b| b.source != name && !(b.kind == Destination::Exchange && b.destination == name));
    }

    pub(crate) fn queue_declared(&mut self, record: QueueRecord) {
        match self.queues.iter_mut().find(|q| q.name == record.name) {
            Some(existing) => *existing = record,
            None => self.queues.push(record),
        }
    }

    pub(crate) fn queue_deleted(&mut self, name: &str) {
        let name = self.current_name(name).to_owned();
        self.queues.retain(|q| q.name != name);
        self.bindings.retain(|b| !(b.kind == Destination::Queue && b.destination == name));
    }

    /// The broker dropped an auto-delete queue (its last consumer went): forget it and its
    /// bindings, which the broker removed too.
    pub(crate) fn consumer_gone_from(&mut self, queue: &str, consumers_left: usize) {
        let auto_deleted = self.queues.iter().any(|q| q.name == queue && q.options.auto_delete);
        if auto_deleted && consumers_left == 0 {
            self.queue_deleted(queue);
        }
    }

    pub(crate) fn bound(&mut self, record: BindingRecord) {
        if !self.bindings.contains(&record) {
            self.bindings.push(record);
        }
    }

    pub(crate) fn unbound(&mut self, record: &BindingRecord) {
        self.bindings.retain(|b| b != record);
    }

    /// A server-named queue was declared again and got `new`: bindings follow.
    pub(crate) fn rename(&mut self, old: &str, new: &str) {
        for queue in self.queues.iter_mut().filter(|q| q.name == old) {
            queue.name = new.to_owned();
        }
        for binding in self.bindings.iter_mut().filter(|b| b.kind == Destination::Queue && b.destination == old) {
            binding.destination = new.to_owned();
        }
        for current in self.renamed.values_mut().filter(|c| c.as_str() == old) {
            *current = new.to_owned();
        }
        self.renamed.insert(old.to_owned(), new.to_owned());
    }

    /// The queue's name now: itself, unless it is an earlier name of a renamed queue.
    pub(crate) fn current_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.renamed.get(name).map_or(name, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, server_named: bool, auto_delete: bool) -> QueueRecord {
        let options = QueueDeclareOptions { auto_delete, ..Default::default() };
        QueueRecord { name: name.into(), server_named, options, arguments: FieldTable::new() }
    }

    fn binding(kind: Destination, destination: &str, source: &str) -> BindingRecord {
        let (destination, source) = (destination.into(), source.into());
        BindingRecord { kind, destination, source, routing_key: "k".into(), arguments: FieldTable::new() }
    }

    #[test]
    fn a_renamed_queue_takes_its_bindings_and_old_names_along() {
        let mut topology = Topology::default();
        topology.queue_declared(queue("amq.gen-1", true, false));
        topology.bound(binding(Destination::Queue, "amq.gen-1", "x"));
        topology.rename("amq.gen-1", "amq.gen-2");
        topology.rename("amq.gen-2", "amq.gen-3");
        assert_eq!(topology.queues[0].name, "amq.gen-3");
        assert_eq!(topology.bindings[0].destination, "amq.gen-3");
        assert_eq!(topology.current_name("amq.gen-1"), "amq.gen-3");
        assert_eq!(topology.current_name("amq.gen-2"), "amq.gen-3");
        assert_eq!(topology.current_name("other"), "other");
    }

    #[test]
    fn deleting_forgets_what_the_broker_deletes_with_it() {
        let mut topology = Topology::default();
        let exchange = |name: &str| ExchangeRecord {
            name: name.into(),
            kind: "direct".into(),
            options: ExchangeDeclareOptions::default(),
            arguments: FieldTable::new(),
        };
        topology.exchange_declared(exchange("a"));
        topology.exchange_declared(exchange("b"));
        topology.queue_declared(queue("q", false, false));
        topology.bound(binding(Destination::Queue, "q", "a"));
        topology.bound(binding(Destination::Exchange, "b", "a"));
        topology.bound(binding(Destination::Queue, "q", "b"));
        topology.exchange_deleted("a");
        assert_eq!(topology.bindings, vec![binding(Destination::Queue, "q", "b")]);
        topology.queue_deleted("q");
        assert!(topology.bindings.is_empty());
        assert_eq!(topology.exchanges.len(), 1);
    }

    #[test]
    fn an_auto_delete_queue_is_forgotten_with_its_last_consumer() {
        let mut topology = Topology::default();
        topology.queue_declared(queue("auto", false, true));
        topology.queue_declared(queue("kept", false, false));
        topology.bound(binding(Destination::Queue, "auto", "x"));
        topology.consumer_gone_from("auto", 1);
        assert_eq!(topology.queues.len(), 2);
        topology.consumer_gone_from("auto", 0);
        topology.consumer_gone_from("kept", 0);
        assert_eq!(topology.queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["kept"]);
        assert!(topology.bindings.is_empty());
    }

    #[test]
    fn declaring_twice_keeps_one_record_in_place() {
        let mut topology = Topology::default();
        topology.queue_declared(queue("a", false, false));
        topology.queue_declared(queue("b", false, false));
        topology.queue_declared(queue("a", false, true));
        assert_eq!(topology.queues.len(), 2);
        assert!(topology.queues[0].options.auto_delete);
        topology.bound(binding(Destination::Queue, "a", "x"));
        topology.bound(binding(Destination::Queue, "a", "x"));
        assert_eq!(topology.bindings.len(), 1);
    }
}
