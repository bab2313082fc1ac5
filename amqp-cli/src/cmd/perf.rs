//! `amqp perf`: the core of RabbitMQ's PerfTest. N producers and M consumers, each on its own
//! connection, through one queue; a line a second and a summary (text or JSON), and `--plot`.
//! With `--recover` the connections recover by themselves (mq-patterns' recovery); with
//! `--verify` every message is accounted for (lost, duplicated, reordered: see `verify.rs`),
//! after a final drain that waits until the queue is empty and the deliveries have stopped.
//!
//! Why a connection each: this client runs one driver task per connection, and every publish
//! and delivery of that connection passes through it. Producers sharing a connection would
//! queue behind one task and one socket; on their own they spread over the runtime's threads,
//! and RabbitMQ's per-connection flow control throttles each one alone, as PerfTest's default
//! (one connection per producer and per consumer thread) does.

mod body;
mod consumer;
mod link;
pub(crate) mod meter;
mod plot;
mod producer;
mod report;
mod sampler;
mod stop;
mod verify;

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use amqp_client::api::{Channel, Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::core::error::ChannelError;
use amqp_codec::{FieldTable, FieldValue, ReplyCode};
use clap::{Args, ValueEnum, value_parser};
use mq_patterns::recovery::RecoveryStats;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use self::body::{Clock, STAMP_LEN};
use self::consumer::ConsumerPlan;
use self::link::{Link, PerfChannel};
use self::meter::{ConsumerMeter, Meters, ProducerMeter};
use self::producer::{ProducerPlan, Worker};
use self::report::{Settings, Summary};
use self::sampler::{Goal, Sampler};
use self::stop::Stop;
use self::verify::Verifier;
use crate::connect::Broker;
use crate::error::{Action, CliError, Doing};

/// How long producers may take, once told to stop, to collect their outstanding confirms.
const CONFIRM_DRAIN: Duration = Duration::from_secs(10);
/// With `--count`, consumers may catch up after publishing ends for as long as they progress;
/// this long without a delivery ends the wait.
const RECEIVE_STALL: Duration = Duration::from_secs(2);
/// With `--duration`, the run is timed: consumers get this long to catch up, no more.
const RECEIVE_GRACE: Duration = Duration::from_secs(2);
/// How often the catch-up wait looks at the counts.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// The smallest consumer buffer; a larger prefetch raises it to the prefetch.
const MIN_CONSUMER_BUFFER: usize = 256;
/// The consumer buffer when nothing bounds the deliveries in flight (autoack or prefetch 0).
const UNBOUNDED_CONSUMER_BUFFER: usize = 4096;
/// With `--verify`, the drain ends once the queue is empty and no delivery came for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// How often the drain asks the broker how many messages the queue still holds.
const DEPTH_POLL: Duration = Duration::from_millis(250);

/// Arguments of `amqp perf`.
#[derive(Args, Debug)]
pub struct PerfArgs {
    /// Producers, each on its own connection.
    #[arg(short = 'x', long, default_value_t = 1, value_parser = value_parser!(u16).range(1..))]
    producers: u16,
    /// Consumers, each on its own connection (0: publish only).
    #[arg(short = 'y', long, default_value_t = 1)]
    consumers: u16,
    /// Body size in bytes; the first 16 carry the send time, the producer and its sequence number.
    #[arg(short = 's', long, default_value_t = 128, value_parser = value_parser!(u32).range(STAMP_LEN as i64..))]
    size: u32,
    /// At most this many messages a second, per producer.
    #[arg(short = 'r', long, value_parser = value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Publisher confirms, with at most WINDOW unconfirmed messages per producer.
    #[arg(short = 'c', long, value_name = "WINDOW")]
    confirm: Option<NonZeroU32>,
    /// Unacknowledged deliveries per consumer (basic.qos); 0 for no limit.
    #[arg(short = 'q', long, default_value_t = 1000)]
    prefetch: u16,
    /// Automatic acknowledgement: the broker counts a delivery as acked when it sends it.
    #[arg(short = 'a', long)]
    autoack: bool,
    /// The queue type (the x-queue-type argument).
    #[arg(long, value_enum, default_value_t = PerfQueueType::Classic)]
    queue_type: PerfQueueType,
    /// Stop publishing after this long, e.g. 10s, 1m30s. Without it or --count, Ctrl-C stops.
    #[arg(short = 'z', long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after publishing this many messages in all (shared among the producers), and wait
    /// until the consumers have them.
    #[arg(short = 'C', long, value_parser = value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print one JSON summary object on stdout (the per-second lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Draw send/receive rates and latency percentiles per second into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Use this queue, and keep it [default: a new queue, deleted at the end]
    #[arg(short = 'u', long, value_name = "NAME")]
    queue: Option<String>,
    /// Recovering connections (mq-patterns' recovery) for the producers, the consumers and the
    /// setup: a lost connection comes back by itself, on the next --uri in turn, with its
    /// channel, QoS, confirm mode and consumer, and the unconfirmed publishes are sent again.
    /// Without --confirm, publishes in flight when a connection is lost may be lost.
    #[arg(long)]
    recover: bool,
    /// Account for every message by its producer and sequence number, and report: lost (confirmed
    /// with --confirm, else sent, but never received), duplicated (receipts beyond the first),
    /// reordered (first receipts below a later one already received by the same consumer from
    /// the same producer). At the end the consumers drain until the queue is empty and nothing
    /// has arrived for a second, for at most --drain. Expects a queue holding only this run's
    /// messages.
    #[arg(long)]
    verify: bool,
    /// The longest final drain of a --verify run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", value_name = "DURATION")]
    drain: Duration,
}

/// Queue types perf measures (a stream queue needs offsets and manual acks: not here).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfQueueType {
    /// The classic queue, not durable.
    Classic,
    /// A quorum queue (always durable).
    Quorum,
}

