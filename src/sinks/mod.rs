//! Sink roles: the cores that drain the shards' rings.
//!
//! - [`memory`]: the in-memory recent store (runs until the database writer lands, and
//!   whenever no `DATABASE_URL` is set).
//! - [`idle`]: how a sink thread waits on empty rings (spin, yield, bounded sleep).
//! - [`redis`]: the Redis publisher (pipelined pub/sub) and the cross-instance bridge
//!   (runs when `REDIS_URL` is set).

pub mod idle;
pub mod memory;
pub mod redis;
