//! `data.path: kernel`: plain data connections forwarded by the kernel, as OpenBSD's
//! ftp-proxy(8) does with pf. For one transfer ftpgate installs, in its own nftables table,
//! a DNAT + SNAT mapping for exactly the expected connection (from the session's peer, to
//! the port it was told, onward to the other side's data address) and counters for it;
//! conntrack then carries the connection and no byte passes through user space.
//!
//! The session core is unchanged: it still plans both legs (bounce and peer checks happen
//! before anything is installed) and the transfer task decides here, per transfer,
//! whether the kernel can carry it. Where it cannot (TLS, rate limits, no CAP_NET_ADMIN,
//! forwarding off, mixed families, loopback peers, mixed modes) the relay runs instead and
//! the reason is logged once per process.

mod nft;

pub use nft::{Counts, Flow, NftError, TABLE};

use crate::data::{ClientLeg, DataError, ServerLeg, Side};
use crate::proto::hostport::canonical_ip;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// Why a transfer runs through the relay although `data.path` is `kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// ftpgate could not set up its nftables table (usually: no CAP_NET_ADMIN).
    Unavailable,
    /// A data leg is TLS: the kernel cannot see into it, ftpgate must terminate it.
    Tls,
    /// A rate limit applies: only the relay can pace bytes.
    RateLimit,
    /// `net.ipv4.ip_forward` (or IPv6 forwarding) is off.
    ForwardingOff,
    /// The two sides use different address families (NAT cannot translate IPv4↔IPv6).
    MixedFamilies,
    /// A peer is on loopback: loopback traffic is never forwarded.
    Loopback,
    /// Passive on one side and active on the other: two inbound (or two outbound)
    /// connections cannot be joined by NAT.
    MixedModes,
    /// Port 20 as source, TPROXY, or PROXY headers on data connections: the relay's.
    Special,
    /// Installing the mapping failed. (Keep last: `log` sizes its flags by it.)
    Install,
}

impl Fallback {
    fn text(self) -> &'static str {
        match self {
            Fallback::Unavailable => "the nftables table could not be set up (CAP_NET_ADMIN?)",
            Fallback::Tls => "a data leg is TLS",
            Fallback::RateLimit => "a rate limit applies",
            Fallback::ForwardingOff => "IP forwarding is off",
            Fallback::MixedFamilies => "client and server data addresses differ in family",
            Fallback::Loopback => "a data peer is on loopback",
            Fallback::MixedModes => "client and server data modes differ (passive/active)",
            Fallback::Special => "port 20, TPROXY or PROXY headers on the data connection",
            Fallback::Install => "installing the mapping failed",
        }
    }

    /// Logs the fallback at info the first time this reason occurs, at debug after.
    pub fn log(self) {
        // One flag per variant, indexed by discriminant (the last variant is Install).
        static SEEN: [AtomicBool; Fallback::Install as usize + 1] =
            [const { AtomicBool::new(false) }; Fallback::Install as usize + 1];
        if !SEEN[self as usize].swap(true, Ordering::Relaxed) {
            tracing::info!(
                reason = self.text(),
                "data.path kernel: this transfer (and later ones for the same reason) uses the relay"
            );
        } else {
            tracing::debug!(reason = self.text(), "data.path kernel: relay fallback");
        }
    }
}

/// Sets up ftpgate's table once per process: flushes what an earlier (killed) ftpgate
/// left and creates the chains. Called at start when `data.path` is `kernel`, and by the
/// first transfer after a reload switched to it.
pub fn init() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| match nft::reset() {
        Ok(()) => {
            tracing::info!(table = TABLE, "data.path kernel: nftables table ready");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "data.path kernel: cannot set up the nftables table; transfers use the relay");
            false
        }
    })
}

/// Removes ftpgate's table (at exit).
pub fn shutdown() {
    nft::remove_table();
}

/// An installed mapping; dropping it removes every rule it has, so no mapping outlives
/// its transfer (or its passive reply, when the transfer never comes).
#[derive(Debug)]
pub struct Mapping {
    id: u64,
    flow: Flow,
}

impl Mapping {
    fn install(flow: Flow) -> Result<Mapping, NftError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        nft::install(id, &flow)?;
        tracing::debug!(
            setup_us = started.elapsed().as_micros() as u64,
            ?flow,
            "data.path kernel: mapping installed"
        );
        Ok(Mapping { id, flow })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Err(e) = nft::remove(self.id) {
            tracing::warn!(error = %e, "data.path kernel: removing a mapping failed");
        }
    }
}

