//! The dashboard's options, taken from the configuration, and its TLS set-up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::config::Config;
use crate::market::Symbol;

use super::{
    ECHO_MAX_MESSAGE_BYTES, HEAD_DEADLINE, IDLE_TIMEOUT, WS_IDLE_TIMEOUT, WS_PING_INTERVAL,
    WS_READ_BUFFER_BYTES, WS_WRITE_BUFFER_BYTES,
};

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("dashboard TLS: cannot read {path}: {why}")]
    TlsFile { path: String, why: String },
    #[error("dashboard TLS: {0}")]
    Tls(String),
}

/// Everything the server needs besides its sockets, taken from [`Config`] (tests and
/// benchmarks adjust the timeouts).
#[derive(Clone)]
pub struct Options {
    /// Where the dashboard core registers its stage-latency recorder (the engine's).
    pub latency: Option<Arc<crate::latency::Registry>>,
    pub token: Option<String>,
    pub allowed_origins: Vec<String>,
    /// Host names answered without a token (see [`super::security::host_ok`]).
    pub allowed_hosts: Vec<String>,
    pub max_clients: usize,
    pub update_interval: Duration,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub client_queue_messages: usize,
    pub max_connections_per_ip: usize,
    pub max_inbound_msgs_per_s: u32,
    pub conformance_echo: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub head_deadline: Duration,
    pub idle_timeout: Duration,
    pub ws_ping_interval: Duration,
    pub ws_idle_timeout: Duration,
    /// Spin on the rings instead of parking (`engine.busy_poll`: isolated cores only).
    pub busy_poll: bool,
    /// The symbols this dashboard serves, listed as `symbols` in `/api/status` (the
    /// page's symbol list): with Redis, every symbol of the deployment (its own from
    /// its shards, the other instances' through the bridge); without, its own slice.
    pub symbols: Vec<Symbol>,
    /// This instance's slice (`INSTANCE_INDEX`, `INSTANCE_COUNT`), shown in the status.
    pub instance: (u32, u32),
}

impl Options {
    /// The options of `config`; reads the TLS files if configured (call on the control
    /// plane: file reads never run on the dashboard's executor).
    pub fn from_config(config: &Config) -> Result<Options, DashboardError> {
        let d = &config.dashboard;
        let tls = match (&d.tls_cert_file, &d.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        Ok(Options {
            latency: None,
            token: config.dashboard_token.clone(),
            allowed_origins: config.dashboard_allowed_origins.clone(),
            allowed_hosts: config.dashboard_allowed_hosts.clone(),
            max_clients: config.websocket_max_clients,
            update_interval: Duration::from_secs_f64(config.websocket_update_interval_s),
            max_message_bytes: d.max_message_bytes,
            max_frame_bytes: d.max_frame_bytes,
            client_queue_messages: d.client_queue_messages,
            max_connections_per_ip: d.max_connections_per_ip,
            max_inbound_msgs_per_s: d.max_inbound_msgs_per_s,
            conformance_echo: d.conformance_echo,
            tls,
            head_deadline: HEAD_DEADLINE,
            idle_timeout: IDLE_TIMEOUT,
            ws_ping_interval: WS_PING_INTERVAL,
            ws_idle_timeout: WS_IDLE_TIMEOUT,
            busy_poll: config.engine.busy_poll,
            symbols: if config.redis_url.is_some() {
                config.symbols.clone()
            } else {
                config.instance_symbols()
            },
            instance: (config.engine.instance_index, config.engine.instance_count),
        })
    }

    /// The server side of a WebSocket over `io`, whose first bytes (`rest`) were read
    /// with the upgrade request.
    pub(super) async fn websocket<T>(&self, io: T, rest: Vec<u8>, echo: bool) -> WebSocketStream<T>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        WebSocketStream::from_partially_read(io, rest, Role::Server, Some(self.ws_config(echo)))
            .await
    }

    fn ws_config(&self, echo: bool) -> WebSocketConfig {
        let (message, frame) = if echo {
            (ECHO_MAX_MESSAGE_BYTES, ECHO_MAX_MESSAGE_BYTES)
        } else {
            (self.max_message_bytes, self.max_frame_bytes)
        };
        WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER_BYTES)
            .write_buffer_size(WS_WRITE_BUFFER_BYTES)
            .max_message_size(Some(message))
            .max_frame_size(Some(frame))
    }
}

/// The rustls server configuration from PEM files.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, DashboardError> {
    let bad = |e: crate::tls::PemError| DashboardError::TlsFile {
        path: e.path.display().to_string(),
        why: e.why,
    };
    let certs = crate::tls::certificates(cert).map_err(bad)?;
    let key = crate::tls::private_key(key).map_err(bad)?;
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DashboardError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| DashboardError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}
