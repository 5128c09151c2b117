//! Shard maps and core layout (placeholder until the topology branch lands).
