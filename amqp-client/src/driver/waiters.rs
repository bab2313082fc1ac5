//! Where the core's events go: a oneshot per request, a bounded queue per consumer, a waiter
//! per unconfirmed publish, a watch per channel and one for the connection. Makes no protocol
//! decisions: it only matches what the core reports to who asked.

use std::collections::VecDeque;
use std::task::Waker;

// FxHash: the keys are our own sequential ids, so SipHash's flooding defence buys nothing,
// and it showed in the publish profile.
use rustc_hash::FxHashMap as HashMap;

use amqp_codec::{ChannelId, DeliveryTag, FieldTable, Method};
use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::core::command::RequestId;
use crate::core::error::{ChannelError, ConnectionError};
use crate::core::event::{Event, Message};
use crate::core::tuning::Tuned;

use super::delivery_queue::{ConsumerTx, Refused};

/// What a request resolves to.
#[derive(Debug)]
pub enum Outcome {
    /// A channel opened; the receiver reports its end.
    ChannelOpened(ChannelId, watch::Receiver<Option<ChannelError>>),
    /// A synchronous method's reply payload.
    Reply(Bytes),
    /// A request without a reply is on the wire queue.
    Sent,
    /// basic.get-ok with its message.
    GetOk(Message),
    /// It failed.
    Failed(ChannelError),
}

/// The broker's verdict on a publish in confirm mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirmation {
    /// basic.ack: the broker took responsibility for the message.
    Ack,
    /// basic.nack: the broker could not take it.
    Nack,
    /// The message was mandatory and unroutable: basic.return came back, then the ack.
    Returned(Message),
    /// The channel is not in confirm mode: the message is on its way, nothing more is known.
    NotRequested,
}

/// How the driver answers one request.
#[derive(Debug)]
pub enum Reply {
    /// Resolve this oneshot.
    Once(oneshot::Sender<Outcome>),
    /// basic.consume: on consume-ok, deliveries for its tag go to `deliveries`.
    Consume {
        /// The request's answer.
        outcome: oneshot::Sender<Outcome>,
        /// Where the consumer's messages go.
        deliveries: ConsumerTx,
    },
    /// basic.publish: resolve `confirm` with the broker's verdict (at once outside confirm
    /// mode), or with why the publish failed. The caller does not wait for the publish to be
    /// queued: the request queue keeps the order, and a round trip per message would cost
    /// two task switches.
    Publish {
        /// The verdict.
        confirm: oneshot::Sender<Result<Confirmation, ChannelError>>,
        /// For a mandatory publish: what a basic.return of it would carry.
        mandatory: Option<Returnable>,
    },
    /// Nobody waits (acks: the protocol has no answer to them either).
    Nothing,
}

/// What identifies a mandatory publish in a basic.return: the broker echoes the exchange,
/// routing key, header and body, so a return is matched to the oldest unconfirmed publish
/// that carried the same ones (identical messages are indistinguishable, and either will do).
#[derive(Debug, Clone)]
pub struct Returnable {
    /// The exchange published to.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The body.
    pub body: Bytes,
}

#[derive(Debug)]
struct Unconfirmed {
    sequence: u64,
    confirm: oneshot::Sender<Result<Confirmation, ChannelError>>,
    mandatory: Option<Returnable>,
    returned: Option<Message>,
}

/// Connection-wide state the API reads.
#[derive(Debug, Clone)]
pub struct Status {
    /// Why the connection ended, once it has.
    pub closed: Option<ConnectionError>,
    /// The broker's reason while it blocks publishing.
    pub blocked: Option<String>,
}

