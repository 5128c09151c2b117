//! What the engine's I/O and timestamps lean on: `io_uring`, `busy_poll`,
//! `socket_buffers` and `clocksource`.

use super::{fail, kib, na, pass};
use crate::topology::{self, HostFacts, Layout};
use crate::tuning::{Check, Readout};

/// `net.core.busy_poll` and `net.core.busy_read` we ask for, in microseconds: how long a
/// read or poll on an empty socket spins on the NIC queue before sleeping. 50 µs is the
/// kernel documentation's recommended starting value; the engine cores are dedicated, so
/// the spinning costs nothing else.
pub const BUSY_POLL_US: u64 = 50;

/// The smallest socket buffer ceiling we accept, in bytes; see [`socket_buffer_bytes`].
pub const SOCKET_BUFFER_MIN_BYTES: u64 = 4 << 20;

/// Largest frames the kernel should be able to hold for a busy shard, per connection.
pub const SOCKET_BUFFER_FRAMES: u64 = 4;

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
        dashboard_on_shard: false,
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
