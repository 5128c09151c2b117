//! Host tuning for low latency: `alphapulse tuning check | plan | unit`.
//!
//! Runs on the main thread as a command-line tool; no engine starts. In: the validated
//! [`Config`] (its shard map decides which cores matter) and, for `check`, the host's
//! `/proc` and `/sys` files. Out: a PASS / FAIL / N/A table (or JSON) for `check`, the
//! settings `tuning/apply.sh` applies for `plan`, and the engine's systemd unit for
//! `unit`, so the script, the unit and the check all follow the same layout and the
//! same targets.
//!
//! Which cores are tuned: every core the layout pins a role to (shards, writer,
//! publisher, dashboard), except core 0, which stays with the OS: the kernel needs at
//! least one housekeeping CPU for timers, unbound work and interrupts, and core 0 is the
//! one it boots on. With a shard map, the layout is planned against the CPUs the host has
//! online, not against the caller's affinity: on a host with `isolcpus`, a shell's
//! affinity leaves out exactly the cores being checked. Without a map, the layout is
//! planned as `alphapulse run` plans it, from the caller's affinity.
//!
//! Layout:
//! - [`checks`]: every check as a pure function of file contents (unit-tested).
//! - [`host`]: reads those files (the only I/O), with the probes of
//!   [`topology::host`].
//! - [`unit`](mod@unit): renders the systemd unit and the plan lines.

pub mod checks;
pub mod host;
pub mod unit;

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Config;
use crate::topology::{self, core_ranges, Layout, ShardMap, TopologyError};

/// Environment variable holding the default `--policy` of `tuning check`.
pub const POLICY_ENV: &str = "ALPHAPULSE_TUNING_POLICY";

/// A file's text, or why it could not be read (one sentence, for an N/A row).
pub type Readout = Result<String, String>;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    /// The check could not be made here (a file is missing, nothing to tune); never a
    /// failure.
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `cores_isolated`.
    pub name: &'static str,
    pub status: Status,
    /// What the host has now; for N/A, why the check could not be made.
    pub state: String,
    /// What the engine wants.
    pub expected: String,
    /// How to get there; empty unless the check fails.
    pub fix: String,
}

/// The names of every check, in table order.
pub const CHECK_NAMES: [&str; 13] = [
    "cores_isolated",
    "nohz_full",
    "rcu_nocbs",
    "irq_affinity",
    "cpu_governor",
    "c_states",
    "transparent_hugepages",
    "swap",
    "memlock",
    "io_uring",
    "busy_poll",
    "socket_buffers",
    "clocksource",
];

/// What failing checks mean to `tuning check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Print the failures and exit 0: the engine may start on an untuned host.
    Warn,
    /// Exit 1 when any check fails: a systemd `ExecStartPre` then stops the start.
    Refuse,
}

impl Policy {
    fn as_str(self) -> &'static str {
        match self {
            Policy::Warn => "warn",
            Policy::Refuse => "refuse",
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TuningCommand {
    /// PASS/FAIL table of this host's low-latency settings for the engine's cores;
    /// exits 1 when a check fails (see --policy).
    Check(CheckArgs),
    /// The settings tuning/apply.sh applies for this layout, as `key value` lines.
    Plan(PlanArgs),
    /// Prints the engine's systemd unit, with CPUAffinity= from the layout.
    Unit(unit::UnitArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// warn: report failures and exit 0; refuse: exit 1 when a check fails.
    /// Default: $ALPHAPULSE_TUNING_POLICY, else refuse.
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Plan for a host with these CPUs online (a cpu list such as 0-15) instead of this
    /// one.
    #[arg(long, value_name = "LIST")]
    pub host_cpus: Option<String>,
}

/// Why a tuning command stopped.
#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(
        "shard map {map} puts {role} on core {core}, which this host does not have (online: \
         {online}): change the shard map"
    )]
    CoreMissing {
        map: String,
        role: String,
        core: usize,
        online: String,
    },
    #[error("--host-cpus {0}")]
    BadHostCpus(String),
    #[error("{POLICY_ENV}={0}: expected warn or refuse")]
    BadPolicy(String),
    #[error(
        "{failed} of {total} tuning checks fail: see the FIX column, or set {POLICY_ENV}=warn \
         to start anyway"
    )]
    ChecksFailed { failed: usize, total: usize },
}

