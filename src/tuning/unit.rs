//! Renders what the host files need from the layout: the engine's systemd unit
//! (`tuning unit`) and the settings `tuning/apply.sh` applies (`tuning plan`).
//!
//! Both are pure text from a [`TuningPlan`], so they always match the shard map they were
//! planned from, and the script never parses TOML itself.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::checks::{self, BUSY_POLL_US, IDLE_EXIT_LATENCY_MAX_US, SWAPPINESS_MAX};
use super::TuningPlan;
use crate::config::Config;
use crate::topology::core_ranges;

/// File descriptors kept for everything but dashboard clients and exchange
/// connections: the database and Redis clients, the spool, logs, the listener.
const FD_RESERVE: u64 = 1024;
/// The smallest `LimitNOFILE` rendered; systemd's own default soft limit (1024) is far
/// too low for a dashboard server.
const MIN_NOFILE: u64 = 65_536;

#[derive(Debug, Clone, clap::Args)]
pub struct UnitArgs {
    /// Render for a host with these CPUs online (a cpu list such as 0-15) instead of
    /// this one.
    #[arg(long, value_name = "LIST")]
    pub host_cpus: Option<String>,
    /// Where the alphapulse binary is installed.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/alphapulse")]
    pub binary: PathBuf,
    /// The environment file holding the settings (DATABASE_URL, SHARD_MAP, ...).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/alphapulse/alphapulse.env"
    )]
    pub env_file: PathBuf,
    /// A TOML configuration file the unit's commands pass with -c (optional; the
    /// environment file alone is enough).
    #[arg(long, value_name = "PATH")]
    pub exec_config: Option<PathBuf>,
    /// The user the engine runs as.
    #[arg(long, value_name = "NAME", default_value = "alphapulse")]
    pub user: String,
}

/// `LimitNOFILE` for `config`: a descriptor per dashboard client and per exchange
/// connection (twice, for make-before-break rotation), plus [`FD_RESERVE`], rounded up to
/// a power of two and at least [`MIN_NOFILE`].
pub fn nofile_limit(config: &Config) -> u64 {
    let needed = config.websocket_max_clients as u64
        + 2 * config.binance_max_connections as u64
        + FD_RESERVE;
    needed.next_power_of_two().max(MIN_NOFILE)
}

/// The `key value` lines of `tuning plan`, read by `tuning/apply.sh`. A key whose value
/// does not apply (no core to isolate) has an empty value.
pub fn plan_lines(plan: &TuningPlan) -> String {
    let list = |cores: &[usize]| {
        if cores.is_empty() {
            String::new()
        } else {
            core_ranges(cores)
        }
    };
    let isolate = plan.kernel_cmdline().is_some();
    let tuned = if isolate {
        list(&plan.tuned_cores)
    } else {
        String::new()
    };
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{key} {value}");
    };
    line("layout", &plan.layout.to_string());
    line("engine_cores", &list(&plan.engine_cores));
    line("per_cpu_cores", &list(plan.per_cpu_cores()));
    line("tuned_cores", &tuned);
    line(
        "housekeeping_cores",
        &if isolate {
            list(&plan.housekeeping_cores)
        } else {
            String::new()
        },
    );
    line(
        "housekeeping_mask",
        &if isolate {
            checks::cpu_mask(&plan.housekeeping_cores)
        } else {
            String::new()
        },
    );
    line("kernel_cmdline", &plan.kernel_cmdline().unwrap_or_default());
    line("governor", "performance");
    line("transparent_hugepage", "madvise");
    line(
        "idle_exit_latency_max_us",
        &IDLE_EXIT_LATENCY_MAX_US.to_string(),
    );
    let bytes = plan.socket_buffer_bytes.to_string();
    line(
        "sysctl_at_least",
        &format!("net.core.busy_poll {BUSY_POLL_US}"),
    );
    line(
        "sysctl_at_least",
        &format!("net.core.busy_read {BUSY_POLL_US}"),
    );
    line("sysctl_at_least", &format!("net.core.rmem_max {bytes}"));
    line("sysctl_at_least", &format!("net.core.wmem_max {bytes}"));
    line("tcp_rmem_max_at_least", &bytes);
    line("sysctl_at_most", &format!("vm.swappiness {SWAPPINESS_MAX}"));
    out
}

/// Which role runs where, without the symbols: `shards on cores 4-15; writer on core 1, ...`.
fn describe(plan: &TuningPlan) -> String {
    let layout = &plan.layout;
    if !layout.pinned {
        return format!("{} shards, not pinned", layout.shards.len());
    }
    let shard_cores: Vec<usize> = layout.shards.iter().filter_map(|s| s.core).collect();
    let core = |c: Option<usize>| c.map_or("any core".to_owned(), |c| format!("core {c}"));
    format!(
        "shards on cores {}; writer on {}, publisher on {}, dashboard on {}",
        core_ranges(&shard_cores),
        core(layout.writer_core),
        core(layout.publisher_core),
        core(layout.dashboard_core),
    )
}

