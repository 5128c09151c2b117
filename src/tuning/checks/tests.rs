//! Every check against fixture file contents.

use super::*;
use crate::config::{Config, Switch};
use crate::topology::{plan, HostFacts};
use crate::tuning::Readout;

fn ok(s: &str) -> Readout {
    Ok(s.to_owned())
}

fn gone(path: &str) -> Readout {
    Err(format!("cannot read {path}: No such file or directory"))
}

#[test]
fn cpu_masks_round_trip() {
    assert_eq!(parse_cpu_mask("3\n").unwrap(), vec![0, 1]);
    assert_eq!(parse_cpu_mask("00000001,00000003").unwrap(), vec![0, 1, 32]);
    assert_eq!(parse_cpu_mask("ffff").unwrap(), (0..16).collect::<Vec<_>>());
    assert!(parse_cpu_mask("zz").is_err());
    assert_eq!(cpu_mask(&[0]), "1");
    assert_eq!(cpu_mask(&[0, 1, 2, 3]), "f");
    assert_eq!(cpu_mask(&[0, 32]), "1,00000001");
    assert_eq!(cpu_mask(&[]), "0");
    for cores in [vec![0], vec![1, 5, 31], vec![0, 33, 70]] {
        assert_eq!(parse_cpu_mask(&cpu_mask(&cores)).unwrap(), cores);
    }
}

#[test]
fn command_line_parameters_stop_at_init_arguments() {
    let line = "BOOT_IMAGE=/vmlinuz isolcpus=1-3 quiet nohz_full=2 -- nohz_full=9\n";
    assert_eq!(cmdline_param(line, "isolcpus"), Some("1-3"));
    assert_eq!(cmdline_param(line, "nohz_full"), Some("2"));
    assert_eq!(cmdline_param(line, "rcu_nocbs"), None);
    assert_eq!(cmdline_param("a=1 a=2", "a"), Some("2"));
    assert_eq!(
        isolcpus_domain("managed_irq,domain,4-7", None).unwrap(),
        vec![4, 5, 6, 7]
    );
    assert_eq!(isolcpus_domain("2,3", None).unwrap(), vec![2, 3]);
    // `nohz` alone does not take the CPUs out of scheduling domains.
    assert!(isolcpus_domain("nohz,4-7", None).unwrap().is_empty());
}

#[test]
fn isolation_needs_every_tuned_core() {
    let cores = [4, 5, 6, 7];
    let no_cgroup = gone("/sys/fs/cgroup/cpuset.cpus.isolated");
    let c = isolation(&cores, Some(15), &ok("1-15\n"), &ok(""), &no_cgroup);
    assert_eq!(c.status, Status::Pass, "{c:?}");
    let c = isolation(&cores, Some(15), &ok("4-5\n"), &ok(""), &no_cgroup);
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.state, "4-5 isolated (isolcpus); 6-7 not");
    assert!(
        c.fix.contains("isolcpus=managed_irq,domain,4-7"),
        "{}",
        c.fix
    );
    let c = isolation(&cores, Some(15), &ok("\n"), &ok(""), &no_cgroup);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Fail, "none isolated; 4-7 not")
    );
    // Without the sysfs file the command line is read.
    let sysfs = gone("/sys/devices/system/cpu/isolated");
    let line = ok("ro isolcpus=domain,managed_irq,4-7 quiet");
    assert_eq!(
        isolation(&cores, None, &sysfs, &line, &no_cgroup).status,
        Status::Pass
    );
    let line = ok("ro isolcpus=nohz,4-7 quiet");
    assert_eq!(
        isolation(&cores, None, &sysfs, &line, &no_cgroup).status,
        Status::Fail
    );
    // An isolated cgroup v2 partition counts.
    let c = isolation(&cores, None, &ok(""), &ok(""), &ok("4-7\n"));
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "4-7 isolated (isolcpus, cpuset partition)")
    );
    // Nothing readable: N/A with the reason.
    let c = isolation(&cores, None, &sysfs, &gone("/proc/cmdline"), &no_cgroup);
    assert_eq!(c.status, Status::NotApplicable);
    assert!(c
        .state
        .starts_with("cannot read /sys/devices/system/cpu/isolated"));
}

