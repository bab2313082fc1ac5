//! Buffers for bodies that arrive over several frames, handed back when the last `Bytes` of
//! a message is dropped and reused for the next one. A fresh 1 MiB buffer per message cost
//! more than the copy into it: the large-message profile had a third of its time in page
//! faults, zeroing and unmapping as the allocator returned each buffer to the system.
//! Bounded: at most [`KEEP`] buffers wait, none larger than [`KEEP_CAPACITY`].

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Idle buffers kept at most.
pub const KEEP: usize = 4;
/// A buffer larger than this is freed, not kept: a rare huge body must not stay resident.
pub const KEEP_CAPACITY: usize = 2 << 20;

type Free = Mutex<Vec<Vec<u8>>>;

/// One connection's idle body buffers.
#[derive(Debug, Default)]
pub struct BodyPool {
    free: Arc<Free>,
}

impl BodyPool {
    /// An empty buffer with room for at least `capacity` bytes, reused when one is idle.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        // A poisoned lock only means a panic elsewhere while pushing: start afresh.
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut buf = reused.unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// `buf` as `Bytes` that give it back to this pool when the last of them is dropped.
    pub fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: Arc::downgrade(&self.free) })
    }

    /// Buffers waiting to be reused.
    pub fn idle(&self) -> usize {
        self.free.lock().map(|free| free.len()).unwrap_or(0)
    }
}

/// A body's buffer on loan to the caller.
struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Free>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            return;
        }
        // The connection may be gone; then the buffer is simply freed.
        let Some(pool) = self.pool.upgrade() else { return };
        if let Ok(mut free) = pool.lock()
            && free.len() < KEEP
        {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_body_is_reused_and_the_pool_stays_bounded() {
        let pool = BodyPool::default();
        let mut buf = pool.take(1000);
        buf.extend_from_slice(b"hello");
        let at = buf.as_ptr();
        let body = pool.freeze(buf);
        let copy = body.clone();
        drop(body);
        assert_eq!(pool.idle(), 0, "still in use by a clone");
        assert_eq!(&copy[..], b"hello");
        drop(copy);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(10);
        assert_eq!(again.as_ptr(), at, "the same buffer");
        assert!(again.is_empty() && again.capacity() >= 1000);
        let bodies: Vec<Bytes> = (0..KEEP + 3).map(|_| pool.freeze(pool.take(10))).collect();
        drop(bodies);
        assert_eq!(pool.idle(), KEEP);
    }

    #[test]
    fn a_huge_buffer_or_one_outliving_its_pool_is_freed() {
        let pool = BodyPool::default();
        drop(pool.freeze(pool.take(KEEP_CAPACITY + 1)));
        assert_eq!(pool.idle(), 0);
        let body = pool.freeze(pool.take(10));
        drop(pool);
        assert!(body.is_empty(), "still readable after its connection is gone");
    }
}
