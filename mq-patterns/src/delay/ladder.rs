//! The fallback without the plugin: a ladder of delay queues, one per power of two of the
//! resolution, each with a fixed queue TTL, chained by dead-lettering through headers exchanges
//! so that a message waits in exactly the queues of the set bits of its delay.
//! Uses `amqp-client`'s public API only.
//!
//! For a ladder of `n` levels over target exchange `T` with resolution `r`:
//!
//! ```text
//!   publish ──▶ hop n ──bit n-1 = 1──▶ wait n-1 (TTL r·2^(n-1)) ──expires──▶ hop n-1
//!                 │                                                         ▲
//!                 └──────bit n-1 = 0 (exchange-to-exchange binding)──────────┘
//!   ...           hop 1 ──bit 0 = 1──▶ wait 0 (TTL r) ──expires──▶ hop 0
//!                   └──bit 0 = 0────────────────────────────────────▶ hop 0 ──every message──▶ T
//! ```
//!
//! Every queue holds messages of one TTL only, so its head always expires first: no message
//! waits behind a longer one. The routing key is never rewritten (no dead-letter routing key,
//! headers exchanges ignore it), so `T` routes the message by the key it was published with.

use std::time::Duration;

use amqp_client::api::{Channel, Error, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions};
use amqp_client::codec::FieldTable;

use super::DelayError;

/// The names and shape of one ladder. Deterministic: every publisher with the same target
/// exchange, resolution and durability computes the same names, so they share the queues.
///
/// Names, with `T` the target exchange and `R` the resolution in whole milliseconds (plus
/// `.transient` after `ms` for a non-durable ladder):
///
/// - queue `mq.delay.T.Rms.wait.K` holds messages for `R·2^K` ms (queue-level `x-message-ttl`)
///   and dead-letters into exchange `mq.delay.T.Rms.hop.K`;
/// - exchange `mq.delay.T.Rms.hop.K` (type headers) sends a message whose header
///   `mq-delay-bit-K-1` is `"1"` to queue `wait.K-1`, one whose bit is `"0"` on to `hop.K-1`, and
///   `hop.0` sends everything to `T`. Publishers enter at `hop.N`, N being their level count; a
///   ladder with more levels extends a shorter one with the same names and bindings.
///
/// ```
/// use mq_patterns::delay::DelayLadder;
/// use std::time::Duration;
/// let ladder = DelayLadder::new("orders", Duration::from_millis(100), Duration::from_secs(60), true).unwrap();
/// assert_eq!(ladder.levels(), 10); // 600 steps of 100 ms need 10 bits
/// assert_eq!(ladder.queue(3), "mq.delay.orders.100ms.wait.3");
/// assert_eq!(ladder.entry(), "mq.delay.orders.100ms.hop.10");
/// assert_eq!(ladder.rounded(Duration::from_millis(1_001)).unwrap(), Duration::from_millis(1_100));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayLadder {
    target: String,
    base: String,
    resolution_ms: u64,
    levels: u32,
    durable: bool,
}

impl DelayLadder {
    /// The ladder for delays up to `max_delay` in steps of `resolution` (rounded up to whole
    /// milliseconds, at least 1) into `target`.
    pub fn new(target: &str, resolution: Duration, max_delay: Duration, durable: bool) -> Result<Self, DelayError> {
        if target.is_empty() {
            return Err(DelayError::DefaultExchange);
        }
        let resolution_ms = ceil_div(resolution.as_nanos(), NANOS_PER_MS).max(1);
        let shape = DelayError::Shape { resolution, max_delay };
        let resolution_ms = u64::try_from(resolution_ms).map_err(|_| shape.clone())?;
        let steps = ceil_div(max_delay.as_nanos(), u128::from(resolution_ms) * NANOS_PER_MS).max(1);
        let levels = u128::BITS - steps.leading_zeros();
        // levels ≤ 32 first, so that the shift cannot overflow a u128.
        if levels > 32 || u128::from(resolution_ms) << levels > u128::from(MAX_TTL_MS) {
            return Err(shape);
        }
        let transient = if durable { "" } else { ".transient" };
        let base = format!("mq.delay.{target}.{resolution_ms}ms{transient}");
        let ladder = DelayLadder { target: target.to_owned(), base, resolution_ms, levels, durable };
        let longest = ladder.queue(levels).len().max(ladder.exchange(levels).len());
        if longest > MAX_NAME {
            return Err(DelayError::NameTooLong(ladder.entry()));
        }
        Ok(ladder)
    }

