//! The scenarios with amqprs 2, as its README and docs use it: callbacks registered on every
//! connection and channel, `basic_publish` taking an owned `Vec<u8>` body, confirms reported
//! through a `ChannelCallback` (its only way: a semaphore here bounds the unconfirmed), and
//! deliveries read from `basic_consume_rx` and acked with `basic_ack`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use amqprs::callbacks::{ChannelCallback, DefaultChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::measure::Span;
use crate::scenario::{
    BoxError, Broker, CONFIRM_WINDOW, COUNT_POLL, LARGE_PREFETCH, PREFETCH, Plan, RunResult, Scenario,
};

const CONSUMER_TAG: &str = "client-bench";

/// Runs `plan` and measures its timed part.
pub async fn run(plan: &Plan) -> RunResult {
    match plan.scenario {
        Scenario::Publish => publish(plan, None).await,
        Scenario::PublishConfirms => publish(plan, Some(CONFIRM_WINDOW)).await,
        Scenario::PublishConfirmEach => publish(plan, Some(1)).await,
        Scenario::ConsumeAck => consume_ack(plan).await,
        Scenario::Large1Mib => large(plan).await,
    }
}

async fn publish(plan: &Plan, window: Option<usize>) -> RunResult {
    let conn = connect(plan).await?;
    let probe = open_channel(&conn).await?;
    let (channel, confirms) = match window {
        Some(window) => {
            let (channel, confirms) = open_confirm_channel(&conn, window).await?;
            (channel, Some(confirms))
        }
        None => (open_channel(&conn).await?, None),
    };
    declare(&channel, plan).await?;
    let span = Span::start();
    publish_all(&channel, plan, confirms.as_ref()).await?;
    wait_for_count(&probe, plan).await?;
    let sample = span.finish(plan.count);
    channel.queue_delete(QueueDeleteArguments::new(&plan.queue)).await?;
    probe.close().await?;
    channel.close().await?;
    conn.close().await?;
    Ok(sample)
}

async fn consume_ack(plan: &Plan) -> RunResult {
    let conn = connect(plan).await?;
    let channel = open_channel(&conn).await?;
    declare(&channel, plan).await?;
    prefill(&conn, plan).await?;
    channel.basic_qos(BasicQosArguments::new(0, PREFETCH, false)).await?;
    let span = Span::start();
    let (_, mut deliveries) = channel.basic_consume_rx(BasicConsumeArguments::new(&plan.queue, CONSUMER_TAG)).await?;
    for _ in 0..plan.count {
        let message = deliveries.recv().await.ok_or("the consumer ended early")?;
        ack(&channel, &message, 0).await?;
    }
    let sample = span.finish(plan.count);
    channel.basic_cancel(BasicCancelArguments::new(CONSUMER_TAG)).await?;
    channel.queue_delete(QueueDeleteArguments::new(&plan.queue)).await?;
    channel.close().await?;
    conn.close().await?;
    Ok(sample)
}

async fn large(plan: &Plan) -> RunResult {
    let publisher = connect(plan).await?;
    let consumer_conn = connect(plan).await?;
    let channel = open_channel(&publisher).await?;
    let consumer_channel = open_channel(&consumer_conn).await?;
    declare(&channel, plan).await?;
    consumer_channel.basic_qos(BasicQosArguments::new(0, LARGE_PREFETCH, false)).await?;
    let (count, len) = (plan.count, plan.body.len());
    let span = Span::start();
    let (_, mut deliveries) =
        consumer_channel.basic_consume_rx(BasicConsumeArguments::new(&plan.queue, CONSUMER_TAG)).await?;
    let received = tokio::spawn(async move {
        for _ in 0..count {
            let message = deliveries.recv().await.ok_or("the consumer ended early")?;
            ack(&consumer_channel, &message, len).await?;
        }
        Ok::<_, BoxError>(consumer_channel)
    });
    publish_all(&channel, plan, None).await?;
    let consumer_channel = received.await??;
    let sample = span.finish(plan.count);
    consumer_channel.basic_cancel(BasicCancelArguments::new(CONSUMER_TAG)).await?;
    channel.queue_delete(QueueDeleteArguments::new(&plan.queue)).await?;
    consumer_channel.close().await?;
    channel.close().await?;
    consumer_conn.close().await?;
    publisher.close().await?;
    Ok(sample)
}

/// Fills the queue before the timed part, on a channel of its own, in confirm mode.
async fn prefill(conn: &Connection, plan: &Plan) -> Result<(), BoxError> {
    let (channel, confirms) = open_confirm_channel(conn, CONFIRM_WINDOW).await?;
    publish_all(&channel, plan, Some(&confirms)).await?;
    wait_for_count(&channel, plan).await?;
    channel.close().await?;
    Ok(())
}

/// Acks a delivery, checking its body length when `len` is not 0.
async fn ack(channel: &Channel, message: &ConsumerMessage, len: usize) -> Result<(), BoxError> {
    let deliver = message.deliver.as_ref().ok_or("a consumer message without basic.deliver")?;
    let body = message.content.as_ref().map_or(0, Vec::len);
    if len != 0 && body != len {
        return Err(format!("a body of {body} bytes, not {len}").into());
    }
    channel.basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false)).await?;
    Ok(())
}

