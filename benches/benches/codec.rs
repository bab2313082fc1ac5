//! Codec throughput beside amq-protocol 10.6.3 (lapin's codec) and beside the ceiling, the
//! least work any codec must do: a consumer's and a publisher's stream of 128-byte messages
//! parsed frame by frame, and one publisher's message encoded from its parts.
//! Before the groups run, it checks that both codecs agree on the inputs and prints the
//! allocations each makes per frame, counted by this binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, BasicProperties as AmqBasicProperties, basic as amq_basic};
use amq_protocol::types::{AMQPValue, FieldTable as AmqFieldTable, LongString};
use amqp_codec::method::BasicPublish;
use amqp_codec::{ContentHeader, FRAME_HEADER_SIZE, FRAME_OVERHEAD, FramePayload, Parsed, encode_content, parse_frame};
use benches::{
    BODY_LEN, CHANNEL, CONTENT_TYPE, DELIVERY_MODE, EXCHANGE, FRAME_MAX, FRAMES_PER_MESSAGE, MESSAGES, RETRY_COUNT,
    RETRY_COUNT_KEY, ROUTING_KEY, SOURCE, SOURCE_KEY, TRACE_ID, TRACE_ID_KEY, body, count_frames, deliver_stream,
    headers, message_id, properties, publish_stream,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let deliver = deliver_stream(MESSAGES);
    let publish = publish_stream(MESSAGES);
    check_inputs(&deliver, &publish);
    report_allocations(&deliver, &publish);

    let mut c = Criterion::default().configure_from_args();
    bench_parse(&mut c, "parse_deliver_128b", &deliver);
    bench_parse(&mut c, "parse_publish_128b", &publish);
    bench_encode_publish(&mut c);
    c.final_summary();
}

/// One group per stream. Throughput is the stream's bytes; the frames per stream are printed
/// once, so that frames/s and ns/frame follow from criterion's numbers.
///
/// - `ours`: every frame parsed to what a consumer needs of it: the method decoded, the
///   content header's class, body size and property flags checked (its properties kept as
///   bytes, decoded on demand), the body as a slice.
/// - `ours_decoded`: the same, and every content header's properties decoded too (the
///   headers table validated): the price of reading the properties of every message, and
///   the like-for-like comparison with amq_protocol.
/// - `amq_protocol`: amq-protocol's parser, which decodes everything into owned values.
/// - `ceiling`: only the 7-byte frame headers walked; no parser can do less.
fn bench_parse(c: &mut Criterion, name: &str, stream: &[u8]) {
    eprintln!("{name}: {} frames, {} bytes per stream", count_frames(stream), stream.len());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("ours", |b| b.iter(|| parse_ours(black_box(stream))));
    group.bench_function("ours_decoded", |b| b.iter(|| parse_ours_decoded(black_box(stream))));
    group.bench_function("amq_protocol", |b| b.iter(|| parse_amq_protocol(black_box(stream))));
    group.bench_function("ceiling", |b| b.iter(|| walk_frame_headers(black_box(stream))));
    group.finish();
}

/// One message per iteration (Throughput::Elements(1), so criterion reports messages/s), built
/// from its parts the way a publisher must: the buffer is reused, so after warm-up neither the
/// ceiling nor ours allocates; amq-protocol's frames own their data and are built each time.
fn bench_encode_publish(c: &mut Criterion) {
    let headers = headers();
    let amq_properties = amq_properties(MESSAGE_ID);
    let body = body();
    let mut encoded = BytesMut::new();
    encode_ours(&headers, &body, &mut encoded);
    let message_len = encoded.len();
    let mut group = c.benchmark_group("encode_publish_128b");
    group.throughput(Throughput::Elements(1));

    let mut out = BytesMut::with_capacity(message_len);
    group.bench_function("ours", |b| b.iter(|| encode_ours(black_box(&headers), black_box(&body), &mut out).len()));

    let mut out = Vec::with_capacity(message_len);
    group.bench_function("amq_protocol", |b| {
        b.iter(|| encode_amq_protocol(black_box(&amq_properties), black_box(&body), &mut out).len())
    });

    let mut out = BytesMut::with_capacity(message_len);
    group.bench_function("ceiling", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&encoded));
            black_box(&out).len()
        })
    });
    group.finish();
}

/// Parses every frame and reads what it carries: the method, the content header (its
/// properties left undecoded) and the body.
fn parse_ours(input: &[u8]) -> usize {
    parse_ours_with(input, |header| _ = black_box(header))
}

/// As `parse_ours`, and decodes every content header's properties.
fn parse_ours_decoded(input: &[u8]) -> usize {
    // Cannot fail: check_inputs decoded every header of the stream before.
    parse_ours_with(input, |header| _ = black_box(header.properties().expect("the properties decode")))
}