    /// How many delay queues: the delay in steps is written in this many bits.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// The step every delay is rounded up to.
    pub fn resolution(&self) -> Duration {
        Duration::from_millis(self.resolution_ms)
    }

    /// The longest delay: every bit set.
    pub fn max_delay(&self) -> Duration {
        self.resolution().saturating_mul(u32::try_from(self.max_steps()).unwrap_or(u32::MAX))
    }

    /// The exchange messages are published to.
    pub fn entry(&self) -> String {
        self.exchange(self.levels)
    }

    /// Delay queue `k`, which holds messages for `resolution·2^k`.
    pub fn queue(&self, k: u32) -> String {
        format!("{}.wait.{k}", self.base)
    }

    /// Hop exchange `k`, into which delay queue `k` dead-letters.
    pub fn exchange(&self, k: u32) -> String {
        format!("{}.hop.{k}", self.base)
    }

    /// What `delay` becomes: rounded up to a whole number of steps, so never shorter.
    pub fn rounded(&self, delay: Duration) -> Result<Duration, DelayError> {
        let steps = self.steps(delay)?;
        Ok(Duration::from_millis(steps.saturating_mul(self.resolution_ms)))
    }

    /// Declares the ladder (idempotent: publishers sharing it declare the same things).
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let exchange_options = ExchangeDeclareOptions { durable: self.durable, ..Default::default() };
        let queue_options = QueueDeclareOptions { durable: self.durable, ..Default::default() };
        channel.exchange_declare(&self.exchange(0), "headers", exchange_options, &FieldTable::new()).await?;
        channel.exchange_bind(&self.target, &self.exchange(0), "", false, &match_all()).await?;
        for k in 1..=self.levels {
            let below = k - 1;
            let mut queue_args = FieldTable::new();
            queue_args.insert("x-dead-letter-exchange", self.exchange(below));
            queue_args.insert("x-message-ttl", self.ttl_ms(below));
            channel.queue_declare(&self.queue(below), queue_options, &queue_args).await?;
            channel.exchange_declare(&self.exchange(k), "headers", exchange_options, &FieldTable::new()).await?;
            channel.queue_bind(&self.queue(below), &self.exchange(k), "", false, &bit_is(below, "1")).await?;
            channel.exchange_bind(&self.exchange(below), &self.exchange(k), "", false, &bit_is(below, "0")).await?;
        }
        Ok(())
    }

    /// Deletes this ladder's queues and exchanges. Other publishers share them (and messages
    /// still waiting in them are lost): for tests, and for retiring a ladder nobody uses.
    pub async fn delete(&self, channel: &Channel) -> Result<(), Error> {
        for k in 0..self.levels {
            channel.queue_delete(&self.queue(k), Default::default()).await?;
        }
        for k in 0..=self.levels {
            channel.exchange_delete(&self.exchange(k), ExchangeDeleteOptions::default()).await?;
        }
        Ok(())
    }

    /// The routing headers for `delay`: one bit header per level, all present because the
    /// bindings match with `x-match: all` on `"0"` as well as `"1"`.
    pub(crate) fn bit_headers(&self, delay: Duration, headers: &mut FieldTable) -> Result<(), DelayError> {
        let steps = self.steps(delay)?;
        for k in 0..self.levels {
            let bit = if steps >> k & 1 == 1 { "1" } else { "0" };
            headers.insert(bit_header(k), bit);
        }
        Ok(())
    }

    fn steps(&self, delay: Duration) -> Result<u64, DelayError> {
        let steps = ceil_div(delay.as_nanos(), u128::from(self.resolution_ms) * NANOS_PER_MS);
        match u64::try_from(steps) {
            Ok(steps) if steps <= self.max_steps() => Ok(steps),
            _ => Err(DelayError::TooLong { delay, max: self.max_delay() }),
        }
    }

    fn max_steps(&self) -> u64 {
        // levels ≤ 32 because resolution·2^levels fits MAX_TTL_MS (checked in new).
        (1u64 << self.levels) - 1
    }

    fn ttl_ms(&self, k: u32) -> i64 {
        // Fits: resolution·2^levels ≤ MAX_TTL_MS was checked in new.
        i64::try_from(self.resolution_ms << k).unwrap_or(i64::MAX)
    }
}

