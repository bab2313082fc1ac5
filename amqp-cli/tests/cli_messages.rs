//! `amqp declare`, `publish`, `get` and `consume` against the real broker: what goes in with
//! flags comes out in text and JSON, and each refusal is one sentence and a non-zero exit.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod support;

use serde_json::Value;
use support::{amqp, amqp_with_input, declare_queue, fails, ok, unique};

fn get_json(queue: &str) -> Value {
    serde_json::from_str(&ok(amqp(&["get", queue, "--json"]))).unwrap()
}

#[test]
fn properties_and_typed_headers_survive_publish_and_get() {
    let q = unique("props");
    declare_queue(&q);
    let out = ok(amqp(&[
        "publish",
        &q,
        "--body",
        "hello",
        "--content-type",
        "text/plain",
        "--persistent",
        "--message-id",
        "m-1",
        "--correlation-id",
        "c-1",
        "--reply-to",
        "replies",
        "--expiration",
        "60000",
        "--priority",
        "3",
        "--type",
        "greeting",
        "--app-id",
        "cli-test",
        "--header",
        "attempt=2",
        "--header",
        "big=5000000000",
        "--header",
        "ok=true",
        "--header",
        "who=bob",
        "--header",
        "zip=\"01234\"",
    ]));
    assert_eq!(out.trim(), "published 1 message (5 bytes), confirmed by the broker");
    let got = get_json(&q);
    assert_eq!(got["body"], "hello");
    assert_eq!(got["body_encoding"], "utf8");
    assert_eq!(got["routing_key"], q.as_str());
    assert_eq!(got["exchange"], "");
    assert_eq!(got["redelivered"], false);
    assert_eq!(got["message_count"], 0);
    let p = &got["properties"];
    assert_eq!(p["content_type"], "text/plain");
    assert_eq!(p["delivery_mode"], 2);
    assert_eq!(p["message_id"], "m-1");
    assert_eq!(p["correlation_id"], "c-1");
    assert_eq!(p["reply_to"], "replies");
    assert_eq!(p["expiration"], "60000");
    assert_eq!(p["priority"], 3);
    assert_eq!(p["type"], "greeting");
    assert_eq!(p["app_id"], "cli-test");
    let h = &p["headers"];
    assert_eq!((h["attempt"].clone(), h["big"].clone()), (Value::from(2), Value::from(5_000_000_000u64)));
    assert_eq!(
        (h["ok"].clone(), h["who"].clone(), h["zip"].clone()),
        (Value::from(true), "bob".into(), "01234".into())
    );
}

#[test]
fn get_prints_text_then_queue_empty_and_json_null() {
    let q = unique("get-text");
    declare_queue(&q);
    ok(amqp(&["publish", &q, "-b", "one line", "--content-type", "text/plain", "--header", "n=1"]));
    let text = ok(amqp(&["get", &q]));
    let mut lines = text.lines();
    let envelope = lines.next().unwrap();
    assert!(envelope.starts_with(&format!("exchange=\"\" routing-key={q:?} delivery-tag=1 redelivered=false size=8")));
    assert!(envelope.contains("content-type=\"text/plain\" headers={n: 1}"), "{envelope}");
    assert_eq!(lines.next(), Some("one line"));
    assert_eq!(ok(amqp(&["get", &q])).trim(), "queue empty");
    assert_eq!(ok(amqp(&["get", &q, "--json"])).trim(), "null");
}

#[test]
fn get_requeue_leaves_the_message_marked_redelivered() {
    let q = unique("requeue");
    declare_queue(&q);
    ok(amqp(&["publish", &q, "-b", "again"]));
    ok(amqp(&["get", &q, "--requeue"]));
    let got = get_json(&q);
    assert_eq!((got["body"].clone(), got["redelivered"].clone()), ("again".into(), true.into()));
}

#[test]
fn bodies_come_from_stdin_and_files_and_binary_shows_as_base64() {
    let q = unique("bodies");
    declare_queue(&q);
    ok(amqp_with_input(&["publish", &q], b"\xff\x00binary"));
    let (a, b) = (std::env::temp_dir().join(unique("a")), std::env::temp_dir().join(unique("b")));
    std::fs::write(&a, "from a").unwrap();
    std::fs::write(&b, "from b").unwrap();
    let out = ok(amqp(&["publish", &q, "--file", a.to_str().unwrap(), "--file", b.to_str().unwrap()]));
    assert_eq!(out.trim(), "published 2 messages (12 bytes), confirmed by the broker");
    let binary = get_json(&q);
    assert_eq!((binary["body"].clone(), binary["body_encoding"].clone()), ("/wBiaW5hcnk=".into(), "base64".into()));
    assert_eq!(get_json(&q)["body"], "from a");
    assert_eq!(get_json(&q)["body"], "from b");
    std::fs::remove_file(a).unwrap();
    std::fs::remove_file(b).unwrap();
}

