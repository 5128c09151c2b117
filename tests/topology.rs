//! The topology API end to end: configuration and shard map files from disk, planning
//! against this process's real CPU affinity, and the startup host checks on this host.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use alphapulse::config::{self, Config};
use alphapulse::market::Symbol;
use alphapulse::topology::{self, Layout, ShardMap};

fn shard_map(name: &str) -> ShardMap {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shards")
        .join(name);
    ShardMap::load(&path).unwrap()
}

fn owned(layout: &Layout) -> Vec<Symbol> {
    layout
        .shards
        .iter()
        .flat_map(|s| s.symbols.iter().copied())
        .collect()
}

#[test]
fn the_example_configuration_plans_on_this_host() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("alphapulse.example.toml");
    let config = config::load(Some(&example), &HashMap::new()).unwrap();
    let allowed = topology::allowed_cores();
    assert!(!allowed.is_empty());
    let layout = topology::plan(&config, None, &allowed).unwrap();
    assert!(layout.pinned);
    for (role, core) in layout.roles() {
        let core = core.unwrap_or_else(|| panic!("{role} has no core"));
        assert!(
            allowed.contains(&core),
            "{role} on {core}, allowed {allowed:?}"
        );
    }
    let mut symbols = owned(&layout);
    symbols.sort();
    let mut want = config.symbols.clone();
    want.sort();
    assert_eq!(symbols, want);
}

#[test]
fn this_host_can_run_the_planned_layout() {
    // The engine needs io_uring and enough locked memory; a host where this fails
    // cannot run glommio at all, and the error says how to fix it.
    let config = Config::default();
    let layout = topology::plan(&config, None, &topology::allowed_cores()).unwrap();
    match topology::check_host(&layout) {
        Ok(report) => {
            assert!(!report.kernel_release.is_empty());
            assert_eq!(
                report.memlock_wanted_bytes,
                topology::GLOMMIO_MEMLOCK_PER_EXECUTOR_BYTES * layout.executors() as u64
            );
            for warning in &report.warnings {
                assert!(!warning.contains('\n'), "{warning}");
            }
        }
        Err(e) => panic!("this host cannot run the engine: {e}"),
    }
}

#[test]
fn a_layout_on_a_core_outside_the_affinity_fails_the_host_check() {
    let config = Config::default();
    let mut layout = topology::plan(&config, None, &topology::allowed_cores()).unwrap();
    // No host has this many cores, so the core is missing rather than just disallowed.
    layout.shards[0].core = Some(100_000);
    let e = topology::check_host(&layout).unwrap_err().to_string();
    assert!(
        e.starts_with("shard 0 is on core 100000, but this host has only "),
        "{e}"
    );
}

#[test]
fn shipped_maps_split_instances_without_overlap() {
    let metal = shard_map("bare-metal-16core.toml");
    let all: Vec<Symbol> = (0..100)
        .map(|i| Symbol::new(&format!("X{i}USDT")).unwrap())
        .collect();
    let cores: Vec<usize> = (0..16).collect();
    let mut seen = HashSet::new();
    for index in 0..3 {
        let env: HashMap<String, String> = [
            ("INSTANCE_INDEX", index.to_string()),
            ("INSTANCE_COUNT", "3".to_owned()),
            (
                "SYMBOLS",
                all.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = config::load(None, &env).unwrap();
        let layout = topology::plan(&config, Some(&metal), &cores).unwrap();
        assert_eq!(layout.shards.len(), 12);
        for symbol in owned(&layout) {
            assert!(seen.insert(symbol), "{symbol} on two instances");
        }
    }
    assert_eq!(seen.len(), all.len());

    let dev = shard_map("dev-2core.toml");
    let layout = topology::plan(&Config::default(), Some(&dev), &[0, 1]).unwrap();
    assert_eq!(layout.shards.len(), 1);
    assert_eq!(layout.executors(), 2);
}
