//! `--verify`: which messages came back, from the sequence numbers in their bodies. Each
//! producer numbers its messages 0, 1, 2, ... and the consumers record every receipt, so that
//! at the end of the run perf can say exactly:
//!
//! - **lost**: messages the broker confirmed (with `--confirm`; without it, every message
//!   sent) that no consumer received by the end of the run, after the final drain;
//! - **duplicated**: receipts of a message already received (by any consumer);
//! - **reordered**: first receipts of a message by a consumer that had already received, for
//!   the first time, a later message of the same producer. Per consumer, because competing
//!   consumers split a producer's stream and their relative timing is no order;
//! - **foreign**: deliveries that no producer of this run sent (a `--queue` that held others).
//!
//! Receipts are one bit per message and producer, behind one lock that the consumers share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// The run's ledger of sent, confirmed and received sequence numbers.
#[derive(Debug)]
pub struct Verifier {
    /// Per producer: the sequence numbers handed out so far, so that a stranger's body with a
    /// huge "sequence number" is told apart instead of growing a bit set to match it.
    issued: Vec<AtomicU64>,
    /// Per producer: the confirmed sequence numbers (in confirm mode).
    confirmed: Vec<Mutex<BitSet>>,
    received: Mutex<Receipts>,
}

#[derive(Debug, Default)]
struct Receipts {
    /// Per producer.
    seen: Vec<BitSet>,
    duplicated: u64,
    reordered: u64,
    foreign: u64,
}

/// One consumer's view: the highest sequence number it received first, per producer.
#[derive(Debug, Default)]
pub struct ConsumerOrder {
    highest: Vec<Option<u64>>,
}

/// The outcome of a verified run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Expected (confirmed, or sent without confirms) but never received.
    pub lost: u64,
    /// Receipts beyond the first.
    pub duplicated: u64,
    /// First receipts below the consumer's highest first receipt from that producer.
    pub reordered: u64,
    /// Deliveries no producer of this run sent.
    pub foreign: u64,
    /// Whether `lost` counts confirmed messages (else sent ones).
    pub of_confirmed: bool,
}

impl Verifier {
    /// A ledger for `producers` producers.
    pub fn new(producers: u16) -> Self {
        let n = usize::from(producers);
        Verifier {
            issued: (0..n).map(|_| AtomicU64::new(0)).collect(),
            confirmed: (0..n).map(|_| Mutex::new(BitSet::default())).collect(),
            received: Mutex::new(Receipts { seen: vec![BitSet::default(); n], ..Receipts::default() }),
        }
    }

    /// Producer `producer` is about to publish `sequence`.
    pub fn issue(&self, producer: u16, sequence: u64) {
        if let Some(issued) = self.issued.get(usize::from(producer)) {
            issued.fetch_max(sequence + 1, Ordering::Release);
        }
    }

    /// The broker confirmed producer `producer`'s message `sequence`.
    pub fn confirm(&self, producer: u16, sequence: u64) {
        if let Some(set) = self.confirmed.get(usize::from(producer)) {
            set.lock().unwrap_or_else(PoisonError::into_inner).insert(sequence);
        }
    }

    /// A consumer received producer `producer`'s message `sequence`.
    pub fn receive(&self, order: &mut ConsumerOrder, producer: u16, sequence: u64) {
        let p = usize::from(producer);
        let issued = self.issued.get(p).map_or(0, |i| i.load(Ordering::Acquire));
        let mut r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        if sequence >= issued {
            r.foreign += 1;
            return;
        }
        if !r.seen[p].insert(sequence) {
            r.duplicated += 1;
            return;
        }
        drop(r);
        if order.highest.len() <= p {
            order.highest.resize(p + 1, None);
        }
        match order.highest[p] {
            Some(highest) if sequence < highest => {
                self.received.lock().unwrap_or_else(PoisonError::into_inner).reordered += 1;
            }
            _ => order.highest[p] = Some(sequence),
        }
    }

