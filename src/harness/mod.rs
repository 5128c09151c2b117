//! The `alphapulse bench` commands: measurements printed as JSON.
pub mod db;
pub mod ingest;
pub mod parse;
