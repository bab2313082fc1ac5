//! A channel that survives recoveries: the recovering connection reopens it on each new
//! connection with its QoS and confirm mode, restarts its consumers and re-sends its
//! unconfirmed publishes. Declarations made through it are recorded for recovery. A channel
//! error (404, 406, ...) is the caller's: it is returned, and the channel is reopened only
//! when [`RecoveryOptions::reopen_on_channel_error`](super::RecoveryOptions) asks for it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use amqp_client::api::*;
use amqp_client::codec::{BasicProperties, FieldTable};
use amqp_client::core::error::ChannelError;
use amqp_client::{Channel, Connection, Error};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, watch};

use super::connection::Shared;
use super::consumer::{ConsumerRecord, RecoveringConsumer};
use super::error::RecoveryError;
use super::publish::{self, Outgoing, Publisher, RecoveringConfirm, Sent};
use super::topology::{BindingRecord, Destination, ExchangeRecord, QueueRecord};

/// Locks a std mutex; a poisoned one still holds consistent data here, because no code
/// path panics while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A recovering channel's state, shared by its handles, its consumers and the recovery.
#[derive(Debug)]
pub(crate) struct ChannelState {
    pub(crate) shared: Arc<Shared>,
    /// The client channel on the current connection.
    pub(crate) current: watch::Sender<Option<Channel>>,
    /// The last basic.qos of each scope (per consumer, global).
    qos: Mutex<Vec<(u16, BasicQosOptions)>>,
    confirm: Mutex<bool>,
    /// Set when the channel was closed, by the broker (and not reopened) or by the user.
    ended: Mutex<Option<RecoveryError>>,
    pub(crate) consumers: Mutex<Vec<ConsumerRecord>>,
    pub(crate) publisher: tokio::sync::Mutex<Publisher>,
    window: Arc<Semaphore>,
    pump: mpsc::UnboundedSender<Sent>,
}

impl ChannelState {
    pub(crate) fn new(shared: Arc<Shared>, channel: Channel) -> Arc<Self> {
        let (pump, sent) = mpsc::unbounded_channel();
        let window = Arc::new(Semaphore::new(shared.options.max_unconfirmed.clamp(1, Semaphore::MAX_PERMITS)));
        let publisher = Publisher::new(channel.connection().generation());
        let state = Arc::new(ChannelState {
            shared,
            current: watch::Sender::new(Some(channel)),
            qos: Mutex::new(Vec::new()),
            confirm: Mutex::new(false),
            ended: Mutex::new(None),
            consumers: Mutex::new(Vec::new()),
            publisher: tokio::sync::Mutex::new(publisher),
            window,
            pump,
        });
        tokio::spawn(publish::pump(Arc::downgrade(&state), sent));
        state
    }

    pub(crate) fn is_ended(&self) -> bool {
        lock(&self.ended).is_some()
    }

    /// Opens the channel on `conn` with its QoS and confirm mode (recovery, step one).
    pub(crate) async fn reopen(&self, conn: &Connection) -> Result<(), Error> {
        let channel = conn.open_channel().await?;
        let qos = lock(&self.qos).clone();
        for (prefetch, options) in qos {
            channel.basic_qos(prefetch, options).await?;
        }
        if *lock(&self.confirm) {
            channel.confirm_select().await?;
        }
        self.current.send_replace(Some(channel));
        Ok(())
    }

    /// Re-sends the unconfirmed publishes on the reopened channel (recovery, last step).
    pub(crate) async fn resend(&self) -> usize {
        let Some(channel) = self.current.borrow().clone() else { return 0 };
        self.publisher.lock().await.resend(&channel, &self.pump).await
    }

    pub(crate) async fn fail_publishes(&self, error: &RecoveryError) {
        self.publisher.lock().await.fail_all(error);
    }

