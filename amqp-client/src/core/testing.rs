//! A scripted broker for the core's unit tests: frame builders, a connection driven on a
//! virtual clock, and readers of what the client sent. Test-only.

use std::time::{Duration, Instant};

use amqp_codec::method::*;
use amqp_codec::{
    BasicProperties, ChannelId, ContentHeader, FramePayload, Method, Parsed, encode_header, encode_method, parse_frame,
};
use bytes::{Bytes, BytesMut};

use super::command::{Command, RequestId};
use super::connection::{Connection, Timeouts};
use super::event::Event;
use super::negotiation::HandshakeConfig;

/// Encodes a method frame from the broker.
pub fn method(channel: u16, m: impl Into<Method<'static>>) -> Bytes {
    let mut out = BytesMut::new();
    encode_method(ChannelId(channel), &m.into(), u32::MAX, &mut out).expect("encodable");
    out.freeze()
}

/// Encodes a content header and body frames (split at `frame_max`).
pub fn content(channel: u16, body: &[u8], frame_max: u32) -> Bytes {
    let props = BasicProperties { content_type: Some("text/plain"), ..Default::default() };
    let header = ContentHeader::new(body.len() as u64, &props);
    let mut out = BytesMut::new();
    encode_header(ChannelId(channel), &header, frame_max, &mut out).expect("encodable");
    for range in amqp_codec::body_chunks(body.len(), frame_max).expect("frame_max > 8") {
        amqp_codec::Frame { channel: ChannelId(channel), payload: FramePayload::Body(&body[range]) }
            .encode(frame_max, &mut out)
            .expect("fits");
    }
    out.freeze()
}

/// A connection and the broker's side of the script, on a clock that moves only when told.
pub struct Script {
    /// The connection under test.
    pub conn: Connection,
    /// The virtual clock.
    pub now: Instant,
    sent: BytesMut,
    /// Events polled so far and not yet taken by a test.
    pub events: Vec<Event>,
}

impl Script {
    /// A connection that has sent its protocol header and nothing else.
    pub fn new() -> Self {
        let now = Instant::now();
        let conn = Connection::new(HandshakeConfig::default(), Timeouts::default(), now);
        let mut s = Script { conn, now, sent: BytesMut::new(), events: Vec::new() };
        s.poll();
        assert_eq!(&s.sent.split_to(8)[..], b"AMQP\x00\x00\x09\x01");
        s
    }

    /// A connection past open-ok, with frame_max 4096 and a 60 s heartbeat.
    pub fn connected() -> Self {
        let mut s = Script::new();
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            mechanisms: b"AMQPLAIN PLAIN",
            locales: b"en_US",
            ..Default::default()
        };
        s.broker_sends(method(0, start));
        s.broker_sends(method(0, ConnectionTune { channel_max: 2047, frame_max: 4096, heartbeat: 60 }));
        s.broker_sends(method(0, ConnectionOpenOk::default()));
        assert_eq!(s.client_sent(), ["0 connection.start-ok", "0 connection.tune-ok", "0 connection.open"]);
        assert!(matches!(s.take_events()[..], [Event::Opened { .. }]));
        s
    }

    /// Opens a channel and returns its number.
    pub fn open_channel(&mut self) -> ChannelId {
        let req = self.submit(Command::OpenChannel);
        let sent = self.client_sent();
        let [open] = &sent[..] else { panic!("expected channel.open, sent {sent:?}") };
        let id: u16 = open.split(' ').next().and_then(|n| n.parse().ok()).expect("a channel number");
        self.broker_sends(method(id, ChannelOpenOk::default()));
        match &self.take_events()[..] {
            [Event::ChannelOpened { request, channel }] if *request == req => *channel,
            other => panic!("expected ChannelOpened, got {other:?}"),
        }
    }

    /// Submits a command.
    pub fn submit(&mut self, command: Command) -> RequestId {
        let id = self.conn.submit(self.now, command);
        self.poll();
        id
    }

    /// Submits a method for a channel, encoded as the API would.
    pub fn submit_method(&mut self, channel: ChannelId, m: impl Into<Method<'static>>) -> RequestId {
        self.submit(Command::Method { channel, frame: method(channel.0, m) })
    }

    /// Feeds broker bytes (any number of frames, or part of one).
    pub fn broker_sends(&mut self, bytes: Bytes) {
        let mut buf = BytesMut::from(&bytes[..]);
        self.conn.handle_input(self.now, &mut buf);
        self.poll();
    }

    /// Moves the clock and lets timers fire.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.conn.poll_timeout().is_some_and(|t| t <= self.now) {
            self.conn.handle_timeout(self.now);
        }
        self.poll();
    }

    fn poll(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit(self.now) {
            self.sent.extend_from_slice(&chunk);
        }
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
    }

    /// What the client sent since the last call, as `"channel class.method"` (and `"ch header"`,
    /// `"ch body N"`, `"heartbeat"`).
    pub fn client_sent(&mut self) -> Vec<String> {
        self.client_frames(|ch, payload| match payload {
            FramePayload::Method(m) => format!("{ch} {}", m.name()),
            FramePayload::Header(h) => format!("{ch} header {}", h.body_size),
            FramePayload::Body(b) => format!("{ch} body {}", b.len()),
            FramePayload::Heartbeat => "heartbeat".into(),
        })
    }

    /// Applies `f` to every frame the client sent since the last call.
    pub fn client_frames<T>(&mut self, mut f: impl FnMut(ChannelId, FramePayload<'_>) -> T) -> Vec<T> {
        let bytes = self.sent.split();
        let mut input = &bytes[..];
        let mut out = Vec::new();
        while !input.is_empty() {
            let Ok(Parsed::Complete { value, consumed }) = parse_frame(input, u32::MAX) else {
                panic!("the client sent a partial or bad frame: {input:?}")
            };
            out.push(f(value.channel, value.payload));
            input = &input[consumed..];
        }
        out
    }

    /// The events so far, taken.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}
