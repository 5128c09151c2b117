//! Shard maps, core layout planning and startup host checks.
//!
//! Runs on the main thread at startup, before any executor exists. In: the validated
//! [`Config`], an optional [`ShardMap`] (TOML, see `shards/`) and the cores this process
//! may use. Out: a [`Layout`] saying which core runs each role and which symbols each
//! shard owns, and a [`HostReport`] (or one [`HostError`] sentence naming the fix)
//! saying whether this host can run that layout.
//!
//! Planning is pure: [`plan`] takes the cores as an argument, so every rule is tested
//! without touching the machine. Only [`allowed_cores`] and [`check_host`] ask the
//! kernel anything.
//!
//! # Planning rules
//! 1. Instance slicing first: only symbols with `stable_hash % instance_count ==
//!    instance_index` are kept (see [`Config::instance_symbols`]).
//! 2. With a shard map, shards with an explicit `symbols` list own exactly those;
//!    the remaining symbols are dealt round-robin, in stable-hash order, over the shards
//!    without a list. Dealing (rather than `hash % shards`) keeps shards within one
//!    symbol of each other, so no shard is left empty by chance.
//! 3. Without a map, from the allowed cores `C` (ascending):
//!    - 1 core: every role and one shard share it;
//!    - 2 to 7 cores: writer, publisher and dashboard share `C[0]` (they batch and are
//!      light), shards get one core each on the rest;
//!    - 8 or more: core 0, if allowed, is left to the OS and interrupts; the writer,
//!      publisher and dashboard get the next three cores, shards one core each on the rest.
//!
//!    There are never more shards than symbols, so no shard is empty.
//! 4. With `pin_cores = false` the same shape is planned but no core is assigned.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::market::Symbol;

/// Cores from which a host counts as "many-core": core 0 is then left to the OS and
/// each control role gets its own core. Below this, dedicating four cores to non-shard
/// work would leave too few for shards.
pub const MANY_CORES: usize = 8;

/// glommio refuses to start an executor when the memlock limit is below 512 KiB.
pub const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * 1024;
/// The I/O buffer arena each engine executor registers with io_uring. glommio's default
/// is 10 MiB, for DMA file I/O; the engine does none (sockets use their own buffers),
/// so 1 MiB keeps the locked-memory need small without giving up registered buffers.
pub const ENGINE_IO_MEMORY_BYTES: usize = 1 << 20;
/// Locked memory one engine executor registers with io_uring: its I/O buffer arena
/// plus room for its three rings.
pub const GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES: u64 = ENGINE_IO_MEMORY_BYTES as u64 + (256 << 10);
/// glommio needs Linux 5.8 for the io_uring operations it uses.
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// From Linux 5.12, io_uring rings are charged to the memory cgroup rather than to
/// `RLIMIT_MEMLOCK`; only registered buffers still count against the limit.
pub const MEMCG_ACCOUNTING_KERNEL: (u32, u32) = (5, 12);

/// A shard map file: which core runs each role and which symbols each shard owns.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMap {
    /// Core of the database writer thread.
    pub writer_core: usize,
    /// Core of the Redis publisher thread.
    pub publisher_core: usize,
    /// Core of the dashboard executor.
    pub dashboard_core: usize,
    /// Consumers spin on their rings instead of parking (see `engine.busy_poll`): for
    /// maps whose cores are isolated from the scheduler.
    #[serde(default)]
    pub busy_poll: bool,
    /// The shard cores, written as `[[shard]]` tables.
    #[serde(rename = "shard", default)]
    pub shards: Vec<ShardSpec>,
}

/// One `[[shard]]` entry of a shard map.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSpec {
    /// The core this shard's executor is pinned to.
    pub core: usize,
    /// Symbols this shard owns exclusively; leave out to take a share of the symbols no
    /// shard lists.
    pub symbols: Option<Vec<Symbol>>,
}

impl ShardMap {
    /// Reads and parses a shard map file.
    pub fn load(path: &Path) -> Result<ShardMap, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        ShardMap::parse(&text, &path.display().to_string())
    }

    /// Parses a shard map; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ShardMap, TopologyError> {
        let map: ShardMap = toml::from_str(text).map_err(|e| TopologyError::Syntax {
            origin: origin.to_owned(),
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1),
            message: e.message().replace('\n', " "),
        })?;
        if map.shards.is_empty() {
            return Err(TopologyError::NoShards {
                origin: origin.to_owned(),
            });
        }
        Ok(map)
    }
}

