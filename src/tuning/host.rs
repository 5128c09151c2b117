//! Reads the `/proc` and `/sys` files the tuning checks judge: the only part of
//! [`super`] that touches the machine. Single files are read with the engine's own
//! host probe ([`read_file`](crate::topology::host::read_file)), as are the engine's
//! facts ([`HostFacts`]).
//!
//! Every read is bounded (one file at most 64 KiB, `MAX_IRQS`, `MAX_IDLE_STATES`) and
//! every failure is kept as the reason text, so an unreadable file becomes an N/A row.

use std::path::Path;

use super::checks::IdleState;
use super::Readout;
use crate::topology::host::{io_error_text, read_file as read};
use crate::topology::HostFacts;

/// Most IRQ directories looked at; hosts have a few hundred, large ones a few thousand.
const MAX_IRQS: usize = 16_384;
/// Most cpuidle states read per CPU; drivers expose fewer than ten.
const MAX_IDLE_STATES: usize = 32;

/// The host's side of every check, read once.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    pub cmdline: Readout,
    pub isolated: Readout,
    pub nohz_full: Readout,
    pub cgroup_isolated: Readout,
    pub irqs: Result<Vec<(String, Readout)>, String>,
    pub default_irq_affinity: Readout,
    pub governors: Vec<(usize, Readout)>,
    pub idle_states: Vec<(usize, Result<Vec<IdleState>, String>)>,
    pub thp_enabled: Readout,
    pub swaps: Readout,
    pub swappiness: Readout,
    pub busy_poll: Readout,
    pub busy_read: Readout,
    pub rmem_max: Readout,
    pub wmem_max: Readout,
    pub tcp_rmem: Readout,
    pub clocksource: Readout,
    /// What the engine's own startup check gathers: io_uring, memlock, cores.
    pub facts: HostFacts,
}

impl HostSnapshot {
    /// Reads everything; per-CPU files for `cpus`.
    pub fn read(cpus: &[usize]) -> HostSnapshot {
        let cpu = |c: usize, rest: &str| format!("/sys/devices/system/cpu/cpu{c}/{rest}");
        HostSnapshot {
            cmdline: read("/proc/cmdline"),
            isolated: read("/sys/devices/system/cpu/isolated"),
            nohz_full: read("/sys/devices/system/cpu/nohz_full"),
            cgroup_isolated: read("/sys/fs/cgroup/cpuset.cpus.isolated"),
            irqs: read_irqs(),
            default_irq_affinity: read("/proc/irq/default_smp_affinity"),
            governors: cpus
                .iter()
                .map(|&c| (c, read(&cpu(c, "cpufreq/scaling_governor"))))
                .collect(),
            idle_states: cpus
                .iter()
                .map(|&c| (c, read_idle_states(&cpu(c, "cpuidle"))))
                .collect(),
            thp_enabled: read("/sys/kernel/mm/transparent_hugepage/enabled"),
            swaps: read("/proc/swaps"),
            swappiness: read("/proc/sys/vm/swappiness"),
            busy_poll: read("/proc/sys/net/core/busy_poll"),
            busy_read: read("/proc/sys/net/core/busy_read"),
            rmem_max: read("/proc/sys/net/core/rmem_max"),
            wmem_max: read("/proc/sys/net/core/wmem_max"),
            tcp_rmem: read("/proc/sys/net/ipv4/tcp_rmem"),
            clocksource: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            facts: HostFacts::gather(),
        }
    }
}

/// Each numbered `/proc/irq/N` with its `smp_affinity_list`.
fn read_irqs() -> Result<Vec<(String, Readout)>, String> {
    let dir = std::fs::read_dir("/proc/irq")
        .map_err(|e| format!("cannot list /proc/irq: {}", io_error_text(&e)))?;
    let mut irqs = Vec::new();
    for entry in dir.flatten().take(MAX_IRQS) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let list = read(&format!("/proc/irq/{name}/smp_affinity_list"));
        irqs.push((name, list));
    }
    Ok(irqs)
}

/// The cpuidle states under `dir` (`/sys/devices/system/cpu/cpuN/cpuidle`).
fn read_idle_states(dir: &str) -> Result<Vec<IdleState>, String> {
    if !Path::new(dir).is_dir() {
        return Err(format!("no {dir}"));
    }
    let mut states = Vec::new();
    for k in 0..MAX_IDLE_STATES {
        let state = format!("{dir}/state{k}");
        if !Path::new(&state).is_dir() {
            break;
        }
        let name = read(&format!("{state}/name"))?;
        let latency = read(&format!("{state}/latency"))?;
        let disable = read(&format!("{state}/disable"))?;
        states.push(IdleState::parse(&name, &latency, &disable)?);
    }
    Ok(states)
}
