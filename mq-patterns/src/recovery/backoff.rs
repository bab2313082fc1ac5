//! When to try again: exponential backoff with full jitter, a cap on the delay and an optional
//! limit on attempts. Pure arithmetic and a random source; the supervisor does the sleeping.

use std::time::Duration;

/// Exponential backoff with full jitter: before attempt `n` (from 0) the delay is drawn
/// uniformly from `0..=min(max, initial * 2^n)`, so that many clients cut off together do not
/// come back together.
///
/// ```
/// use std::time::Duration;
/// use mq_patterns::recovery::Backoff;
/// let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), max_attempts: Some(10) };
/// assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
/// assert_eq!(backoff.ceiling(40), Duration::from_secs(5));
/// assert!(backoff.delay(3, &mut fastrand::Rng::with_seed(7)) <= Duration::from_millis(800));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, trying forever.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10), max_attempts: None }
    }
}

impl Backoff {
    /// The largest delay before attempt `attempt` (from 0).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`: uniform in `0..=ceiling(attempt)`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(rng.u64(0..=ceiling))
    }

    /// Whether another attempt is allowed after `failed` failures in a row.
    pub fn allows(&self, failed: u32) -> bool {
        self.max_attempts.is_none_or(|max| failed < max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_capped_ceiling() {
        let backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_secs(2), max_attempts: None };
        let mut rng = fastrand::Rng::with_seed(1);
        for attempt in 0..64 {
            let ceiling = backoff.ceiling(attempt);
            assert!(ceiling <= Duration::from_secs(2));
            for _ in 0..100 {
                assert!(backoff.delay(attempt, &mut rng) <= ceiling);
            }
        }
        assert_eq!(backoff.ceiling(5), Duration::from_millis(1600));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let backoff = Backoff { initial: Duration::from_secs(1), ..Backoff::default() };
        let mut rng = fastrand::Rng::with_seed(9);
        let delays: std::collections::HashSet<_> = (0..50).map(|_| backoff.delay(4, &mut rng)).collect();
        assert!(delays.len() > 40, "full jitter draws from the whole range: {delays:?}");
    }

    #[test]
    fn attempts_are_limited_only_when_asked() {
        let limited = Backoff { max_attempts: Some(3), ..Backoff::default() };
        assert!(limited.allows(2));
        assert!(!limited.allows(3));
        assert!(Backoff::default().allows(u32::MAX));
    }
}
