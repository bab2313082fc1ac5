//! What a perf run reports: a line a second (rates over that second, latency percentiles of
//! the deliveries in it) and a final summary, as text or as one JSON object.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use mq_patterns::recovery::RecoveryStats;
use serde_json::{Value, json};

use super::meter::Totals;
use super::verify::Verdict;

/// One second of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Second {
    /// Seconds since the start, at the end of this interval.
    pub at: f64,
    /// Messages published per second over the interval.
    pub sent: f64,
    /// Confirms per second.
    pub confirmed: f64,
    /// Deliveries per second.
    pub received: f64,
    /// Of the deliveries in the interval; `None` if there were none.
    pub latency: Option<Percentiles>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Percentiles {
    /// Of a histogram; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
        })
    }
}

/// How the run was set up, echoed in the summary.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The queue used.
    pub queue: String,
    /// classic or quorum.
    pub queue_type: &'static str,
    /// Producer count.
    pub producers: u16,
    /// Consumer count.
    pub consumers: u16,
    /// Body size in bytes.
    pub size: usize,
    /// Per-producer rate limit.
    pub rate: Option<u32>,
    /// Confirm window per producer.
    pub confirm: Option<u32>,
    /// Prefetch per consumer.
    pub prefetch: u16,
    /// Automatic acks.
    pub autoack: bool,
    /// Recovering connections.
    pub recover: bool,
    /// Every message accounted for.
    pub verify: bool,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// How it was set up.
    pub settings: Settings,
    /// Final counts.
    pub totals: Totals,
    /// Seconds from the start until publishing stopped.
    pub send_secs: f64,
    /// Seconds from the start until the last delivery was counted.
    pub receive_secs: f64,
    /// Latency over the whole run, in microseconds.
    pub latency: Histogram<u64>,
    /// Every full second.
    pub seconds: Vec<Second>,
    /// The run ended early on Ctrl-C.
    pub interrupted: bool,
    /// With `--verify`: lost, duplicated, reordered.
    pub verify: Option<Verdict>,
    /// With `--recover`: what recovery did, over every connection of the run.
    pub recovery: Option<RecoveryStats>,
}

/// The line printed each second.
pub fn second_line(s: &Second) -> String {
    let mut line = format!(
        "time {:>5.1} s, sent {:>7.0} msg/s, confirmed {:>7.0} msg/s, received {:>7.0} msg/s",
        s.at, s.sent, s.confirmed, s.received
    );
    match s.latency {
        Some(p) => {
            let _ = write!(line, ", latency p50/p95/p99 {}/{}/{} µs", p.p50, p.p95, p.p99);
        }
        None => line.push_str(", latency -"),
    }
    line
}

impl Summary {
    /// Messages published per second over the publishing time.
    pub fn send_rate(&self) -> f64 {
        rate(self.totals.sent, self.send_secs)
    }

    /// Deliveries per second up to the last one.
    pub fn receive_rate(&self) -> f64 {
        rate(self.totals.received, self.receive_secs)
    }

