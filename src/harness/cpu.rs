//! CPU time of this process's threads, by role, over a measured window.
//!
//! Each thread's CPU clock is read with `clock_gettime` (nanoseconds, user and kernel
//! together; `/proc`'s clock ticks are 10 ms, too coarse for a window of seconds), and
//! its role from its name: glommio names an executor's thread `<name>-<id>`, the engine
//! names its plain threads after their role.

use std::collections::BTreeMap;

use crate::metrics::thread_cpu_ns;

/// One thread's CPU time so far.
#[derive(Debug, Clone)]
pub struct ThreadCpu {
    pub tid: i32,
    pub name: String,
    pub ns: u64,
}

/// Every thread of this process now.
pub fn snapshot() -> Vec<ThreadCpu> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if let Some(ns) = thread_cpu_ns(tid) {
            out.push(ThreadCpu {
                tid,
                name: name.trim().to_string(),
                ns,
            });
        }
    }
    out
}

/// The engine role a thread's name belongs to; `None` for threads that are not the
/// engine's.
pub fn role_of(name: &str) -> Option<&'static str> {
    let role = if name.starts_with("shard-") {
        "shard"
    } else if name.starts_with("dashboard") {
        "dashboard"
    } else if name.starts_with("database") || name.starts_with("db-query") {
        "database"
    } else if name.starts_with("redis-") {
        "redis"
    } else if name == "rest" {
        "rest"
    } else if name.starts_with("latency-coll") {
        "collector"
    } else {
        // The simulator, the process's main thread (the harness driving the
        // measurement), a test's own threads.
        return None;
    };
    Some(role)
}

/// CPU seconds `t` spent since `before` (a thread that started in between counts from
/// zero; a thread that ended is not seen).
fn since(before: &[ThreadCpu], t: &ThreadCpu) -> f64 {
    let start = before.iter().find(|b| b.tid == t.tid).map_or(0, |b| b.ns);
    t.ns.saturating_sub(start) as f64 / 1e9
}

/// CPU seconds per engine role between two snapshots.
pub fn by_role(before: &[ThreadCpu], after: &[ThreadCpu]) -> BTreeMap<&'static str, f64> {
    let mut roles = BTreeMap::new();
    for t in after {
        if let Some(role) = role_of(&t.name) {
            *roles.entry(role).or_insert(0.0) += since(before, t);
        }
    }
    roles
}

/// CPU seconds of the threads named with `prefix` between two snapshots.
pub fn of_threads(before: &[ThreadCpu], after: &[ThreadCpu], prefix: &str) -> f64 {
    after
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .map(|t| since(before, t))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_thread_names() {
        assert_eq!(role_of("shard-0-2"), Some("shard"));
        assert_eq!(role_of("dashboard-5"), Some("dashboard"));
        assert_eq!(role_of("database-sink"), Some("database"));
        assert_eq!(role_of("redis-bridge"), Some("redis"));
        assert_eq!(role_of("alphapulse-sim-"), None);
        assert_eq!(role_of("alphapulse"), None);
        assert_eq!(role_of("something"), None);
    }

    #[test]
    fn a_busy_thread_shows_its_cpu() {
        let before = snapshot();
        let worker = std::thread::Builder::new()
            .name("shard-test".into())
            .spawn(|| {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < std::time::Duration::from_millis(50) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
                x
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let after = snapshot();
        let _ = worker.join();
        let roles = by_role(&before, &after);
        // 50 ms of spinning, measured in ns (a generous lower bound on a busy machine).
        assert!(
            roles.get("shard").copied().unwrap_or(0.0) > 0.01,
            "{roles:?}"
        );
    }
}
