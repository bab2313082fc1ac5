//! The connection: the handshake, channel 0, the channel table, heartbeats and closing, tied
//! together behind the handle/poll contract of [`Connection`]. Touches every other core
//! module; owns no socket and reads no clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use amqp_codec::method::{ChannelOpen, ConnectionClose, ConnectionCloseOk, ConnectionUpdateSecret};
use amqp_codec::{
    ChannelId, FRAME_MIN_SIZE, FrameType, Method, PROTOCOL_HEADER, Parsed, RawFrame, ReplyCode, encode_heartbeat,
    encode_method, parse_raw_frame,
};
use bytes::{Bytes, BytesMut};

use super::body_pool::BodyPool;
use super::channel::{After, Channel, Out};
use super::command::{Command, RequestId};
use super::error::{ChannelError, ConnectionError};
use super::event::Event;
use super::heartbeat::{Heartbeat, HeartbeatAction};
use super::negotiation::{Handshake, HandshakeConfig, Step};
use super::transmit::Transmit;
use super::tuning::Tuned;

/// How long the core waits for the broker where it must answer.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the protocol header to open-ok.
    pub handshake: Duration,
    /// From connection.close to close-ok.
    pub close: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { handshake: Duration::from_secs(30), close: Duration::from_secs(10) }
    }
}

/// A client connection, without I/O. Feed it with `handle_*` and `submit`, then call
/// `poll_transmit`, `poll_event` and `poll_timeout`, in that order, until each is empty.
///
/// ```
/// use amqp_client::core::{Connection, negotiation::HandshakeConfig, connection::Timeouts};
/// use std::time::Instant;
/// let mut conn = Connection::new(HandshakeConfig::default(), Timeouts::default(), Instant::now());
/// let first = conn.poll_transmit(Instant::now()).unwrap();
/// assert_eq!(&first[..], b"AMQP\x00\x00\x09\x01");
/// assert!(conn.poll_timeout().is_some()); // the handshake deadline
/// ```
#[derive(Debug)]
pub struct Connection {
    config: HandshakeConfig,
    timeouts: Timeouts,
    state: State,
    transmit: Transmit,
    events: VecDeque<Event>,
    channels: BTreeMap<u16, Channel>,
    /// The channel number given out last: the next one is sought after it, so that a number
    /// just closed is not reused at once (frames of its old channel may still be on the way).
    last_channel: u16,
    /// Numbers of channels that closed and are not reused yet: a late frame for one of them
    /// is discarded, while a frame for a channel never opened is a protocol violation.
    closed_channels: BTreeSet<u16>,
    heartbeat: Option<Heartbeat>,
    deadline: Option<(Instant, &'static str)>,
    blocked: bool,
    next_request: u64,
    /// update-secret requests sent on channel 0, answered in order.
    secret_updates: VecDeque<RequestId>,
    /// Buffers for bodies over several frames, shared by the channels.
    bodies: BodyPool,
}

#[derive(Debug)]
enum State {
    Handshake(Handshake),
    Open(Tuned),
    /// connection.close went out; waiting for close-ok.
    Closing {
        frame_max: u32,
        error: ConnectionError,
    },
    Closed,
}

impl Connection {
    /// Starts a connection at `now`: the protocol header is the first thing to send.
    pub fn new(config: HandshakeConfig, timeouts: Timeouts, now: Instant) -> Self {
        let mut transmit = Transmit::default();
        transmit.frames().extend_from_slice(&PROTOCOL_HEADER);
        Connection {
            config,
            timeouts,
            state: State::Handshake(Handshake::AwaitingStart),
            transmit,
            events: VecDeque::new(),
            channels: BTreeMap::new(),
            last_channel: 0,
            closed_channels: BTreeSet::new(),
            heartbeat: None,
            deadline: Some((now + timeouts.handshake, "the handshake")),
            blocked: false,
            next_request: 0,
            secret_updates: VecDeque::new(),
            bodies: BodyPool::default(),
        }
    }

    /// True once the connection has ended and its `Closed` event is queued.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    fn frame_max(&self) -> u32 {
        match &self.state {
            State::Open(tuned) => tuned.frame_max,
            State::Closing { frame_max, .. } => *frame_max,
            State::Handshake(_) | State::Closed => FRAME_MIN_SIZE,
        }
    }

