//! One channel's state machine: open, the queue of requests with one synchronous request in
//! flight, content, confirm numbering, flow, and close in both directions.
//!
//! ```text
//!   Opening --open-ok--> Open --close sent--> Closing --close-ok--> (removed)
//!      |                  |                      |
//!      +------------------+--broker's close------+--> close-ok sent, (removed)
//! ```
//!
//! Pure: it receives frame payloads and requests, and writes frames and events into `Out`.
//! Touches `amqp-codec`, `rpc.rs` and `content.rs`.

use std::collections::VecDeque;

use amqp_codec::method::{
    BasicAck, BasicCancelOk, BasicNack, BasicReject, ChannelClose, ChannelCloseOk, ChannelFlowOk,
};
use amqp_codec::{
    ChannelId, ClassId, DeliveryTag, FRAME_END, FrameType, Method, MethodId, ReplyCode, body_chunks, encode_method,
    frame_header,
};
use bytes::{BufMut, Bytes};

use super::body_pool::BodyPool;
use super::command::{RequestId, Verdict};
use super::content::{Content, ContentKind};
use super::error::{ChannelError, ConnectionError};
use super::event::{Event, Message};
use super::rpc::{self, Expect, Kind};
use super::transmit::{COPY_BODY_BELOW, Transmit};

/// Where a channel's output goes, and what the connection around it allows.
pub struct Out<'a> {
    /// Frames to send.
    pub transmit: &'a mut Transmit,
    /// Events for the driver.
    pub events: &'a mut VecDeque<Event>,
    /// The negotiated frame_max.
    pub frame_max: u32,
    /// The broker blocked publishing (connection.blocked).
    pub blocked: bool,
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    id: ChannelId,
    state: State,
}

#[derive(Debug)]
enum State {
    Opening { request: RequestId },
    Open(Open),
    Closing { request: Option<RequestId>, error: ChannelError },
}

#[derive(Debug, Default)]
struct Open {
    queue: VecDeque<Queued>,
    in_flight: Option<(RequestId, Expect)>,
    content: Content,
    /// The sequence number of the next publish, once confirm.select went out.
    next_confirm: Option<u64>,
    /// channel.flow from the broker stopped content.
    flow_stopped: bool,
}

#[derive(Debug)]
enum Queued {
    Method { request: RequestId, frame: Bytes, kind: Kind, confirm_select: bool },
    Publish { request: RequestId, prefix: Bytes, body: Bytes },
    Close { request: RequestId, code: ReplyCode, text: String },
}

/// What the channel table should do with a channel after an input.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Keep it.
    Keep,
    /// It is closed: remove it and free its number.
    Remove,
}

impl Channel {
    /// A channel whose channel.open has been sent.
    pub fn opening(id: ChannelId, request: RequestId) -> Self {
        Channel { id, state: State::Opening { request } }
    }

