//! The scenarios with this workspace's amqp-client, through its public async API only: a
//! `Bytes` body shared by every publish, `PublishConfirm`s kept in a window, a `Consumer`
//! read with `next_delivery` and each `Delivery` acked.

use std::collections::VecDeque;

use amqp_client::api::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, Channel, Confirmation, Connection, ConnectionOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use amqp_codec::{BasicProperties, FieldTable};
use bytes::Bytes;

use crate::measure::Span;
use crate::scenario::{BoxError, CONFIRM_WINDOW, COUNT_POLL, LARGE_PREFETCH, PREFETCH, Plan, RunResult, Scenario};

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

/// Deletes a queue a failed run left behind.
pub async fn delete_queue(plan: &Plan) -> Result<(), BoxError> {
    let conn = connect(plan, None).await?;
    conn.open_channel().await?.queue_delete(&plan.queue, QueueDeleteOptions::default()).await?;
    conn.close().await?;
    Ok(())
}

async fn publish(plan: &Plan, window: Option<usize>) -> RunResult {
    let conn = connect(plan, None).await?;
    let channel = conn.open_channel().await?;
    let probe = conn.open_channel().await?;
    channel.queue_declare(&plan.queue, QueueDeclareOptions::default(), &FieldTable::new()).await?;
    if window.is_some() {
        channel.confirm_select().await?;
    }
    let span = Span::start();
    publish_all(&channel, &plan.queue, &plan.body, plan.count, window).await?;
    wait_for_count(&probe, &plan.queue, plan.count).await?;
    let sample = span.finish(plan.count);
    channel.queue_delete(&plan.queue, QueueDeleteOptions::default()).await?;
    conn.close().await?;
    Ok(sample)
}

async fn consume_ack(plan: &Plan) -> RunResult {
    // The documented setting: a consumer buffer of at least the prefetch, so that the driver
    // does not stop reading the socket for deliveries the prefetch allows.
    let conn = connect(plan, Some(PREFETCH.into())).await?;
    let channel = conn.open_channel().await?;
    channel.queue_declare(&plan.queue, QueueDeclareOptions::default(), &FieldTable::new()).await?;
    prefill(&conn, plan).await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let span = Span::start();
    let mut consumer = channel.basic_consume(&plan.queue, BasicConsumeOptions::default(), &FieldTable::new()).await?;
    for _ in 0..plan.count {
        let delivery = consumer.next_delivery().await.ok_or("the consumer ended early")?;
        delivery.ack().await?;
    }
    let sample = span.finish(plan.count);
    consumer.cancel().await?;
    channel.queue_delete(&plan.queue, QueueDeleteOptions::default()).await?;
    conn.close().await?;
    Ok(sample)
}

async fn large(plan: &Plan) -> RunResult {
    let publisher = connect(plan, None).await?;
    let consumer_conn = connect(plan, None).await?;
    let channel = publisher.open_channel().await?;
    let consumer_channel = consumer_conn.open_channel().await?;
    channel.queue_declare(&plan.queue, QueueDeclareOptions::default(), &FieldTable::new()).await?;
    consumer_channel.basic_qos(LARGE_PREFETCH, BasicQosOptions::default()).await?;
    let (count, len) = (plan.count, plan.body.len());
    let span = Span::start();
    let mut consumer =
        consumer_channel.basic_consume(&plan.queue, BasicConsumeOptions::default(), &FieldTable::new()).await?;
    let received = tokio::spawn(async move {
        for _ in 0..count {
            let delivery = consumer.next_delivery().await.ok_or("the consumer ended early")?;
            if delivery.body().len() != len {
                return Err(format!("a body of {} bytes, not {len}", delivery.body().len()).into());
            }
            delivery.ack().await?;
        }
        Ok::<_, BoxError>(consumer)
    });
    publish_all(&channel, &plan.queue, &plan.body, plan.count, None).await?;
    let consumer = received.await??;
    let sample = span.finish(plan.count);
    consumer.cancel().await?;
    channel.queue_delete(&plan.queue, QueueDeleteOptions::default()).await?;
    consumer_conn.close().await?;
    publisher.close().await?;
    Ok(sample)
}

/// Fills the queue before the timed part, on a channel of its own, in confirm mode.
async fn prefill(conn: &Connection, plan: &Plan) -> Result<(), BoxError> {
    let channel = conn.open_channel().await?;
    channel.confirm_select().await?;
    publish_all(&channel, &plan.queue, &plan.body, plan.count, Some(CONFIRM_WINDOW)).await?;
    wait_for_count(&channel, &plan.queue, plan.count).await?;
    channel.close().await?;
    Ok(())
}

/// Publishes `count` copies of `body`; in confirm mode with at most `window` unconfirmed,
/// waiting for the oldest when the window is full and for the rest at the end.
async fn publish_all(
    channel: &Channel,
    queue: &str,
    body: &Bytes,
    count: u64,
    window: Option<usize>,
) -> Result<(), BoxError> {
    let properties = BasicProperties::default();
    let options = BasicPublishOptions::default();
    let Some(window) = window else {
        for _ in 0..count {
            channel.basic_publish("", queue, options, &properties, body.clone()).await?;
        }
        return Ok(());
    };
    let mut pending = VecDeque::with_capacity(window);
    for _ in 0..count {
        if pending.len() == window
            && let Some(oldest) = pending.pop_front()
        {
            expect_ack(oldest).await?;
        }
        pending.push_back(channel.basic_publish("", queue, options, &properties, body.clone()).await?);
    }
    for confirm in pending {
        expect_ack(confirm).await?;
    }
    Ok(())
}

async fn expect_ack(confirm: amqp_client::api::PublishConfirm) -> Result<(), BoxError> {
    match confirm.wait().await? {
        Confirmation::Ack => Ok(()),
        other => Err(format!("the broker answered {other:?}, not ack").into()),
    }
}

/// Polls a passive queue.declare until the broker holds `count` messages in `queue`.
async fn wait_for_count(probe: &Channel, queue: &str, count: u64) -> Result<(), BoxError> {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    loop {
        let info = probe.queue_declare(queue, passive, &FieldTable::new()).await?;
        if u64::from(info.message_count) >= count {
            return Ok(());
        }
        tokio::time::sleep(COUNT_POLL).await;
    }
}

/// A connection; `consumer_buffer` where the default (256 deliveries) is below a prefetch.
async fn connect(plan: &Plan, consumer_buffer: Option<usize>) -> Result<Connection, BoxError> {
    let mut options = ConnectionOptions::from_uri(&plan.broker.uri())?
        .connection_name(format!("client-bench ours {}", plan.scenario));
    if let Some(deliveries) = consumer_buffer {
        options = options.consumer_buffer(deliveries);
    }
    Ok(Connection::connect_with(options).await?)
}
