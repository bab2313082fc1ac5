//! Publishing through recovery: every publish on a confirm-mode channel is kept, with the
//! `message-id` it was first sent with, until the broker confirms it. After a recovery the
//! unconfirmed ones go out again on the new connection, in their original order and before
//! any newer publish, and each caller's [`RecoveringConfirm`] resolves exactly once — saying
//! how many times its message was sent, so a caller knows it may have been delivered twice.
//!
//! The state lives behind one async lock per channel, which both the publishing callers and
//! the recovery take; the confirm pump (one task per channel) takes it to settle a verdict.

use std::collections::BTreeMap;
use std::sync::Weak;

use amqp_client::api::{BasicPublishOptions, Channel, Confirmation, PublishConfirm};
use amqp_client::codec::{BasicProperties, FieldTable, Method, Table};
use amqp_client::{Connection, Error};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::channel::ChannelState;
use super::error::RecoveryError;

/// A publish the broker confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The message's id: the caller's, or the one stamped on it.
    pub message_id: String,
    /// How many times it was sent: more than 1 when a connection was lost before its confirm
    /// came, in which case the broker may hold it twice (an idempotent consumer drops the copy).
    pub sends: u32,
    /// False on a channel without confirm mode: then it was only handed to a connection, and
    /// a loss may have dropped it.
    pub confirmed: bool,
}

impl Published {
    /// Whether it was sent again after a connection loss (a possible duplicate).
    pub fn resent(&self) -> bool {
        self.sends > 1
    }
}

/// The broker's verdict on one publish, resolved exactly once, across recoveries.
#[derive(Debug)]
pub struct RecoveringConfirm {
    message_id: String,
    verdict: oneshot::Receiver<Result<Published, RecoveryError>>,
}

impl RecoveringConfirm {
    /// The message's id.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Waits for the broker's ack (possibly on a later connection than the first send), or
    /// the error that ended it: a nack, an unroutable return, a channel error, or recovery
    /// giving up.
    pub async fn wait(self) -> Result<Published, RecoveryError> {
        self.verdict.await.unwrap_or(Err(RecoveryError::Closed))
    }
}

/// The properties of a kept publish, owned, so that it can be sent again.
#[derive(Debug, Default)]
struct StoredProperties {
    strings: [Option<String>; 10],
    headers: Option<FieldTable>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    timestamp: Option<u64>,
}

impl StoredProperties {
    fn keep(p: &BasicProperties<'_>) -> Self {
        let own = |s: Option<&str>| s.map(str::to_owned);
        StoredProperties {
            strings: [
                own(p.content_type),
                own(p.content_encoding),
                own(p.correlation_id),
                own(p.reply_to),
                own(p.expiration),
                own(p.message_id),
                own(p.kind),
                own(p.user_id),
                own(p.app_id),
                own(p.cluster_id),
            ],
            headers: p.headers.as_ref().map(Table::to_owned),
            delivery_mode: p.delivery_mode,
            priority: p.priority,
            timestamp: p.timestamp,
        }
    }

    fn borrow(&self) -> BasicProperties<'_> {
        let [
            content_type,
            content_encoding,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            kind,
            user_id,
            app_id,
            cluster_id,
        ] = self.strings.each_ref().map(Option::as_deref);
        BasicProperties {
            content_type,
            content_encoding,
            headers: self.headers.as_ref().map(Table::from),
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp: self.timestamp,
            kind,
            user_id,
            app_id,
            cluster_id,
        }
    }
}

/// One kept publish.
#[derive(Debug)]
struct Pending {
    exchange: String,
    routing_key: String,
    options: BasicPublishOptions,
    properties: StoredProperties,
    body: Bytes,
    message_id: String,
    /// The connection generation it was last handed to, if any.
    sent_on: Option<u64>,
    sends: u32,
    verdict: oneshot::Sender<Result<Published, RecoveryError>>,
    /// Held until settled: the channel's bound on unconfirmed publishes.
    _permit: OwnedSemaphorePermit,
}