impl PerfQueueType {
    fn name(self) -> &'static str {
        match self {
            PerfQueueType::Classic => "classic",
            PerfQueueType::Quorum => "quorum",
        }
    }
}

/// Sets up the queue, runs, tears down, reports.
pub async fn run(broker: &Broker, args: PerfArgs) -> Result<(), CliError> {
    if let Some(path) = &args.plot {
        // Fail now rather than after the whole run.
        std::fs::File::create(path)
            .map_err(|e| CliError::Plot { path: path.clone(), reason: crate::error::os_reason(&e.to_string()) })?;
    }
    // With --recover the setup connection recovers too, so that the drain can watch the queue
    // and the clean-up can delete it after the connections were cut.
    let setup = Link::open(broker, "perf setup", None, args.recover).await?;
    let (queue, ours) = match &args.queue {
        Some(name) => {
            ensure_queue(&setup.connection().await?, name, args.queue_type).await?;
            (name.clone(), false)
        }
        None => {
            let name = unique_queue_name();
            let channel = setup.connection().await?.open_channel().await.doing(|| Action::OpenChannel)?;
            declare(&channel, &name, args.queue_type).await?;
            (name, true)
        }
    };
    let measured = measure(broker, &args, &queue, &setup).await;
    if ours {
        let deleted = match setup.connection().await {
            Ok(conn) => delete(&conn, &queue).await,
            Err(error) => Err(error),
        };
        // The run's own failure says more than a failed clean-up after it.
        if measured.is_ok() {
            deleted?;
        }
    }
    let summary = measured?;
    setup.close().await?;
    report(&args, &summary)
}

fn report(args: &PerfArgs, summary: &Summary) -> Result<(), CliError> {
    if let Some(path) = &args.plot {
        let s = &summary.settings;
        let title = format!(
            "amqp perf: {} producer(s), {} consumer(s), {} B, {} queue",
            s.producers, s.consumers, s.size, s.queue_type
        );
        plot::draw(path, &title, &summary.seconds)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", summary.json())?;
    } else {
        writeln!(out, "{}", summary.text())?;
        if let Some(path) = &args.plot {
            writeln!(out, "plot written to {}", path.display())?;
        }
    }
    Ok(())
}

/// Declares the run's queue.
async fn declare(channel: &Channel, queue: &str, kind: PerfQueueType) -> Result<(), CliError> {
    let mut arguments = FieldTable::new();
    arguments.insert("x-queue-type", FieldValue::from(kind.name()));
    // Quorum queues are always durable; a classic perf queue need not survive anything.
    let options = QueueDeclareOptions { durable: kind == PerfQueueType::Quorum, ..Default::default() };
    channel.queue_declare(queue, options, &arguments).await.doing(|| Action::DeclareQueue(queue.to_owned()))?;
    Ok(())
}

/// Uses the named queue as it is if it exists (whatever its type), or declares it; either way
/// it is kept at the end, since the user named it.
async fn ensure_queue(setup: &Connection, queue: &str, kind: PerfQueueType) -> Result<(), CliError> {
    let channel = setup.open_channel().await.doing(|| Action::OpenChannel)?;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    match channel.queue_declare(queue, passive, &FieldTable::new()).await {
        Ok(_) => return Ok(()),
        Err(amqp_client::Error::Channel(ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, .. })) => {}
        Err(error) => return Err(CliError::Broker { action: Action::DeclareQueue(queue.to_owned()), error }),
    }
    // The 404 closed that channel.
    let channel = setup.open_channel().await.doing(|| Action::OpenChannel)?;
    declare(&channel, queue, kind).await
}