#[test]
fn nohz_full_and_rcu_nocbs() {
    let cores = [1, 2, 3];
    let no_sysfs = gone("/sys/devices/system/cpu/nohz_full");
    let line = ok("quiet nohz_full=1-3");
    let nohz = nohz_full_cpus(&no_sysfs, &line, None);
    assert_eq!(nohz, Ok(vec![1, 2, 3]));
    assert_eq!(nohz_full(&cores, &nohz).status, Status::Pass);
    // The kernel offloads RCU callbacks of nohz_full CPUs by itself.
    assert_eq!(rcu_nocbs(&cores, None, &line, &nohz).status, Status::Pass);
    // sysfs wins over the command line (the kernel may have refused the parameter).
    let nohz = nohz_full_cpus(&ok("(null)\n"), &line, None);
    let c = nohz_full(&cores, &nohz);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Fail, "nohz_full not set")
    );
    assert_eq!(
        c.fix,
        "add 'nohz_full=1-3' to the kernel command line and reboot"
    );
    let plain = ok("quiet rcu_nocbs=1-2");
    let c = rcu_nocbs(&cores, None, &plain, &Ok(Vec::new()));
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.state, "offloaded: 1-2 (rcu_nocbs=1-2)");
    let c = rcu_nocbs(&cores, None, &ok("rcu_nocbs=0-3"), &Ok(Vec::new()));
    assert_eq!(c.status, Status::Pass);
    let unread = nohz_full_cpus(&no_sysfs, &gone("/proc/cmdline"), None);
    assert_eq!(nohz_full(&cores, &unread).status, Status::NotApplicable);
    assert_eq!(
        rcu_nocbs(&cores, None, &gone("/proc/cmdline"), &unread).status,
        Status::NotApplicable
    );
}

#[test]
fn irqs_must_stay_off_tuned_cores() {
    let cores = [2, 3];
    let irqs = |lists: &[(&str, &str)]| -> Result<Vec<(String, Readout)>, String> {
        Ok(lists.iter().map(|(i, l)| (i.to_string(), ok(l))).collect())
    };
    let c = irq_affinity(
        &cores,
        &[0, 1],
        None,
        &irqs(&[("24", "0-1\n"), ("25", "0\n")]),
        &ok("3\n"),
    );
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "none of 2 IRQs on them")
    );
    let c = irq_affinity(
        &cores,
        &[0, 1],
        None,
        &irqs(&[("9", "0-3\n"), ("24", "0-1\n"), ("120", "3\n")]),
        &ok("f\n"),
    );
    assert_eq!(c.status, Status::Fail);
    assert_eq!(
        c.state,
        "2 of 3 IRQs allowed there (9,120); default affinity too"
    );
    assert!(c.fix.contains("IRQBALANCE_BANNED_CPULIST=2-3"), "{}", c.fix);
    let many: Vec<(String, &str)> = (0..20).map(|i| (i.to_string(), "2")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(i, l)| (i.as_str(), *l)).collect();
    let c = irq_affinity(&cores, &[0, 1], None, &irqs(&many), &ok("1"));
    assert_eq!(c.state, "20 of 20 IRQs allowed there (0,1,2,3,4,5,+14)");
    // Unreadable IRQ files are skipped; nothing readable at all is N/A.
    let unreadable = Ok(vec![(
        "24".to_owned(),
        gone("/proc/irq/24/smp_affinity_list"),
    )]);
    let c = irq_affinity(
        &cores,
        &[0, 1],
        None,
        &unreadable,
        &gone("/proc/irq/default_smp_affinity"),
    );
    assert_eq!(c.status, Status::NotApplicable);
}

#[test]
fn governor_must_be_performance() {
    let c = governor(&[(4, ok("performance\n")), (5, ok("performance\n"))]);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "performance on 4-5")
    );
    let c = governor(&[
        (4, ok("powersave\n")),
        (5, ok("performance\n")),
        (6, ok("powersave\n")),
        (7, ok("schedutil\n")),
    ]);
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.state, "powersave on 4,6; schedutil on 7");
    let missing = gone("/sys/devices/system/cpu/cpu4/cpufreq/scaling_governor");
    let c = governor(&[(4, missing)]);
    assert_eq!(c.status, Status::NotApplicable);
    assert!(c.state.starts_with("no cpufreq on 4"), "{}", c.state);
}

