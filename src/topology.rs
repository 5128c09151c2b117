//! Shard maps and core layout (interim: the full planner lands with the topology work).
use crate::config::Config;
use crate::market::Symbol;

#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub index: usize,
    pub core: Option<usize>,
    pub symbols: Vec<Symbol>,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub shards: Vec<ShardPlan>,
    pub writer_core: Option<usize>,
    pub publisher_core: Option<usize>,
    pub dashboard_core: Option<usize>,
    pub pinned: bool,
}

/// One unpinned shard with every symbol.
pub fn single_shard(config: &Config) -> Layout {
    Layout {
        shards: vec![ShardPlan {
            index: 0,
            core: None,
            symbols: config.symbols.clone(),
        }],
        writer_core: None,
        publisher_core: None,
        dashboard_core: None,
        pinned: false,
    }
}