/// The channel's kept publishes, in order.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    next: u64,
    /// The generation whose re-sends are done: a new publish goes straight out only on a
    /// channel of this generation, so that it cannot overtake an older one waiting to be re-sent.
    caught_up: u64,
    pending: BTreeMap<u64, Pending>,
    /// Set for good when the channel or the recovery has ended: a later publish fails with it
    /// at once, since no recovery will come to send it.
    ended: Option<RecoveryError>,
}

/// What the pump waits on: a kept publish's sequence, the connection it went out on, and
/// the client's confirm.
pub(crate) type Sent = (u64, Connection, PublishConfirm);

/// A message to publish, borrowed from the caller.
pub(crate) struct Outgoing<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) options: BasicPublishOptions,
    pub(crate) properties: &'a BasicProperties<'a>,
    pub(crate) body: Bytes,
}

impl Publisher {
    /// A publisher for a channel opened on connection `generation`.
    pub(crate) fn new(generation: u64) -> Self {
        Publisher { caught_up: generation, ..Publisher::default() }
    }

    /// Keeps a confirm-mode publish and sends it if `channel` is caught up; otherwise the
    /// next recovery sends it, in order.
    pub(crate) async fn publish(
        &mut self,
        channel: Option<&Channel>,
        message: Outgoing<'_>,
        message_id: String,
        permit: OwnedSemaphorePermit,
        pump: &mpsc::UnboundedSender<Sent>,
    ) -> RecoveringConfirm {
        let (verdict, rx) = oneshot::channel();
        if let Some(error) = &self.ended {
            let _ = verdict.send(Err(error.clone()));
            return RecoveringConfirm { message_id, verdict: rx };
        }
        let mut pending = Pending {
            exchange: message.exchange.to_owned(),
            routing_key: message.routing_key.to_owned(),
            options: message.options,
            properties: StoredProperties::keep(message.properties),
            body: message.body,
            message_id: message_id.clone(),
            sent_on: None,
            sends: 0,
            verdict,
            _permit: permit,
        };
        let seq = self.next;
        self.next += 1;
        if let Some(channel) = channel.filter(|c| c.connection().generation() == self.caught_up)
            && let Err(error) = send(channel, seq, &mut pending, pump).await
        {
            let _ = pending.verdict.send(Err(error));
            return RecoveringConfirm { message_id, verdict: rx };
        }
        self.pending.insert(seq, pending);
        RecoveringConfirm { message_id, verdict: rx }
    }

    /// After a recovery: sends every kept publish not yet sent on `channel`'s connection, in
    /// order; from now on new publishes go straight out on it. Returns how many went out again.
    pub(crate) async fn resend(&mut self, channel: &Channel, pump: &mpsc::UnboundedSender<Sent>) -> usize {
        let generation = channel.connection().generation();
        let mut resent = 0;
        let mut refused = Vec::new();
        for (seq, pending) in self.pending.iter_mut() {
            if pending.sent_on != Some(generation) {
                let again = pending.sends > 0;
                match send(channel, *seq, pending, pump).await {
                    Ok(()) => resent += usize::from(again),
                    Err(error) => refused.push((*seq, error)),
                }
            }
        }
        for (seq, error) in refused {
            if let Some(pending) = self.pending.remove(&seq) {
                let _ = pending.verdict.send(Err(error));
            }
        }
        self.caught_up = generation;
        resent
    }

