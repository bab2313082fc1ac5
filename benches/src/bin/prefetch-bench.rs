//! prefetch-bench: consume throughput of `mq-patterns`' acking consumer against a local
//! RabbitMQ, for prefetch 1, 10, 100 and 1000 and a handler that takes 0, 1 or 10 ms (a tokio
//! sleep, so "1 ms" is 1 ms or a little more). Prints a table of msg/s and draws it as an SVG.
//!
//! ```text
//! cargo run --release -p benches --bin prefetch-bench -- [--out FILE.svg] [--count N]
//!     [--duration SECS] [--broker HOST:PORT]
//! ```
//!
//! Each cell fills a fresh queue, untimed, then times from basic.qos + basic.consume to the
//! last ack. Its message count is `--count` (default 20000), cut down to what the handler could
//! finish in `--duration` seconds (default 2) if `prefetch` handlers ran at once, so that slow
//! cells stay short: the whole run takes a minute or two.

#[path = "prefetch_bench/chart.rs"]
mod chart;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp_client::api::{BasicPublishOptions, Channel, Connection, Delivery, QueueDeclareOptions};
use amqp_client::codec::{BasicProperties, FieldTable};
use mq_patterns::ack::{AckingConsumer, Action, FailurePolicy};
use tokio::sync::Notify;

const PREFETCH: [u16; 4] = [1, 10, 100, 1000];
const HANDLER_MS: [u64; 3] = [0, 1, 10];
const BODY: &[u8] = &[b'x'; 64];
/// Fewer messages than this measure start-up more than throughput.
const MIN_MESSAGES: u64 = 100;

const USAGE: &str = "usage: prefetch-bench [--out FILE.svg] [--count N] [--duration SECS] [--broker HOST:PORT]";

struct Args {
    out: Option<String>,
    count: u64,
    duration: Duration,
    broker: String,
}

/// One measured cell.
pub struct Cell {
    /// basic.qos prefetch_count, and the handlers run at once.
    pub prefetch: u16,
    /// What each handler call takes.
    pub handler_ms: u64,
    /// Messages consumed.
    pub messages: u64,
    /// From consume to the last ack.
    pub elapsed: Duration,
}

impl Cell {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cells = match runtime.block_on(run_all(&args)) {
        Ok(cells) => cells,
        Err(e) => {
            eprintln!("prefetch-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_table(&cells);
    if let Some(out) = &args.out {
        if let Err(e) = chart::draw(std::path::Path::new(out), &cells) {
            eprintln!("cannot draw {out}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("chart: {out}");
    }
    ExitCode::SUCCESS
}

impl Args {
    fn parse(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args =
            Args { out: None, count: 20_000, duration: Duration::from_secs(2), broker: "127.0.0.1:5672".into() };
        while let Some(word) = words.next() {
            let mut value = || words.next().ok_or(format!("{word} needs a value"));
            match word.as_str() {
                "--out" => args.out = Some(value()?),
                "--count" => args.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
                "--duration" => {
                    let secs: f64 = value()?.parse().map_err(|e| format!("--duration: {e}"))?;
                    args.duration = Duration::try_from_secs_f64(secs).map_err(|e| format!("--duration: {e}"))?;
                }
                "--broker" => args.broker = value()?,
                "-h" | "--help" => return Err("prefetch-bench: consume throughput by prefetch and handler time".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if args.count == 0 || args.duration.is_zero() {
            return Err("--count and --duration must be above 0".into());
        }
        Ok(args)
    }

    /// The cell's message count: `count`, or what `prefetch` handlers of `handler_ms` each
    /// could finish in `duration`, whichever is smaller.
    fn messages(&self, prefetch: u16, handler_ms: u64) -> u64 {
        if handler_ms == 0 {
            return self.count;
        }
        let ideal = self.duration.as_secs_f64() * f64::from(prefetch) * 1000.0 / handler_ms as f64;
        (ideal as u64).clamp(MIN_MESSAGES, self.count.max(MIN_MESSAGES))
    }
}

async fn run_all(args: &Args) -> Result<Vec<Cell>, amqp_client::Error> {
    let conn = Connection::connect(&format!("amqp://guest:guest@{}/%2f", args.broker)).await?;
    let mut cells = Vec::new();
    for prefetch in PREFETCH {
        for handler_ms in HANDLER_MS {
            let messages = args.messages(prefetch, handler_ms);
            let elapsed = run_cell(&conn, prefetch, handler_ms, messages).await?;
            let cell = Cell { prefetch, handler_ms, messages, elapsed };
            eprintln!(
                "prefetch {prefetch:>4}, handler {handler_ms:>2} ms: {messages:>6} msgs in {:>6.2} s = {:>8.0} msg/s",
                elapsed.as_secs_f64(),
                cell.rate()
            );
            cells.push(cell);
        }
    }
    conn.close().await?;
    Ok(cells)
}

/// Fills a fresh queue with `messages`, then consumes them all and returns the time taken.
async fn run_cell(
    conn: &Connection,
    prefetch: u16,
    handler_ms: u64,
    messages: u64,
) -> Result<Duration, amqp_client::Error> {
    let ch = conn.open_channel().await?;
    let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
    let queue = ch.queue_declare("", exclusive, &FieldTable::new()).await?.name;
    fill(&ch, &queue, messages).await?;

    let consuming = conn.open_channel().await?;
    let acked = Arc::new(AtomicU64::new(0));
    let all_acked = Arc::new(Notify::new());
    let (counter, done) = (Arc::clone(&acked), Arc::clone(&all_acked));
    let started = Instant::now();
    let consumer = AckingConsumer::start(consuming.clone(), &queue, prefetch, FailurePolicy::requeue(1))
        .await?
        .on_settled(move |report| {
            if report.action == Action::Acked && counter.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                done.notify_one();
            }
        });
    let tag = consumer.consumer_tag().to_owned();
    let handler_time = Duration::from_millis(handler_ms);
    let running = tokio::spawn(consumer.run(move |_: Delivery| async move {
        if !handler_time.is_zero() {
            tokio::time::sleep(handler_time).await;
        }
        Ok(())
    }));
    all_acked.notified().await;
    let elapsed = started.elapsed();
    consuming.basic_cancel(&tag).await?;
    running.await.map_err(|_| amqp_client::Error::UnexpectedReply("the consumer task panicked"))??;
    consuming.close().await?;
    ch.queue_delete(&queue, Default::default()).await?;
    ch.close().await?;
    Ok(elapsed)
}

/// Publishes `messages` and waits until the queue reports all of them.
async fn fill(ch: &Channel, queue: &str, messages: u64) -> Result<(), amqp_client::Error> {
    let props = BasicProperties::default();
    for _ in 0..messages {
        ch.basic_publish("", queue, BasicPublishOptions::default(), &props, BODY).await?;
    }
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    while u64::from(ch.queue_declare(queue, passive, &FieldTable::new()).await?.message_count) < messages {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn print_table(cells: &[Cell]) {
    print!("{:>8}", "prefetch");
    for ms in HANDLER_MS {
        print!("  {:>14}", format!("handler {ms} ms"));
    }
    println!("   (msg/s)");
    for prefetch in PREFETCH {
        print!("{prefetch:>8}");
        for ms in HANDLER_MS {
            let rate = cells.iter().find(|c| c.prefetch == prefetch && c.handler_ms == ms).map(Cell::rate);
            print!("  {:>14.0}", rate.unwrap_or(f64::NAN));
        }
        println!();
    }
}
