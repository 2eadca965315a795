//! Typed errors of the route layer. Each knows which side caused it ([`Side`]) and offers
//! a client-safe text ([`UpstreamError::client_text`]) that names no upstream address, OS
//! error, ACL rule or server greeting (SECURITY.md 12): the `Display` text, with all the
//! detail, is for the log only.

pub use crate::error::Side;
use crate::policy::Denied;
use crate::wire::ReadError;
use std::net::SocketAddr;

/// Why the server leg of a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no healthy upstream")]
    NoHealthy,
    #[error("resolving {host} timed out")]
    ResolveTimeout { host: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: hickory_resolver::net::NetError,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("no greeting from {addr} in time")]
    BannerTimeout { addr: SocketAddr },
    /// A final reply other than 220 (the text is the server's, for the log).
    #[error("{addr} greeted with {code}: {text}")]
    Greeting {
        addr: SocketAddr,
        code: u16,
        text: String,
    },
    #[error("invalid greeting from {addr}: {source}")]
    InvalidGreeting {
        addr: SocketAddr,
        #[source]
        source: ReadError,
    },
    /// Every address of `host` is refused by `acl.servers`; `reason` is the last refusal.
    #[error("destination {host} refused: {reason}")]
    DestinationRefused {
        host: String,
        #[source]
        reason: Denied,
    },
    #[error("no original destination (the connection was not intercepted)")]
    NotIntercepted,
    #[error("local socket error: {0}")]
    Local(#[source] std::io::Error),
    #[error("TLS to {addr}: {error}")]
    Tls {
        addr: SocketAddr,
        #[source]
        error: crate::tls::HandshakeError,
    },
    #[error("{name} cannot be a TLS server name")]
    TlsName { name: String },
}

impl UpstreamError {
    pub fn side(&self) -> Side {
        match self {
            UpstreamError::DestinationRefused { .. } | UpstreamError::NotIntercepted => {
                Side::Client
            }
            UpstreamError::Local(_) | UpstreamError::TlsName { .. } => Side::Internal,
            UpstreamError::Tls { .. } => Side::Server,
            UpstreamError::NoHealthy
            | UpstreamError::ResolveTimeout { .. }
            | UpstreamError::Resolve { .. }
            | UpstreamError::NoAddress { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::ConnectTimeout { .. }
            | UpstreamError::BannerTimeout { .. }
            | UpstreamError::Greeting { .. }
            | UpstreamError::InvalidGreeting { .. } => Side::Server,
        }
    }

    /// What a client may be told: a fixed text with no address, OS error, ACL rule or
    /// server greeting in it.
    pub fn client_text(&self) -> &'static str {
        match self {
            UpstreamError::NoHealthy => "no FTP server is available",
            UpstreamError::ResolveTimeout { .. }
            | UpstreamError::Resolve { .. }
            | UpstreamError::NoAddress { .. } => "the server name cannot be resolved",
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => {
                "the FTP server cannot be reached"
            }
            UpstreamError::BannerTimeout { .. }
            | UpstreamError::Greeting { .. }
            | UpstreamError::InvalidGreeting { .. } => "the FTP server sent no valid greeting",
            UpstreamError::DestinationRefused { .. } => "destination not allowed",
            UpstreamError::NotIntercepted => "no destination for this connection",
            UpstreamError::Local(_) => "internal error",
            UpstreamError::Tls { error, .. } => error.server_text(),
            UpstreamError::TlsName { .. } => "the FTP server's name is not usable for TLS",
        }
    }
}

/// Why a health probe failed (logged at debug; counts towards ejection).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("reading a reply: {0}")]
    Read(#[from] ReadError),
    #[error("sending a command: {0}")]
    Write(#[source] std::io::Error),
    #[error("login answered {code}")]
    Login { code: u16 },
    #[error("TLS: {0}")]
    Tls(#[source] crate::tls::TlsError),
}

impl HealthError {
    pub fn side(&self) -> Side {
        match self {
            HealthError::Upstream(e) => e.side(),
            _ => Side::Server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::reply::ReplyError;

    fn every_error() -> Vec<UpstreamError> {
        let addr: SocketAddr = "198.51.100.7:2121"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let host = || "ftp.internal.example".to_string();
        let os = || std::io::Error::from_raw_os_error(111);
        vec![
            UpstreamError::NoHealthy,
            UpstreamError::ResolveTimeout { host: host() },
            UpstreamError::Resolve {
                host: host(),
                source: hickory_resolver::net::NetError::from("no record found"),
            },
            UpstreamError::NoAddress { host: host() },
            UpstreamError::Connect { addr, source: os() },
            UpstreamError::ConnectTimeout { addr },
            UpstreamError::BannerTimeout { addr },
            UpstreamError::Greeting {
                addr,
                code: 421,
                text: "too busy, try 10.1.2.3".into(),
            },
            UpstreamError::InvalidGreeting {
                addr,
                source: ReadError::Reply(ReplyError::Malformed),
            },
            UpstreamError::DestinationRefused {
                host: host(),
                reason: Denied::DenyRule(addr, "198.51.100.0/24".into()),
            },
            UpstreamError::DestinationRefused {
                host: host(),
                reason: Denied::NotAllowed(addr),
            },
            UpstreamError::NotIntercepted,
            UpstreamError::Local(os()),
        ]
    }

    #[test]
    fn client_texts_name_nothing_internal() {
        for e in every_error() {
            let text = e.client_text();
            let log = e.to_string();
            for secret in [
                "198.51.100",
                "2121",
                "internal.example",
                "os error",
                "refused",
                "acl",
                "10.1.2.3",
                "busy",
            ] {
                assert!(
                    !text.to_lowercase().contains(secret),
                    "{e:?}: client text {text:?} contains {secret:?}"
                );
            }
            assert!(!text.is_empty());
            // The detail stays in the log text.
            assert_ne!(log, text, "{e:?}");
        }
    }

    #[test]
    fn log_texts_keep_the_detail() {
        let texts: Vec<String> = every_error().iter().map(|e| e.to_string()).collect();
        assert!(texts[4].contains("198.51.100.7:2121") && texts[4].contains("os error 111"));
        assert!(texts[7].contains("too busy"));
        assert!(texts[9].contains("acl.servers.deny"));
    }

    #[test]
    fn sides() {
        let sides: Vec<Side> = every_error().iter().map(|e| e.side()).collect();
        assert_eq!(sides[0], Side::Server);
        assert_eq!(sides[4], Side::Server);
        assert_eq!(sides[9], Side::Client);
        assert_eq!(sides[11], Side::Client);
        assert_eq!(sides[12], Side::Internal);
        assert_eq!(HealthError::Timeout.side(), Side::Server);
    }
}
