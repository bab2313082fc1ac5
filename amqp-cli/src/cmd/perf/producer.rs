//! One perf producer on its own connection: stamped bodies to the default exchange as fast as
//! the rate limit, the confirm window and the broker allow. With confirms, a second task
//! awaits each confirm in order and frees one window slot per verdict, so `confirmed` is
//! counted as verdicts arrive, not only when the window is full. With `--verify` each verdict
//! is entered in the ledger under the message's sequence number.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::body::{BodyWriter, Clock};
use super::link::{Link, PerfConfirm, Verdict};
use super::meter::ProducerMeter;
use super::stop::Stop;
use super::verify::Verifier;
use crate::error::CliError;

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
    /// The ledger, with `--verify`.
    pub verifier: Option<Arc<Verifier>>,
}

/// Who a producer is, and where it counts.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Its number, from 0: stamped on its messages.
    pub id: u16,
    /// Its counts.
    pub meter: Arc<ProducerMeter>,
}

/// Publishes until `quota` messages are sent or `stop`, then waits for the outstanding
/// confirms. The connection stays open: the run closes it once the consumers are done,
/// because RabbitMQ may drop a quorum queue's unconfirmed publishes still in flight when
/// their connection closes.
pub async fn run(
    conn: &Link,
    plan: Arc<ProducerPlan>,
    quota: Option<u64>,
    worker: Worker,
    clock: Clock,
    stop: Stop,
) -> Result<(), CliError> {
    let Worker { id, meter } = worker;
    let channel = conn.open_channel().await?;
    let window = match plan.window {
        Some(size) => {
            channel.confirm_select().await?;
            Some(ConfirmWindow::start(size, Tally { id, meter: meter.clone(), plan: plan.clone() }))
        }
        None => None,
    };
    let mut bodies = BodyWriter::new(plan.size);
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
        if let Some(verifier) = &plan.verifier {
            verifier.issue(id, sequence);
        }
        let body = bodies.next(clock.now_ns(), id, sequence);
        let confirm = channel.publish(&plan.queue, body).await?;
        meter.sent.add(1);
        if let Some(window) = &window {
            window.track(sequence, confirm);
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
    pending: mpsc::UnboundedSender<(u64, PerfConfirm)>,
    verdicts: JoinHandle<Result<(), CliError>>,
}

/// Where a producer's verdicts are counted.
struct Tally {
    id: u16,
    meter: Arc<ProducerMeter>,
    plan: Arc<ProducerPlan>,
}

impl ConfirmWindow {
    fn start(size: u32, tally: Tally) -> Self {
        let slots = Arc::new(Semaphore::new(size as usize));
        // Unbounded, but never longer than the window: a slot is taken before each send.
        let (pending, receiver) = mpsc::unbounded_channel();
        let verdicts = tokio::spawn(count_verdicts(receiver, slots.clone(), tally));
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

    fn track(&self, sequence: u64, confirm: PerfConfirm) {
        // The receiver lives until `finish`, which consumes self: this cannot fail.
        let _ = self.pending.send((sequence, confirm));
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
    mut pending: mpsc::UnboundedReceiver<(u64, PerfConfirm)>,
    slots: Arc<Semaphore>,
    tally: Tally,
) -> Result<(), CliError> {
    let Tally { id, meter, plan } = tally;
    while let Some((sequence, confirm)) = pending.recv().await {
        match confirm.wait(&plan.queue).await? {
            Verdict::Ack { resent } => {
                if let Some(verifier) = &plan.verifier {
                    verifier.confirm(id, sequence);
                }
                meter.confirmed.add(1);
                if resent {
                    meter.resent.add(1);
                }
            }
            Verdict::Nack => meter.nacked.add(1),
        }
        slots.add_permits(1);
    }
    Ok(())
}
