//! Sink roles: the cores that drain the shards' rings.
//!
//! - [`memory`]: the in-memory recent store (always runs: it keeps the dashboard's
//!   recent view, and answers the API when no `DATABASE_URL` is set).
//! - [`db`]: the database writer (with `DATABASE_URL`) and the query worker.
//! - [`redis`]: the Redis publisher (pipelined pub/sub) and the cross-instance bridge
//!   (runs when `REDIS_URL` is set).
//! - [`idle`]: how a sink thread waits on empty rings (spin, yield, bounded sleep).

pub mod db;
pub mod idle;
pub mod memory;
pub mod redis;
