//! `alphapulse tuning` on this host, through the built binary: the table and the JSON
//! agree with each other and with the exit code; a map naming a missing core is a
//! configuration error; `tuning/apply.sh` in its default dry-run mode prints its plan and
//! the kernel command line and writes nothing; the systemd units are valid and the
//! committed engine unit is what the engine renders for the bare-metal map.
//!
//! Every child runs with a cleared environment (only PATH and HOME kept) in a fresh
//! temporary directory, so neither this machine's environment nor a stray `.env` leaks
//! in. The host's verdicts are whatever this machine's are: the tests check that the
//! outputs are complete and consistent, not that the machine is tuned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_alphapulse");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Every check, in table order (the contract of `tuning check`).
const CHECKS: [&str; 13] = [
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

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "alphapulse-tuning-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `program args` in `dir` with only PATH, HOME and `env` set.
fn run_program(program: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new("run");
    run_program(BIN, &dir.0, args, env)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code, which must be 0 or 1 (the host is tuned or not), never a usage error
/// or a panic.
fn verdict_code(out: &Output) -> i32 {
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    code.unwrap()
}

/// The table's rows: check name → status, in order.
fn table_rows(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let first = lines.next().unwrap_or("");
    assert!(first.starts_with("engine cores: "), "{table}");
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["CHECK", "STATUS", "STATE", "EXPECTED", "FIX"],
        "{table}"
    );
    lines
        .take_while(|l| !l.contains(" checks: "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or("").to_owned();
            let status = words.next().unwrap_or("").to_owned();
            (name, status)
        })
        .collect()
}

/// The `N checks: P pass, F fail, A n/a` line as (N, P, F, A).
fn counts(table: &str) -> (usize, usize, usize, usize) {
    let line = table
        .lines()
        .find(|l| l.contains(" checks: "))
        .unwrap_or_else(|| panic!("no count line in\n{table}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 4, "{line}");
    (n[0], n[1], n[2], n[3])
}

#[test]
fn the_table_has_every_check_and_the_exit_code_follows_it() {
    let out = run(&["tuning", "check"], &[]);
    let code = verdict_code(&out);
    let table = stdout(&out);
    let rows = table_rows(&table);
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, CHECKS, "{table}");
    for (name, status) in &rows {
        assert!(
            ["PASS", "FAIL", "N/A"].contains(&status.as_str()),
            "{name}: {status}"
        );
    }
    let failed = rows.iter().filter(|(_, s)| s == "FAIL").count();
    let passed = rows.iter().filter(|(_, s)| s == "PASS").count();
    assert_eq!(
        counts(&table),
        (13, passed, failed, 13 - passed - failed),
        "{table}"
    );
    assert_eq!(code, i32::from(failed > 0), "{table}");
    let err = stderr(&out);
    if failed > 0 {
        assert_eq!(
            err.trim_end(),
            format!(
                "error: {failed} of 13 tuning checks fail: see the FIX column, or set \
                 ALPHAPULSE_TUNING_POLICY=warn to start anyway"
            )
        );
    } else {
        assert!(err.is_empty(), "{err}");
    }
    // A failing row says how to fix it; the others do not.
    for line in table.lines().skip(2).take(13) {
        let fails = line.split_whitespace().nth(1) == Some("FAIL");
        assert_eq!(!line.ends_with("  -"), fails, "{line}");
    }
}

#[test]
fn the_json_agrees_with_the_table_and_the_exit_code() {
    let table_out = run(&["tuning", "check"], &[]);
    let rows = table_rows(&stdout(&table_out));
    let out = run(&["tuning", "check", "--json"], &[]);
    let code = verdict_code(&out);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let checks = json["checks"].as_array().expect("checks array");
    assert_eq!(checks.len(), CHECKS.len());
    for (check, (name, status)) in checks.iter().zip(&rows) {
        assert_eq!(check["name"], name.as_str(), "{check}");
        // The host may not change between the two runs in any way these checks see.
        assert_eq!(check["status"], status.as_str(), "{check}");
        for key in ["state", "expected", "fix"] {
            assert!(check[key].is_string(), "{key} in {check}");
        }
        assert_eq!(
            check["fix"].as_str().unwrap().is_empty(),
            check["status"] != "FAIL",
            "{check}"
        );
    }
    let failed = checks.iter().filter(|c| c["status"] == "FAIL").count();
    let passed = checks.iter().filter(|c| c["status"] == "PASS").count();
    assert_eq!(json["fail"], failed);
    assert_eq!(json["pass"], passed);
    assert_eq!(json["not_applicable"], 13 - failed - passed);
    assert_eq!(json["ok"], failed == 0);
    assert_eq!(json["policy"], "refuse");
    assert_eq!(code, i32::from(failed > 0));
    assert_eq!(code, table_out.status.code().unwrap());
    assert!(
        json["engine_cores"].is_array() && json["layout"].is_string(),
        "{json}"
    );
}

#[test]
fn the_policy_comes_from_the_environment_or_the_flag() {
    let refuse = run(&["tuning", "check"], &[]);
    let failing = verdict_code(&refuse) == 1;
    let warn = run(
        &["tuning", "check"],
        &[("ALPHAPULSE_TUNING_POLICY", "warn")],
    );
    assert_eq!(warn.status.code(), Some(0), "{}", stderr(&warn));
    if failing {
        assert!(
            stderr(&warn).starts_with("warning: ")
                && stderr(&warn).contains("going on (ALPHAPULSE_TUNING_POLICY=warn)"),
            "{}",
            stderr(&warn)
        );
    }
    // The flag wins over the environment.
    let flag = run(
        &["tuning", "check", "--policy", "refuse"],
        &[("ALPHAPULSE_TUNING_POLICY", "warn")],
    );
    assert_eq!(flag.status.code(), refuse.status.code());
    let bad = run(
        &["tuning", "check"],
        &[("ALPHAPULSE_TUNING_POLICY", "maybe")],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        stderr(&bad),
        "error: ALPHAPULSE_TUNING_POLICY=maybe: expected warn or refuse\n"
    );
}

#[test]
fn a_map_naming_a_core_the_host_lacks_exits_2_with_one_line() {
    let dir = TempDir::new("missing-core");
    let map = dir.write(
        "map.toml",
        "writer_core = 0\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 4095\n",
    );
    let map = map.to_str().unwrap();
    for args in [
        &["tuning", "check"][..],
        &["tuning", "check", "--json"],
        &["tuning", "plan"],
        &["tuning", "unit"],
    ] {
        let out = run_program(BIN, &dir.0, args, &[("SHARD_MAP", map)]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "error: shard map {map} puts shard 0 on core 4095, which this host does not have"
            )),
            "{err}"
        );
    }
    // A bad --host-cpus is a usage error too.
    let out = run(&["tuning", "plan", "--host-cpus", "zero"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --host-cpus cpu list"),
        "{}",
        stderr(&out)
    );
}

/// `tuning plan` as key → values (a key may repeat).
fn plan(env: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    let out = run(&["tuning", "plan"], env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout(&out).lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    map
}

fn one<'a>(plan: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    let values = plan
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {plan:?}"));
    assert_eq!(values.len(), 1, "{key}: {values:?}");
    &values[0]
}

#[test]
fn the_plan_and_the_unit_follow_the_shard_map() {
    let dev = format!("{REPO}/shards/dev-2core.toml");
    let host_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    if host_cpus.trim() == "0" {
        eprintln!("skipped the dev-2core plan: this host has one CPU");
    } else {
        let p = plan(&[("SHARD_MAP", &dev)]);
        assert_eq!(one(&p, "engine_cores"), "0-1");
        assert_eq!(one(&p, "tuned_cores"), "1");
        assert_eq!(
            one(&p, "kernel_cmdline"),
            "isolcpus=managed_irq,domain,1 nohz_full=1 rcu_nocbs=1"
        );
    }
    // Rendered for a 16-CPU host, whatever this one has.
    let metal = format!("{REPO}/shards/bare-metal-16core.toml");
    let symbols =
        "A0USDT,A1USDT,A2USDT,A3USDT,A4USDT,A5USDT,A6USDT,A7USDT,A8USDT,A9USDT,B0USDT,B1USDT";
    let env = [("SHARD_MAP", metal.as_str()), ("SYMBOLS", symbols)];
    let out = run(&["tuning", "plan", "--host-cpus", "0-15"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\ntuned_cores 1-15\nhousekeeping_cores 0\nhousekeeping_mask 1\n"),
        "{text}"
    );
    let out = run(&["tuning", "unit", "--host-cpus", "0-15"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\nCPUAffinity=1-15\n"),
        "{}",
        stdout(&out)
    );
}

/// The variables of `tuning/alphapulse.env.example`.
fn example_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{REPO}/tuning/alphapulse.env.example")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_committed_unit_is_the_engines_rendering_for_the_bare_metal_map() {
    let env = example_env();
    for key in [
        "ALPHAPULSE_TUNING_POLICY",
        "SHARD_MAP",
        "DATABASE_URL",
        "REDIS_URL",
        "SYMBOLS",
        "BINANCE_MAX_CONNECTIONS",
        "DASHBOARD_ADDR",
    ] {
        assert!(
            env.iter().any(|(k, _)| k == key),
            "{key} missing from the example"
        );
    }
    // The example's settings must be valid, with the map at its repository path.
    let dir = TempDir::new("unit");
    dir.write(
        "shards/bare-metal-16core.toml",
        &std::fs::read_to_string(format!("{REPO}/shards/bare-metal-16core.toml")).unwrap(),
    );
    let mut vars: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k != "SHARD_MAP")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("SHARD_MAP", "shards/bare-metal-16core.toml"));
    let out = run_program(
        BIN,
        &dir.0,
        &["tuning", "unit", "--host-cpus", "0-15"],
        &vars,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let committed = std::fs::read_to_string(format!("{REPO}/tuning/alphapulse.service")).unwrap();
    assert_eq!(
        stdout(&out),
        committed,
        "tuning/alphapulse.service is stale: render it again (see docs/tuning.md)"
    );
    for line in [
        "CPUAffinity=1-15",
        "LimitMEMLOCK=infinity",
        "EnvironmentFile=/etc/alphapulse/alphapulse.env",
        "ExecStartPre=/usr/local/bin/alphapulse tuning check",
        "Restart=on-failure",
    ] {
        assert!(committed.lines().any(|l| l == line), "{line}");
    }
}

/// The contents of every file `apply.sh` may write, to prove a dry run wrote none.
fn tunables() -> BTreeMap<String, String> {
    let mut paths: Vec<String> = [
        "/proc/irq/default_smp_affinity",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/proc/sys/net/core/busy_poll",
        "/proc/sys/net/core/busy_read",
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/wmem_max",
        "/proc/sys/net/ipv4/tcp_rmem",
        "/proc/sys/vm/swappiness",
    ]
    .map(String::from)
    .to_vec();
    for dir in ["/proc/irq", "/sys/devices/system/cpu"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let p = p.display();
            paths.push(format!("{p}/smp_affinity_list"));
            paths.push(format!("{p}/cpufreq/scaling_governor"));
            for k in 0..16 {
                paths.push(format!("{p}/cpuidle/state{k}/disable"));
            }
        }
    }
    paths
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|v| (p, v)))
        .collect()
}

