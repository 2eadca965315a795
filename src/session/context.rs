//! What every session of a listener shares: the configuration it started with, the port
//! pools, the router, metrics and the shared rate limit.

use crate::config::{Config, ListenerConfig};
use crate::data::{PortPool, RateLimit};
use crate::metrics::Metrics;
use crate::route::{DialParams, Router};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What every session of a listener shares.
#[derive(Debug)]
pub struct SessionContext {
    pub config: Arc<Config>,
    pub listener: Arc<ListenerConfig>,
    pub passive_pool: Arc<PortPool>,
    pub active_pool: Arc<PortPool>,
    pub metrics: Arc<Metrics>,
    pub router: Arc<Router>,
    /// ftpgate's own addresses: never a destination unless policy names them.
    pub own_addrs: Arc<Vec<IpAddr>>,
    /// `limits.rate_total`, shared by every transfer of every listener.
    pub rate_total: Option<Arc<RateLimit>>,
    /// `log.xferlog`, if configured (one writer for the process).
    pub xferlog: Option<crate::xferlog::XferLog>,
    /// The shutdown's tracker: data tasks are spawned on it, so the drain waits for them.
    pub tracker: tokio_util::task::TaskTracker,
}

impl SessionContext {
    /// What opening a server leg for `client` (reached on `listener`) needs from this
    /// listener's route and the config.
    pub fn dial_params(&self, client: SocketAddr, listener: SocketAddr) -> DialParams {
        DialParams::new(
            &self.router.config,
            &self.config.timeouts,
            &self.config.limits,
        )
        .proxied(self.router.config.proxy_protocol, client, listener)
    }
}
