//! The once-a-second sample of a perf run: rates from the meters' sums, the latency
//! percentiles of that second, the printed line and the progress bar; and the whole run's
//! latency histogram, for the summary.

use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::{Instant, MissedTickBehavior};

use super::meter::{Meters, Totals, histogram};
use super::report::{Percentiles, Second, second_line};

const SECOND: Duration = Duration::from_secs(1);

/// What the progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Messages to publish.
    Count(u64),
    /// Seconds to run.
    Duration(Duration),
    /// Until Ctrl-C.
    Open,
}

/// Takes a sample a second: the rates, the latency of that second, the line, the progress.
pub struct Sampler {
    /// When the run started.
    pub started: Instant,
    last_at: Instant,
    last: Totals,
    interval: Histogram<u64>,
    /// Every latency of the run so far.
    pub total: Histogram<u64>,
    /// Every full second so far.
    pub seconds: Vec<Second>,
    to_stderr: bool,
    progress: ProgressBar,
    counting: bool,
}

impl Sampler {
    /// Starts the clock; lines go to stderr when stdout is for JSON.
    pub fn new(goal: Goal, to_stderr: bool) -> Self {
        let progress = match goal {
            Goal::Count(n) => bar(n, "{spinner} {elapsed} [{wide_bar}] {pos}/{len} sent"),
            Goal::Duration(d) => bar(d.as_secs().max(1), "{spinner} {elapsed} [{wide_bar}] {pos}/{len} s"),
            Goal::Open => bar(0, "{spinner} {elapsed} (Ctrl-C to stop)"),
        };
        let now = Instant::now();
        Sampler {
            started: now,
            last_at: now,
            last: Totals::default(),
            interval: histogram(),
            total: histogram(),
            seconds: Vec::new(),
            to_stderr,
            progress,
            counting: matches!(goal, Goal::Count(_)),
        }
    }

    /// Ticks on each whole second since the start, whichever phase asks.
    pub fn ticks(&self) -> tokio::time::Interval {
        let elapsed = self.last_at - self.started;
        let next = self.started + SECOND * (elapsed.as_secs() as u32 + 1);
        let mut ticks = tokio::time::interval_at(next, SECOND);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    }

    /// Takes the sample for the second that just ended, and prints its line.
    pub fn sample(&mut self, meters: &Meters) {
        let now = Instant::now();
        let totals = meters.totals();
        meters.take_latency(&mut self.interval);
        let secs = (now - self.last_at).as_secs_f64().max(f64::EPSILON);
        let per_second = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        let second = Second {
            at: (now - self.started).as_secs_f64(),
            sent: per_second(totals.sent, self.last.sent),
            confirmed: per_second(totals.confirmed, self.last.confirmed),
            received: per_second(totals.received, self.last.received),
            latency: Percentiles::of(&self.interval),
        };
        let _ = self.total.add(&self.interval);
        self.interval.reset();
        (self.last_at, self.last) = (now, totals);
        let line = second_line(&second);
        let to_stderr = self.to_stderr;
        // A closed stdout loses the line, not the run: the summary will report the failure.
        self.progress.suspend(|| {
            let _ =
                if to_stderr { writeln!(std::io::stderr(), "{line}") } else { writeln!(std::io::stdout(), "{line}") };
        });
        self.progress.set_position(if self.counting { totals.sent } else { second.at as u64 });
        self.seconds.push(second);
    }

    /// Adds the latencies of the last, partial second to the total.
    pub fn finish(&mut self, meters: &Meters) {
        meters.take_latency(&mut self.interval);
        let _ = self.total.add(&self.interval);
        self.progress.finish_and_clear();
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    // Cannot fail: every template above is a constant, and valid.
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar
}
