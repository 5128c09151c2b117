//! Sink roles: the cores that drain the shards' rings.
//!
//! - [`db`]: the database writer (with `DATABASE_URL`) and the query worker.
//! - [`redis`]: the Redis publisher (pipelined pub/sub) and the cross-instance bridge
//!   (runs when `REDIS_URL` is set).
//!
//! Each waits for records in the one consumer loop ([`crate::consumer`]). The recent
//! in-memory view is kept by the dashboard core, which gets every record anyway.

pub mod db;
pub mod redis;