/// Everything waiting on the core.
#[derive(Debug)]
pub struct Waiters {
    requests: HashMap<RequestId, Reply>,
    channels: HashMap<u16, watch::Sender<Option<ChannelError>>>,
    /// Consumers by channel, then tag: the tag is looked up as the `&str` of each delivery,
    /// without allocating a key per message.
    consumers: HashMap<u16, HashMap<String, ConsumerTx>>,
    /// Unconfirmed publishes by channel, in sequence order: the core numbers them as they
    /// go out, so each is pushed at the back and confirms take from the front (a BTreeMap
    /// here had its node merges at the top of the confirms profile).
    unconfirmed: HashMap<u16, VecDeque<Unconfirmed>>,
    /// Deliveries waiting, in order, behind one whose consumer's queue was full; the driver
    /// stops reading until they fit, which bounds them by one read buffer.
    held: VecDeque<(ConsumerTx, Message)>,
    /// Consumers given a delivery since the last `wake_consumers`: each is woken once per
    /// batch, not once per message.
    to_wake: Vec<Waker>,
    status: watch::Sender<Status>,
    opened: Option<oneshot::Sender<Result<(FieldTable, Tuned), ConnectionError>>>,
    /// The connection is over: a delivery that does not fit is dropped, not waited for.
    closing: bool,
    /// The connection's span: events name it as their parent rather than the driver entering
    /// it on every poll, which cost more than the rest of a publish's dispatch.
    span: tracing::Span,
}

impl Waiters {
    /// Waiters reporting the connection's status on `status` and its opening on `opened`,
    /// logging under `span`.
    pub fn new(
        status: watch::Sender<Status>,
        opened: oneshot::Sender<Result<(FieldTable, Tuned), ConnectionError>>,
        span: tracing::Span,
    ) -> Self {
        Waiters {
            requests: HashMap::default(),
            channels: HashMap::default(),
            consumers: HashMap::default(),
            unconfirmed: HashMap::default(),
            held: VecDeque::new(),
            to_wake: Vec::new(),
            status,
            opened: Some(opened),
            closing: false,
            span,
        }
    }

    /// Remembers how to answer `request`.
    pub fn insert(&mut self, request: RequestId, reply: Reply) {
        if !matches!(reply, Reply::Nothing) {
            self.requests.insert(request, reply);
        }
    }

    /// Routes one event.
    pub fn dispatch(&mut self, event: Event) {
        match event {
            Event::Opened { server_properties, tuned } => {
                if let Some(opened) = self.opened.take() {
                    let _ = opened.send(Ok((server_properties, tuned)));
                }
            }
            Event::Closed(error) => {
                match &error {
                    ConnectionError::ClosedByClient { .. } => {
                        tracing::info!(parent: &self.span, %error, "connection closed")
                    }
                    _ => tracing::warn!(parent: &self.span, %error, "connection lost"),
                }
                if let Some(opened) = self.opened.take() {
                    let _ = opened.send(Err(error.clone()));
                }
                self.status.send_modify(|s| s.closed = Some(error));
                self.consumers.clear();
                self.unconfirmed.clear();
            }
            Event::Blocked { reason } => {
                tracing::warn!(parent: &self.span, %reason, "the broker blocked publishing");
                self.status.send_modify(|s| s.blocked = Some(reason));
            }
            Event::Unblocked => {
                tracing::info!(parent: &self.span, "the broker unblocked publishing");
                self.status.send_modify(|s| s.blocked = None);
            }
            Event::ChannelOpened { request, channel } => {
                tracing::debug!(parent: &self.span, %channel, "channel open");
                let (tx, rx) = watch::channel(None);
                self.channels.insert(channel.0, tx);
                self.answer(request, Outcome::ChannelOpened(channel, rx));
            }
            Event::ChannelClosed { channel, error } => {
                match &error {
                    ChannelError::ClosedByBroker { .. } => {
                        tracing::warn!(parent: &self.span, %channel, %error, "channel closed by the broker")
                    }
                    _ => tracing::debug!(parent: &self.span, %channel, %error, "channel closed"),
                }
                // The core closes each channel before it reports the connection closed: a
                // consumer whose stream ends here must already read why from the connection.
                if let ChannelError::Connection(reason) = &error
                    && self.status.borrow().closed.is_none()
                {
                    self.status.send_modify(|s| s.closed = Some(reason.clone()));
                }
                if let Some(tx) = self.channels.remove(&channel.0) {
                    let _ = tx.send(Some(error));
                }
                self.consumers.remove(&channel.0);
                self.unconfirmed.remove(&channel.0);
            }
            Event::Reply { request, channel, method } => self.reply(request, channel, method),
            Event::Sent { request } => self.answer(request, Outcome::Sent),
            Event::Published { request, channel, sequence } => self.published(request, channel, sequence),
            Event::Failed { request, error } => {
                tracing::debug!(parent: &self.span, ?request, %error, "request failed");
                self.answer(request, Outcome::Failed(error));
            }
            Event::GetOk { request, message } => self.answer(request, Outcome::GetOk(message)),
            Event::Delivery { channel, message } => self.deliver(channel, message),
            Event::Returned { channel, message } => self.returned(channel, message),
            Event::Confirmed { channel, tag, multiple, ack } => self.confirmed(channel, tag, multiple, ack),
            Event::Cancelled { channel, consumer_tag } => {
                tracing::info!(parent: &self.span, %channel, consumer_tag, "consumer cancelled by the broker");
                if let Some(tags) = self.consumers.get_mut(&channel.0) {
                    tags.remove(&consumer_tag);
                }
            }
            Event::Flow { channel, active } => tracing::debug!(parent: &self.span, %channel, active, "channel.flow"),
        }
    }

