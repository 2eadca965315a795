//! What every layer's error shares: which side caused it.
//!
//! Each layer has its own `thiserror` type (`config::ConfigError`, `data::DataError`,
//! `route::UpstreamError`, `session::SessionEnd`, ...); each can say whether the client, the
//! server or ftpgate itself is at fault, so logs and metrics can tell a hostile or broken peer
//! from a fault of ours, and peer disconnects can be logged quietly (STYLE.md 8).

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The FTP client (or a host pretending to be it).
    Client,
    /// The FTP server (or the path to it).
    Server,
    /// ftpgate itself: a resource limit, a bind failure, a bug.
    Internal,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
            Side::Internal => "internal",
        })
    }
}
