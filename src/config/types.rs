//! The typed, validated configuration.

use ipnet::IpNet;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub data: DataConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log: LogConfig,
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); `None`: off.
    pub admin: Option<AdminConfig>,
    /// Things that work but are probably not what the operator meant; printed once
    /// logging has started (and by `ftpgate check`), not part of the effective config.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `admin`: where the admin HTTP endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub route: RouteConfig,
    /// Per-listener advertise rules; empty means "use `data.advertise`".
    pub advertise: Vec<AdvertiseRule>,
    /// The effective policy of this listener (its own `acl`, else the top-level one).
    pub acl: AclConfig,
    /// FTPS towards this listener's clients; `None`: `tls.mode: off`.
    pub tls: Option<ListenerTls>,
    /// `proxy_protocol.trusted`: peers that must begin with a PROXY protocol header
    /// (control and passive data connections); `None`: no header is read.
    pub proxy_protocol: Option<ProxyIn>,
}

/// `listeners[].proxy_protocol`.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyIn {
    pub trusted: Vec<IpNet>,
}

/// `route.proxy_protocol` (other than `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyVersion {
    V1,
    V2,
}

/// `listeners[].tls.mode` (other than `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTlsMode {
    /// `AUTH TLS` is offered; plain FTP still works.
    Explicit,
    /// `AUTH TLS` must come before anything else.
    Required,
    /// TLS from the first byte (port 990 style).
    Implicit,
}

/// `listeners[].tls.data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientDataTls {
    /// The client picks PROT C or P.
    Optional,
    /// Data commands are refused (521) until the client sent `PROT P`.
    Required,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerTls {
    pub mode: ClientTlsMode,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub data: ClientDataTls,
    /// A client data connection must resume the control connection's TLS session.
    pub require_reuse: bool,
    pub min_version: crate::tls::TlsVersion,
    pub max_version: crate::tls::TlsVersion,
    #[serde(skip)]
    pub acceptor: std::sync::Arc<crate::tls::Acceptor>,
}

/// `route.tls.mode` (other than `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerTlsMode {
    /// `AUTH TLS` after the greeting; a server that refuses it ends the session.
    Explicit,
    /// TLS from the first byte.
    Implicit,
    /// TLS towards the server exactly when the client uses it (explicit after the
    /// client's `AUTH`, implicit on an implicit listener).
    MatchClient,
}

/// `route.tls.data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerDataTls {
    /// `PROT P`: data connections to the server are TLS.
    Private,
    /// `PROT C`: data connections to the server are plain.
    Clear,
    /// The same protection as the client's data connections.
    MatchClient,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTls {
    pub mode: ServerTlsMode,
    pub verify: bool,
    /// `None`: the system trust store.
    pub ca: Option<std::path::PathBuf>,
    /// SNI and the verified name; `None`: the host the server was reached by.
    pub server_name: Option<String>,
    pub data: ServerDataTls,
    pub client_cert: Option<std::path::PathBuf>,
    pub min_version: crate::tls::TlsVersion,
    pub max_version: crate::tls::TlsVersion,
    #[serde(skip)]
    pub connector: std::sync::Arc<crate::tls::Connector>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Every session goes to `upstreams`.
    Fixed,
    /// The client logs in as `user@host[:port]` and picks the server (forward proxy).
    UserAtHost,
    /// The server is the client's original destination (nftables REDIRECT or TPROXY).
    Transparent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
    LeastConn,
    /// Sticky per client IP.
    ClientHash,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    pub kind: RouteKind,
    pub upstreams: Vec<Upstream>,
    pub balance: Balance,
    pub health: Option<HealthConfig>,
    /// Local address for connections to servers (multi-homed proxies).
    pub source: Option<IpAddr>,
    /// Transparent route with TPROXY: listeners (control and passive data) get IP_TRANSPARENT.
    pub tproxy: bool,
    /// What to do with a client's RFC 7151 `HOST`.
    pub host_command: HostCommand,
    /// FTPS towards this route's servers; `None`: `tls.mode: off`.
    pub tls: Option<RouteTls>,
    /// A PROXY protocol header towards the servers; `None`: `off`.
    pub proxy_protocol: Option<ProxyVersion>,
}

/// `route.host_command`: which RFC 7151 `HOST` commands reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostCommand {
    /// Host names are forwarded; a bare IP address (typically ftpgate's own, which is
    /// what clients such as FileZilla send) is answered by ftpgate with 220 and dropped.
    Names,
    /// Every `HOST` is forwarded.
    Forward,
    /// No `HOST` is forwarded; ftpgate answers 220 itself.
    Answer,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthConfig {
    #[serde(with = "duration_text")]
    pub interval: Duration,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Consecutive failures that eject an upstream.
    pub fall: u32,
    /// Consecutive successes that re-admit it.
    pub rise: u32,
    pub login: Option<HealthLogin>,
}

