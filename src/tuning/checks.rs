//! The tuning checks as pure functions: each takes the text of the `/proc` and `/sys`
//! files it judges (or why they could not be read) and returns one [`Check`] row.
//!
//! Nothing here touches the machine: [`super::host`] reads the files, so every verdict
//! is tested with fixture strings. A file that cannot be read makes its check N/A with
//! the reason, never a failure: a container or an unusual kernel may hide a file the
//! engine does not strictly need.

use crate::topology::{self, core_ranges, parse_cpu_list, HostFacts, Layout, MAX_CPU};

use super::{Check, Readout, Status};

/// Deepest idle-state exit latency allowed on engine cores, in microseconds. C1 (HLT,
/// or MWAIT C1) wakes in 1-2 µs; C1E already takes about 10 µs and C6 50-200 µs, which a
/// shard waiting for the next frame would pay on every wake-up.
pub const IDLE_EXIT_LATENCY_MAX_US: u64 = 2;
/// `net.core.busy_poll` and `net.core.busy_read` we ask for, in microseconds: how long a
/// read or poll on an empty socket spins on the NIC queue before sleeping. 50 µs is the
/// kernel documentation's recommended starting value; the engine cores are dedicated, so
/// the spinning costs nothing else.
pub const BUSY_POLL_US: u64 = 50;
/// Highest `vm.swappiness` accepted while swap is on: the kernel then swaps anonymous
/// memory only to avoid running out, never to grow the page cache.
pub const SWAPPINESS_MAX: u64 = 1;
/// The smallest socket buffer ceiling we accept, in bytes; see [`socket_buffer_bytes`].
pub const SOCKET_BUFFER_MIN_BYTES: u64 = 4 << 20;
/// Largest frames the kernel should be able to hold for a busy shard, per connection.
pub const SOCKET_BUFFER_FRAMES: u64 = 4;
/// Most IRQ numbers listed in one table cell; the rest are counted.
const LISTED_IRQS: usize = 6;

/// Receive and send buffer ceiling the feed wants: room for a few of its largest frames
/// (`feed.max_frame_bytes`) while the shard is busy with another connection, and never
/// below 4 MiB. The feed sets no `SO_RCVBUF`, so the kernel autotunes each connection up
/// to `net.ipv4.tcp_rmem`'s maximum; `net.core.rmem_max`/`wmem_max` cap explicit
/// requests.
pub fn socket_buffer_bytes(max_frame_bytes: u64) -> u64 {
    max_frame_bytes
        .saturating_mul(SOCKET_BUFFER_FRAMES)
        .max(SOCKET_BUFFER_MIN_BYTES)
}

/// Parses a hexadecimal CPU mask as in `/proc/irq/default_smp_affinity`
/// (`ffffffff,00000003`: comma-separated 32-bit groups, most significant first).
pub fn parse_cpu_mask(text: &str) -> Result<Vec<usize>, String> {
    let groups: Vec<&str> = text.trim().split(',').collect();
    if groups.len() > MAX_CPU / 32 + 1 {
        return Err(format!("cpu mask {:?} is too long", text.trim()));
    }
    let mut cpus = Vec::new();
    for (i, group) in groups.iter().rev().enumerate() {
        let bits = u32::from_str_radix(group, 16)
            .map_err(|_| format!("cpu mask {:?}: {group:?} is not hexadecimal", text.trim()))?;
        cpus.extend((0..32).filter(|b| bits & (1 << b) != 0).map(|b| i * 32 + b));
    }
    Ok(cpus)
}

/// Renders cores as a hexadecimal mask the kernel accepts in `smp_affinity` files.
pub fn cpu_mask(cores: &[usize]) -> String {
    let groups = cores.iter().max().map_or(1, |&m| m / 32 + 1);
    let mut words = vec![0u32; groups];
    for &c in cores {
        words[c / 32] |= 1 << (c % 32);
    }
    let mut out = format!("{:x}", words[groups - 1]);
    for w in words[..groups - 1].iter().rev() {
        out.push_str(&format!(",{w:08x}"));
    }
    out
}

