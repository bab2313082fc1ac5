//! The default de-duplication store: processed ids in memory, bounded by count and by age.
//!
//! The guarantee: within one process, an id committed here is recognised until it is evicted
//! (it is one of the `capacity` most recent and younger than `max_age`). Not guaranteed:
//! anything across a restart (the set is lost with the process), or for an id evicted
//! before its redelivery arrives; and the handler's own effects are not part of its
//! "transaction", so they are at-least-once. Use a durable store where that matters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Begun, BoxFuture, DedupStore, StoreError, Transaction};

/// Processed ids in memory, at most `capacity` of them and none older than `max_age`.
/// Cheap to clone; clones share the set.
///
/// ```
/// # async fn demo() -> Result<(), mq_patterns::dedup::StoreError> {
/// use std::time::Duration;
/// use mq_patterns::dedup::{Begun, DedupStore, MemoryStore, Transaction};
///
/// let store = MemoryStore::new(10_000, Duration::from_secs(600));
/// if let Begun::Fresh(tx) = store.begin("order-17").await? {
///     tx.commit().await?;
/// }
/// assert!(matches!(store.begin("order-17").await?, Begun::AlreadyProcessed));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    capacity: usize,
    max_age: Duration,
    processed: HashMap<String, Instant>,
    /// The processed ids oldest first, for eviction; each id in `processed` is here once.
    order: VecDeque<(Instant, String)>,
    in_flight: HashSet<String>,
}

impl MemoryStore {
    /// A store remembering at most `capacity` ids (at least 1), each for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let state = State {
            capacity: capacity.max(1),
            max_age,
            processed: HashMap::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
        };
        MemoryStore { state: Arc::new(Mutex::new(state)) }
    }

    /// How many processed ids it remembers now.
    pub fn len(&self) -> usize {
        let mut state = lock(&self.state);
        state.evict(Instant::now());
        state.processed.len()
    }

    /// True when it remembers no processed id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `message_id` is remembered as processed.
    pub fn contains(&self, message_id: &str) -> bool {
        let mut state = lock(&self.state);
        state.evict(Instant::now());
        state.processed.contains_key(message_id)
    }

    fn begin_now(&self, message_id: &str) -> Begun<MemoryTx> {
        let mut state = lock(&self.state);
        state.evict(Instant::now());
        if state.processed.contains_key(message_id) {
            Begun::AlreadyProcessed
        } else if !state.in_flight.insert(message_id.to_owned()) {
            Begun::InProgress
        } else {
            Begun::Fresh(MemoryTx { state: self.state.clone(), message_id: message_id.to_owned(), open: true })
        }
    }
}

impl Default for MemoryStore {
    /// 100,000 ids for at most an hour.
    fn default() -> Self {
        MemoryStore::new(100_000, Duration::from_secs(3600))
    }
}

impl DedupStore for MemoryStore {
    type Tx = MemoryTx;

    fn begin<'a>(&'a self, message_id: &'a str) -> BoxFuture<'a, Result<Begun<MemoryTx>, StoreError>> {
        let begun = self.begin_now(message_id);
        Box::pin(std::future::ready(Ok(begun)))
    }
}

impl State {
    fn evict(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) > self.max_age;
            if !expired && self.order.len() <= self.capacity {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.processed.remove(&id);
            }
        }
    }

    fn record(&mut self, message_id: String, now: Instant) {
        self.in_flight.remove(&message_id);
        if self.processed.insert(message_id.clone(), now).is_none() {
            self.order.push_back((now, message_id));
        }
        self.evict(now);
    }
}

/// An id being processed in a [`MemoryStore`]: recorded on commit, released if dropped.
#[derive(Debug)]
pub struct MemoryTx {
    state: Arc<Mutex<State>>,
    message_id: String,
    open: bool,
}

impl Transaction for MemoryTx {
    fn commit(mut self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.open = false;
        lock(&self.state).record(std::mem::take(&mut self.message_id), Instant::now());
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        if self.open {
            lock(&self.state).in_flight.remove(&self.message_id);
        }
    }
}

/// The state stays consistent under a panic elsewhere (no code panics while holding the
/// lock), so a poisoned lock is still usable.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;

    fn fresh(store: &MemoryStore, id: &str) -> MemoryTx {
        match store.begin_now(id) {
            Begun::Fresh(tx) => tx,
            other => panic!("{id} was not fresh: {other:?}"),
        }
    }

    #[test]
    fn a_committed_id_is_recognised_and_a_dropped_one_is_not() {
        let store = MemoryStore::default();
        let tx = fresh(&store, "a");
        assert!(matches!(store.begin_now("a"), Begun::InProgress));
        drop(tx);
        let tx = fresh(&store, "a");
        drop(tx.commit());
        assert!(matches!(store.begin_now("a"), Begun::AlreadyProcessed));
        assert!(store.contains("a"));
    }

    #[test]
    fn the_oldest_ids_are_evicted_beyond_capacity() {
        let store = MemoryStore::new(3, Duration::from_secs(3600));
        for id in ["a", "b", "c", "d", "e"] {
            drop(fresh(&store, id).commit());
        }
        assert_eq!(store.len(), 3);
        assert!(!store.contains("a") && !store.contains("b"));
        assert!(store.contains("c") && store.contains("e"));
    }

    #[test]
    fn ids_older_than_max_age_are_forgotten() {
        let store = MemoryStore::new(100, Duration::from_secs(30));
        let start = Instant::now();
        let mut state = lock(&store.state);
        state.record("old".into(), start);
        state.record("new".into(), start + Duration::from_secs(20));
        state.evict(start + Duration::from_secs(31));
        assert!(!state.processed.contains_key("old"));
        assert!(state.processed.contains_key("new"));
        assert_eq!(state.order.len(), 1);
    }
}
