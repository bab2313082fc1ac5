//! connection.tune negotiation by the spec's rules: for each of channel_max, frame_max and
//! heartbeat, 0 means "no limit", and where both sides set one the lower wins. Pure arithmetic.

use core::time::Duration;

use amqp_codec::FRAME_MIN_SIZE;

/// The largest frame this client will buffer when both sides say "no limit".
pub const FRAME_MAX_CEILING: u32 = 128 * 1024 * 1024;

/// Limits on one side of the negotiation; 0 means no limit (for heartbeat: none wanted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Highest channel number.
    pub channel_max: u16,
    /// Largest frame, header and end octet included.
    pub frame_max: u32,
    /// Heartbeat interval in seconds.
    pub heartbeat: u16,
}

/// What both sides settled on, with no zeros left: the values the connection runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuned {
    /// Highest usable channel number (at least 1).
    pub channel_max: u16,
    /// Largest frame either side may send.
    pub frame_max: u32,
    /// Heartbeat interval; `None` disables heartbeats.
    pub heartbeat: Option<Duration>,
}

impl Limits {
    /// The values to send in tune-ok, given the server's tune.
    pub fn negotiate(self, server: Limits) -> Limits {
        Limits {
            channel_max: lower_nonzero(self.channel_max.into(), server.channel_max.into()) as u16,
            frame_max: lower_nonzero(self.frame_max.into(), server.frame_max.into()) as u32,
            heartbeat: lower_nonzero(self.heartbeat.into(), server.heartbeat.into()) as u16,
        }
    }

    /// The negotiated values with the zeros made concrete: no channel limit is 65535, no frame
    /// limit is [`FRAME_MAX_CEILING`], and frame_max is never below the spec's minimum of 4096.
    pub fn tuned(self) -> Tuned {
        Tuned {
            channel_max: if self.channel_max == 0 { u16::MAX } else { self.channel_max },
            frame_max: match self.frame_max {
                0 => FRAME_MAX_CEILING,
                n => n.max(FRAME_MIN_SIZE),
            },
            heartbeat: (self.heartbeat > 0).then(|| Duration::from_secs(self.heartbeat.into())),
        }
    }
}

/// The lower of two limits where 0 means none.
fn lower_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(channel_max: u16, frame_max: u32, heartbeat: u16) -> Limits {
        Limits { channel_max, frame_max, heartbeat }
    }

    #[test]
    fn the_lower_non_zero_value_wins_each_limit() {
        let ours = limits(2047, 131_072, 60);
        assert_eq!(ours.negotiate(limits(0, 131_072, 30)), limits(2047, 131_072, 30));
        assert_eq!(ours.negotiate(limits(100, 4096, 0)), limits(100, 4096, 60));
        assert_eq!(limits(0, 0, 0).negotiate(limits(0, 0, 0)), limits(0, 0, 0));
    }

    #[test]
    fn zeros_become_concrete_limits() {
        let tuned = limits(0, 0, 0).tuned();
        assert_eq!(tuned, Tuned { channel_max: u16::MAX, frame_max: FRAME_MAX_CEILING, heartbeat: None });
        assert_eq!(limits(1, 512, 5).tuned().frame_max, FRAME_MIN_SIZE);
        assert_eq!(limits(1, 512, 5).tuned().heartbeat, Some(Duration::from_secs(5)));
    }
}