impl TuningError {
    /// Bad arguments or configuration (exit 2), as opposed to failing checks (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, TuningError::ChecksFailed { .. })
    }
}

/// The layout and the cores the tuning is about.
#[derive(Debug, Clone, PartialEq)]
pub struct TuningPlan {
    pub layout: Layout,
    /// The CPUs online on the host planned for.
    pub online: Vec<usize>,
    /// Every core the layout pins a role to; empty when unpinned.
    pub engine_cores: Vec<usize>,
    /// The engine cores the kernel should leave alone: all but core 0.
    pub tuned_cores: Vec<usize>,
    /// The online CPUs outside `tuned_cores`: the OS and interrupts go there.
    pub housekeeping_cores: Vec<usize>,
    /// Socket buffer ceiling the feed wants ([`checks::socket_buffer_bytes`]).
    pub socket_buffer_bytes: u64,
}

impl TuningPlan {
    /// Plans `config`'s layout for a host with `online` CPUs; `allowed` is what an
    /// unmapped layout is planned from (the caller's affinity, as `alphapulse run`).
    pub fn new(
        config: &Config,
        online: &[usize],
        allowed: &[usize],
    ) -> Result<TuningPlan, TuningError> {
        let layout = match &config.shard_map {
            Some(path) => {
                let map = ShardMap::load(path)?;
                if config.engine.pin_cores {
                    check_map_cores(&map, &path.display().to_string(), online)?;
                }
                topology::plan(config, Some(&map), online)?
            }
            None => topology::plan(config, None, allowed)?,
        };
        Ok(TuningPlan::from_layout(
            layout,
            online,
            config.feed.max_frame_bytes as u64,
        ))
    }

    /// The cores to tune for a planned layout.
    pub fn from_layout(layout: Layout, online: &[usize], max_frame_bytes: u64) -> TuningPlan {
        let mut engine_cores: Vec<usize> =
            layout.roles().into_iter().filter_map(|(_, c)| c).collect();
        engine_cores.sort_unstable();
        engine_cores.dedup();
        let tuned_cores: Vec<usize> = engine_cores.iter().copied().filter(|&c| c != 0).collect();
        let housekeeping_cores: Vec<usize> = online
            .iter()
            .copied()
            .filter(|c| !tuned_cores.contains(c))
            .collect();
        TuningPlan {
            layout,
            online: online.to_vec(),
            engine_cores,
            tuned_cores,
            housekeeping_cores,
            socket_buffer_bytes: checks::socket_buffer_bytes(max_frame_bytes),
        }
    }

    /// The cores whose per-CPU settings (governor, C-states) matter: the engine's, or
    /// every online CPU when the engine is not pinned.
    pub fn per_cpu_cores(&self) -> &[usize] {
        if self.engine_cores.is_empty() {
            &self.online
        } else {
            &self.engine_cores
        }
    }

    /// Why the core-isolation checks cannot apply, if they cannot.
    fn nothing_to_tune(&self) -> Option<String> {
        if !self.layout.pinned {
            Some("the engine is not pinned (ALPHAPULSE_PIN_CORES=false)".to_owned())
        } else if self.tuned_cores.is_empty() {
            Some("every role runs on core 0, which stays with the OS".to_owned())
        } else if self.housekeeping_cores.is_empty() {
            Some("no CPU would be left for the OS".to_owned())
        } else {
            None
        }
    }

