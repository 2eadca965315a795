//! Why a data transfer failed, and which leg it concerns. Below every other file of
//! `data/`, so the legs, the relays and the transfer task share it without a circle.

use std::net::SocketAddr;

/// Which peer a data error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no data connection from the {side} in time")]
    AcceptTimeout { side: Side },
    #[error("connecting to the {side} at {target} timed out")]
    ConnectTimeout { side: Side, target: SocketAddr },
    #[error("cannot connect to the {side} at {target}: {source}")]
    Connect {
        side: Side,
        target: SocketAddr,
        source: std::io::Error,
    },
    #[error("data connection to the {side} failed: {source}")]
    Io { side: Side, source: std::io::Error },
    #[error("data connection to the {side} stalled")]
    Stall { side: Side },
    #[error("transfer aborted")]
    Cancelled,
    #[error("TLS on the {side}'s data connection: {error}")]
    Tls {
        side: Side,
        error: crate::tls::HandshakeError,
    },
    /// The TLS stream ended without close_notify: the file may be cut short.
    #[error("the {side}'s TLS data stream ended without close_notify")]
    Truncated { side: Side },
}

impl DataError {
    /// What a client may be told: which side failed and how, never an address or an OS
    /// error (those stay in the log, SECURITY.md 12).
    pub fn client_text(&self) -> &'static str {
        match self {
            DataError::AcceptTimeout { side: Side::Client } => {
                "no data connection from the client in time"
            }
            DataError::AcceptTimeout { side: Side::Server } => {
                "the FTP server did not open its data connection in time"
            }
            DataError::ConnectTimeout {
                side: Side::Client, ..
            }
            | DataError::Connect {
                side: Side::Client, ..
            } => "cannot connect to the client's data port",
            DataError::ConnectTimeout {
                side: Side::Server, ..
            }
            | DataError::Connect {
                side: Side::Server, ..
            } => "cannot connect to the FTP server's data port",
            DataError::Io {
                side: Side::Client, ..
            } => "the client's data connection failed",
            DataError::Io {
                side: Side::Server, ..
            } => "the FTP server's data connection failed",
            DataError::Stall { side: Side::Client } => "the client's data connection stalled",
            DataError::Stall { side: Side::Server } => "the FTP server's data connection stalled",
            DataError::Cancelled => "transfer aborted",
            DataError::Tls {
                error: crate::tls::HandshakeError::NotResumed,
                ..
            } => "the data connection must resume the control connection's TLS session",
            DataError::Tls {
                side: Side::Client, ..
            } => "TLS on the client's data connection failed",
            DataError::Tls {
                side: Side::Server, ..
            } => "TLS on the FTP server's data connection failed",
            DataError::Truncated { side: Side::Client } => {
                "the client's TLS data stream ended without close_notify"
            }
            DataError::Truncated { side: Side::Server } => {
                "the FTP server's TLS data stream ended without close_notify"
            }
        }
    }

    /// True when the data connection was never established (425, not 426).
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            DataError::AcceptTimeout { .. }
                | DataError::ConnectTimeout { .. }
                | DataError::Connect { .. }
                | DataError::Tls { .. }
        )
    }
}
