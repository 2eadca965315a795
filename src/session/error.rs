//! Why a session ended, typed by cause and side. Logged once, when the session ends.

use crate::error::Side;
use crate::proto::line::LineError;
use crate::proto::reply::ReplyError;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client quit")]
    Quit,
    #[error("server closed the connection")]
    ServerClosed,
    #[error("upstream unavailable: {0}")]
    Upstream(crate::route::UpstreamError),
    #[error("server protocol error: {0}")]
    Server(#[from] ServerFault),
    #[error("client protocol error: {0}")]
    Client(#[from] ClientFault),
    #[error("idle timeout")]
    Idle,
    #[error("shutting down")]
    Shutdown,
    #[error("control connection I/O error on the {side} side: {source}")]
    Io { side: Side, source: std::io::Error },
    #[error("TLS on the {side} control connection failed: {error}")]
    Tls {
        side: Side,
        error: crate::tls::TlsError,
    },
}

impl SessionEnd {
    /// Who ended the session.
    pub fn side(&self) -> Side {
        match self {
            SessionEnd::ClientClosed | SessionEnd::Quit | SessionEnd::Client(_) => Side::Client,
            SessionEnd::Idle => Side::Client,
            SessionEnd::Upstream(e) => e.side(),
            SessionEnd::ServerClosed | SessionEnd::Server(_) => Side::Server,
            SessionEnd::Shutdown => Side::Internal,
            SessionEnd::Io { side, .. } | SessionEnd::Tls { side, .. } => *side,
        }
    }

    /// An ordinary end (a peer closed or quit): logged at info, everything else at warn.
    pub fn is_orderly(&self) -> bool {
        matches!(
            self,
            SessionEnd::ClientClosed | SessionEnd::Quit | SessionEnd::ServerClosed
        )
    }
}

/// A client that broke the protocol or a limit.
#[derive(Debug, thiserror::Error)]
pub enum ClientFault {
    #[error("HTTP request on the control port")]
    Http,
    #[error("no login in time")]
    LoginTimeout,
    #[error("bytes pipelined after AUTH")]
    PipelinedAfterAuth,
    #[error("client does not read its control connection")]
    NotReading,
    #[error("too many USER attempts")]
    TooManyLogins,
    #[error("TLS handshake on a plaintext control connection")]
    TlsOnPlain,
    #[error("REIN on a TLS session")]
    ReinAfterTls,
    #[error("PROXY protocol header from an untrusted peer")]
    UntrustedProxyHeader,
}

/// A server that broke the protocol or a limit.
#[derive(Debug, thiserror::Error)]
pub enum ServerFault {
    #[error("invalid reply line: {0}")]
    Line(LineError),
    #[error("invalid reply: {0}")]
    Reply(ReplyError),
    #[error("too many 1xx replies")]
    TooManyPreliminary,
    #[error("final reply timeout")]
    FinalReplyTimeout,
    #[error("server does not read its control connection")]
    NotReading,
}
