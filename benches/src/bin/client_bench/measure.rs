//! What one timed part of a scenario costs: wall time, the process's CPU time (getrusage,
//! user plus system, every thread) and its peak resident set. Touches libc and /proc only.
//!
//! The peak is VmHWM, reset before each timed part by writing "5" to /proc/self/clear_refs;
//! where that reset does not work, a thread samples VmRSS every 10 ms instead.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The cost of one timed part, per message.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Messages per second of wall time.
    pub msg_per_s: f64,
    /// Process CPU time (user + system) per message, in microseconds.
    pub cpu_us_per_msg: f64,
    /// The largest resident set during the timed part, in MiB.
    pub peak_rss_mib: f64,
    /// The resident set when the timed part began, in MiB: what earlier runs left behind
    /// (the runtime, the allocator's arenas), part of every peak.
    pub start_rss_mib: f64,
    /// Context switches of the process (voluntary and not) per message: where a client's
    /// CPU goes on this machine, more than into its own code.
    pub switches_per_msg: f64,
}

/// A timed part in progress: started by [`Span::start`], ended by [`Span::finish`].
#[derive(Debug)]
pub struct Span {
    wall: Instant,
    cpu: Usage,
    rss_kib: u64,
}

impl Span {
    /// Returns freed memory to the system, resets the peak to the current resident set,
    /// then reads the clocks.
    pub fn start() -> Span {
        trim_heap();
        peak_rss().reset();
        Span { wall: Instant::now(), cpu: cpu_time(), rss_kib: status_kib("VmRSS:") }
    }

    /// The clocks and the peak since [`Span::start`], for `messages` messages.
    pub fn finish(self, messages: u64) -> Sample {
        let wall = self.wall.elapsed();
        let usage = cpu_time();
        let cpu = usage.cpu.saturating_sub(self.cpu.cpu);
        let switches = usage.switches.saturating_sub(self.cpu.switches);
        let n = messages.max(1) as f64;
        Sample {
            msg_per_s: n / wall.as_secs_f64(),
            cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n,
            peak_rss_mib: peak_rss().peak_kib() as f64 / 1024.0,
            start_rss_mib: self.rss_kib as f64 / 1024.0,
            switches_per_msg: switches as f64 / n,
        }
    }
}

/// How the peak resident set is measured in this process: chosen once, by checking that the
/// kernel really resets VmHWM.
pub fn rss_method() -> &'static str {
    match peak_rss() {
        PeakRss::ClearRefs => "VmHWM, reset through /proc/self/clear_refs (checked to work here)",
        PeakRss::Sampled(_) => "max of VmRSS sampled every 10 ms (clear_refs does not reset VmHWM here)",
    }
}

enum PeakRss {
    /// The kernel keeps the peak; writing "5" to clear_refs resets it.
    ClearRefs,
    /// A sampling thread keeps the peak seen, in KiB.
    Sampled(&'static AtomicU64),
}

impl PeakRss {
    fn reset(&self) {
        match self {
            // A failed write leaves a peak that is too high, never too low: reported as is.
            PeakRss::ClearRefs => drop(std::fs::write("/proc/self/clear_refs", "5")),
            PeakRss::Sampled(max) => max.store(status_kib("VmRSS:"), Ordering::Relaxed),
        }
    }

    fn peak_kib(&self) -> u64 {
        match self {
            PeakRss::ClearRefs => status_kib("VmHWM:"),
            PeakRss::Sampled(max) => {
                let now = status_kib("VmRSS:");
                max.fetch_max(now, Ordering::Relaxed).max(now)
            }
        }
    }
}

fn peak_rss() -> &'static PeakRss {
    static PEAK: OnceLock<PeakRss> = OnceLock::new();
    PEAK.get_or_init(|| if clear_refs_resets_peak() { PeakRss::ClearRefs } else { start_sampler() })
}

/// Raises the peak by touching 64 MiB, frees it, resets, and checks that the peak fell.
fn clear_refs_resets_peak() -> bool {
    const PROBE: usize = 64 << 20;
    let touched = std::hint::black_box(vec![1u8; PROBE]);
    drop(touched);
    trim_heap();
    let raised = status_kib("VmHWM:");
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        return false;
    }
    status_kib("VmHWM:") + (PROBE as u64 / 2048) < raised
}

fn start_sampler() -> PeakRss {
    let max: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(status_kib("VmRSS:"))));
    std::thread::spawn(move || {
        loop {
            max.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    PeakRss::Sampled(max)
}

/// A `kB` line of /proc/self/status, or 0 where there is none.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of the whole process, every thread included.
/// The process's CPU time and context switches so far.
#[derive(Debug)]
struct Usage {
    cpu: Duration,
    switches: u64,
}

fn cpu_time() -> Usage {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    #[allow(unsafe_code)]
    // SAFETY: `usage` is a live, writable `rusage` the kernel fills whole when getrusage
    // returns 0, and it is read as initialised only in that case.
    let usage = unsafe { (libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) == 0).then(|| usage.assume_init()) };
    let Some(usage) = usage else { return Usage { cpu: Duration::ZERO, switches: 0 } };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        switches: (usage.ru_nvcsw + usage.ru_nivcsw).max(0) as u64,
    }
}

/// Gives the heap's free pages back to the system, so that the memory one client freed is
/// not counted in the next one's resident set.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
