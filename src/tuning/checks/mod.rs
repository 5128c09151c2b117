//! The tuning checks as pure functions: each takes the text of the `/proc` and `/sys`
//! files it judges (or why they could not be read) and returns one [`Check`] row.
//!
//! Nothing here touches the machine: [`super::host`] reads the files, so every verdict
//! is tested with fixture strings. A file that cannot be read makes its check N/A with
//! the reason, never a failure: a container or an unusual kernel may hide a file the
//! engine does not strictly need.
//!
//! Layout, by area of the host:
//! - `isolation`: the kernel kept off the tuned cores (isolation, ticks, RCU, IRQs);
//! - `power`: frequency governor and idle states;
//! - `memory`: huge pages, swap, locked memory;
//! - `io`: io_uring, busy polling, socket buffers, the clock source;
//! - `parse`: the kernel's notations they read.

mod io;
mod isolation;
mod memory;
mod parse;
mod power;
#[cfg(test)]
mod tests;

pub use io::{
    busy_poll, clocksource, io_uring, socket_buffer_bytes, socket_buffers, wanted_clocksource,
    BUSY_POLL_US, SOCKET_BUFFER_FRAMES, SOCKET_BUFFER_MIN_BYTES,
};
pub use isolation::{irq_affinity, isolation, nohz_full, nohz_full_cpus, rcu_nocbs};
pub use memory::{memlock, swap, swap_areas, transparent_hugepages, SWAPPINESS_MAX};
pub use parse::{cmdline_param, cpu_mask, isolcpus_domain, parse_cpu_mask, selected};
pub use power::{c_states, governor, IdleState, IDLE_EXIT_LATENCY_MAX_US};

use super::{Check, Status};

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

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes.div_ceil(1024))
}