#[derive(Debug, Clone)]
pub struct HealthLogin {
    pub user: String,
    pub password: String,
}

impl Serialize for HealthLogin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("HealthLogin", 2)?;
        st.serialize_field("user", &self.user)?;
        // Secrets never leave the process, not even in `ftpgate check`.
        st.serialize_field("password", "********")?;
        st.end()
    }
}

/// Allow/deny by client network. An absent allow list allows everyone; deny wins.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetPolicy {
    pub allow: Option<Vec<IpNet>>,
    pub deny: Vec<IpNet>,
}

/// A destination rule: a network with an optional port range (`203.0.113.0/24:2100-2199`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRule {
    pub net: IpNet,
    pub ports: Option<(u16, u16)>,
}

impl std::fmt::Display for ServerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ports {
            None => write!(f, "{}", self.net),
            Some((a, b)) if a == b => write!(f, "{}:{a}", self.net),
            Some((a, b)) => write!(f, "{}:{a}-{b}", self.net),
        }
    }
}

impl Serialize for ServerRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Destinations a forward or transparent route may reach. No allow list: none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerPolicy {
    pub allow: Vec<ServerRule>,
    pub deny: Vec<ServerRule>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AclConfig {
    pub clients: NetPolicy,
    pub servers: ServerPolicy,
    /// Upper-case verbs refused with 534.
    pub commands_deny: Vec<String>,
}

/// An upstream server as `host:port`; the host may be a name, resolved at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inclusive port range such as `50000-50999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMode {
    Passive,
    Active,
    /// Mirror the client: passive towards the server if the client used PASV/EPSV.
    Client,
}

/// What to do with the address a server puts in its 227 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerPasvAddress {
    /// Connect to the server's control address with the port from the reply (NAT-safe).
    UseControl,
    /// Refuse the transfer unless the reply's address equals the control address.
    Check,
    /// Connect where the reply says (still never loopback or a port below 1024).
    Trust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertiseAddr {
    /// The local address the client's control connection reached.
    Auto,
    Ip(IpAddr),
}

impl Serialize for AdvertiseAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AdvertiseAddr::Auto => s.serialize_str("auto"),
            AdvertiseAddr::Ip(ip) => s.collect_str(ip),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdvertiseRule {
    pub clients: IpNet,
    pub address: AdvertiseAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataConfig {
    pub passive_ports: PortRange,
    pub advertise: Vec<AdvertiseRule>,
    pub server_mode: ServerMode,
    pub server_active_ports: PortRange,
    pub server_pasv_address: ServerPasvAddress,
    /// Connect to active-mode clients from port 20, as RFC 959 servers do.
    pub server_source_port_20: bool,
    /// Bytes per read/write on the data relay.
    pub buffer_size: usize,
    /// `data.path`: who moves the bytes of a plain data connection.
    pub path: DataPath,
}

/// `data.path`: the user-space relay, or kernel forwarding through nftables mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    /// ftpgate accepts both legs and splices them.
    #[default]
    Relay,
    /// ftpgate installs a one-shot DNAT + SNAT mapping and the kernel forwards the
    /// connection; where that cannot apply the transfer falls back to the relay.
    Kernel,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timeouts {
    #[serde(with = "duration_text")]
    pub connect: Duration,
    #[serde(with = "duration_text")]
    pub banner: Duration,
    #[serde(with = "duration_text")]
    pub idle: Duration,
    #[serde(with = "duration_text")]
    pub data_accept: Duration,
    #[serde(with = "duration_text")]
    pub data_stall: Duration,
    #[serde(with = "duration_text")]
    pub login: Duration,
    #[serde(with = "duration_text")]
    pub final_reply: Duration,
    #[serde(with = "duration_text")]
    pub shutdown_grace: Duration,
    /// Bounds every TLS handshake, control and data.
    #[serde(with = "duration_text")]
    pub tls_handshake: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub max_line: usize,
    pub max_reply_lines: usize,
    pub max_reply_bytes: usize,
    pub max_queued_commands: usize,
    /// Bytes per second per session (all its transfers), if limited.
    pub rate_per_session: Option<u64>,
    /// Bytes per second over all transfers, if limited.
    pub rate_total: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// `log.xferlog`: the transfer log's path, if one is written.
    pub xferlog: Option<std::path::PathBuf>,
}

mod duration_text {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}