/// The engine's systemd unit for `plan`.
pub fn render(plan: &TuningPlan, config: &Config, args: &UnitArgs) -> String {
    let binary = args.binary.display();
    let config_arg = match &args.exec_config {
        Some(path) => format!(" -c {}", path.display()),
        None => String::new(),
    };
    let affinity = if plan.engine_cores.is_empty() {
        "# CPUAffinity= is not set: the layout is not pinned (ALPHAPULSE_PIN_CORES=false).\n"
            .to_owned()
    } else {
        format!(
            "# Every core the layout pins a role to; the engine checks at start that it may\n\
             # use them.\nCPUAffinity={}\n",
            core_ranges(&plan.engine_cores)
        )
    };
    let source = match &config.shard_map {
        Some(path) => format!("shard map {}", path.display()),
        None => "no shard map (planned from the cores allowed at render time)".to_owned(),
    };
    format!(
        "\
# alphapulse.service: the AlphaPulse engine.
#
# Rendered by `alphapulse tuning unit` from the {source}:
#   {layout}
# Render it again whenever the shard map changes, so CPUAffinity= matches the map.
#
# Settings come from {env_file} (DATABASE_URL, REDIS_URL,
# SHARD_MAP, ...; see alphapulse.env.example). ALPHAPULSE_TUNING_POLICY there decides
# what a failing `tuning check` does before each start: warn (start anyway, the table
# goes to the journal) or refuse (the start fails).

[Unit]
Description=AlphaPulse market-data and signal engine
Wants=network-online.target alphapulse-tuning.service
After=network-online.target alphapulse-tuning.service
# At most 5 starts in 10 minutes, then systemd gives up until an operator steps in: each
# start opens every exchange connection again, and Binance allows 300 connection
# attempts per 5 minutes per IP.
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
User={user}
Group={user}
EnvironmentFile={env_file}
StateDirectory=alphapulse
WorkingDirectory=/var/lib/alphapulse
ExecStartPre={binary}{config_arg} tuning check
ExecStart={binary}{config_arg} run
{affinity}# glommio locks about 1.25 MiB per executor for io_uring; `alphapulse tuning check`
# and the engine's startup check say when the limit is too low.
LimitMEMLOCK=infinity
# Dashboard clients ({clients}) and exchange connections, with room to spare.
LimitNOFILE={nofile}
Restart=on-failure
RestartSec=5s
# On SIGTERM the engine stops its shards, then the sinks drain the rings and exit.
KillSignal=SIGTERM
TimeoutStopSec=30s
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
",
        layout = describe(plan),
        env_file = args.env_file.display(),
        user = args.user,
        clients = config.websocket_max_clients,
        nofile = nofile_limit(config),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Symbol;
    use crate::topology::{self, ShardMap};
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        unit: UnitArgs,
    }

    fn metal_config() -> Config {
        Config {
            symbols: (0..24)
                .map(|i| Symbol::new(&format!("S{i}USDT")).unwrap())
                .collect(),
            shard_map: Some("shards/bare-metal-16core.toml".into()),
            ..Config::default()
        }
    }

    fn metal_plan(config: &Config) -> TuningPlan {
        let map =
            ShardMap::parse(include_str!("../../shards/bare-metal-16core.toml"), "m").unwrap();
        let online: Vec<usize> = (0..16).collect();
        TuningPlan::from_layout(
            topology::plan(config, Some(&map), &online).unwrap(),
            &online,
            1 << 20,
        )
    }

    #[test]
    fn the_unit_pins_to_the_maps_cores() {
        let config = metal_config();
        let args = Args::parse_from(["x"]).unit;
        let unit = render(&metal_plan(&config), &config, &args);
        assert!(unit.contains("\nCPUAffinity=1-15\n"), "{unit}");
        assert!(unit.contains(
            "#   shards on cores 4-15; writer on core 1, publisher on core 2, dashboard on core 3\n"
        ));
        assert!(unit.contains("\nLimitMEMLOCK=infinity\n"));
        assert!(unit.contains("\nLimitNOFILE=65536\n"));
        assert!(unit.contains("\nExecStartPre=/usr/local/bin/alphapulse tuning check\n"));
        assert!(unit.contains("\nExecStart=/usr/local/bin/alphapulse run\n"));
        assert!(unit.contains("\nEnvironmentFile=/etc/alphapulse/alphapulse.env\n"));
        assert!(unit.contains("\nRestart=on-failure\n"));
        let args =
            Args::parse_from(["x", "--binary", "/opt/ap", "--exec-config", "/etc/ap.toml"]).unit;
        let unit = render(&metal_plan(&config), &config, &args);
        assert!(
            unit.contains("\nExecStart=/opt/ap -c /etc/ap.toml run\n"),
            "{unit}"
        );
    }

    #[test]
    fn nofile_grows_with_the_dashboard_clients() {
        let mut config = Config::default();
        assert_eq!(nofile_limit(&config), 65_536);
        config.websocket_max_clients = 100_000;
        assert_eq!(nofile_limit(&config), 131_072);
    }

    #[test]
    fn plan_lines_carry_every_target() {
        let plan = metal_plan(&metal_config());
        let text = plan_lines(&plan);
        for want in [
            "engine_cores 1-15\n",
            "tuned_cores 1-15\n",
            "housekeeping_cores 0\n",
            "housekeeping_mask 1\n",
            "kernel_cmdline isolcpus=managed_irq,domain,1-15 nohz_full=1-15 rcu_nocbs=1-15\n",
            "sysctl_at_least net.core.busy_poll 50\n",
            "sysctl_at_least net.core.rmem_max 4194304\n",
            "tcp_rmem_max_at_least 4194304\n",
            "sysctl_at_most vm.swappiness 1\n",
        ] {
            assert!(text.contains(want), "{want}in\n{text}");
        }
        // Every line is `key value` with a plain key.
        for line in text.lines() {
            let key = line.split(' ').next().unwrap();
            assert!(
                key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{line}"
            );
        }
    }
}
