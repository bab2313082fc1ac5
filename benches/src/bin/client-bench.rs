//! client-bench: the same scenarios with this workspace's client (`ours`), lapin 4 and amqprs 2
//! against a local RabbitMQ, one client at a time in this one process, the clients' order
//! rotated every round; prints the median msg/s, process CPU per message and peak RSS.
//!
//! ```text
//! cargo run --release -p benches --bin client-bench -- [--json] [--rounds N] [--scale F]
//!     [--only CLIENT:SCENARIO]... [--broker HOST:PORT] [--in-task]
//! ```
//!
//! Runs happen on the main thread, in `block_on`; `--in-task` puts each on a spawned task
//! instead, on the runtime's worker threads, where a service's handlers usually run.
//!
//! Each run connects, declares a fresh queue and (for `consume_ack`) fills it, untimed; then
//! times its part alone, and deletes the queue. A publish ends when a passive queue.declare
//! reports every message in the queue, not when the client returns.

#[path = "client_bench/amqprs_peer.rs"]
mod amqprs_peer;
#[path = "client_bench/lapin_peer.rs"]
mod lapin_peer;
#[path = "client_bench/measure.rs"]
mod measure;
#[path = "client_bench/ours.rs"]
mod ours;
#[path = "client_bench/report.rs"]
mod report;
#[path = "client_bench/scenario.rs"]
mod scenario;

use std::process::ExitCode;
use std::time::Duration;

use report::Results;
use scenario::{Broker, Client, Plan, RunResult, Scenario};

/// A run that takes longer has hung: it is reported as failed and the bench goes on.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// A pause between runs, so that the broker has finished the last run's deletes and closes.
const SETTLE: Duration = Duration::from_millis(500);

const USAGE: &str = "usage: client-bench [--json] [--rounds N] [--scale F] [--only CLIENT:SCENARIO]... \
[--broker HOST:PORT] [--in-task]
  CLIENT: ours, lapin, amqprs or *; SCENARIO: publish, publish_confirms, publish_confirm_each,
  consume_ack, large_1mib or *";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Chosen before the runtime starts, while nothing else allocates.
    eprintln!("peak RSS: {}", measure::rss_method());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let results = runtime.block_on(run_all(&args));
    if args.json {
        print!("{}", results.json_lines());
    } else {
        println!(
            "client-bench: {} round(s), scale {}, clients in the same process one at a time (lapin 4.12, amqprs 2.1), runs {}",
            args.rounds,
            args.scale,
            if args.in_task { "on a spawned task" } else { "on the main thread" }
        );
        println!("peak RSS: {}\n", measure::rss_method());
        print!("{}", results.table());
    }
    ExitCode::SUCCESS
}

async fn run_all(args: &Args) -> Results {
    let mut results = Results::default();
    for round in 0..args.rounds {
        for scenario in Scenario::ALL {
            for client in Client::ALL.iter().cycle().skip(round % Client::ALL.len()).take(Client::ALL.len()) {
                if !args.selects(*client, scenario) {
                    continue;
                }
                let plan = Plan::new(*client, scenario, args.scale, &args.broker);
                let run = run_placed(*client, &plan, args.in_task);
                let outcome = match tokio::time::timeout(RUN_TIMEOUT, run).await {
                    Ok(outcome) => outcome.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no result after {RUN_TIMEOUT:?}: hung")),
                };
                let progress = format!("round {}/{} {scenario} {client} x{}", round + 1, args.rounds, plan.count);
                match outcome {
                    Ok(sample) => {
                        eprintln!(
                            "{progress}: {:.0} msg/s, {:.2} µs CPU/msg, {:.1} MiB peak RSS, {:.2} switches/msg",
                            sample.msg_per_s, sample.cpu_us_per_msg, sample.peak_rss_mib, sample.switches_per_msg
                        );
                        results.add(scenario, *client, sample);
                    }
                    Err(error) => {
                        eprintln!("{progress}: FAILED: {error}");
                        if let Err(e) = ours::delete_queue(&plan).await {
                            eprintln!("  and its queue {} was not deleted: {e}", plan.queue);
                        }
                        results.fail(scenario, *client, error);
                    }
                }
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
    results
}

/// One run, on the main thread (in `block_on`, as a small program does) or, with
/// `--in-task`, on a task of the runtime's own threads (as a service's handlers usually run).
async fn run_placed(client: Client, plan: &Plan, in_task: bool) -> RunResult {
    if !in_task {
        return run_one(client, plan).await;
    }
    let plan = plan.clone();
    match tokio::spawn(async move { run_one(client, &plan).await }).await {
        Ok(outcome) => outcome,
        Err(e) => Err(format!("the run's task failed: {e}").into()),
    }
}

async fn run_one(client: Client, plan: &Plan) -> RunResult {
    match client {
        Client::Ours => ours::run(plan).await,
        Client::Lapin => lapin_peer::run(plan).await,
        Client::Amqprs => amqprs_peer::run(plan).await,
    }
}

/// The command line.
struct Args {
    json: bool,
    rounds: usize,
    scale: f64,
    /// (client, scenario) filters; `*` matches any. Empty runs everything.
    only: Vec<(String, String)>,
    /// Each run on a spawned task rather than the main thread.
    in_task: bool,
    broker: Broker,
}

impl Args {
    fn parse(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            json: false,
            rounds: 3,
            scale: 1.0,
            only: Vec::new(),
            in_task: false,
            broker: Broker { host: "127.0.0.1".into(), port: 5672 },
        };
        while let Some(word) = words.next() {
            let mut value = || words.next().ok_or(format!("{word} needs a value"));
            match word.as_str() {
                "--json" => args.json = true,
                "--in-task" => args.in_task = true,
                "--rounds" => args.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
                "--scale" => args.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
                "--only" => args.only.push(parse_only(&value()?)?),
                "--broker" => {
                    let value = value()?;
                    let (host, port) = value.rsplit_once(':').ok_or("--broker wants HOST:PORT")?;
                    let port = port.parse().map_err(|e| format!("--broker port: {e}"))?;
                    args.broker = Broker { host: host.to_owned(), port };
                }
                "-h" | "--help" => return Err("client-bench: ours beside lapin and amqprs".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if args.rounds == 0 || !(args.scale > 0.0 && args.scale.is_finite()) {
            return Err("--rounds must be at least 1 and --scale above 0".into());
        }
        Ok(args)
    }

    fn selects(&self, client: Client, scenario: Scenario) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|(c, s)| (c == "*" || c == client.name()) && (s == "*" || s == scenario.name()))
    }
}

fn parse_only(value: &str) -> Result<(String, String), String> {
    let (client, scenario) = value.split_once(':').ok_or("--only wants CLIENT:SCENARIO")?;
    if client != "*" && !Client::ALL.iter().any(|c| c.name() == client) {
        return Err(format!("--only: no client {client:?}"));
    }
    if scenario != "*" && !Scenario::ALL.iter().any(|s| s.name() == scenario) {
        return Err(format!("--only: no scenario {scenario:?}"));
    }
    Ok((client.to_owned(), scenario.to_owned()))
}
