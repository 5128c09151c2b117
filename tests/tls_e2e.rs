//! `wss://`: the engine connects through TLS (rustls) to an exchange whose certificate
//! is trusted through `feed.tls_ca_file`, and refuses one it cannot verify. A local TLS
//! terminator (a thread per connection, rustls server side) forwards to the simulator.

#[path = "support/engine.rs"]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alphapulse::engine::Engine;
use alphapulse::market::Interval;
use futures_rustls::rustls;
use support::*;

/// Accepts TLS on a free port and pipes each connection to `backend`, until dropped.
struct Terminator {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn terminator(backend: SocketAddr, cert_pem: &str, key_pem: &str) -> Terminator {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => {
                    let config = config.clone();
                    let flag = flag.clone();
                    std::thread::spawn(move || pipe(client, backend, config, flag));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => return,
            }
        }
    });
    Terminator { addr, stop }
}

/// Shuttles bytes both ways with short read timeouts, so one thread serves both
/// directions; ends when either side closes or the terminator stops.
fn pipe(
    client: TcpStream,
    backend: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut server) = TcpStream::connect(backend) else {
        return;
    };
    let tick = Some(Duration::from_millis(2));
    client.set_nonblocking(false).unwrap();
    client.set_read_timeout(tick).unwrap();
    server.set_read_timeout(tick).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, client);
    let mut buf = vec![0u8; 64 * 1024];
    let timed_out =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while !stop.load(Ordering::Relaxed) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if server.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => return,
        }
        match server.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|_| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if timed_out(&e) => {}
            Err(_) => return,
        }
    }
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("alphapulse-tls-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn wss_with_a_trusted_ca_delivers_candles_and_an_untrusted_one_is_refused() {
    let _serial = serial();
    let sim = alphapulse::simulator::start(sim_config(&["BTCUSDT"])).expect("simulator");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = key.cert.pem();
    let term = terminator(
        sim.local_addr(),
        &cert_pem,
        &key.signing_key.serialize_pem(),
    );
    let ca_file = temp_file("ca.pem", &cert_pem);

    // Trusted: the engine resolves `localhost`, completes TLS and the WebSocket handshake.
    let mut config = engine_config(&sim, &["BTCUSDT"], &[Interval::M1]);
    config.binance_ws_url = format!("wss://localhost:{}", term.addr.port());
    // The signals warm start fetches REST klines over the same TLS and CA file.
    config.binance_rest_url = format!("https://localhost:{}", term.addr.port());
    config.feed.tls_ca_file = Some(ca_file.clone());
    let layout =
        alphapulse::topology::plan(&config, None, &alphapulse::topology::allowed_cores()).unwrap();
    let engine = Engine::start(&config, &layout).expect("engine");
    let closed = wait_until(Duration::from_secs(30), || {
        engine.status().shards[0].stats.candles_closed.get() >= 2
    });
    assert!(closed, "{}", engine.status().snapshot());
    assert_eq!(engine.status().shards[0].stats.parse_errors_total(), 0);
    let warm = engine.status().snapshot()["signals"]["warm"].clone();
    assert_eq!(
        (warm["series_warmed"].as_u64(), warm["failures"].as_u64()),
        (Some(1), Some(0)),
        "{warm}"
    );
    drop(engine);

    // Untrusted (built-in roots only): every attempt fails the TLS handshake.
    config.feed.tls_ca_file = None;
    let engine = Engine::start(&config, &layout).expect("engine");
    let stats = engine.status().shards[0].stats.clone();
    assert!(wait_until(Duration::from_secs(20), || stats
        .connect_failures
        .get()
        >= 2));
    assert_eq!(stats.messages.get(), 0);
    assert_eq!(stats.connections_active.get(), 0);
    assert!(wait_until(Duration::from_secs(10), || engine
        .status()
        .snapshot()["signals"]["warm"]["failures"]
        == 1));
    drop(engine);

    // A CA file that holds no certificate is a clear startup error.
    let empty = temp_file("empty.pem", "not a certificate\n");
    config.feed.tls_ca_file = Some(empty.clone());
    let err = Engine::start(&config, &layout).err().expect("refused");
    assert!(err.to_string().contains("feed.tls_ca_file"), "{err}");
    let _ = std::fs::remove_file(ca_file);
    let _ = std::fs::remove_file(empty);
}
