//! `amqp decode FILE...`: raw captured AMQP 0-9-1 byte streams as readable frames, one line
//! each: offset, channel, kind, and for a method its key fields, for a content header its
//! properties. `--roundtrip` re-encodes every frame and compares bytes. Uses the codec only:
//! no connection, no runtime. Credentials (start-ok's response, update-secret) are never shown.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use amqp_codec::{
    BasicProperties, DecodeError, Frame, FramePayload, Method, Parsed, ProtocolHeader, Table, encode_header,
    parse_frame,
};
use clap::Args;

use crate::error::CliError;
use crate::message;

/// Captured streams may come from any negotiated frame_max, so any size the frame header can
/// announce is accepted; the whole file is in memory already.
const ANY_FRAME_MAX: u32 = u32::MAX;

/// Arguments of `amqp decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Files of raw AMQP bytes; a client-to-server stream starts with the protocol header.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also check that re-encoding each frame gives back its exact bytes.
    #[arg(long)]
    roundtrip: bool,
}

#[derive(Default)]
struct Totals {
    files: usize,
    frames: usize,
    failed: usize,
}

/// Prints every frame of every file, then `files: N, frames: N, failed: N`.
pub fn run(args: DecodeArgs) -> Result<(), CliError> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut totals = Totals::default();
    for path in &args.files {
        totals.files += 1;
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => print_stream(&mut out, &name, &bytes, args.roundtrip, &mut totals)?,
            Err(e) => {
                writeln!(out, "{name}: FAILED: cannot read: {e}")?;
                totals.failed += 1;
            }
        }
    }
    writeln!(out, "files: {}, frames: {}, failed: {}", totals.files, totals.frames, totals.failed)?;
    out.flush()?;
    match totals.failed {
        0 => Ok(()),
        failed => Err(CliError::DecodeFailed { failed, files: totals.files }),
    }
}

fn print_stream(
    out: &mut impl Write,
    name: &str,
    bytes: &[u8],
    roundtrip: bool,
    totals: &mut Totals,
) -> std::io::Result<()> {
    let mut at = 0;
    if bytes.starts_with(b"AMQP") {
        match ProtocolHeader::parse(bytes) {
            Ok(Parsed::Complete { value: h, consumed }) => {
                writeln!(out, "{name}@0 protocol-header AMQP {}-{}-{}", h.major, h.minor, h.revision)?;
                at = consumed;
            }
            Ok(Parsed::Incomplete { .. }) | Err(_) => {
                totals.failed += 1;
                return writeln!(out, "{name}@0 FAILED: truncated or bad protocol header");
            }
        }
    }
    while at < bytes.len() {
        let input = &bytes[at..];
        // The codec decodes a header's properties on demand; here they are always shown, so
        // a header whose properties do not decode fails like any other bad frame.
        match parse_frame(input, ANY_FRAME_MAX).and_then(decode_properties) {
            Ok(Parsed::Complete { value: (value, props), consumed }) => {
                totals.frames += 1;
                let mismatch = roundtrip && !reencodes_exactly(&value, &input[..consumed]);
                let verdict = if mismatch { " FAILED: re-encodes differently" } else { "" };
                writeln!(
                    out,
                    "{name}@{at} ch={} {}{verdict}",
                    value.channel,
                    describe(&value.payload, props.as_ref())
                )?;
                totals.failed += usize::from(mismatch);
                at += consumed;
            }
            Ok(Parsed::Incomplete { needed }) => {
                totals.failed += 1;
                return writeln!(
                    out,
                    "{name}@{at} FAILED: the stream ends inside a frame ({needed} more bytes needed)"
                );
            }
            Err(e) => {
                // No way to find the next frame boundary after a bad one: stop this stream.
                totals.failed += 1;
                return writeln!(out, "{name}@{} FAILED: {} (reply code {})", at + e.offset, e.kind, e.reply_code());
            }
        }
    }
    Ok(())
}

/// The frame, and for a content header its decoded properties.
type Decoded<'a> = (Frame<'a>, Option<BasicProperties<'a>>);

