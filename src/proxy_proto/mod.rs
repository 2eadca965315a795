//! The PROXY protocol (haproxy's proxy-protocol.txt, v1 and v2): the header a balancer
//! puts before a connection's first byte to name the client it forwards.
//!
//! Inbound, only peers in `listeners[].proxy_protocol.trusted` are read, and they must
//! send one ([`read`]); outbound, `route.proxy_protocol` writes one towards the server
//! ([`encode`]). [`frame`] is the pure framing the reader follows byte for byte, so the
//! connection's own bytes after the header are never touched.

pub mod frame;

pub use frame::{Declared, HeaderError};

use crate::config::ProxyVersion;
use frame::Need;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Reads one header from the start of `stream` by `deadline`, and not a byte more.
pub async fn read<R: AsyncRead + Unpin>(
    stream: &mut R,
    deadline: Instant,
) -> Result<Declared, HeaderError> {
    let mut buf = Vec::with_capacity(frame::V1_MAX);
    loop {
        match frame::need(&buf)? {
            Need::Done => return frame::parse(&buf),
            Need::More(n) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                let got = tokio::time::timeout_at(deadline, stream.read(&mut buf[start..]))
                    .await
                    .map_err(|_| HeaderError::Timeout)?
                    .map_err(|_| HeaderError::Truncated)?;
                if got == 0 {
                    return Err(HeaderError::Truncated);
                }
                buf.truncate(start + got);
            }
        }
    }
}

/// The header naming a proxied connection from `source` to `destination`. Mixed address
/// families (an IPv4 client on an IPv6 listener) are both written as IPv6.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => ppp::v1::Addresses::from((source, destination))
            .to_string()
            .into_bytes(),
        ProxyVersion::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap_or_default(),
    }
}

/// The header of ftpgate's own connections (health probes): v2 LOCAL, v1 UNKNOWN.
pub fn local(version: ProxyVersion) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyVersion::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap_or_default(),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon =
        |s: SocketAddr| SocketAddr::new(crate::proto::hostport::canonical_ip(s.ip()), s.port());
    let (a, b) = (canon(a), canon(b));
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let six = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (six(a), six(b))
}

/// Whether `peer` is a trusted balancer of `trusted`.
pub fn trusted(trusted: &[ipnet::IpNet], peer: IpAddr) -> bool {
    let peer = crate::proto::hostport::canonical_ip(peer);
    trusted.iter().any(|n| n.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            let h = encode(v, src, dst);
            let (got, len) = frame::tests_drive(&h);
            assert_eq!(len, h.len());
            let Ok(Declared::Proxy {
                source,
                destination,
            }) = got
            else {
                panic!("{got:?}")
            };
            assert_eq!(crate::proto::hostport::canonical_ip(source.ip()), src.ip());
            assert_eq!(destination, dst);
            assert!(frame::tests_drive(&local(v)).0.is_ok());
        }
        assert_eq!(
            frame::tests_drive(&local(ProxyVersion::V2)).0,
            Ok(Declared::Local)
        );
    }
}
