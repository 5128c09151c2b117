//! The kernel's notations the checks read, beyond cpu lists
//! ([`parse_cpu_list`](crate::topology::parse_cpu_list)): hexadecimal CPU masks, kernel
//! command-line parameters, `isolcpus=` flags and sysfs choice files.

use crate::topology::{parse_cpu_list, MAX_CPU};

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

/// The selected value of a sysfs choice file such as `always [madvise] never`.
pub fn selected(choice: &str) -> Option<&str> {
    let start = choice.find('[')? + 1;
    let end = start + choice[start..].find(']')?;
    Some(&choice[start..end])
}
