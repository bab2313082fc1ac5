//! The results of every run, reduced to a median per client and scenario and printed as JSON
//! lines or as a table with the ratios of ours to the best peer. Pure formatting.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::measure::Sample;
use crate::scenario::{Client, Scenario};

/// Every run's outcome, by scenario and client.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(Scenario, Client), Vec<Sample>>,
    errors: BTreeMap<(Scenario, Client), Vec<String>>,
}

impl Results {
    /// Records a run that finished.
    pub fn add(&mut self, scenario: Scenario, client: Client, sample: Sample) {
        self.samples.entry((scenario, client)).or_default().push(sample);
    }

    /// Records a run that failed or timed out.
    pub fn fail(&mut self, scenario: Scenario, client: Client, error: String) {
        self.errors.entry((scenario, client)).or_default().push(error);
    }

    /// One JSON object per client and scenario that ran, with the medians.
    pub fn json_lines(&self) -> String {
        let mut out = String::new();
        for (scenario, client) in self.ran() {
            let m = self.median(scenario, client);
            let number = |v: Option<f64>, digits: usize| match v {
                Some(v) if v.is_finite() => format!("{v:.digits$}"),
                _ => "null".to_owned(),
            };
            let _ = write!(
                out,
                r#"{{"client":"{client}","scenario":"{scenario}","msg_per_s":{},"cpu_us_per_msg":{},"peak_rss_mib":{}"#,
                number(m.map(|m| m.msg_per_s), 1),
                number(m.map(|m| m.cpu_us_per_msg), 3),
                number(m.map(|m| m.peak_rss_mib), 1),
            );
            if let Some(errors) = self.errors.get(&(scenario, client)) {
                let _ = write!(out, r#","errors":{}"#, errors.len());
            }
            out.push_str("}\n");
        }
        out
    }

    /// The medians as a table, the ratios of ours to the best peer, and every error.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:<7} {:>12} {:>14} {:>14} {:>10} {:>5}",
            "scenario", "client", "msg/s", "cpu µs/msg", "peak RSS MiB", "(at start)", "runs"
        );
        for (scenario, client) in self.ran() {
            let runs = self.samples.get(&(scenario, client)).map_or(0, Vec::len);
            let failed = self.errors.get(&(scenario, client)).map_or(0, Vec::len);
            let runs = if failed > 0 { format!("{runs} ({failed} failed)") } else { runs.to_string() };
            match self.median(scenario, client) {
                Some(m) => {
                    let _ = writeln!(
                        out,
                        "{scenario:<22} {client:<7} {:>12.0} {:>14.2} {:>14.1} {:>10.1} {runs:>5}",
                        m.msg_per_s, m.cpu_us_per_msg, m.peak_rss_mib, m.start_rss_mib
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{scenario:<22} {client:<7} {:>12} {:>14} {:>14} {:>10} {runs:>5}",
                        "-", "-", "-", "-"
                    );
                }
            }
        }
        out.push_str("\nours / best peer (msg/s: above 1 is faster; cpu and RSS: below 1 is leaner)\n");
        for scenario in Scenario::ALL {
            if let Some(line) = self.ratio_line(scenario) {
                out.push_str(&line);
            }
        }
        if !self.errors.is_empty() {
            out.push_str("\nerrors\n");
            for ((scenario, client), errors) in &self.errors {
                for error in errors {
                    let _ = writeln!(out, "{scenario} {client}: {error}");
                }
            }
        }
        out
    }

    fn ratio_line(&self, scenario: Scenario) -> Option<String> {
        let ours = self.median(scenario, Client::Ours)?;
        let peers: Vec<(Client, Sample)> =
            Client::ALL[1..].iter().filter_map(|&client| Some((client, self.median(scenario, client)?))).collect();
        let best = |key: fn(&Sample) -> f64, higher_is_better: bool| {
            peers
                .iter()
                .map(|(client, s)| (*client, key(s)))
                .reduce(|a, b| if (b.1 > a.1) == higher_is_better { b } else { a })
        };
        let (rate_peer, rate) = best(|s| s.msg_per_s, true)?;
        let (cpu_peer, cpu) = best(|s| s.cpu_us_per_msg, false)?;
        let (rss_peer, rss) = best(|s| s.peak_rss_mib, false)?;
        let vs = |peer: Client| format!("(vs {peer})");
        let (rate_vs, cpu_vs, rss_vs) = (vs(rate_peer), vs(cpu_peer), vs(rss_peer));
        Some(format!(
            "{scenario:<22} msg/s {:>5.2} {rate_vs:<14}  cpu {:>5.2} {cpu_vs:<14}  RSS {:>5.2} {rss_vs}\n",
            ours.msg_per_s / rate,
            ours.cpu_us_per_msg / cpu,
            ours.peak_rss_mib / rss,
        ))
    }

    /// The (scenario, client) pairs that ran, in scenario order, then client order.
    fn ran(&self) -> Vec<(Scenario, Client)> {
        let mut ran: Vec<_> = self.samples.keys().chain(self.errors.keys()).copied().collect();
        ran.sort();
        ran.dedup();
        ran
    }

    /// The median of each measure on its own, over the runs that finished.
    fn median(&self, scenario: Scenario, client: Client) -> Option<Sample> {
        let samples = self.samples.get(&(scenario, client)).filter(|s| !s.is_empty())?;
        let of = |key: fn(&Sample) -> f64| median(samples.iter().map(key).collect());
        Some(Sample {
            msg_per_s: of(|s| s.msg_per_s),
            cpu_us_per_msg: of(|s| s.cpu_us_per_msg),
            peak_rss_mib: of(|s| s.peak_rss_mib),
            start_rss_mib: of(|s| s.start_rss_mib),
            switches_per_msg: of(|s| s.switches_per_msg),
        })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] }
}
