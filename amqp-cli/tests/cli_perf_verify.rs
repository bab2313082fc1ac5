//! `amqp perf --verify`, `--recover` and repeated `--uri` against the real broker. Faults are
//! real: a proxy between `amqp` and RabbitMQ cuts every connection (client and broker both see
//! the socket end, and the broker requeues what was delivered unacked) while the run publishes,
//! and the run must still account for every confirmed message. Duplicates are allowed after a
//! cut and must add up; no assertion is about time or speed (the sleeps only place the cuts
//! inside a run whose rate limit makes it last longer than they do).
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::proxy::CuttingProxy;
use support::{amqp, amqp_raw, dead_uri, declare_queue, fails, ok, unique, uri};

/// `amqp --uri U1 --uri U2 ... perf --json ARGS`: the summary.
fn perf_json(uris: &[String], args: &[&str]) -> Value {
    let all = perf_args(uris, args);
    let out = ok(amqp_raw(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    serde_json::from_str(&out).unwrap()
}

fn perf_args(uris: &[String], args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = uris.iter().flat_map(|u| ["--uri".to_owned(), u.clone()]).collect();
    all.extend(["perf", "--json"].map(str::to_owned));
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

/// Runs perf through `proxy` and cuts every connection after each of `cuts` (from the start),
/// while it runs. Returns the summary and how many connections each cut ended.
fn perf_with_cuts(uris: &[String], args: &[&str], proxy: &CuttingProxy, cuts: &[Duration]) -> (Value, Vec<usize>) {
    let child = Command::new(env!("CARGO_BIN_EXE_amqp"))
        .args(perf_args(uris, args))
        .env_remove("AMQP_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cut = Vec::new();
    let mut slept = Duration::ZERO;
    for &at in cuts {
        std::thread::sleep(at.saturating_sub(slept));
        slept = at;
        cut.push(proxy.cut());
    }
    let out = ok(child.wait_with_output().unwrap());
    (serde_json::from_str(&out).unwrap(), cut)
}

#[track_caller]
fn counts(s: &Value) -> (u64, u64, u64, u64) {
    let v = &s["verify"];
    let get = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("verify.{k} in {s}"));
    (get("lost"), get("duplicated"), get("reordered"), get("foreign"))
}

#[test]
fn a_verified_run_accounts_for_every_confirmed_message_once_and_in_order() {
    let args = ["--verify", "--count", "10000", "--producers", "2", "--consumers", "2", "--confirm", "200"];
    let s = perf_json(&[uri()], &args);
    assert_eq!(
        (s["sent"].clone(), s["confirmed"].clone(), s["received"].clone()),
        (10000.into(), 10000.into(), 10000.into()),
        "{s}"
    );
    assert_eq!(counts(&s), (0, 0, 0, 0), "{s}");
    assert_eq!(s["verify"]["lost_of"], "confirmed");
    assert_eq!(s["settings"]["verify"], true);
    assert_eq!(s["recovery"], Value::Null, "no recovery without --recover: {s}");
}

#[test]
fn without_confirms_lost_counts_the_messages_sent() {
    let s = perf_json(&[uri()], &["--verify", "--count", "3000", "--autoack"]);
    assert_eq!(s["verify"]["lost_of"], "sent", "{s}");
    assert_eq!(counts(&s), (0, 0, 0, 0), "{s}");
    assert_eq!(s["received"], 3000, "{s}");
}

#[test]
fn a_message_another_consumer_takes_is_reported_lost() {
    let q = unique("perf-stolen");
    declare_queue(&q);
    // A second consumer on the queue, which takes one message and leaves: round-robin
    // delivery gives it one of the run's messages, which perf's consumer then never sees.
    let thief = Command::new(env!("CARGO_BIN_EXE_amqp"))
        .args(["--uri", &uri(), "consume", &q, "--count", "1"])
        .env_remove("AMQP_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let attached = (0..200).any(|_| {
        let out = ok(amqp(&["declare", "queue", &q, "--passive"]));
        std::thread::sleep(Duration::from_millis(50));
        out.contains(", 1 consumers")
    });
    assert!(attached, "the other consumer attached");
    let s = perf_json(&[uri()], &["--queue", &q, "--verify", "--count", "1000", "--confirm", "100"]);
    ok(thief.wait_with_output().unwrap());
    assert_eq!(s["confirmed"], 1000, "{s}");
    assert_eq!(s["received"], 999, "{s}");
    assert_eq!(counts(&s), (1, 0, 0, 0), "{s}");
}

#[test]
fn messages_no_producer_of_the_run_sent_are_foreign() {
    let q = unique("perf-strangers");
    declare_queue(&q);
    // Long enough to carry a stamp, whose producer field ("ot" of "not a ...") is no producer
    // of the run; and too short for one.
    ok(amqp(&["publish", &q, "--body", "not a perf message at all"]));
    ok(amqp(&["publish", &q, "--body", "hi"]));
    let s = perf_json(&[uri()], &["--queue", &q, "--verify", "--count", "500", "--confirm", "100"]);
    assert_eq!(s["received"], 502, "{s}");
    assert_eq!(counts(&s), (0, 0, 0, 2), "{s}");
}

#[test]
fn a_recovering_run_whose_connections_are_cut_loses_no_confirmed_message() {
    let proxy = CuttingProxy::start(&support::broker_addr());
    // Two producers at 500 msg/s publish 4000 messages in no less than 4 s: the three cuts
    // fall inside the run, each ending the setup, producer and consumer connections.
    let args = [
        "--recover",
        "--verify",
        "--count",
        "4000",
        "--rate",
        "500",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--confirm",
        "100",
        "--prefetch",
        "50",
    ];
    let cuts = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(3)];
    let (s, cut) = perf_with_cuts(&[proxy.uri()], &args, &proxy, &cuts);
    assert!(cut.iter().all(|&n| n > 0), "every cut ended connections: {cut:?}");

    let r = &s["recovery"];
    let disconnects = r["disconnects"].as_u64().unwrap();
    assert!(disconnects >= 3, "the run saw the cuts: {s}");
    assert_eq!(r["recoveries"], disconnects, "every lost connection came back: {s}");
    assert_eq!(r["failures"], 0, "{s}");

    assert_eq!(
        (s["sent"].clone(), s["confirmed"].clone(), s["nacked"].clone()),
        (4000.into(), 4000.into(), 0.into()),
        "{s}"
    );
    let (lost, duplicated, reordered, foreign) = counts(&s);
    assert_eq!((lost, foreign), (0, 0), "every confirmed message arrived: {s}");
    // Copies (requeued deliveries, re-sent publishes) are allowed, and counted: each receipt
    // is a first one or a copy.
    assert_eq!(s["received"].as_u64().unwrap(), 4000 + duplicated, "{s}");
    assert!(reordered <= 4000, "{s}");
}

#[test]
fn a_lost_recovering_connection_fails_over_to_the_next_uri() {
    let proxy = CuttingProxy::start(&support::broker_addr());
    let args = ["--recover", "--verify", "--count", "2000", "--rate", "500", "--confirm", "50", "--prefetch", "50"];
    // The first URI (the proxy) answers, so every connection starts there; after the cut they
    // come back on the second, the broker itself, and the proxy sees no new connection.
    let (s, cut) = perf_with_cuts(&[proxy.uri(), uri()], &args, &proxy, &[Duration::from_secs(1)]);
    let connections = 3; // setup, one producer, one consumer
    assert_eq!(cut, vec![connections], "{s}");
    assert_eq!(proxy.accepted(), connections, "no reconnection went back to the proxy: {s}");
    assert_eq!(s["recovery"]["recoveries"], connections as u64, "{s}");
    assert_eq!(counts(&s).0, 0, "{s}");
    assert_eq!(s["confirmed"], 2000, "{s}");
}

#[test]
fn the_first_uri_that_answers_is_used() {
    let s = perf_json(&[dead_uri(), uri()], &["--count", "500", "--confirm", "50"]);
    assert_eq!(s["received"], 500, "{s}");
}

#[test]
fn when_no_uri_answers_the_last_one_is_named() {
    let (first, last) = (dead_uri(), dead_uri());
    let error = fails(amqp_raw(&["--uri", &first, "--uri", &last, "get", "q"], &[]), 1);
    let endpoint = &last["amqp://guest:guest@".len()..last.len() - "/%2f".len()];
    assert!(error.contains(&format!("cannot connect to the broker at {endpoint}")), "{error}");
}
