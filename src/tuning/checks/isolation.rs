//! Keeping the kernel off the tuned cores: `cores_isolated`, `nohz_full`, `rcu_nocbs`
//! and `irq_affinity`.

use super::{cmdline_param, fail, isolcpus_domain, na, parse_cpu_mask, pass};
use crate::topology::{core_ranges, parse_cpu_list};
use crate::tuning::{Check, Readout};

/// Most IRQ numbers listed in one table cell; the rest are counted.
const LISTED_IRQS: usize = 6;

/// The cores of `wanted` missing from `have`.
fn missing(wanted: &[usize], have: &[usize]) -> Vec<usize> {
    wanted
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect()
}

/// `cores_isolated`: the tuned cores are kept from the scheduler's load balancing, by
/// `isolcpus` (as `/sys/devices/system/cpu/isolated` reports it, else as the command
/// line asks) or by an isolated cgroup v2 cpuset partition (`cpuset.cpus.isolated`).
pub fn isolation(
    cores: &[usize],
    online_max: Option<usize>,
    sysfs_isolated: &Readout,
    cmdline: &Readout,
    cgroup_isolated: &Readout,
) -> Check {
    const NAME: &str = "cores_isolated";
    let want = core_ranges(cores);
    let expected = format!("{want} isolated");
    let mut isolated = Vec::new();
    let mut sources = Vec::new();
    match (sysfs_isolated, cmdline) {
        (Ok(text), _) => match parse_cpu_list(text, online_max) {
            Ok(cpus) => {
                isolated.extend(cpus);
                sources.push("isolcpus");
            }
            Err(e) => return na(NAME, expected, e),
        },
        (Err(_), Ok(line)) => {
            if let Some(value) = cmdline_param(line, "isolcpus") {
                match isolcpus_domain(value, online_max) {
                    Ok(cpus) => isolated.extend(cpus),
                    Err(e) => return na(NAME, expected, e),
                }
            }
            sources.push("isolcpus");
        }
        (Err(a), Err(_)) if cgroup_isolated.is_err() => return na(NAME, expected, a.clone()),
        (Err(_), Err(_)) => {}
    }
    if let Ok(text) = cgroup_isolated {
        if let Ok(cpus) = parse_cpu_list(text, online_max) {
            if !cpus.is_empty() {
                isolated.extend(cpus);
                sources.push("cpuset partition");
            }
        }
    }
    isolated.sort_unstable();
    isolated.dedup();
    let state = if isolated.is_empty() {
        "none isolated".to_owned()
    } else {
        format!(
            "{} isolated ({})",
            core_ranges(&isolated),
            sources.join(", ")
        )
    };
    let lacking = missing(cores, &isolated);
    if lacking.is_empty() {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            format!("{state}; {} not", core_ranges(&lacking)),
            expected,
            format!(
                "add 'isolcpus=managed_irq,domain,{want}' to the kernel command line and reboot \
                 (tuning/apply.sh prints the line), or run the engine in an isolated cgroup v2 \
                 cpuset partition"
            ),
        )
    }
}

/// The `nohz_full` CPUs: `/sys/devices/system/cpu/nohz_full` when the kernel has it,
/// else what the command line asks. `Err` when neither can be read.
pub fn nohz_full_cpus(
    sysfs_nohz: &Readout,
    cmdline: &Readout,
    online_max: Option<usize>,
) -> Result<Vec<usize>, String> {
    match (sysfs_nohz, cmdline) {
        (Ok(text), _) => parse_cpu_list(text, online_max),
        (Err(_), Ok(line)) => match cmdline_param(line, "nohz_full") {
            Some(value) => parse_cpu_list(value, online_max),
            None => Ok(Vec::new()),
        },
        (Err(e), Err(_)) => Err(e.clone()),
    }
}

/// `nohz_full`: the scheduler tick stops on the tuned cores while one task runs there.
pub fn nohz_full(cores: &[usize], nohz: &Result<Vec<usize>, String>) -> Check {
    const NAME: &str = "nohz_full";
    let want = core_ranges(cores);
    let expected = format!("nohz_full covers {want}");
    let nohz = match nohz {
        Ok(cpus) => cpus,
        Err(e) => return na(NAME, expected, e.clone()),
    };
    let state = if nohz.is_empty() {
        "nohz_full not set".to_owned()
    } else {
        format!("nohz_full={}", core_ranges(nohz))
    };
    let lacking = missing(cores, nohz);
    if lacking.is_empty() {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            format!("add 'nohz_full={want}' to the kernel command line and reboot"),
        )
    }
}

