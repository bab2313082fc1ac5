//! `amqp perf`: the core of RabbitMQ's PerfTest. N producers and M consumers, each on its own
//! connection, through one queue; a line a second and a summary (text or JSON), and `--plot`.
//!
//! Why a connection each: this client runs one driver task per connection, and every publish
//! and delivery of that connection passes through it. Producers sharing a connection would
//! queue behind one task and one socket; on their own they spread over the runtime's threads,
//! and RabbitMQ's per-connection flow control throttles each one alone, as PerfTest's default
//! (one connection per producer and per consumer thread) does.

mod body;
mod consumer;
pub(crate) mod meter;
mod plot;
mod producer;
mod report;
mod sampler;
mod stop;

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use amqp_client::api::{Channel, Connection, QueueDeclareOptions, QueueDeleteOptions};
use amqp_client::core::error::ChannelError;
use amqp_codec::{FieldTable, FieldValue, ReplyCode};
use clap::{Args, ValueEnum, value_parser};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use self::body::{Clock, STAMP_LEN};
use self::consumer::ConsumerPlan;
use self::meter::{ConsumerMeter, Meters, ProducerMeter};
use self::producer::ProducerPlan;
use self::report::{Settings, Summary};
use self::sampler::{Goal, Sampler};
use self::stop::Stop;
use crate::connect::{Broker, close};
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

/// Arguments of `amqp perf`.
#[derive(Args, Debug)]
pub struct PerfArgs {
    /// Producers, each on its own connection.
    #[arg(short = 'x', long, default_value_t = 1, value_parser = value_parser!(u16).range(1..))]
    producers: u16,
    /// Consumers, each on its own connection (0: publish only).
    #[arg(short = 'y', long, default_value_t = 1)]
    consumers: u16,
    /// Body size in bytes; the first 16 carry the send time and a sequence number.
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
    let setup = broker.connect("perf setup").await?;
    let (queue, ours) = match &args.queue {
        Some(name) => {
            ensure_queue(&setup, name, args.queue_type).await?;
            (name.clone(), false)
        }
        None => {
            let name = unique_queue_name();
            let channel = setup.open_channel().await.doing(|| Action::OpenChannel)?;
            declare(&channel, &name, args.queue_type).await?;
            (name, true)
        }
    };
    let measured = measure(broker, &args, &queue).await;
    if ours {
        let deleted = delete(&setup, &queue).await;
        // The run's own failure says more than a failed clean-up after it.
        if measured.is_ok() {
            deleted?;
        }
    }
    let summary = measured?;
    close(&setup).await?;
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

/// The workers and the phases of a run: publish, collect confirms, let consumers catch up,
/// cancel consumers.
async fn measure(broker: &Broker, args: &PerfArgs, queue: &str) -> Result<Summary, CliError> {
    let clock = Clock::start();
    let mut meters = Meters::default();
    let mut consumers = start_consumers(broker, args, queue, clock, &mut meters).await?;
    // Connect every producer before any publishes, so that setup is not measured.
    let mut producer_conns = Vec::new();
    for i in 0..args.producers {
        producer_conns.push(broker.connect(&format!("perf producer {i}")).await?);
    }
    let plan = Arc::new(ProducerPlan {
        queue: queue.to_owned(),
        size: args.size as usize,
        rate: args.rate,
        window: args.confirm.map(NonZeroU32::get),
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
        let (conn, plan, stop) = (conn.clone(), plan.clone(), stop.clone());
        producers.spawn(async move { producer::run(&conn, plan, quota, meter, clock, stop).await });
    }

    let mut run = Run { meters: &meters, sampler: &mut sampler, failure: None, interrupted: false, queue };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    run.publish(&mut producers, &mut consumers.tasks, args.duration, &mut ctrl_c).await;
    stop.stop();
    let send_end = run.sampler.started.elapsed();
    run.collect_confirms(&mut producers, &mut ctrl_c).await;
    let receive_end = match args.consumers {
        0 => send_end,
        _ => run.catch_up(&mut consumers.tasks, args.duration.is_some(), send_end, &mut ctrl_c).await,
    };
    consumers.cancel(&mut run).await;
    for conn in &producer_conns {
        let _ = conn.close().await;
    }
    let (failure, interrupted) = (run.failure.take(), run.interrupted);
    sampler.finish(&meters);
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Summary {
        settings: settings(args, queue),
        totals: meters.totals(),
        send_secs: send_end.as_secs_f64(),
        receive_secs: receive_end.as_secs_f64(),
        latency: sampler.total,
        seconds: sampler.seconds,
        interrupted,
    })
}

/// The running consumers, and what it takes to end them.
struct Consumers {
    conns: Vec<Connection>,
    cancels: Vec<(Channel, String)>,
    tasks: Workers,
}

/// Connects and registers every consumer before any message is published.
async fn start_consumers(
    broker: &Broker,
    args: &PerfArgs,
    queue: &str,
    clock: Clock,
    meters: &mut Meters,
) -> Result<Consumers, CliError> {
    let plan = Arc::new(ConsumerPlan { queue: queue.to_owned(), prefetch: args.prefetch, autoack: args.autoack });
    // The driver stops reading the socket when a consumer's buffer is full: let it hold
    // everything the prefetch lets the broker send.
    let buffer = if args.autoack || args.prefetch == 0 {
        UNBOUNDED_CONSUMER_BUFFER
    } else {
        usize::from(args.prefetch).max(MIN_CONSUMER_BUFFER)
    };
    let mut consumers = Consumers { conns: Vec::new(), cancels: Vec::new(), tasks: JoinSet::new() };
    for i in 0..args.consumers {
        let conn = broker.connect_with(&format!("perf consumer {i}"), Some(buffer)).await?;
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
            // A channel the broker already closed has no consumer left to cancel.
            let _ = channel.basic_cancel(tag).await;
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