#[test]
fn apply_script_dry_run_prints_the_plan_and_writes_nothing() {
    let script = format!("{REPO}/tuning/apply.sh");
    let syntax = Command::new("bash").args(["-n", &script]).output().unwrap();
    assert!(syntax.status.success(), "{}", stderr(&syntax));

    let p = plan(&[]);
    let before = tunables();
    let dir = TempDir::new("apply");
    let out = run_program("bash", &dir.0, &[&script, "--binary", BIN], &[]);
    let after = tunables();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert_eq!(before, after, "a dry run changed the host");

    // Only plans, never changes.
    let known = [
        "layout: ",
        "engine cores: ",
        "would set ",
        "keep ",
        "skip ",
        "warning: ",
        "kernel command line: ",
        "(this script",
        "  ",
        "dry run: ",
    ];
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            known.iter().any(|k| line.starts_with(k)),
            "unexpected line {line:?}"
        );
    }
    let planned = text.lines().filter(|l| l.starts_with("would set ")).count();
    assert!(
        text.ends_with(&format!(
            "dry run: {planned} change(s) planned, nothing written; run with --apply as root to make them\n"
        )),
        "{text}"
    );

    // The kernel command line, as the engine plans it, is printed (or already there).
    let cmdline = one(&p, "kernel_cmdline");
    if cmdline.is_empty() {
        assert!(
            text.contains("kernel command line: nothing to isolate"),
            "{text}"
        );
    } else {
        assert!(
            text.contains(&format!("\n  {cmdline}\n"))
                || text.contains(&format!("already isolates {}", one(&p, "tuned_cores"))),
            "{text}"
        );
    }

    // Each sysctl is planned from its current value.
    for entry in &p["sysctl_at_least"] {
        let (name, want) = entry.split_once(' ').unwrap();
        let want: u64 = want.parse().unwrap();
        let file = format!("/proc/sys/{}", name.replace('.', "/"));
        let Ok(now) = std::fs::read_to_string(&file) else {
            assert!(
                text.contains(&format!("skip {name}: cannot read")),
                "{text}"
            );
            continue;
        };
        let now: u64 = now.trim().parse().unwrap();
        let line = if now >= want {
            format!("keep {name}: {now}\n")
        } else {
            format!("would set {name}: {now} -> {want}\n")
        };
        assert!(text.contains(&line), "{line} in\n{text}");
    }

    // Every IRQ allowed on a tuned core is planned to move to the housekeeping cores.
    let tuned = one(&p, "tuned_cores");
    if !tuned.is_empty() {
        let tuned_set = cpu_set(tuned);
        let housekeeping = one(&p, "housekeeping_cores");
        for entry in std::fs::read_dir("/proc/irq").unwrap().flatten() {
            let irq = entry.file_name().to_string_lossy().into_owned();
            let Ok(list) = std::fs::read_to_string(entry.path().join("smp_affinity_list")) else {
                continue;
            };
            let list = list.trim();
            let moved = format!("would set IRQ {irq} affinity: {list} -> {housekeeping}\n");
            assert_eq!(
                text.contains(&moved),
                cpu_set(list).iter().any(|c| tuned_set.contains(c)),
                "IRQ {irq} ({list}) in\n{text}"
            );
        }
    }
}

