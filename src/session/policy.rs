//! The session's address decisions as pure functions: what to advertise to a client, whether
//! a client's PORT/EPRT target is acceptable, and where to connect after a server's
//! passive reply. No sockets here, so every rule has a table test.

use crate::config::{AdvertiseAddr, AdvertiseRule, ServerPasvAddress};
use crate::proto::hostport::canonical_ip;
use std::net::{IpAddr, SocketAddr};

/// Lowest port a data connection may target (RFC 2577: no bounce to privileged services).
pub const MIN_DATA_PORT: u16 = 1024;

/// The address to put in a 227/229 for a client: the first rule whose net contains the
/// client wins; `auto` (or no matching rule) means the local address the client reached.
pub fn advertised_ip(rules: &[AdvertiseRule], client: IpAddr, local: IpAddr) -> IpAddr {
    let client = canonical_ip(client);
    let local = canonical_ip(local);
    match rules.iter().find(|r| r.clients.contains(&client)) {
        Some(AdvertiseRule {
            address: AdvertiseAddr::Ip(ip),
            ..
        }) => canonical_ip(*ip),
        _ => local,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("address {0} is not the address of the control connection")]
    ForeignAddress(IpAddr),
    #[error("port {0} is below {MIN_DATA_PORT}")]
    PrivilegedPort(u16),
    #[error("address {0} is not allowed as a data target")]
    ForbiddenAddress(IpAddr),
}

/// An active-mode target named by the client must be the client itself, on an
/// unprivileged port (the FTP bounce, CVE-1999-0017).
pub fn check_client_target(target: SocketAddr, client: IpAddr) -> Result<SocketAddr, TargetError> {
    let ip = canonical_ip(target.ip());
    if ip != canonical_ip(client) {
        return Err(TargetError::ForeignAddress(ip));
    }
    if target.port() < MIN_DATA_PORT {
        return Err(TargetError::PrivilegedPort(target.port()));
    }
    Ok(SocketAddr::new(ip, target.port()))
}

/// Where to connect for a server's passive reply that named `announced` (the port always
/// comes from the reply; the address per `policy`). `server` is the server's control
/// address; `own` lists ftpgate's local addresses of this session.
pub fn server_passive_target(
    policy: ServerPasvAddress,
    announced: SocketAddr,
    server: IpAddr,
    own: &[IpAddr],
) -> Result<SocketAddr, TargetError> {
    let server = canonical_ip(server);
    let announced_ip = canonical_ip(announced.ip());
    if announced.port() < MIN_DATA_PORT {
        return Err(TargetError::PrivilegedPort(announced.port()));
    }
    let ip = match policy {
        ServerPasvAddress::UseControl => server,
        ServerPasvAddress::Check if announced_ip == server => server,
        ServerPasvAddress::Check => return Err(TargetError::ForeignAddress(announced_ip)),
        ServerPasvAddress::Trust => {
            // Loopback and our own addresses are only reachable "by accident" through a
            // hostile reply, unless the server itself lives there.
            let forbidden = announced_ip.is_unspecified()
                || announced_ip.is_multicast()
                || announced_ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
                || ((announced_ip.is_loopback()
                    || own.iter().any(|o| canonical_ip(*o) == announced_ip))
                    && announced_ip != server);
            if forbidden {
                return Err(TargetError::ForbiddenAddress(announced_ip));
            }
            announced_ip
        }
    };
    Ok(SocketAddr::new(ip, announced.port()))
}

/// FEAT lines ftpgate must not advertise because it refuses those commands itself.
pub fn feature_hidden(line: &[u8]) -> bool {
    let word: Vec<u8> = line
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    matches!(
        word.as_slice(),
        b"AUTH" | b"PBSZ" | b"PROT" | b"CCC" | b"LPRT" | b"LPSV" | b"SPSV"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("bad addr {s}"))
    }
    fn rule(net: &str, addr: Option<&str>) -> AdvertiseRule {
        AdvertiseRule {
            clients: net
                .parse::<IpNet>()
                .unwrap_or_else(|_| panic!("bad net {net}")),
            address: addr.map_or(AdvertiseAddr::Auto, |a| AdvertiseAddr::Ip(ip(a))),
        }
    }

    #[test]
    fn advertise_first_matching_rule_wins() {
        let rules = [
            rule("192.0.2.0/24", None),
            rule("0.0.0.0/0", Some("203.0.113.7")),
        ];
        assert_eq!(
            advertised_ip(&rules, ip("192.0.2.9"), ip("192.0.2.1")),
            ip("192.0.2.1")
        );
        assert_eq!(
            advertised_ip(&rules, ip("198.51.100.4"), ip("192.0.2.1")),
            ip("203.0.113.7")
        );
        assert_eq!(
            advertised_ip(&[], ip("198.51.100.4"), ip("::ffff:192.0.2.1")),
            ip("192.0.2.1")
        );
        // An IPv4-mapped client matches IPv4 rules.
        assert_eq!(
            advertised_ip(&rules, ip("::ffff:198.51.100.4"), ip("192.0.2.1")),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn client_target_must_be_the_client() {
        let client = ip("192.0.2.10");
        assert_eq!(
            check_client_target(sa("192.0.2.10:5000"), client),
            Ok(sa("192.0.2.10:5000"))
        );
        assert_eq!(
            check_client_target(sa("198.51.100.66:2000"), client),
            Err(TargetError::ForeignAddress(ip("198.51.100.66")))
        );
        assert_eq!(
            check_client_target(sa("192.0.2.10:25"), client),
            Err(TargetError::PrivilegedPort(25))
        );
        assert_eq!(
            check_client_target(sa("192.0.2.10:1023"), client),
            Err(TargetError::PrivilegedPort(1023))
        );
        assert_eq!(
            check_client_target(sa("[::ffff:192.0.2.10]:5000"), client),
            Ok(sa("192.0.2.10:5000"))
        );
    }

    #[test]
    fn server_passive_policies() {
        let server = ip("198.51.100.5");
        let own = [ip("192.0.2.1")];
        let nat = sa("10.0.0.5:40000");
        assert_eq!(
            server_passive_target(ServerPasvAddress::UseControl, nat, server, &own),
            Ok(sa("198.51.100.5:40000"))
        );
        assert_eq!(
            server_passive_target(ServerPasvAddress::Check, nat, server, &own),
            Err(TargetError::ForeignAddress(ip("10.0.0.5")))
        );
        assert_eq!(
            server_passive_target(ServerPasvAddress::Trust, nat, server, &own),
            Ok(nat)
        );
        for bad in [
            "127.0.0.1:40000",
            "192.0.2.1:40000",
            "0.0.0.0:40000",
            "255.255.255.255:40000",
        ] {
            assert!(
                server_passive_target(ServerPasvAddress::Trust, sa(bad), server, &own).is_err(),
                "{bad}"
            );
        }
        for policy in [
            ServerPasvAddress::UseControl,
            ServerPasvAddress::Check,
            ServerPasvAddress::Trust,
        ] {
            assert_eq!(
                server_passive_target(policy, sa("198.51.100.5:22"), server, &own),
                Err(TargetError::PrivilegedPort(22))
            );
        }
    }

    #[test]
    fn feat_lines_hidden() {
        assert!(feature_hidden(b" AUTH TLS"));
        assert!(feature_hidden(b" pbsz"));
        assert!(!feature_hidden(b" EPSV"));
        assert!(!feature_hidden(b" MDTM"));
    }
}