fn decode_properties(parsed: Parsed<Frame<'_>>) -> Result<Parsed<Decoded<'_>>, DecodeError> {
    Ok(match parsed {
        Parsed::Complete { value, consumed } => {
            let props = match &value.payload {
                FramePayload::Header(h) => Some(h.properties()?),
                _ => None,
            };
            Parsed::Complete { value: (value, props), consumed }
        }
        Parsed::Incomplete { needed } => Parsed::Incomplete { needed },
    })
}

fn reencodes_exactly(frame: &Frame<'_>, original: &[u8]) -> bool {
    let mut out = bytes::BytesMut::with_capacity(original.len());
    let encoded = match &frame.payload {
        // A parsed header writes its property bytes back as they came; rebuilt from its
        // decoded properties, the round trip checks the codec's property decoder and encoder.
        FramePayload::Header(h) => h.properties().is_ok_and(|props| {
            encode_header(frame.channel, &h.with_properties(&props), ANY_FRAME_MAX, &mut out).is_ok()
        }),
        _ => frame.encode(ANY_FRAME_MAX, &mut out).is_ok(),
    };
    encoded && out[..] == *original
}

fn describe(payload: &FramePayload<'_>, props: Option<&BasicProperties<'_>>) -> String {
    match payload {
        FramePayload::Method(m) => {
            let fields = key_fields(m);
            if fields.0.is_empty() { m.name().to_owned() } else { format!("{}{}", m.name(), fields.0) }
        }
        FramePayload::Header(h) => {
            let props = props.map(message::properties_text).unwrap_or_default();
            let sep = if props.is_empty() { "" } else { " " };
            format!("header body-size={}{sep}{props}", h.body_size)
        }
        FramePayload::Body(b) => format!("body {} bytes", b.len()),
        FramePayload::Heartbeat => "heartbeat".to_owned(),
    }
}

/// ` name=value` pieces; flags appear by name only when set, so a line shows what is unusual.
#[derive(Default)]
struct Fields(String);

impl Fields {
    fn str(mut self, name: &str, value: &str) -> Self {
        self.0.push_str(&format!(" {name}={value:?}"));
        self
    }

    fn num(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.0.push_str(&format!(" {name}={value}"));
        self
    }

    fn flag(mut self, name: &str, set: bool) -> Self {
        if set {
            self.0.push(' ');
            self.0.push_str(name);
        }
        self
    }

    fn table(mut self, name: &str, table: &Table<'_>) -> Self {
        if !table.is_empty() {
            self.0.push_str(&format!(" {name}={}", message::table_text(&table.to_owned())));
        }
        self
    }

    fn bytes(self, name: &str, len: usize) -> Self {
        self.num(name, format_args!("<{len} bytes>"))
    }
}

fn key_fields(m: &Method<'_>) -> Fields {
    let f = Fields::default();
    match m {
        Method::ConnectionStart(s) => {
            let f = f.num("version", format_args!("{}-{}", s.version_major, s.version_minor));
            let f = f.str("mechanisms", &String::from_utf8_lossy(s.mechanisms));
            match product(&s.server_properties) {
                Some(p) => f.str("product", p),
                None => f,
            }
        }
        // The response carries the password: show its size, never its bytes.
        Method::ConnectionStartOk(s) => {
            let f = match product(&s.client_properties) {
                Some(p) => f.str("product", p),
                None => f,
            };
            f.str("mechanism", s.mechanism).bytes("response", s.response.len())
        }
        Method::ConnectionSecure(s) => f.bytes("challenge", s.challenge.len()),
        Method::ConnectionSecureOk(s) => f.bytes("response", s.response.len()),
        Method::ConnectionTune(t) => {
            f.num("channel-max", t.channel_max).num("frame-max", t.frame_max).num("heartbeat", t.heartbeat)
        }
        Method::ConnectionTuneOk(t) => {
            f.num("channel-max", t.channel_max).num("frame-max", t.frame_max).num("heartbeat", t.heartbeat)
        }
        Method::ConnectionOpen(o) => f.str("virtual-host", o.virtual_host),
        Method::ConnectionClose(c) => f
            .num("reply-code", c.reply_code.0)
            .str("reply-text", c.reply_text)
            .num("method", format_args!("{}.{}", c.class_id, c.method_id)),
        Method::ConnectionBlocked(b) => f.str("reason", b.reason),
        Method::ConnectionUpdateSecret(u) => f.bytes("new-secret", u.new_secret.len()).str("reason", u.reason),
        Method::ChannelFlow(c) => f.num("active", c.active),
        Method::ChannelFlowOk(c) => f.num("active", c.active),
        Method::ChannelClose(c) => f
            .num("reply-code", c.reply_code.0)
            .str("reply-text", c.reply_text)
            .num("method", format_args!("{}.{}", c.class_id, c.method_id)),
        Method::ExchangeDeclare(x) => f
            .str("exchange", x.exchange)
            .str("type", x.kind)
            .flag("passive", x.passive)
            .flag("durable", x.durable)
            .flag("auto-delete", x.auto_delete)
            .flag("internal", x.internal)
            .flag("no-wait", x.no_wait)
            .table("arguments", &x.arguments),
        Method::ExchangeDelete(x) => {
            f.str("exchange", x.exchange).flag("if-unused", x.if_unused).flag("no-wait", x.no_wait)
        }
        Method::ExchangeBind(b) => f
            .str("destination", b.destination)
            .str("source", b.source)
            .str("routing-key", b.routing_key)
            .table("arguments", &b.arguments),
        Method::ExchangeUnbind(b) => f
            .str("destination", b.destination)
            .str("source", b.source)
            .str("routing-key", b.routing_key)
            .table("arguments", &b.arguments),
        Method::QueueDeclare(q) => f
            .str("queue", q.queue)
            .flag("passive", q.passive)
            .flag("durable", q.durable)
            .flag("exclusive", q.exclusive)
            .flag("auto-delete", q.auto_delete)
            .flag("no-wait", q.no_wait)
            .table("arguments", &q.arguments),
        Method::QueueDeclareOk(q) => {
            f.str("queue", q.queue).num("message-count", q.message_count).num("consumer-count", q.consumer_count)
        }
        Method::QueueBind(b) => f
            .str("queue", b.queue)
            .str("exchange", b.exchange)
            .str("routing-key", b.routing_key)
            .table("arguments", &b.arguments),
        Method::QueueUnbind(b) => f
            .str("queue", b.queue)
            .str("exchange", b.exchange)
            .str("routing-key", b.routing_key)
            .table("arguments", &b.arguments),
        Method::QueuePurge(q) => f.str("queue", q.queue),
        Method::QueuePurgeOk(q) => f.num("message-count", q.message_count),
        Method::QueueDelete(q) => f.str("queue", q.queue).flag("if-unused", q.if_unused).flag("if-empty", q.if_empty),
        Method::QueueDeleteOk(q) => f.num("message-count", q.message_count),
        Method::BasicQos(q) => {
            f.num("prefetch-count", q.prefetch_count).num("prefetch-size", q.prefetch_size).flag("global", q.global)
        }
        Method::BasicConsume(c) => f
            .str("queue", c.queue)
            .str("consumer-tag", c.consumer_tag)
            .flag("no-ack", c.no_ack)
            .flag("exclusive", c.exclusive)
            .flag("no-wait", c.no_wait)
            .table("arguments", &c.arguments),
        Method::BasicConsumeOk(c) => f.str("consumer-tag", c.consumer_tag),
        Method::BasicCancel(c) => f.str("consumer-tag", c.consumer_tag).flag("no-wait", c.no_wait),
        Method::BasicCancelOk(c) => f.str("consumer-tag", c.consumer_tag),
        Method::BasicPublish(p) => f
            .str("exchange", p.exchange)
            .str("routing-key", p.routing_key)
            .flag("mandatory", p.mandatory)
            .flag("immediate", p.immediate),
        Method::BasicReturn(r) => f
            .num("reply-code", r.reply_code.0)
            .str("reply-text", r.reply_text)
            .str("exchange", r.exchange)
            .str("routing-key", r.routing_key),
        Method::BasicDeliver(d) => f
            .str("consumer-tag", d.consumer_tag)
            .num("delivery-tag", d.delivery_tag)
            .flag("redelivered", d.redelivered)
            .str("exchange", d.exchange)
            .str("routing-key", d.routing_key),
        Method::BasicGet(g) => f.str("queue", g.queue).flag("no-ack", g.no_ack),
        Method::BasicGetOk(g) => f
            .num("delivery-tag", g.delivery_tag)
            .flag("redelivered", g.redelivered)
            .str("exchange", g.exchange)
            .str("routing-key", g.routing_key)
            .num("message-count", g.message_count),
        Method::BasicAck(a) => f.num("delivery-tag", a.delivery_tag).flag("multiple", a.multiple),
        Method::BasicReject(r) => f.num("delivery-tag", r.delivery_tag).flag("requeue", r.requeue),
        Method::BasicNack(n) => {
            f.num("delivery-tag", n.delivery_tag).flag("multiple", n.multiple).flag("requeue", n.requeue)
        }
        Method::BasicRecoverAsync(r) => f.flag("requeue", r.requeue),
        Method::BasicRecover(r) => f.flag("requeue", r.requeue),
        Method::ConfirmSelect(c) => f.flag("no-wait", c.nowait),
        _ => f,
    }
}

/// The `product` entry of a peer's properties table.
fn product<'a>(properties: &Table<'a>) -> Option<&'a str> {
    match properties {
        Table::Raw(raw) => raw.get("product").and_then(|v| v.as_str()),
        Table::Owned(_) => None,
    }
}
