//! One perf producer on its own connection: stamped bodies to the default exchange as fast as
//! the rate limit, the confirm window and the broker allow. With confirms, a second task
//! awaits each confirm in order and frees one window slot per verdict, so `confirmed` is
//! counted as verdicts arrive, not only when the window is full.

use std::sync::Arc;
use std::time::Duration;

use amqp_client::api::{BasicPublishOptions, Confirmation, Connection, PublishConfirm};
use amqp_codec::BasicProperties;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::body::{BodyWriter, Clock};
use super::meter::ProducerMeter;
use super::stop::Stop;
use crate::error::{Action, CliError, Doing};

/// What every producer does.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// The queue, published to through the default exchange.
    pub queue: String,
    /// Body size in bytes.
    pub size: usize,
    /// At most this many messages a second, if limited.
    pub rate: Option<u32>,
    /// At most this many unconfirmed publishes, in confirm mode.
    pub window: Option<u32>,
}

/// Publishes until `quota` messages are sent or `stop`, then waits for the outstanding
/// confirms. The connection stays open: the run closes it once the consumers are done,
/// because RabbitMQ may drop a quorum queue's unconfirmed publishes still in flight when
/// their connection closes.
pub async fn run(
    conn: &Connection,
    plan: Arc<ProducerPlan>,
    quota: Option<u64>,
    meter: Arc<ProducerMeter>,
    clock: Clock,
    stop: Stop,
) -> Result<(), CliError> {
    let action = || Action::Publish { exchange: String::new(), routing_key: plan.queue.clone() };
    let channel = conn.open_channel().await.doing(|| Action::OpenChannel)?;
    let window = match plan.window {
        Some(size) => {
            channel.confirm_select().await.doing(|| Action::ConfirmSelect)?;
            Some(ConfirmWindow::start(size, meter.clone(), action()))
        }
        None => None,
    };
    let mut bodies = BodyWriter::new(plan.size);
    let properties = BasicProperties::default();
    let options = BasicPublishOptions::default();
    let pace = plan.rate.map(|rate| Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let started = Instant::now();
    let mut sequence = 0u64;
    while quota.is_none_or(|q| sequence < q) && !stop.is_stopped() {
        if let Some(every) = pace {
            // The schedule is absolute, so a late wake-up is made up by the next messages.
            let due = started + every.mul_f64(sequence as f64);
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.stopped() => break,
                }
            }
        }
        if let Some(window) = &window
            && !window.acquire(&stop).await
        {
            break;
        }
        let body = bodies.next(clock.now_ns(), sequence);
        let confirm = channel.basic_publish("", &plan.queue, options, &properties, body).await.doing(action)?;
        meter.sent.add(1);
        if let Some(window) = &window {
            window.track(confirm);
        }
        sequence += 1;
    }
    if let Some(window) = window {
        window.finish().await?;
    }
    Ok(())
}

/// At most `size` publishes awaiting their confirm, and a task that counts the verdicts.
struct ConfirmWindow {
    slots: Arc<Semaphore>,
    pending: mpsc::UnboundedSender<PublishConfirm>,
    verdicts: JoinHandle<Result<(), CliError>>,
}

impl ConfirmWindow {
    fn start(size: u32, meter: Arc<ProducerMeter>, action: Action) -> Self {
        let slots = Arc::new(Semaphore::new(size as usize));
        // Unbounded, but never longer than the window: a slot is taken before each send.
        let (pending, receiver) = mpsc::unbounded_channel();
        let verdicts = tokio::spawn(count_verdicts(receiver, slots.clone(), meter, action));
        ConfirmWindow { slots, pending, verdicts }
    }

    /// Takes a slot, waiting while the window is full; false if `stop` came first.
    async fn acquire(&self, stop: &Stop) -> bool {
        // The common case costs one compare-and-swap, without registering any waiter.
        if let Ok(permit) = self.slots.try_acquire() {
            permit.forget();
            return true;
        }
        tokio::select! {
            permit = self.slots.acquire() => {
                // The semaphore is never closed, so acquire only fails if it were.
                permit.map(|p| p.forget()).is_ok()
            }
            _ = stop.stopped() => false,
        }
    }

    fn track(&self, confirm: PublishConfirm) {
        // The receiver lives until `finish`, which consumes self: this cannot fail.
        let _ = self.pending.send(confirm);
    }

    /// Waits for the verdict on every tracked publish.
    async fn finish(self) -> Result<(), CliError> {
        drop(self.pending);
        match self.verdicts.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels it: nothing is left to report to.
            Err(_) => Ok(()),
        }
    }
}

async fn count_verdicts(
    mut pending: mpsc::UnboundedReceiver<PublishConfirm>,
    slots: Arc<Semaphore>,
    meter: Arc<ProducerMeter>,
    action: Action,
) -> Result<(), CliError> {
    while let Some(confirm) = pending.recv().await {
        match confirm.wait().await {
            Ok(Confirmation::Ack) => meter.confirmed.add(1),
            // Perf publishes are not mandatory, so no return comes; count one as a refusal.
            Ok(Confirmation::Nack | Confirmation::Returned(_)) => meter.nacked.add(1),
            // NotRequested cannot come: the window exists only in confirm mode.
            Ok(_) => {}
            Err(error) => return Err(CliError::Broker { action, error }),
        }
        slots.add_permits(1);
    }
    Ok(())
}
