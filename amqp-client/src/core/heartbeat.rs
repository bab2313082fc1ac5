//! Heartbeat deadlines: send a heartbeat when nothing was sent for an interval, and declare the
//! peer dead after two intervals without a byte from it. Time is an input; nothing here sleeps.

use core::time::Duration;
use std::time::Instant;

/// The heartbeat timers of one connection.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    interval: Duration,
    last_sent: Instant,
    last_received: Instant,
    /// The client is not reading (a consumer is full): silence proves nothing about the peer.
    reading_paused: bool,
}

/// What a timeout means for the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing is due.
    None,
    /// Send a heartbeat frame now.
    Send,
    /// The peer has been silent for two intervals: it is gone.
    PeerDead,
}

impl Heartbeat {
    /// Starts the timers at `now` for `interval`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Heartbeat { interval, last_sent: now, last_received: now, reading_paused: false }
    }

    /// Anything was written to the peer.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// Anything was read from the peer: every frame counts, not only heartbeats.
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// The client stops (true) or resumes (false) reading the socket. Resuming counts as
    /// hearing from the peer, whose frames may have waited unread all along.
    pub fn reading_paused(&mut self, paused: bool, now: Instant) {
        self.reading_paused = paused;
        if !paused {
            self.last_received = now;
        }
    }

    /// The next instant at which [`Heartbeat::poll`] has something to do.
    pub fn deadline(&self) -> Instant {
        let send = self.last_sent + self.interval;
        if self.reading_paused { send } else { send.min(self.dead_at()) }
    }

    fn dead_at(&self) -> Instant {
        self.last_received + self.interval * 2
    }

    /// What is due at `now`.
    pub fn poll(&self, now: Instant) -> HeartbeatAction {
        if !self.reading_paused && now >= self.dead_at() {
            HeartbeatAction::PeerDead
        } else if now >= self.last_sent + self.interval {
            HeartbeatAction::Send
        } else {
            HeartbeatAction::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_due_after_an_interval_of_silence_and_death_after_two() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(10 * s, t0);
        assert_eq!(hb.poll(t0 + 9 * s), HeartbeatAction::None);
        assert_eq!(hb.deadline(), t0 + 10 * s);
        assert_eq!(hb.poll(t0 + 10 * s), HeartbeatAction::Send);
        hb.sent(t0 + 10 * s);
        assert_eq!(hb.deadline(), t0 + 20 * s);
        assert_eq!(hb.poll(t0 + 20 * s), HeartbeatAction::PeerDead);
    }

    #[test]
    fn silence_while_the_client_is_not_reading_is_not_the_peers_death() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(10 * s, t0);
        hb.reading_paused(true, t0 + 5 * s);
        hb.sent(t0 + 25 * s);
        assert_eq!(hb.poll(t0 + 30 * s), HeartbeatAction::None);
        hb.reading_paused(false, t0 + 30 * s);
        assert_eq!(hb.poll(t0 + 49 * s), HeartbeatAction::Send);
        assert_eq!(hb.poll(t0 + 50 * s), HeartbeatAction::PeerDead);
    }

    #[test]
    fn any_inbound_frame_keeps_the_peer_alive() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(10 * s, t0);
        hb.received(t0 + 15 * s);
        hb.sent(t0 + 15 * s);
        assert_eq!(hb.poll(t0 + 24 * s), HeartbeatAction::None);
        assert_eq!(hb.poll(t0 + 35 * s), HeartbeatAction::PeerDead);
    }
}
