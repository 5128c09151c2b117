//! A private `redis-server` for tests: a free loopback port, a temp dir, no persistence,
//! killed on drop; stop/start/pause/resume for fault tests; optionally secured (a
//! password, an ACL user, TLS only). And a pattern subscriber that records every
//! message it gets.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alphapulse::sinks::redis::resp::{self, Conn, Target};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    security: Security,
}

/// How a private server is secured; the default is not at all.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `requirepass`: the default user's password.
    pub password: Option<String>,
    /// An ACL user allowed everything: (name, password).
    pub user: Option<(String, String)>,
    /// TLS only, with this PEM certificate (which clients trust as their authority) and
    /// key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_secured(Security::default())
    }

    pub fn start_secured(security: Security) -> RedisServer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "alphapulse-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
            security,
        };
        server.resume_from_stop();
        server
    }

    /// The URL of the default user (with its password, if any).
    pub fn url(&self) -> String {
        match &self.security.password {
            Some(p) => self.url_as("", p),
            None => format!("{}://127.0.0.1:{}", self.scheme(), self.port),
        }
    }

    /// The URL of `user` with `password` (an empty user is the default one).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}",
            self.scheme(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.security.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The pattern subscriptions each connected client holds (`psub=` of `CLIENT
    /// LIST`), those of clients that hold none left out.
    pub fn pattern_subscriptions(&self) -> Vec<usize> {
        let target = Target::parse_with_ca(&self.url(), self.ca_file().as_deref()).unwrap();
        let mut conn = Conn::connect(&target, Duration::from_secs(2), Duration::from_secs(5))
            .expect("connects");
        let mut cmd = Vec::new();
        resp::command(&mut cmd, &[b"CLIENT", b"LIST"]);
        conn.write_all(&cmd).unwrap();
        let list = conn
            .next(|v| match v {
                resp::Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .unwrap()
            .flatten()
            .expect("CLIENT LIST answered");
        list.lines()
            .filter_map(|client| {
                client
                    .split(' ')
                    .find_map(|field| field.strip_prefix("psub="))
                    .and_then(|n| n.parse().ok())
            })
            .filter(|&n| n > 0)
            .collect()
    }

    /// The certificate clients must trust, for TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.security.tls.as_ref().map(|(cert, _)| cert.clone())
    }

    fn security_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let port = self.port.to_string();
        match &self.security.tls {
            Some((cert, key)) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-ca-cert-file".into(),
                cert.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
            None => args.extend(["--port".into(), port]),
        }
        if let Some(p) = &self.security.password {
            args.extend(["--requirepass".into(), p.clone()]);
        }
        if let Some((user, p)) = &self.security.user {
            args.extend([
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{p}"),
                "~*".into(),
                "&*".into(),
                "+@all".into(),
            ]);
        }
        args
    }

    /// Starts the server (again) on its port and waits until it accepts.
    pub fn resume_from_stop(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(self.security_args())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(target) = Target::parse_with_ca(&self.url(), self.ca_file().as_deref()) else {
            return false;
        };
        let Ok(mut c) = Conn::connect(
            &target,
            Duration::from_millis(200),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let mut cmd = Vec::new();
        resp::command(&mut cmd, &[b"PING"]);
        c.write_all(&cmd).is_ok()
            && matches!(
                c.next(|v| matches!(v, resp::Value::Simple(b"PONG"))),
                Ok(Some(true))
            )
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port is free once nothing listens.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One message a subscriber received.
#[derive(Clone, Debug)]
pub struct Message {
    pub channel: String,
    pub payload: String,
}

/// A pattern subscriber on its own thread, recording every message; stops on drop.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `pattern` and returns once Redis confirmed the subscription.
    pub fn start(url: &str, pattern: &str) -> Subscriber {
        Subscriber::start_with_ca(url, None, pattern)
    }

    /// [`Subscriber::start`], trusting `ca` for `rediss://`.
    pub fn start_with_ca(url: &str, ca: Option<&std::path::Path>, pattern: &str) -> Subscriber {
        let target = Target::parse_with_ca(url, ca).unwrap();
        let mut conn = Conn::connect(&target, Duration::from_secs(2), Duration::from_secs(5))
            .expect("subscriber connects");
        let mut cmd = Vec::new();
        resp::command(&mut cmd, &[b"PSUBSCRIBE", pattern.as_bytes()]);
        conn.write_all(&cmd).unwrap();
        let confirmed = conn
            .next(|v| matches!(v, resp::Value::Array(Some(ref items)) if items.first() == Some(&resp::Value::Bulk(Some(b"psubscribe")))))
            .unwrap();
        assert_eq!(confirmed, Some(true), "PSUBSCRIBE confirmed");
        conn.set_read_timeout(Duration::from_millis(50)).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let messages = messages.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let got = conn.next(|v| match v {
                        resp::Value::Array(Some(items)) => match items.as_slice() {
                            [_, _, resp::Value::Bulk(Some(ch)), resp::Value::Bulk(Some(p))] => {
                                Some(Message {
                                    channel: String::from_utf8_lossy(ch).into_owned(),
                                    payload: String::from_utf8_lossy(p).into_owned(),
                                })
                            }
                            _ => None,
                        },
                        _ => None,
                    });
                    match got {
                        Ok(Some(Some(m))) => messages.lock().unwrap().push(m),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Subscriber {
            messages,
            stop,
            thread: Some(thread),
        }
    }

    pub fn snapshot(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    pub fn count(&self, f: impl Fn(&Message) -> bool) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| f(m))
            .count()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