/// RabbitMQ's upper limit on `x-message-ttl` (2^32 − 1 ms).
const MAX_TTL_MS: u64 = u32::MAX as u64;
/// AMQP's short string: names are at most 255 bytes.
const MAX_NAME: usize = 255;
const NANOS_PER_MS: u128 = 1_000_000;

fn ceil_div(n: u128, d: u128) -> u128 {
    n.div_ceil(d)
}

/// A header name without the `x-` prefix: the headers exchange ignores `x-` keys when matching.
fn bit_header(k: u32) -> String {
    format!("mq-delay-bit-{k}")
}

fn bit_is(k: u32, value: &str) -> FieldTable {
    let mut args = match_all();
    args.insert(bit_header(k), value);
    args
}

/// `x-match: all` with no other keys matches every message.
fn match_all() -> FieldTable {
    let mut args = FieldTable::new();
    args.insert("x-match", "all");
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_client::codec::FieldValue;

    fn ladder(resolution_ms: u64, max: Duration) -> DelayLadder {
        DelayLadder::new("t", Duration::from_millis(resolution_ms), max, true).unwrap()
    }

    #[test]
    fn delays_round_up_to_the_resolution_and_never_down() {
        let l = ladder(100, Duration::from_secs(60));
        assert_eq!(l.rounded(Duration::ZERO).unwrap(), Duration::ZERO);
        assert_eq!(l.rounded(Duration::from_nanos(1)).unwrap(), Duration::from_millis(100));
        assert_eq!(l.rounded(Duration::from_millis(100)).unwrap(), Duration::from_millis(100));
        assert_eq!(l.rounded(Duration::from_millis(30_001)).unwrap(), Duration::from_millis(30_100));
    }

    #[test]
    fn the_bits_spell_the_delay_in_steps() {
        let l = ladder(100, Duration::from_secs(60));
        let mut headers = FieldTable::new();
        l.bit_headers(Duration::from_secs(30), &mut headers).unwrap(); // 300 = 0b1_0010_1100
        let bit = |k| match headers.get(&bit_header(k)) {
            Some(FieldValue::LongString(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("bit {k} is {other:?}"),
        };
        let bits: String = (0..l.levels()).rev().map(bit).collect();
        assert_eq!(bits, "0100101100");
    }

    #[test]
    fn a_delay_beyond_the_top_level_is_refused() {
        let l = ladder(100, Duration::from_secs(60));
        assert_eq!(l.max_delay(), Duration::from_millis(102_300));
        assert!(l.rounded(Duration::from_millis(102_300)).is_ok());
        assert!(matches!(l.rounded(Duration::from_millis(102_301)), Err(DelayError::TooLong { .. })));
    }

    #[test]
    fn names_are_deterministic_and_separate_transient_ladders() {
        let durable = ladder(250, Duration::from_secs(1));
        assert_eq!(
            (durable.queue(0), durable.exchange(2)),
            ("mq.delay.t.250ms.wait.0".into(), "mq.delay.t.250ms.hop.2".into())
        );
        let transient = DelayLadder::new("t", Duration::from_millis(250), Duration::from_secs(1), false).unwrap();
        assert_eq!(transient.queue(0), "mq.delay.t.250ms.transient.wait.0");
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let r = Duration::from_millis(1);
        assert!(matches!(DelayLadder::new("", r, r, true), Err(DelayError::DefaultExchange)));
        assert!(matches!(DelayLadder::new(&"x".repeat(250), r, r, true), Err(DelayError::NameTooLong(_))));
        let too_long =
            DelayLadder::new("t", Duration::from_secs(3_600), Duration::from_secs(u64::from(u32::MAX)), true);
        assert!(matches!(too_long, Err(DelayError::Shape { .. })));
    }
}
