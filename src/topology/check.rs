//! Whether this host can run a layout: the engine's startup check. [`evaluate_host`]
//! is pure, so every verdict is tested with made-up [`HostFacts`].

use super::{
    core_ranges, HostFacts, Layout, GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES, GLOMMIO_MIN_MEMLOCK_BYTES,
    MEMCG_ACCOUNTING_KERNEL, MIN_KERNEL,
};

/// What the startup checks found: facts worth logging and warnings that do not stop
/// the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    pub kernel_release: String,
    /// The soft memlock limit in bytes; `None` when unlimited.
    pub memlock_limit_bytes: Option<u64>,
    /// Locked memory the layout's executors would like to register.
    pub memlock_wanted_bytes: u64,
    /// Problems that slow the engine down but do not stop it, one sentence each.
    pub warnings: Vec<String>,
}

/// A host that cannot run the layout; each message is one sentence naming the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostError {
    #[error("kernel {release} is too old: glommio needs Linux 5.8 or newer; upgrade the kernel")]
    KernelTooOld { release: String },
    #[error("io_uring is disabled (kernel.io_uring_disabled=2): run 'sysctl -w kernel.io_uring_disabled=0'")]
    IoUringDisabled,
    #[error(
        "io_uring is restricted to the kernel.io_uring_group group (kernel.io_uring_disabled=1): \
         add this user to that group or run 'sysctl -w kernel.io_uring_disabled=0'"
    )]
    IoUringRestricted,
    #[error(
        "io_uring_setup is refused (EPERM), usually by a container's seccomp profile: allow the \
         io_uring_setup, io_uring_enter and io_uring_register syscalls (Docker: --security-opt \
         seccomp=<a profile that allows them>)"
    )]
    IoUringBlocked,
    #[error(
        "this kernel has no io_uring (io_uring_setup: ENOSYS): run on a Linux 5.8+ kernel \
         built with CONFIG_IO_URING=y"
    )]
    IoUringMissing,
    #[error("io_uring_setup failed ({detail}): check the kernel log (dmesg) and the memlock limit ('ulimit -l')")]
    IoUringFailed { detail: String },
    #[error(
        "the memlock limit is {limit_kib} KiB but {needed_kib} KiB are needed ({why}): run \
         'ulimit -l {needed_kib}' before starting, set LimitMEMLOCK={needed_kib}K in the \
         systemd unit, or raise memlock in /etc/security/limits.conf"
    )]
    MemlockTooLow {
        limit_kib: u64,
        needed_kib: u64,
        why: String,
    },
    #[error(
        "{role} is on core {core}, but this host has only {configured} cores: change the shard \
         map or set ALPHAPULSE_PIN_CORES=false"
    )]
    CoreMissing {
        role: String,
        core: usize,
        configured: usize,
    },
    #[error(
        "{role} is on core {core}, which this process may not use (allowed: {allowed}): widen \
         the CPU affinity (taskset, cpuset, systemd CPUAffinity=) or change the shard map"
    )]
    CoreNotAllowed {
        role: String,
        core: usize,
        allowed: String,
    },
}

/// Checks that this host can run `layout`: io_uring usable, memlock limit high enough,
/// every pinned core present and allowed.
pub fn check_host(layout: &Layout) -> Result<HostReport, HostError> {
    evaluate_host(&HostFacts::gather(), layout)
}

/// Judges `facts` against `layout` (pure; see [`check_host`]).
pub fn evaluate_host(facts: &HostFacts, layout: &Layout) -> Result<HostReport, HostError> {
    let version = parse_kernel_version(&facts.kernel_release);
    if version.is_some_and(|v| v < MIN_KERNEL) {
        return Err(HostError::KernelTooOld {
            release: facts.kernel_release.clone(),
        });
    }
    match facts.io_uring_disabled {
        Some(2) => return Err(HostError::IoUringDisabled),
        Some(1) if facts.io_uring_probe == Err(libc::EPERM) => {
            return Err(HostError::IoUringRestricted)
        }
        _ => {}
    }
    match facts.io_uring_probe {
        Ok(()) => {}
        Err(libc::EPERM) => return Err(HostError::IoUringBlocked),
        Err(libc::ENOSYS) => return Err(HostError::IoUringMissing),
        Err(errno) => {
            return Err(HostError::IoUringFailed {
                detail: std::io::Error::from_raw_os_error(errno).to_string(),
            })
        }
    }

    let wanted = GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES * layout.executors() as u64;
    let mut warnings = Vec::new();
    if let Some(limit) = facts.memlock_limit_bytes {
        if limit < GLOMMIO_MIN_MEMLOCK_BYTES {
            return Err(HostError::MemlockTooLow {
                limit_kib: limit / 1024,
                needed_kib: GLOMMIO_MIN_MEMLOCK_BYTES / 1024,
                why: "glommio refuses to start an executor below 512 KiB".to_owned(),
            });
        }
        if limit < wanted {
            // Before 5.12 the rings themselves are charged to the limit, so executors
            // fail to start; from 5.12 only glommio's buffer registration fails, and it
            // falls back to unregistered (slower) I/O.
            if version.is_some_and(|v| v < MEMCG_ACCOUNTING_KERNEL) {
                return Err(HostError::MemlockTooLow {
                    limit_kib: limit / 1024,
                    needed_kib: wanted.div_ceil(1024),
                    why: format!(
                        "{} glommio executors lock their io_uring rings and buffers on kernels \
                         before 5.12",
                        layout.executors()
                    ),
                });
            }
            warnings.push(format!(
                "the memlock limit is {} KiB but {} executors want {} KiB for registered I/O \
                 buffers: glommio will fall back to slower unregistered I/O; raise it with \
                 'ulimit -l {}' or LimitMEMLOCK= in the systemd unit",
                limit / 1024,
                layout.executors(),
                wanted.div_ceil(1024),
                wanted.div_ceil(1024),
            ));
        }
    }

    if layout.pinned {
        for (role, core) in layout.roles() {
            let Some(core) = core else { continue };
            if facts.cores_configured > 0 && core >= facts.cores_configured {
                return Err(HostError::CoreMissing {
                    role: role.to_string(),
                    core,
                    configured: facts.cores_configured,
                });
            }
            if !facts.allowed_cores.contains(&core) {
                return Err(HostError::CoreNotAllowed {
                    role: role.to_string(),
                    core,
                    allowed: core_ranges(&facts.allowed_cores),
                });
            }
        }
    }

    Ok(HostReport {
        kernel_release: facts.kernel_release.clone(),
        memlock_limit_bytes: facts.memlock_limit_bytes,
        memlock_wanted_bytes: wanted,
        warnings,
    })
}

/// `(major, minor)` from a release such as `6.8.0-45-generic`.
pub(super) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
