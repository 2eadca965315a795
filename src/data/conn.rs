//! A data connection as the relay sees it: plain TCP, or TLS with ftpgate as the
//! client's TLS server or as the server's TLS client (RFC 4217 section 12: the FTP server
//! side is always the TLS server, whoever opened the TCP connection).

use super::error::{DataError, Side};
use crate::tls::{DataRole, SessionAcceptor, SessionConnector};
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The TLS a transfer's legs need, from the session's own configurations.
#[derive(Debug, Clone)]
pub struct DataTls {
    /// The client's data connection is TLS; `true`: it must resume the control session.
    pub client: Option<(SessionAcceptor, bool)>,
    /// The server's data connection is TLS, verified as this name.
    pub server: Option<(SessionConnector, ServerName<'static>)>,
    pub handshake: Duration,
}

pub(super) enum DataConn {
    Plain(TcpStream),
    /// ftpgate is the TLS server (the client's leg).
    Served(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// ftpgate is the TLS client (the server's leg).
    Dialed(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl DataConn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DataConn::Plain(s) => s,
            DataConn::Served(s) => s.get_ref().0,
            DataConn::Dialed(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, DataConn::Plain(_))
    }
}

/// The client's leg: TLS if the client asked for `PROT P`.
pub(super) async fn client_side(
    tcp: TcpStream,
    tls: &DataTls,
    role: DataRole,
) -> Result<DataConn, DataError> {
    let Some((acceptor, require_reuse)) = &tls.client else {
        return Ok(DataConn::Plain(tcp));
    };
    acceptor
        .accept(tcp, role, tls.handshake, *require_reuse)
        .await
        .map(|s| DataConn::Served(Box::new(s)))
        .map_err(|error| DataError::Tls {
            side: Side::Client,
            error,
        })
}

/// The server's leg: TLS if ftpgate sent the server `PROT P`.
pub(super) async fn server_side(tcp: TcpStream, tls: &DataTls) -> Result<DataConn, DataError> {
    let Some((connector, name)) = &tls.server else {
        return Ok(DataConn::Plain(tcp));
    };
    connector
        .connect(name, tcp, tls.handshake)
        .await
        .map(|s| DataConn::Dialed(Box::new(s)))
        .map_err(|error| DataError::Tls {
            side: Side::Server,
            error,
        })
}

/// After the relay: reads what the peer still sends until it closes, within `limit` and
/// a byte cap. A TLS peer may have sent session tickets nobody read; closing a socket
/// with unread bytes sends a reset instead of a FIN, and a server such as vsftpd then
/// discards the tail of an upload it was still writing to disk.
pub(super) async fn drain(conn: &mut DataConn, limit: Duration) {
    const CAP: usize = 1 << 20;
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    total += n;
                    if total > CAP {
                        return;
                    }
                }
            }
        }
    };
    if timeout(limit, read_all).await.is_err() {
        tracing::debug!("data peer did not close after the transfer");
    }
}

impl AsyncRead for DataConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            DataConn::Served(s) => Pin::new(s).poll_read(cx, buf),
            DataConn::Dialed(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DataConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            DataConn::Served(s) => Pin::new(s).poll_write(cx, buf),
            DataConn::Dialed(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataConn::Plain(s) => Pin::new(s).poll_flush(cx),
            DataConn::Served(s) => Pin::new(s).poll_flush(cx),
            DataConn::Dialed(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            DataConn::Served(s) => Pin::new(s).poll_shutdown(cx),
            DataConn::Dialed(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
