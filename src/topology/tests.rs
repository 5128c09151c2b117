//! The planning rules and the startup host check, with made-up cores and facts.

use std::collections::HashSet;
use std::path::Path;

use super::check::parse_kernel_version;
use super::plan::deal;
use super::*;
use crate::config::{Config, EngineConfig, Switch};

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
    // `auto`: one shard and no core of its own, so the dashboard runs on the shard's.
    assert!(layout.dashboard_on_shard);
    assert_eq!(
        layout.to_string(),
        "1 shard on core 1 (3 symbols); writer on core 0, publisher on core 0, \
         dashboard on core 1 (on shard 0's executor)"
    );
    assert_eq!(layout.executors(), 1);
}

#[test]
fn auto_puts_the_dashboard_on_the_shard_only_with_one_shard_and_no_core_of_its_own() {
    let config = config_with(symbols(4));
    for n in 1..MANY_CORES {
        let layout = plan(&config, None, &cores(n)).unwrap();
        let one_shard = layout.shards.len() == 1;
        assert_eq!(layout.dashboard_on_shard, one_shard, "{n} cores: {layout}");
        if one_shard {
            assert_eq!(layout.dashboard_core, layout.shards[0].core);
        } else {
            assert_eq!(layout.dashboard_core, Some(0), "{n} cores: {layout}");
            assert_eq!(layout.executors(), layout.shards.len() + 1);
        }
    }
    // One symbol on a many-core host: one shard, but the dashboard has its own core.
    let layout = plan(&config_with(symbols(1)), None, &cores(16)).unwrap();
    assert_eq!(layout.shards.len(), 1);
    assert!(!layout.dashboard_on_shard);
    assert_eq!(layout.dashboard_core, Some(3));
    // A shard map places the dashboard itself.
    let dev = map(include_str!("../../shards/dev-2core.toml"));
    let layout = plan(&config, Some(&dev), &cores(2)).unwrap();
    assert!(!layout.dashboard_on_shard);
    // Unpinned, the same decision without cores.
    let mut unpinned = config.clone();
    unpinned.engine.pin_cores = false;
    let layout = plan(&unpinned, None, &cores(2)).unwrap();
    assert!(layout.dashboard_on_shard);
    assert_eq!(layout.dashboard_core, None);
    // Off keeps it on its own thread.
    let mut off = config;
    off.engine.dashboard_on_shard = Switch::Off;
    let layout = plan(&off, None, &cores(2)).unwrap();
    assert!(!layout.dashboard_on_shard);
    assert_eq!(layout.dashboard_core, Some(0));
}

#[test]
fn the_dashboard_can_take_the_first_shards_core() {
    let mut config = config_with(symbols(4));
    config.engine.dashboard_on_shard = Switch::On;
    let layout = plan(&config, None, &cores(2)).unwrap();
    assert_eq!(layout.shards[0].core, Some(1));
    assert_eq!(layout.dashboard_core, Some(1));
    assert_eq!(layout.writer_core, Some(0));
    let layout = plan(&config, None, &cores(6)).unwrap();
    assert_eq!(layout.dashboard_core, layout.shards[0].core);
    config.engine.pin_cores = false;
    let layout = plan(&config, None, &cores(2)).unwrap();
    assert_eq!(layout.dashboard_core, None);
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
    let dev = map(include_str!("../../shards/dev-2core.toml"));
    assert_eq!(dev.shards.len(), 1);
    let config = Config::default();
    let layout = plan(&config, Some(&dev), &cores(2)).unwrap();
    assert_eq!(layout.shards[0].core, Some(1));
    assert_eq!(layout.dashboard_core, Some(0));
    assert_partition(&config, &layout);

    let metal = map(include_str!("../../shards/bare-metal-16core.toml"));
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
    let m = map("writer_core = 7\npublisher_core = 0\ndashboard_core = 0\n[[shard]]\ncore = 1\n");
    assert!(plan_err(&config, Some(&m), &cores(2)).starts_with("the writer is mapped to core 7"));
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
fn a_map_and_its_layout_list_the_same_roles() {
    let m = map(include_str!("../../shards/bare-metal-16core.toml"));
    let layout = plan(&config_with(symbols(30)), Some(&m), &cores(16)).unwrap();
    let from_layout: Vec<(String, Option<usize>)> = layout
        .roles()
        .into_iter()
        .map(|(r, c)| (r.to_string(), c))
        .collect();
    let from_map: Vec<(String, Option<usize>)> = m
        .roles()
        .into_iter()
        .map(|(r, c)| (r.to_string(), Some(c)))
        .collect();
    assert_eq!(from_layout, from_map);
    assert_eq!(
        from_layout[..4],
        [
            ("the writer".to_owned(), Some(1)),
            ("the publisher".to_owned(), Some(2)),
            ("the dashboard".to_owned(), Some(3)),
            ("shard 0".to_owned(), Some(4)),
        ]
    );
}

#[test]
fn cpu_lists_parse_like_the_kernel() {
    assert_eq!(
        parse_cpu_list("0-3,8,10-11\n", None).unwrap(),
        vec![0, 1, 2, 3, 8, 10, 11]
    );
    assert_eq!(parse_cpu_list("", None).unwrap(), Vec::<usize>::new());
    assert_eq!(
        parse_cpu_list("(null)\n", None).unwrap(),
        Vec::<usize>::new()
    );
    assert_eq!(parse_cpu_list("5,1,1-2", None).unwrap(), vec![1, 2, 5]);
    assert_eq!(parse_cpu_list("0-7:2/4", None).unwrap(), vec![0, 1, 4, 5]);
    assert_eq!(parse_cpu_list("4-N", Some(7)).unwrap(), vec![4, 5, 6, 7]);
    assert_eq!(parse_cpu_list("all", Some(2)).unwrap(), vec![0, 1, 2]);
    for bad in ["x", "3-1", "1-", "0-7:5/4", "0-7:1/0", "99999", "4-N"] {
        assert!(parse_cpu_list(bad, None).is_err(), "{bad}");
    }
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

/// Two cores with the dashboard on a thread of its own: two executors.
fn two_core_layout() -> Layout {
    let mut config = Config::default();
    config.engine.dashboard_on_shard = Switch::Off;
    let layout = plan(&config, None, &cores(2)).unwrap();
    assert_eq!(layout.executors(), 2);
    layout
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
    assert!(host_err(facts.clone(), &layout)
        .starts_with("the memlock limit is 2048 KiB but 2560 KiB are needed (2 glommio executors"));
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
    assert!(!host::online_cpus().is_empty());
}

#[test]
fn unreadable_files_say_why_in_one_line() {
    assert_eq!(
        host::read_file("/nonexistent/file"),
        Err("cannot read /nonexistent/file: No such file or directory".to_owned())
    );
}