#[test]
fn consume_count_prints_json_lines_acks_them_and_leaves_the_rest() {
    let q = unique("consume");
    declare_queue(&q);
    for body in ["m1", "m2", "m3"] {
        ok(amqp(&["publish", &q, "-b", body]));
    }
    let out = ok(amqp(&["consume", &q, "--count", "2", "--json"]));
    let bodies: Vec<Value> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["body"].clone()).collect();
    assert_eq!(bodies, ["m1", "m2"]);
    // The third was never delivered (prefetch is capped at the count), so it is not redelivered.
    let third = get_json(&q);
    assert_eq!((third["body"].clone(), third["redelivered"].clone()), ("m3".into(), false.into()));
}

#[test]
fn consume_no_ack_with_a_count_takes_only_that_many() {
    let q = unique("no-ack");
    declare_queue(&q);
    for body in ["a", "b", "c"] {
        ok(amqp(&["publish", &q, "-b", body]));
    }
    let out = ok(amqp(&["consume", &q, "-n", "1", "--no-ack"]));
    assert_eq!(out.lines().nth(1), Some("a"));
    assert_eq!(get_json(&q)["body"], "b");
    assert_eq!(get_json(&q)["body"], "c");
}

#[test]
fn declare_reports_counts_and_checks_existence() {
    let q = unique("declare");
    let out = ok(amqp(&["declare", "queue", &q, "--arg", "x-expires=60000", "--arg", "x-max-length=10"]));
    assert_eq!(out.trim(), format!("queue {q:?} declared: 0 messages, 0 consumers"));
    ok(amqp(&["publish", &q, "-b", "x"]));
    let out = ok(amqp(&["declare", "queue", &q, "--passive"]));
    assert_eq!(out.trim(), format!("queue {q:?} exists: 1 messages, 0 consumers"));
    let error = fails(amqp(&["declare", "queue", &q, "--durable", "--arg", "x-expires=60000"]), 1);
    assert!(error.contains(&format!("cannot declare queue {q:?}")) && error.contains("PRECONDITION_FAILED"), "{error}");
}

#[test]
fn a_quorum_queue_is_declared_durable_with_its_type() {
    let q = unique("quorum");
    ok(amqp(&["declare", "queue", &q, "--type", "quorum", "--arg", "x-expires=60000"]));
    // Declaring it again as a durable quorum queue is equivalent; as classic it is not.
    ok(amqp(&["declare", "queue", &q, "--type", "quorum", "--durable", "--arg", "x-expires=60000"]));
    let error = fails(amqp(&["declare", "queue", &q, "--type", "classic", "--arg", "x-expires=60000"]), 1);
    assert!(error.contains("PRECONDITION_FAILED"), "{error}");
}

#[test]
fn exchanges_are_declared_and_routed_through() {
    let x = unique("topic");
    let out = ok(amqp(&["declare", "exchange", &x, "--type", "topic", "--auto-delete"]));
    assert_eq!(out.trim(), format!("exchange {x:?} (topic) declared"));
    assert_eq!(ok(amqp(&["declare", "exchange", &x, "--passive"])).trim(), format!("exchange {x:?} exists"));
    // Nothing is bound: a mandatory publish comes back, a plain one is dropped silently.
    let error = fails(amqp(&["publish", "a.b", "--exchange", &x, "--mandatory", "-b", "hi"]), 1);
    assert!(
        error.contains(&format!("exchange {x:?} with routing key \"a.b\"")) && error.contains("NO_ROUTE"),
        "{error}"
    );
    ok(amqp(&["publish", "a.b", "--exchange", &x, "-b", "hi"]));
}

#[test]
fn publishing_to_a_missing_exchange_is_the_brokers_not_found() {
    let x = unique("missing-exchange");
    let error = fails(amqp(&["publish", "rk", "-e", &x, "-b", "hi"]), 1);
    assert!(error.contains(&format!("cannot publish to exchange {x:?}")) && error.contains("NOT_FOUND"), "{error}");
}

#[test]
fn a_malformed_header_or_argument_is_a_usage_error() {
    let out = amqp(&["publish", "q", "-b", "x", "--header", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected KEY=VALUE"));
    let out = amqp(&["declare", "queue", "q", "--arg", "=1"]);
    assert_eq!(out.status.code(), Some(2));
}
