//! Message ids that stay unique across processes and restarts, stamped once on a message that
//! has none so that consumers can recognise a re-sent copy. Used by the publishers here.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A random 64-bit prefix per source (from the standard library's randomly seeded hasher)
/// and a counter.
#[derive(Debug)]
pub(crate) struct IdSource {
    prefix: u64,
    next: AtomicU64,
}

impl IdSource {
    pub(crate) fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        IdSource { prefix: hasher.finish(), next: AtomicU64::new(0) }
    }

    pub(crate) fn next(&self) -> String {
        format!("{:016x}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_differ_between_sources() {
        let (a, b) = (IdSource::new(), IdSource::new());
        let (a1, a2, b1) = (a.next(), a.next(), b.next());
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
    }
}
