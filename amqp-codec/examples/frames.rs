//! Prints every frame of raw AMQP 0-9-1 byte streams, one line each, and with `--roundtrip`
//! checks that re-encoding each frame gives back its exact bytes (a content header from its
//! decoded properties, so that the property decoder and encoder are what is checked).
//!
//! ```text
//! cargo run --release -p amqp-codec --example frames -- [--roundtrip] FILE...
//! ```
//!
//! A client-to-server stream begins with the protocol header; a server-to-client stream is
//! frames only. Exits non-zero if any frame fails, after a last line
//! `files: N, frames: N, failed: N`.

use std::process::ExitCode;

use amqp_codec::{Frame, FramePayload, Parsed, ProtocolHeader, encode_header, parse_frame};

/// Captured streams may come from any negotiated frame_max, so accept any size the header
/// can announce; the whole file is in memory already.
const ANY_FRAME_MAX: u32 = u32::MAX;

#[derive(Default)]
struct Totals {
    files: usize,
    frames: usize,
    failed: usize,
}

fn main() -> ExitCode {
    let mut roundtrip = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--roundtrip" => roundtrip = true,
            "-h" | "--help" => {
                println!("usage: frames [--roundtrip] FILE...");
                return ExitCode::SUCCESS;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: frames [--roundtrip] FILE...");
        return ExitCode::from(2);
    }
    let mut totals = Totals::default();
    for path in &files {
        totals.files += 1;
        match std::fs::read(path) {
            Ok(bytes) => print_stream(path, &bytes, roundtrip, &mut totals),
            Err(e) => {
                println!("{path}: cannot read: {e}");
                totals.failed += 1;
            }
        }
    }
    println!("files: {}, frames: {}, failed: {}", totals.files, totals.frames, totals.failed);
    if totals.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_stream(path: &str, bytes: &[u8], roundtrip: bool, totals: &mut Totals) {
    let mut at = 0;
    if bytes.starts_with(b"AMQP") {
        match ProtocolHeader::parse(bytes) {
            Ok(Parsed::Complete { value: h, consumed }) => {
                println!("{path}@0 protocol-header AMQP {}-{}-{}", h.major, h.minor, h.revision);
                at = consumed;
            }
            Ok(Parsed::Incomplete { .. }) | Err(_) => {
                println!("{path}@0 FAILED: truncated or bad protocol header");
                totals.failed += 1;
                return;
            }
        }
    }
    while at < bytes.len() {
        let input = &bytes[at..];
        match parse_frame(input, ANY_FRAME_MAX) {
            Ok(Parsed::Complete { value, consumed }) => {
                totals.frames += 1;
                // A header's properties are decoded only on demand; here, always.
                let undecodable = match &value.payload {
                    FramePayload::Header(h) => h.properties().err(),
                    _ => None,
                };
                let mismatch = roundtrip && undecodable.is_none() && !reencodes_exactly(&value, &input[..consumed]);
                let verdict = match undecodable {
                    Some(e) => {
                        format!(" FAILED: {} (at byte {}, reply code {})", e.kind, at + e.offset, e.reply_code())
                    }
                    None if mismatch => " FAILED: re-encodes differently".to_owned(),
                    None => String::new(),
                };
                println!("{path}@{at} {}{verdict}", describe(&value));
                totals.failed += usize::from(!verdict.is_empty());
                at += consumed;
            }
            Ok(Parsed::Incomplete { needed }) => {
                println!("{path}@{at} FAILED: stream ends inside a frame ({needed} more bytes needed)");
                totals.failed += 1;
                return;
            }
            Err(e) => {
                // No way to find the next frame boundary after a bad one: stop this stream.
                println!("{path}@{} FAILED: {} (reply code {})", at + e.offset, e.kind, e.reply_code());
                totals.failed += 1;
                return;
            }
        }
    }
}

fn reencodes_exactly(frame: &Frame<'_>, original: &[u8]) -> bool {
    let mut out = bytes::BytesMut::with_capacity(original.len());
    let encoded = match &frame.payload {
        // A parsed header would write its property bytes back as they came: rebuild it from
        // its decoded properties instead.
        FramePayload::Header(h) => h.properties().is_ok_and(|props| {
            encode_header(frame.channel, &h.with_properties(&props), ANY_FRAME_MAX, &mut out).is_ok()
        }),
        _ => frame.encode(ANY_FRAME_MAX, &mut out).is_ok(),
    };
    encoded && out[..] == *original
}

fn describe(frame: &Frame<'_>) -> String {
    let ch = frame.channel;
    match &frame.payload {
        FramePayload::Method(m) => format!("ch={ch} method {}", m.name()),
        FramePayload::Header(h) => {
            let names = property_names(h.property_flags()).join(",");
            format!("ch={ch} header body-size={} properties=[{names}]", h.body_size)
        }
        FramePayload::Body(b) => format!("ch={ch} body {} bytes", b.len()),
        FramePayload::Heartbeat => format!("ch={ch} heartbeat"),
    }
}

fn property_names(flags: u16) -> Vec<&'static str> {
    amqp_codec::properties::PROPERTY_SPEC
        .iter()
        .enumerate()
        .filter(|(i, _)| flags & (1 << (15 - i)) != 0)
        .map(|(_, (name, _))| *name)
        .collect()
}