    fn answer(&mut self, request: RequestId, outcome: Outcome) {
        match self.requests.remove(&request) {
            Some(Reply::Once(tx)) | Some(Reply::Consume { outcome: tx, .. }) => {
                let _ = tx.send(outcome);
            }
            Some(Reply::Publish { confirm, .. }) => {
                let verdict = match outcome {
                    Outcome::Failed(error) => Err(error),
                    _ => Ok(Confirmation::NotRequested),
                };
                let _ = confirm.send(verdict);
            }
            Some(Reply::Nothing) | None => {}
        }
    }

    fn reply(&mut self, request: RequestId, channel: ChannelId, method: Bytes) {
        // A cancelled consumer's stream ends once the broker confirms the cancel.
        if let Ok(Method::BasicCancelOk(ok)) = Method::parse(&method, 0) {
            if let Some(tags) = self.consumers.get_mut(&channel.0) {
                tags.remove(ok.consumer_tag);
            }
        }
        // Register a consumer before its consume-ok is answered: deliveries can follow the
        // reply at once, before the caller's task runs again.
        if let Some(Reply::Consume { deliveries, .. }) = self.requests.get(&request)
            && let Ok(Method::BasicConsumeOk(ok)) = Method::parse(&method, 0)
        {
            self.consumers.entry(channel.0).or_default().insert(ok.consumer_tag.to_owned(), deliveries.clone());
        }
        self.answer(request, Outcome::Reply(method));
    }

    fn published(&mut self, request: RequestId, channel: ChannelId, sequence: Option<DeliveryTag>) {
        let Some(Reply::Publish { confirm, mandatory }) = self.requests.remove(&request) else { return };
        match sequence {
            Some(seq) => {
                let pending = Unconfirmed { sequence: seq.0, confirm, mandatory, returned: None };
                let queue = self.unconfirmed.entry(channel.0).or_default();
                // In order in practice (checked first: the search showed in the confirms
                // profile); kept sorted whatever comes.
                if queue.back().is_none_or(|last| last.sequence < seq.0) {
                    queue.push_back(pending);
                } else {
                    let at = queue.partition_point(|u| u.sequence < seq.0);
                    queue.insert(at, pending);
                }
            }
            None => {
                let _ = confirm.send(Ok(Confirmation::NotRequested));
            }
        }
    }

