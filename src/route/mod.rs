//! Where a session goes: a fixed set of upstreams with balancing and health checks, the
//! server a client names with `USER user@host`, or the client's original destination
//! under transparent interception. Destination policy (`acl.servers`) applies to the last
//! two; a fixed route's upstreams are the operator's own choice.
//!
//! Below the session: [`upstream`] opens a server leg (resolve, connect from the source
//! address, read the greeting, fail over), [`Resolver`] resolves names for it, and every
//! failure is a typed [`UpstreamError`] with a client-safe text.

mod balance;
mod error;
mod health;
mod resolve;
mod transparent;
pub mod upstream;
mod user_at_host;

pub use balance::UpstreamLease;
pub use error::{HealthError, Side, UpstreamError};
pub use health::spawn_health_checks;
pub use resolve::Resolver;
pub use transparent::original_destination;
pub use upstream::{DialParams, ServerLegConn, Target};
pub use user_at_host::{parse_user_at_host, resolve_allowed, UserAtHost};

use crate::config::{Balance, ListenerConfig, RouteConfig, Upstream};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// One upstream of a fixed route and what ftpgate knows about it.
#[derive(Debug)]
pub struct UpstreamState {
    pub upstream: Upstream,
    healthy: AtomicBool,
    active: AtomicUsize,
    fails: AtomicU32,
    oks: AtomicU32,
    /// `ftpgate_upstream_up{listener, upstream}`, kept equal to `healthy`.
    up: prometheus_client::metrics::gauge::Gauge,
}

impl UpstreamState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.up.set(i64::from(healthy));
    }
}

/// The routing state of one listener.
#[derive(Debug)]
pub struct Router {
    pub config: RouteConfig,
    pub upstreams: Vec<Arc<UpstreamState>>,
    /// The process-wide resolver (fixed-route host names and `user@host` destinations).
    pub resolver: Resolver,
    next: AtomicUsize,
}

impl Router {
    /// A fresh routing state: every upstream starts healthy (its health checks, if any,
    /// eject it within `fall` intervals), and its `ftpgate_upstream_up` series says so.
    pub fn new(
        listener: &ListenerConfig,
        resolver: Resolver,
        families: &crate::metrics::Families,
    ) -> Arc<Router> {
        Arc::new(Router {
            config: listener.route.clone(),
            upstreams: listener
                .route
                .upstreams
                .iter()
                .map(|u| {
                    let up = families
                        .upstream_up
                        .get_or_create_owned(&upstream_labels(&listener.name, u));
                    up.set(1);
                    Arc::new(UpstreamState {
                        upstream: u.clone(),
                        healthy: AtomicBool::new(true),
                        active: AtomicUsize::new(0),
                        fails: AtomicU32::new(0),
                        oks: AtomicU32::new(0),
                        up,
                    })
                })
                .collect(),
            resolver,
            next: AtomicUsize::new(0),
        })
    }

    /// The healthy upstreams in the order to try them for this client.
    pub fn candidates(&self, client: IpAddr) -> Vec<Arc<UpstreamState>> {
        let healthy: Vec<(usize, &Arc<UpstreamState>)> = self
            .upstreams
            .iter()
            .enumerate()
            .filter(|(_, u)| u.is_healthy())
            .collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = match self.config.balance {
            Balance::RoundRobin => balance::round_robin(healthy.len(), start),
            Balance::LeastConn => {
                let active: Vec<usize> = healthy.iter().map(|(_, u)| u.active()).collect();
                balance::least_conn(&active, start)
            }
            Balance::ClientHash => {
                let ids: Vec<usize> = healthy.iter().map(|(i, _)| *i).collect();
                balance::client_hash(&ids, client)
            }
        };
        order
            .into_iter()
            .filter_map(|i| healthy.get(i).map(|(_, u)| Arc::clone(u)))
            .collect()
    }

    /// Carries what `previous` knew about the upstreams both have (same host and port)
    /// over to this router, so a reload neither re-admits an ejected upstream nor forgets
    /// a streak of failures.
    pub fn inherit_health(&self, previous: &Router) {
        if self.config.health.is_none() {
            return;
        }
        for u in &self.upstreams {
            if let Some(old) = previous.upstreams.iter().find(|o| o.upstream == u.upstream) {
                u.fails
                    .store(old.fails.load(Ordering::Relaxed), Ordering::Relaxed);
                u.oks
                    .store(old.oks.load(Ordering::Relaxed), Ordering::Relaxed);
                u.set_healthy(old.is_healthy());
            }
        }
    }

    /// At least one upstream is healthy (always true of routes without upstreams).
    pub fn has_healthy_upstream(&self) -> bool {
        self.upstreams.is_empty() || self.upstreams.iter().any(|u| u.is_healthy())
    }

    /// A session could not reach `u` (passive health): counts towards ejection when
    /// health checks are configured.
    pub fn report_failure(&self, u: &UpstreamState) {
        if let Some(h) = &self.config.health {
            health::record(u, false, h.fall, h.rise);
        }
    }
}

/// The labels of one upstream's `ftpgate_upstream_up` series.
pub fn upstream_labels(listener: &str, u: &Upstream) -> crate::metrics::families::UpstreamLabels {
    crate::metrics::families::UpstreamLabels {
        listener: listener.to_string(),
        upstream: u.to_string(),
    }
}