/// Which core runs each role and which symbols each shard owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub shards: Vec<ShardPlan>,
    pub writer_core: Option<usize>,
    pub publisher_core: Option<usize>,
    pub dashboard_core: Option<usize>,
    /// Whether role threads are pinned; when false every core above is `None`.
    pub pinned: bool,
    /// The shard map asks consumers to spin (`busy_poll`); `engine.busy_poll` can also.
    pub busy_poll: bool,
}

/// One shard: its index, its core (`None` when unpinned) and the symbols it owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    pub index: usize,
    pub core: Option<usize>,
    pub symbols: Vec<Symbol>,
}

impl Layout {
    /// How many glommio executors the layout starts: one per shard plus the dashboard.
    /// (The writer and publisher are plain threads running blocking clients.)
    pub fn executors(&self) -> usize {
        self.shards.len() + 1
    }

    /// Every (role, core) pair, for checks and summaries.
    pub fn roles(&self) -> Vec<(String, Option<usize>)> {
        let mut roles: Vec<(String, Option<usize>)> = self
            .shards
            .iter()
            .map(|s| (format!("shard {}", s.index), s.core))
            .collect();
        roles.push(("the writer".to_owned(), self.writer_core));
        roles.push(("the publisher".to_owned(), self.publisher_core));
        roles.push(("the dashboard".to_owned(), self.dashboard_core));
        roles
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = |c: Option<usize>| c.map_or("any core".to_owned(), |c| format!("core {c}"));
        let shards: Vec<String> = self
            .shards
            .iter()
            .map(|s| format!("{} ({} symbols)", core(s.core), s.symbols.len()))
            .collect();
        write!(
            f,
            "{} shard{} on {}; writer on {}, publisher on {}, dashboard on {}{}",
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" },
            shards.join(", "),
            core(self.writer_core),
            core(self.publisher_core),
            core(self.dashboard_core),
            if self.pinned { "" } else { " (unpinned)" },
        )
    }
}

/// A layout that cannot be planned; each message is one sentence naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read shard map {path}: {source}; check SHARD_MAP")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shard map {origin} line {line}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("shard map {origin} has no [[shard]] entries: add at least one")]
    NoShards { origin: String },
    #[error("no CPU cores are allowed for this process: check its CPU affinity (taskset, cpuset)")]
    NoCores,
    #[error(
        "{role} is mapped to core {core}, which this process may not use (allowed: {allowed}): \
         change the shard map, widen the CPU affinity, or set ALPHAPULSE_PIN_CORES=false"
    )]
    CoreNotAllowed {
        role: String,
        core: usize,
        allowed: String,
    },
    #[error("shards {first} and {second} are both on core {core}: give each shard its own core")]
    CoreTwice {
        core: usize,
        first: usize,
        second: usize,
    },
    #[error("symbol {symbol} is listed by shard {first} and shard {second}: keep it in one shard's list")]
    SymbolTwice {
        symbol: Symbol,
        first: usize,
        second: usize,
    },
    #[error("shard {shard} lists symbol {symbol} twice: list it once")]
    SymbolRepeated { symbol: Symbol, shard: usize },
    #[error("shard {shard} lists {symbol}, which is not in SYMBOLS: add it to SYMBOLS or remove it from the map")]
    UnknownSymbol { symbol: Symbol, shard: usize },
    #[error(
        "shard {shard} has an empty symbols list: list its symbols, or remove the symbols \
         line to give it a share of the symbols no shard lists"
    )]
    EmptyList { shard: usize },
    #[error(
        "shard {shard} owns no symbols on instance {index} of {count} (its listed symbols \
         belong to other instances): give each instance its own shard map"
    )]
    EmptyOnInstance {
        shard: usize,
        index: u32,
        count: u32,
    },
    #[error(
        "the shard map has {shards} shards without a symbols list but only {symbols} symbols \
         are left for them: configure more symbols or remove shards from the map"
    )]
    TooFewSymbols { shards: usize, symbols: usize },
    #[error(
        "symbol {symbol} is owned by no shard (every shard lists its symbols): add it to a \
         shard's list, or remove the symbols line from one shard"
    )]
    Unowned { symbol: Symbol },
    #[error(
        "instance {index} of {count} owns none of the {total} symbols: configure more symbols \
         or fewer instances (INSTANCE_COUNT)"
    )]
    NoSymbols {
        index: u32,
        count: u32,
        total: usize,
    },
}

