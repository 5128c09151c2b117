//! A private PostgreSQL for tests: `initdb` into a temporary directory, the server on a
//! free loopback port, stopped (and its files removed) on drop. Fault tests stop it
//! with [`Postgres::stop_immediate`] and bring it back with [`Postgres::start`].

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections after `pg_ctl start`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    running: bool,
}

/// The newest installed server binaries (`/usr/lib/postgresql/<version>/bin`).
fn server_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("PostgreSQL server binaries are installed")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with initdb").1
}

/// PostgreSQL refuses to run as root. Under root (containers, CI) the server runs as
/// the `postgres` system user (or `nobody`), which then owns the temporary directory.
fn server_user() -> Option<(u32, u32)> {
    // getpwnam returns a static buffer that a concurrent call (tests run on several
    // threads) may overwrite mid-read: look the user up once, under the OnceLock.
    static USER: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *USER.get_or_init(lookup_server_user)
}

fn lookup_server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: a NUL-terminated name; the result is read at once, and no other
        // getpw* call runs meanwhile (this runs once, inside the OnceLock).
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null, as checked.
            let pw = unsafe { &*pw };
            return Some((pw.pw_uid, pw.pw_gid));
        }
    }
    panic!("running as root and neither a postgres nor a nobody user exists")
}

fn command(bin: &Path, name: &str) -> Command {
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = server_user() {
        c.uid(uid).gid(gid);
    }
    c
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Postgres {
    /// initdb + start; panics with the server's output if either fails.
    pub fn start_new() -> Postgres {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("alphapulse-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown temp dir");
        }
        let bin = server_bin();
        let out = command(&bin, "initdb")
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut pg = Postgres {
            bin,
            dir,
            port: free_port(),
            running: false,
        };
        pg.start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to test postgres")
    }

    /// Starts the server (again) on the same port and data directory; waits until it
    /// accepts connections.
    pub fn start(&mut self) {
        // Small shared memory and no fsync: a test server, fast to start and stop. An
        // immediate stop kills the processes but not the host, so the page cache keeps
        // what was written; `synchronous_commit` stays on, or the server itself would
        // forget commits it acknowledged just before the stop.
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c shared_buffers=32MB -c max_connections=20",
            self.port,
            self.dir.display()
        );
        let status = command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        assert!(status.success(), "pg_ctl start failed: {log}");
        let deadline = Instant::now() + START_TIMEOUT;
        while postgres::Client::connect(&self.url(), postgres::NoTls).is_err() {
            assert!(Instant::now() < deadline, "postgres did not come up: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as in a crash.
    pub fn stop_immediate(&mut self) {
        self.stop("immediate");
    }

    fn stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let _ = command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
