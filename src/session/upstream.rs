//! Opening the server leg: pick the destinations per route, connect (from the configured
//! source address), and read the server's greeting. A destination that refuses, times
//! out or greets with anything but 220 is skipped for the next candidate, so a dead
//! upstream costs a client one connect timeout at most, not a failed session.

use super::{SessionContext, SessionEnd};
use crate::proto::line::{Frame, LineCodec};
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::route::{UpstreamLease, UpstreamState};
use crate::stream::BoxedStream;
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::FramedRead;

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

/// Tries each target in turn; the error is the reason for the last failure.
pub async fn open(ctx: &SessionContext, targets: &[Target]) -> Result<ServerLegConn, String> {
    if targets.is_empty() {
        return Err("no healthy upstream".into());
    }
    let mut last = String::new();
    for target in targets {
        match open_one(ctx, target).await {
            Ok(conn) => return Ok(conn),
            Err(reason) => {
                tracing::warn!(server = %target, %reason, "upstream failed");
                if let Target::Upstream(u) = target {
                    ctx.router.report_failure(u);
                }
                last = format!("{target}: {reason}");
            }
        }
    }
    Err(last)
}

async fn open_one(ctx: &SessionContext, target: &Target) -> Result<ServerLegConn, String> {
    let t = &ctx.config.timeouts;
    let source = ctx.router.config.source;
    let addrs: Vec<SocketAddr> = match target {
        Target::Addr(a) => vec![*a],
        Target::Upstream(u) => {
            let name = (u.upstream.host.as_str(), u.upstream.port);
            timeout(t.connect, tokio::net::lookup_host(name))
                .await
                .map_err(|_| "name resolution timed out".to_string())?
                .map_err(|e| format!("cannot resolve: {e}"))?
                .collect()
        }
    };
    let mut last = "no address".to_string();
    for addr in addrs {
        let stream = match timeout(t.connect, connect_from(addr, source)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = format!("cannot connect to {addr}: {e}");
                continue;
            }
            Err(_) => {
                last = format!("connecting to {addr} timed out");
                continue;
            }
        };
        let local = stream.local_addr().map_err(|e| e.to_string())?;
        let boxed: BoxedStream = Box::new(stream);
        let (rd, writer) = tokio::io::split(boxed);
        let mut reader = FramedRead::new(rd, LineCodec::new(ctx.config.limits.max_line));
        let banner = timeout(t.banner, read_banner(ctx, &mut reader))
            .await
            .map_err(|_| format!("no greeting from {addr} in time"))??;
        let lease = match target {
            Target::Upstream(u) => Some(UpstreamLease::new(Arc::clone(u))),
            Target::Addr(_) => None,
        };
        return Ok(ServerLegConn {
            reader,
            writer,
            peer: addr,
            local,
            banner,
            _lease: lease,
        });
    }
    Err(last)
}

async fn read_banner(
    ctx: &SessionContext,
    reader: &mut FramedRead<ReadHalf<BoxedStream>, LineCodec>,
) -> Result<Vec<Reply>, String> {
    let limits = &ctx.config.limits;
    let mut assembler = ReplyAssembler::new(limits.max_reply_lines, limits.max_reply_bytes);
    let mut banner = Vec::new();
    loop {
        let reply = next_reply(reader, &mut assembler)
            .await
            .map_err(|e| format!("invalid greeting: {e}"))?;
        match reply.code {
            120 if banner.len() < 4 => banner.push(reply),
            220 => {
                banner.push(reply);
                return Ok(banner);
            }
            code => {
                return Err(format!(
                    "greeting {code}: {}",
                    String::from_utf8_lossy(reply.text())
                ))
            }
        }
    }
}

/// The next complete reply (1xx included) from a server leg read outside the session:
/// the greeting, and health probes.
pub(crate) async fn next_reply<R: AsyncRead + Unpin>(
    reader: &mut FramedRead<R, LineCodec>,
    assembler: &mut ReplyAssembler,
) -> Result<Reply, String> {
    loop {
        let line = match reader.next().await {
            Some(Ok(Frame::Line(line))) => line,
            Some(Ok(Frame::Rejected(e))) => return Err(e.to_string()),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        };
        if let Some(reply) = assembler.push(line).map_err(|e| e.to_string())? {
            return Ok(reply);
        }
    }
}

impl From<String> for SessionEnd {
    fn from(reason: String) -> Self {
        SessionEnd::Upstream(reason)
    }
}
