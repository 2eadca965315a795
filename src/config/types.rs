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
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub route: Route,
    /// Per-listener advertise rules; empty means "use `data.advertise`".
    pub advertise: Vec<AdvertiseRule>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    /// Every session goes to the configured upstreams (the first, until balancing exists).
    Fixed { upstreams: Vec<Upstream> },
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
    /// Bytes per read/write on the data relay.
    pub buffer_size: usize,
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
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_line: usize,
    pub max_reply_lines: usize,
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
}

mod duration_text {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}