    /// Its number.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// Queues a method frame the API encoded; `method` is that frame, decoded.
    pub fn submit_method(&mut self, request: RequestId, frame: Bytes, method: &Method<'_>, out: &mut Out<'_>) {
        let State::Open(open) = &mut self.state else {
            out.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(self.id.0) });
            return;
        };
        match rpc::kind(method) {
            Kind::NotAllowed => {
                let error = ChannelError::BadRequest(format!("{} is not sent on an open channel", method.name()));
                out.events.push_back(Event::Failed { request, error });
            }
            // Acks go out at once: they depend on nothing queued, and must not wait behind a
            // blocked publish or a slow request (the broker would hold the messages meanwhile).
            Kind::Ack => {
                out.transmit.push(frame);
                out.events.push_back(Event::Sent { request });
            }
            kind => {
                let confirm_select = matches!(method, Method::ConfirmSelect(_));
                open.queue.push_back(Queued::Method { request, frame, kind, confirm_select });
                self.pump(out);
            }
        }
    }

    /// Sends an ack, nack or reject at once (see `submit_method` on why acks never queue).
    pub fn submit_ack(
        &mut self,
        request: RequestId,
        tag: DeliveryTag,
        multiple: bool,
        verdict: Verdict,
        out: &mut Out<'_>,
    ) {
        if !matches!(self.state, State::Open(_)) {
            out.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(self.id.0) });
            return;
        }
        let method: Method<'_> = match verdict {
            Verdict::Ack => BasicAck { delivery_tag: tag, multiple }.into(),
            Verdict::Nack { requeue } => BasicNack { delivery_tag: tag, multiple, requeue }.into(),
            Verdict::Reject { requeue } => BasicReject { delivery_tag: tag, requeue }.into(),
        };
        send(self.id, method, out);
        out.events.push_back(Event::Sent { request });
    }

    /// Queues a message.
    pub fn submit_publish(&mut self, request: RequestId, prefix: Bytes, body: Bytes, out: &mut Out<'_>) {
        let State::Open(open) = &mut self.state else {
            out.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(self.id.0) });
            return;
        };
        open.queue.push_back(Queued::Publish { request, prefix, body });
        self.pump(out);
    }

    /// Queues channel.close behind everything submitted before it.
    pub fn submit_close(&mut self, request: RequestId, code: ReplyCode, text: String, out: &mut Out<'_>) {
        let State::Open(open) = &mut self.state else {
            out.events.push_back(Event::Failed { request, error: ChannelError::NotOpen(self.id.0) });
            return;
        };
        open.queue.push_back(Queued::Close { request, code, text });
        self.pump(out);
    }

    /// Sends what the queue allows: everything up to the next synchronous request, which
    /// then waits for its reply. Publishes wait while the broker blocks or stops the flow.
    pub fn pump(&mut self, out: &mut Out<'_>) {
        let State::Open(open) = &mut self.state else { return };
        while open.in_flight.is_none() {
            let paused = out.blocked || open.flow_stopped;
            match open.queue.front() {
                None => return,
                Some(Queued::Publish { .. }) if paused => return,
                Some(_) => {}
            }
            let Some(item) = open.queue.pop_front() else { return };
            match item {
                Queued::Method { request, frame, kind, confirm_select } => {
                    out.transmit.push(frame);
                    if confirm_select && open.next_confirm.is_none() {
                        open.next_confirm = Some(1);
                    }
                    match kind {
                        Kind::Sync(expect) => open.in_flight = Some((request, expect)),
                        _ => out.events.push_back(Event::Sent { request }),
                    }
                }
                Queued::Publish { request, prefix, body } => {
                    out.transmit.push(prefix);
                    push_body(self.id, body, out);
                    let sequence = open.next_confirm.map(|n| {
                        open.next_confirm = Some(n + 1);
                        DeliveryTag(n)
                    });
                    out.events.push_back(Event::Published { request, channel: self.id, sequence });
                }
                Queued::Close { request, code, text } => {
                    let close = ChannelClose { reply_code: code, reply_text: &text, ..Default::default() };
                    send(self.id, close.into(), out);
                    let error = ChannelError::ClosedByClient { code, text };
                    let leftover = core::mem::take(&mut open.queue);
                    fail_all(leftover, None, &error, out);
                    self.state = State::Closing { request: Some(request), error };
                    return;
                }
            }
        }
    }

    /// A method from the broker on this channel; `payload` is the frame's payload.
    pub fn recv_method(
        &mut self,
        method: &Method<'_>,
        payload: Bytes,
        out: &mut Out<'_>,
    ) -> Result<After, ConnectionError> {
        match &mut self.state {
            State::Opening { request } => match method {
                Method::ChannelOpenOk(_) => {
                    out.events.push_back(Event::ChannelOpened { request: *request, channel: self.id });
                    self.state = State::Open(Open::default());
                    Ok(After::Keep)
                }
                Method::ChannelClose(close) => {
                    let request = *request;
                    let error = broker_error(close.reply_code, close.reply_text, close.class_id, close.method_id);
                    send(self.id, ChannelCloseOk {}.into(), out);
                    out.events.push_back(Event::Failed { request, error });
                    Ok(After::Remove)
                }
                other => Err(violation(self.id, other, "while opening")),
            },
            // After sending close, the spec has us discard everything but close and close-ok.
            State::Closing { request, error } => match method {
                Method::ChannelCloseOk(_) | Method::ChannelClose(_) => {
                    if matches!(method, Method::ChannelClose(_)) {
                        send(self.id, ChannelCloseOk {}.into(), out);
                    }
                    if let Some(request) = request.take() {
                        out.events.push_back(Event::Sent { request });
                    }
                    out.events.push_back(Event::ChannelClosed { channel: self.id, error: error.clone() });
                    Ok(After::Remove)
                }
                _ => Ok(After::Keep),
            },
            State::Open(_) => self.recv_open(method, payload, out),
        }
    }

    fn recv_open(&mut self, method: &Method<'_>, payload: Bytes, out: &mut Out<'_>) -> Result<After, ConnectionError> {
        let id = self.id;
        let State::Open(open) = &mut self.state else { unreachable!("called for open channels only") };
        if !open.content.is_idle() {
            return Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::UNEXPECTED_FRAME,
                reason: format!("{} on channel {id} in the middle of a message", method.name()),
            });
        }
        match method {
            Method::BasicDeliver(_) => open.content.start(ContentKind::Deliver, payload)?,
            Method::BasicReturn(_) => open.content.start(ContentKind::Return, payload)?,
            Method::BasicGetOk(_) => {
                let request = take_reply(open, 60, 71).ok_or_else(|| violation(id, method, "without a basic.get"))?;
                open.content.start(ContentKind::GetOk(request), payload)?;
            }
            Method::BasicAck(ack) => {
                let event = Event::Confirmed { channel: id, tag: ack.delivery_tag, multiple: ack.multiple, ack: true };
                out.events.push_back(event);
            }
            Method::BasicNack(nack) => {
                let event =
                    Event::Confirmed { channel: id, tag: nack.delivery_tag, multiple: nack.multiple, ack: false };
                out.events.push_back(event);
            }
            Method::BasicCancel(cancel) => {
                if !cancel.no_wait {
                    send(id, BasicCancelOk { consumer_tag: cancel.consumer_tag }.into(), out);
                }
                out.events.push_back(Event::Cancelled { channel: id, consumer_tag: cancel.consumer_tag.to_owned() });
            }
            Method::ChannelFlow(flow) => {
                open.flow_stopped = !flow.active;
                send(id, ChannelFlowOk { active: flow.active }.into(), out);
                out.events.push_back(Event::Flow { channel: id, active: flow.active });
                self.pump(out);
            }
            Method::ChannelClose(close) => {
                send(id, ChannelCloseOk {}.into(), out);
                let error = broker_error(close.reply_code, close.reply_text, close.class_id, close.method_id);
                let in_flight = open.in_flight.take().map(|(request, _)| request);
                fail_all(core::mem::take(&mut open.queue), in_flight, &error, out);
                out.events.push_back(Event::ChannelClosed { channel: id, error });
                return Ok(After::Remove);
            }
            other => {
                let (class, method_id) = other.id();
                let request = take_reply(open, class.0, method_id.0)
                    .ok_or_else(|| violation(id, other, "that answers no request"))?;
                out.events.push_back(Event::Reply { request, channel: id, method: payload });
                self.pump(out);
            }
        }
        Ok(After::Keep)
    }

    /// A content header frame from the broker.
    pub fn recv_header(&mut self, payload: Bytes, out: &mut Out<'_>) -> Result<(), ConnectionError> {
        let State::Open(open) = &mut self.state else { return self.ignore_or_unexpected("content header") };
        let done = open.content.header(payload)?;
        self.deliver(done, out);
        Ok(())
    }

    /// A content body frame from the broker.
    pub fn recv_body(&mut self, payload: Bytes, bodies: &BodyPool, out: &mut Out<'_>) -> Result<(), ConnectionError> {
        let State::Open(open) = &mut self.state else { return self.ignore_or_unexpected("content body") };
        let done = open.content.body(payload, bodies)?;
        self.deliver(done, out);
        Ok(())
    }

    fn ignore_or_unexpected(&self, what: &str) -> Result<(), ConnectionError> {
        match self.state {
            State::Closing { .. } => Ok(()),
            _ => Err(ConnectionError::ProtocolViolation {
                code: ReplyCode::UNEXPECTED_FRAME,
                reason: format!("{what} on channel {} before it opened", self.id),
            }),
        }
    }

    fn deliver(&mut self, done: Option<(ContentKind, Message)>, out: &mut Out<'_>) {
        let Some((kind, message)) = done else { return };
        let channel = self.id;
        out.events.push_back(match kind {
            ContentKind::Deliver => Event::Delivery { channel, message },
            ContentKind::Return => Event::Returned { channel, message },
            ContentKind::GetOk(request) => Event::GetOk { request, message },
        });
        if matches!(kind, ContentKind::GetOk(_)) {
            self.pump(out);
        }
    }

    /// The connection ended: fail everything pending with `error`.
    pub fn fail(self, error: &ConnectionError, out: &mut Out<'_>) {
        let error = ChannelError::Connection(error.clone());
        match self.state {
            State::Opening { request } => out.events.push_back(Event::Failed { request, error: error.clone() }),
            State::Open(open) => fail_all(open.queue, open.in_flight.map(|(r, _)| r), &error, out),
            State::Closing { request, .. } => {
                if let Some(request) = request {
                    out.events.push_back(Event::Failed { request, error: error.clone() });
                }
            }
        }
        out.events.push_back(Event::ChannelClosed { channel: self.id, error });
    }
}

