//! One perf consumer on its own connection: reads each delivery's stamp for its latency (and,
//! with `--verify`, enters it in the ledger) and counts it. With manual acks it acks with
//! `multiple` every half prefetch, and whenever it has caught up with the broker, so a slow
//! trickle is acked at once and a flood in few frames. It runs until its consumer is
//! cancelled (by the run, or by the broker); a recovering one goes on across connection losses.

use std::sync::Arc;

use amqp_client::api::{AckTag, BasicConsumeOptions};

use super::body::{Clock, read_stamp};
use super::link::{Link, PerfChannel, PerfConsumer};
use super::meter::ConsumerMeter;
use super::verify::{ConsumerOrder, Verifier};
use crate::error::CliError;

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
    /// The ledger, with `--verify`.
    pub verifier: Option<Arc<Verifier>>,
}

/// A registered consumer: the run cancels it through `channel` and `tag` to end it.
#[derive(Debug)]
pub struct Started {
    /// Its channel.
    pub channel: PerfChannel,
    /// Its consumer tag.
    pub tag: String,
    consumer: PerfConsumer,
}

/// Opens a channel, sets the prefetch and registers the consumer, so that it is in place
/// before the first message is published.
pub async fn start(conn: &Link, plan: &ConsumerPlan) -> Result<Started, CliError> {
    let channel = conn.open_channel().await?;
    if !plan.autoack && plan.prefetch > 0 {
        channel.qos(plan.prefetch).await?;
    }
    let options = BasicConsumeOptions { no_ack: plan.autoack, ..Default::default() };
    let consumer = channel.consume(&plan.queue, options).await?;
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
    let mut order = ConsumerOrder::default();
    loop {
        let got = match consumer.ready() {
            Some(got) => got,
            None => {
                // Caught up: ack what we hold before waiting, so the broker is never kept
                // waiting on acks we could have sent.
                acks.flush().await?;
                consumer.next().await
            }
        };
        let Some(got) = got else { break };
        let delivery = got.delivery();
        let stamp = read_stamp(delivery.body());
        if let Some(stamp) = stamp {
            meter.record_latency_ns(clock.now_ns().saturating_sub(stamp.sent_at_ns));
        }
        if let Some(verifier) = &plan.verifier {
            match stamp {
                Some(stamp) => verifier.receive(&mut order, stamp.producer, stamp.sequence),
                None => verifier.receive_unstamped(),
            }
        }
        meter.received.add(1);
        if delivery.redelivered() {
            meter.redelivered.add(1);
        }
        if !plan.autoack {
            acks.hold(delivery.tag()).await?;
        }
    }
    acks.flush().await
}

/// Deliveries received but not yet acked.
struct Acks<'a> {
    channel: &'a PerfChannel,
    queue: &'a str,
    every: u64,
    unacked: u64,
    last: Option<AckTag>,
}

impl Acks<'_> {
    async fn hold(&mut self, tag: AckTag) -> Result<(), CliError> {
        // A delivery of a new connection (after a recovery): the held tags of the old one
        // can no longer be acked, and the broker has requeued their deliveries.
        if self.last.is_some_and(|last| last.generation != tag.generation) {
            self.unacked = 0;
        }
        self.unacked += 1;
        self.last = Some(tag);
        if self.unacked >= self.every { self.flush().await } else { Ok(()) }
    }

    /// One basic.ack with multiple=true for everything up to the last delivery.
    async fn flush(&mut self) -> Result<(), CliError> {
        if let Some(tag) = self.last.take() {
            self.unacked = 0;
            self.channel.ack_up_to(tag, self.queue).await?;
        }
        Ok(())
    }
}