    /// Settles a kept publish with its confirm's outcome, unless it has been sent again since
    /// (a stale verdict from a lost connection) or must wait for the next recovery.
    pub(crate) fn settle(&mut self, seq: u64, generation: u64, outcome: Result<Confirmation, Error>) {
        let Some(pending) = self.pending.get(&seq) else { return };
        if pending.sent_on != Some(generation) {
            return;
        }
        let result = match outcome {
            Ok(Confirmation::Ack) => Ok(true),
            Ok(Confirmation::NotRequested) => Ok(false),
            Ok(Confirmation::Nack) => Err(RecoveryError::Nacked { message_id: pending.message_id.clone() }),
            Ok(Confirmation::Returned(message)) => Err(unroutable(&pending.message_id, &message)),
            Ok(_) => Ok(true),
            // The connection went: the next recovery sends it again.
            Err(Error::Connection(_)) => return,
            Err(other) => Err(RecoveryError::Client(other)),
        };
        if let Some(pending) = self.pending.remove(&seq) {
            let published = |confirmed| Published { message_id: pending.message_id, sends: pending.sends, confirmed };
            let _ = pending.verdict.send(result.map(published));
        }
    }

    /// Ends every kept publish with `error` (recovery gave up, or the channel failed).
    pub(crate) fn fail_all(&mut self, error: &RecoveryError) {
        self.ended = Some(error.clone());
        for (_, pending) in std::mem::take(&mut self.pending) {
            let _ = pending.verdict.send(Err(error.clone()));
        }
    }
}

/// Hands a kept publish to `channel`. `Err` when the client refused it for good (it cannot
/// be encoded, or the channel was closed by the broker): the caller settles it with that error.
/// A connection error keeps it for the next recovery.
async fn send(
    channel: &Channel,
    seq: u64,
    pending: &mut Pending,
    pump: &mpsc::UnboundedSender<Sent>,
) -> Result<(), RecoveryError> {
    let properties = pending.properties.borrow();
    let sent = channel
        .basic_publish(&pending.exchange, &pending.routing_key, pending.options, &properties, pending.body.clone())
        .await;
    match sent {
        Ok(confirm) => {
            pending.sent_on = Some(channel.connection().generation());
            pending.sends += 1;
            let _ = pump.send((seq, channel.connection().clone(), confirm));
            Ok(())
        }
        Err(Error::Connection(error)) => {
            tracing::debug!(%error, seq, "publish not sent; the next recovery sends it");
            Ok(())
        }
        Err(error) => Err(RecoveryError::Client(error)),
    }
}

fn unroutable(message_id: &str, message: &amqp_client::core::event::Message) -> RecoveryError {
    let (code, text) = match message.method() {
        Ok(Method::BasicReturn(r)) => (r.reply_code, r.reply_text.to_owned()),
        _ => (amqp_client::codec::ReplyCode::NO_ROUTE, "returned".to_owned()),
    };
    RecoveryError::Unroutable { message_id: message_id.to_owned(), code, text }
}

/// One task per channel: waits for each sent publish's confirm, in order, and settles it.
/// Holds the channel weakly, so that it ends when the channel is dropped.
///
/// A confirm of a lost connection is not waited for: the client resolves it only once its
/// connection task has finished, which can take until the heartbeat deadline, and every
/// confirm behind it — the new connection's too — would wait as long, filling the window.
pub(crate) async fn pump(state: Weak<ChannelState>, mut sent: mpsc::UnboundedReceiver<Sent>) {
    while let Some((seq, connection, confirm)) = sent.recv().await {
        let outcome = tokio::select! {
            // A verdict that came before the loss is still the verdict.
            biased;
            outcome = confirm.wait() => outcome,
            cause = connection.closed() => Err(Error::Connection(cause)),
        };
        let Some(state) = state.upgrade() else { return };
        state.publisher.lock().await.settle(seq, connection.generation(), outcome);
    }
}

/// A publish on a channel without confirm mode: handed to the connection once, not kept.
pub(crate) async fn publish_unconfirmed(
    channel: &Channel,
    message: Outgoing<'_>,
    message_id: String,
) -> Result<RecoveringConfirm, Error> {
    let Outgoing { exchange, routing_key, options, properties, body } = message;
    let confirm = channel.basic_publish(exchange, routing_key, options, properties, body).await?;
    drop(confirm);
    let (tx, verdict) = oneshot::channel();
    let _ = tx.send(Ok(Published { message_id: message_id.clone(), sends: 1, confirmed: false }));
    Ok(RecoveringConfirm { message_id, verdict })
}
