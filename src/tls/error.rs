//! Why TLS on a control connection could not be set up, for the session and the health
//! probe alike. The log gets the whole error; a client hears only
//! [`TlsError::server_text`] about its server leg.

use super::HandshakeError;

/// One of ftpgate's own security commands to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityCommand {
    Auth,
    Pbsz,
    ProtP,
}

impl std::fmt::Display for SecurityCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecurityCommand::Auth => "AUTH TLS",
            SecurityCommand::Pbsz => "PBSZ 0",
            SecurityCommand::ProtP => "PROT P",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Bytes that came behind the line that asked for TLS (the client's AUTH, the
    /// server's 234) were written in plaintext and must not be read as protected.
    #[error("bytes arrived in plaintext after the TLS go-ahead, before the handshake")]
    PlaintextAfterAuth,
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("the FTP server refused {command} ({code})")]
    Refused { command: SecurityCommand, code: u16 },
    #[error("{0} cannot be a TLS server name")]
    BadName(String),
    #[error("no TLS configuration for this connection")]
    NotConfigured,
}

impl TlsError {
    /// What a client may be told when its server leg could not be secured.
    pub fn server_text(&self) -> &'static str {
        match self {
            TlsError::PlaintextAfterAuth => "the FTP server sent data before the TLS handshake",
            TlsError::Handshake(e) => e.server_text(),
            TlsError::Refused {
                command: SecurityCommand::Auth,
                ..
            } => "the FTP server does not offer TLS",
            TlsError::Refused {
                command: SecurityCommand::Pbsz,
                ..
            } => "the FTP server refused PBSZ",
            TlsError::Refused {
                command: SecurityCommand::ProtP,
                ..
            } => "the FTP server refused protected data connections",
            TlsError::BadName(_) => "the FTP server's name is not usable for TLS",
            TlsError::NotConfigured => "internal error",
        }
    }
}