/// The value of the last `key=` parameter on a kernel command line (the kernel lets the
/// last one win). Words after `--` belong to init and are not kernel parameters.
pub fn cmdline_param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .last()
}

/// The CPUs an `isolcpus=` value isolates from the scheduler: its cpu list, if the flags
/// (`nohz`, `domain`, `managed_irq`) include `domain` or there are none, as `domain` is
/// the default.
pub fn isolcpus_domain(value: &str, online_max: Option<usize>) -> Result<Vec<usize>, String> {
    let (flags, list): (Vec<&str>, Vec<&str>) = value
        .split(',')
        .partition(|p| p.chars().all(|c| c.is_ascii_lowercase() || c == '_') && *p != "all");
    let cpus = parse_cpu_list(&list.join(","), online_max)?;
    if flags.is_empty() || flags.contains(&"domain") {
        Ok(cpus)
    } else {
        Ok(Vec::new())
    }
}

/// The cores of `wanted` missing from `have`.
fn missing(wanted: &[usize], have: &[usize]) -> Vec<usize> {
    wanted
        .iter()
        .copied()
        .filter(|c| !have.contains(c))
        .collect()
}

fn na(name: &'static str, expected: String, reason: String) -> Check {
    Check {
        name,
        status: Status::NotApplicable,
        state: reason,
        expected,
        fix: String::new(),
    }
}

fn pass(name: &'static str, state: String, expected: String) -> Check {
    Check {
        name,
        status: Status::Pass,
        state,
        expected,
        fix: String::new(),
    }
}

fn fail(name: &'static str, state: String, expected: String, fix: String) -> Check {
    Check {
        name,
        status: Status::Fail,
        state,
        expected,
        fix,
    }
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

/// The selected value of a sysfs choice file such as `always [madvise] never`.
pub fn selected(choice: &str) -> Option<&str> {
    let start = choice.find('[')? + 1;
    let end = start + choice[start..].find(']')?;
    Some(&choice[start..end])
}

/// `transparent_hugepages`: `never` or `madvise`. With `always`, page faults on any
/// large anonymous mapping may stop to compact memory for a huge page, and khugepaged
/// rewrites mappings behind the engine's back: millisecond stalls that show up as
/// latency outliers. `madvise` keeps huge pages for the code that asks for them.
pub fn transparent_hugepages(enabled: &Readout) -> Check {
    const NAME: &str = "transparent_hugepages";
    let expected = "madvise or never".to_owned();
    let text = match enabled {
        Ok(text) => text,
        Err(e) => return na(NAME, expected, e.clone()),
    };
    match selected(text) {
        Some(mode @ ("madvise" | "never")) => pass(NAME, mode.to_owned(), expected),
        Some(mode) => fail(
            NAME,
            mode.to_owned(),
            expected,
            "run 'tuning/apply.sh --apply' (writes madvise to \
             /sys/kernel/mm/transparent_hugepage/enabled), or add \
             'transparent_hugepage=madvise' to the kernel command line"
                .to_owned(),
        ),
        None => na(
            NAME,
            expected,
            format!("unexpected transparent_hugepage/enabled: {:?}", text.trim()),
        ),
    }
}

/// The swap areas listed in `/proc/swaps` (after its header line).
pub fn swap_areas(swaps: &str) -> usize {
    swaps
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// `swap`: no swap, or `vm.swappiness` at most [`SWAPPINESS_MAX`]. A swapped-out page
/// of the engine costs a disk read on the hot path.
pub fn swap(swaps: &Readout, swappiness: &Readout) -> Check {
    const NAME: &str = "swap";
    let expected = format!("no swap, or vm.swappiness <= {SWAPPINESS_MAX}");
    let areas = match swaps {
        Ok(text) => swap_areas(text),
        Err(e) => return na(NAME, expected, e.clone()),
    };
    if areas == 0 {
        return pass(NAME, "no swap".to_owned(), expected);
    }
    let value = match swappiness.as_ref().map(|s| s.trim().parse::<u64>()) {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return na(NAME, expected, "vm.swappiness is not a number".to_owned()),
        Err(e) => return na(NAME, expected, e.clone()),
    };
    let state = format!(
        "{areas} swap area{}, vm.swappiness={value}",
        if areas == 1 { "" } else { "s" }
    );
    if value <= SWAPPINESS_MAX {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            format!(
                "run 'tuning/apply.sh --apply' (sets vm.swappiness={SWAPPINESS_MAX}), or turn \
                 swap off with 'swapoff -a'"
            ),
        )
    }
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes.div_ceil(1024))
}

