//! What the core has to send, in order: small frames it encodes itself gather in one buffer,
//! and a caller's body `Bytes` is queued as it is, so a body is never copied on its way to the
//! socket. The driver pops chunks and writes them (vectored) until none is left.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Bodies up to this size are copied next to their frame header rather than queued as a chunk
/// of their own: one memcpy is cheaper than another iovec and refcount for small messages.
pub const COPY_BODY_BELOW: usize = 1024;

/// The ordered output of a connection.
#[derive(Debug, Default)]
pub struct Transmit {
    small: BytesMut,
    chunks: VecDeque<Bytes>,
    queued: usize,
}

impl Transmit {
    /// The buffer to encode small frames into; they go out after every chunk already queued.
    pub fn frames(&mut self) -> &mut BytesMut {
        &mut self.small
    }

    /// Queues a caller's bytes after everything so far, without copying them.
    pub fn push(&mut self, bytes: Bytes) {
        self.flush_small();
        self.queued += bytes.len();
        self.chunks.push_back(bytes);
    }

    fn flush_small(&mut self) {
        if !self.small.is_empty() {
            let frames = self.small.split().freeze();
            self.queued += frames.len();
            self.chunks.push_back(frames);
        }
    }

    /// The next chunk to write.
    pub fn pop(&mut self) -> Option<Bytes> {
        if self.chunks.is_empty() {
            self.flush_small();
        }
        let chunk = self.chunks.pop_front()?;
        self.queued -= chunk.len();
        Some(chunk)
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.small.is_empty()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queued + self.small.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_and_chunks_keep_their_order() {
        let mut t = Transmit::default();
        t.frames().extend_from_slice(b"ab");
        t.push(Bytes::from_static(b"BODY"));
        t.frames().extend_from_slice(b"cd");
        assert_eq!(t.len(), 8);
        let out: Vec<Bytes> = std::iter::from_fn(|| t.pop()).collect();
        assert_eq!(out, [&b"ab"[..], b"BODY", b"cd"]);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
    }
}