/// Plans the layout: which core runs each role and which symbols each shard owns.
/// `allowed_cores` is usually [`allowed_cores()`]; see the module docs for the rules.
pub fn plan(
    config: &Config,
    map: Option<&ShardMap>,
    allowed_cores: &[usize],
) -> Result<Layout, TopologyError> {
    let mut allowed: Vec<usize> = allowed_cores.to_vec();
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.is_empty() {
        return Err(TopologyError::NoCores);
    }
    let symbols = config.instance_symbols();
    if symbols.is_empty() {
        return Err(TopologyError::NoSymbols {
            index: config.engine.instance_index,
            count: config.engine.instance_count,
            total: config.symbols.len(),
        });
    }
    let pinned = config.engine.pin_cores;
    let layout = match map {
        Some(map) => plan_from_map(config, map, &symbols, &allowed, pinned)?,
        None => plan_from_cores(&symbols, &allowed),
    };
    Ok(if pinned { layout } else { unpin(layout) })
}

/// Plans from the shard map named in the configuration (if any) and the cores this
/// process may use: what the engine calls at startup.
pub fn plan_for_host(config: &Config) -> Result<Layout, TopologyError> {
    let map = match &config.shard_map {
        Some(path) => Some(ShardMap::load(path)?),
        None => None,
    };
    plan(config, map.as_ref(), &allowed_cores())
}

fn unpin(layout: Layout) -> Layout {
    Layout {
        shards: layout
            .shards
            .into_iter()
            .map(|s| ShardPlan { core: None, ..s })
            .collect(),
        writer_core: None,
        publisher_core: None,
        dashboard_core: None,
        pinned: false,
        busy_poll: layout.busy_poll,
    }
}

/// Orders symbols by stable hash (ties by name), the order in which they are dealt.
fn spread_order(mut symbols: Vec<Symbol>) -> Vec<Symbol> {
    symbols.sort_by_key(|s| (s.stable_hash(), *s));
    symbols
}

/// Deals `symbols` round-robin, in stable-hash order, into `shards` buckets.
fn deal(symbols: Vec<Symbol>, shards: usize) -> Vec<Vec<Symbol>> {
    let mut buckets = vec![Vec::new(); shards];
    for (i, symbol) in spread_order(symbols).into_iter().enumerate() {
        buckets[i % shards].push(symbol);
    }
    buckets
}

fn plan_from_cores(symbols: &[Symbol], allowed: &[usize]) -> Layout {
    let (control, shard_cores): ([usize; 3], Vec<usize>) = match allowed {
        [only] => ([*only; 3], vec![*only]),
        _ if allowed.len() < MANY_CORES => ([allowed[0]; 3], allowed[1..].to_vec()),
        _ => {
            // Core 0 takes the OS's housekeeping and most interrupts unless an operator
            // has moved them; on a many-core host it is worth giving it up.
            let usable: Vec<usize> = allowed.iter().copied().filter(|&c| c != 0).collect();
            ([usable[0], usable[1], usable[2]], usable[3..].to_vec())
        }
    };
    let count = shard_cores.len().min(symbols.len());
    let shards = deal(symbols.to_vec(), count)
        .into_iter()
        .zip(shard_cores)
        .enumerate()
        .map(|(index, (symbols, core))| ShardPlan {
            index,
            core: Some(core),
            symbols,
        })
        .collect();
    Layout {
        shards,
        writer_core: Some(control[0]),
        publisher_core: Some(control[1]),
        dashboard_core: Some(control[2]),
        pinned: true,
        busy_poll: false,
    }
}