    /// The kernel command-line parameters that isolate the tuned cores; `None` when
    /// there is nothing to isolate.
    pub fn kernel_cmdline(&self) -> Option<String> {
        self.nothing_to_tune()
            .is_none()
            .then(|| kernel_cmdline(&self.tuned_cores))
    }
}

/// `isolcpus=managed_irq,domain,L nohz_full=L rcu_nocbs=L` for cores `L`.
/// `managed_irq` also keeps kernel-managed (per-queue) interrupts off them where the
/// driver allows.
pub fn kernel_cmdline(cores: &[usize]) -> String {
    let list = core_ranges(cores);
    format!("isolcpus=managed_irq,domain,{list} nohz_full={list} rcu_nocbs={list}")
}

/// A map naming a core the host does not have is a configuration error, named as such
/// (the planner would call it "not allowed").
fn check_map_cores(map: &ShardMap, origin: &str, online: &[usize]) -> Result<(), TuningError> {
    match map
        .roles()
        .into_iter()
        .find(|(_, core)| !online.contains(core))
    {
        Some((role, core)) => Err(TuningError::CoreMissing {
            map: origin.to_owned(),
            role: role.to_string(),
            core,
            online: core_ranges(online),
        }),
        None => Ok(()),
    }
}

/// Judges the host against the plan: one row per name of [`CHECK_NAMES`], in order.
pub fn evaluate(plan: &TuningPlan, host: &host::HostSnapshot) -> Vec<Check> {
    let online_max = plan.online.iter().copied().max();
    let cores = &plan.tuned_cores;
    let nohz = checks::nohz_full_cpus(&host.nohz_full, &host.cmdline, online_max);
    let mut rows = match plan.nothing_to_tune() {
        Some(reason) => ["cores_isolated", "nohz_full", "rcu_nocbs", "irq_affinity"]
            .into_iter()
            .map(|name| Check {
                name,
                status: Status::NotApplicable,
                state: reason.clone(),
                expected: "tuned engine cores".to_owned(),
                fix: String::new(),
            })
            .collect(),
        None => vec![
            checks::isolation(
                cores,
                online_max,
                &host.isolated,
                &host.cmdline,
                &host.cgroup_isolated,
            ),
            checks::nohz_full(cores, &nohz),
            checks::rcu_nocbs(cores, online_max, &host.cmdline, &nohz),
            checks::irq_affinity(
                cores,
                &plan.housekeeping_cores,
                online_max,
                &host.irqs,
                &host.default_irq_affinity,
            ),
        ],
    };
    rows.extend([
        checks::governor(&host.governors),
        checks::c_states(&host.idle_states, &host.cmdline),
        checks::transparent_hugepages(&host.thp_enabled),
        checks::swap(&host.swaps, &host.swappiness),
        checks::memlock(&host.facts, &plan.layout),
        checks::io_uring(&host.facts),
        checks::busy_poll(&host.busy_poll, &host.busy_read),
        checks::socket_buffers(
            &host.rmem_max,
            &host.wmem_max,
            &host.tcp_rmem,
            plan.socket_buffer_bytes,
        ),
        checks::clocksource(&host.clocksource, checks::wanted_clocksource()),
    ]);
    debug_assert!(rows.iter().map(|c| c.name).eq(CHECK_NAMES));
    rows
}

/// The `tuning check --json` object.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// No check fails.
    pub ok: bool,
    pub policy: Policy,
    pub pass: usize,
    pub fail: usize,
    pub not_applicable: usize,
    pub layout: String,
    pub engine_cores: &'a [usize],
    pub tuned_cores: &'a [usize],
    pub housekeeping_cores: &'a [usize],
    pub checks: &'a [Check],
}

