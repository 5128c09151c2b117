//! Plans which core runs each role and which symbols each shard owns.
//!
//! # Rules
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
//! 5. With `engine.dashboard_on_shard` the dashboard takes the first shard's core (it
//!    runs on that shard's executor). `auto`, the default, does so when there is one
//!    shard, no shard map and fewer than [`MANY_CORES`] cores: every record the
//!    dashboard serves then comes from that shard and reaches it as a task wake-up on
//!    the same thread, while on its own thread each batch would cost a wake-up across
//!    cores (tens of microseconds of CPU on a virtual machine). With several shards
//!    only the first one's records would gain, while its core took all the fan-out;
//!    with many cores or a map the dashboard has a core of its own.

use std::collections::{HashMap, HashSet};

use super::{allowed_cores, core_ranges, Layout, ShardMap, ShardPlan, TopologyError, MANY_CORES};
use crate::config::Config;
use crate::market::Symbol;

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
    let mut layout = match map {
        Some(map) => plan_from_map(config, map, &symbols, &allowed, pinned)?,
        None => plan_from_cores(&symbols, &allowed),
    };
    let own_core = map.is_some() || allowed.len() >= MANY_CORES;
    layout.dashboard_on_shard = !layout.shards.is_empty()
        && config
            .engine
            .dashboard_on_shard
            .resolve(|| !own_core && layout.shards.len() == 1);
    if layout.dashboard_on_shard {
        layout.dashboard_core = layout.shards[0].core;
    }
    Ok(if pinned { layout } else { layout.unpinned() })
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

/// Orders symbols by stable hash (ties by name), the order in which they are dealt.
fn spread_order(mut symbols: Vec<Symbol>) -> Vec<Symbol> {
    symbols.sort_by_key(|s| (s.stable_hash(), *s));
    symbols
}

/// Deals `symbols` round-robin, in stable-hash order, into `shards` buckets.
pub(super) fn deal(symbols: Vec<Symbol>, shards: usize) -> Vec<Vec<Symbol>> {
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
        dashboard_on_shard: false,
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
        for (role, core) in map.roles() {
            if !allowed.contains(&core) {
                return Err(TopologyError::CoreNotAllowed {
                    role: role.to_string(),
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
        dashboard_on_shard: false,
    })
}
