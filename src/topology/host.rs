//! What this host offers: the cores this process may use and the cores online, the
//! kernel release, the memlock limit, whether io_uring works, and small `/proc` and
//! `/sys` files. The only code in [`super`] that asks the kernel anything; the engine's
//! startup check and `alphapulse tuning` both read the host through these probes, so
//! each exists once.

use std::io::Read;

use super::parse_cpu_list;

/// Largest file read: every file read here is a line or a short table.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// The cores this process may run on (its `sched_getaffinity` mask), ascending. Falls
/// back to `0..available_parallelism` if the kernel will not say.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and the kernel
    // writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc == 0 {
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `set` is initialised and `cpu` is below the set's capacity.
        let cores: Vec<usize> = (0..max)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect();
        if !cores.is_empty() {
            return cores;
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

/// The CPUs the kernel has online (`/sys/devices/system/cpu/online`), or `0..N` from
/// `sysconf` when that file cannot be read.
pub fn online_cpus() -> Vec<usize> {
    if let Ok(text) = read_file("/sys/devices/system/cpu/online") {
        if let Ok(cpus) = parse_cpu_list(&text, None) {
            if !cpus.is_empty() {
                return cpus;
            }
        }
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (0..usize::try_from(n).unwrap_or(1).max(1)).collect()
}

/// What the host offers, gathered once by [`HostFacts::gather`];
/// [`evaluate_host`](super::evaluate_host) judges it, so every verdict can be tested
/// with made-up facts.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_release: String,
    /// `/proc/sys/kernel/io_uring_disabled`, when the kernel has that sysctl (6.6+).
    pub io_uring_disabled: Option<u32>,
    /// The result of a real `io_uring_setup`: `Ok` or the errno it failed with.
    pub io_uring_probe: Result<(), i32>,
    /// The soft `RLIMIT_MEMLOCK` in bytes; `None` when unlimited.
    pub memlock_limit_bytes: Option<u64>,
    /// How many cores the host has (`_SC_NPROCESSORS_CONF`).
    pub cores_configured: usize,
    /// The cores this process may use.
    pub allowed_cores: Vec<usize>,
}

impl HostFacts {
    /// Asks the kernel.
    pub fn gather() -> HostFacts {
        // SAFETY: sysconf has no memory-safety preconditions.
        let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        HostFacts {
            kernel_release: kernel_release(),
            io_uring_disabled: read_file("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .and_then(|text| text.trim().parse().ok()),
            io_uring_probe: probe_io_uring(),
            memlock_limit_bytes: crate::metrics::soft_limit(libc::RLIMIT_MEMLOCK),
            cores_configured: usize::try_from(configured).unwrap_or(0),
            allowed_cores: allowed_cores(),
        }
    }
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Creates (and closes) a one-entry io_uring to learn whether this process may use
/// io_uring at all: the sysctl, seccomp and memlock can each forbid it.
fn probe_io_uring() -> Result<(), i32> {
    // struct io_uring_params is 120 bytes; the kernel requires it zeroed on entry.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup reads and writes exactly one io_uring_params at `params`,
    // which is 120 bytes of zeroed, suitably aligned memory.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: `fd` is the ring descriptor the kernel just gave us and nothing else owns it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// The whole of a small file, or why not.
pub fn read_file(path: &str) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text))
        .map(|_| text)
        .map_err(|e| format!("cannot read {path}: {}", io_error_text(&e)))
}

/// An I/O error without the "(os error N)" suffix, for table cells.
pub fn io_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