/// Checks what both legs' addresses allow: one family, no loopback, forwarding on, the
/// table ready. Returns the canonical flow.
fn flow(
    peer: IpAddr,
    local: SocketAddr,
    target: SocketAddr,
    source: IpAddr,
) -> Result<Flow, Fallback> {
    let peer = canonical_ip(peer);
    let target = SocketAddr::new(canonical_ip(target.ip()), target.port());
    let source = canonical_ip(source);
    if peer.is_ipv4() != target.is_ipv4() || source.is_ipv4() != target.is_ipv4() {
        return Err(Fallback::MixedFamilies);
    }
    if peer.is_loopback() || target.ip().is_loopback() || source.is_loopback() {
        return Err(Fallback::Loopback);
    }
    if !forwarding(peer) {
        return Err(Fallback::ForwardingOff);
    }
    if !init() {
        return Err(Fallback::Unavailable);
    }
    let local_ip = canonical_ip(local.ip());
    Ok(Flow {
        peer,
        local_ip: (!local_ip.is_unspecified()).then_some(local_ip),
        local_port: local.port(),
        target,
        source,
    })
}

/// Installs the mapping for a passive client before it is told where to connect (many
/// clients connect before they send the transfer command). `None`: the transfer will
/// see whether it falls back, and log why.
pub fn premap(
    peer: IpAddr,
    local: SocketAddr,
    target: SocketAddr,
    source: IpAddr,
) -> Option<Mapping> {
    let flow = flow(peer, local, target, source).ok()?;
    Mapping::install(flow)
        .map_err(|e| tracing::debug!(error = %e, "data.path kernel: premap failed"))
        .ok()
}

/// One transfer on the kernel path: its mapping, and who connects and who sends.
#[derive(Debug)]
pub struct Kernel {
    mapping: Mapping,
    /// Who connects (and so who times out when nobody comes).
    peer_side: Side,
    /// Who sends the bytes.
    sender: Side,
}

/// What the transfer's legs and settings are, for [`prepare`].
pub struct Legs<'a> {
    pub client: &'a ClientLeg,
    pub server: &'a ServerLeg,
    pub upload: bool,
    pub tls: bool,
    pub rate_limited: bool,
    pub proxy_headers: bool,
}

/// Decides, when the transfer starts, whether the kernel carries it. `Ok(None)`: the
/// relay does (the reason is logged). `premapped` is the passive client's mapping, if
/// one was installed at PASV time; used when it still fits. An error: the premapped
/// mapping already carried the client's connection to the server, but the transfer now
/// needs the relay (PROT P or a rate limit came in between), so it cannot run.
pub fn prepare(legs: Legs<'_>, premapped: Option<Mapping>) -> Result<Option<Kernel>, DataError> {
    match decide(&legs) {
        Ok((flow, peer_side)) => {
            let sender = if legs.upload {
                Side::Client
            } else {
                Side::Server
            };
            let mapping = match premapped {
                Some(m) if m.flow == flow => {
                    tracing::debug!("data.path kernel: using the mapping made at PASV");
                    m
                }
                other => {
                    if let Some(m) = other {
                        tracing::debug!(premapped = ?m.flow, now = ?flow, "data.path kernel: PASV mapping does not fit");
                    }
                    match Mapping::install(flow) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::debug!(error = %e, "data.path kernel: install failed");
                            Fallback::Install.log();
                            return Ok(None);
                        }
                    }
                }
            };
            Ok(Some(Kernel {
                mapping,
                peer_side,
                sender,
            }))
        }
        Err(why) => {
            if let Some(m) = premapped {
                if nft::mapped(m.id).unwrap_or(0) > 0 {
                    return Err(DataError::Io {
                        side: Side::Client,
                        source: std::io::Error::other(
                            "the data connection went to the server before the transfer needed the relay",
                        ),
                    });
                }
            }
            why.log();
            Ok(None)
        }
    }
}

fn decide(legs: &Legs<'_>) -> Result<(Flow, Side), Fallback> {
    if legs.tls {
        return Err(Fallback::Tls);
    }
    if legs.rate_limited {
        return Err(Fallback::RateLimit);
    }
    match (legs.client, legs.server) {
        (ClientLeg::Accept { listener, expect }, ServerLeg::Connect { target, source }) => {
            if legs.proxy_headers {
                return Err(Fallback::Special);
            }
            Ok((
                flow(*expect, listener.addr, *target, *source)?,
                Side::Client,
            ))
        }
        (
            ClientLeg::Connect {
                target,
                source,
                source_port,
                transparent,
            },
            ServerLeg::Accept { listener, expect },
        ) => {
            if source_port.is_some() || *transparent {
                return Err(Fallback::Special);
            }
            Ok((
                flow(*expect, listener.addr, *target, *source)?,
                Side::Server,
            ))
        }
        _ => Err(Fallback::MixedModes),
    }
}

