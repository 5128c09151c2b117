//! What the host took from a measured window: CPU time the hypervisor stole from each
//! core, and how late a sleeper on each core woke.
//!
//! A shared or virtual machine stops a core now and then (another guest runs, the host
//! compacts memory); a stall of 100 ms in a 15 s window sets a latency run's p99 on its
//! own, whatever the engine did. So that a run spoiled by the host says so, the
//! latency benchmark reads each core's steal time (`/proc/stat`) at both edges of its
//! window and runs a [`Probe`] through it: one thread per core that sleeps [`PERIOD`]
//! at a time and records how late each wake-up came, as `cyclictest` does.
//!
//! The probe costs a wake-up per core every [`PERIOD`] (50 a second); a stall shorter
//! than the period is seen only when it covers a wake-up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// How long a probe sleeps between wake-ups.
pub const PERIOD: Duration = Duration::from_millis(20);

/// A lateness above this is reported as a stall of the host.
pub const STALL: Duration = Duration::from_millis(10);

/// Steal time so far of each CPU `N` (the `cpuN` lines of `/proc/stat`), in ms; empty
/// where the file cannot be read.
pub fn steal_ms() -> BTreeMap<usize, f64> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return BTreeMap::new();
    };
    parse_steal_ms(&stat, crate::metrics::clock_ticks())
}

/// The steal column (the eighth number) of each `cpuN` line, in ms, by `N`; a line too
/// short to have it is left out.
fn parse_steal_ms(stat: &str, ticks_per_s: f64) -> BTreeMap<usize, f64> {
    stat.lines()
        .filter_map(|l| {
            let mut fields = l.split_ascii_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse::<usize>().ok()?;
            let ticks = fields.nth(7)?.parse::<u64>().ok()?;
            Some((cpu, ticks as f64 * 1000.0 / ticks_per_s))
        })
        .collect()
}

/// One thread per core, each recording how late its wake-ups come, until
/// [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    threads: Vec<(usize, JoinHandle<Histogram<u64>>)>,
    steal_before: BTreeMap<usize, f64>,
    started: Instant,
}

/// How late one core's probe woke, in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreLateness {
    pub core: usize,
    pub wakeups: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// CPU time the hypervisor stole from this core in the window, ms (`None`: not
    /// reported by the kernel).
    pub steal_ms: Option<f64>,
}

/// What the host took from a window, per core.
#[derive(Debug, Clone, PartialEq)]
pub struct HostNoise {
    pub seconds: f64,
    pub cores: Vec<CoreLateness>,
}

impl Probe {
    /// Starts a probe thread on every core this process may run on.
    pub fn start() -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let threads = cores
            .into_iter()
            .filter_map(|core| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("host-probe-{}", core.id))
                    .spawn(move || {
                        core_affinity::set_for_current(core);
                        sleep_and_record(&stop, std::thread::sleep)
                    })
                    .ok()
                    .map(|t| (core.id, t))
            })
            .collect();
        Probe {
            stop,
            threads,
            steal_before: steal_ms(),
            started: Instant::now(),
        }
    }

    /// Stops the probe threads and returns what they saw.
    pub fn finish(self) -> HostNoise {
        self.stop.store(true, Ordering::Relaxed);
        let steal_after = steal_ms();
        let seconds = self.started.elapsed().as_secs_f64();
        let cores = self
            .threads
            .into_iter()
            .filter_map(|(core, t)| t.join().ok().map(|h| (core, h)))
            .map(|(core, h)| {
                let steal_ms = match (self.steal_before.get(&core), steal_after.get(&core)) {
                    (Some(a), Some(b)) => Some((b - a).max(0.0)),
                    _ => None,
                };
                CoreLateness::of(core, &h, steal_ms)
            })
            .collect();
        HostNoise { seconds, cores }
    }
}

/// Sleeps [`PERIOD`] at a time with `sleep` until `stop`, recording each wake-up's
/// lateness (ns).
fn sleep_and_record(stop: &AtomicBool, mut sleep: impl FnMut(Duration)) -> Histogram<u64> {
    let mut h = crate::latency::new_histogram();
    while !stop.load(Ordering::Relaxed) {
        let due = Instant::now() + PERIOD;
        sleep(PERIOD);
        let late = Instant::now().saturating_duration_since(due);
        // A stall past the histogram's top counts as its top, not as nothing.
        h.saturating_record((late.as_nanos() as u64).max(1));
    }
    h
}

impl CoreLateness {
    fn of(core: usize, h: &Histogram<u64>, steal_ms: Option<f64>) -> CoreLateness {
        CoreLateness {
            core,
            wakeups: h.len(),
            p50_us: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: h.value_at_quantile(0.99) as f64 / 1000.0,
            max_us: h.max() as f64 / 1000.0,
            steal_ms,
        }
    }
}