    /// The client channel to use now, waiting (bounded) while the connection is down.
    pub(crate) async fn channel(&self) -> Result<Channel, RecoveryError> {
        loop {
            if let Some(error) = lock(&self.ended).clone() {
                return Err(error);
            }
            let conn = self.shared.up().await?;
            let channel = self.current.borrow().clone();
            match channel {
                Some(c) if c.connection().generation() == conn.generation() => match c.close_reason() {
                    None => return Ok(c),
                    Some(why @ ChannelError::ClosedByBroker { .. }) => self.channel_failed(&c, &why).await?,
                    // Closed with its connection: the next recovery reopens it.
                    Some(_) => self.shared.wait_past(conn.generation()).await?,
                },
                // Not reopened on this connection: a failure the recovery reported.
                _ => return Err(RecoveryError::ChannelClosed("not reopened after recovery".into())),
            }
        }
    }

    /// The broker closed the channel (`why`): reopen it if the user asked for that, else end it.
    async fn channel_failed(&self, channel: &Channel, why: &ChannelError) -> Result<(), RecoveryError> {
        if self.shared.options.reopen_on_channel_error {
            // One reopen per failure, in step with recovery (ops) and ahead of any publish
            // (the publisher's lock), so that the kept publishes go out first, in order.
            let _ops = self.shared.ops.read().await;
            let mut publisher = self.publisher.lock().await;
            // Still the channel that failed (its watch may not say so yet; the reply did), or
            // has another caller or recovery replaced it? A replacement has another number.
            let same = |c: &Channel| {
                c.id() == channel.id() && c.connection().generation() == channel.connection().generation()
            };
            let still_failed = self.current.borrow().as_ref().is_none_or(same);
            if !still_failed {
                return Ok(()); // another caller, or recovery, reopened it already
            }
            tracing::info!(%why, "reopening a channel the broker closed");
            self.reopen(channel.connection()).await?;
            let reopened = self.current.borrow().clone();
            if let Some(reopened) = reopened {
                publisher.resend(&reopened, &self.pump).await;
            }
            drop(publisher);
            self.restore_consumers().await;
            return Ok(());
        }
        let error = RecoveryError::ChannelClosed(why.to_string());
        *lock(&self.ended) = Some(error.clone());
        self.fail_publishes(&error).await;
        lock(&self.consumers).clear();
        Err(error)
    }

    /// Runs `op` on the current channel and, if it succeeds, `record`s it, both while
    /// recovery is not restoring (so that the record and the broker agree). After a connection
    /// loss it waits for the recovery and runs `op` again. A channel error is returned (and
    /// handled as the options say).
    pub(crate) async fn run<T, F, Fut>(&self, op: F, record: impl FnOnce(&T)) -> Result<T, RecoveryError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        loop {
            // Wait for the link before taking the lock: recovery needs it to bring the link up.
            let channel = self.channel().await?;
            let generation = channel.connection().generation();
            let ops = self.shared.ops.read().await;
            match op(channel.clone()).await {
                Ok(value) => {
                    record(&value);
                    return Ok(value);
                }
                Err(Error::Connection(_)) => {
                    drop(ops);
                    self.shared.wait_past(generation).await?
                }
                Err(error) => {
                    drop(ops);
                    // The reply says the broker closed the channel even before the channel's
                    // own state does.
                    if let Error::Channel(why @ ChannelError::ClosedByBroker { .. }) = &error {
                        let _ = self.channel_failed(&channel, why).await;
                    }
                    return Err(error.into());
                }
            }
        }
    }

    /// Restarts this channel's consumers on its current channel (recovery, after topology).
    /// A consumer that cannot be restarted (its queue is gone) ends: it is dropped from the
    /// record, so its stream ends, and the channel its failure closed is opened again for the
    /// others — the failure is the recovery's, not a call of the user's.
    pub(crate) async fn restore_consumers(&self) -> (usize, Vec<String>) {
        let mut failures = Vec::new();
        // A consumer that fails closes the channel, and those restarted before it with it:
        // the pass starts again on the reopened channel, without the one that failed.
        // A queue in the middle of a failover (a quorum queue electing a leader) refuses
        // consumers for a moment: a refusal other than "not found" is tried again, a few times.
        let mut retries = 0u32;
        'pass: loop {
            // A consumer whose RecoveringConsumer is gone is not restarted for nobody.
            lock(&self.consumers).retain(|r| !r.replace.is_closed());
            let records: Vec<ConsumerRecord> = lock(&self.consumers).clone();
            let mut restored = 0;
            for record in records {
                let Some(channel) = self.current.borrow().clone() else { break 'pass (restored, failures) };
                let queue = self.shared.current_queue_name(&record.queue);
                let tag = &record.options.consumer_tag;
                let wanted = || lock(&self.consumers).iter().any(|r| &r.options.consumer_tag == tag);
                if !wanted() {
                    continue; // cancelled since the pass began
                }
                match channel.basic_consume(&queue, record.options.clone(), &record.arguments).await {
                    Ok(consumer) if !wanted() => {
                        let _ = consumer.cancel().await;
                    }
                    Ok(consumer) => {
                        restored += 1;
                        let _ = record.replace.send((consumer, channel.clone()));
                    }
                    // The new connection died too: the next recovery restores them all.
                    Err(Error::Connection(_)) => break 'pass (restored, failures),
                    Err(error) => {
                        // The broker's refusal closed the channel (and those restarted on it):
                        // the pass starts again on a reopened one.
                        let refused = matches!(error, Error::Channel(ChannelError::ClosedByBroker { .. }));
                        let for_good = error.reply_code() == Some(amqp_client::codec::ReplyCode::NOT_FOUND);
                        if refused && !for_good && retries < 10 {
                            retries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            if self.reopen(channel.connection()).await.is_err() {
                                break 'pass (restored, failures);
                            }
                            continue 'pass;
                        }
                        failures.push(format!("consumer {tag} on {queue}: {error}"));
                        lock(&self.consumers).retain(|r| &r.options.consumer_tag != tag);
                        if matches!(error, Error::Channel(ChannelError::ClosedByBroker { .. })) {
                            match self.reopen(channel.connection()).await {
                                Ok(()) => continue 'pass,
                                Err(error) => failures.push(format!("channel: {error}")),
                            }
                        }
                    }
                }
            }
            break (restored, failures);
        }
    }
}

