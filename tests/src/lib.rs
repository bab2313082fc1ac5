//! Support for the workspace's tests against a real RabbitMQ: where the broker is, unique
//! names, and a blocking wire-level connection that speaks frames through `amqp-codec` alone.
//! The tests themselves live in `tests/tests/`, one file per area.

pub mod peer;
pub mod proxy;
pub mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use amqp_codec::{ChannelId, FieldTable, Frame, Method, Parsed, encode_method, parse_frame};
use bytes::BytesMut;

/// The broker the tests talk to: `AMQP_TEST_ADDR`, or RabbitMQ's default port on loopback.
pub fn broker_addr() -> String {
    std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}

/// `amqp://guest:guest@ADDR/%2f` for the test broker.
pub fn uri() -> String {
    format!("amqp://guest:guest@{}/%2f", broker_addr())
}

/// A connection to the test broker and a channel on it, failing loudly without a broker.
pub async fn channel() -> (amqp_client::Connection, amqp_client::Channel) {
    let conn = amqp_client::Connection::connect(&uri()).await.expect("RabbitMQ must be running (scripts/rabbitmq.sh)");
    let ch = conn.open_channel().await.expect("a channel opens");
    (conn, ch)
}

/// Options for a queue of this connection only, gone when it closes.
pub fn exclusive() -> amqp_client::api::QueueDeclareOptions {
    amqp_client::api::QueueDeclareOptions { exclusive: true, ..Default::default() }
}

/// Waits (10 s at most) until `queue` holds `n` ready messages.
pub async fn wait_for_count(ch: &amqp_client::Channel, queue: &str, n: u32) {
    let passive = amqp_client::api::QueueDeclareOptions { passive: true, ..Default::default() };
    for _ in 0..500 {
        let info = ch.queue_declare(queue, passive, &FieldTable::new()).await.expect("the queue exists");
        if info.message_count == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{queue} never held {n} messages");
}

/// A name no other test or run uses: `prefix` plus the process id and a counter.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A blocking TCP connection that sends and receives whole frames. For codec tests only: it
/// makes no protocol decisions beyond what each test scripts.
pub struct WireConn {
    stream: TcpStream,
    inbound: Vec<u8>,
    /// The frame_max used to parse and encode.
    pub frame_max: u32,
}

impl WireConn {
    /// Connects to the broker, failing loudly if it is not there.
    pub fn connect() -> Self {
        let addr = broker_addr();
        let stream = TcpStream::connect(&addr)
            .unwrap_or_else(|e| panic!("RabbitMQ must be running at {addr} (run scripts/rabbitmq.sh): {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
        WireConn { stream, inbound: Vec::new(), frame_max: amqp_codec::FRAME_MIN_SIZE }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// Encodes and sends one method frame.
    pub fn send<'a>(&mut self, channel: u16, method: impl Into<Method<'a>>) {
        let mut out = BytesMut::new();
        encode_method(ChannelId(channel), &method.into(), self.frame_max, &mut out).expect("encodable method");
        self.send_raw(&out);
    }

    /// Reads until one whole frame is in, and hands it to `f` (frames borrow the buffer).
    pub fn recv<T>(&mut self, f: impl FnOnce(Frame<'_>) -> T) -> T {
        loop {
            match parse_frame(&self.inbound, self.frame_max).expect("the broker sends valid frames") {
                Parsed::Complete { consumed, .. } => {
                    let frame_bytes: Vec<u8> = self.inbound.drain(..consumed).collect();
                    let Ok(Parsed::Complete { value, .. }) = parse_frame(&frame_bytes, self.frame_max) else {
                        unreachable!("the same bytes parsed a moment ago")
                    };
                    return f(value);
                }
                Parsed::Incomplete { needed } => {
                    let mut chunk = vec![0; needed.get().max(4096)];
                    let n = self.stream.read(&mut chunk).expect("read from the broker");
                    assert!(n > 0, "the broker closed the socket");
                    self.inbound.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Reads one frame and returns the method's name (`"queue.declare-ok"`), failing on others.
    pub fn recv_method_name(&mut self) -> &'static str {
        self.recv(|frame| match frame.payload {
            amqp_codec::FramePayload::Method(m) => m.name(),
            other => panic!("expected a method, got {other:?}"),
        })
    }
}

/// Runs `rabbitmqctl` with `args` and returns its standard output; panics when it fails, as a
/// test that needs it cannot go on (scripts/rabbitmq.sh installs it).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (scripts/rabbitmq.sh installs it)");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Has the broker close the connections whose client-given name is `name` (320
/// CONNECTION_FORCED, as an operator's `close_connection` does); returns how many it closed.
/// Other tests' connections are left alone.
pub fn close_connections_named(name: &str) -> usize {
    let listing = rabbitmqctl(&["list_connections", "--no-table-headers", "pid", "client_properties"]);
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let pids: Vec<String> = listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "closed by a test"]);
    }
    pids.len()
}