fn state(name: &str, latency: u64, disabled: bool) -> IdleState {
    IdleState {
        name: name.to_owned(),
        exit_latency_us: latency,
        disabled,
    }
}

#[test]
fn deep_c_states_fail() {
    assert_eq!(
        IdleState::parse("C1E\n", "10\n", "1\n").unwrap(),
        state("C1E", 10, true)
    );
    assert!(IdleState::parse("C1", "x", "0").is_err());
    let intel = |c6_disabled| {
        vec![
            state("POLL", 0, false),
            state("C1", 2, false),
            state("C1E", 10, c6_disabled),
            state("C6", 133, c6_disabled),
        ]
    };
    let line = ok("quiet");
    let c = c_states(&[(4, Ok(intel(true))), (5, Ok(intel(true)))], &line);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "deepest enabled: C1 (2 µs) on 4-5")
    );
    let c = c_states(&[(4, Ok(intel(true))), (5, Ok(intel(false)))], &line);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Fail, "C6 (133 µs) enabled on 5")
    );
    // The haltpoll guest driver: polling, then a 1 µs halt.
    let guest = vec![state("POLL", 0, false), state("haltpoll", 1, false)];
    assert_eq!(c_states(&[(1, Ok(guest))], &line).status, Status::Pass);
    // No cpuidle driver: the command line decides, else N/A.
    let none = || vec![(4, Err("no cpuidle".to_owned()))];
    assert_eq!(c_states(&none(), &ok("idle=poll")).status, Status::Pass);
    let c = c_states(
        &none(),
        &ok("intel_idle.max_cstate=1 processor.max_cstate=1"),
    );
    assert_eq!(c.status, Status::Pass);
    assert_eq!(
        c_states(&none(), &ok("quiet")).status,
        Status::NotApplicable
    );
}

#[test]
fn transparent_hugepages_must_not_be_always() {
    assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
    assert_eq!(selected("always madvise never"), None);
    let c = transparent_hugepages(&ok("always [madvise] never\n"));
    assert_eq!((c.status, c.state.as_str()), (Status::Pass, "madvise"));
    assert_eq!(
        transparent_hugepages(&ok("always madvise [never]\n")).status,
        Status::Pass
    );
    let c = transparent_hugepages(&ok("[always] madvise never\n"));
    assert_eq!((c.status, c.state.as_str()), (Status::Fail, "always"));
    assert_eq!(
        transparent_hugepages(&ok("garbage")).status,
        Status::NotApplicable
    );
    let c = transparent_hugepages(&gone("/sys/kernel/mm/transparent_hugepage/enabled"));
    assert_eq!(c.status, Status::NotApplicable);
}

#[test]
fn swap_is_off_or_reluctant() {
    let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
    let one =
        format!("{header}/swapfile                               file\t\t2097148\t\t0\t\t-2\n");
    assert_eq!(swap_areas(header), 0);
    assert_eq!(swap_areas(&one), 1);
    let c = swap(&ok(header), &ok("60\n"));
    assert_eq!((c.status, c.state.as_str()), (Status::Pass, "no swap"));
    let c = swap(&ok(&one), &ok("60\n"));
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Fail, "1 swap area, vm.swappiness=60")
    );
    assert_eq!(swap(&ok(&one), &ok("1\n")).status, Status::Pass);
    assert_eq!(
        swap(&ok(&one), &gone("/proc/sys/vm/swappiness")).status,
        Status::NotApplicable
    );
    assert_eq!(
        swap(&gone("/proc/swaps"), &ok("1")).status,
        Status::NotApplicable
    );
}

fn facts() -> HostFacts {
    HostFacts {
        kernel_release: "6.8.0-45-generic".to_owned(),
        io_uring_disabled: Some(0),
        io_uring_probe: Ok(()),
        memlock_limit_bytes: None,
        cores_configured: 4,
        allowed_cores: vec![0, 1, 2, 3],
    }
}

