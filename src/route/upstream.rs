//! Opening the server leg: connect (from the configured source address) to each target in
//! turn, and read the server's greeting. Every resolved address of a target is tried, and
//! a destination that refuses, times out or greets with anything but 220 (or with
//! something that is not a reply at all) is skipped for the next address, then the next
//! target; so a dead upstream costs a client one connect timeout at most, not a failed
//! session.

use super::{Resolver, Router, UpstreamError, UpstreamLease, UpstreamState};
use crate::config::{Limits, RouteConfig, Timeouts};
use crate::proto::line::LineCodec;
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::stream::BoxedStream;
use crate::wire::next_reply;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::FramedRead;

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
#[derive(Debug, Clone, Copy)]
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
        }
    }
}

pub struct ServerLegConn {
    pub reader: FramedRead<ReadHalf<BoxedStream>, LineCodec>,
    pub writer: WriteHalf<BoxedStream>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The greeting: any 120s, then the 220.
    pub banner: Vec<Reply>,
    pub _lease: Option<UpstreamLease>,
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
) -> Result<ServerLegConn, UpstreamError> {
    let mut last = UpstreamError::NoHealthy;
    for target in targets {
        match open_one(&router.resolver, params, target).await {
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
) -> Result<ServerLegConn, UpstreamError> {
    let addrs = match target {
        Target::Addr(a) => vec![*a],
        Target::Upstream(u) => {
            resolver
                .lookup(&u.upstream.host, u.upstream.port, params.connect)
                .await?
        }
    };
    let mut conn = dial(params, &addrs).await?;
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
) -> Result<ServerLegConn, UpstreamError> {
    let mut last = None;
    for &addr in addrs {
        match dial_one(params, addr).await {
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

async fn dial_one(params: &DialParams, addr: SocketAddr) -> Result<ServerLegConn, UpstreamError> {
    let stream = match timeout(params.connect, connect_from(addr, params.source)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr }),
    };
    let local = stream.local_addr().map_err(UpstreamError::Local)?;
    let boxed: BoxedStream = Box::new(stream);
    let (rd, writer) = tokio::io::split(boxed);
    let mut reader = FramedRead::new(rd, LineCodec::new(params.max_line));
    let banner = timeout(params.banner, read_banner(params, addr, &mut reader))
        .await
        .map_err(|_| UpstreamError::BannerTimeout { addr })??;
    Ok(ServerLegConn {
        reader,
        writer,
        peer: addr,
        local,
        banner,
        _lease: None,
    })
}

async fn read_banner(
    params: &DialParams,
    addr: SocketAddr,
    reader: &mut FramedRead<ReadHalf<BoxedStream>, LineCodec>,
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