#[inline(always)]
fn parse_ours_with(mut input: &[u8], mut on_header: impl FnMut(ContentHeader<'_>)) -> usize {
    let mut frames = 0;
    while !input.is_empty() {
        // Cannot fail: the stream is whole frames that check_inputs parsed before.
        let Ok(Parsed::Complete { value: frame, consumed }) = parse_frame(input, FRAME_MAX) else {
            panic!("the stream holds whole, valid frames");
        };
        match frame.payload {
            FramePayload::Method(method) => _ = black_box(method),
            FramePayload::Header(header) => on_header(header),
            FramePayload::Body(body) => _ = black_box(body),
            FramePayload::Heartbeat => {}
        }
        input = &input[consumed..];
        frames += 1;
    }
    frames
}

/// The same with amq-protocol's parser, which owns what it decodes, as lapin uses it.
fn parse_amq_protocol(mut input: &[u8]) -> usize {
    let mut frames = 0;
    while !input.is_empty() {
        // Cannot fail: the stream is whole frames that check_inputs parsed before.
        let (rest, frame) = amq_protocol::frame::parse_frame(input).expect("the stream holds whole, valid frames");
        match frame {
            AMQPFrame::Method(_, method) => _ = black_box(method),
            AMQPFrame::Header(_, header) => _ = black_box(header.properties),
            AMQPFrame::Body(_, body) => _ = black_box(body),
            other => _ = black_box(other),
        }
        input = rest;
        frames += 1;
    }
    frames
}

/// The upper bound on any frame parser: read each 7-byte header's size and skip the frame.
fn walk_frame_headers(mut input: &[u8]) -> usize {
    let mut frames = 0;
    while input.len() >= FRAME_HEADER_SIZE {
        let size = u32::from_be_bytes([input[3], input[4], input[5], input[6]]) as usize;
        let (frame, rest) = input.split_at(size + FRAME_OVERHEAD);
        black_box(frame);
        input = rest;
        frames += 1;
    }
    frames
}

/// A publisher's message: the method and properties borrow the caller's strings and table.
fn encode_ours<'o>(headers: &amqp_codec::FieldTable, body: &Bytes, out: &'o mut BytesMut) -> &'o mut BytesMut {
    let publish = BasicPublish { exchange: EXCHANGE, routing_key: ROUTING_KEY, ..BasicPublish::default() };
    out.clear();
    // Cannot fail: every field is far below its wire limit and each frame below FRAME_MAX.
    encode_content(CHANNEL, &publish, &properties(headers, MESSAGE_ID), body, FRAME_MAX, out)
        .expect("the message encodes");
    out
}

/// A publisher's message as lapin's basic_publish builds it: owned method strings, the
/// caller's properties cloned into the header, the body copied into a body frame. The frames
/// sit in an array rather than lapin's Vec, which spares amq-protocol one allocation.
fn encode_amq_protocol<'o>(properties: &AmqBasicProperties, body: &Bytes, out: &'o mut Vec<u8>) -> &'o mut Vec<u8> {
    let publish = amq_basic::Publish {
        exchange: EXCHANGE.into(),
        routing_key: ROUTING_KEY.into(),
        mandatory: false,
        immediate: false,
    };
    let channel = CHANNEL.0;
    let frames = [
        AMQPFrame::Method(channel, AMQPClass::Basic(amq_basic::AMQPMethod::Publish(publish))),
        AMQPFrame::Header(
            channel,
            AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: properties.clone() },
        ),
        AMQPFrame::Body(channel, body.to_vec()),
    ];
    out.clear();
    for frame in &frames {
        // The generator takes its writer by value; moving the Vec in and out keeps its buffer.
        let context = WriteContext::from(mem::take(out));
        // Cannot fail: a Vec grows to fit.
        let (written, _) = gen_frame(frame)(context).expect("the frame encodes").into_inner();
        *out = written;
    }
    out
}

/// The message-id of the encoded message; a fixed one, so that ours borrows it as a
/// publisher's would be borrowed from its own message.
const MESSAGE_ID: &str = "msg-00000001";

/// The properties of `benches::properties` as amq-protocol's owned types. Its FieldTable is a
/// BTreeMap, so its keys come out sorted; `benches::headers` inserts them in that order.
fn amq_properties(message_id: &str) -> AmqBasicProperties {
    let mut headers = AmqFieldTable::default();
    headers.insert(RETRY_COUNT_KEY.into(), AMQPValue::LongInt(RETRY_COUNT));
    headers.insert(SOURCE_KEY.into(), AMQPValue::LongString(LongString::from(SOURCE)));
    headers.insert(TRACE_ID_KEY.into(), AMQPValue::LongString(LongString::from(TRACE_ID)));
    AmqBasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_headers(headers)
        .with_delivery_mode(DELIVERY_MODE)
        .with_message_id(message_id.into())
}