    /// Something the user asked for; its outcome comes back as an event naming the returned id.
    pub fn submit(&mut self, now: Instant, command: Command) -> RequestId {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let tuned = match &self.state {
            State::Open(tuned) => *tuned,
            State::Closed | State::Closing { .. } | State::Handshake(_) => {
                let error = match &self.state {
                    State::Closing { error, .. } => ChannelError::Connection(error.clone()),
                    _ => ChannelError::NotOpen(0),
                };
                self.events.push_back(Event::Failed { request, error });
                return request;
            }
        };
        match command {
            Command::OpenChannel => self.open_channel(request, tuned),
            Command::Method { channel, frame } => self.submit_method(request, channel, frame),
            Command::Publish { channel, prefix, body } => self.with_channel(request, channel, |ch, out| {
                ch.submit_publish(request, prefix, body, out);
            }),
            Command::Ack { channel, tag, multiple, verdict } => self.with_channel(request, channel, |ch, out| {
                ch.submit_ack(request, tag, multiple, verdict, out);
            }),
            Command::CloseChannel { channel, code, text } => self.with_channel(request, channel, |ch, out| {
                ch.submit_close(request, code, text, out);
            }),
            Command::UpdateSecret { secret, reason } => {
                let update = ConnectionUpdateSecret { new_secret: &secret, reason: &reason };
                match encode_method(ChannelId::CONNECTION, &update.into(), tuned.frame_max, self.transmit.frames()) {
                    Ok(()) => self.secret_updates.push_back(request),
                    Err(e) => {
                        let error = ChannelError::BadRequest(format!("connection.update-secret: {e}"));
                        self.events.push_back(Event::Failed { request, error });
                    }
                }
            }
            Command::Close { code, text } => {
                self.events.push_back(Event::Sent { request });
                self.close(now, ConnectionError::ClosedByClient { code, text });
            }
        }
        request
    }

    fn open_channel(&mut self, request: RequestId, tuned: Tuned) {
        let max = tuned.channel_max.max(1);
        let after = self.last_channel.min(max);
        let free = (after + 1..=max).chain(1..=after).find(|id| !self.channels.contains_key(id));
        let Some(id) = free else {
            self.events.push_back(Event::Failed { request, error: ChannelError::NoFreeChannel(tuned.channel_max) });
            return;
        };
        self.last_channel = id;
        self.closed_channels.remove(&id);
        let channel = ChannelId(id);
        // A few bytes, far below any frame_max: encoding cannot fail.
        let _ = encode_method(channel, &ChannelOpen::default().into(), tuned.frame_max, self.transmit.frames());
        self.channels.insert(id, Channel::opening(channel, request));
    }

