//! One perf consumer on its own connection: reads each delivery's stamp for its latency and
//! counts it. With manual acks it acks with `multiple` every half prefetch, and whenever it has
//! caught up with the broker, so a slow trickle is acked at once and a flood in few frames.
//! It runs until its consumer is cancelled (by the run, or by the broker).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use amqp_client::api::{AckTag, BasicConsumeOptions, BasicQosOptions, Channel, Connection, Consumer, Delivery};
use amqp_codec::FieldTable;
use futures_core::Stream;

use super::body::{Clock, read_stamp};
use super::meter::ConsumerMeter;
use crate::error::{Action, CliError, Doing};

/// Acks per frame when there is no prefetch to halve.
const ACK_EVERY_UNLIMITED: u64 = 1000;

/// What every consumer does.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// The queue.
    pub queue: String,
    /// basic.qos prefetch count; 0 for no limit.
    pub prefetch: u16,
    /// Deliveries count as acked when sent.
    pub autoack: bool,
}

/// A registered consumer: the run cancels it through `channel` and `tag` to end it.
#[derive(Debug)]
pub struct Started {
    /// Its channel.
    pub channel: Channel,
    /// Its consumer tag.
    pub tag: String,
    consumer: Consumer,
}

/// Opens a channel, sets the prefetch and registers the consumer, so that it is in place
/// before the first message is published.
pub async fn start(conn: &Connection, plan: &ConsumerPlan) -> Result<Started, CliError> {
    let action = || Action::Consume(plan.queue.clone());
    let channel = conn.open_channel().await.doing(|| Action::OpenChannel)?;
    if !plan.autoack && plan.prefetch > 0 {
        channel.basic_qos(plan.prefetch, BasicQosOptions::default()).await.doing(|| Action::Qos)?;
    }
    let options = BasicConsumeOptions { no_ack: plan.autoack, ..Default::default() };
    let consumer = channel.basic_consume(&plan.queue, options, &FieldTable::new()).await.doing(action)?;
    Ok(Started { channel, tag: consumer.tag().to_owned(), consumer })
}

/// Receives until the consumer ends, then acks what is left.
pub async fn run(started: Started, plan: &ConsumerPlan, meter: &ConsumerMeter, clock: Clock) -> Result<(), CliError> {
    let Started { channel, mut consumer, .. } = started;
    let mut acks = Acks {
        channel: &channel,
        queue: &plan.queue,
        every: if plan.autoack {
            u64::MAX
        } else if plan.prefetch == 0 {
            ACK_EVERY_UNLIMITED
        } else {
            u64::from(plan.prefetch / 2).max(1)
        },
        unacked: 0,
        last: None,
    };
    loop {
        let delivery = match ready(&mut consumer) {
            Some(delivery) => delivery,
            None => {
                // Caught up: ack what we hold before waiting, so the broker is never kept
                // waiting on acks we could have sent.
                acks.flush().await?;
                consumer.next_delivery().await
            }
        };
        let Some(delivery) = delivery else { break };
        if let Some((sent_at, _)) = read_stamp(delivery.body()) {
            meter.record_latency_ns(clock.now_ns().saturating_sub(sent_at));
        }
        meter.received.add(1);
        if !plan.autoack {
            acks.hold(&delivery).await?;
        }
    }
    acks.flush().await
}

/// Deliveries received but not yet acked.
struct Acks<'a> {
    channel: &'a Channel,
    queue: &'a str,
    every: u64,
    unacked: u64,
    last: Option<AckTag>,
}

impl Acks<'_> {
    async fn hold(&mut self, delivery: &Delivery) -> Result<(), CliError> {
        self.unacked += 1;
        self.last = Some(delivery.tag());
        if self.unacked >= self.every { self.flush().await } else { Ok(()) }
    }

    /// One basic.ack with multiple=true for everything up to the last delivery.
    async fn flush(&mut self) -> Result<(), CliError> {
        if let Some(tag) = self.last.take() {
            self.unacked = 0;
            self.channel.basic_ack(tag, true).await.doing(|| Action::Consume(self.queue.to_owned()))?;
        }
        Ok(())
    }
}

/// The next delivery if one is already here, without waiting (`None` if none is).
fn ready(consumer: &mut Consumer) -> Option<Option<Delivery>> {
    // A no-op waker is enough: when nothing is ready the caller awaits next_delivery, which
    // registers the task's real waker.
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(consumer).poll_next(&mut cx) {
        Poll::Ready(delivery) => Some(delivery),
        Poll::Pending => None,
    }
}