/// `memlock`: the soft `RLIMIT_MEMLOCK` covers what the layout's glommio executors
/// register with io_uring. The verdict reuses the engine's own startup check
/// ([`topology::evaluate_host`]) to say what the engine would do with this limit.
pub fn memlock(facts: &HostFacts, layout: &Layout) -> Check {
    const NAME: &str = "memlock";
    let wanted = topology::GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES * layout.executors() as u64;
    let expected = format!(
        "unlimited or >= {} ({} executors)",
        kib(wanted),
        layout.executors()
    );
    // Only the memlock rule is asked: io_uring and the cores have checks of their own.
    let facts = HostFacts {
        io_uring_disabled: Some(0),
        io_uring_probe: Ok(()),
        ..facts.clone()
    };
    let unpinned = Layout {
        shards: layout
            .shards
            .iter()
            .map(|s| topology::ShardPlan {
                core: None,
                ..s.clone()
            })
            .collect(),
        writer_core: None,
        publisher_core: None,
        dashboard_core: None,
        pinned: false,
        busy_poll: false,
    };
    let Some(limit) = facts.memlock_limit_bytes else {
        return pass(NAME, "unlimited".to_owned(), expected);
    };
    let verdict = match topology::evaluate_host(&facts, &unpinned) {
        Err(_) => ": the engine refuses to start",
        Ok(report) if !report.warnings.is_empty() => {
            ": the engine falls back to slower unregistered I/O"
        }
        Ok(_) => "",
    };
    let state = format!("{}{verdict}", kib(limit));
    if limit >= wanted {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            "set LimitMEMLOCK=infinity in the systemd unit (tuning/alphapulse.service does), \
             or raise memlock in /etc/security/limits.conf"
                .to_owned(),
        )
    }
}

/// `io_uring`: this process can create an io_uring, as the engine's executors must.
/// The verdict and the fix are the engine's startup check's.
pub fn io_uring(facts: &HostFacts) -> Check {
    const NAME: &str = "io_uring";
    let expected = "io_uring_setup works".to_owned();
    let sysctl = match facts.io_uring_disabled {
        Some(v) => format!("kernel.io_uring_disabled={v}"),
        None => "no kernel.io_uring_disabled".to_owned(),
    };
    // Only the io_uring rules are asked: memlock and the cores have checks of their own.
    let facts = HostFacts {
        memlock_limit_bytes: None,
        ..facts.clone()
    };
    let nothing = Layout {
        shards: Vec::new(),
        writer_core: None,
        publisher_core: None,
        dashboard_core: None,
        pinned: false,
        busy_poll: false,
    };
    match topology::evaluate_host(&facts, &nothing) {
        Ok(_) => pass(NAME, format!("usable ({sysctl})"), expected),
        Err(e) => {
            let probe = match facts.io_uring_probe {
                Ok(()) => "io_uring_setup works".to_owned(),
                Err(errno) => format!(
                    "io_uring_setup fails: {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
            };
            fail(
                NAME,
                format!("{probe} ({sysctl}, kernel {})", facts.kernel_release),
                expected,
                e.to_string(),
            )
        }
    }
}

fn sysctl_number(name: &str, value: &Readout) -> Result<u64, String> {
    let text = value.as_ref().map_err(Clone::clone)?;
    text.trim()
        .parse()
        .map_err(|_| format!("{name} is not a number: {:?}", text.trim()))
}

/// `busy_poll`: `net.core.busy_poll` and `net.core.busy_read` at least
/// [`BUSY_POLL_US`], so a read on an empty socket first spins on the NIC queue instead of
/// waiting for an interrupt.
pub fn busy_poll(busy_poll: &Readout, busy_read: &Readout) -> Check {
    const NAME: &str = "busy_poll";
    let expected = format!("busy_poll and busy_read >= {BUSY_POLL_US} µs");
    let poll = sysctl_number("net.core.busy_poll", busy_poll);
    let read = sysctl_number("net.core.busy_read", busy_read);
    let (poll, read) = match (poll, read) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) | (_, Err(e)) => return na(NAME, expected, e),
    };
    let state = format!("busy_poll={poll} busy_read={read}");
    if poll >= BUSY_POLL_US && read >= BUSY_POLL_US {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            format!(
                "run 'tuning/apply.sh --apply' (sysctl -w net.core.busy_poll={BUSY_POLL_US} \
                 net.core.busy_read={BUSY_POLL_US})"
            ),
        )
    }
}

