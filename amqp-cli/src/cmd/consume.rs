//! `amqp consume QUEUE`: prints deliveries as they come (text, or one JSON object a line)
//! until `--count` are shown, Ctrl-C, or the broker ends the consumer. Each is acked after it
//! is printed (at least once), or before (`--no-ack`: at most once); with a count, no message
//! past it leaves the queue.

use std::io::Write;

use amqp_client::api::{AckTag, BasicConsumeOptions, BasicQosOptions, Channel, Consumer, Delivery};
use amqp_codec::FieldTable;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::connect::{Broker, close};
use crate::error::{Action, CliError, Doing};
use crate::message;

/// The prefetch when none is given: enough to keep a terminal busy without hoarding a queue.
const DEFAULT_PREFETCH: u16 = 100;

/// Arguments of `amqp consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// The queue.
    queue: String,
    /// Stop after this many messages.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Do not ack after printing: messages count as delivered once sent (lost if printing fails).
    #[arg(long)]
    no_ack: bool,
    /// At most this many unacknowledged messages in flight, 0 for no limit [default: 100, or
    /// --count if less]
    #[arg(long)]
    prefetch: Option<u16>,
    /// One JSON object per message and line, the body as text or base64.
    #[arg(long)]
    json: bool,
}

/// Consumes until done, then closes.
pub async fn run(broker: &Broker, args: ConsumeArgs) -> Result<(), CliError> {
    let (conn, channel) = broker.channel("consume").await?;
    let action = || Action::Consume(args.queue.clone());
    let acking = match (args.no_ack, args.count) {
        (false, _) => Acking::AfterPrint,
        (true, None) => Acking::Broker,
        // A no-ack consumer ignores the prefetch: with a count, the broker would push the whole
        // queue and lose every message past the count. Acking on arrival, one at a time, is the
        // same at-most-once, and only `count` messages leave the queue.
        (true, Some(_)) => Acking::BeforePrint,
    };
    let prefetch = match acking {
        Acking::Broker => 0,
        Acking::BeforePrint => 1,
        Acking::AfterPrint => {
            let prefetch = args.prefetch.unwrap_or(DEFAULT_PREFETCH);
            match args.count.map(|n| u16::try_from(n).unwrap_or(u16::MAX)) {
                // 0 is no limit, and a count needs one (see `may_ack`).
                Some(count) if prefetch == 0 => count,
                Some(count) => prefetch.min(count),
                None => prefetch,
            }
        }
    };
    if acking != Acking::Broker {
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.doing(action)?;
    }
    let options = BasicConsumeOptions { no_ack: acking == Acking::Broker, ..Default::default() };
    let mut consumer = channel.basic_consume(&args.queue, options, &FieldTable::new()).await.doing(action)?;
    let progress = args.count.map(progress_bar);
    let mut printer =
        Printer { channel: &channel, args: &args, acking, prefetch: prefetch.into(), progress: progress.as_ref() };
    let shown = printer.print_deliveries(&mut consumer).await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    shown?;
    // Closing the connection returns prefetched, unacked messages to the queue.
    close(&conn).await
}

/// When a delivery is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acking {
    /// The broker's no-ack: never.
    Broker,
    /// Before it is printed: at most once.
    BeforePrint,
    /// After it is printed: at least once.
    AfterPrint,
}

/// What ended the loop.
enum End {
    Done,
    Interrupted,
    ConsumerEnded,
}

struct Printer<'a> {
    channel: &'a Channel,
    args: &'a ConsumeArgs,
    acking: Acking,
    prefetch: u64,
    progress: Option<&'a ProgressBar>,
}

impl Printer<'_> {
    async fn print_deliveries(&mut self, consumer: &mut Consumer) -> Result<(), CliError> {
        let args = self.args;
        let action = || Action::Consume(args.queue.clone());
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut shown = 0u64;
        // Printed but not yet acked (see `may_ack`).
        let mut unacked: Option<AckTag> = None;
        let end = loop {
            if args.count.is_some_and(|n| shown >= n) {
                break End::Done;
            }
            let delivery = tokio::select! {
                d = consumer.next_delivery() => d,
                _ = &mut ctrl_c => break End::Interrupted,
            };
            let Some(d) = delivery else { break End::ConsumerEnded };
            shown += 1;
            let last = args.count == Some(shown);
            if last {
                // After cancel-ok nothing more is delivered, so the ack below cannot draw in
                // a message past the count.
                consumer.cancel().await.doing(action)?;
            }
            if self.acking == Acking::BeforePrint {
                d.ack().await.doing(action)?;
            }
            match self.progress {
                Some(bar) => bar.suspend(|| write(&d, args.json))?,
                None => write(&d, args.json)?,
            }
            if self.acking == Acking::AfterPrint {
                unacked = Some(d.tag());
                if last || self.may_ack(shown) {
                    self.ack_through(&mut unacked).await?;
                }
            }
            if let Some(bar) = self.progress {
                bar.inc(1);
            }
        };
        self.ack_through(&mut unacked).await?;
        match end {
            End::Done | End::Interrupted => Ok(()),
            // The stream ends when the channel closes (say why) or the broker cancels the consumer.
            End::ConsumerEnded => match self.channel.close_reason() {
                Some(error) => Err::<(), amqp_client::Error>(error.into()).doing(action),
                None => Err(CliError::ConsumerCancelled { queue: args.queue.clone() }),
            },
        }
    }

    /// Whether acking the `shown`-th message keeps the broker within the count: each ack lets
    /// it deliver one more, up to `prefetch` past the acked ones, so only the first
    /// `count - prefetch` are acked at once and the rest when the last arrives.
    fn may_ack(&self, shown: u64) -> bool {
        self.args.count.is_none_or(|n| shown + self.prefetch <= n)
    }

    /// One ack with `multiple` for every printed message not yet acked.
    async fn ack_through(&self, unacked: &mut Option<AckTag>) -> Result<(), CliError> {
        match unacked.take() {
            Some(tag) => self.channel.basic_ack(tag, true).await.doing(|| Action::Consume(self.args.queue.clone())),
            None => Ok(()),
        }
    }
}

fn write(d: &Delivery, json: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        message::write_json(&mut out, d, None)?;
    } else {
        message::write_text(&mut out, d, None)?;
    }
    // Flushed per message, so a pipe reader sees each one as it arrives.
    out.flush()?;
    Ok(())
}

fn progress_bar(count: u64) -> ProgressBar {
    let bar = ProgressBar::new(count);
    // Cannot fail: the template is a constant, and valid.
    let style = ProgressStyle::with_template("{pos}/{len} messages {wide_bar} {elapsed}").expect("a valid template");
    bar.set_style(style);
    bar
}