    fn confirmed(&mut self, channel: ChannelId, tag: DeliveryTag, multiple: bool, ack: bool) {
        let Some(pending) = self.unconfirmed.get_mut(&channel.0) else { return };
        if multiple {
            let done = pending.partition_point(|u| u.sequence <= tag.0);
            pending.drain(..done).for_each(|u| settle(u, ack));
            return;
        }
        // Acks come in order in practice: the oldest first, without a search.
        let at = match pending.front() {
            Some(u) if u.sequence == tag.0 => 0,
            _ => pending.partition_point(|u| u.sequence < tag.0),
        };
        if pending.get(at).is_some_and(|u| u.sequence == tag.0)
            && let Some(u) = pending.remove(at)
        {
            settle(u, ack);
        }
    }

    fn returned(&mut self, channel: ChannelId, message: Message) {
        let Ok(Method::BasicReturn(ret)) = message.method() else { return };
        let matched = self.unconfirmed.get_mut(&channel.0).and_then(|pending| {
            pending.iter_mut().find(|u| {
                u.returned.is_none()
                    && u.mandatory.as_ref().is_some_and(|m| {
                        m.exchange == ret.exchange && m.routing_key == ret.routing_key && m.body == message.body
                    })
            })
        });
        match matched {
            Some(u) => u.returned = Some(message.clone()),
            None => tracing::debug!(parent: &self.span, %channel, "basic.return for a publish outside confirm mode"),
        }
    }

    fn deliver(&mut self, channel: ChannelId, message: Message) {
        let tx = match message.method() {
            Ok(Method::BasicDeliver(d)) => self.consumers.get(&channel.0).and_then(|tags| tags.get(d.consumer_tag)),
            _ => return,
        };
        let Some(tx) = tx else {
            tracing::debug!(parent: &self.span, %channel, "a delivery for a consumer that is gone");
            return;
        };
        // Deliveries queue behind one that did not fit, in arrival order; other events (the
        // replies an ack or a publish waits for) pass, or a consumer awaiting its own ack
        // would wait on itself.
        if !self.held.is_empty() {
            self.held.push_back((tx.clone(), message));
            return;
        }
        match tx.offer(message) {
            Ok(waker) => self.to_wake.extend(waker),
            Err(Refused::Full(_)) if self.closing => {}
            Err(Refused::Full(message)) => self.held.push_back((tx.clone(), message)),
            Err(Refused::Closed) => {}
        }
    }

    /// Wakes the consumers that were given deliveries since the last call.
    pub fn wake_consumers(&mut self) {
        self.to_wake.drain(..).for_each(Waker::wake);
    }

    /// True while deliveries wait for a full consumer queue: the driver stops reading.
    pub fn is_stalled(&self) -> bool {
        !self.held.is_empty()
    }

    /// The connection ended: hand over what fits, drop the rest, and stall no more.
    pub fn abandon_stall(&mut self) {
        self.closing = true;
        for (tx, message) in core::mem::take(&mut self.held) {
            if let Ok(waker) = tx.offer(message) {
                self.to_wake.extend(waker);
            }
        }
        self.wake_consumers();
    }

    /// The queue the first held delivery waits for: once it has room, `release_held`.
    pub fn first_held(&self) -> Option<ConsumerTx> {
        self.held.front().map(|(tx, _)| tx.clone())
    }

    /// Hands over held deliveries, in order, as long as they fit.
    pub fn release_held(&mut self) {
        while let Some((tx, message)) = self.held.pop_front() {
            match tx.offer(message) {
                Ok(waker) => self.to_wake.extend(waker),
                Err(Refused::Closed) => {}
                Err(Refused::Full(message)) => {
                    self.held.push_front((tx, message));
                    break;
                }
            }
        }
        self.wake_consumers();
    }
}

/// Resolves one publish with the broker's ack or nack.
fn settle(u: Unconfirmed, ack: bool) {
    let verdict = match (ack, u.returned) {
        (true, Some(message)) => Confirmation::Returned(message),
        (true, None) => Confirmation::Ack,
        (false, _) => Confirmation::Nack,
    };
    let _ = u.confirm.send(Ok(verdict));
}
