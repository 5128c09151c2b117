//! CPU sets written as the kernel writes them: cpu lists such as `0-3,8` (sysfs, the
//! kernel command line, shard map errors), parsed and rendered.

/// Highest CPU number a cpu list may name: the kernel's largest `NR_CPUS`. Bounds the
/// work a malformed list can cause.
pub const MAX_CPU: usize = 8191;

/// Parses a kernel cpu list (`0-3,8,10-15:2/4`, as in sysfs and on the command line).
/// `online_max` resolves `N` (the last CPU) and `all`. An empty list, or sysfs's
/// `(null)`, is the empty set. The result is sorted and without repeats.
pub fn parse_cpu_list(text: &str, online_max: Option<usize>) -> Result<Vec<usize>, String> {
    let text = text.trim();
    if text.is_empty() || text == "(null)" {
        return Ok(Vec::new());
    }
    let last = || online_max.ok_or_else(|| format!("cpu list {text:?}: N needs the CPU count"));
    let number = |s: &str| -> Result<usize, String> {
        let n = if s == "N" {
            last()?
        } else {
            s.parse::<usize>()
                .map_err(|_| format!("cpu list {text:?}: {s:?} is not a CPU number"))?
        };
        if n > MAX_CPU {
            return Err(format!("cpu list {text:?}: CPU {n} is above {MAX_CPU}"));
        }
        Ok(n)
    };
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part == "all" {
            cpus.extend(0..=last()?);
            continue;
        }
        let (range, stride) = match part.split_once(':') {
            Some((range, stride)) => {
                let (used, group) = stride
                    .split_once('/')
                    .ok_or_else(|| format!("cpu list {text:?}: bad stride {stride:?}"))?;
                let used: usize = used
                    .parse()
                    .map_err(|_| format!("cpu list {text:?}: bad stride {stride:?}"))?;
                let group: usize = group
                    .parse()
                    .map_err(|_| format!("cpu list {text:?}: bad stride {stride:?}"))?;
                if group == 0 || used == 0 || used > group {
                    return Err(format!("cpu list {text:?}: bad stride {stride:?}"));
                }
                (range, Some((used, group)))
            }
            None => (part, None),
        };
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(range)?;
                (n, n)
            }
        };
        if start > end {
            return Err(format!("cpu list {text:?}: range {range} runs backwards"));
        }
        for cpu in start..=end {
            if stride.is_none_or(|(used, group)| (cpu - start) % group < used) {
                cpus.push(cpu);
            }
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Renders cores as ranges: `0-3,8`.
pub fn core_ranges(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(",")
    }
}
