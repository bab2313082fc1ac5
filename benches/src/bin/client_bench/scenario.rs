//! The clients and scenarios client-bench measures, and the plan of one run: what to send,
//! how much, to which queue. Every client module reads the same plan and these constants,
//! so that no client gets an easier workload.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

/// Unconfirmed publishes at most, in `publish_confirms` (and the prefill of `consume_ack`).
pub const CONFIRM_WINDOW: usize = 1000;
/// basic.qos prefetch of the `consume_ack` consumer.
pub const PREFETCH: u16 = 1000;
/// basic.qos prefetch of the `large_1mib` consumer: 100 MiB in flight at most.
pub const LARGE_PREFETCH: u16 = 100;
/// How often a publish scenario asks the broker how many messages the queue holds.
pub const COUNT_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// A client under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Client {
    /// This workspace's amqp-client.
    Ours,
    /// lapin 4.
    Lapin,
    /// amqprs 2.
    Amqprs,
}

impl Client {
    /// Every client, in the order of the first round.
    pub const ALL: [Client; 3] = [Client::Ours, Client::Lapin, Client::Amqprs];

    /// The name in the output and in `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::Lapin => "lapin",
            Client::Amqprs => "amqprs",
        }
    }
}

/// A workload; its name is fixed, since results are compared across runs by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Publish without confirms; ends when the broker holds every message.
    Publish,
    /// Publish in confirm mode with at most [`CONFIRM_WINDOW`] unconfirmed.
    PublishConfirms,
    /// Publish in confirm mode, waiting for each confirm before the next publish.
    PublishConfirmEach,
    /// Consume a pre-filled queue with prefetch [`PREFETCH`], one basic.ack per message.
    ConsumeAck,
    /// Publish 1 MiB messages on one connection while another consumes and acks them.
    Large1Mib,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 5] = [
        Scenario::Publish,
        Scenario::PublishConfirms,
        Scenario::PublishConfirmEach,
        Scenario::ConsumeAck,
        Scenario::Large1Mib,
    ];

    /// The name in the output and in `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::PublishConfirms => "publish_confirms",
            Scenario::PublishConfirmEach => "publish_confirm_each",
            Scenario::ConsumeAck => "consume_ack",
            Scenario::Large1Mib => "large_1mib",
        }
    }

    /// Messages at `--scale 1`.
    pub fn full_count(self) -> u64 {
        match self {
            Scenario::Publish | Scenario::ConsumeAck => 200_000,
            Scenario::PublishConfirms => 100_000,
            Scenario::PublishConfirmEach => 20_000,
            Scenario::Large1Mib => 500,
        }
    }

    /// Bytes of each message body.
    pub fn body_len(self) -> usize {
        match self {
            Scenario::Large1Mib => 1 << 20,
            _ => 128,
        }
    }
}

/// Where the broker is: plain AMQP, guest/guest, vhost `/`.
#[derive(Clone, Debug)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Broker {
    /// The user every client logs in as.
    pub const USER: &'static str = "guest";
    /// Its password.
    pub const PASSWORD: &'static str = "guest";

    /// The AMQP URI of the default vhost.
    pub fn uri(&self) -> String {
        format!("amqp://{}:{}@{}:{}/%2f", Broker::USER, Broker::PASSWORD, self.host, self.port)
    }
}

/// One run of one scenario by one client.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The workload.
    pub scenario: Scenario,
    /// Messages to move.
    pub count: u64,
    /// The body of every message.
    pub body: Bytes,
    /// A queue no other run uses; the run declares it, and deletes it at the end.
    pub queue: String,
    /// The broker.
    pub broker: Broker,
}

impl Plan {
    /// The plan of `scenario` by `client`, with the message count times `scale`.
    pub fn new(client: Client, scenario: Scenario, scale: f64, broker: &Broker) -> Plan {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let queue = format!(
            "client-bench-{}-{}-{}-{}",
            scenario.name(),
            client.name(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let count = ((scenario.full_count() as f64 * scale).round() as u64).max(1);
        // Not all zeros, so that nothing on the way can shortcut a blank body.
        let body: Bytes = (0..scenario.body_len()).map(|i| (i % 251) as u8).collect();
        Plan { scenario, count, body, queue, broker: broker.clone() }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Any client's error, boxed: the bench reports it and goes on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What each client module's `run` returns.
pub type RunResult = Result<crate::measure::Sample, BoxError>;
