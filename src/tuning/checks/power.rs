//! How the engine cores run and sleep: `cpu_governor` and `c_states`.

use super::{cmdline_param, fail, na, pass};
use crate::topology::core_ranges;
use crate::tuning::{Check, Readout};

/// Deepest idle-state exit latency allowed on engine cores, in microseconds. C1 (HLT,
/// or MWAIT C1) wakes in 1-2 µs; C1E already takes about 10 µs and C6 50-200 µs, which a
/// shard waiting for the next frame would pay on every wake-up.
pub const IDLE_EXIT_LATENCY_MAX_US: u64 = 2;

/// `cpu_governor`: every engine core runs the `performance` frequency governor.
pub fn governor(per_core: &[(usize, Readout)]) -> Check {
    const NAME: &str = "cpu_governor";
    let expected = "performance".to_owned();
    let cores: Vec<usize> = per_core.iter().map(|(c, _)| *c).collect();
    let read: Vec<(usize, &str)> = per_core
        .iter()
        .filter_map(|(c, g)| g.as_ref().ok().map(|g| (*c, g.trim())))
        .collect();
    if read.is_empty() {
        return na(
            NAME,
            expected,
            format!(
                "no cpufreq on {} (a VM, or the firmware sets the frequency)",
                core_ranges(&cores)
            ),
        );
    }
    let slow: Vec<(usize, &str)> = read
        .iter()
        .copied()
        .filter(|(_, g)| *g != "performance")
        .collect();
    if slow.is_empty() {
        return pass(
            NAME,
            format!("performance on {}", core_ranges(&cores)),
            expected,
        );
    }
    let mut by_governor: Vec<(&str, Vec<usize>)> = Vec::new();
    for (core, g) in &slow {
        match by_governor.iter_mut().find(|(name, _)| name == g) {
            Some((_, list)) => list.push(*core),
            None => by_governor.push((g, vec![*core])),
        }
    }
    let state: Vec<String> = by_governor
        .iter()
        .map(|(g, list)| format!("{g} on {}", core_ranges(list)))
        .collect();
    fail(
        NAME,
        state.join("; "),
        expected,
        "run 'tuning/apply.sh --apply' (writes performance to \
         /sys/devices/system/cpu/cpuN/cpufreq/scaling_governor)"
            .to_owned(),
    )
}

/// One cpuidle state of one CPU (`/sys/devices/system/cpu/cpuN/cpuidle/stateK`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdleState {
    pub name: String,
    pub exit_latency_us: u64,
    pub disabled: bool,
}

impl IdleState {
    /// Parses the `name`, `latency` and `disable` files of one state.
    pub fn parse(name: &str, latency: &str, disable: &str) -> Result<IdleState, String> {
        Ok(IdleState {
            name: name.trim().to_owned(),
            exit_latency_us: latency
                .trim()
                .parse()
                .map_err(|_| format!("idle state latency {:?} is not a number", latency.trim()))?,
            disabled: disable.trim() != "0",
        })
    }
}

/// `c_states`: no engine core may sleep in an idle state deeper than C1. Judged from the
/// cpuidle states when the kernel has a cpuidle driver; otherwise from `idle=poll` or
/// `intel_idle.max_cstate`/`processor.max_cstate` on the command line.
pub fn c_states(per_core: &[(usize, Result<Vec<IdleState>, String>)], cmdline: &Readout) -> Check {
    const NAME: &str = "c_states";
    let expected = format!("no enabled idle state slower than {IDLE_EXIT_LATENCY_MAX_US} µs");
    let cores: Vec<usize> = per_core.iter().map(|(c, _)| *c).collect();
    let read: Vec<(usize, &Vec<IdleState>)> = per_core
        .iter()
        .filter_map(|(c, s)| s.as_ref().ok().map(|s| (*c, s)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if read.is_empty() {
        let line = cmdline.as_deref().unwrap_or("");
        let poll = cmdline_param(line, "idle") == Some("poll");
        let limited = |key| cmdline_param(line, key).and_then(|v| v.parse::<u32>().ok());
        let intel = limited("intel_idle.max_cstate");
        let acpi = limited("processor.max_cstate");
        if poll {
            return pass(NAME, "idle=poll".to_owned(), expected);
        }
        if intel.is_some_and(|v| v <= 1) || acpi.is_some_and(|v| v <= 1) {
            return pass(
                NAME,
                format!(
                    "no cpuidle states; limited on the command line ({})",
                    [
                        ("intel_idle.max_cstate", intel),
                        ("processor.max_cstate", acpi)
                    ]
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(" ")
                ),
                expected,
            );
        }
        return na(
            NAME,
            expected,
            format!(
                "no cpuidle driver on {} (the BIOS sets the C-states)",
                core_ranges(&cores)
            ),
        );
    }
    let mut deep: Vec<(usize, &IdleState)> = Vec::new();
    for (core, states) in &read {
        if let Some(s) = states
            .iter()
            .filter(|s| !s.disabled && s.exit_latency_us > IDLE_EXIT_LATENCY_MAX_US)
            .max_by_key(|s| s.exit_latency_us)
        {
            deep.push((*core, s));
        }
    }
    let read_cores: Vec<usize> = read.iter().map(|(c, _)| *c).collect();
    if deep.is_empty() {
        let deepest = read
            .iter()
            .flat_map(|(_, s)| s.iter().filter(|s| !s.disabled))
            .max_by_key(|s| s.exit_latency_us);
        return pass(
            NAME,
            match deepest {
                Some(s) => format!(
                    "deepest enabled: {} ({} µs) on {}",
                    s.name,
                    s.exit_latency_us,
                    core_ranges(&read_cores)
                ),
                None => format!("every idle state disabled on {}", core_ranges(&read_cores)),
            },
            expected,
        );
    }
    let deep_cores: Vec<usize> = deep.iter().map(|(c, _)| *c).collect();
    let worst = deep
        .iter()
        .map(|(_, s)| *s)
        .max_by_key(|s| s.exit_latency_us)
        .map(|s| format!("{} ({} µs)", s.name, s.exit_latency_us))
        .unwrap_or_default();
    fail(
        NAME,
        format!("{worst} enabled on {}", core_ranges(&deep_cores)),
        expected,
        "run 'tuning/apply.sh --apply' (disables the deeper cpuidle states), or add \
         'intel_idle.max_cstate=1 processor.max_cstate=1' to the kernel command line"
            .to_owned(),
    )
}