/// Expands a cpu list such as `0-3,8`.
fn cpu_set(list: &str) -> Vec<usize> {
    list.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

#[test]
fn apply_script_rejects_unknown_arguments() {
    let script = format!("{REPO}/tuning/apply.sh");
    let dir = TempDir::new("apply-args");
    let out = run_program("bash", &dir.0, &[&script, "--aply"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "apply.sh: unknown argument '--aply' (see --help)\n"
    );
    let out = run_program(
        "bash",
        &dir.0,
        &[&script, "--binary", "/nonexistent/alphapulse"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("apply.sh: cannot find the alphapulse binary"));
    let out = run_program("bash", &dir.0, &[&script, "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Usage: apply.sh [--apply]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn systemd_units_verify() {
    let Some(analyze) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("systemd-analyze"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("skipped: systemd-analyze is not installed, so the units are not verified");
        return;
    };
    // The units name installed paths; point them at this build so verify finds them.
    let dir = TempDir::new("units");
    let script = format!("{REPO}/tuning/apply.sh");
    let localize = |text: String| {
        text.replace("/usr/local/lib/alphapulse/apply.sh", &script)
            .replace("/usr/local/bin/alphapulse", BIN)
    };
    let mut units = Vec::new();
    for name in ["alphapulse.service", "alphapulse-tuning.service"] {
        let text = std::fs::read_to_string(format!("{REPO}/tuning/{name}")).unwrap();
        units.push(dir.write(name, &localize(text)));
    }
    // And one rendered for this host.
    let out = run(&["tuning", "unit", "--binary", BIN], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::create_dir_all(dir.0.join("here")).unwrap();
    units.push(dir.write("here/alphapulse.service", &stdout(&out)));
    for unit in &units {
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(unit)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{}: {err}", unit.display());
        // verify reports unknown keys and bad values as warnings with exit 0.
        let complaints: Vec<&str> = err.lines().filter(|l| l.contains(".service")).collect();
        assert!(complaints.is_empty(), "{}: {err}", unit.display());
    }
}