/// `socket_buffers`: `net.core.rmem_max`, `net.core.wmem_max` and the maximum of
/// `net.ipv4.tcp_rmem` at least `need` bytes (see [`socket_buffer_bytes`]).
pub fn socket_buffers(
    rmem_max: &Readout,
    wmem_max: &Readout,
    tcp_rmem: &Readout,
    need: u64,
) -> Check {
    const NAME: &str = "socket_buffers";
    let expected = format!("rmem_max, wmem_max, tcp_rmem max >= {}", kib(need));
    let rmem = sysctl_number("net.core.rmem_max", rmem_max);
    let wmem = sysctl_number("net.core.wmem_max", wmem_max);
    let tcp = tcp_rmem.as_ref().map_err(Clone::clone).and_then(|t| {
        t.split_whitespace()
            .nth(2)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("net.ipv4.tcp_rmem has no maximum: {:?}", t.trim()))
    });
    let (rmem, wmem, tcp) = match (rmem, wmem, tcp) {
        (Ok(r), Ok(w), Ok(t)) => (r, w, t),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return na(NAME, expected, e),
    };
    let state = format!(
        "rmem_max {}, wmem_max {}, tcp_rmem max {}",
        kib(rmem),
        kib(wmem),
        kib(tcp)
    );
    if rmem >= need && wmem >= need && tcp >= need {
        pass(NAME, state, expected)
    } else {
        fail(
            NAME,
            state,
            expected,
            format!(
                "run 'tuning/apply.sh --apply' (raises them to {need} bytes; it never lowers \
                 them)"
            ),
        )
    }
}

/// The clock source the engine's timestamps want on this architecture: the TSC on x86
/// (read without a system call), the architected timer on arm64.
pub fn wanted_clocksource() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arch_sys_counter"
    } else {
        "tsc"
    }
}

