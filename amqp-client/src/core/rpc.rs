//! Which reply a request waits for. AMQP allows one synchronous request in flight per channel;
//! this table says, for each method a client sends, whether it is synchronous and which
//! methods answer it. Pure data about the spec.

use amqp_codec::Method;

/// What answers a synchronous request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The reply's class id.
    pub class: u16,
    /// The reply's method id.
    pub method: u16,
    /// A second acceptable reply (basic.get-empty for basic.get).
    pub or: Option<u16>,
}

impl Expect {
    const fn ok(class: u16, method: u16) -> Self {
        Expect { class, method, or: None }
    }

    /// True when `(class, method)` answers this request.
    pub fn matches(&self, class: u16, method: u16) -> bool {
        class == self.class && (method == self.method || Some(method) == self.or)
    }
}

/// How a method the client sends behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Waits for a reply; nothing else on the channel goes out meanwhile.
    Sync(Expect),
    /// Goes out in turn without a reply (publish, no-wait methods, recover-async).
    Async,
    /// basic.ack, nack, reject: independent of everything queued, sent at once.
    Ack,
    /// Not a method a client sends on an open channel.
    NotAllowed,
}

/// Classifies a method the client wants to send on a channel.
pub fn kind(method: &Method<'_>) -> Kind {
    use Method::*;
    let sync_unless = |no_wait: bool, expect: Expect| if no_wait { Kind::Async } else { Kind::Sync(expect) };
    match method {
        ChannelFlow(_) => Kind::Sync(Expect::ok(20, 21)),
        ExchangeDeclare(m) => sync_unless(m.no_wait, Expect::ok(40, 11)),
        ExchangeDelete(m) => sync_unless(m.no_wait, Expect::ok(40, 21)),
        ExchangeBind(m) => sync_unless(m.no_wait, Expect::ok(40, 31)),
        ExchangeUnbind(m) => sync_unless(m.no_wait, Expect::ok(40, 51)),
        QueueDeclare(m) => sync_unless(m.no_wait, Expect::ok(50, 11)),
        QueueBind(m) => sync_unless(m.no_wait, Expect::ok(50, 21)),
        QueuePurge(m) => sync_unless(m.no_wait, Expect::ok(50, 31)),
        QueueDelete(m) => sync_unless(m.no_wait, Expect::ok(50, 41)),
        QueueUnbind(_) => Kind::Sync(Expect::ok(50, 51)),
        BasicQos(_) => Kind::Sync(Expect::ok(60, 11)),
        BasicConsume(m) => sync_unless(m.no_wait, Expect::ok(60, 21)),
        BasicCancel(m) => sync_unless(m.no_wait, Expect::ok(60, 31)),
        BasicGet(_) => Kind::Sync(Expect { class: 60, method: 71, or: Some(72) }),
        BasicRecover(_) => Kind::Sync(Expect::ok(60, 111)),
        BasicRecoverAsync(_) | BasicPublish(_) => Kind::Async,
        BasicAck(_) | BasicNack(_) | BasicReject(_) => Kind::Ack,
        ConfirmSelect(m) => sync_unless(m.nowait, Expect::ok(85, 11)),
        TxSelect(_) => Kind::Sync(Expect::ok(90, 11)),
        TxCommit(_) => Kind::Sync(Expect::ok(90, 21)),
        TxRollback(_) => Kind::Sync(Expect::ok(90, 31)),
        _ => Kind::NotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_codec::method::*;

    #[test]
    fn unbind_ok_is_51_in_both_classes_and_get_has_two_answers() {
        assert_eq!(kind(&ExchangeUnbind::default().into()), Kind::Sync(Expect::ok(40, 51)));
        assert_eq!(kind(&QueueUnbind::default().into()), Kind::Sync(Expect::ok(50, 51)));
        let Kind::Sync(get) = kind(&BasicGet::default().into()) else { panic!("sync") };
        assert!(get.matches(60, 71) && get.matches(60, 72) && !get.matches(60, 70));
    }

    #[test]
    fn no_wait_makes_a_request_asynchronous() {
        assert_eq!(kind(&QueueDeclare { no_wait: true, ..Default::default() }.into()), Kind::Async);
        assert_eq!(kind(&ConfirmSelect { nowait: true }.into()), Kind::Async);
        assert_eq!(kind(&BasicAck::default().into()), Kind::Ack);
    }

    #[test]
    fn connection_and_channel_lifecycle_methods_are_not_channel_requests() {
        assert_eq!(kind(&ChannelOpen::default().into()), Kind::NotAllowed);
        assert_eq!(kind(&ChannelClose::default().into()), Kind::NotAllowed);
        assert_eq!(kind(&ConnectionClose::default().into()), Kind::NotAllowed);
        assert_eq!(kind(&BasicDeliver::default().into()), Kind::NotAllowed);
    }
}
