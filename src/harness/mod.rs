//! The `alphapulse bench` commands: measurements printed as JSON.
pub mod cpu;
pub mod db;
pub mod fanout;
pub mod host;
pub mod ingest;
pub mod latency;
pub mod parse;
pub mod redis;