fn forwarding(ip: IpAddr) -> bool {
    let path = match ip {
        IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_forward",
        IpAddr::V6(_) => "/proc/sys/net/ipv6/conf/all/forwarding",
    };
    std::fs::read_to_string(path).is_ok_and(|s| s.trim() == "1")
}

/// IP + TCP header bytes per packet of the data direction, timestamps option included
/// (Linux's default). The byte count the counters give is IP bytes, so the payload is
/// estimated as `bytes - packets * header`: exact when both ends use timestamps, off by
/// 12 bytes per segment when one does not.
fn header_bytes(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(_) => 20 + 32,
        IpAddr::V6(_) => 40 + 32,
    }
}

/// How often the counters are read while waiting for the connection, and while it runs.
/// nft counters have no change events (conntrack's netlink events would, but no
/// maintained crate here speaks them), so the transfer task polls: one small netlink dump
/// of one chain per poll.
const POLL_CONNECT: Duration = Duration::from_millis(5);
const POLL_RUNNING: Duration = Duration::from_millis(25);

/// Runs one transfer on the kernel path; returns the payload bytes moved. `listener`
/// is the one whose port the peer was told: it keeps the port reserved, and what
/// reaches it was not mapped and is reset.
pub async fn forward(
    kernel: Kernel,
    listener: &crate::data::DataListener,
    accept_deadline: Instant,
    stall: Duration,
) -> Result<u64, DataError> {
    tokio::select! {
        r = forward_mapped(&kernel, accept_deadline, stall) => r,
        never = refuse_strays(listener) => match never {},
    }
}

async fn refuse_strays(listener: &crate::data::DataListener) -> std::convert::Infallible {
    loop {
        match listener.listener.accept().await {
            Ok((stream, peer)) => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                tracing::info!(%peer, "data.path kernel: reset a data connection the mapping did not carry");
            }
            // EMFILE and the like: back off rather than spin; the transfer goes on.
            Err(_) => tokio::time::sleep(POLL_RUNNING).await,
        }
    }
}

async fn forward_mapped(
    k: &Kernel,
    accept_deadline: Instant,
    stall: Duration,
) -> Result<u64, DataError> {
    let id = k.mapping.id;
    let nl = |e: NftError| DataError::Io {
        side: k.peer_side,
        source: std::io::Error::other(e),
    };
    // The first connection from the peer is mapped; then any further one is dropped.
    while nft::mapped(id).map_err(nl)? == 0 {
        if Instant::now() >= accept_deadline {
            return Err(DataError::AcceptTimeout { side: k.peer_side });
        }
        tokio::time::sleep(POLL_CONNECT).await;
    }
    nft::block_new(id, &k.mapping.flow).map_err(nl)?;
    tracing::debug!("data.path kernel: connection mapped, further ones blocked");

    let mut last = Counts::default();
    let mut moved_at = Instant::now();
    let counts = loop {
        tokio::time::sleep(POLL_RUNNING).await;
        let now = nft::counts(id).map_err(nl)?;
        tracing::trace!(?now, "data.path kernel: counters");
        if now.resets > 0 {
            return Err(DataError::Io {
                side: k.sender,
                source: std::io::ErrorKind::ConnectionReset.into(),
            });
        }
        if now.ended_peer > 0 && now.ended_target > 0 {
            break now;
        }
        if now.blocked > last.blocked {
            tracing::info!("data.path kernel: dropped a second data connection from the peer");
        }
        if now != last {
            last = now;
            moved_at = Instant::now();
        } else if moved_at.elapsed() >= stall {
            return Err(DataError::Stall { side: k.sender });
        }
    };
    let (packets, bytes) = if k.sender == k.peer_side {
        (counts.peer_packets, counts.peer_bytes)
    } else {
        (counts.target_packets, counts.target_bytes)
    };
    let header = header_bytes(k.mapping.flow.target.ip());
    let payload = bytes.saturating_sub(packets.saturating_mul(header));
    tracing::debug!(bytes = payload, "data.path kernel: transfer forwarded");
    Ok(payload)
}
