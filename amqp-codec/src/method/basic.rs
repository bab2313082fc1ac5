//! The basic class (60): QoS, consumers, publishing, delivery, acknowledgement, and RabbitMQ's
//! basic.nack. Field lists only.

use super::fields::method_structs;
use crate::ids::{DeliveryTag, ReplyCode};
use crate::table::Table;

method_structs! {
    /// basic.qos (60,10): prefetch limits, per consumer or (global) per channel in RabbitMQ.
    BasicQos {
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    }
    /// basic.qos-ok (60,11).
    BasicQosOk {}
    /// basic.consume (60,20): starts a consumer; an empty tag asks the server for one.
    BasicConsume<'a> {
        reserved_1: u16,
        queue: &'a str,
        consumer_tag: &'a str,
        no_local: bool,
        no_ack: bool,
        exclusive: bool,
        no_wait: bool,
        arguments: Table<'a>,
    }
    /// basic.consume-ok (60,21).
    BasicConsumeOk<'a> {
        consumer_tag: &'a str,
    }
    /// basic.cancel (60,30): ends a consumer; RabbitMQ also sends it when the queue goes away.
    BasicCancel<'a> {
        consumer_tag: &'a str,
        no_wait: bool,
    }
    /// basic.cancel-ok (60,31).
    BasicCancelOk<'a> {
        consumer_tag: &'a str,
    }
    /// basic.publish (60,40): content follows.
    BasicPublish<'a> {
        reserved_1: u16,
        exchange: &'a str,
        routing_key: &'a str,
        mandatory: bool,
        immediate: bool,
    }
    /// basic.return (60,50): an unroutable mandatory message comes back; content follows.
    BasicReturn<'a> {
        reply_code: ReplyCode,
        reply_text: &'a str,
        exchange: &'a str,
        routing_key: &'a str,
    }
    /// basic.deliver (60,60): a message for a consumer; content follows.
    BasicDeliver<'a> {
        consumer_tag: &'a str,
        delivery_tag: DeliveryTag,
        redelivered: bool,
        exchange: &'a str,
        routing_key: &'a str,
    }
    /// basic.get (60,70): fetches one message.
    BasicGet<'a> {
        reserved_1: u16,
        queue: &'a str,
        no_ack: bool,
    }
    /// basic.get-ok (60,71): a fetched message; content follows.
    BasicGetOk<'a> {
        delivery_tag: DeliveryTag,
        redelivered: bool,
        exchange: &'a str,
        routing_key: &'a str,
        message_count: u32,
    }
    /// basic.get-empty (60,72).
    BasicGetEmpty<'a> {
        reserved_1: &'a str,
    }
    /// basic.ack (60,80): from a consumer, or from the broker in confirm mode.
    BasicAck {
        delivery_tag: DeliveryTag,
        multiple: bool,
    }
    /// basic.reject (60,90).
    BasicReject {
        delivery_tag: DeliveryTag,
        requeue: bool,
    }
    /// basic.recover-async (60,100): deprecated, kept for completeness.
    BasicRecoverAsync {
        requeue: bool,
    }
    /// basic.recover (60,110): redeliver unacknowledged messages.
    BasicRecover {
        requeue: bool,
    }
    /// basic.recover-ok (60,111).
    BasicRecoverOk {}
    /// basic.nack (60,120), RabbitMQ: a negative ack, both ways.
    BasicNack {
        delivery_tag: DeliveryTag,
        multiple: bool,
        requeue: bool,
    }
}
