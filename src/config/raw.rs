//! Serde mirror of the YAML file. Every struct denies unknown fields so a typo in an
//! operator's config is an error at load, never a silently ignored setting. These types
//! are turned into the typed [`crate::config::Config`] by `validate.rs`; nothing outside
//! the config module sees them.

use serde::Deserialize;

/// A YAML scalar that may be written as a number or a string (`30` or `"30s"`,
/// `50000-50999` or `50000`), kept as text until validation parses it with its key path.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(u64),
    Str(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub data: RawData,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub acl: RawAcl,
    /// Absent: no admin endpoint.
    pub admin: Option<RawAdmin>,
}

/// `admin`: the HTTP endpoint for metrics and health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub bind: String,
    pub route: RawRoute,
    pub advertise: Option<Vec<RawAdvertise>>,
    #[serde(default)]
    pub acl: RawAcl,
    pub tls: Option<RawListenerTls>,
    pub proxy_protocol: Option<RawProxyIn>,
}

/// `listeners[].proxy_protocol`: balancers in front of this listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyIn {
    pub trusted: Vec<String>,
}

/// `listeners[].tls`: ftpgate as the TLS server of this listener's clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub mode: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub data: Option<String>,
    pub require_reuse: Option<bool>,
    pub min_version: Option<Scalar>,
    pub max_version: Option<Scalar>,
}

/// `route.tls`: ftpgate as the TLS client of this route's servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTls {
    pub mode: Option<String>,
    pub verify: Option<bool>,
    pub ca: Option<String>,
    pub server_name: Option<String>,
    pub data: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub min_version: Option<Scalar>,
    pub max_version: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub kind: String,
    #[serde(default)]
    pub upstreams: Vec<String>,
    pub balance: Option<String>,
    pub health: Option<RawHealth>,
    pub source: Option<String>,
    pub tproxy: Option<bool>,
    pub host_command: Option<String>,
    pub tls: Option<RawRouteTls>,
    pub proxy_protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub fall: Option<Scalar>,
    pub rise: Option<Scalar>,
    pub login: Option<RawHealthLogin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthLogin {
    pub user: String,
    pub password: String,
}

/// Access policy; at the top level it is the default for every listener, and a
/// listener's own `acl` replaces it section by section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    pub clients: Option<RawAllowDeny>,
    pub servers: Option<RawAllowDeny>,
    pub commands: Option<RawCommands>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowDeny {
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommands {
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    pub passive_ports: Option<Scalar>,
    pub advertise: Option<Vec<RawAdvertise>>,
    pub server_mode: Option<String>,
    pub server_active_ports: Option<Scalar>,
    pub server_pasv_address: Option<String>,
    pub server_source_port_20: Option<bool>,
    pub buffer_size: Option<Scalar>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvertise {
    pub clients: String,
    pub address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Scalar>,
    pub banner: Option<Scalar>,
    pub idle: Option<Scalar>,
    pub data_accept: Option<Scalar>,
    pub data_stall: Option<Scalar>,
    pub login: Option<Scalar>,
    pub final_reply: Option<Scalar>,
    pub shutdown_grace: Option<Scalar>,
    pub tls_handshake: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_sessions: Option<Scalar>,
    pub max_sessions_per_ip: Option<Scalar>,
    pub max_line: Option<Scalar>,
    pub max_reply_lines: Option<Scalar>,
    pub max_reply_bytes: Option<Scalar>,
    pub max_queued_commands: Option<Scalar>,
    pub rate_per_session: Option<Scalar>,
    pub rate_total: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub xferlog: Option<String>,
}