impl HostNoise {
    /// The longest lateness seen on any core, µs.
    pub fn worst_us(&self) -> f64 {
        self.cores.iter().map(|c| c.max_us).fold(0.0, f64::max)
    }

    /// Steal time of every core together, ms (`None` when the kernel reports none).
    pub fn steal_ms(&self) -> Option<f64> {
        let per_core: Vec<f64> = self.cores.iter().filter_map(|c| c.steal_ms).collect();
        (!per_core.is_empty()).then(|| per_core.iter().sum())
    }

    /// Whether a core stopped for longer than [`STALL`] in the window.
    pub fn stalled(&self) -> bool {
        self.worst_us() > STALL.as_micros() as f64
    }

    pub fn json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "probe_period_ms": PERIOD.as_millis() as u64,
            "stall_threshold_ms": STALL.as_millis() as u64,
            "stalled": self.stalled(),
            "worst_lateness_us": self.worst_us(),
            "steal_ms": self.steal_ms(),
            "cores": self.cores.iter().map(|c| json!({
                "core": c.core,
                "wakeups": c.wakeups,
                "lateness_us": {"p50": c.p50_us, "p99": c.p99_us, "max": c.max_us},
                "steal_ms": c.steal_ms,
            })).collect::<Vec<_>>(),
        })
    }

    /// One line for a report: each core's worst lateness and steal.
    pub fn line(&self) -> String {
        let cores: Vec<String> = self
            .cores
            .iter()
            .map(|c| {
                let steal = c
                    .steal_ms
                    .map_or(String::new(), |s| format!(", steal {s:.1} ms"));
                format!(
                    "core {}: p99 {:.0} µs, max {:.1} ms{steal}",
                    c.core,
                    c.p99_us,
                    c.max_us / 1000.0
                )
            })
            .collect();
        format!(
            "host: lateness of a {} ms sleeper per core: {}",
            PERIOD.as_millis(),
            cores.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_number_of_each_cpu_line() {
        let stat = "cpu  224708 235 46292 324086 143660 0 2789 877 0 0\n\
                    cpu0 95909 113 22340 186672 63756 0 1551 427 0 0\n\
                    cpu1 128798 122 23951 137413 79904 0 1237 450 0 0\n\
                    intr 1 2 3\n\
                    cpu2 1 2 3\n";
        // The aggregate line is skipped, and so is a line too short to have the column.
        let steal = parse_steal_ms(stat, 100.0);
        assert_eq!(
            steal.into_iter().collect::<Vec<_>>(),
            vec![(0, 4270.0), (1, 4500.0)]
        );
        assert_eq!(parse_steal_ms(stat, 1000.0)[&0], 427.0);
        assert!(parse_steal_ms("", 100.0).is_empty());
    }

    /// A wake-up that comes late (here a sleep that overran by 60 ms, as when the host
    /// holds the core) is recorded as such and makes the window a stalled one.
    #[test]
    fn a_late_wakeup_is_recorded_and_reported_as_a_stall() {
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let h = sleep_and_record(&stop, |period| {
            calls += 1;
            let extra = if calls == 3 {
                Duration::from_millis(60)
            } else {
                Duration::ZERO
            };
            std::thread::sleep(period + extra);
            if calls == 5 {
                stop.store(true, Ordering::Relaxed);
            }
        });
        let core = CoreLateness::of(0, &h, Some(1.5));
        assert_eq!(core.wakeups, 5);
        assert!(core.max_us >= 60_000.0, "{core:?}");
        let noise = HostNoise {
            seconds: 0.2,
            cores: vec![core],
        };
        assert!(noise.stalled());
        assert_eq!(noise.steal_ms(), Some(1.5));
        assert_eq!(noise.json()["stalled"], true);
        // Wake-ups on time: no stall.
        let mut quiet = crate::latency::new_histogram();
        quiet.record(50_000).unwrap();
        let noise = HostNoise {
            seconds: 0.02,
            cores: vec![CoreLateness::of(0, &quiet, None)],
        };
        assert!(!noise.stalled());
        assert_eq!(noise.steal_ms(), None);
    }

    /// A probe wakes about once a period on each core and reports every core.
    #[test]
    fn a_probe_counts_its_wakeups_and_reports_every_core() {
        let probe = Probe::start();
        std::thread::sleep(Duration::from_millis(300));
        let noise = probe.finish();
        let cores = core_affinity::get_core_ids().unwrap_or_default().len();
        assert_eq!(noise.cores.len(), cores, "{noise:?}");
        for c in &noise.cores {
            // 300 ms at 20 ms: 15 wake-ups, fewer on a loaded machine, never none.
            assert!((2..=17).contains(&c.wakeups), "{c:?}");
            assert!(c.max_us >= c.p99_us && c.p99_us >= c.p50_us, "{c:?}");
        }
        assert!(noise.line().contains("core"), "{}", noise.line());
        assert_eq!(noise.json()["cores"].as_array().map(Vec::len), Some(cores));
    }
}
