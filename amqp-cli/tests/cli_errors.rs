//! The errors a user meets first: no broker, a wrong password, a missing queue, a bad URI or
//! vhost. Each is one sentence on stderr and a non-zero exit, with no panic or Debug dump.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod support;

use support::{amqp, amqp_raw, fails, unique};

/// A port on loopback where nothing listens: bound by the OS, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn broker_addr() -> String {
    std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}

#[test]
fn a_broker_that_is_down_is_named_with_its_address() {
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    for command in [&["get", "q"][..], &["consume", "q"], &["publish", "q", "-b", "x"], &["declare", "queue", "q"]] {
        let mut args = vec!["--uri", uri.as_str()];
        args.extend_from_slice(command);
        let error = fails(amqp_raw(&args, &[]), 1);
        assert!(error.contains("cannot connect to the broker at 127.0.0.1:") && error.contains("refused"), "{error}");
    }
}

#[test]
fn perf_against_a_broker_that_is_down_fails_the_same_way() {
    let uri = format!("amqp://127.0.0.1:{}", closed_port());
    let error = fails(amqp_raw(&["perf", "--uri", &uri, "--count", "10"], &[]), 1);
    assert!(error.contains("cannot connect to the broker"), "{error}");
}

#[test]
fn the_uri_comes_from_amqp_uri_when_not_given() {
    let uri = format!("amqp://127.0.0.1:{}", closed_port());
    let error = fails(amqp_raw(&["get", "q"], &[("AMQP_URI", &uri)]), 1);
    assert!(error.contains(&uri["amqp://".len()..]), "{error}");
}

#[test]
fn a_wrong_password_is_a_refused_login_for_that_user() {
    let uri = format!("amqp://guest:not-the-password@{}/%2f", broker_addr());
    let error = fails(amqp_raw(&["--uri", &uri, "get", "q"], &[]), 1);
    assert!(error.contains("refused the login of user \"guest\"") && error.contains("password"), "{error}");
    assert!(!error.contains("not-the-password"), "the password is never printed: {error}");
}

#[test]
fn a_missing_vhost_is_the_brokers_refusal() {
    let uri = format!("amqp://guest:guest@{}/{}", broker_addr(), unique("vhost"));
    let error = fails(amqp_raw(&["--uri", &uri, "get", "q"], &[]), 1);
    assert!(error.contains("refused the connection") && error.contains("NOT_ALLOWED"), "{error}");
}

#[test]
fn a_missing_queue_is_not_found_for_get_consume_and_passive_declare() {
    let q = unique("missing");
    for (args, doing) in [
        (vec!["get", q.as_str()], "cannot get a message from queue"),
        (vec!["consume", q.as_str()], "cannot consume from queue"),
        (vec!["declare", "queue", q.as_str(), "--passive"], "cannot declare queue"),
    ] {
        let error = fails(amqp(&args), 1);
        assert!(error.contains(&format!("{doing} {q:?}")) && error.contains("NOT_FOUND"), "{error}");
    }
}

#[test]
fn a_bad_uri_is_a_usage_error_that_hides_the_uri() {
    for uri in ["http://guest:secret@host", "not a uri", "amqp://h?heartbeat=soon"] {
        let error = fails(amqp_raw(&["--uri", uri, "get", "q"], &[]), 2);
        assert!(error.contains("the broker URI (--uri or AMQP_URI) is not valid"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
