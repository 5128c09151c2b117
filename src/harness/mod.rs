//! The `alphapulse bench` commands: measurements printed as JSON.
pub mod ingest;
pub mod parse;
pub mod redis;
