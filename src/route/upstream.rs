//! Opening the server leg: connect (from the configured source address) to each target in
//! turn, and read the server's greeting. Every resolved address of a target is tried, and
//! a destination that refuses, times out or greets with anything but 220 (or with
//! something that is not a reply at all) is skipped for the next address, then the next
//! target; so a dead upstream costs a client one connect timeout at most, not a failed
//! session.

use super::{Resolver, Router, UpstreamError, UpstreamLease, UpstreamState};
use crate::config::{Limits, RouteConfig, Timeouts};
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::stream::BoxedStream;
use crate::wire::next_reply;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Most 120 ("service ready in nnn minutes") replies accepted before the 220.
const MAX_DELAY_REPLIES: usize = 4;

/// One place to try.
#[derive(Debug, Clone)]
pub enum Target {
    /// An upstream of a fixed route (resolved at connect time).
    Upstream(Arc<UpstreamState>),
    /// An address already resolved and checked against policy.
    Addr(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Upstream(u) => write!(f, "{}", u.upstream),
            Target::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// What opening a server leg needs to know: taken from the route, `timeouts` and `limits`.
#[derive(Debug, Clone)]
pub struct DialParams {
    /// Local address to connect from (`route.source`).
    pub source: Option<IpAddr>,
    /// Bounds name resolution and each connect attempt.
    pub connect: Duration,
    /// Bounds the wait for the greeting on each connection.
    pub banner: Duration,
    pub max_line: usize,
    pub max_reply_lines: usize,
    pub max_reply_bytes: usize,
    /// `route.proxy_protocol`: the header written before anything else on each connection.
    pub proxy_header: Option<Vec<u8>>,
}

impl DialParams {
    pub fn new(route: &RouteConfig, timeouts: &Timeouts, limits: &Limits) -> DialParams {
        DialParams {
            source: route.source,
            connect: timeouts.connect,
            banner: timeouts.banner,
            max_line: limits.max_line,
            max_reply_lines: limits.max_reply_lines,
            max_reply_bytes: limits.max_reply_bytes,
            proxy_header: None,
        }
    }

    /// With `route.proxy_protocol` set, each connection begins with a header naming
    /// `client` (the real one) and `listener` (the address it reached ftpgate on).
    pub fn proxied(
        mut self,
        version: Option<crate::config::ProxyVersion>,
        client: SocketAddr,
        listener: SocketAddr,
    ) -> DialParams {
        self.proxy_header = version.map(|v| crate::proxy_proto::encode(v, client, listener));
        self
    }
}

pub struct ServerLegConn {
    /// The name the server was reached by (an upstream's host, the client's `user@host`
    /// host, or an address): the default TLS name.
    pub host: String,
    /// The control connection is TLS already (implicit FTPS).
    pub tls: bool,
    pub leg: crate::wire::Leg,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The greeting: any 120s, then the 220.
    pub banner: Vec<Reply>,
    pub _lease: Option<UpstreamLease>,
}

/// Implicit FTPS towards the server: the handshake comes before the greeting.
#[derive(Clone, Copy)]
pub struct ImplicitTls<'a> {
    pub connector: &'a crate::tls::SessionConnector,
    /// The name to verify; `None`: each target's own host.
    pub server_name: Option<&'a str>,
    pub handshake: Duration,
}

/// Connects a TCP stream, from `source` when given.
pub async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = crate::sockets::socket_for(addr)?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Tries each target in turn (every address of each); the error is the last failure.
/// A fixed-route upstream that fails counts towards its ejection (passive health).
pub async fn open(
    router: &Router,
    params: &DialParams,
    targets: &[Target],
    tls: Option<ImplicitTls<'_>>,
) -> Result<ServerLegConn, UpstreamError> {
    let mut last = UpstreamError::NoHealthy;
    for target in targets {
        match open_one(&router.resolver, params, target, tls).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                tracing::warn!(server = %target, reason = %e, "upstream failed");
                if let Target::Upstream(u) = target {
                    router.report_failure(u);
                }
                last = e;
            }
        }
    }
    Err(last)
}

