//! The confirm class (85), RabbitMQ's publisher confirms. Field lists only.

use super::fields::method_structs;

method_structs! {
    /// confirm.select (85,10): the broker acks or nacks every later publish on the channel.
    ConfirmSelect {
        nowait: bool,
    }
    /// confirm.select-ok (85,11).
    ConfirmSelectOk {}
}