fn plan_from_map(
    config: &Config,
    map: &ShardMap,
    symbols: &[Symbol],
    allowed: &[usize],
    pinned: bool,
) -> Result<Layout, TopologyError> {
    if map.shards.is_empty() {
        return Err(TopologyError::NoShards {
            origin: "the shard map".to_owned(),
        });
    }
    if pinned {
        let mut roles: Vec<(String, usize)> = vec![
            ("the writer".to_owned(), map.writer_core),
            ("the publisher".to_owned(), map.publisher_core),
            ("the dashboard".to_owned(), map.dashboard_core),
        ];
        roles.extend(
            map.shards
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("shard {i}"), s.core)),
        );
        for (role, core) in roles {
            if !allowed.contains(&core) {
                return Err(TopologyError::CoreNotAllowed {
                    role,
                    core,
                    allowed: core_ranges(allowed),
                });
            }
        }
    }
    let mut core_owner: HashMap<usize, usize> = HashMap::new();
    for (i, shard) in map.shards.iter().enumerate() {
        if let Some(&first) = core_owner.get(&shard.core) {
            return Err(TopologyError::CoreTwice {
                core: shard.core,
                first,
                second: i,
            });
        }
        core_owner.insert(shard.core, i);
    }

    let configured: HashSet<Symbol> = config.symbols.iter().copied().collect();
    let mine: HashSet<Symbol> = symbols.iter().copied().collect();
    let mut listed_by: HashMap<Symbol, usize> = HashMap::new();
    let mut owned: Vec<Option<Vec<Symbol>>> = Vec::with_capacity(map.shards.len());
    for (i, shard) in map.shards.iter().enumerate() {
        let Some(list) = &shard.symbols else {
            owned.push(None);
            continue;
        };
        if list.is_empty() {
            return Err(TopologyError::EmptyList { shard: i });
        }
        let mut kept = Vec::new();
        for symbol in list {
            if !configured.contains(symbol) {
                return Err(TopologyError::UnknownSymbol {
                    symbol: *symbol,
                    shard: i,
                });
            }
            if let Some(&first) = listed_by.get(symbol) {
                if first == i {
                    return Err(TopologyError::SymbolRepeated {
                        symbol: *symbol,
                        shard: i,
                    });
                }
                return Err(TopologyError::SymbolTwice {
                    symbol: *symbol,
                    first,
                    second: i,
                });
            }
            listed_by.insert(*symbol, i);
            // Symbols that belong to another instance are that instance's business.
            if mine.contains(symbol) {
                kept.push(*symbol);
            }
        }
        if kept.is_empty() {
            return Err(TopologyError::EmptyOnInstance {
                shard: i,
                index: config.engine.instance_index,
                count: config.engine.instance_count,
            });
        }
        owned.push(Some(kept));
    }

    let remaining: Vec<Symbol> = symbols
        .iter()
        .copied()
        .filter(|s| !listed_by.contains_key(s))
        .collect();
    let spread_shards = owned.iter().filter(|o| o.is_none()).count();
    if spread_shards == 0 {
        if let Some(&symbol) = remaining.first() {
            return Err(TopologyError::Unowned { symbol });
        }
    } else if spread_shards > remaining.len() {
        return Err(TopologyError::TooFewSymbols {
            shards: spread_shards,
            symbols: remaining.len(),
        });
    }
    let mut dealt = deal(remaining, spread_shards.max(1)).into_iter();
    let shards = map
        .shards
        .iter()
        .zip(owned)
        .enumerate()
        .map(|(index, (spec, owned))| ShardPlan {
            index,
            core: Some(spec.core),
            symbols: owned.unwrap_or_else(|| dealt.next().unwrap_or_default()),
        })
        .collect();
    Ok(Layout {
        shards,
        writer_core: Some(map.writer_core),
        publisher_core: Some(map.publisher_core),
        dashboard_core: Some(map.dashboard_core),
        pinned: true,
        busy_poll: map.busy_poll,
    })
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

