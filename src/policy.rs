//! Access policy as pure functions over `ipnet`: which clients may connect, which servers a
//! forward or transparent route may reach. IPv4-mapped IPv6 addresses are canonicalised
//! first, so `::ffff:192.0.2.1` is judged as `192.0.2.1`.

use crate::config::{NetPolicy, ServerPolicy, ServerRule};
use crate::proto::hostport::canonical_ip;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// May this client connect? Deny wins; no allow list allows everyone.
pub fn client_allowed(policy: &NetPolicy, client: IpAddr) -> bool {
    let ip = canonical_ip(client);
    if policy.deny.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    match &policy.allow {
        None => true,
        Some(allow) => allow.iter().any(|n| n.contains(&ip)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{0} is denied by acl.servers.deny ({1})")]
    DenyRule(SocketAddr, String),
    #[error("{0} is not in acl.servers.allow")]
    NotAllowed(SocketAddr),
    #[error("{0} is a loopback or ftpgate's own address, which must be listed explicitly")]
    Special(SocketAddr),
}

fn rule_matches(rule: &ServerRule, dest: SocketAddr) -> bool {
    rule.net.contains(&dest.ip())
        && rule
            .ports
            .is_none_or(|(a, b)| (a..=b).contains(&dest.port()))
}

/// A rule "lists explicitly" a special address when its whole network is special too: a
/// loopback net for loopback, a host route for one of our own addresses. `0.0.0.0/0` or a
/// LAN prefix that merely contains them does not count.
fn rule_names_special(rule: &ServerRule, ip: IpAddr, own: &[IpAddr]) -> bool {
    let net_is_loopback = match rule.net {
        IpNet::V4(n) => n.network().is_loopback() && n.prefix_len() >= 8,
        IpNet::V6(n) => n.network().is_loopback() && n.prefix_len() == 128,
    };
    let host_route = rule.net.prefix_len() == rule.net.max_prefix_len();
    (ip.is_loopback() && net_is_loopback)
        || (own.contains(&ip) && host_route && rule.net.addr() == ip)
}

/// May a forward/transparent route connect to `dest`? Deny wins; no allow list allows
/// nothing; loopback, unspecified and ftpgate's own addresses need an explicit rule.
pub fn server_allowed(
    policy: &ServerPolicy,
    dest: SocketAddr,
    own: &[IpAddr],
) -> Result<(), Denied> {
    let ip = canonical_ip(dest.ip());
    let dest = SocketAddr::new(ip, dest.port());
    if let Some(rule) = policy.deny.iter().find(|r| rule_matches(r, dest)) {
        return Err(Denied::DenyRule(dest, rule.to_string()));
    }
    let allowing: Vec<&ServerRule> = policy
        .allow
        .iter()
        .filter(|r| rule_matches(r, dest))
        .collect();
    if allowing.is_empty() {
        return Err(Denied::NotAllowed(dest));
    }
    let own: Vec<IpAddr> = own.iter().map(|o| canonical_ip(*o)).collect();
    let special = ip.is_loopback() || ip.is_unspecified() || own.contains(&ip);
    if special && !allowing.iter().any(|r| rule_names_special(r, ip, &own)) {
        return Err(Denied::Special(dest));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }
    fn rule(net_s: &str, ports: Option<(u16, u16)>) -> ServerRule {
        ServerRule {
            net: net(net_s),
            ports,
        }
    }

    #[test]
    fn clients() {
        let open = NetPolicy::default();
        assert!(client_allowed(
            &open,
            "192.0.2.1".parse().unwrap_or_else(|_| unreachable!())
        ));
        let p = NetPolicy {
            allow: Some(vec![net("192.0.2.0/24")]),
            deny: vec![net("192.0.2.66/32")],
        };
        for (ip, ok) in [
            ("192.0.2.1", true),
            ("192.0.2.66", false),
            ("198.51.100.1", false),
            ("::ffff:192.0.2.1", true),
        ] {
            assert_eq!(
                client_allowed(&p, ip.parse().unwrap_or_else(|_| unreachable!())),
                ok,
                "{ip}"
            );
        }
    }

    #[test]
    fn servers_as_in_the_contract() {
        let p = ServerPolicy {
            allow: vec![
                rule("198.51.100.0/24", None),
                rule("203.0.113.5/32", Some((21, 21))),
                rule("203.0.113.0/24", Some((2100, 2199))),
            ],
            deny: vec![rule("198.51.100.66/32", None)],
        };
        let own = ["192.0.2.1".parse().unwrap_or_else(|_| unreachable!())];
        assert_eq!(server_allowed(&p, sa("198.51.100.7:21"), &own), Ok(()));
        assert_eq!(server_allowed(&p, sa("198.51.100.7:2121"), &own), Ok(()));
        assert!(matches!(
            server_allowed(&p, sa("198.51.100.66:21"), &own),
            Err(Denied::DenyRule(..))
        ));
        assert_eq!(server_allowed(&p, sa("203.0.113.5:21"), &own), Ok(()));
        assert!(server_allowed(&p, sa("203.0.113.5:22"), &own).is_err());
        assert_eq!(server_allowed(&p, sa("203.0.113.9:2150"), &own), Ok(()));
        assert!(server_allowed(&p, sa("203.0.113.9:2200"), &own).is_err());
        assert!(server_allowed(&p, sa("[::ffff:198.51.100.7]:21"), &own).is_ok());
        assert!(server_allowed(&ServerPolicy::default(), sa("198.51.100.7:21"), &own).is_err());
    }

    #[test]
    fn loopback_and_own_need_explicit_rules() {
        let own = ["192.0.2.1".parse().unwrap_or_else(|_| unreachable!())];
        let wide = ServerPolicy {
            allow: vec![rule("0.0.0.0/0", None), rule("::/0", None)],
            deny: vec![],
        };
        assert!(matches!(
            server_allowed(&wide, sa("127.0.0.1:21"), &own),
            Err(Denied::Special(_))
        ));
        assert!(matches!(
            server_allowed(&wide, sa("[::1]:21"), &own),
            Err(Denied::Special(_))
        ));
        assert!(matches!(
            server_allowed(&wide, sa("192.0.2.1:21"), &own),
            Err(Denied::Special(_))
        ));
        assert!(matches!(
            server_allowed(&wide, sa("0.0.0.0:21"), &own),
            Err(Denied::Special(_))
        ));
        assert_eq!(server_allowed(&wide, sa("198.51.100.7:21"), &own), Ok(()));
        let explicit = ServerPolicy {
            allow: vec![
                rule("127.0.0.0/8", None),
                rule("192.0.2.1/32", Some((21, 21))),
            ],
            deny: vec![],
        };
        assert_eq!(
            server_allowed(&explicit, sa("127.0.0.1:2121"), &own),
            Ok(())
        );
        assert_eq!(server_allowed(&explicit, sa("192.0.2.1:21"), &own), Ok(()));
    }
}
