//! Perf message bodies: a send timestamp, the producer and its sequence number up front, zeros
//! after. Bodies
//! are cut from a shared arena, so a publish costs no allocation of its own; the arena's memory
//! comes back once the bodies cut from it have been written and dropped.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes at the start of every body: nanoseconds since the run's clock started, then the
/// producer (top 16 bits) and its sequence number (low 48 bits), both big-endian u64.
pub const STAMP_LEN: usize = 16;

/// The sequence number's bits: 2^48 messages is nine years of one producer at a million a
/// second, so it does not wrap within a run.
const SEQUENCE_BITS: u32 = 48;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// What a body's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When it was sent, on the run's clock.
    pub sent_at_ns: u64,
    /// Which producer sent it.
    pub producer: u16,
    /// The producer's sequence number, from 0.
    pub sequence: u64,
}

/// How much arena to reserve at a time: many small bodies per allocation, and at least one.
const ARENA: usize = 64 * 1024;

/// The run's one clock: producers and consumers are in one process, so a monotonic `Instant`
/// is a shared time base and a latency is a subtraction.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock that reads 0 now.
    pub fn start() -> Self {
        Clock { base: Instant::now() }
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        // 2^64 ns is 584 years: the conversion cannot truncate within a run.
        self.base.elapsed().as_nanos() as u64
    }
}

/// Writes stamped bodies of one size.
#[derive(Debug)]
pub struct BodyWriter {
    arena: BytesMut,
    size: usize,
}

impl BodyWriter {
    /// Bodies of `size` bytes; at least `STAMP_LEN` (the caller checks the argument).
    pub fn new(size: usize) -> Self {
        let size = size.max(STAMP_LEN);
        BodyWriter { arena: BytesMut::with_capacity(ARENA.max(size)), size }
    }

    /// The next body.
    pub fn next(&mut self, sent_at_ns: u64, producer: u16, sequence: u64) -> Bytes {
        if self.arena.capacity() < self.size {
            // Reclaims the old block in place when every body cut from it is gone.
            self.arena.reserve(ARENA.max(self.size));
        }
        self.arena.put_u64(sent_at_ns);
        self.arena.put_u64((u64::from(producer) << SEQUENCE_BITS) | (sequence & SEQUENCE_MASK));
        self.arena.put_bytes(0, self.size - STAMP_LEN);
        self.arena.split().freeze()
    }
}

/// The stamp of a perf body; `None` for a body too short to be one (a stranger's message in a
/// `--queue` that was not empty).
pub fn read_stamp(body: &[u8]) -> Option<Stamp> {
    let sent_at_ns = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(body.get(8..STAMP_LEN)?.try_into().ok()?);
    // The shift leaves 16 bits: the cast cannot truncate.
    Some(Stamp { sent_at_ns, producer: (id >> SEQUENCE_BITS) as u16, sequence: id & SEQUENCE_MASK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_stamp_and_has_the_asked_size() {
        let mut w = BodyWriter::new(128);
        let a = w.next(7, 0, 0);
        let b = w.next(9, 65535, 1);
        assert_eq!(a.len(), 128);
        assert_eq!(read_stamp(&a), Some(Stamp { sent_at_ns: 7, producer: 0, sequence: 0 }));
        assert_eq!(read_stamp(&b), Some(Stamp { sent_at_ns: 9, producer: 65535, sequence: 1 }));
        assert!(a[STAMP_LEN..].iter().all(|&x| x == 0));
    }

    #[test]
    fn bodies_share_an_arena_until_it_is_used_up() {
        let mut w = BodyWriter::new(1000);
        let bodies: Vec<Bytes> = (0..200).map(|i| w.next(i, 3, i)).collect();
        let shared = bodies.windows(2).filter(|p| p[0].as_ptr().wrapping_add(1000) == p[1].as_ptr()).count();
        assert!(shared >= 190, "only {shared} of 199 neighbours were adjacent in one arena");
        let stamp = |i| Some(Stamp { sent_at_ns: i, producer: 3, sequence: i });
        assert!(bodies.iter().enumerate().all(|(i, b)| read_stamp(b) == stamp(i as u64)));
    }

    #[test]
    fn short_bodies_have_no_stamp() {
        assert_eq!(read_stamp(b"hello"), None);
    }
}
