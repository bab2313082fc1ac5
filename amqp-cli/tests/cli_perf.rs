//! `amqp perf` against the real broker: counted runs deliver every message once, confirms
//! and acks included; the JSON summary has its documented fields; `--plot` writes an SVG.
//! No assertion is about time or speed.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod support;

use serde_json::Value;
use support::{amqp, declare_queue, fails, ok, unique};

fn perf_json(args: &[&str]) -> Value {
    let mut all = vec!["perf", "--json"];
    all.extend_from_slice(args);
    let out = ok(amqp(&all));
    assert_eq!(out.lines().count(), 1, "one JSON object on stdout: {out}");
    serde_json::from_str(&out).unwrap()
}

#[track_caller]
fn assert_latency_ordered(summary: &Value) {
    let l = &summary["latency_us"];
    let (p50, p95, p99) = (l["p50"].as_u64().unwrap(), l["p95"].as_u64().unwrap(), l["p99"].as_u64().unwrap());
    assert!(p50 <= p95 && p95 <= p99, "{l}");
}

#[test]
fn a_counted_run_with_confirms_receives_every_message() {
    let s = perf_json(&["--count", "20000", "--confirm", "1000", "--prefetch", "500"]);
    assert_eq!(s["sent"], 20000, "{s}");
    assert_eq!(s["confirmed"], 20000, "{s}");
    assert_eq!(s["nacked"], 0, "{s}");
    assert_eq!(s["received"], 20000, "{s}");
    assert!(s["send_rate"].as_f64().unwrap() > 0.0 && s["receive_rate"].as_f64().unwrap() > 0.0, "{s}");
    assert_latency_ordered(&s);
    assert_eq!(s["settings"]["confirm"], 1000);
    assert_eq!(s["interrupted"], false);
}

#[test]
fn several_producers_and_consumers_share_a_count_on_a_quorum_queue_with_autoack() {
    let s = perf_json(&[
        "--count",
        "5001",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--autoack",
        "--queue-type",
        "quorum",
        "--size",
        "64",
    ]);
    assert_eq!(
        (s["sent"].clone(), s["received"].clone(), s["confirmed"].clone()),
        (5001.into(), 5001.into(), 0.into())
    );
    assert_eq!(s["settings"]["queue_type"], "quorum");
    assert_latency_ordered(&s);
}

#[test]
fn a_timed_rate_limited_run_stops_by_itself_and_reports_each_second() {
    let s = perf_json(&["--duration", "2s", "--rate", "300", "--confirm", "50", "--prefetch", "1"]);
    let sent = s["sent"].as_u64().unwrap();
    assert!(sent > 0 && s["received"].as_u64().unwrap() <= sent, "{s}");
    let seconds = s["seconds"].as_array().unwrap();
    assert!(!seconds.is_empty(), "{s}");
    assert!(seconds.iter().all(|second| second["sent"].as_f64().is_some()), "{s}");
}

#[test]
fn the_text_report_has_a_summary_and_the_plot_is_an_svg() {
    let svg = std::env::temp_dir().join(format!("{}.svg", unique("plot")));
    let out =
        ok(amqp(&["perf", "--count", "3000", "--rate", "1500", "--confirm", "100", "--plot", svg.to_str().unwrap()]));
    assert!(out.lines().any(|l| l.starts_with("summary: 1 producer(s), 1 consumer(s), 128 B bodies")), "{out}");
    assert!(out.contains("sent 3000 in ") && out.contains("received 3000 in "), "{out}");
    assert!(out.contains("plot written to "), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"), "not an SVG document");
    assert!(text.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.contains("Throughput") && text.contains("Latency"));
    assert!(text.contains("<polyline"), "no line was drawn");
    std::fs::remove_file(svg).unwrap();
}

#[test]
fn a_named_queue_is_used_and_kept() {
    let q = unique("perf-named");
    declare_queue(&q);
    let s = perf_json(&["--queue", &q, "--count", "1000", "--confirm", "100"]);
    assert_eq!(s["received"], 1000, "{s}");
    assert_eq!(s["settings"]["queue"], q.as_str());
    let out = ok(amqp(&["declare", "queue", &q, "--passive"]));
    assert!(out.contains("exists: 0 messages"), "{out}");
}

#[test]
fn a_body_too_small_for_the_stamp_is_a_usage_error() {
    let out = amqp(&["perf", "--size", "8", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unwritable_plot_is_one_sentence() {
    let dir = std::env::temp_dir().join(unique("no-such-dir"));
    let svg = dir.join("plot.svg");
    let error = fails(amqp(&["perf", "--count", "100", "--plot", svg.to_str().unwrap()]), 1);
    assert!(error.contains("cannot write the plot"), "{error}");
}