async fn delete(setup: &Connection, queue: &str) -> Result<(), CliError> {
    let channel = setup.open_channel().await.doing(|| Action::OpenChannel)?;
    channel.queue_delete(queue, QueueDeleteOptions::default()).await.doing(|| Action::DeleteQueue(queue.to_owned()))?;
    Ok(())
}

fn unique_queue_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("amqp-perf-{}-{nanos:09}", std::process::id())
}

/// Messages ready in the queue, asked on the setup connection; `None` if it cannot say now
/// (its connection is recovering).
async fn queue_depth(setup: &Link, queue: &str) -> Option<u32> {
    let conn = setup.current()?;
    let ask = async {
        let channel = conn.open_channel().await.ok()?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let info = channel.queue_declare(queue, passive, &FieldTable::new()).await.ok()?;
        let _ = channel.close().await;
        Some(info.message_count)
    };
    tokio::time::timeout(DEPTH_POLL * 4, ask).await.ok().flatten()
}

/// The workers and the phases of a run: publish, collect confirms, let consumers catch up,
/// cancel consumers.
async fn measure(broker: &Broker, args: &PerfArgs, queue: &str, setup: &Link) -> Result<Summary, CliError> {
    let clock = Clock::start();
    let mut meters = Meters::default();
    let verifier = args.verify.then(|| Arc::new(Verifier::new(args.producers)));
    let mut consumers = start_consumers(broker, args, queue, clock, &mut meters, verifier.clone()).await?;
    // Connect every producer before any publishes, so that setup is not measured.
    let mut producer_conns = Vec::new();
    for i in 0..args.producers {
        producer_conns.push(Link::open(broker, &format!("perf producer {i}"), None, args.recover).await?);
    }
    let plan = Arc::new(ProducerPlan {
        queue: queue.to_owned(),
        size: args.size as usize,
        rate: args.rate,
        window: args.confirm.map(NonZeroU32::get),
        verifier: verifier.clone(),
    });
    let goal = match (args.count, args.duration) {
        (Some(n), _) => Goal::Count(n),
        (None, Some(d)) => Goal::Duration(d),
        (None, None) => Goal::Open,
    };
    let mut sampler = Sampler::new(goal, args.json);
    let stop = Stop::default();
    let mut producers = JoinSet::new();
    for (i, conn) in producer_conns.iter().enumerate() {
        let quota = args.count.map(|n| share(n, args.producers, i));
        let meter = Arc::new(ProducerMeter::default());
        meters.producers.push(meter.clone());
        // `i` < `args.producers`, a u16.
        let worker = Worker { id: i as u16, meter };
        let (conn, plan, stop) = (conn.clone(), plan.clone(), stop.clone());
        producers.spawn(async move { producer::run(&conn, plan, quota, worker, clock, stop).await });
    }

    let mut run = Run { meters: &meters, sampler: &mut sampler, failure: None, interrupted: false, queue };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    run.publish(&mut producers, &mut consumers.tasks, args.duration, &mut ctrl_c).await;
    stop.stop();
    let send_end = run.sampler.started.elapsed();
    run.collect_confirms(&mut producers, &mut ctrl_c).await;
    let receive_end = match (args.consumers, args.verify) {
        (0, _) => send_end,
        (_, true) => run.drain(&mut consumers.tasks, setup, args.drain, send_end, &mut ctrl_c).await,
        (_, false) => run.catch_up(&mut consumers.tasks, args.duration.is_some(), send_end, &mut ctrl_c).await,
    };
    let recovery = args.recover.then(|| {
        let links = producer_conns.iter().chain(&consumers.conns).chain([setup]);
        links.filter_map(Link::stats).fold(RecoveryStats::default(), add_stats)
    });
    consumers.cancel(&mut run).await;
    for conn in &producer_conns {
        let _ = conn.close().await;
    }
    let (failure, interrupted) = (run.failure.take(), run.interrupted);
    sampler.finish(&meters);
    if let Some(failure) = failure {
        return Err(failure);
    }
    let sent: Vec<u64> = meters.producers.iter().map(|p| p.sent.get()).collect();
    Ok(Summary {
        settings: settings(args, queue),
        totals: meters.totals(),
        send_secs: send_end.as_secs_f64(),
        receive_secs: receive_end.as_secs_f64(),
        latency: sampler.total,
        seconds: sampler.seconds,
        interrupted,
        verify: verifier.map(|v| v.verdict(&sent, args.confirm.is_some())),
        recovery,
    })
}

