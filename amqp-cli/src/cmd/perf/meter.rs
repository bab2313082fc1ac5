//! What perf workers count, each in its own meter so that no two cores write one cache line:
//! a producer's sent, confirmed and nacked; a consumer's received and its latency histogram.
//! The reporter sums them once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

/// Latencies are kept in microseconds up to a minute, to three significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A counter alone on its cache line: the producer task writes `sent` while its confirm task
/// writes `confirmed`, and false sharing would make each write a cross-core miss.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Relaxed: only the sum matters, read once a second.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One producer's counts.
#[derive(Debug, Default)]
pub struct ProducerMeter {
    /// Published (handed to the connection).
    pub sent: Counter,
    /// Acked by the broker.
    pub confirmed: Counter,
    /// Nacked by the broker.
    pub nacked: Counter,
    /// Acked after being sent again on a recovered connection (`--recover`).
    pub resent: Counter,
}

/// One consumer's counts and the latencies it saw since the reporter last took them.
#[derive(Debug)]
pub struct ConsumerMeter {
    /// Deliveries received.
    pub received: Counter,
    /// Of them, flagged redelivered by the broker.
    pub redelivered: Counter,
    latency: Mutex<Histogram<u64>>,
}

impl ConsumerMeter {
    /// An empty meter.
    pub fn new() -> Self {
        ConsumerMeter {
            received: Counter::default(),
            redelivered: Counter::default(),
            latency: Mutex::new(histogram()),
        }
    }

    /// Records one latency. The lock is the consumer's own and the reporter takes it once a
    /// second, so it is uncontended: one atomic swap each way.
    pub fn record_latency_ns(&self, ns: u64) {
        let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        h.saturating_record(ns / 1000);
    }

    /// Moves what was recorded into `into`, leaving this meter's histogram empty.
    fn take_latency(&self, into: &mut Histogram<u64>) {
        let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        // Cannot fail: both histograms have the same bounds, and `into` auto-resizes anyway.
        let _ = into.add(&*h);
        h.reset();
    }
}

/// Every worker's meter.
#[derive(Debug, Default)]
pub struct Meters {
    /// One per producer.
    pub producers: Vec<Arc<ProducerMeter>>,
    /// One per consumer.
    pub consumers: Vec<Arc<ConsumerMeter>>,
}

/// Sums over all workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Published.
    pub sent: u64,
    /// Acked by the broker.
    pub confirmed: u64,
    /// Nacked by the broker.
    pub nacked: u64,
    /// Delivered to consumers.
    pub received: u64,
    /// Confirmed after a re-send.
    pub resent: u64,
    /// Delivered flagged redelivered.
    pub redelivered: u64,
}

impl Meters {
    /// The sums now.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in &self.producers {
            t.sent += p.sent.get();
            t.confirmed += p.confirmed.get();
            t.nacked += p.nacked.get();
            t.resent += p.resent.get();
        }
        t.received = self.consumers.iter().map(|c| c.received.get()).sum();
        t.redelivered = self.consumers.iter().map(|c| c.redelivered.get()).sum();
        t
    }

    /// Moves every consumer's latencies into `into`.
    pub fn take_latency(&self, into: &mut Histogram<u64>) {
        for c in &self.consumers {
            c.take_latency(into);
        }
    }
}

/// An empty latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Cannot fail: 1 ≤ low, high ≥ 2·low, and 3 significant digits is within 0..=5.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_latencies_empties_the_consumer_histograms() {
        let meters = Meters { producers: vec![], consumers: vec![Arc::new(ConsumerMeter::new())] };
        meters.consumers[0].record_latency_ns(1_500_000);
        meters.consumers[0].record_latency_ns(2_500_000);
        let mut h = histogram();
        meters.take_latency(&mut h);
        assert_eq!(h.len(), 2);
        let mut again = histogram();
        meters.take_latency(&mut again);
        assert_eq!(again.len(), 0);
    }
}