impl<'a> Report<'a> {
    pub fn new(plan: &'a TuningPlan, checks: &'a [Check], policy: Policy) -> Report<'a> {
        let count = |s| checks.iter().filter(|c| c.status == s).count();
        Report {
            ok: count(Status::Fail) == 0,
            policy,
            pass: count(Status::Pass),
            fail: count(Status::Fail),
            not_applicable: count(Status::NotApplicable),
            layout: plan.layout.to_string(),
            engine_cores: &plan.engine_cores,
            tuned_cores: &plan.tuned_cores,
            housekeeping_cores: &plan.housekeeping_cores,
            checks,
        }
    }

    /// The table `tuning check` prints: a line about the cores, the rows, a count.
    pub fn table(&self) -> String {
        let cores = |c: &[usize]| {
            if c.is_empty() {
                "none".to_owned()
            } else {
                core_ranges(c)
            }
        };
        let mut out = format!(
            "engine cores: {} (tuned: {}, housekeeping: {})\n",
            cores(self.engine_cores),
            cores(self.tuned_cores),
            cores(self.housekeeping_cores),
        );
        let header = ["CHECK", "STATUS", "STATE", "EXPECTED", "FIX"];
        let rows: Vec<[&str; 5]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.name,
                    c.status.as_str(),
                    c.state.as_str(),
                    c.expected.as_str(),
                    if c.fix.is_empty() {
                        "-"
                    } else {
                        c.fix.as_str()
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} checks: {} pass, {} fail, {} n/a",
            self.checks.len(),
            self.pass,
            self.fail,
            self.not_applicable
        );
        out
    }
}

/// Parses `--host-cpus`.
fn host_cpus(list: &str) -> Result<Vec<usize>, TuningError> {
    match topology::parse_cpu_list(list, None) {
        Ok(cpus) if !cpus.is_empty() => Ok(cpus),
        Ok(_) => Err(TuningError::BadHostCpus(format!(
            "{list:?}: name at least one CPU, e.g. 0-15"
        ))),
        Err(e) => Err(TuningError::BadHostCpus(format!(
            "{e}: write it as 0-15 or 0,2-7"
        ))),
    }
}