#[test]
fn memlock_follows_the_engines_startup_rule() {
    // Two executors (one shard and the dashboard on its own) on a 2-core plan.
    let mut config = Config::default();
    config.engine.dashboard_on_shard = Switch::Off;
    let layout = plan(&config, None, &[0, 1]).unwrap();
    let mut f = facts();
    let c = memlock(&f, &layout);
    assert_eq!((c.status, c.state.as_str()), (Status::Pass, "unlimited"));
    assert_eq!(c.expected, "unlimited or >= 2560 KiB (2 executors)");
    f.memlock_limit_bytes = Some(64 << 10);
    let c = memlock(&f, &layout);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Fail, "64 KiB: the engine refuses to start")
    );
    assert!(c.fix.starts_with("set LimitMEMLOCK=infinity"));
    f.memlock_limit_bytes = Some(2 << 20);
    let c = memlock(&f, &layout);
    assert_eq!(
        (c.status, c.state.as_str()),
        (
            Status::Fail,
            "2048 KiB: the engine falls back to slower unregistered I/O"
        )
    );
    f.kernel_release = "5.10.0".to_owned();
    assert_eq!(
        memlock(&f, &layout).state,
        "2048 KiB: the engine refuses to start"
    );
    f.memlock_limit_bytes = Some(8 << 20);
    assert_eq!(memlock(&f, &layout).status, Status::Pass);
    // A pinned layout on cores this process may not use is not memlock's business.
    f.allowed_cores = vec![0];
    assert_eq!(memlock(&f, &layout).status, Status::Pass);
}

#[test]
fn io_uring_uses_the_engines_verdict() {
    let mut f = facts();
    let c = io_uring(&f);
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "usable (kernel.io_uring_disabled=0)")
    );
    f.io_uring_disabled = Some(2);
    f.io_uring_probe = Err(libc::EPERM);
    let c = io_uring(&f);
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.state
            .starts_with("io_uring_setup fails: Operation not permitted"),
        "{}",
        c.state
    );
    assert_eq!(
        c.fix,
        "io_uring is disabled (kernel.io_uring_disabled=2): run 'sysctl -w kernel.io_uring_disabled=0'"
    );
    // A tiny memlock limit is the memlock check's failure, not this one's.
    let mut f = facts();
    f.memlock_limit_bytes = Some(1024);
    assert_eq!(io_uring(&f).status, Status::Pass);
}

#[test]
fn busy_poll_and_socket_buffers() {
    let c = busy_poll(&ok("50\n"), &ok("50\n"));
    assert_eq!(
        (c.status, c.state.as_str()),
        (Status::Pass, "busy_poll=50 busy_read=50")
    );
    assert_eq!(busy_poll(&ok("0\n"), &ok("50\n")).status, Status::Fail);
    assert_eq!(
        busy_poll(&gone("/proc/sys/net/core/busy_poll"), &ok("0")).status,
        Status::NotApplicable
    );
    assert_eq!(socket_buffer_bytes(1 << 20), 4 << 20);
    assert_eq!(socket_buffer_bytes(4 << 20), 16 << 20);
    assert_eq!(socket_buffer_bytes(1024), SOCKET_BUFFER_MIN_BYTES);
    let need = 4 << 20;
    let c = socket_buffers(
        &ok("4194304\n"),
        &ok("4194304\n"),
        &ok("4096\t131072\t33554432\n"),
        need,
    );
    assert_eq!(c.status, Status::Pass);
    assert_eq!(
        c.state,
        "rmem_max 4096 KiB, wmem_max 4096 KiB, tcp_rmem max 32768 KiB"
    );
    let c = socket_buffers(
        &ok("212992\n"),
        &ok("4194304\n"),
        &ok("4096 131072 6291456\n"),
        need,
    );
    assert_eq!(c.status, Status::Fail);
    let c = socket_buffers(&ok("4194304"), &ok("4194304"), &ok("4096 131072"), need);
    assert_eq!(c.status, Status::NotApplicable);
    assert!(c.state.starts_with("net.ipv4.tcp_rmem has no maximum"));
}

#[test]
fn clocksource_must_be_the_cycle_counter() {
    assert_eq!(clocksource(&ok("tsc\n"), "tsc").status, Status::Pass);
    let c = clocksource(&ok("hpet\n"), "tsc");
    assert_eq!((c.status, c.state.as_str()), (Status::Fail, "hpet"));
    assert!(c.fix.contains("clocksource=tsc"));
    assert_eq!(
        clocksource(
            &gone("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            "tsc"
        )
        .status,
        Status::NotApplicable
    );
}
