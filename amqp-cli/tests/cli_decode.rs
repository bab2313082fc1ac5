//! `amqp decode` over recorded traffic: every frame of the pika corpus decodes and re-encodes,
//! credentials stay hidden, and a broken stream is reported with a non-zero exit.
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

mod support;

use std::path::PathBuf;

use support::{amqp_raw, fails, ok, unique};

fn corpus() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../amqp-codec/testdata/pika");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

fn decode(extra: &[&str], files: &[String]) -> std::process::Output {
    let mut args = vec!["decode"];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(String::as_str));
    amqp_raw(&args, &[])
}

#[test]
fn every_frame_of_the_pika_corpus_decodes_and_round_trips() {
    let files = corpus();
    assert_eq!(files.len(), 32);
    let out = ok(decode(&["--roundtrip"], &files));
    assert_eq!(out.lines().last(), Some("files: 32, frames: 8250, failed: 0"));
    assert!(!out.contains(" FAILED: "));
    // A line per frame, plus one per protocol header and the totals.
    let headers = out.lines().filter(|l| l.contains(" protocol-header AMQP 0-9-1")).count();
    assert_eq!(out.lines().count(), 8250 + headers + 1);
}

#[test]
fn lines_show_channel_method_key_fields_and_properties() {
    let out = ok(decode(&[], &corpus()));
    let line =
        |needle: &str| out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle}"));
    assert!(line(" connection.tune-ok ").contains("ch=0 connection.tune-ok channel-max="));
    assert!(line(" queue.declare queue=\"pika.q.quorum\"").contains("durable arguments={x-queue-type: \"quorum\""));
    assert!(line(" basic.publish ").contains("ch=1 basic.publish exchange="));
    assert!(line(" basic.deliver ").contains("delivery-tag="));
    assert!(line("message-id=\"msg-1\"").contains("header body-size=20 content-type=\"application/json\""));
}

#[test]
fn the_login_response_is_never_printed() {
    let out = ok(decode(&[], &corpus()));
    let start_ok: Vec<&str> = out.lines().filter(|l| l.contains("connection.start-ok")).collect();
    assert!(!start_ok.is_empty());
    for l in start_ok {
        assert!(l.contains("response=<") && !l.contains("guest"), "{l}");
    }
}

#[test]
fn a_bad_frame_and_a_missing_file_fail_with_a_count_and_an_exit_code() {
    let bad = std::env::temp_dir().join(unique("bad-frame"));
    // channel.open on channel 1, with 0xcf where the frame end octet 0xce belongs.
    std::fs::write(&bad, b"AMQP\x00\x00\x09\x01\x01\x00\x01\x00\x00\x00\x05\x00\x14\x00\x0a\x00\xcf").unwrap();
    let missing = std::env::temp_dir().join(unique("missing"));
    let files = [bad.display().to_string(), missing.display().to_string()];
    let output = decode(&[], &files);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let error = fails(output, 1);
    assert!(error.contains("2 failure(s)"), "{error}");
    assert!(stdout.contains("@20 FAILED: frame end octet is 0xcf"), "{stdout}");
    assert!(stdout.contains("FAILED: cannot read"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("files: 2, frames: 0, failed: 2"));
    std::fs::remove_file(bad).unwrap();
}
