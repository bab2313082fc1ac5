//! Real traffic: every frame that pika and RabbitMQ 3.10 exchanged in the recorded streams
//! (testdata/pika, see its README) parses, and re-encodes to exactly the bytes it came from;
//! every content header's properties decode, and encode back to the same bytes.
#![allow(clippy::unwrap_used)] // A test (or example) that fails says where, which is what unwrap does.

use amqp_codec::{FramePayload, Parsed, ProtocolHeader, encode_header, parse_frame};
use std::path::PathBuf;

fn streams() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/pika");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 32, "16 connections, two directions each");
    files
}

#[derive(Default)]
struct Tally {
    frames: usize,
    methods: usize,
    content_methods: usize,
    headers: usize,
    bodies: usize,
    heartbeats: usize,
}

fn round_trip_stream(bytes: &[u8], tally: &mut Tally) {
    let mut input = bytes;
    if input.starts_with(b"AMQP") {
        let Parsed::Complete { value, consumed } = ProtocolHeader::parse(input).unwrap() else {
            panic!("short header")
        };
        assert_eq!(value, ProtocolHeader::AMQP_0_9_1);
        input = &input[consumed..];
    }
    while !input.is_empty() {
        let offset = bytes.len() - input.len();
        let (frame, consumed) = match parse_frame(input, 131_072) {
            Ok(Parsed::Complete { value, consumed }) => (value, consumed),
            other => panic!("frame at byte {offset}: {other:?}"),
        };
        let mut out = bytes::BytesMut::new();
        frame.encode(131_072, &mut out).unwrap();
        assert_eq!(&out[..], &input[..consumed], "frame at byte {offset} ({frame:?}) re-encodes differently");
        tally.frames += 1;
        match frame.payload {
            FramePayload::Method(m) => {
                tally.methods += 1;
                tally.content_methods += usize::from(m.has_content());
            }
            FramePayload::Header(h) => {
                tally.headers += 1;
                // A parsed header re-encodes its property bytes as they came, so the check
                // above does not exercise the property decoder or encoder: this does.
                let props = h.properties().unwrap_or_else(|e| panic!("header at byte {offset}: {e}"));
                let mut out = bytes::BytesMut::new();
                encode_header(frame.channel, &h.with_properties(&props), 131_072, &mut out).unwrap();
                assert_eq!(&out[..], &input[..consumed], "header at byte {offset} ({props:?}) re-encodes differently");
            }
            FramePayload::Body(_) => tally.bodies += 1,
            FramePayload::Heartbeat => tally.heartbeats += 1,
        }
        input = &input[consumed..];
    }
}

#[test]
fn every_recorded_frame_parses_and_re_encodes_byte_for_byte() {
    let mut tally = Tally::default();
    for path in streams() {
        let bytes = std::fs::read(&path).unwrap();
        round_trip_stream(&bytes, &mut tally);
    }
    // Totals from the corpus README's per-stream table (pamqp's independent decode): 2,089
    // publishes + 45 delivers + 27 get-oks + 2 returns carry a header each; body frames
    // 3+10+2027+77+5+1048+56+1; heartbeats 15 c2s + 14 s2c.
    assert_eq!(tally.content_methods, 2_163, "publish, deliver, get-ok and return");
    assert_eq!(tally.headers, tally.content_methods, "one content header per content method");
    assert_eq!(tally.bodies, 3_227, "body frames");
    assert_eq!(tally.heartbeats, 29, "heartbeats");
    assert!(tally.frames == tally.methods + tally.headers + tally.bodies + tally.heartbeats);
}

#[test]
fn recorded_tables_keep_their_types_and_x_death_reads_back() {
    let bytes = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/pika/004.s2c.bin")).unwrap();
    let mut input = &bytes[..];
    let mut x_deaths = 0;
    while let Ok(Parsed::Complete { value, consumed }) = parse_frame(input, 131_072) {
        if let FramePayload::Header(h) = &value.payload
            && let Some(amqp_codec::Table::Raw(headers)) = h.properties().unwrap().headers
            && let Some(amqp_codec::FieldValueRef::Array(deaths)) = headers.get("x-death")
        {
            let first = deaths.iter().next().unwrap();
            let amqp_codec::FieldValueRef::Table(death) = first else { panic!("x-death holds tables") };
            assert!(matches!(death.get("count"), Some(amqp_codec::FieldValueRef::I64(n)) if n >= 1));
            assert!(death.get("reason").and_then(|r| r.as_str()).is_some());
            assert!(matches!(death.get("time"), Some(amqp_codec::FieldValueRef::Timestamp(_))));
            assert!(matches!(death.get("routing-keys"), Some(amqp_codec::FieldValueRef::Array(_))));
            x_deaths += 1;
        }
        input = &input[consumed..];
    }
    assert!(x_deaths > 0, "the consume scenario dead-letters messages");
}
