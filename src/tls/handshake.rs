//! Handshakes with deadlines, on a control session's own configurations.

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, CommonState, HandshakeKind, ServerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// Which connection of the session a handshake is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRole {
    Control,
    /// A data connection that carries bytes towards the client.
    Download,
    /// A data connection that carries bytes from the client.
    Upload,
}

/// Why a handshake did not give a usable connection. The log gets the whole error; a
/// client hears only [`HandshakeError::server_text`] about its server leg.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("the TLS handshake did not resume the control connection's session")]
    NotResumed,
}

impl HandshakeError {
    fn rustls(&self) -> Option<&rustls::Error> {
        match self {
            HandshakeError::Failed(e) => e.get_ref().and_then(|i| i.downcast_ref()),
            _ => None,
        }
    }

    /// What a client may be told when the handshake towards its server failed.
    pub fn server_text(&self) -> &'static str {
        use rustls::Error as E;
        match (self, self.rustls()) {
            (HandshakeError::Timeout, _) => "the TLS handshake with the FTP server timed out",
            (_, Some(E::InvalidCertificate(c))) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "the FTP server's certificate does not match its name"
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the FTP server's certificate has expired"
                }
                _ => "the FTP server's certificate is not trusted",
            },
            (_, Some(E::AlertReceived(_))) => "the FTP server refused the TLS handshake",
            _ => "the TLS handshake with the FTP server failed",
        }
    }
}

/// Protocol version, cipher suite and whether the session was resumed, for the log.
pub fn describe(state: &CommonState) -> String {
    let version = state
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let suite = state
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
    let kind = match state.handshake_kind() {
        Some(HandshakeKind::Resumed) => "resumed",
        _ => "full",
    };
    format!("{version} {suite} {kind}")
}

/// A control session's server-side configurations (see `Acceptor::session`).
#[derive(Clone)]
pub struct SessionAcceptor {
    control: TlsAcceptor,
    download: TlsAcceptor,
    upload: TlsAcceptor,
}

impl std::fmt::Debug for SessionAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionAcceptor")
    }
}

impl SessionAcceptor {
    pub(super) fn new(control: ServerConfig, download: ServerConfig, upload: ServerConfig) -> Self {
        SessionAcceptor {
            control: TlsAcceptor::from(Arc::new(control)),
            download: TlsAcceptor::from(Arc::new(download)),
            upload: TlsAcceptor::from(Arc::new(upload)),
        }
    }

    /// Accepts a client's handshake within `limit`. With `require_resumed`, a handshake
    /// that did not resume this session's TLS session is refused before any byte flows.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        role: DataRole,
        limit: Duration,
        require_resumed: bool,
    ) -> Result<server::TlsStream<S>, HandshakeError> {
        let acceptor = match role {
            DataRole::Control => &self.control,
            DataRole::Download => &self.download,
            DataRole::Upload => &self.upload,
        };
        let tls = timeout(limit, acceptor.accept(stream))
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(HandshakeError::Failed)?;
        let state = tls.get_ref().1;
        tracing::debug!(tls = %describe(state), ?role, "client TLS established");
        if require_resumed && state.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(HandshakeError::NotResumed);
        }
        Ok(tls)
    }
}

/// A control session's client-side configuration (see `Connector::session`).
#[derive(Clone)]
pub struct SessionConnector {
    inner: TlsConnector,
}

impl std::fmt::Debug for SessionConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionConnector")
    }
}

impl SessionConnector {
    pub(super) fn new(config: ClientConfig) -> Self {
        SessionConnector {
            inner: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Connects to the server known as `name` within `limit`. Data connections of the
    /// session resume the control connection's session (same store, same name).
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        name: &ServerName<'static>,
        stream: S,
        limit: Duration,
    ) -> Result<client::TlsStream<S>, HandshakeError> {
        let tls = timeout(limit, self.inner.connect(name.clone(), stream))
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(HandshakeError::Failed)?;
        tracing::debug!(tls = %describe(tls.get_ref().1), "server TLS established");
        Ok(tls)
    }
}
