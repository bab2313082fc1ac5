//! The channel class (20): open, flow control and close. Field lists only.

use super::fields::method_structs;
use crate::ids::{ClassId, MethodId, ReplyCode};

method_structs! {
    /// channel.open (20,10).
    ChannelOpen<'a> {
        reserved_1: &'a str,
    }
    /// channel.open-ok (20,11).
    ChannelOpenOk<'a> {
        reserved_1: &'a [u8],
    }
    /// channel.flow (20,20): asks the peer to stop or restart sending content.
    ChannelFlow {
        active: bool,
    }
    /// channel.flow-ok (20,21).
    ChannelFlowOk {
        active: bool,
    }
    /// channel.close (20,40): either side closes the channel, saying why.
    ChannelClose<'a> {
        reply_code: ReplyCode,
        reply_text: &'a str,
        class_id: ClassId,
        method_id: MethodId,
    }
    /// channel.close-ok (20,41).
    ChannelCloseOk {}
}
