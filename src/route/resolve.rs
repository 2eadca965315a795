//! Name resolution for upstream host names and `user@host` destinations: one resolver per
//! process, asynchronous (hickory), bounded by `timeouts.connect`, with hickory's cache
//! keeping answers for their TTL.
//!
//! Order of look-up, most specific first:
//! 1. An IP literal is the address; it never goes near DNS.
//! 2. `localhost` and `*.localhost` are loopback (RFC 6761 §6.3): 127.0.0.1, then ::1.
//! 3. The hosts file (`/etc/hosts`, read once at start): a name listed there resolves to
//!    its entries alone, IPv4 first, as the C library does with `hosts: files dns`.
//! 4. DNS per `/etc/resolv.conf`: A and AAAA in parallel, IPv4 first.
//!
//! Without a readable `/etc/resolv.conf` the resolver has no name servers: literals,
//! `localhost` and hosts-file names still resolve, anything else fails fast.

use super::UpstreamError;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The shared resolver; cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Resolver {
    /// None when the configuration could not be used: names outside the hosts file fail.
    dns: Option<TokioResolver>,
    hosts: Arc<Hosts>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`), read off the async
    /// workers. A file that cannot be read is logged and replaced by an empty default.
    /// `limit` is the bound callers put on a look-up (`timeouts.connect`): each DNS query
    /// gives up well within it, so that an A answer is not lost waiting for an AAAA query
    /// a broken server never answers.
    pub async fn system(limit: Duration) -> Resolver {
        match tokio::task::spawn_blocking(move || Resolver::from_system_blocking(limit)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the resolver configuration; DNS disabled");
                Resolver::new(
                    ResolverConfig::default(),
                    ResolverOpts::default(),
                    Hosts::default(),
                )
            }
        }
    }

    /// Reads the system configuration; blocks on file reads.
    pub fn from_system_blocking(limit: Duration) -> Resolver {
        let (config, mut opts) = match hickory_resolver::system_conf::read_system_conf() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /etc/resolv.conf: only IP literals, localhost and /etc/hosts names will resolve");
                (ResolverConfig::default(), ResolverOpts::default())
            }
        };
        opts.attempts = opts.attempts.clamp(1, 2);
        opts.timeout = opts.timeout.min(limit / 3).max(Duration::from_millis(100));
        let hosts = match Hosts::from_system() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the hosts file");
                Hosts::default()
            }
        };
        Resolver::new(config, opts, hosts)
    }

    /// A resolver with no name servers and the given hosts-file text: for tests, and for
    /// hosts that must not send DNS queries.
    pub fn from_hosts_text(text: &str) -> std::io::Result<Resolver> {
        let mut hosts = Hosts::default();
        hosts.read_hosts_conf(text.as_bytes())?;
        Ok(Resolver::new(
            ResolverConfig::default(),
            ResolverOpts::default(),
            hosts,
        ))
    }

    fn new(config: ResolverConfig, mut opts: ResolverOpts, hosts: Hosts) -> Resolver {
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // The hosts file is consulted here, before DNS, for both address families at once.
        opts.use_hosts_file = ResolveHosts::Never;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let dns = match builder.build() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "resolver configuration unusable; DNS disabled");
                None
            }
        };
        Resolver {
            dns,
            hosts: Arc::new(hosts),
        }
    }

    /// Every address of `host`, in the order to try them, with `port`; within `limit`.
    pub async fn lookup(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, UpstreamError> {
        let with_port = |ips: Vec<IpAddr>| -> Vec<SocketAddr> {
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        };
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if is_localhost(host) {
            return Ok(with_port(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]));
        }
        let name = Name::from_ascii(host).map_err(|e| UpstreamError::Resolve {
            host: host.to_string(),
            source: e.into(),
        })?;
        if let Some(ips) = self.hosts_file(&name) {
            return Ok(with_port(ips));
        }
        let Some(dns) = &self.dns else {
            return Err(UpstreamError::Resolve {
                host: host.to_string(),
                source: "no DNS resolver configured".into(),
            });
        };
        let answer = tokio::time::timeout(limit, dns.lookup_ip(name))
            .await
            .map_err(|_| UpstreamError::ResolveTimeout {
                host: host.to_string(),
            })?
            .map_err(|source| UpstreamError::Resolve {
                host: host.to_string(),
                source,
            })?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in answer.iter() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            return Err(UpstreamError::NoAddress {
                host: host.to_string(),
            });
        }
        Ok(with_port(ips))
    }

    fn hosts_file(&self, name: &Name) -> Option<Vec<IpAddr>> {
        let mut ips = Vec::new();
        for rt in [RecordType::A, RecordType::AAAA] {
            if let Some(found) = self
                .hosts
                .lookup_static_host(&Query::query(name.clone(), rt))
            {
                ips.extend(found.answers().iter().filter_map(|r| r.data.ip_addr()));
            }
        }
        (!ips.is_empty()).then_some(ips)
    }
}

/// `192.0.2.1`, `2001:db8::1` or `[2001:db8::1]`.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn is_localhost(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    fn resolver() -> Resolver {
        Resolver::from_hosts_text(
            "127.0.0.7 multi.test\n::1 multi.test\n127.0.0.8 multi.test\n127.0.0.9 one.test alias.test\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    }

    #[tokio::test]
    async fn ip_literals_bypass_dns() {
        // No name servers and no hosts entries: only the literal path can answer.
        let r = Resolver::from_hosts_text("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.lookup("192.0.2.1", 21, LIMIT).await.ok(),
            Some(addrs(&["192.0.2.1:21"]))
        );
        assert_eq!(
            r.lookup("2001:db8::1", 2121, LIMIT).await.ok(),
            Some(addrs(&["[2001:db8::1]:2121"]))
        );
        assert_eq!(
            r.lookup("[2001:db8::1]", 21, LIMIT).await.ok(),
            Some(addrs(&["[2001:db8::1]:21"]))
        );
    }

    #[tokio::test]
    async fn localhost_is_loopback_both_families() {
        let r = Resolver::from_hosts_text("").unwrap_or_else(|e| panic!("{e}"));
        for name in ["localhost", "LocalHost.", "ftp.localhost"] {
            assert_eq!(
                r.lookup(name, 21, LIMIT).await.ok(),
                Some(addrs(&["127.0.0.1:21", "[::1]:21"])),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn hosts_names_resolve_to_every_entry_ipv4_first() {
        let r = resolver();
        assert_eq!(
            r.lookup("multi.test", 2121, LIMIT).await.ok(),
            Some(addrs(&["127.0.0.7:2121", "127.0.0.8:2121", "[::1]:2121"]))
        );
        assert_eq!(
            r.lookup("alias.test", 21, LIMIT).await.ok(),
            Some(addrs(&["127.0.0.9:21"]))
        );
    }

    #[tokio::test]
    async fn unknown_name_without_dns_fails_fast() {
        let r = resolver();
        let started = std::time::Instant::now();
        let e = r.lookup("nowhere.test", 21, LIMIT).await;
        assert!(
            matches!(
                &e,
                Err(UpstreamError::Resolve { host, .. } | UpstreamError::ResolveTimeout { host }
                    | UpstreamError::NoAddress { host })
                    if host == "nowhere.test"
            ),
            "{e:?}"
        );
        assert!(started.elapsed() <= LIMIT + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn the_system_resolver_builds_and_knows_localhost() {
        let r = Resolver::system(LIMIT).await;
        assert_eq!(
            r.lookup("localhost", 21, LIMIT).await.ok().map(|a| a[0]),
            Some(SocketAddr::from(([127, 0, 0, 1], 21)))
        );
    }
}