fn add_stats(mut sum: RecoveryStats, s: RecoveryStats) -> RecoveryStats {
    sum.disconnects += s.disconnects;
    sum.attempts += s.attempts;
    sum.recoveries += s.recoveries;
    sum.failures += s.failures;
    sum.republished += s.republished;
    sum
}

/// The running consumers, and what it takes to end them.
struct Consumers {
    conns: Vec<Link>,
    cancels: Vec<(PerfChannel, String)>,
    tasks: Workers,
}

/// Connects and registers every consumer before any message is published.
async fn start_consumers(
    broker: &Broker,
    args: &PerfArgs,
    queue: &str,
    clock: Clock,
    meters: &mut Meters,
    verifier: Option<Arc<Verifier>>,
) -> Result<Consumers, CliError> {
    let plan =
        Arc::new(ConsumerPlan { queue: queue.to_owned(), prefetch: args.prefetch, autoack: args.autoack, verifier });
    // The driver stops reading the socket when a consumer's buffer is full: let it hold
    // everything the prefetch lets the broker send.
    let buffer = if args.autoack || args.prefetch == 0 {
        UNBOUNDED_CONSUMER_BUFFER
    } else {
        usize::from(args.prefetch).max(MIN_CONSUMER_BUFFER)
    };
    let mut consumers = Consumers { conns: Vec::new(), cancels: Vec::new(), tasks: JoinSet::new() };
    for i in 0..args.consumers {
        let conn = Link::open(broker, &format!("perf consumer {i}"), Some(buffer), args.recover).await?;
        let started = consumer::start(&conn, &plan).await?;
        consumers.cancels.push((started.channel.clone(), started.tag.clone()));
        let meter = Arc::new(ConsumerMeter::new());
        meters.consumers.push(meter.clone());
        let plan = plan.clone();
        consumers.tasks.spawn(async move { consumer::run(started, &plan, &meter, clock).await });
        consumers.conns.push(conn);
    }
    Ok(consumers)
}

impl Consumers {
    /// Cancels every consumer, lets each ack what it holds, and closes their connections.
    async fn cancel(mut self, run: &mut Run<'_>) {
        for (channel, tag) in &self.cancels {
            channel.cancel(tag).await;
        }
        run.join_consumers(&mut self.tasks).await;
        for conn in &self.conns {
            let _ = conn.close().await;
        }
    }
}

fn settings(args: &PerfArgs, queue: &str) -> Settings {
    Settings {
        queue: queue.to_owned(),
        queue_type: args.queue_type.name(),
        producers: args.producers,
        consumers: args.consumers,
        size: args.size as usize,
        rate: args.rate,
        confirm: args.confirm.map(NonZeroU32::get),
        prefetch: args.prefetch,
        autoack: args.autoack,
        recover: args.recover,
        verify: args.verify,
    }
}

/// Producer `i`'s part of `total` messages: equal shares, the first ones one more.
fn share(total: u64, producers: u16, i: usize) -> u64 {
    let producers = u64::from(producers);
    total / producers + u64::from((i as u64) < total % producers)
}

type Workers = JoinSet<Result<(), CliError>>;

/// A run in progress: what it has seen go wrong, and whether Ctrl-C ended it.
struct Run<'a> {
    meters: &'a Meters,
    sampler: &'a mut Sampler,
    failure: Option<CliError>,
    interrupted: bool,
    queue: &'a str,
}

