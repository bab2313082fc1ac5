//! `amqp get QUEUE`: one message by basic.get, printed as text or JSON, then acked (or
//! requeued with `--requeue`, or taken with no ack at all with `--no-ack`); "queue empty"
//! (JSON `null`) when there is none. An empty queue is not an error.

use std::io::Write;

use clap::Args;

use crate::connect::{Broker, close};
use crate::error::{Action, CliError, Doing};
use crate::message;

/// Arguments of `amqp get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The queue.
    queue: String,
    /// Take the message without acknowledging it: the broker forgets it once sent.
    #[arg(long, conflicts_with = "requeue")]
    no_ack: bool,
    /// Put the message back (basic.reject with requeue): a look that leaves the queue as it was,
    /// except that the message is marked redelivered.
    #[arg(long)]
    requeue: bool,
    /// Print the message as one JSON object (`null` for an empty queue).
    #[arg(long)]
    json: bool,
}

/// Gets, prints, settles.
pub async fn run(broker: &Broker, args: GetArgs) -> Result<(), CliError> {
    let (conn, channel) = broker.channel("get").await?;
    let action = || Action::Get(args.queue.clone());
    let got = channel.basic_get(&args.queue, args.no_ack).await.doing(action)?;
    let mut out = std::io::stdout().lock();
    match &got {
        None if args.json => writeln!(out, "null")?,
        None => writeln!(out, "queue empty")?,
        Some(d) => {
            let remaining = message_count(d);
            if args.json {
                message::write_json(&mut out, d, remaining)?;
            } else {
                message::write_text(&mut out, d, remaining)?;
            }
            out.flush()?;
            // Settle only once the message is shown: a failed write leaves it in the queue.
            if args.requeue {
                d.reject(true).await.doing(action)?;
            } else if !args.no_ack {
                d.ack().await.doing(action)?;
            }
        }
    }
    close(&conn).await
}

/// What basic.get-ok says is left in the queue.
fn message_count(d: &amqp_client::api::Delivery) -> Option<u32> {
    match d.message().method() {
        Ok(amqp_codec::Method::BasicGetOk(ok)) => Some(ok.message_count),
        _ => None,
    }
}