    /// A consumer received a body without a perf stamp.
    pub fn receive_unstamped(&self) {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).foreign += 1;
    }

    /// The verdict, given what each producer sent; `lost` counts confirmed messages when
    /// `of_confirmed`, else every message sent.
    pub fn verdict(&self, sent: &[u64], of_confirmed: bool) -> Verdict {
        let r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lost = 0;
        for (p, seen) in r.seen.iter().enumerate() {
            let sent = sent.get(p).copied().unwrap_or(0);
            lost += if of_confirmed {
                let confirmed = self.confirmed[p].lock().unwrap_or_else(PoisonError::into_inner);
                confirmed.iter().filter(|&s| !seen.contains(s)).count() as u64
            } else {
                sent - seen.count_below(sent)
            };
        }
        Verdict { lost, duplicated: r.duplicated, reordered: r.reordered, foreign: r.foreign, of_confirmed }
    }
}

impl Verdict {
    /// The summary's `verify` object.
    pub fn json(&self) -> Value {
        json!({
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "foreign": self.foreign,
            "lost_of": if self.of_confirmed { "confirmed" } else { "sent" },
        })
    }
}

/// A growable set of small integers, one bit each.
#[derive(Debug, Default, Clone)]
struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Adds `i`; false if it was there already.
    fn insert(&mut self, i: u64) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }

    fn contains(&self, i: u64) -> bool {
        self.words.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// How many members are below `end`.
    fn count_below(&self, end: u64) -> u64 {
        (0..end).filter(|&i| self.contains(i)).count() as u64
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w as u64 * 64 + b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(sent: &[u64]) -> Verifier {
        let v = Verifier::new(sent.len() as u16);
        for (p, &n) in sent.iter().enumerate() {
            (0..n).for_each(|s| v.issue(p as u16, s));
        }
        v
    }

    #[test]
    fn every_message_once_in_order_is_clean() {
        let v = ledger(&[3, 2]);
        let mut order = ConsumerOrder::default();
        for (p, s) in [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)] {
            v.receive(&mut order, p, s);
        }
        let verdict = v.verdict(&[3, 2], false);
        assert_eq!((verdict.lost, verdict.duplicated, verdict.reordered, verdict.foreign), (0, 0, 0, 0));
    }

    #[test]
    fn a_missing_message_a_copy_and_a_late_one_are_each_counted_once() {
        let v = ledger(&[5]);
        let mut order = ConsumerOrder::default();
        for s in [0, 2, 1, 2, 4] {
            v.receive(&mut order, 0, s);
        }
        // 3 never came; the second 2 is a copy; 1 came after 2; the copy does not move the order.
        let verdict = v.verdict(&[5], false);
        assert_eq!((verdict.lost, verdict.duplicated, verdict.reordered), (1, 1, 1));
    }

    #[test]
    fn order_is_per_consumer_and_copies_are_across_consumers() {
        let v = ledger(&[4]);
        let (mut a, mut b) = (ConsumerOrder::default(), ConsumerOrder::default());
        v.receive(&mut a, 0, 1);
        v.receive(&mut b, 0, 0);
        v.receive(&mut b, 0, 1);
        let verdict = v.verdict(&[4], false);
        assert_eq!((verdict.lost, verdict.duplicated, verdict.reordered), (2, 1, 0));
    }

    #[test]
    fn lost_counts_only_confirmed_messages_in_confirm_mode() {
        let v = ledger(&[3]);
        v.confirm(0, 0);
        v.confirm(0, 2);
        v.receive(&mut ConsumerOrder::default(), 0, 0);
        // 1 was never confirmed, so its absence is no loss; 2 was.
        assert_eq!(v.verdict(&[3], true).lost, 1);
        assert_eq!(v.verdict(&[3], false).lost, 2);
    }

    #[test]
    fn strangers_are_foreign_and_grow_nothing() {
        let v = ledger(&[2]);
        let mut order = ConsumerOrder::default();
        v.receive(&mut order, 0, u64::MAX / 2);
        v.receive(&mut order, 7, 0);
        let verdict = v.verdict(&[2], false);
        assert_eq!((verdict.foreign, verdict.lost), (2, 2));
    }
}
