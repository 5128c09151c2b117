//! Sink roles: the cores that drain the shards' rings.
//!
//! - [`memory`]: the in-memory recent store (always runs: it keeps the dashboard's
//!   recent view, and answers the API when no `DATABASE_URL` is set).
//! - [`db`]: the database writer (with `DATABASE_URL`) and the query worker.

pub mod db;
pub mod memory;
