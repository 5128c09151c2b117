//! Shard maps, core layout planning and startup host checks.
//!
//! Runs on the main thread at startup, before any executor exists. In: the validated
//! [`Config`](crate::config::Config), an optional [`ShardMap`] (TOML, see `shards/`) and the cores this process
//! may use. Out: a [`Layout`] saying which core runs each role and which symbols each
//! shard owns, and a [`HostReport`] (or one [`HostError`] sentence naming the fix)
//! saying whether this host can run that layout.
//!
//! Planning is pure: [`plan()`] takes the cores as an argument, so every rule is tested
//! without touching the machine. Only [`host`] asks the kernel anything.
//!
//! Layout:
//! - this file: the shard map, the [`Layout`] and its errors;
//! - `plan`: the planning rules, from a map or from the allowed cores;
//! - `cpus`: cpu lists as the kernel writes them (`0-3,8`);
//! - [`host`]: what this host offers ([`HostFacts`]), read from the kernel;
//! - `check`: whether the host can run a layout, the engine's startup check.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::market::Symbol;

mod check;
mod cpus;
pub mod host;
mod plan;
#[cfg(test)]
mod tests;

pub use check::{check_host, evaluate_host, HostError, HostReport};
pub use cpus::{core_ranges, parse_cpu_list, MAX_CPU};
pub use host::{allowed_cores, HostFacts};
pub use plan::{plan, plan_for_host};

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

    /// Every role the map places, with its core (see [`Role::with_cores`]).
    pub fn roles(&self) -> Vec<(Role, usize)> {
        Role::with_cores(
            [self.writer_core, self.publisher_core, self.dashboard_core],
            self.shards.iter().map(|s| s.core).enumerate(),
        )
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
    /// The dashboard runs on the first shard's executor (`engine.dashboard_on_shard`);
    /// `dashboard_core` is then that shard's core.
    pub dashboard_on_shard: bool,
}

/// One shard: its index, its core (`None` when unpinned) and the symbols it owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    pub index: usize,
    pub core: Option<usize>,
    pub symbols: Vec<Symbol>,
}

impl Layout {
    /// How many glommio executors the layout starts: one per shard plus the dashboard's
    /// unless it runs on a shard's. (The writer and publisher are plain threads running
    /// blocking clients.)
    pub fn executors(&self) -> usize {
        self.shards.len() + usize::from(!self.dashboard_on_shard)
    }

    /// The same shape with no core assigned to any role.
    pub fn unpinned(self) -> Layout {
        Layout {
            shards: self
                .shards
                .into_iter()
                .map(|s| ShardPlan { core: None, ..s })
                .collect(),
            writer_core: None,
            publisher_core: None,
            dashboard_core: None,
            pinned: false,
            busy_poll: self.busy_poll,
            dashboard_on_shard: self.dashboard_on_shard,
        }
    }

    /// Every (role, core) pair, for checks and summaries.
    pub fn roles(&self) -> Vec<(Role, Option<usize>)> {
        Role::with_cores(
            [self.writer_core, self.publisher_core, self.dashboard_core],
            self.shards.iter().map(|s| (s.index, s.core)),
        )
    }
}

/// A role the layout puts on a core; displayed as checks and errors name it
/// (`the writer`, `shard 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Publisher,
    Dashboard,
    Shard(usize),
}

impl Role {
    /// The one list of (role, core) that every check and summary walks: the writer, the
    /// publisher and the dashboard, then each `(index, core)` of `shards`. Checks stop
    /// at the first role that fails, so this order decides which one an error names.
    pub fn with_cores<C>(
        [writer, publisher, dashboard]: [C; 3],
        shards: impl IntoIterator<Item = (usize, C)>,
    ) -> Vec<(Role, C)> {
        let mut roles = vec![
            (Role::Writer, writer),
            (Role::Publisher, publisher),
            (Role::Dashboard, dashboard),
        ];
        roles.extend(shards.into_iter().map(|(i, c)| (Role::Shard(i), c)));
        roles
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Writer => f.write_str("the writer"),
            Role::Publisher => f.write_str("the publisher"),
            Role::Dashboard => f.write_str("the dashboard"),
            Role::Shard(i) => write!(f, "shard {i}"),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = |c: Option<usize>| c.map_or("any core".to_owned(), |c| format!("core {c}"));
        let dashboard = if self.dashboard_on_shard {
            format!("{} (on shard 0's executor)", core(self.dashboard_core))
        } else {
            core(self.dashboard_core)
        };
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
            dashboard,
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