/// What the host offers, gathered once by [`HostFacts::gather`]; [`evaluate_host`]
/// judges it, so every verdict can be tested with made-up facts.
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
            io_uring_disabled: std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .and_then(|text| text.trim().parse().ok()),
            io_uring_probe: probe_io_uring(),
            memlock_limit_bytes: memlock_limit(),
            cores_configured: usize::try_from(configured).unwrap_or(0),
            allowed_cores: allowed_cores(),
        }
    }
}

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
                    role,
                    core,
                    configured: facts.cores_configured,
                });
            }
            if !facts.allowed_cores.contains(&core) {
                return Err(HostError::CoreNotAllowed {
                    role,
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
fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
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

fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(limit.rlim_cur)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn symbols(n: usize) -> Vec<Symbol> {
        (0..n).map(|i| sym(&format!("S{i}USDT"))).collect()
    }

    fn config_with(symbols: Vec<Symbol>) -> Config {
        Config {
            symbols,
            ..Config::default()
        }
    }

    fn cores(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    fn map(text: &str) -> ShardMap {
        ShardMap::parse(text, "test.toml").unwrap()
    }

    fn plan_err(config: &Config, map: Option<&ShardMap>, allowed: &[usize]) -> String {
        match plan(config, map, allowed) {
            Ok(layout) => panic!("planned {layout:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every symbol of the instance owned by exactly one shard, no shard empty.
    fn assert_partition(config: &Config, layout: &Layout) {
        let mut seen = HashSet::new();
        for shard in &layout.shards {
            assert!(!shard.symbols.is_empty(), "shard {} is empty", shard.index);
            for s in &shard.symbols {
                assert!(seen.insert(*s), "{s} owned twice");
            }
        }
        let mine: HashSet<Symbol> = config.instance_symbols().into_iter().collect();
        assert_eq!(seen, mine);
        for (i, shard) in layout.shards.iter().enumerate() {
            assert_eq!(shard.index, i);
        }
    }

    #[test]
    fn one_core_runs_everything() {
        let config = Config::default();
        let layout = plan(&config, None, &[0]).unwrap();
        assert_eq!(layout.shards.len(), 1);
        assert_eq!(layout.shards[0].core, Some(0));
        assert_eq!(
            (
                layout.writer_core,
                layout.publisher_core,
                layout.dashboard_core
            ),
            (Some(0), Some(0), Some(0))
        );
        assert!(layout.pinned);
        assert_partition(&config, &layout);
    }

    #[test]
    fn two_cores_put_the_shard_on_the_second() {
        let config = Config::default();
        let layout = plan(&config, None, &[1, 0]).unwrap();
        assert_eq!(layout.shards.len(), 1);
        assert_eq!(layout.shards[0].core, Some(1));
        assert_eq!(layout.shards[0].symbols.len(), 3);
        assert_eq!(layout.writer_core, Some(0));
        assert_eq!(layout.to_string(), "1 shard on core 1 (3 symbols); writer on core 0, publisher on core 0, dashboard on core 0");
    }

    #[test]
    fn small_hosts_share_core_zero_and_never_plan_empty_shards() {
        let config = config_with(symbols(2));
        let layout = plan(&config, None, &cores(6)).unwrap();
        // Five shard cores but only two symbols: two shards.
        assert_eq!(layout.shards.len(), 2);
        assert_eq!(layout.shards[0].core, Some(1));
        assert_eq!(layout.shards[1].core, Some(2));
        assert_eq!(layout.dashboard_core, Some(0));
        assert_partition(&config, &layout);

        let config = config_with(symbols(40));
        let layout = plan(&config, None, &cores(7)).unwrap();
        let shard_cores: Vec<_> = layout.shards.iter().map(|s| s.core).collect();
        assert_eq!(shard_cores, (1..7).map(Some).collect::<Vec<_>>());
        assert_partition(&config, &layout);
    }

    #[test]
    fn many_cores_leave_core_zero_to_the_os_and_give_roles_their_own() {
        let config = config_with(symbols(60));
        let layout = plan(&config, None, &cores(16)).unwrap();
        assert_eq!(layout.writer_core, Some(1));
        assert_eq!(layout.publisher_core, Some(2));
        assert_eq!(layout.dashboard_core, Some(3));
        let shard_cores: Vec<_> = layout.shards.iter().map(|s| s.core).collect();
        assert_eq!(shard_cores, (4..16).map(Some).collect::<Vec<_>>());
        assert!(layout.roles().iter().all(|(_, c)| *c != Some(0)));
        assert_partition(&config, &layout);
        // 60 symbols over 12 shards: 5 each.
        assert!(layout.shards.iter().all(|s| s.symbols.len() == 5));
    }

    #[test]
    fn an_affinity_without_core_zero_uses_every_allowed_core() {
        let config = config_with(symbols(60));
        let allowed: Vec<usize> = (8..16).collect();
        let layout = plan(&config, None, &allowed).unwrap();
        assert_eq!(
            (
                layout.writer_core,
                layout.publisher_core,
                layout.dashboard_core
            ),
            (Some(8), Some(9), Some(10))
        );
        let shard_cores: Vec<_> = layout.shards.iter().map(|s| s.core).collect();
        assert_eq!(shard_cores, (11..16).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn unpinned_layouts_keep_the_shape_without_cores() {
        let mut config = config_with(symbols(60));
        config.engine.pin_cores = false;
        let layout = plan(&config, None, &cores(16)).unwrap();
        assert!(!layout.pinned);
        assert_eq!(layout.shards.len(), 12);
        assert!(layout.roles().iter().all(|(_, c)| c.is_none()));
        assert_partition(&config, &layout);
        assert!(layout.to_string().ends_with("(unpinned)"));
    }

    #[test]
    fn no_cores_or_no_symbols_is_an_error() {
        assert_eq!(
            plan_err(&Config::default(), None, &[]),
            "no CPU cores are allowed for this process: check its CPU affinity (taskset, cpuset)"
        );
        // One symbol over many instances leaves most instances with nothing.
        let mut config = config_with(symbols(1));
        config.engine.instance_count = 4;
        let owner = (symbols(1)[0].stable_hash() % 4) as u32;
        config.engine.instance_index = (owner + 1) % 4;
        let e = plan_err(&config, None, &cores(2));
        assert!(
            e.starts_with(&format!(
                "instance {} of 4 owns none of the 1 symbols",
                (owner + 1) % 4
            )),
            "{e}"
        );
    }

    #[test]
    fn dealing_is_balanced_and_deterministic() {
        for n in [1usize, 2, 5, 12, 13, 100, 997] {
            for shards in [1usize, 2, 3, 7, 12] {
                if shards > n {
                    continue;
                }
                let buckets = deal(symbols(n), shards);
                let sizes: Vec<usize> = buckets.iter().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{n} over {shards}: {sizes:?}");
                assert_eq!(sizes.iter().sum::<usize>(), n);
                // Input order does not matter; only the stable hash does.
                let mut reversed = symbols(n);
                reversed.reverse();
                assert_eq!(deal(reversed, shards), buckets);
            }
        }
    }

    #[test]
    fn stable_hash_spreads_symbols_over_instances() {
        // FNV-1a over realistic names: each of 4 instances gets a fair share of 400.
        let names: Vec<Symbol> = (0..400).map(|i| sym(&format!("C{i}USDT"))).collect();
        let mut counts = [0usize; 4];
        for s in &names {
            counts[(s.stable_hash() % 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (60..=140).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn every_instance_plans_a_disjoint_complete_share() {
        let all = symbols(50);
        for count in 1..=5u32 {
            let mut seen = HashSet::new();
            for index in 0..count {
                let config = Config {
                    symbols: all.clone(),
                    engine: EngineConfig {
                        instance_index: index,
                        instance_count: count,
                        ..EngineConfig::default()
                    },
                    ..Config::default()
                };
                let layout = plan(&config, None, &cores(4)).unwrap();
                assert_partition(&config, &layout);
                for shard in &layout.shards {
                    for s in &shard.symbols {
                        assert!(seen.insert(*s), "{s} planned by two instances");
                    }
                }
            }
            assert_eq!(seen.len(), all.len());
        }
    }

    #[test]
    fn shipped_maps_parse_and_plan() {
        let dev = map(include_str!("../shards/dev-2core.toml"));
        assert_eq!(dev.shards.len(), 1);
        let config = Config::default();
        let layout = plan(&config, Some(&dev), &cores(2)).unwrap();
        assert_eq!(layout.shards[0].core, Some(1));
        assert_eq!(layout.dashboard_core, Some(0));
        assert_partition(&config, &layout);

        let metal = map(include_str!("../shards/bare-metal-16core.toml"));
        assert_eq!(
            (
                metal.writer_core,
                metal.publisher_core,
                metal.dashboard_core
            ),
            (1, 2, 3)
        );
        let config = config_with(symbols(30));
        let layout = plan(&config, Some(&metal), &cores(16)).unwrap();
        let shard_cores: Vec<_> = layout.shards.iter().map(|s| s.core).collect();
        assert_eq!(shard_cores, (4..16).map(Some).collect::<Vec<_>>());
        assert_partition(&config, &layout);
        assert!(layout.roles().iter().all(|(_, c)| *c != Some(0)));
    }

    #[test]
    fn explicit_lists_own_exactly_their_symbols() {
        let m = map("writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n\
             [[shard]]\ncore = 1\nsymbols = [\"S3USDT\", \"s7usdt\"]\n\
             [[shard]]\ncore = 2\n\
             [[shard]]\ncore = 3\n");
        let config = config_with(symbols(10));
        let layout = plan(&config, Some(&m), &cores(4)).unwrap();
        assert_eq!(layout.shards[0].symbols, vec![sym("S3USDT"), sym("S7USDT")]);
        assert_eq!(layout.shards[1].symbols.len(), 4);
        assert_eq!(layout.shards[2].symbols.len(), 4);
        assert_partition(&config, &layout);
    }

    #[test]
    fn map_errors_name_the_fix() {
        let head = "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n";
        let config = config_with(symbols(4));
        let cases: &[(&str, &str)] = &[
            (
                "[[shard]]\ncore = 1\nsymbols = [\"S1USDT\"]\n[[shard]]\ncore = 2\nsymbols = [\"S1USDT\"]\n",
                "symbol S1USDT is listed by shard 0 and shard 1: keep it in one shard's list",
            ),
            (
                "[[shard]]\ncore = 1\nsymbols = [\"S1USDT\", \"S1USDT\"]\n[[shard]]\ncore = 2\n",
                "shard 0 lists symbol S1USDT twice: list it once",
            ),
            (
                "[[shard]]\ncore = 9\n",
                "shard 0 is mapped to core 9, which this process may not use (allowed: 0-3): change the shard map, widen the CPU affinity, or set ALPHAPULSE_PIN_CORES=false",
            ),
            (
                "[[shard]]\ncore = 1\n[[shard]]\ncore = 1\n",
                "shards 0 and 1 are both on core 1: give each shard its own core",
            ),
            (
                "[[shard]]\ncore = 1\nsymbols = []\n",
                "shard 0 has an empty symbols list: list its symbols, or remove the symbols line",
            ),
            (
                "[[shard]]\ncore = 1\nsymbols = [\"DOGEUSDT\"]\n[[shard]]\ncore = 2\n",
                "shard 0 lists DOGEUSDT, which is not in SYMBOLS: add it to SYMBOLS or remove it from the map",
            ),
            (
                "[[shard]]\ncore = 1\nsymbols = [\"S0USDT\", \"S1USDT\", \"S2USDT\"]\n",
                "symbol S3USDT is owned by no shard (every shard lists its symbols)",
            ),
            (
                "[[shard]]\ncore = 1\n[[shard]]\ncore = 2\n[[shard]]\ncore = 3\n[[shard]]\ncore = 0\n[[shard]]\ncore = 4\n",
                "shard 4 is mapped to core 4",
            ),
        ];
        for (body, want) in cases {
            let m = map(&format!("{head}{body}"));
            let got = plan_err(&config, Some(&m), &cores(4));
            assert!(got.starts_with(want), "{body}\n got  {got}\n want {want}");
            assert!(!got.contains('\n'));
        }
        // Five hash-spread shards for four symbols.
        let m = map(&format!(
            "{head}[[shard]]\ncore = 1\n[[shard]]\ncore = 2\n[[shard]]\ncore = 3\n[[shard]]\ncore = 4\n[[shard]]\ncore = 5\n"
        ));
        assert_eq!(
            plan_err(&config, Some(&m), &cores(8)),
            "the shard map has 5 shards without a symbols list but only 4 symbols are left for them: configure more symbols or remove shards from the map"
        );
        // A role on a core outside the affinity.
        let m =
            map("writer_core = 7\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 1\n");
        assert!(
            plan_err(&config, Some(&m), &cores(2)).starts_with("the writer is mapped to core 7")
        );
        // Unpinned, the cores of a map are not checked against the affinity.
        let mut unpinned = config.clone();
        unpinned.engine.pin_cores = false;
        let layout = plan(&unpinned, Some(&m), &cores(2)).unwrap();
        assert!(!layout.pinned && layout.writer_core.is_none());
    }

    #[test]
    fn a_listed_symbol_of_another_instance_empties_the_shard() {
        let all = symbols(8);
        let mut config = config_with(all.clone());
        config.engine.instance_count = 2;
        let foreign = all.iter().find(|s| s.stable_hash() % 2 == 1).unwrap();
        let m = map(&format!(
            "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n\
             [[shard]]\ncore = 1\nsymbols = [\"{foreign}\"]\n[[shard]]\ncore = 2\n"
        ));
        let e = plan_err(&config, Some(&m), &cores(4));
        assert!(
            e.starts_with("shard 0 owns no symbols on instance 0 of 2"),
            "{e}"
        );
        config.engine.instance_index = 1;
        let layout = plan(&config, Some(&m), &cores(4)).unwrap();
        assert_eq!(layout.shards[0].symbols, vec![*foreign]);
        assert_partition(&config, &layout);
    }

    #[test]
    fn malformed_maps_are_rejected_with_the_line() {
        let e = ShardMap::parse(
            "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "shard map m.toml has no [[shard]] entries: add at least one"
        );
        let e = ShardMap::parse(
            "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 1\ncpu = 2\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("shard map m.toml line 6: unknown field `cpu`"),
            "{e}"
        );
        let e = ShardMap::parse("writer_core = 0\n[[shard]]\ncore = 1\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `publisher_core`"), "{e}");
        let e = ShardMap::parse(
            "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 1\nsymbols = [\"BTC-USD\"]\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("shard map m.toml line 6:"), "{e}");
        assert!(e.contains("ASCII letters and digits"), "{e}");
        let e = ShardMap::load(Path::new("/nonexistent/map.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read shard map /nonexistent/map.toml"),
            "{e}"
        );
    }

    #[test]
    fn core_ranges_read_like_a_cpu_list() {
        assert_eq!(core_ranges(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(core_ranges(&[5]), "5");
        assert_eq!(core_ranges(&[3, 1, 2, 2]), "1-3");
        assert_eq!(core_ranges(&[]), "none");
    }

    fn good_facts() -> HostFacts {
        HostFacts {
            kernel_release: "6.8.0-45-generic".to_owned(),
            io_uring_disabled: Some(0),
            io_uring_probe: Ok(()),
            memlock_limit_bytes: None,
            cores_configured: 4,
            allowed_cores: cores(4),
        }
    }

    fn two_core_layout() -> Layout {
        plan(&Config::default(), None, &cores(2)).unwrap()
    }

    fn host_err(facts: HostFacts, layout: &Layout) -> String {
        let e = evaluate_host(&facts, layout).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn a_good_host_passes_without_warnings() {
        let layout = two_core_layout();
        let report = evaluate_host(&good_facts(), &layout).unwrap();
        assert!(report.warnings.is_empty());
        assert_eq!(
            report.memlock_wanted_bytes,
            2 * GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES
        );
    }

    #[test]
    fn io_uring_failures_name_the_fix() {
        let layout = two_core_layout();
        let with = |f: fn(&mut HostFacts)| {
            let mut facts = good_facts();
            f(&mut facts);
            facts
        };
        assert_eq!(
            host_err(with(|f| f.io_uring_disabled = Some(2)), &layout),
            "io_uring is disabled (kernel.io_uring_disabled=2): run 'sysctl -w kernel.io_uring_disabled=0'"
        );
        assert!(host_err(
            with(|f| {
                f.io_uring_disabled = Some(1);
                f.io_uring_probe = Err(libc::EPERM);
            }),
            &layout
        )
        .starts_with("io_uring is restricted to the kernel.io_uring_group group"));
        // Group members pass the probe and may run.
        let facts = with(|f| f.io_uring_disabled = Some(1));
        assert!(evaluate_host(&facts, &layout).is_ok());
        assert!(
            host_err(with(|f| f.io_uring_probe = Err(libc::EPERM)), &layout).starts_with(
                "io_uring_setup is refused (EPERM), usually by a container's seccomp profile"
            )
        );
        assert!(
            host_err(with(|f| f.io_uring_probe = Err(libc::ENOSYS)), &layout)
                .starts_with("this kernel has no io_uring")
        );
        assert!(
            host_err(with(|f| f.io_uring_probe = Err(libc::ENOMEM)), &layout)
                .starts_with("io_uring_setup failed (Cannot allocate memory")
        );
        assert!(host_err(
            with(|f| f.kernel_release = "5.4.0-150-generic".to_owned()),
            &layout
        )
        .starts_with("kernel 5.4.0-150-generic is too old: glommio needs Linux 5.8 or newer"));
    }

    #[test]
    fn memlock_is_an_error_below_glommios_floor_or_on_old_kernels() {
        let layout = two_core_layout();
        let mut facts = good_facts();
        facts.memlock_limit_bytes = Some(64 * 1024);
        assert_eq!(
            host_err(facts.clone(), &layout),
            "the memlock limit is 64 KiB but 512 KiB are needed (glommio refuses to start an \
             executor below 512 KiB): run 'ulimit -l 512' before starting, set \
             LimitMEMLOCK=512K in the systemd unit, or raise memlock in /etc/security/limits.conf"
        );
        // 2 MiB is enough for glommio to start but not for two executors' buffers
        // (2 × 1.25 MiB).
        facts.memlock_limit_bytes = Some(2 << 20);
        let report = evaluate_host(&facts, &layout).unwrap();
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0]
            .starts_with("the memlock limit is 2048 KiB but 2 executors want 2560 KiB"));
        facts.kernel_release = "5.10.0".to_owned();
        assert!(host_err(facts.clone(), &layout).starts_with(
            "the memlock limit is 2048 KiB but 2560 KiB are needed (2 glommio executors"
        ));
        facts.memlock_limit_bytes = Some(64 << 20);
        assert!(evaluate_host(&facts, &layout).unwrap().warnings.is_empty());
    }

    #[test]
    fn pinned_cores_must_exist_and_be_allowed() {
        let config = config_with(symbols(20));
        let layout = plan(&config, None, &cores(16)).unwrap();
        let e = host_err(good_facts(), &layout);
        assert_eq!(
            e,
            "shard 0 is on core 4, but this host has only 4 cores: change the shard map or set ALPHAPULSE_PIN_CORES=false"
        );
        let mut facts = good_facts();
        facts.cores_configured = 16;
        facts.allowed_cores = vec![0, 1, 2, 3, 5];
        assert!(host_err(facts.clone(), &layout)
            .starts_with("shard 0 is on core 4, which this process may not use (allowed: 0-3,5)"));
        let mut unpinned = config;
        unpinned.engine.pin_cores = false;
        let layout = plan(&unpinned, None, &cores(16)).unwrap();
        assert!(evaluate_host(&facts, &layout).is_ok());
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel_version("5.12"), Some((5, 12)));
        assert_eq!(parse_kernel_version("weird"), None);
    }

    #[test]
    fn this_host_reports_real_facts() {
        let facts = HostFacts::gather();
        assert!(
            parse_kernel_version(&facts.kernel_release).is_some(),
            "{facts:?}"
        );
        assert!(!facts.allowed_cores.is_empty());
        assert!(facts.cores_configured >= facts.allowed_cores.len());
        assert!(facts
            .allowed_cores
            .iter()
            .all(|&c| c < facts.cores_configured));
    }
}
