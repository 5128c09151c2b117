//! Memory that stays put: `transparent_hugepages`, `swap` and `memlock`.

use super::{fail, kib, na, pass, selected};
use crate::topology::{self, HostFacts, Layout};
use crate::tuning::{Check, Readout};

/// Highest `vm.swappiness` accepted while swap is on: the kernel then swaps anonymous
/// memory only to avoid running out, never to grow the page cache.
pub const SWAPPINESS_MAX: u64 = 1;

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
    let unpinned = layout.clone().unpinned();
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
