//! Opening one data leg: accept exactly one connection from the expected peer before a
//! deadline, or connect to a target that the session has already checked.

use super::error::{DataError, Side};
use super::ports::DataListener;
use crate::proto::hostport::canonical_ip;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How ftpgate reaches the client for one transfer. `L` is the listener type: a bound
/// [`DataListener`] here, an opaque stand-in in the session core's tests.
#[derive(Debug)]
pub enum ClientLeg<L = DataListener> {
    /// The client connects to our passive listener (it sent PASV/EPSV).
    Accept { listener: L, expect: IpAddr },
    /// We connect to the client (it sent PORT/EPRT), from `source` (and port 20 when
    /// `data.server_source_port_20` asks for RFC 959 server behaviour).
    Connect {
        target: SocketAddr,
        source: IpAddr,
        source_port: Option<u16>,
        /// Under TPROXY `source` is the server's address, not ours: bind it transparently.
        transparent: bool,
    },
}

/// How ftpgate reaches the server for one transfer.
#[derive(Debug)]
pub enum ServerLeg<L = DataListener> {
    /// We sent PASV/EPSV to the server and connect where it (and our policy) said.
    Connect { target: SocketAddr, source: IpAddr },
    /// We sent PORT/EPRT to the server; it connects to our listener.
    Accept { listener: L, expect: IpAddr },
}

/// Accepts one connection from `expect`. Connections from anyone else are closed
/// without a byte read or written, and the listener keeps waiting for the real peer.
/// A connection from a `trusted` balancer is taken only if its PROXY protocol header
/// names `expect` (the header is consumed; it never reaches the other leg).
pub(super) async fn accept_from(
    listener: &DataListener,
    expect: IpAddr,
    side: Side,
    deadline: Instant,
    metrics: &crate::metrics::Metrics,
    trusted: Option<&[ipnet::IpNet]>,
) -> Result<TcpStream, DataError> {
    let expect = canonical_ip(expect);
    loop {
        let accepted = timeout_at(deadline, listener.listener.accept())
            .await
            .map_err(|_| DataError::AcceptTimeout { side })?;
        match accepted {
            Ok((mut stream, peer))
                if trusted.is_some_and(|t| crate::proxy_proto::trusted(t, peer.ip())) =>
            {
                let header_deadline = deadline.min(Instant::now() + Duration::from_secs(5));
                match crate::proxy_proto::read(&mut stream, header_deadline).await {
                    Ok(crate::proxy_proto::Declared::Proxy { source, .. })
                        if canonical_ip(source.ip()) == expect =>
                    {
                        tune(&stream);
                        return Ok(stream);
                    }
                    declared => {
                        tracing::warn!(
                            data.side = %side,
                            data.listen = %listener.addr,
                            balancer = %peer,
                            expected = %expect,
                            header = ?declared,
                            "data connection through a balancer for another client closed"
                        );
                        metrics.refused(crate::metrics::families::Refusal::data_peer);
                    }
                }
            }
            Ok((stream, peer)) if canonical_ip(peer.ip()) == expect => {
                tune(&stream);
                return Ok(stream);
            }
            Ok((stream, peer)) => {
                tracing::warn!(
                    data.side = %side,
                    data.listen = %listener.addr,
                    peer.addr = %peer,
                    expected = %expect,
                    "data connection from an unexpected address closed"
                );
                metrics.refused(crate::metrics::families::Refusal::data_peer);
                drop(stream);
            }
            // Transient accept errors (ECONNABORTED, EMFILE) must not end the wait
            // early nor spin: back off briefly and keep the deadline.
            Err(e) => {
                tracing::debug!(data.side = %side, error = %e, "data accept error");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

pub(super) async fn connect_from(
    target: SocketAddr,
    source: IpAddr,
    source_port: Option<u16>,
    transparent: bool,
    side: Side,
    limit: Duration,
) -> Result<TcpStream, DataError> {
    let attempt = async {
        let socket = crate::sockets::socket_for(target)?;
        // Leave from the address the peer already knows us by, so that stateful
        // firewalls and the peer's own checks see one host.
        if canonical_ip(source).is_ipv4() == target.is_ipv4() && !source.is_unspecified() {
            if transparent {
                socket2::SockRef::from(&socket).set_ip_transparent(true)?;
            }
            if source_port.is_some() {
                // Several transfers may leave from port 20 at once, to different peers.
                socket.set_reuseaddr(true)?;
            }
            socket.bind(SocketAddr::new(
                canonical_ip(source),
                source_port.unwrap_or(0),
            ))?;
        }
        socket.connect(target).await
    };
    let stream = tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| DataError::ConnectTimeout { side, target })?
        .map_err(|source| DataError::Connect {
            side,
            target,
            source,
        })?;
    tune(&stream);
    Ok(stream)
}

fn tune(stream: &TcpStream) {
    // Small final segments (and the FIN after them) must not wait on Nagle.
    let _ = stream.set_nodelay(true);
}