    /// A few lines for a person.
    pub fn text(&self) -> String {
        let s = &self.settings;
        let t = &self.totals;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "summary: {} producer(s), {} consumer(s), {} B bodies, {} queue {:?}{}",
            s.producers,
            s.consumers,
            s.size,
            s.queue_type,
            s.queue,
            if self.interrupted { ", interrupted" } else { "" }
        );
        let _ = writeln!(
            out,
            "  confirm window {}, prefetch {}, {} acks, rate limit {}",
            s.confirm.map_or("none".to_owned(), |w| w.to_string()),
            s.prefetch,
            if s.autoack { "automatic" } else { "manual (multiple)" },
            s.rate.map_or("none".to_owned(), |r| format!("{r} msg/s per producer")),
        );
        let _ = writeln!(
            out,
            "  sent {} in {:.1} s ({:.0} msg/s), confirmed {}, nacked {}",
            t.sent,
            self.send_secs,
            self.send_rate(),
            t.confirmed,
            t.nacked
        );
        let _ = writeln!(
            out,
            "  received {} in {:.1} s ({:.0} msg/s), {} redelivered",
            t.received,
            self.receive_secs,
            self.receive_rate(),
            t.redelivered
        );
        if let Some(r) = &self.recovery {
            let _ = writeln!(
                out,
                "  recovery: {} connection(s) lost, {} recovered, {} gave up, {} publish(es) re-sent ({} confirmed after a re-send)",
                r.disconnects, r.recoveries, r.failures, r.republished, t.resent
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                out,
                "  verify: lost {} (of the {} messages), duplicated {}, reordered {}, foreign {}",
                v.lost,
                if v.of_confirmed { "confirmed" } else { "sent" },
                v.duplicated,
                v.reordered,
                v.foreign
            );
        }
        match Percentiles::of(&self.latency) {
            Some(p) => {
                let h = &self.latency;
                let _ = write!(
                    out,
                    "  latency µs: min {}, p50 {}, p75 {}, p95 {}, p99 {}, p99.9 {}, max {}",
                    h.min(),
                    p.p50,
                    h.value_at_quantile(0.75),
                    p.p95,
                    p.p99,
                    h.value_at_quantile(0.999),
                    h.max()
                );
            }
            None => out.push_str("  latency: no deliveries"),
        }
        out
    }

    /// One JSON object: counts, rates, latency, settings and the per-second series.
    pub fn json(&self) -> Value {
        let s = &self.settings;
        let t = &self.totals;
        let h = &self.latency;
        let latency = if h.is_empty() {
            Value::Null
        } else {
            json!({
                "min": h.min(),
                "p50": h.value_at_quantile(0.50),
                "p75": h.value_at_quantile(0.75),
                "p95": h.value_at_quantile(0.95),
                "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999),
                "max": h.max(),
                "mean": h.mean(),
            })
        };
        let seconds: Vec<Value> = self
            .seconds
            .iter()
            .map(|s| {
                json!({
                    "at": s.at,
                    "sent": s.sent,
                    "confirmed": s.confirmed,
                    "received": s.received,
                    "latency_us": s.latency.map(|p| json!({ "p50": p.p50, "p95": p.p95, "p99": p.p99 })),
                })
            })
            .collect();
        json!({
            "sent": t.sent,
            "confirmed": t.confirmed,
            "nacked": t.nacked,
            "received": t.received,
            "redelivered": t.redelivered,
            "resent": t.resent,
            "verify": self.verify.map(|v| v.json()),
            "recovery": self.recovery.map(|r| json!({
                "disconnects": r.disconnects,
                "attempts": r.attempts,
                "recoveries": r.recoveries,
                "failures": r.failures,
                "republished": r.republished,
            })),
            "send_secs": self.send_secs,
            "receive_secs": self.receive_secs,
            "send_rate": self.send_rate(),
            "receive_rate": self.receive_rate(),
            "latency_us": latency,
            "interrupted": self.interrupted,
            "settings": {
                "queue": s.queue,
                "queue_type": s.queue_type,
                "producers": s.producers,
                "consumers": s.consumers,
                "size": s.size,
                "rate": s.rate,
                "confirm": s.confirm,
                "prefetch": s.prefetch,
                "autoack": s.autoack,
                "recover": s.recover,
                "verify": s.verify,
            },
            "seconds": seconds,
        })
    }
}

fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::perf::meter::histogram;

    fn summary() -> Summary {
        let mut latency = histogram();
        for us in [100, 200, 300, 400] {
            latency.record(us).expect("within bounds");
        }
        Summary {
            settings: Settings {
                queue: "q".into(),
                queue_type: "classic",
                producers: 1,
                consumers: 1,
                size: 128,
                rate: None,
                confirm: Some(10),
                prefetch: 100,
                autoack: false,
                recover: false,
                verify: false,
            },
            totals: Totals { sent: 100, confirmed: 100, nacked: 0, received: 100, ..Totals::default() },
            send_secs: 2.0,
            receive_secs: 4.0,
            latency,
            seconds: vec![],
            interrupted: false,
            verify: None,
            recovery: None,
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = summary().json();
        assert_eq!(v["sent"], 100);
        assert_eq!(v["send_rate"], 50.0);
        assert_eq!(v["receive_rate"], 25.0);
        assert!(v["latency_us"]["p99"].as_u64().is_some());
        assert_eq!(v["settings"]["confirm"], 10);
    }

    #[test]
    fn a_second_without_deliveries_says_so() {
        let s = Second { at: 1.0, sent: 10.0, confirmed: 10.0, received: 0.0, latency: None };
        assert!(second_line(&s).ends_with("latency -"));
    }
}