/// Publishes the plan's count of its body; with `confirms`, never more unconfirmed than its
/// window, and waiting at the end until every publish is confirmed.
async fn publish_all(channel: &Channel, plan: &Plan, confirms: Option<&Confirms>) -> Result<(), BoxError> {
    let args = BasicPublishArguments::new("", &plan.queue);
    for _ in 0..plan.count {
        if let Some(confirms) = confirms {
            confirms.window.acquire().await?.forget();
        }
        // The API takes the body by value: a copy per publish is the price of using it.
        channel.basic_publish(BasicProperties::default(), plan.body.to_vec(), args.clone()).await?;
    }
    if let Some(confirms) = confirms {
        // Cannot truncate: the window is at most CONFIRM_WINDOW.
        drop(confirms.window.acquire_many(confirms.size as u32).await?);
        if confirms.nacked.load(Ordering::Relaxed) {
            return Err("the broker nacked a publish".into());
        }
    }
    Ok(())
}

/// Polls a passive queue.declare until the broker holds the plan's count in its queue.
async fn wait_for_count(probe: &Channel, plan: &Plan) -> Result<(), BoxError> {
    loop {
        let declared = probe.queue_declare(QueueDeclareArguments::new(&plan.queue).passive(true).finish()).await?;
        let (_, messages, _) = declared.ok_or("no queue.declare-ok")?;
        if u64::from(messages) >= plan.count {
            return Ok(());
        }
        tokio::time::sleep(COUNT_POLL).await;
    }
}

async fn declare(channel: &Channel, plan: &Plan) -> Result<(), BoxError> {
    channel.queue_declare(QueueDeclareArguments::new(&plan.queue)).await?;
    Ok(())
}

async fn connect(plan: &Plan) -> Result<Connection, BoxError> {
    let Broker { host, port } = &plan.broker;
    let args = OpenConnectionArguments::new(host, *port, Broker::USER, Broker::PASSWORD)
        .connection_name(&format!("client-bench amqprs {}", plan.scenario))
        .finish();
    let conn = Connection::open(&args).await?;
    conn.register_callback(DefaultConnectionCallback).await?;
    Ok(conn)
}

async fn open_channel(conn: &Connection) -> Result<Channel, BoxError> {
    let channel = conn.open_channel(None).await?;
    channel.register_callback(DefaultChannelCallback).await?;
    Ok(channel)
}

/// A channel in confirm mode whose confirms release permits of a window of `size`.
async fn open_confirm_channel(conn: &Connection, size: usize) -> Result<(Channel, Confirms), BoxError> {
    let channel = conn.open_channel(None).await?;
    let confirms = Confirms { window: Arc::new(Semaphore::new(size)), nacked: Arc::default(), size };
    let callback =
        ConfirmCallback { window: confirms.window.clone(), nacked: confirms.nacked.clone(), tally: Tally::default() };
    channel.register_callback(callback).await?;
    channel.confirm_select(ConfirmSelectArguments::default()).await?;
    Ok((channel, confirms))
}

/// The publisher's side of a confirm window.
struct Confirms {
    /// One permit per publish that may still go out unconfirmed.
    window: Arc<Semaphore>,
    /// A publish was nacked.
    nacked: Arc<AtomicBool>,
    /// The window's size.
    size: usize,
}

/// The callback's side: each ack or nack gives back one permit per publish it settles.
struct ConfirmCallback {
    window: Arc<Semaphore>,
    nacked: Arc<AtomicBool>,
    tally: Tally,
}

#[async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(&mut self, channel: &Channel, close: CloseChannel) -> Result<(), amqprs::error::Error> {
        DefaultChannelCallback.close(channel, close).await
    }

    async fn cancel(&mut self, channel: &Channel, cancel: Cancel) -> Result<(), amqprs::error::Error> {
        DefaultChannelCallback.cancel(channel, cancel).await
    }

    async fn flow(&mut self, channel: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        DefaultChannelCallback.flow(channel, active).await
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let settled = self.tally.settle(ack.delivery_tag(), ack.mutiple());
        self.window.add_permits(settled);
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.nacked.store(true, Ordering::Relaxed);
        let settled = self.tally.settle(nack.delivery_tag(), nack.multiple());
        self.window.add_permits(settled);
    }

    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// Which confirm sequence numbers are settled: all up to `through`, plus those above it
/// settled one by one, so that a `multiple` ack counts only what it newly settles.
#[derive(Default)]
struct Tally {
    through: u64,
    above: BTreeSet<u64>,
}

impl Tally {
    /// Settles `tag` (and, with `multiple`, every tag below it); returns how many are new.
    fn settle(&mut self, tag: u64, multiple: bool) -> usize {
        if tag <= self.through {
            return 0;
        }
        let settled = if multiple {
            let singles = self.above.range(..=tag).count() as u64;
            self.above = self.above.split_off(&(tag + 1));
            let new = tag - self.through - singles;
            self.through = tag;
            new
        } else {
            u64::from(self.above.insert(tag))
        };
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
        settled as usize
    }
}