/// A channel that survives connection loss. Cheap to clone; clones share the channel.
///
/// ```no_run
/// # async fn demo() -> Result<(), mq_patterns::recovery::RecoveryError> {
/// use mq_patterns::client::api::{BasicPublishOptions, ConnectionOptions, QueueDeclareOptions};
/// use mq_patterns::client::codec::{BasicProperties, FieldTable};
/// use mq_patterns::recovery::{RecoveringConnection, RecoveryOptions};
///
/// let options = ConnectionOptions::from_uri("amqp://guest:guest@127.0.0.1:5672/%2f")?;
/// let conn = RecoveringConnection::connect(vec![options], RecoveryOptions::default()).await?;
/// let channel = conn.open_channel().await?;
/// channel.confirm_select().await?;
/// let queue = channel.queue_declare("orders", QueueDeclareOptions { durable: true, ..Default::default() }, &FieldTable::new()).await?;
/// let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
/// let published = channel.basic_publish("", &queue, BasicPublishOptions::default(), &props, "hello").await?.wait().await?;
/// println!("{} confirmed after {} send(s)", published.message_id, published.sends);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RecoveringChannel {
    pub(crate) state: Arc<ChannelState>,
}

impl RecoveringChannel {
    /// The client channel on the current connection (it changes with each recovery).
    pub fn current(&self) -> Option<Channel> {
        self.state.current.borrow().clone()
    }

    /// exchange.declare, recorded for recovery (unless passive).
    pub async fn exchange_declare(
        &self,
        exchange: &str,
        kind: &str,
        options: ExchangeDeclareOptions,
        arguments: &FieldTable,
    ) -> Result<(), RecoveryError> {
        let record = |_: &()| {
            if !options.passive {
                let (name, kind, arguments) = (exchange.to_owned(), kind.to_owned(), arguments.clone());
                self.state.shared.topology().exchange_declared(ExchangeRecord { name, kind, options, arguments });
            }
        };
        self.state.run(|c| async move { c.exchange_declare(exchange, kind, options, arguments).await }, record).await
    }