/// Fails loudly unless both codecs read the streams as the same frames and encode the
/// publisher's message to the same bytes: otherwise the comparison would be meaningless.
fn check_inputs(deliver: &[u8], publish: &[u8]) {
    let frames = MESSAGES * FRAMES_PER_MESSAGE;
    for stream in [deliver, publish] {
        assert_eq!(count_frames(stream), frames);
        assert_eq!(walk_frame_headers(stream), frames);
        assert_eq!(parse_ours(stream), frames);
        assert_eq!(parse_ours_decoded(stream), frames);
        assert_eq!(parse_amq_protocol(stream), frames);
    }
    let Ok((_, AMQPFrame::Method(1, AMQPClass::Basic(amq_basic::AMQPMethod::Deliver(d))))) =
        amq_protocol::frame::parse_frame(deliver)
    else {
        panic!("the deliver stream starts with basic.deliver");
    };
    assert_eq!((d.consumer_tag.as_str(), d.delivery_tag, d.routing_key.as_str()), ("ctag-1", 1, ROUTING_KEY));

    assert_eq!(message_id(1), MESSAGE_ID);
    let first_message = &publish[..publish.len() / MESSAGES];
    let mut rest = first_message;
    let mut amq_frames = Vec::new();
    while !rest.is_empty() {
        let (next, frame) = amq_protocol::frame::parse_frame(rest).expect("a valid frame");
        amq_frames.push(frame);
        rest = next;
    }
    let [_, AMQPFrame::Header(_, header), AMQPFrame::Body(_, amq_body)] = &amq_frames[..] else {
        panic!("a message is a method, a header and a body");
    };
    assert_eq!(header.properties, amq_properties(MESSAGE_ID));
    assert_eq!(amq_body.len(), BODY_LEN);

    let body = body();
    let ours = encode_ours(&headers(), &body, &mut BytesMut::new()).clone();
    let theirs = encode_amq_protocol(&amq_properties(MESSAGE_ID), &body, &mut Vec::new()).clone();
    assert_eq!(&ours[..], &theirs[..], "both codecs encode the publisher's message alike");
    assert_eq!(&ours[..], first_message, "the encoded message is the first of the publish stream");
}

/// Allocations per frame for each codec, printed before timing starts. Encoding reuses its
/// buffer, which is grown once before counting, as it is during criterion's warm-up.
fn report_allocations(deliver: &[u8], publish: &[u8]) {
    let frames = (MESSAGES * FRAMES_PER_MESSAGE) as f64;
    for (name, stream) in [("parse_deliver_128b", deliver), ("parse_publish_128b", publish)] {
        let ours = count_allocations(|| parse_ours(stream));
        let decoded = count_allocations(|| parse_ours_decoded(stream));
        let theirs = count_allocations(|| parse_amq_protocol(stream));
        eprintln!(
            "{name}: allocs/frame ours {:.2}, ours_decoded {:.2}, amq_protocol {:.2}",
            ours as f64 / frames,
            decoded as f64 / frames,
            theirs as f64 / frames
        );
    }

    let headers = headers();
    let amq_properties = amq_properties(MESSAGE_ID);
    let body = body();
    let mut ours_out = BytesMut::new();
    encode_ours(&headers, &body, &mut ours_out);
    let ours = count_allocations(|| {
        for _ in 0..MESSAGES {
            black_box(encode_ours(&headers, &body, &mut ours_out));
        }
    });
    let mut amq_out = Vec::new();
    encode_amq_protocol(&amq_properties, &body, &mut amq_out);
    let theirs = count_allocations(|| {
        for _ in 0..MESSAGES {
            black_box(encode_amq_protocol(&amq_properties, &body, &mut amq_out));
        }
    });
    eprintln!(
        "encode_publish_128b: allocs/frame ours {:.2}, amq_protocol {:.2} ({} messages of {} frames)",
        ours as f64 / frames,
        theirs as f64 / frames,
        MESSAGES,
        FRAMES_PER_MESSAGE
    );
}

/// Allocator calls (alloc, alloc_zeroed, realloc) made while `f` runs.
fn count_allocations<R>(f: impl FnOnce() -> R) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    black_box(f());
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Counts allocator calls while `COUNTING` is set. The flag keeps the counter's atomic add
/// out of the timed runs, where it would slow the codec that allocates more.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

impl CountingAllocator {
    fn count(&self) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// Sound because every method only forwards its arguments unchanged to `System`, which upholds
// GlobalAlloc's contract; the counting touches no memory the allocator hands out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: the caller's contract for `alloc` is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: the caller's contract for `alloc_zeroed` is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: `ptr` came from this allocator, hence from System, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from System, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
