//! `USER user@host[:port]` (forward proxy login): parsing as a pure function.
//!
//! The user part may itself contain `@` (e.g. an e-mail address as user name), so the
//! host is what follows the LAST `@`. IPv6 literals need brackets when a port follows:
//! `user@[2001:db8::1]:2121`; a bare `user@2001:db8::1` is accepted without a port.
//!
//! [`resolve_allowed`] turns the host into the addresses `acl.servers` allows, resolving
//! once: the addresses checked are the addresses connected to, so a name cannot be
//! re-pointed between the check and the connect.

use super::{Resolver, UpstreamError};
use crate::config::ServerPolicy;
use crate::policy::server_allowed;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAtHost {
    pub user: Vec<u8>,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserAtHostError {
    #[error("log in as user@host or user@host:port")]
    NoHost,
    #[error("the host name is not valid")]
    BadHost,
    #[error("the port is not valid")]
    BadPort,
}

const MAX_HOST: usize = 253;

/// Resolves `host` once (within `limit`) and keeps the addresses `policy` allows, in
/// resolver order. When none is allowed the error carries the last refusal (for the log).
pub async fn resolve_allowed(
    resolver: &Resolver,
    host: &str,
    port: u16,
    limit: Duration,
    policy: &ServerPolicy,
    own: &[IpAddr],
) -> Result<Vec<SocketAddr>, UpstreamError> {
    let addrs = resolver.lookup(host, port, limit).await?;
    let mut refusal = None;
    let mut allowed = Vec::new();
    for addr in addrs {
        match server_allowed(policy, addr, own) {
            Ok(()) => allowed.push(addr),
            Err(e) => {
                tracing::debug!(server.addr = %addr, reason = %e, "address refused by acl.servers");
                refusal = Some(e);
            }
        }
    }
    match (allowed.is_empty(), refusal) {
        (false, _) => Ok(allowed),
        (true, Some(reason)) => Err(UpstreamError::DestinationRefused {
            host: host.to_string(),
            reason,
        }),
        (true, None) => Err(UpstreamError::NoAddress {
            host: host.to_string(),
        }),
    }
}

pub fn parse_user_at_host(arg: &[u8]) -> Result<UserAtHost, UserAtHostError> {
    let at = arg
        .iter()
        .rposition(|&b| b == b'@')
        .ok_or(UserAtHostError::NoHost)?;
    let (user, rest) = (&arg[..at], &arg[at + 1..]);
    if user.is_empty() || rest.is_empty() {
        return Err(UserAtHostError::NoHost);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| UserAtHostError::BadHost)?;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UserAtHostError::BadHost)?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| UserAtHostError::BadHost)?;
        let port = match after {
            "" => 21,
            p => parse_port(p.strip_prefix(':').ok_or(UserAtHostError::BadPort)?)?,
        };
        (host.to_string(), port)
    } else if rest.parse::<std::net::Ipv6Addr>().is_ok() {
        (rest.to_string(), 21)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (rest, 21),
        };
        if !valid_hostname(host) {
            return Err(UserAtHostError::BadHost);
        }
        (host.to_ascii_lowercase(), port)
    };
    Ok(UserAtHost {
        user: user.to_vec(),
        host,
        port,
    })
}

fn parse_port(p: &str) -> Result<u16, UserAtHostError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UserAtHostError::BadPort);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UserAtHostError::BadPort),
        Ok(n) => Ok(n),
    }
}

/// A DNS name or IPv4 literal: letters, digits, '-', '.', no empty labels.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String, u16) {
        let u = parse_user_at_host(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            String::from_utf8_lossy(&u.user).into_owned(),
            u.host,
            u.port,
        )
    }

    #[test]
    fn forms() {
        assert_eq!(
            ok("anna@ftp.example"),
            ("anna".into(), "ftp.example".into(), 21)
        );
        assert_eq!(
            ok("anna@198.51.100.7:2121"),
            ("anna".into(), "198.51.100.7".into(), 2121)
        );
        assert_eq!(
            ok("anna@[2001:db8::1]:2121"),
            ("anna".into(), "2001:db8::1".into(), 2121)
        );
        assert_eq!(
            ok("anna@[2001:db8::1]"),
            ("anna".into(), "2001:db8::1".into(), 21)
        );
        assert_eq!(
            ok("anna@2001:db8::1"),
            ("anna".into(), "2001:db8::1".into(), 21)
        );
        assert_eq!(
            ok("a@b.example@FTP.Example"),
            ("a@b.example".into(), "ftp.example".into(), 21)
        );
    }

    #[test]
    fn refusals() {
        for (s, e) in [
            ("anna", UserAtHostError::NoHost),
            ("@host", UserAtHostError::NoHost),
            ("anna@", UserAtHostError::NoHost),
            ("anna@host:0", UserAtHostError::BadPort),
            ("anna@host:70000", UserAtHostError::BadPort),
            ("anna@host:21x", UserAtHostError::BadPort),
            ("anna@ho st", UserAtHostError::BadHost),
            ("anna@-host", UserAtHostError::BadHost),
            ("anna@a..b", UserAtHostError::BadHost),
            ("anna@[2001:db8::1", UserAtHostError::BadHost),
            ("anna@[nothex]:21", UserAtHostError::BadHost),
        ] {
            assert_eq!(parse_user_at_host(s.as_bytes()), Err(e), "{s}");
        }
    }
}