impl Run<'_> {
    /// Until the duration is up, every producer has its quota, Ctrl-C, or a worker fails.
    async fn publish(
        &mut self,
        producers: &mut Workers,
        consumers: &mut Workers,
        duration: Option<Duration>,
        ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
    ) {
        let deadline = until(duration.map(|d| self.sampler.started + d));
        tokio::pin!(deadline);
        let mut ticks = self.sampler.ticks();
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sampler.sample(self.meters),
                _ = &mut deadline => return,
                joined = producers.join_next() => match joined {
                    Some(result) => {
                        if let Err(e) = flatten(result) {
                            self.failure = Some(e);
                            return;
                        }
                    }
                    None => return,
                },
                Some(joined) = consumers.join_next() => {
                    // No consumer ends on its own while the run goes on.
                    self.failure = Some(flatten(joined).err().unwrap_or(CliError::ConsumerCancelled { queue: self.queue.to_owned() }));
                    return;
                }
                _ = &mut *ctrl_c => {
                    self.interrupted = true;
                    return;
                }
            }
        }
    }

    /// Producers, told to stop, wait for their outstanding confirms; this waits for them.
    async fn collect_confirms(
        &mut self,
        producers: &mut Workers,
        ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
    ) {
        if self.failure.is_some() {
            producers.abort_all();
        }
        let limit = tokio::time::sleep(CONFIRM_DRAIN);
        tokio::pin!(limit);
        let mut ticks = self.sampler.ticks();
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sampler.sample(self.meters),
                joined = producers.join_next() => match joined {
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(result) => {
                        if let (Err(e), None) = (flatten(result), &self.failure) {
                            self.failure = Some(e);
                        }
                    }
                    None => return,
                },
                _ = &mut limit => {
                    producers.abort_all();
                    return;
                }
                _ = &mut *ctrl_c, if !self.interrupted => {
                    self.interrupted = true;
                    producers.abort_all();
                    return;
                }
            }
        }
    }

    /// Waits while consumers are behind and still progressing; returns when the last delivery
    /// was seen, as time since the start.
    async fn catch_up(
        &mut self,
        consumers: &mut Workers,
        timed: bool,
        send_end: Duration,
        ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
    ) -> Duration {
        let started = self.sampler.started;
        let sent = self.meters.totals().sent;
        let mut received = self.meters.totals().received;
        let mut last_progress = Instant::now();
        let mut receive_end = send_end.max(last_progress - started);
        let give_up = last_progress + RECEIVE_GRACE;
        let mut poll = tokio::time::interval(CATCH_UP_POLL);
        let mut ticks = self.sampler.ticks();
        while self.failure.is_none() && !self.interrupted && received < sent {
            tokio::select! {
                _ = ticks.tick() => self.sampler.sample(self.meters),
                _ = poll.tick() => {
                    let now = Instant::now();
                    let latest = self.meters.totals().received;
                    if latest > received {
                        (received, last_progress, receive_end) = (latest, now, now - started);
                    }
                    if now - last_progress > RECEIVE_STALL || (timed && now > give_up) {
                        break;
                    }
                }
                Some(joined) = consumers.join_next() => {
                    self.failure = Some(flatten(joined).err().unwrap_or(CliError::ConsumerCancelled { queue: self.queue.to_owned() }));
                }
                _ = &mut *ctrl_c, if !self.interrupted => self.interrupted = true,
            }
        }
        receive_end
    }

    /// With `--verify`: waits until the queue is empty and no delivery has come for
    /// `DRAIN_QUIET`, or `limit` has passed, so that a message still on its way (re-sent after
    /// a recovery, or requeued from a lost consumer) is not counted lost. Returns when the last
    /// delivery was seen, as time since the start.
    async fn drain(
        &mut self,
        consumers: &mut Workers,
        setup: &Link,
        limit: Duration,
        send_end: Duration,
        ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
    ) -> Duration {
        let started = self.sampler.started;
        let mut received = self.meters.totals().received;
        let mut last_progress = Instant::now();
        let mut receive_end = send_end.max(last_progress - started);
        let give_up = tokio::time::sleep(limit);
        tokio::pin!(give_up);
        let mut poll = tokio::time::interval(DEPTH_POLL);
        let mut ticks = self.sampler.ticks();
        while self.failure.is_none() && !self.interrupted {
            tokio::select! {
                _ = ticks.tick() => self.sampler.sample(self.meters),
                _ = poll.tick() => {
                    let now = Instant::now();
                    let latest = self.meters.totals().received;
                    if latest > received {
                        (received, last_progress, receive_end) = (latest, now, now - started);
                    }
                    if now - last_progress >= DRAIN_QUIET && queue_depth(setup, self.queue).await == Some(0) {
                        break;
                    }
                }
                _ = &mut give_up => break,
                Some(joined) = consumers.join_next() => {
                    self.failure = Some(flatten(joined).err().unwrap_or(CliError::ConsumerCancelled { queue: self.queue.to_owned() }));
                }
                _ = &mut *ctrl_c, if !self.interrupted => self.interrupted = true,
            }
        }
        receive_end
    }

    /// Consumers, cancelled, ack what they hold and end.
    async fn join_consumers(&mut self, consumers: &mut Workers) {
        let joined = tokio::time::timeout(CONFIRM_DRAIN, async {
            while let Some(result) = consumers.join_next().await {
                if let (Err(e), None) = (flatten(result), &self.failure) {
                    self.failure = Some(e);
                }
            }
        });
        if joined.await.is_err() {
            consumers.abort_all();
        }
    }
}

/// A worker's result; a panic in a worker is a panic here.
fn flatten(joined: Result<Result<(), CliError>, JoinError>) -> Result<(), CliError> {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Aborted by the run itself, which knows why.
        Err(_) => Ok(()),
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
