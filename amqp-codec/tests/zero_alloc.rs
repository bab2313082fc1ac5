//! Parsing a consumer's stream (basic.deliver, content header with a headers table, body)
//! allocates nothing per frame, and encoding a publish allocates nothing once the output
//! buffer has grown. Counted with an instrumented global allocator; this file holds one test
//! so that no other test thread allocates while it counts.
#![allow(clippy::unwrap_used)] // A test (or example) that fails says where, which is what unwrap does.

use std::alloc::System;

use amqp_codec::method::{BasicDeliver, BasicPublish};
use amqp_codec::table::FieldValueRef;
use amqp_codec::{
    BasicProperties, ChannelId, DeliveryTag, FieldTable, FramePayload, Parsed, Table, encode_content, parse_frame,
};
use bytes::{Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MESSAGES: u64 = 1_000;

fn consumer_stream(headers: &FieldTable) -> BytesMut {
    let mut out = BytesMut::new();
    for tag in 1..=MESSAGES {
        let deliver = BasicDeliver {
            consumer_tag: "ctag-1",
            delivery_tag: DeliveryTag(tag),
            redelivered: false,
            exchange: "",
            routing_key: "bench.queue",
        };
        let props = properties(headers);
        encode_content(ChannelId(1), &deliver, &props, &[0xAB; 128], 131_072, &mut out).unwrap();
    }
    out
}

fn properties(headers: &FieldTable) -> BasicProperties<'_> {
    BasicProperties {
        content_type: Some("application/octet-stream"),
        delivery_mode: Some(2),
        message_id: Some("msg-0001"),
        headers: Some(Table::from(headers)),
        ..Default::default()
    }
}

/// Walks the stream and reads what a consumer reads; returns (frames, a checksum).
fn parse_all(mut input: &[u8]) -> (u64, u64) {
    let (mut frames, mut sum) = (0, 0u64);
    while let Ok(Parsed::Complete { value, consumed }) = parse_frame(input, 131_072) {
        frames += 1;
        match value.payload {
            FramePayload::Method(amqp_codec::Method::BasicDeliver(d)) => sum += d.delivery_tag.0,
            FramePayload::Header(h) => {
                sum += h.body_size;
                if let Some(Table::Raw(headers)) = h.properties().unwrap().headers
                    && let Some(FieldValueRef::I32(n)) = headers.get("attempt")
                {
                    sum += n as u64;
                }
            }
            FramePayload::Body(b) => sum += u64::from(b[0]),
            _ => {}
        }
        input = &input[consumed..];
    }
    (frames, sum)
}

/// The counter is process-wide, and the test harness's own threads allocate now and then
/// (seen under load in CI: 4 allocations during one pass). A per-frame allocation would show
/// in every pass, at least 3,000 times; so the quietest of a few passes is what is measured.
const PASSES: usize = 5;

fn fewest_allocations(mut work: impl FnMut()) -> (usize, usize) {
    (0..PASSES)
        .map(|_| {
            let region = Region::new(GLOBAL);
            work();
            let stats = region.change();
            (stats.allocations, stats.reallocations)
        })
        .min()
        .unwrap_or((usize::MAX, usize::MAX))
}

#[test]
fn parsing_and_encoding_the_hot_path_allocate_nothing_per_frame() {
    let mut headers = FieldTable::new();
    headers.insert("source", "bench");
    headers.insert("attempt", 1i32);
    let stream = consumer_stream(&headers);

    let (frames, sum) = parse_all(&stream);
    assert_eq!(frames, 3 * MESSAGES);
    assert_eq!(sum, MESSAGES * (MESSAGES + 1) / 2 + MESSAGES * (128 + 1 + 0xAB));
    let parse = fewest_allocations(|| {
        std::hint::black_box(parse_all(std::hint::black_box(&stream)));
    });
    assert_eq!(parse, (0, 0), "(allocations, reallocations) parsing {frames} frames");

    let body = Bytes::from_static(&[0x5A; 128]);
    let mut out = BytesMut::with_capacity(4096);
    let publish = BasicPublish { routing_key: "bench.queue", ..Default::default() };
    let encode = fewest_allocations(|| {
        for _ in 0..MESSAGES {
            out.clear();
            encode_content(ChannelId(1), &publish, &properties(&headers), &body, 131_072, &mut out).unwrap();
        }
    });
    assert!(out.len() > 128);
    assert_eq!(encode, (0, 0), "(allocations, reallocations) encoding {MESSAGES} publishes");
}