    fn submit_method(&mut self, request: RequestId, channel: ChannelId, frame: Bytes) {
        let method = match parse_raw_frame(&frame, self.frame_max()) {
            Ok(Parsed::Complete { value, consumed }) if consumed == frame.len() && value.channel == channel => {
                value.decode().ok().and_then(|f| match f.payload {
                    amqp_codec::FramePayload::Method(m) => Some(m),
                    _ => None,
                })
            }
            _ => None,
        };
        let Some(method) = method else {
            let error = ChannelError::BadRequest(format!("not one method frame for channel {channel}"));
            self.events.push_back(Event::Failed { request, error });
            return;
        };
        let Some(ch) = self.channels.get_mut(&channel.0) else {
            self.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(channel.0) });
            return;
        };
        let frame_max = match &self.state {
            State::Open(t) => t.frame_max,
            _ => FRAME_MIN_SIZE,
        };
        let mut out = Out { transmit: &mut self.transmit, events: &mut self.events, frame_max, blocked: self.blocked };
        ch.submit_method(request, frame.clone(), &method, &mut out);
    }

    fn with_channel(&mut self, request: RequestId, channel: ChannelId, f: impl FnOnce(&mut Channel, &mut Out<'_>)) {
        let frame_max = self.frame_max();
        let Some(ch) = self.channels.get_mut(&channel.0) else {
            self.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(channel.0) });
            return;
        };
        let mut out = Out { transmit: &mut self.transmit, events: &mut self.events, frame_max, blocked: self.blocked };
        f(ch, &mut out);
    }

    /// Takes every whole frame off the front of `buf`; a partial frame stays for next time.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) {
        if let Some(hb) = &mut self.heartbeat {
            hb.received(now);
        }
        while !self.is_closed() {
            let consumed = match parse_raw_frame(buf, self.frame_max()) {
                Ok(Parsed::Complete { consumed, .. }) => consumed,
                Ok(Parsed::Incomplete { .. }) => return,
                Err(e) => {
                    // Past a bad frame there is no telling where the next one starts; what the
                    // broker sends after our connection.close (its close-ok) starts afresh.
                    buf.clear();
                    if let amqp_codec::DecodeErrorKind::ProtocolMismatch { .. } = e.kind {
                        // It offered another version and will close the socket: nothing to say.
                        self.finish(ConnectionError::ProtocolMismatch);
                    } else {
                        self.fail_hard(now, ConnectionError::from(&e));
                    }
                    return;
                }
            };
            // The frame becomes its own Bytes: bodies and messages are slices of it, no copies.
            let frame = buf.split_to(consumed).freeze();
            let Ok(Parsed::Complete { value: raw, .. }) = parse_raw_frame(&frame, self.frame_max()) else {
                unreachable!("the same bytes parsed as a complete frame just above")
            };
            if let Err(error) = self.recv_frame(now, raw, &frame) {
                self.fail_hard(now, error);
            }
        }
    }

    fn recv_frame(&mut self, now: Instant, raw: RawFrame<'_>, frame: &Bytes) -> Result<(), ConnectionError> {
        let payload = || frame.slice(amqp_codec::FRAME_HEADER_SIZE..frame.len() - 1);
        if raw.kind == FrameType::Heartbeat {
            return Ok(());
        }
        if raw.channel == ChannelId::CONNECTION {
            let frame = raw.decode().map_err(|e| ConnectionError::from(&e))?;
            let amqp_codec::FramePayload::Method(method) = frame.payload else {
                return Err(ConnectionError::ProtocolViolation {
                    code: ReplyCode::COMMAND_INVALID,
                    reason: "content on channel 0".into(),
                });
            };
            return self.recv_connection_method(now, &method);
        }
        let frame_max = self.frame_max();
        if matches!(self.state, State::Closing { .. }) {
            return Ok(()); // The spec: after connection.close, discard all but close and close-ok.
        }
        let Some(ch) = self.channels.get_mut(&raw.channel.0) else {
            if self.closed_channels.contains(&raw.channel.0) {
                return Ok(()); // sent before the broker saw the channel close
            }
            return Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::CHANNEL_ERROR,
                reason: format!("a frame on channel {}, which is not open", raw.channel),
            });
        };
        let mut out = Out { transmit: &mut self.transmit, events: &mut self.events, frame_max, blocked: self.blocked };
        match raw.kind {
            FrameType::Method => {
                let method =
                    Method::parse(raw.payload, amqp_codec::FRAME_HEADER_SIZE).map_err(|e| ConnectionError::from(&e))?;
                if ch.recv_method(&method, payload(), &mut out)? == After::Remove {
                    self.channels.remove(&raw.channel.0);
                    self.closed_channels.insert(raw.channel.0);
                }
            }
            FrameType::Header => ch.recv_header(payload(), &mut out)?,
            FrameType::Body => ch.recv_body(payload(), &self.bodies, &mut out)?,
            FrameType::Heartbeat => {}
        }
        Ok(())
    }

    fn recv_connection_method(&mut self, now: Instant, method: &Method<'_>) -> Result<(), ConnectionError> {
        match core::mem::replace(&mut self.state, State::Closed) {
            State::Handshake(handshake) => {
                match handshake.step(method, &self.config, self.transmit.frames()) {
                    Ok(Step::Continue(next)) => self.state = State::Handshake(next),
                    Ok(Step::Open { server_properties, tuned }) => {
                        self.state = State::Open(tuned);
                        self.deadline = None;
                        self.heartbeat = tuned.heartbeat.map(|interval| Heartbeat::new(interval, now));
                        self.events.push_back(Event::Opened { server_properties, tuned });
                    }
                    Err(error) => {
                        // A broker that closed during the handshake expects close-ok.
                        if matches!(method, Method::ConnectionClose(_)) {
                            let _ = encode_method(
                                ChannelId::CONNECTION,
                                &ConnectionCloseOk {}.into(),
                                FRAME_MIN_SIZE,
                                self.transmit.frames(),
                            );
                        }
                        self.finish(error);
                    }
                }
                Ok(())
            }
            State::Open(tuned) => {
                self.state = State::Open(tuned);
                self.recv_open_connection_method(method)
            }
            State::Closing { frame_max, error } => {
                match method {
                    Method::ConnectionCloseOk(_) => self.finish(error),
                    Method::ConnectionClose(_) => {
                        let _ = encode_method(
                            ChannelId::CONNECTION,
                            &ConnectionCloseOk {}.into(),
                            frame_max,
                            self.transmit.frames(),
                        );
                        self.finish(error);
                    }
                    _ => self.state = State::Closing { frame_max, error },
                }
                Ok(())
            }
            State::Closed => Ok(()),
        }
    }

    fn recv_open_connection_method(&mut self, method: &Method<'_>) -> Result<(), ConnectionError> {
        match method {
            Method::ConnectionClose(close) => {
                let frame_max = self.frame_max();
                let _ = encode_method(
                    ChannelId::CONNECTION,
                    &ConnectionCloseOk {}.into(),
                    frame_max,
                    self.transmit.frames(),
                );
                self.finish(ConnectionError::ClosedByBroker {
                    code: close.reply_code,
                    text: close.reply_text.to_owned(),
                    method: Some((close.class_id, close.method_id)).filter(|(c, _)| c.0 != 0),
                });
                Ok(())
            }
            Method::ConnectionBlocked(blocked) => {
                self.blocked = true;
                self.events.push_back(Event::Blocked { reason: blocked.reason.to_owned() });
                Ok(())
            }
            Method::ConnectionUnblocked(_) => {
                self.blocked = false;
                self.events.push_back(Event::Unblocked);
                self.pump_all();
                Ok(())
            }
            Method::ConnectionUpdateSecretOk(_) => match self.secret_updates.pop_front() {
                Some(request) => {
                    self.events.push_back(Event::Sent { request });
                    Ok(())
                }
                None => Err(ConnectionError::ProtocolViolation {
                    code: ReplyCode::COMMAND_INVALID,
                    reason: "connection.update-secret-ok that answers no request".into(),
                }),
            },
            other => Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::COMMAND_INVALID,
                reason: format!("{} on channel 0 of an open connection", other.name()),
            }),
        }
    }

    fn pump_all(&mut self) {
        let frame_max = self.frame_max();
        let mut out = Out { transmit: &mut self.transmit, events: &mut self.events, frame_max, blocked: self.blocked };
        for ch in self.channels.values_mut() {
            ch.pump(&mut out);
        }
    }

    /// Sends connection.close and waits for close-ok; every channel fails with `error` now.
    fn close(&mut self, now: Instant, error: ConnectionError) {
        let (code, text, method) = match &error {
            ConnectionError::ClosedByClient { code, text } => (*code, text.clone(), (0, 0)),
            ConnectionError::ProtocolViolation { code, reason } => (*code, reason.clone(), (0, 0)),
            other => (ReplyCode::INTERNAL_ERROR, other.to_string(), (0, 0)),
        };
        let frame_max = self.frame_max();
        let text: String = text
            .chars()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= 255).then_some(c)
            })
            .collect();
        let close = ConnectionClose {
            reply_code: code,
            reply_text: &text,
            class_id: amqp_codec::ClassId(method.0),
            method_id: amqp_codec::MethodId(method.1),
        };
        let _ = encode_method(ChannelId::CONNECTION, &close.into(), frame_max, self.transmit.frames());
        self.fail_channels(&error);
        self.state = State::Closing { frame_max, error };
        self.deadline = Some((now + self.timeouts.close, "the close handshake"));
    }

    /// The broker broke the protocol: close with the error's reply code.
    fn fail_hard(&mut self, now: Instant, error: ConnectionError) {
        match self.state {
            State::Open(_) | State::Handshake(_) => self.close(now, error),
            State::Closing { .. } | State::Closed => {}
        }
    }

    fn fail_channels(&mut self, error: &ConnectionError) {
        for request in core::mem::take(&mut self.secret_updates) {
            self.events.push_back(Event::Failed { request, error: ChannelError::Connection(error.clone()) });
        }
        let frame_max = self.frame_max();
        let mut out = Out { transmit: &mut self.transmit, events: &mut self.events, frame_max, blocked: self.blocked };
        for (_, ch) in core::mem::take(&mut self.channels) {
            ch.fail(error, &mut out);
        }
    }

    /// The connection is over: fail what is left and queue the last event.
    fn finish(&mut self, error: ConnectionError) {
        self.fail_channels(&error);
        self.state = State::Closed;
        self.deadline = None;
        self.heartbeat = None;
        self.events.push_back(Event::Closed(error));
    }

    /// Timers: heartbeats to send, a silent broker, a handshake or close that took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, during)) = self.deadline
            && now >= at
        {
            self.finish(ConnectionError::Timeout(during));
            return;
        }
        match self.heartbeat.as_ref().map(|hb| hb.poll(now)) {
            Some(HeartbeatAction::Send) => encode_heartbeat(self.transmit.frames()),
            Some(HeartbeatAction::PeerDead) => self.finish(ConnectionError::HeartbeatTimeout),
            Some(HeartbeatAction::None) | None => {}
        }
    }

    /// The socket closed or failed: everything pending fails.
    pub fn handle_eof(&mut self, _now: Instant, reason: &str) {
        match core::mem::replace(&mut self.state, State::Closed) {
            State::Closing { error, .. } => self.finish(error),
            State::Closed => {}
            _ => self.finish(ConnectionError::Lost(reason.to_owned())),
        }
    }

    /// The driver stopped (true) or resumed (false) reading the socket, because a consumer's
    /// queue is full. While paused, silence from the broker is not held against it.
    pub fn handle_reading_paused(&mut self, paused: bool, now: Instant) {
        if let Some(hb) = &mut self.heartbeat {
            hb.reading_paused(paused, now);
        }
    }

    /// The next bytes to write; `now` is when they go out (heartbeats count from it).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        let chunk = self.transmit.pop()?;
        if let Some(hb) = &mut self.heartbeat {
            hb.sent(now);
        }
        Some(chunk)
    }

    /// Bytes waiting to be written (for backpressure).
    pub fn pending_transmit(&self) -> usize {
        self.transmit.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hb = self.heartbeat.as_ref().map(Heartbeat::deadline);
        match (self.deadline.map(|(at, _)| at), hb) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{Script, content, method};
    use amqp_codec::method::*;
    use amqp_codec::{DeliveryTag, FramePayload, ReplyCode};

    /// A publish as the API will encode it: method and header frames, and the body apart.
    fn publish_command(channel: ChannelId, body: &'static [u8]) -> Command {
        let publish = BasicPublish { routing_key: "q", ..Default::default() };
        let props = amqp_codec::BasicProperties::default();
        let mut fixed = BytesMut::new();
        amqp_codec::encode_method(channel, &publish.into(), 4096, &mut fixed).unwrap();
        let header = amqp_codec::ContentHeader::new(body.len() as u64, &props);
        amqp_codec::encode_header(channel, &header, 4096, &mut fixed).unwrap();
        Command::Publish { channel, prefix: fixed.freeze(), body: Bytes::from_static(body) }
    }

    #[test]
    fn the_handshake_opens_with_the_negotiated_limits() {
        let mut s = Script::new();
        s.broker_sends(method(
            0,
            ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN", ..Default::default() },
        ));
        s.broker_sends(method(0, ConnectionTune { channel_max: 0, frame_max: 65_536, heartbeat: 10 }));
        s.broker_sends(method(0, ConnectionOpenOk::default()));
        let events = s.take_events();
        let [Event::Opened { tuned, .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!((tuned.channel_max, tuned.frame_max), (2047, 65_536));
        assert_eq!(tuned.heartbeat, Some(Duration::from_secs(10)));
        assert_eq!(s.conn.poll_timeout(), Some(s.now + Duration::from_secs(10)), "heartbeat, not the handshake");
    }

    #[test]
    fn broker_close_fails_the_pending_declare_and_is_acknowledged() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let req = s.submit_method(ch, QueueDeclare { queue: "orders", ..Default::default() });
        assert_eq!(s.client_sent(), ["1 queue.declare"]);
        s.broker_sends(method(
            ch.0,
            ChannelClose {
                reply_code: ReplyCode::NOT_FOUND,
                reply_text: "no queue",
                class_id: amqp_codec::ClassId(50),
                method_id: amqp_codec::MethodId(10),
            },
        ));
        let events = s.take_events();
        let [Event::Failed { request, error }, Event::ChannelClosed { channel, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!((*request, *channel), (req, ch));
        assert!(matches!(error, ChannelError::ClosedByBroker { code: ReplyCode::NOT_FOUND, method: Some(_), .. }));
        assert_eq!(s.client_sent(), ["1 channel.close-ok"]);
        // The channel is gone: a request on it fails at once, and its number is not reused at once.
        let late = s.submit_method(ch, QueueDeclare::default());
        assert!(
            matches!(s.take_events()[..], [Event::Failed { request, error: ChannelError::NotOpen(1) }] if request == late)
        );
        assert_ne!(s.open_channel(), ch);
    }

    #[test]
    fn one_synchronous_request_is_in_flight_and_the_rest_wait_in_order() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let a = s.submit_method(ch, QueueDeclare { queue: "a", ..Default::default() });
        let b = s.submit_method(ch, QueueBind { queue: "a", exchange: "x", ..Default::default() });
        let c = s.submit_method(ch, QueuePurge { queue: "a", no_wait: true, ..Default::default() });
        assert_eq!(s.client_sent(), ["1 queue.declare"]);
        s.broker_sends(method(1, QueueDeclareOk { queue: "a", message_count: 3, consumer_count: 0 }));
        assert_eq!(s.client_sent(), ["1 queue.bind"]);
        let events = s.take_events();
        let [Event::Reply { request, method: reply, .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(*request, a);
        assert!(matches!(Method::parse(reply, 0).unwrap(), Method::QueueDeclareOk(ok) if ok.message_count == 3));
        s.broker_sends(method(1, QueueBindOk {}));
        assert_eq!(s.client_sent(), ["1 queue.purge"]);
        let events = s.take_events();
        assert!(
            matches!(events[..], [Event::Reply { request: rb, .. }, Event::Sent { request: rc }] if rb == b && rc == c)
        );
    }

    #[test]
    fn a_reply_nobody_asked_for_closes_the_connection_with_command_invalid() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        s.broker_sends(method(ch.0, QueueDeclareOk::default()));
        let close = s.client_frames(|_, p| match p {
            FramePayload::Method(Method::ConnectionClose(c)) => Some(c.reply_code),
            _ => None,
        });
        assert_eq!(close, [Some(ReplyCode::COMMAND_INVALID)]);
        assert!(matches!(s.take_events()[..], [Event::ChannelClosed { .. }]));
        s.broker_sends(method(0, ConnectionCloseOk {}));
        assert!(matches!(
            &s.take_events()[..],
            [Event::Closed(ConnectionError::ProtocolViolation { code: ReplyCode::COMMAND_INVALID, .. })]
        ));
        assert!(s.conn.is_closed());
    }

    #[test]
    fn a_delivery_over_several_body_frames_is_assembled() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&method(
            1,
            BasicDeliver { consumer_tag: "c1", delivery_tag: DeliveryTag(7), ..Default::default() },
        ));
        wire.extend_from_slice(&content(1, &body, 4096));
        // Byte by byte: partial frames must wait in the buffer.
        let mut buf = BytesMut::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            s.conn.handle_input(s.now, &mut buf);
        }
        assert!(buf.is_empty());
        let Some(Event::Delivery { channel, message }) = s.conn.poll_event() else { panic!("a delivery") };
        assert_eq!(channel, ch);
        assert_eq!(&message.body[..], &body[..]);
        assert!(
            matches!(message.method().unwrap(), Method::BasicDeliver(d) if d.delivery_tag == DeliveryTag(7) && d.consumer_tag == "c1")
        );
        assert_eq!(message.header().unwrap().properties().unwrap().content_type, Some("text/plain"));
    }

    #[test]
    fn a_one_frame_body_shares_the_read_buffer() {
        let mut s = Script::connected();
        s.open_channel();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&method(1, BasicDeliver::default()));
        buf.extend_from_slice(&content(1, b"hello", 4096));
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        s.conn.handle_input(s.now, &mut buf);
        let Some(Event::Delivery { message, .. }) = s.conn.poll_event() else { panic!("a delivery") };
        let at = message.body.as_ptr() as usize;
        assert!(at >= base && at < end, "the body points into the buffer it was read into");
    }

    #[test]
    fn basic_get_answers_with_get_ok_and_content_or_get_empty() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let get = s.submit_method(ch, BasicGet { queue: "q", ..Default::default() });
        let next = s.submit_method(ch, BasicGet { queue: "q", ..Default::default() });
        s.broker_sends(method(1, BasicGetOk { delivery_tag: DeliveryTag(1), message_count: 0, ..Default::default() }));
        assert!(s.take_events().is_empty(), "not before the content");
        assert_eq!(s.client_sent(), ["1 basic.get"]);
        s.broker_sends(content(1, b"body", 4096));
        assert!(
            matches!(&s.take_events()[..], [Event::GetOk { request, message }] if *request == get && &message.body[..] == b"body")
        );
        assert_eq!(s.client_sent(), ["1 basic.get"], "the second get goes out after the first is answered");
        s.broker_sends(method(1, BasicGetEmpty::default()));
        assert!(matches!(s.take_events()[..], [Event::Reply { request, .. }] if request == next));
    }

    #[test]
    fn confirm_mode_numbers_publishes_and_reports_acks_and_nacks() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let select = s.submit_method(ch, ConfirmSelect { nowait: false });
        let p1 = s.submit(publish_command(ch, b"one"));
        s.broker_sends(method(1, ConfirmSelectOk {}));
        let p2 = s.submit(publish_command(ch, b"two"));
        assert_eq!(
            s.client_sent(),
            [
                "1 confirm.select",
                "1 basic.publish",
                "1 header 3",
                "1 body 3",
                "1 basic.publish",
                "1 header 3",
                "1 body 3"
            ]
        );
        let events = s.take_events();
        let published: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Published { request, sequence, .. } => Some((*request, *sequence)),
                _ => None,
            })
            .collect();
        assert_eq!(published, [(p1, Some(DeliveryTag(1))), (p2, Some(DeliveryTag(2)))]);
        assert!(matches!(events[0], Event::Reply { request, .. } if request == select));
        s.broker_sends(method(1, BasicAck { delivery_tag: DeliveryTag(2), multiple: true }));
        s.broker_sends(method(1, BasicNack { delivery_tag: DeliveryTag(3), multiple: false, requeue: false }));
        assert!(matches!(
            s.take_events()[..],
            [
                Event::Confirmed { tag: DeliveryTag(2), multiple: true, ack: true, .. },
                Event::Confirmed { tag: DeliveryTag(3), multiple: false, ack: false, .. },
            ]
        ));
    }

    #[test]
    fn while_blocked_publishes_wait_but_acks_go_out() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        s.broker_sends(method(0, ConnectionBlocked { reason: "low on memory" }));
        assert!(matches!(&s.take_events()[..], [Event::Blocked { reason }] if reason == "low on memory"));
        let p = s.submit(publish_command(ch, b"x"));
        let a = s.submit_method(ch, BasicAck { delivery_tag: DeliveryTag(5), multiple: false });
        assert_eq!(s.client_sent(), ["1 basic.ack"]);
        assert!(matches!(s.take_events()[..], [Event::Sent { request }] if request == a));
        s.broker_sends(method(0, ConnectionUnblocked {}));
        assert_eq!(s.client_sent(), ["1 basic.publish", "1 header 1", "1 body 1"]);
        assert!(
            matches!(s.take_events()[..], [Event::Unblocked, Event::Published { request, sequence: None, .. }] if request == p)
        );
    }

    #[test]
    fn acks_nacks_and_rejects_are_encoded_by_the_core_and_refused_on_a_closed_channel() {
        use crate::core::command::Verdict;
        let mut s = Script::connected();
        let ch = s.open_channel();
        for verdict in [Verdict::Ack, Verdict::Nack { requeue: true }, Verdict::Reject { requeue: false }] {
            s.submit(Command::Ack { channel: ch, tag: DeliveryTag(9), multiple: false, verdict });
        }
        assert_eq!(s.client_sent(), ["1 basic.ack", "1 basic.nack", "1 basic.reject"]);
        assert!(matches!(s.take_events()[..], [Event::Sent { .. }, Event::Sent { .. }, Event::Sent { .. }]));
        let late = s.submit(Command::Ack {
            channel: ChannelId(7),
            tag: DeliveryTag(1),
            multiple: true,
            verdict: Verdict::Ack,
        });
        assert!(
            matches!(s.take_events()[..], [Event::Failed { request, error: ChannelError::NotOpen(7) }] if request == late)
        );
        assert!(s.client_sent().is_empty());
    }

    #[test]
    fn channel_flow_stops_and_restarts_publishing() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        s.broker_sends(method(1, ChannelFlow { active: false }));
        assert_eq!(s.client_sent(), ["1 channel.flow-ok"]);
        s.submit(publish_command(ch, b"x"));
        assert!(s.client_sent().is_empty());
        s.broker_sends(method(1, ChannelFlow { active: true }));
        assert_eq!(s.client_sent(), ["1 channel.flow-ok", "1 basic.publish", "1 header 1", "1 body 1"]);
    }

    #[test]
    fn a_large_body_is_queued_without_a_copy() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let body = Bytes::from(vec![7u8; 10_000]);
        let Command::Publish { prefix, .. } = publish_command(ch, b"") else { unreachable!() };
        s.conn.submit(s.now, Command::Publish { channel: ch, prefix, body: body.clone() });
        let chunks: Vec<Bytes> = std::iter::from_fn(|| s.conn.poll_transmit(s.now)).collect();
        let body_range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        let shared: usize =
            chunks.iter().filter(|c| body_range.contains(&(c.as_ptr() as usize))).map(|c| c.len()).sum();
        assert_eq!(shared, 10_000, "every body byte goes out as a slice of the caller's Bytes");
    }

    #[test]
    fn the_broker_cancelling_a_consumer_is_reported_and_answered() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        s.broker_sends(method(1, BasicCancel { consumer_tag: "c1", no_wait: false }));
        assert_eq!(s.client_sent(), ["1 basic.cancel-ok"]);
        assert!(
            matches!(&s.take_events()[..], [Event::Cancelled { channel, consumer_tag }] if *channel == ch && consumer_tag == "c1")
        );
        s.broker_sends(method(1, BasicCancel { consumer_tag: "c2", no_wait: true }));
        assert!(s.client_sent().is_empty(), "no-wait: nothing to answer");
    }

    #[test]
    fn broker_connection_close_fails_everything_and_is_acknowledged() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let req = s.submit_method(ch, QueueDeclare::default());
        s.client_sent();
        s.broker_sends(method(
            0,
            ConnectionClose { reply_code: ReplyCode::CONNECTION_FORCED, reply_text: "shutdown", ..Default::default() },
        ));
        assert_eq!(s.client_sent(), ["0 connection.close-ok"]);
        let events = s.take_events();
        assert!(matches!(&events[..], [
            Event::Failed { request, error: ChannelError::Connection(ConnectionError::ClosedByBroker { code: ReplyCode::CONNECTION_FORCED, .. }) },
            Event::ChannelClosed { .. },
            Event::Closed(ConnectionError::ClosedByBroker { method: None, .. }),
        ] if *request == req));
        assert!(s.conn.is_closed());
        let late = s.submit(Command::OpenChannel);
        assert!(matches!(s.take_events()[..], [Event::Failed { request, .. }] if request == late));
    }

    #[test]
    fn client_close_waits_for_close_ok_and_times_out_without_it() {
        let mut s = Script::connected();
        s.submit(Command::Close { code: ReplyCode::REPLY_SUCCESS, text: "bye".into() });
        assert_eq!(s.client_sent(), ["0 connection.close"]);
        s.take_events();
        s.advance(Duration::from_secs(9));
        assert!(!s.conn.is_closed());
        s.advance(Duration::from_secs(2));
        assert!(matches!(&s.take_events()[..], [Event::Closed(ConnectionError::Timeout(_))]));

        let mut s = Script::connected();
        s.submit(Command::Close { code: ReplyCode::REPLY_SUCCESS, text: "bye".into() });
        s.take_events();
        s.broker_sends(method(0, ConnectionCloseOk {}));
        assert!(matches!(
            &s.take_events()[..],
            [Event::Closed(ConnectionError::ClosedByClient { code: ReplyCode::REPLY_SUCCESS, .. })]
        ));
    }

    #[test]
    fn heartbeats_go_out_when_idle_and_silence_kills_the_connection() {
        let mut s = Script::connected();
        s.advance(Duration::from_secs(60));
        assert_eq!(s.client_sent(), ["heartbeat"]);
        s.broker_sends(Bytes::from_static(&[8, 0, 0, 0, 0, 0, 0, 0xCE]));
        s.advance(Duration::from_secs(60));
        assert_eq!(s.client_sent(), ["heartbeat"]);
        assert!(!s.conn.is_closed(), "the broker spoke 60 s ago");
        s.advance(Duration::from_secs(60));
        assert!(matches!(&s.take_events()[..], [Event::Closed(ConnectionError::HeartbeatTimeout)]));
    }

    #[test]
    fn a_broker_silent_during_the_handshake_times_out() {
        let mut s = Script::new();
        s.advance(Duration::from_secs(31));
        assert!(matches!(&s.take_events()[..], [Event::Closed(ConnectionError::Timeout("the handshake"))]));
    }

    #[test]
    fn a_content_header_without_a_method_closes_with_unexpected_frame() {
        let mut s = Script::connected();
        s.open_channel();
        s.broker_sends(content(1, b"x", 4096));
        let codes = s.client_frames(|_, p| match p {
            FramePayload::Method(Method::ConnectionClose(c)) => Some(c.reply_code),
            _ => None,
        });
        assert_eq!(codes, [Some(ReplyCode::UNEXPECTED_FRAME)]);
    }

    #[test]
    fn a_frame_on_an_unopened_channel_closes_with_channel_error() {
        let mut s = Script::connected();
        s.broker_sends(method(9, BasicAck::default()));
        let codes = s.client_frames(|_, p| match p {
            FramePayload::Method(Method::ConnectionClose(c)) => Some(c.reply_code),
            _ => None,
        });
        assert_eq!(codes, [Some(ReplyCode::CHANNEL_ERROR)]);
    }

    #[test]
    fn a_bad_frame_end_closes_with_frame_error_and_eof_ends_it() {
        let mut s = Script::connected();
        s.broker_sends(Bytes::from_static(&[8, 0, 0, 0, 0, 0, 0, 0x00]));
        assert_eq!(
            s.client_frames(|_, p| match p {
                FramePayload::Method(Method::ConnectionClose(c)) => Some(c.reply_code),
                _ => None,
            }),
            [Some(ReplyCode::FRAME_ERROR)]
        );
        s.conn.handle_eof(s.now, "reset");
        s.advance(Duration::ZERO);
        assert!(matches!(
            &s.take_events()[..],
            [Event::Closed(ConnectionError::ProtocolViolation { code: ReplyCode::FRAME_ERROR, .. })]
        ));
    }

    #[test]
    fn close_ok_after_a_bad_frame_still_completes_the_close() {
        let mut s = Script::connected();
        s.broker_sends(Bytes::from_static(&[3, 0, 1, 0x40, 0, 0, 0])); // announces 1 GiB
        assert_eq!(s.client_sent(), ["0 connection.close"]);
        s.broker_sends(method(0, ConnectionCloseOk {}));
        let events = s.take_events();
        assert!(
            matches!(
                &events[..],
                [Event::Closed(ConnectionError::ProtocolViolation { code: ReplyCode::FRAME_ERROR, .. })]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn update_secret_is_answered_by_its_ok_and_an_unasked_ok_is_a_violation() {
        let mut s = Script::connected();
        let req = s.submit(Command::UpdateSecret { secret: Bytes::from_static(b"token-2"), reason: "refresh".into() });
        assert_eq!(s.client_sent(), ["0 connection.update-secret"]);
        s.broker_sends(method(0, ConnectionUpdateSecretOk {}));
        assert!(matches!(s.take_events()[..], [Event::Sent { request }] if request == req));
        s.broker_sends(method(0, ConnectionUpdateSecretOk {}));
        assert_eq!(s.client_sent(), ["0 connection.close"]);
    }

    #[test]
    fn a_protocol_header_in_reply_is_a_mismatch() {
        let mut s = Script::new();
        s.broker_sends(Bytes::from_static(b"AMQP\x00\x00\x09\x01"));
        s.conn.handle_eof(s.now, "closed");
        s.advance(Duration::ZERO);
        assert!(matches!(&s.take_events()[..], [Event::Closed(ConnectionError::ProtocolMismatch)]));
    }

    #[test]
    fn channel_close_from_the_client_is_ordered_after_earlier_requests() {
        let mut s = Script::connected();
        let ch = s.open_channel();
        let declare = s.submit_method(ch, QueueDeclare::default());
        let close =
            s.submit(Command::CloseChannel { channel: ch, code: ReplyCode::REPLY_SUCCESS, text: "done".into() });
        assert_eq!(s.client_sent(), ["1 queue.declare"]);
        s.broker_sends(method(1, QueueDeclareOk::default()));
        assert_eq!(s.client_sent(), ["1 channel.close"]);
        s.broker_sends(method(1, BasicDeliver::default())); // discarded while closing
        s.broker_sends(method(1, ChannelCloseOk {}));
        let events = s.take_events();
        assert!(matches!(&events[..], [
            Event::Reply { request: d, .. }, Event::Sent { request: c }, Event::ChannelClosed { error: ChannelError::ClosedByClient { .. }, .. },
        ] if *d == declare && *c == close));
    }

    #[test]
    fn channels_are_allocated_in_turn_up_to_channel_max() {
        let mut s = Script::new();
        s.broker_sends(method(
            0,
            ConnectionStart { version_major: 0, version_minor: 9, mechanisms: b"PLAIN", ..Default::default() },
        ));
        s.broker_sends(method(0, ConnectionTune { channel_max: 2, frame_max: 4096, heartbeat: 0 }));
        s.broker_sends(method(0, ConnectionOpenOk::default()));
        s.client_sent();
        s.take_events();
        assert_eq!(s.open_channel(), ChannelId(1));
        assert_eq!(s.open_channel(), ChannelId(2));
        let third = s.submit(Command::OpenChannel);
        assert!(
            matches!(s.take_events()[..], [Event::Failed { request, error: ChannelError::NoFreeChannel(2) }] if request == third)
        );
    }

    #[test]
    fn a_closed_channel_number_is_not_reused_at_once_and_its_late_frames_are_dropped() {
        let mut s = Script::connected();
        let first = s.open_channel();
        s.broker_sends(method(
            first.0,
            ChannelClose { reply_code: ReplyCode::PRECONDITION_FAILED, ..Default::default() },
        ));
        assert_eq!(s.client_sent(), ["1 channel.close-ok"]);
        // Sent by the broker before it saw the close-ok: dropped, not a protocol violation.
        s.broker_sends(method(first.0, BasicDeliver::default()));
        assert!(!s.take_events().iter().any(|e| matches!(e, Event::Closed(_))));
        let second = s.open_channel();
        assert_ne!(second, first, "a fresh number while others are free");
        // A channel never opened is still a violation.
        s.broker_sends(method(9, BasicDeliver::default()));
        assert_eq!(s.client_sent(), ["0 connection.close"]);
    }
}