/// `clocksource`: the kernel's current clock source is [`wanted_clocksource`]: other
/// sources (`hpet`, `acpi_pm`, a hypervisor's) make every timestamp a slow system call.
pub fn clocksource(current: &Readout, wanted: &str) -> Check {
    const NAME: &str = "clocksource";
    let expected = wanted.to_owned();
    let current = match current {
        Ok(text) => text.trim(),
        Err(e) => return na(NAME, expected, e.clone()),
    };
    if current == wanted {
        pass(NAME, current.to_owned(), expected)
    } else {
        fail(
            NAME,
            current.to_owned(),
            expected,
            format!(
                "add 'clocksource={wanted}' (and on x86 'tsc=reliable' if the TSC is invariant) \
                 to the kernel command line; check dmesg for why the kernel rejected it"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::topology::plan;

    fn ok(s: &str) -> Readout {
        Ok(s.to_owned())
    }

    fn gone(path: &str) -> Readout {
        Err(format!("cannot read {path}: No such file or directory"))
    }

    #[test]
    fn cpu_masks_round_trip() {
        assert_eq!(parse_cpu_mask("3\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_mask("00000001,00000003").unwrap(), vec![0, 1, 32]);
        assert_eq!(parse_cpu_mask("ffff").unwrap(), (0..16).collect::<Vec<_>>());
        assert!(parse_cpu_mask("zz").is_err());
        assert_eq!(cpu_mask(&[0]), "1");
        assert_eq!(cpu_mask(&[0, 1, 2, 3]), "f");
        assert_eq!(cpu_mask(&[0, 32]), "1,00000001");
        assert_eq!(cpu_mask(&[]), "0");
        for cores in [vec![0], vec![1, 5, 31], vec![0, 33, 70]] {
            assert_eq!(parse_cpu_mask(&cpu_mask(&cores)).unwrap(), cores);
        }
    }

    #[test]
    fn command_line_parameters_stop_at_init_arguments() {
        let line = "BOOT_IMAGE=/vmlinuz isolcpus=1-3 quiet nohz_full=2 -- nohz_full=9\n";
        assert_eq!(cmdline_param(line, "isolcpus"), Some("1-3"));
        assert_eq!(cmdline_param(line, "nohz_full"), Some("2"));
        assert_eq!(cmdline_param(line, "rcu_nocbs"), None);
        assert_eq!(cmdline_param("a=1 a=2", "a"), Some("2"));
        assert_eq!(
            isolcpus_domain("managed_irq,domain,4-7", None).unwrap(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(isolcpus_domain("2,3", None).unwrap(), vec![2, 3]);
        // `nohz` alone does not take the CPUs out of scheduling domains.
        assert!(isolcpus_domain("nohz,4-7", None).unwrap().is_empty());
    }

    #[test]
    fn isolation_needs_every_tuned_core() {
        let cores = [4, 5, 6, 7];
        let no_cgroup = gone("/sys/fs/cgroup/cpuset.cpus.isolated");
        let c = isolation(&cores, Some(15), &ok("1-15\n"), &ok(""), &no_cgroup);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        let c = isolation(&cores, Some(15), &ok("4-5\n"), &ok(""), &no_cgroup);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.state, "4-5 isolated (isolcpus); 6-7 not");
        assert!(
            c.fix.contains("isolcpus=managed_irq,domain,4-7"),
            "{}",
            c.fix
        );
        let c = isolation(&cores, Some(15), &ok("\n"), &ok(""), &no_cgroup);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Fail, "none isolated; 4-7 not")
        );
        // Without the sysfs file the command line is read.
        let sysfs = gone("/sys/devices/system/cpu/isolated");
        let line = ok("ro isolcpus=domain,managed_irq,4-7 quiet");
        assert_eq!(
            isolation(&cores, None, &sysfs, &line, &no_cgroup).status,
            Status::Pass
        );
        let line = ok("ro isolcpus=nohz,4-7 quiet");
        assert_eq!(
            isolation(&cores, None, &sysfs, &line, &no_cgroup).status,
            Status::Fail
        );
        // An isolated cgroup v2 partition counts.
        let c = isolation(&cores, None, &ok(""), &ok(""), &ok("4-7\n"));
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "4-7 isolated (isolcpus, cpuset partition)")
        );
        // Nothing readable: N/A with the reason.
        let c = isolation(&cores, None, &sysfs, &gone("/proc/cmdline"), &no_cgroup);
        assert_eq!(c.status, Status::NotApplicable);
        assert!(c
            .state
            .starts_with("cannot read /sys/devices/system/cpu/isolated"));
    }

    #[test]
    fn nohz_full_and_rcu_nocbs() {
        let cores = [1, 2, 3];
        let no_sysfs = gone("/sys/devices/system/cpu/nohz_full");
        let line = ok("quiet nohz_full=1-3");
        let nohz = nohz_full_cpus(&no_sysfs, &line, None);
        assert_eq!(nohz, Ok(vec![1, 2, 3]));
        assert_eq!(nohz_full(&cores, &nohz).status, Status::Pass);
        // The kernel offloads RCU callbacks of nohz_full CPUs by itself.
        assert_eq!(rcu_nocbs(&cores, None, &line, &nohz).status, Status::Pass);
        // sysfs wins over the command line (the kernel may have refused the parameter).
        let nohz = nohz_full_cpus(&ok("(null)\n"), &line, None);
        let c = nohz_full(&cores, &nohz);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Fail, "nohz_full not set")
        );
        assert_eq!(
            c.fix,
            "add 'nohz_full=1-3' to the kernel command line and reboot"
        );
        let plain = ok("quiet rcu_nocbs=1-2");
        let c = rcu_nocbs(&cores, None, &plain, &Ok(Vec::new()));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.state, "offloaded: 1-2 (rcu_nocbs=1-2)");
        let c = rcu_nocbs(&cores, None, &ok("rcu_nocbs=0-3"), &Ok(Vec::new()));
        assert_eq!(c.status, Status::Pass);
        let unread = nohz_full_cpus(&no_sysfs, &gone("/proc/cmdline"), None);
        assert_eq!(nohz_full(&cores, &unread).status, Status::NotApplicable);
        assert_eq!(
            rcu_nocbs(&cores, None, &gone("/proc/cmdline"), &unread).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn irqs_must_stay_off_tuned_cores() {
        let cores = [2, 3];
        let irqs = |lists: &[(&str, &str)]| -> Result<Vec<(String, Readout)>, String> {
            Ok(lists.iter().map(|(i, l)| (i.to_string(), ok(l))).collect())
        };
        let c = irq_affinity(
            &cores,
            &[0, 1],
            None,
            &irqs(&[("24", "0-1\n"), ("25", "0\n")]),
            &ok("3\n"),
        );
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "none of 2 IRQs on them")
        );
        let c = irq_affinity(
            &cores,
            &[0, 1],
            None,
            &irqs(&[("9", "0-3\n"), ("24", "0-1\n"), ("120", "3\n")]),
            &ok("f\n"),
        );
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.state,
            "2 of 3 IRQs allowed there (9,120); default affinity too"
        );
        assert!(c.fix.contains("IRQBALANCE_BANNED_CPULIST=2-3"), "{}", c.fix);
        let many: Vec<(String, &str)> = (0..20).map(|i| (i.to_string(), "2")).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(i, l)| (i.as_str(), *l)).collect();
        let c = irq_affinity(&cores, &[0, 1], None, &irqs(&many), &ok("1"));
        assert_eq!(c.state, "20 of 20 IRQs allowed there (0,1,2,3,4,5,+14)");
        // Unreadable IRQ files are skipped; nothing readable at all is N/A.
        let unreadable = Ok(vec![(
            "24".to_owned(),
            gone("/proc/irq/24/smp_affinity_list"),
        )]);
        let c = irq_affinity(
            &cores,
            &[0, 1],
            None,
            &unreadable,
            &gone("/proc/irq/default_smp_affinity"),
        );
        assert_eq!(c.status, Status::NotApplicable);
    }

    #[test]
    fn governor_must_be_performance() {
        let c = governor(&[(4, ok("performance\n")), (5, ok("performance\n"))]);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "performance on 4-5")
        );
        let c = governor(&[
            (4, ok("powersave\n")),
            (5, ok("performance\n")),
            (6, ok("powersave\n")),
            (7, ok("schedutil\n")),
        ]);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.state, "powersave on 4,6; schedutil on 7");
        let missing = gone("/sys/devices/system/cpu/cpu4/cpufreq/scaling_governor");
        let c = governor(&[(4, missing)]);
        assert_eq!(c.status, Status::NotApplicable);
        assert!(c.state.starts_with("no cpufreq on 4"), "{}", c.state);
    }

    fn state(name: &str, latency: u64, disabled: bool) -> IdleState {
        IdleState {
            name: name.to_owned(),
            exit_latency_us: latency,
            disabled,
        }
    }

    #[test]
    fn deep_c_states_fail() {
        assert_eq!(
            IdleState::parse("C1E\n", "10\n", "1\n").unwrap(),
            state("C1E", 10, true)
        );
        assert!(IdleState::parse("C1", "x", "0").is_err());
        let intel = |c6_disabled| {
            vec![
                state("POLL", 0, false),
                state("C1", 2, false),
                state("C1E", 10, c6_disabled),
                state("C6", 133, c6_disabled),
            ]
        };
        let line = ok("quiet");
        let c = c_states(&[(4, Ok(intel(true))), (5, Ok(intel(true)))], &line);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "deepest enabled: C1 (2 µs) on 4-5")
        );
        let c = c_states(&[(4, Ok(intel(true))), (5, Ok(intel(false)))], &line);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Fail, "C6 (133 µs) enabled on 5")
        );
        // The haltpoll guest driver: polling, then a 1 µs halt.
        let guest = vec![state("POLL", 0, false), state("haltpoll", 1, false)];
        assert_eq!(c_states(&[(1, Ok(guest))], &line).status, Status::Pass);
        // No cpuidle driver: the command line decides, else N/A.
        let none = || vec![(4, Err("no cpuidle".to_owned()))];
        assert_eq!(c_states(&none(), &ok("idle=poll")).status, Status::Pass);
        let c = c_states(
            &none(),
            &ok("intel_idle.max_cstate=1 processor.max_cstate=1"),
        );
        assert_eq!(c.status, Status::Pass);
        assert_eq!(
            c_states(&none(), &ok("quiet")).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn transparent_hugepages_must_not_be_always() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("always madvise never"), None);
        let c = transparent_hugepages(&ok("always [madvise] never\n"));
        assert_eq!((c.status, c.state.as_str()), (Status::Pass, "madvise"));
        assert_eq!(
            transparent_hugepages(&ok("always madvise [never]\n")).status,
            Status::Pass
        );
        let c = transparent_hugepages(&ok("[always] madvise never\n"));
        assert_eq!((c.status, c.state.as_str()), (Status::Fail, "always"));
        assert_eq!(
            transparent_hugepages(&ok("garbage")).status,
            Status::NotApplicable
        );
        let c = transparent_hugepages(&gone("/sys/kernel/mm/transparent_hugepage/enabled"));
        assert_eq!(c.status, Status::NotApplicable);
    }

    #[test]
    fn swap_is_off_or_reluctant() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        let one =
            format!("{header}/swapfile                               file\t\t2097148\t\t0\t\t-2\n");
        assert_eq!(swap_areas(header), 0);
        assert_eq!(swap_areas(&one), 1);
        let c = swap(&ok(header), &ok("60\n"));
        assert_eq!((c.status, c.state.as_str()), (Status::Pass, "no swap"));
        let c = swap(&ok(&one), &ok("60\n"));
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Fail, "1 swap area, vm.swappiness=60")
        );
        assert_eq!(swap(&ok(&one), &ok("1\n")).status, Status::Pass);
        assert_eq!(
            swap(&ok(&one), &gone("/proc/sys/vm/swappiness")).status,
            Status::NotApplicable
        );
        assert_eq!(
            swap(&gone("/proc/swaps"), &ok("1")).status,
            Status::NotApplicable
        );
    }

    fn facts() -> HostFacts {
        HostFacts {
            kernel_release: "6.8.0-45-generic".to_owned(),
            io_uring_disabled: Some(0),
            io_uring_probe: Ok(()),
            memlock_limit_bytes: None,
            cores_configured: 4,
            allowed_cores: vec![0, 1, 2, 3],
        }
    }

    #[test]
    fn memlock_follows_the_engines_startup_rule() {
        // Two executors (one shard and the dashboard) on a 2-core plan.
        let layout = plan(&Config::default(), None, &[0, 1]).unwrap();
        let mut f = facts();
        let c = memlock(&f, &layout);
        assert_eq!((c.status, c.state.as_str()), (Status::Pass, "unlimited"));
        assert_eq!(c.expected, "unlimited or >= 2560 KiB (2 executors)");
        f.memlock_limit_bytes = Some(64 << 10);
        let c = memlock(&f, &layout);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Fail, "64 KiB: the engine refuses to start")
        );
        assert!(c.fix.starts_with("set LimitMEMLOCK=infinity"));
        f.memlock_limit_bytes = Some(2 << 20);
        let c = memlock(&f, &layout);
        assert_eq!(
            (c.status, c.state.as_str()),
            (
                Status::Fail,
                "2048 KiB: the engine falls back to slower unregistered I/O"
            )
        );
        f.kernel_release = "5.10.0".to_owned();
        assert_eq!(
            memlock(&f, &layout).state,
            "2048 KiB: the engine refuses to start"
        );
        f.memlock_limit_bytes = Some(8 << 20);
        assert_eq!(memlock(&f, &layout).status, Status::Pass);
        // A pinned layout on cores this process may not use is not memlock's business.
        f.allowed_cores = vec![0];
        assert_eq!(memlock(&f, &layout).status, Status::Pass);
    }

    #[test]
    fn io_uring_uses_the_engines_verdict() {
        let mut f = facts();
        let c = io_uring(&f);
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "usable (kernel.io_uring_disabled=0)")
        );
        f.io_uring_disabled = Some(2);
        f.io_uring_probe = Err(libc::EPERM);
        let c = io_uring(&f);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.state
                .starts_with("io_uring_setup fails: Operation not permitted"),
            "{}",
            c.state
        );
        assert_eq!(
            c.fix,
            "io_uring is disabled (kernel.io_uring_disabled=2): run 'sysctl -w kernel.io_uring_disabled=0'"
        );
        // A tiny memlock limit is the memlock check's failure, not this one's.
        let mut f = facts();
        f.memlock_limit_bytes = Some(1024);
        assert_eq!(io_uring(&f).status, Status::Pass);
    }

    #[test]
    fn busy_poll_and_socket_buffers() {
        let c = busy_poll(&ok("50\n"), &ok("50\n"));
        assert_eq!(
            (c.status, c.state.as_str()),
            (Status::Pass, "busy_poll=50 busy_read=50")
        );
        assert_eq!(busy_poll(&ok("0\n"), &ok("50\n")).status, Status::Fail);
        assert_eq!(
            busy_poll(&gone("/proc/sys/net/core/busy_poll"), &ok("0")).status,
            Status::NotApplicable
        );
        assert_eq!(socket_buffer_bytes(1 << 20), 4 << 20);
        assert_eq!(socket_buffer_bytes(4 << 20), 16 << 20);
        assert_eq!(socket_buffer_bytes(1024), SOCKET_BUFFER_MIN_BYTES);
        let need = 4 << 20;
        let c = socket_buffers(
            &ok("4194304\n"),
            &ok("4194304\n"),
            &ok("4096\t131072\t33554432\n"),
            need,
        );
        assert_eq!(c.status, Status::Pass);
        assert_eq!(
            c.state,
            "rmem_max 4096 KiB, wmem_max 4096 KiB, tcp_rmem max 32768 KiB"
        );
        let c = socket_buffers(
            &ok("212992\n"),
            &ok("4194304\n"),
            &ok("4096 131072 6291456\n"),
            need,
        );
        assert_eq!(c.status, Status::Fail);
        let c = socket_buffers(&ok("4194304"), &ok("4194304"), &ok("4096 131072"), need);
        assert_eq!(c.status, Status::NotApplicable);
        assert!(c.state.starts_with("net.ipv4.tcp_rmem has no maximum"));
    }

    #[test]
    fn clocksource_must_be_the_cycle_counter() {
        assert_eq!(clocksource(&ok("tsc\n"), "tsc").status, Status::Pass);
        let c = clocksource(&ok("hpet\n"), "tsc");
        assert_eq!((c.status, c.state.as_str()), (Status::Fail, "hpet"));
        assert!(c.fix.contains("clocksource=tsc"));
        assert_eq!(
            clocksource(
                &gone("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
                "tsc"
            )
            .status,
            Status::NotApplicable
        );
    }
}
