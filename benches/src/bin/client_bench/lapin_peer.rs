//! The scenarios with lapin 4 on tokio, as its README and examples use it: `basic_publish`
//! awaited for each message (it resolves once the frames are written), `PublisherConfirm`
//! futures kept in a window, the `Consumer` read as a `Stream` and each delivery acked.

use std::collections::VecDeque;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};

use crate::measure::Span;
use crate::scenario::{BoxError, CONFIRM_WINDOW, COUNT_POLL, LARGE_PREFETCH, PREFETCH, Plan, RunResult, Scenario};

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
    let channel = conn.create_channel().await?;
    let probe = conn.create_channel().await?;
    declare(&channel, plan).await?;
    if window.is_some() {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    let span = Span::start();
    publish_all(&channel, plan, plan.count, window).await?;
    wait_for_count(&probe, plan).await?;
    let sample = span.finish(plan.count);
    channel.queue_delete(plan.queue.as_str().into(), QueueDeleteOptions::default()).await?;
    conn.close(200, "OK".into()).await?;
    Ok(sample)
}

async fn consume_ack(plan: &Plan) -> RunResult {
    let conn = connect(plan).await?;
    let channel = conn.create_channel().await?;
    declare(&channel, plan).await?;
    prefill(&conn, plan).await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let span = Span::start();
    let mut consumer = consume(&channel, plan).await?;
    for _ in 0..plan.count {
        let delivery = consumer.next().await.ok_or("the consumer ended early")??;
        delivery.ack(BasicAckOptions::default()).await?;
    }
    let sample = span.finish(plan.count);
    channel.basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default()).await?;
    channel.queue_delete(plan.queue.as_str().into(), QueueDeleteOptions::default()).await?;
    conn.close(200, "OK".into()).await?;
    Ok(sample)
}

async fn large(plan: &Plan) -> RunResult {
    let publisher = connect(plan).await?;
    let consumer_conn = connect(plan).await?;
    let channel = publisher.create_channel().await?;
    let consumer_channel = consumer_conn.create_channel().await?;
    declare(&channel, plan).await?;
    consumer_channel.basic_qos(LARGE_PREFETCH, BasicQosOptions::default()).await?;
    let (count, len) = (plan.count, plan.body.len());
    let span = Span::start();
    let mut consumer = consume(&consumer_channel, plan).await?;
    let received = tokio::spawn(async move {
        for _ in 0..count {
            let delivery = consumer.next().await.ok_or("the consumer ended early")??;
            if delivery.data.len() != len {
                return Err(format!("a body of {} bytes, not {len}", delivery.data.len()).into());
            }
            delivery.ack(BasicAckOptions::default()).await?;
        }
        Ok::<_, BoxError>(())
    });
    publish_all(&channel, plan, plan.count, None).await?;
    received.await??;
    let sample = span.finish(plan.count);
    consumer_channel.basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default()).await?;
    channel.queue_delete(plan.queue.as_str().into(), QueueDeleteOptions::default()).await?;
    consumer_conn.close(200, "OK".into()).await?;
    publisher.close(200, "OK".into()).await?;
    Ok(sample)
}

/// Fills the queue before the timed part, on a channel of its own, in confirm mode.
async fn prefill(conn: &Connection, plan: &Plan) -> Result<(), BoxError> {
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    publish_all(&channel, plan, plan.count, Some(CONFIRM_WINDOW)).await?;
    wait_for_count(&channel, plan).await?;
    channel.close(200, "OK".into()).await?;
    Ok(())
}

/// Publishes `count` copies of the plan's body; in confirm mode with at most `window`
/// unconfirmed, waiting for the oldest when the window is full and for the rest at the end.
async fn publish_all(channel: &Channel, plan: &Plan, count: u64, window: Option<usize>) -> Result<(), BoxError> {
    let exchange = ShortString::from("");
    let routing_key = ShortString::from(plan.queue.as_str());
    let publish = || {
        let (exchange, routing_key) = (exchange.clone(), routing_key.clone());
        channel.basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            &plan.body,
            BasicProperties::default(),
        )
    };
    let Some(window) = window else {
        for _ in 0..count {
            // As lapin's README does: outside confirm mode the confirm resolves at once (to
            // NotRequested); dropping it unawaited would queue it for wait_for_confirms instead.
            publish().await?.await?;
        }
        return Ok(());
    };
    let mut pending: VecDeque<PublisherConfirm> = VecDeque::with_capacity(window);
    for _ in 0..count {
        if pending.len() == window
            && let Some(oldest) = pending.pop_front()
        {
            expect_ack(oldest).await?;
        }
        pending.push_back(publish().await?);
    }
    for confirm in pending {
        expect_ack(confirm).await?;
    }
    Ok(())
}

async fn expect_ack(confirm: PublisherConfirm) -> Result<(), BoxError> {
    let confirmation = confirm.await?;
    if confirmation.is_ack() { Ok(()) } else { Err(format!("the broker answered {confirmation:?}, not ack").into()) }
}

/// Polls a passive queue.declare until the broker holds the plan's count in its queue.
async fn wait_for_count(probe: &Channel, plan: &Plan) -> Result<(), BoxError> {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    loop {
        let queue = probe.queue_declare(plan.queue.as_str().into(), passive, FieldTable::default()).await?;
        if u64::from(queue.message_count()) >= plan.count {
            return Ok(());
        }
        tokio::time::sleep(COUNT_POLL).await;
    }
}

async fn declare(channel: &Channel, plan: &Plan) -> Result<(), BoxError> {
    channel.queue_declare(plan.queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await?;
    Ok(())
}

async fn consume(channel: &Channel, plan: &Plan) -> Result<lapin::Consumer, BoxError> {
    let options = BasicConsumeOptions::default();
    Ok(channel.basic_consume(plan.queue.as_str().into(), CONSUMER_TAG.into(), options, FieldTable::default()).await?)
}

async fn connect(plan: &Plan) -> Result<Connection, BoxError> {
    Ok(Connection::connect(&plan.broker.uri(), ConnectionProperties::default()).await?)
}