    /// exchange.delete; the exchange and its bindings leave the record.
    pub async fn exchange_delete(&self, exchange: &str, options: ExchangeDeleteOptions) -> Result<(), RecoveryError> {
        let record = |_: &()| self.state.shared.topology().exchange_deleted(exchange);
        self.state.run(|c| async move { c.exchange_delete(exchange, options).await }, record).await
    }

    /// exchange.bind (destination ← source), recorded.
    pub async fn exchange_bind(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), RecoveryError> {
        let made = binding(Destination::Exchange, destination, source, routing_key, arguments);
        let record = |_: &()| self.state.shared.topology().bound(made);
        self.state
            .run(|c| async move { c.exchange_bind(destination, source, routing_key, false, arguments).await }, record)
            .await
    }

    /// exchange.unbind; the binding leaves the record.
    pub async fn exchange_unbind(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), RecoveryError> {
        let made = binding(Destination::Exchange, destination, source, routing_key, arguments);
        let record = |_: &()| self.state.shared.topology().unbound(&made);
        self.state
            .run(|c| async move { c.exchange_unbind(destination, source, routing_key, false, arguments).await }, record)
            .await
    }

    /// queue.declare, recorded (unless passive). Returns the queue's name: for a server-named
    /// queue (empty `queue`) the broker's, which changes with each recovery —
    /// [`RecoveringConnection::queue_name`](super::RecoveringConnection::queue_name) maps an
    /// old name to the current one, and the recorded bindings and consumers follow it.
    pub async fn queue_declare(
        &self,
        queue: &str,
        options: QueueDeclareOptions,
        arguments: &FieldTable,
    ) -> Result<String, RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        let record = |info: &QueueInfo| {
            if !options.passive {
                let (name, server_named, arguments) = (info.name.clone(), queue.is_empty(), arguments.clone());
                self.state.shared.topology().queue_declared(QueueRecord { name, server_named, options, arguments });
            }
        };
        let declare = |c: Channel| async move { c.queue_declare(current, options, arguments).await };
        Ok(self.state.run(declare, record).await?.name)
    }

    /// queue.delete; the queue, its bindings and its consumers leave the record. Returns the
    /// number of messages deleted.
    pub async fn queue_delete(&self, queue: &str, options: QueueDeleteOptions) -> Result<u32, RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        let record = |_: &u32| {
            self.state.shared.topology().queue_deleted(current);
            self.state.shared.forget_consumers_of(current);
        };
        self.state.run(|c| async move { c.queue_delete(current, options).await }, record).await
    }

    /// queue.bind, recorded.
    pub async fn queue_bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        let made = binding(Destination::Queue, current, exchange, routing_key, arguments);
        let record = |_: &()| self.state.shared.topology().bound(made);
        self.state
            .run(|c| async move { c.queue_bind(current, exchange, routing_key, false, arguments).await }, record)
            .await
    }

    /// queue.unbind; the binding leaves the record.
    pub async fn queue_unbind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        let made = binding(Destination::Queue, current, exchange, routing_key, arguments);
        let record = |_: &()| self.state.shared.topology().unbound(&made);
        self.state.run(|c| async move { c.queue_unbind(current, exchange, routing_key, arguments).await }, record).await
    }

    /// queue.purge: the number of messages purged. Not recorded.
    pub async fn queue_purge(&self, queue: &str) -> Result<u32, RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        self.state.run(|c| async move { c.queue_purge(current, false).await }, |_| {}).await
    }

    /// basic.qos, recorded: every recovery applies it again before any consumer restarts, so
    /// that no consumer comes back without its limit.
    pub async fn basic_qos(&self, prefetch_count: u16, options: BasicQosOptions) -> Result<(), RecoveryError> {
        let record = |_: &()| {
            let mut qos = lock(&self.state.qos);
            qos.retain(|(_, o)| o.global != options.global);
            qos.push((prefetch_count, options));
        };
        self.state.run(|c| async move { c.basic_qos(prefetch_count, options).await }, record).await
    }

    /// confirm.select, recorded: from now on publishes are kept until confirmed and re-sent
    /// after a recovery.
    pub async fn confirm_select(&self) -> Result<(), RecoveryError> {
        let record = |_: &()| *lock(&self.state.confirm) = true;
        self.state.run(|c| async move { c.confirm_select().await }, record).await
    }

    /// basic.publish. Stamps a `message-id` on a message without one. In confirm mode the
    /// message is kept until the broker confirms it, across recoveries; while the connection
    /// is down this waits (up to [`RecoveryOptions::wait`](super::RecoveryOptions)) and so
    /// does a publisher that has `max_unconfirmed` messages unconfirmed.
    pub async fn basic_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        properties: &BasicProperties<'_>,
        body: impl Into<Bytes>,
    ) -> Result<RecoveringConfirm, RecoveryError> {
        let stamped;
        let message_id = match properties.message_id {
            Some(id) => id,
            None => {
                stamped = self.state.shared.ids.next();
                &stamped
            }
        };
        let properties = BasicProperties { message_id: Some(message_id), ..properties.clone() };
        let message = Outgoing { exchange, routing_key, options, properties: &properties, body: body.into() };
        if !*lock(&self.state.confirm) {
            let channel = self.state.channel().await?;
            return Ok(publish::publish_unconfirmed(&channel, message, message_id.to_owned()).await?);
        }
        let permit = self.window_permit().await?;
        // Wait for the link only to bound the wait; the publish is kept either way.
        self.state.channel().await?;
        let mut publisher = self.state.publisher.lock().await;
        // The channel is read under the lock: a recovery that finished while this call waited
        // for it has replaced the channel, and the publish goes out on the new one.
        let current = self.state.current.borrow().clone();
        let live = current.as_ref().filter(|c| c.close_reason().is_none());
        Ok(publisher.publish(live, message, message_id.to_owned(), permit, &self.state.pump).await)
    }

    async fn window_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RecoveryError> {
        let wait = self.state.shared.call_wait();
        match tokio::time::timeout(wait, self.state.window.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(RecoveryError::Closed),
            Err(_) => Err(RecoveryError::NotConnected { waited: wait }),
        }
    }

    /// basic.consume: a consumer whose stream continues across recoveries (the consumer tag
    /// is kept; an empty one is chosen here so that it can be).
    pub async fn basic_consume(
        &self,
        queue: &str,
        mut options: BasicConsumeOptions,
        arguments: &FieldTable,
    ) -> Result<RecoveringConsumer, RecoveryError> {
        if options.consumer_tag.is_empty() {
            options.consumer_tag = format!("mqp-{}", self.state.shared.ids.next());
        }
        let current = self.state.shared.current_queue_name(queue);
        let (current, opts) = (current.as_str(), &options);
        let (replace, replacements) = mpsc::unbounded_channel();
        let record = |_: &(Consumer, Channel)| {
            let record = ConsumerRecord {
                queue: current.to_owned(),
                options: opts.clone(),
                arguments: arguments.clone(),
                replace,
            };
            lock(&self.state.consumers).push(record);
        };
        let consume = |c: Channel| async move { Ok((c.basic_consume(current, opts.clone(), arguments).await?, c)) };
        let consumer = self.state.run(consume, record).await?;
        Ok(RecoveringConsumer::new(self.state.clone(), consumer, replacements))
    }

    /// basic.get: one message, or `None` when the queue is empty. Not recorded.
    pub async fn basic_get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>, RecoveryError> {
        let current = self.state.shared.current_queue_name(queue);
        let current = current.as_str();
        self.state.run(|c| async move { c.basic_get(current, no_ack).await }, |_| {}).await
    }

    /// Closes the channel for good: it is not reopened, its consumers end, and its unconfirmed
    /// publishes fail with [`RecoveryError::Closed`].
    pub async fn close(&self) -> Result<(), RecoveryError> {
        *lock(&self.state.ended) = Some(RecoveryError::Closed);
        lock(&self.state.consumers).clear();
        self.state.fail_publishes(&RecoveryError::Closed).await;
        match self.current() {
            Some(channel) if channel.close_reason().is_none() => Ok(channel.close().await?),
            _ => Ok(()),
        }
    }
}

fn binding(
    kind: Destination,
    destination: &str,
    source: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> BindingRecord {
    BindingRecord {
        kind,
        destination: destination.to_owned(),
        source: source.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: arguments.clone(),
    }
}