async fn open_one(
    resolver: &Resolver,
    params: &DialParams,
    target: &Target,
    tls: Option<ImplicitTls<'_>>,
) -> Result<ServerLegConn, UpstreamError> {
    let (addrs, host) = match target {
        Target::Addr(a) => (vec![*a], a.ip().to_string()),
        Target::Upstream(u) => (
            resolver
                .lookup(&u.upstream.host, u.upstream.port, params.connect)
                .await?,
            u.upstream.host.clone(),
        ),
    };
    let tls = match tls {
        None => None,
        Some(t) => {
            let name = t.server_name.unwrap_or(&host).to_string();
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| UpstreamError::TlsName { name })?;
            Some((t, name))
        }
    };
    let mut conn = dial(params, &addrs, tls.as_ref()).await?;
    conn.host = host;
    if let Target::Upstream(u) = target {
        conn._lease = Some(UpstreamLease::new(Arc::clone(u)));
    }
    Ok(conn)
}

/// Connects to each address in turn until one greets with 220; the error is the last
/// address's. The caller has checked the addresses against policy.
pub async fn dial(
    params: &DialParams,
    addrs: &[SocketAddr],
    tls: Option<&(ImplicitTls<'_>, rustls::pki_types::ServerName<'static>)>,
) -> Result<ServerLegConn, UpstreamError> {
    let mut last = None;
    for &addr in addrs {
        match dial_one(params, addr, tls).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                if addrs.len() > 1 {
                    tracing::debug!(server.addr = %addr, reason = %e, "address failed, trying the next");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(UpstreamError::NoHealthy))
}

async fn dial_one(
    params: &DialParams,
    addr: SocketAddr,
    tls: Option<&(ImplicitTls<'_>, rustls::pki_types::ServerName<'static>)>,
) -> Result<ServerLegConn, UpstreamError> {
    let stream = match timeout(params.connect, connect_from(addr, params.source)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr }),
    };
    let local = stream.local_addr().map_err(UpstreamError::Local)?;
    let mut stream = stream;
    if let Some(header) = &params.proxy_header {
        // Before TLS and before the greeting: the server reads it first.
        timeout(
            params.connect,
            tokio::io::AsyncWriteExt::write_all(&mut stream, header),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout { addr })?
        .map_err(|source| UpstreamError::Connect { addr, source })?;
    }
    let boxed: BoxedStream = match tls {
        None => Box::new(stream),
        Some((t, name)) => Box::new(
            t.connector
                .connect(name, stream, t.handshake)
                .await
                .map_err(|error| UpstreamError::Tls { addr, error })?,
        ),
    };
    let mut leg = crate::wire::Leg::new(boxed, params.max_line);
    let banner = timeout(params.banner, read_banner(params, addr, &mut leg.reader))
        .await
        .map_err(|_| UpstreamError::BannerTimeout { addr })??;
    Ok(ServerLegConn {
        host: addr.ip().to_string(),
        tls: tls.is_some(),
        leg,
        peer: addr,
        local,
        banner,
        _lease: None,
    })
}

async fn read_banner(
    params: &DialParams,
    addr: SocketAddr,
    reader: &mut crate::wire::LineReader,
) -> Result<Vec<Reply>, UpstreamError> {
    let mut assembler = ReplyAssembler::new(params.max_reply_lines, params.max_reply_bytes);
    let mut banner = Vec::new();
    loop {
        let reply = next_reply(reader, &mut assembler)
            .await
            .map_err(|source| UpstreamError::InvalidGreeting { addr, source })?;
        match reply.code {
            120 if banner.len() < MAX_DELAY_REPLIES => banner.push(reply),
            220 => {
                banner.push(reply);
                return Ok(banner);
            }
            code => {
                return Err(UpstreamError::Greeting {
                    addr,
                    code,
                    text: String::from_utf8_lossy(reply.text()).into_owned(),
                })
            }
        }
    }
}