/// The plan for `--host-cpus` if given, else for this host.
fn plan_for(config: &Config, host_cpus_arg: Option<&str>) -> Result<TuningPlan, TuningError> {
    match host_cpus_arg {
        Some(list) => {
            let cpus = host_cpus(list)?;
            TuningPlan::new(config, &cpus, &cpus)
        }
        None => TuningPlan::new(
            config,
            &topology::host::online_cpus(),
            &topology::allowed_cores(),
        ),
    }
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error worth a
/// panic: the verdict still goes out as the exit code.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Runs one `alphapulse tuning` command, printing its output. `policy_env` is the
/// value of [`POLICY_ENV`] in the merged environment.
pub fn run(
    command: TuningCommand,
    config: &Config,
    policy_env: Option<&str>,
) -> Result<(), TuningError> {
    match command {
        TuningCommand::Check(args) => {
            let policy = match (args.policy, policy_env) {
                (Some(p), _) => p,
                (None, None) => Policy::Refuse,
                (None, Some(v)) => match v.trim().to_ascii_lowercase().as_str() {
                    "warn" => Policy::Warn,
                    "refuse" | "" => Policy::Refuse,
                    _ => return Err(TuningError::BadPolicy(v.to_owned())),
                },
            };
            let plan = plan_for(config, None)?;
            let host = host::HostSnapshot::read(plan.per_cpu_cores());
            let rows = evaluate(&plan, &host);
            let report = Report::new(&plan, &rows, policy);
            if args.json {
                // Serializing plain strings, numbers and enums cannot fail.
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                emit(&format!("{json}\n"));
            } else {
                emit(&report.table());
            }
            if report.fail == 0 {
                return Ok(());
            }
            match policy {
                Policy::Refuse => Err(TuningError::ChecksFailed {
                    failed: report.fail,
                    total: rows.len(),
                }),
                Policy::Warn => {
                    eprintln!(
                        "warning: {} of {} tuning checks fail; going on ({POLICY_ENV}={})",
                        report.fail,
                        rows.len(),
                        policy.as_str()
                    );
                    Ok(())
                }
            }
        }
        TuningCommand::Plan(args) => {
            let plan = plan_for(config, args.host_cpus.as_deref())?;
            emit(&unit::plan_lines(&plan));
            Ok(())
        }
        TuningCommand::Unit(args) => {
            let plan = plan_for(config, args.host_cpus.as_deref())?;
            emit(&unit::render(&plan, config, &args));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Symbol;

    fn metal() -> TuningPlan {
        let map =
            ShardMap::parse(include_str!("../../shards/bare-metal-16core.toml"), "m").unwrap();
        let config = Config {
            symbols: (0..24)
                .map(|i| Symbol::new(&format!("S{i}USDT")).unwrap())
                .collect(),
            ..Config::default()
        };
        let online: Vec<usize> = (0..16).collect();
        let layout = topology::plan(&config, Some(&map), &online).unwrap();
        TuningPlan::from_layout(layout, &online, 1 << 20)
    }

    #[test]
    fn core_zero_stays_with_the_os() {
        let plan = metal();
        assert_eq!(plan.engine_cores, (1..16).collect::<Vec<_>>());
        assert_eq!(plan.tuned_cores, (1..16).collect::<Vec<_>>());
        assert_eq!(plan.housekeeping_cores, vec![0]);
        assert_eq!(
            plan.kernel_cmdline().unwrap(),
            "isolcpus=managed_irq,domain,1-15 nohz_full=1-15 rcu_nocbs=1-15"
        );
        // Two cores: the control roles share core 0 with the OS; the shard is tuned.
        let layout = topology::plan(&Config::default(), None, &[0, 1]).unwrap();
        let plan = TuningPlan::from_layout(layout, &[0, 1], 1 << 20);
        assert_eq!(
            (plan.engine_cores.as_slice(), plan.tuned_cores.as_slice()),
            (&[0, 1][..], &[1][..])
        );
        // One core: nothing to isolate.
        let layout = topology::plan(&Config::default(), None, &[0]).unwrap();
        let plan = TuningPlan::from_layout(layout, &[0], 1 << 20);
        assert_eq!(plan.kernel_cmdline(), None);
        assert_eq!(
            plan.nothing_to_tune().unwrap(),
            "every role runs on core 0, which stays with the OS"
        );
    }

    #[test]
    fn a_map_naming_a_missing_core_is_a_configuration_error() {
        let map = ShardMap::parse(
            "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 1\n[[shard]]\ncore = 9\n",
            "m.toml",
        )
        .unwrap();
        let e = check_map_cores(&map, "m.toml", &[0, 1, 2, 3]).unwrap_err();
        assert!(e.is_usage());
        assert_eq!(
            e.to_string(),
            "shard map m.toml puts shard 1 on core 9, which this host does not have (online: 0-3): change the shard map"
        );
        assert!(check_map_cores(&map, "m.toml", &(0..10).collect::<Vec<_>>()).is_ok());
    }

    fn tuned_host() -> host::HostSnapshot {
        let ok = |s: &str| -> Readout { Ok(s.to_owned()) };
        let cores: Vec<usize> = (1..16).collect();
        host::HostSnapshot {
            cmdline: ok("ro isolcpus=managed_irq,domain,1-15 nohz_full=1-15 rcu_nocbs=1-15"),
            isolated: ok("1-15\n"),
            nohz_full: ok("1-15\n"),
            cgroup_isolated: Err("cannot read it".to_owned()),
            irqs: Ok(vec![
                ("24".to_owned(), ok("0\n")),
                ("25".to_owned(), ok("0\n")),
            ]),
            default_irq_affinity: ok("0001\n"),
            governors: cores.iter().map(|&c| (c, ok("performance\n"))).collect(),
            idle_states: cores
                .iter()
                .map(|&c| {
                    (
                        c,
                        Ok(vec![
                            checks::IdleState::parse("POLL", "0", "0").unwrap(),
                            checks::IdleState::parse("C1", "2", "0").unwrap(),
                            checks::IdleState::parse("C6", "133", "1").unwrap(),
                        ]),
                    )
                })
                .collect(),
            thp_enabled: ok("always [madvise] never\n"),
            swaps: ok("Filename\tType\tSize\tUsed\tPriority\n"),
            swappiness: ok("60\n"),
            busy_poll: ok("50\n"),
            busy_read: ok("50\n"),
            rmem_max: ok("16777216\n"),
            wmem_max: ok("16777216\n"),
            tcp_rmem: ok("4096 131072 16777216\n"),
            clocksource: ok(&format!("{}\n", checks::wanted_clocksource())),
            facts: topology::HostFacts {
                kernel_release: "6.8.0".to_owned(),
                io_uring_disabled: Some(0),
                io_uring_probe: Ok(()),
                memlock_limit_bytes: None,
                cores_configured: 16,
                allowed_cores: (0..16).collect(),
            },
        }
    }

    #[test]
    fn a_tuned_host_passes_and_an_untuned_one_does_not() {
        let plan = metal();
        let rows = evaluate(&plan, &tuned_host());
        assert_eq!(rows.len(), CHECK_NAMES.len());
        for row in &rows {
            assert_eq!(row.status, Status::Pass, "{row:?}");
        }
        let report = Report::new(&plan, &rows, Policy::Refuse);
        assert!(report.ok);

        let mut host = tuned_host();
        host.isolated = Ok("\n".to_owned());
        host.cmdline = Ok("ro quiet".to_owned());
        host.nohz_full = Ok("(null)\n".to_owned());
        host.thp_enabled = Ok("[always] madvise never\n".to_owned());
        host.irqs = Ok(vec![("24".to_owned(), Ok("0-15\n".to_owned()))]);
        let rows = evaluate(&plan, &host);
        let failed: Vec<&str> = rows
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            [
                "cores_isolated",
                "nohz_full",
                "rcu_nocbs",
                "irq_affinity",
                "transparent_hugepages"
            ]
        );
        let report = Report::new(&plan, &rows, Policy::Refuse);
        assert_eq!((report.ok, report.fail, report.pass), (false, 5, 8));
        let table = report.table();
        assert!(
            table.starts_with("engine cores: 1-15 (tuned: 1-15, housekeeping: 0)\nCHECK "),
            "{table}"
        );
        assert!(
            table.ends_with("13 checks: 8 pass, 5 fail, 0 n/a\n"),
            "{table}"
        );
        for name in CHECK_NAMES {
            assert_eq!(
                table
                    .lines()
                    .filter(|l| l.starts_with(&format!("{name} ")))
                    .count(),
                1,
                "{name}"
            );
        }
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][0]["status"], "FAIL");
        assert_eq!(json["checks"][7]["status"], "PASS");
        assert_eq!(json["policy"], "refuse");
    }

    #[test]
    fn an_unpinned_engine_has_no_cores_to_isolate() {
        let config = Config {
            engine: crate::config::EngineConfig {
                pin_cores: false,
                ..Default::default()
            },
            ..Config::default()
        };
        let layout = topology::plan(&config, None, &[0, 1]).unwrap();
        let plan = TuningPlan::from_layout(layout, &[0, 1], 1 << 20);
        assert_eq!(plan.per_cpu_cores(), &[0, 1]);
        let rows = evaluate(&plan, &tuned_host());
        assert_eq!(rows[0].status, Status::NotApplicable);
        assert_eq!(
            rows[0].state,
            "the engine is not pinned (ALPHAPULSE_PIN_CORES=false)"
        );
        assert_eq!(rows[3].status, Status::NotApplicable);
    }

    #[test]
    fn host_cpus_must_be_a_cpu_list() {
        assert_eq!(host_cpus("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert!(host_cpus("").unwrap_err().is_usage());
        assert!(host_cpus("a-b")
            .unwrap_err()
            .to_string()
            .starts_with("--host-cpus cpu list"));
    }
}