/// `rcu_nocbs`: RCU callbacks of the tuned cores run elsewhere. The kernel adds every
/// `nohz_full` CPU to the offloaded set, so either parameter counts.
pub fn rcu_nocbs(
    cores: &[usize],
    online_max: Option<usize>,
    cmdline: &Readout,
    nohz: &Result<Vec<usize>, String>,
) -> Check {
    const NAME: &str = "rcu_nocbs";
    let want = core_ranges(cores);
    let expected = format!("rcu_nocbs (or nohz_full) covers {want}");
    let line = match cmdline {
        Ok(line) => line,
        Err(e) => return na(NAME, expected, e.clone()),
    };
    let mut offloaded = match cmdline_param(line, "rcu_nocbs") {
        Some(value) => match parse_cpu_list(value, online_max) {
            Ok(cpus) => cpus,
            Err(e) => return na(NAME, expected, e),
        },
        None => Vec::new(),
    };
    let named = core_ranges(&offloaded);
    if let Ok(nohz) = nohz {
        offloaded.extend(nohz);
    }
    offloaded.sort_unstable();
    offloaded.dedup();
    let state = if offloaded.is_empty() {
        "no CPU offloads RCU callbacks".to_owned()
    } else {
        format!("offloaded: {} (rcu_nocbs={named})", core_ranges(&offloaded))
    };
    let lacking = missing(cores, &offloaded);
    if lacking.is_empty() {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            format!("add 'rcu_nocbs={want}' to the kernel command line and reboot"),
        )
    }
}

/// `irq_affinity`: no interrupt may be delivered to a tuned core, and new interrupts
/// default to the housekeeping cores. `irqs` pairs each IRQ number with its
/// `smp_affinity_list`; `default_mask` is `/proc/irq/default_smp_affinity`.
pub fn irq_affinity(
    cores: &[usize],
    housekeeping: &[usize],
    online_max: Option<usize>,
    irqs: &Result<Vec<(String, Readout)>, String>,
    default_mask: &Readout,
) -> Check {
    const NAME: &str = "irq_affinity";
    let expected = format!("no IRQ on {}", core_ranges(cores));
    let irqs = match irqs {
        Ok(irqs) => irqs,
        Err(e) => return na(NAME, expected, e.clone()),
    };
    let mut offending: Vec<&str> = Vec::new();
    let mut readable = 0usize;
    for (irq, list) in irqs {
        let Ok(Ok(cpus)) = list.as_ref().map(|t| parse_cpu_list(t, online_max)) else {
            continue;
        };
        readable += 1;
        if cpus.iter().any(|c| cores.contains(c)) {
            offending.push(irq);
        }
    }
    let default_on_cores = match default_mask.as_ref().map(|t| parse_cpu_mask(t)) {
        Ok(Ok(cpus)) => cpus.iter().any(|c| cores.contains(c)),
        _ => false,
    };
    if readable == 0 && default_mask.is_err() {
        return na(
            NAME,
            expected,
            "no /proc/irq affinity file is readable".to_owned(),
        );
    }
    if offending.is_empty() && !default_on_cores {
        return pass(NAME, format!("none of {readable} IRQs on them"), expected);
    }
    offending.sort_by_key(|irq| (irq.parse::<u64>().unwrap_or(u64::MAX), *irq));
    let mut state = if offending.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = offending.iter().take(LISTED_IRQS).copied().collect();
        let more = offending.len().saturating_sub(LISTED_IRQS);
        format!(
            "{} of {readable} IRQs allowed there ({}{})",
            offending.len(),
            shown.join(","),
            if more > 0 {
                format!(",+{more}")
            } else {
                String::new()
            }
        )
    };
    if default_on_cores {
        if !state.is_empty() {
            state.push_str("; ");
        }
        state.push_str("default affinity too");
    }
    fail(
        NAME,
        state,
        expected,
        format!(
            "run 'tuning/apply.sh --apply' (moves IRQs to {}), and stop irqbalance or set \
             IRQBALANCE_BANNED_CPULIST={}",
            core_ranges(housekeeping),
            core_ranges(cores)
        ),
    )
}
