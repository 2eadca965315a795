//! Data port pool: listeners bound on unpredictable ports of a configured range, each held
//! by an RAII lease so that a port is never handed out twice and always returns to the
//! pool, whatever path a transfer ends on.

use crate::config::PortRange;
use crate::metrics::Metrics;
use rand::Rng;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// How many random probes before scanning the whole range from a random offset.
const RANDOM_PROBES: usize = 32;
/// A data listener serves one peer; a small backlog is plenty and bounds half-open floods.
const BACKLOG: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no free port in {range} on {ip}")]
    Exhausted { range: PortRange, ip: IpAddr },
    #[error("cannot bind a data listener on {ip}: {source}")]
    Bind { ip: IpAddr, source: std::io::Error },
}

/// Which range a pool hands out (for the `ftpgate_*_ports_in_use` gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// `data.passive_ports`: listeners the clients connect to.
    Passive,
    /// `data.server_active_ports`: listeners the servers connect to.
    Active,
}

/// One range of data ports. A reload makes a new pool for the new range that shares the
/// set of leased ports with the old one ([`PortPool::resized`]): running sessions keep
/// their pool, new ones take the new range, and a port a running session holds is never
/// handed out again until it is released.
#[derive(Debug)]
pub struct PortPool {
    range: PortRange,
    kind: PoolKind,
    leased: Arc<Mutex<HashSet<u16>>>,
    metrics: Arc<Metrics>,
}

/// A bound listener port; the port returns to the pool when this is dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.leased_set().remove(&self.port);
        self.pool.metrics.port_leases.dec();
        self.pool.in_use_gauge().dec();
    }
}

/// A one-shot data listener with its lease.
#[derive(Debug)]
pub struct DataListener {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    /// `data.path: kernel`: the mapping made for this port at PASV time; it lives (and its
    /// rules with it) exactly as long as the listener, so a port back in the pool never
    /// carries an old session's mapping.
    pub premap: Option<crate::kernel::Mapping>,
    _lease: PortLease,
}

impl PortPool {
    pub fn new(range: PortRange, kind: PoolKind, metrics: Arc<Metrics>) -> Arc<Self> {
        let pool = PortPool {
            range,
            kind,
            leased: Arc::new(Mutex::new(HashSet::new())),
            metrics,
        };
        pool.size_gauge().set(range.len() as i64);
        Arc::new(pool)
    }

    /// A pool for `range` sharing this pool's leases (a reload).
    pub fn resized(&self, range: PortRange) -> Arc<Self> {
        let pool = PortPool {
            range,
            kind: self.kind,
            leased: Arc::clone(&self.leased),
            metrics: Arc::clone(&self.metrics),
        };
        pool.size_gauge().set(range.len() as i64);
        Arc::new(pool)
    }

    /// Ports of every pool sharing this one's leases that are held now.
    pub fn leased(&self) -> usize {
        self.leased_set().len()
    }

    fn in_use_gauge(&self) -> &prometheus_client::metrics::gauge::Gauge {
        match self.kind {
            PoolKind::Passive => &self.metrics.families.passive_ports_in_use,
            PoolKind::Active => &self.metrics.families.active_ports_in_use,
        }
    }

    fn size_gauge(&self) -> &prometheus_client::metrics::gauge::Gauge {
        match self.kind {
            PoolKind::Passive => &self.metrics.families.passive_ports,
            PoolKind::Active => &self.metrics.families.active_ports,
        }
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    fn leased_set(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        // A poisoned lock only means another thread panicked mid-insert; the set is
        // still a valid set of ports.
        self.leased.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a port not leased by anyone else in this process.
    fn reserve(&self, candidate: u16) -> bool {
        self.leased_set().insert(candidate)
    }

    fn release(&self, port: u16) {
        self.leased_set().remove(&port);
    }

    /// Binds a listener on `ip` at a random free port of the range.
    /// `transparent` (TPROXY deployments) lets it bind an address that is not local.
    pub fn listen(
        self: &Arc<Self>,
        ip: IpAddr,
        transparent: bool,
    ) -> Result<DataListener, PortError> {
        let len = self.range.len();
        let mut rng = rand::thread_rng();
        let start = rng.gen_range(0..len);
        let probes = (0..RANDOM_PROBES.min(len))
            .map(|_| rng.gen_range(0..len))
            .chain((0..len).map(|i| (start + i) % len));
        for off in probes {
            let port = self.range.first + off as u16;
            if !self.reserve(port) {
                continue;
            }
            match crate::sockets::listener(SocketAddr::new(ip, port), transparent, BACKLOG) {
                Ok(listener) => {
                    self.metrics.port_leases.inc();
                    self.in_use_gauge().inc();
                    let addr = listener
                        .local_addr()
                        .map_err(|source| PortError::Bind { ip, source })?;
                    return Ok(DataListener {
                        listener,
                        addr,
                        premap: None,
                        _lease: PortLease {
                            pool: Arc::clone(self),
                            port,
                        },
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => self.release(port),
                Err(source) => {
                    self.release(port);
                    return Err(PortError::Bind { ip, source });
                }
            }
        }
        Err(PortError::Exhausted {
            range: self.range,
            ip,
        })
    }
}