/// The request in flight if `(class, method)` answers it.
fn take_reply(open: &mut Open, class: u16, method: u16) -> Option<RequestId> {
    match open.in_flight {
        Some((request, expect)) if expect.matches(class, method) => {
            open.in_flight = None;
            Some(request)
        }
        _ => None,
    }
}

fn fail_all(queue: VecDeque<Queued>, in_flight: Option<RequestId>, error: &ChannelError, out: &mut Out<'_>) {
    let queued = queue.into_iter().map(|q| match q {
        Queued::Method { request, .. } | Queued::Publish { request, .. } | Queued::Close { request, .. } => request,
    });
    for request in in_flight.into_iter().chain(queued) {
        out.events.push_back(Event::Failed { request, error: error.clone() });
    }
}

fn broker_error(code: ReplyCode, text: &str, class: ClassId, method: MethodId) -> ChannelError {
    ChannelError::ClosedByBroker {
        code,
        text: text.to_owned(),
        method: Some((class, method)).filter(|(c, _)| c.0 != 0),
    }
}

fn violation(channel: ChannelId, method: &Method<'_>, when: &str) -> ConnectionError {
    ConnectionError::ProtocolViolation {
        code: ReplyCode::COMMAND_INVALID,
        reason: format!("{} on channel {channel} {when}", method.name()),
    }
}

/// Encodes a method the core itself sends (close-ok, flow-ok, cancel-ok, close).
pub fn send(channel: ChannelId, method: Method<'_>, out: &mut Out<'_>) {
    // These methods are a few dozen bytes and every frame_max is at least 4096; a reply text
    // over 255 bytes is cut by the API before it gets here. Should encoding fail anyway,
    // the frame is not sent and the broker's timeout ends the exchange.
    let _ = encode_method(channel, &method, out.frame_max, out.transmit.frames());
}

/// Frames a body: small ones are copied beside their headers, larger ones queued as slices.
fn push_body(channel: ChannelId, body: Bytes, out: &mut Out<'_>) {
    let Ok(chunks) = body_chunks(body.len(), out.frame_max) else { return };
    for range in chunks {
        let header = frame_header(FrameType::Body, channel, range.len());
        if range.len() < COPY_BODY_BELOW {
            let frames = out.transmit.frames();
            frames.put_slice(&header);
            frames.put_slice(&body[range]);
            frames.put_u8(FRAME_END);
        } else {
            out.transmit.frames().put_slice(&header);
            out.transmit.push(body.slice(range));
            out.transmit.frames().put_u8(FRAME_END);
        }
    }
}
