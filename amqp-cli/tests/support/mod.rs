//! Running the built `amqp` binary against the real broker: its URI, unique names, and the
//! output of a run with the checks every test makes (exit status, one-sentence errors).
#![allow(dead_code)] // Each test file uses its own part of this module.

pub mod proxy;

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The broker the tests talk to: `AMQP_TEST_ADDR`, or RabbitMQ's default port on loopback.
pub fn uri() -> String {
    format!("amqp://guest:guest@{}/%2f", broker_addr())
}

/// The broker's `host:port`.
pub fn broker_addr() -> String {
    std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}

/// A loopback URI where nothing listens (a port just bound and released).
pub fn dead_uri() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// A name no other test or run uses: `prefix`, the process id, a counter and the clock.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("cli-test-{prefix}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `amqp --uri <the test broker> ARGS...`, with AMQP_URI unset.
pub fn amqp(args: &[&str]) -> Output {
    amqp_with_input(args, b"")
}

/// Runs `amqp ARGS...` with nothing added, for tests that choose the URI themselves.
pub fn amqp_raw(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amqp"));
    command.args(args).env_remove("AMQP_URI").envs(env.iter().copied());
    command.stdin(Stdio::null()).output().expect("the amqp binary runs")
}

/// Runs `amqp --uri <the test broker> ARGS...` with `input` on stdin.
pub fn amqp_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amqp"))
        .arg("--uri")
        .arg(uri())
        .args(args)
        .env_remove("AMQP_URI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the amqp binary runs");
    let mut stdin = child.stdin.take().expect("stdin was piped");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("the amqp binary finishes")
}

/// Stdout of a run that must have succeeded; on failure, says what the command printed.
#[track_caller]
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "amqp failed ({}); is RabbitMQ running (scripts/rabbitmq.sh)?\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// The error sentence of a run that must have failed with `code`: one line on stderr, starting
/// `amqp: `, with no panic, backtrace or Debug dump in it.
#[track_caller]
pub fn fails(output: Output, code: i32) -> String {
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence, not: {stderr}");
    assert!(stderr.starts_with("amqp: "), "{stderr}");
    for debug in ["panicked", "backtrace", "Error {", "Error(", "Some(", "{ code"] {
        assert!(!stderr.contains(debug), "{debug:?} in: {stderr}");
    }
    stderr
}

/// A queue that the broker deletes a minute after its last use, so a failed test leaves
/// nothing behind for long.
pub fn declare_queue(name: &str) {
    ok(amqp(&["declare", "queue", name, "--arg", "x-expires=60000"]));
}
