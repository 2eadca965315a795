//! Listeners, the accept loops, reload and the drain.
//!
//! [`bind`] binds every configured listener before serving any; [`Bound::serve`] runs
//! them until shutdown and then drains in stages: stop accepting (the sockets close, so
//! new connections are refused), tell idle sessions 421 at their next command boundary,
//! let running transfers finish within `timeouts.shutdown_grace`, then cut what is left.
//! [`Control`] is the handle signals act through: [`Control::reload`] swaps in a new
//! configuration for new sessions (running ones keep theirs), [`Control::drain`] and
//! [`Control::cut`] are SIGTERM and its second coming.

mod accept;
mod build;
mod per_ip;
mod reload;

pub use reload::{ReloadError, ReloadReport};

use crate::admin::NotReady;
use crate::config::Config;
use crate::data::{PoolKind, PortPool, RateLimit};
use crate::metrics::Metrics;
use crate::route::{spawn_health_checks, Resolver};
use crate::session::SessionContext;
use arc_swap::ArcSwap;
use per_ip::PerIp;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data.server_source_port_20: cannot bind port 20 ({0}); it needs CAP_NET_BIND_SERVICE or root")]
    Port20(std::io::Error),
    #[error("listener `{name}`: cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Xferlog(#[from] crate::xferlog::OpenError),
}

/// One bound listening socket. Its identity is the address it is bound to: a reload that
/// keeps a listener's `bind` (and `route.tproxy`) keeps the socket and only swaps the
/// context new sessions get.
struct Slot {
    bind: SocketAddr,
    tproxy: bool,
    local: SocketAddr,
    ctx: ArcSwap<SessionContext>,
    /// Stops this listener's accept loop (removed or rebound by a reload).
    stop: CancellationToken,
    /// The socket until its accept loop takes it.
    socket: Mutex<Option<TcpListener>>,
}

/// What a reload replaces as one: the configuration and what was built from it.
struct State {
    config: Arc<Config>,
    passive_pool: Arc<PortPool>,
    active_pool: Arc<PortPool>,
    rate_total: Option<Arc<RateLimit>>,
    /// Ends the health checks of this configuration's routers.
    health: CancellationToken,
}

/// What the accept loops, the reload and the drain share.
struct Inner {
    metrics: Arc<Metrics>,
    sessions: Arc<Semaphore>,
    ids: AtomicU64,
    per_ip: Arc<PerIp>,
    /// Every session, refusal, health check and accept loop: the drain waits for it.
    tracker: TaskTracker,
    /// First stage of the shutdown: stop accepting, sessions close at a boundary.
    drain: CancellationToken,
    /// Second stage: cut every session now.
    hard: CancellationToken,
    resolver: Resolver,
    own_addrs: Arc<Vec<std::net::IpAddr>>,
    slots: ArcSwap<Vec<Arc<Slot>>>,
    /// `log.xferlog` (restart-only: one writer for the process).
    xferlog: Option<crate::xferlog::XferLog>,
    /// Reloads run one at a time; the lock also orders them against `serve`'s start.
    state: tokio::sync::Mutex<State>,
    serving: AtomicBool,
}

/// All listeners, bound and ready to serve.
pub struct Bound {
    inner: Arc<Inner>,
}

/// A handle on a running (or about to run) ftpgate: reload, drain, readiness.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

impl Bound {
    /// The bound addresses, by listener name (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.control().local_addrs()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    pub fn control(&self) -> Control {
        Control {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Serves until `shutdown` is cancelled (or [`Control::drain`]), then drains.
    pub async fn serve(self, shutdown: CancellationToken) {
        self.serve_with(shutdown, || {}).await
    }

    /// [`Self::serve`], calling `ready` once every accept loop runs (systemd's READY=1).
    pub async fn serve_with(self, shutdown: CancellationToken, ready: impl FnOnce()) {
        let inner = self.inner;
        {
            let state = inner.state.lock().await;
            for slot in inner.slots.load().iter() {
                let ctx = slot.ctx.load();
                spawn_health_checks(&ctx.router, &inner.tracker, state.health.clone());
                start_accepting(&inner, slot);
            }
            inner
                .serving
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        ready();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = inner.drain.cancelled() => {}
        }
        inner.drain.cancel();
        inner.metrics.families.draining.set(1);
        inner.tracker.close();
        let grace = inner.state.lock().await.config.timeouts.shutdown_grace;
        tracing::info!(
            sessions = inner.metrics.sessions.get(),
            transfers = inner.metrics.transfers.get(),
            grace = ?grace,
            "draining: no new sessions; idle sessions close, transfers may finish"
        );
        // Biased: a second signal cuts the sessions, which then end at once, so both
        // branches can be ready together; the cut must win, or the drain would log
        // itself as clean and the count of what was cut would be lost.
        let cut = tokio::select! {
            biased;
            _ = inner.hard.cancelled() => Some("second signal"),
            r = tokio::time::timeout(grace, inner.tracker.wait()) => r.is_err().then_some("grace period over"),
        };
        if let Some(why) = cut {
            tracing::warn!(
                sessions = inner.metrics.sessions.get(),
                transfers = inner.metrics.transfers.get(),
                "{why}: cutting the remaining sessions"
            );
            inner.hard.cancel();
            if tokio::time::timeout(Duration::from_secs(5), inner.tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    tasks = inner.tracker.len(),
                    "tasks still running 5 s after the cut"
                );
            }
        }
        tracing::info!("drained");
    }
}

impl crate::admin::Readiness for Control {
    fn ready(&self) -> Result<(), NotReady> {
        self.readiness()
    }
}

impl Control {
    /// The current listeners' bound addresses, by listener name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.inner
            .slots
            .load()
            .iter()
            .map(|s| (s.ctx.load().listener.name.clone(), s.local))
            .collect()
    }

    /// Reopens the transfer log at its path (SIGHUP, after logrotate moved it).
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.inner.xferlog {
            log.reopen();
        }
    }

    /// First stage of the shutdown (SIGTERM, SIGINT).
    pub fn drain(&self) {
        self.inner.drain.cancel();
    }

    /// Second stage: every remaining session is cut now (a second signal).
    pub fn cut(&self) {
        self.inner.drain.cancel();
        self.inner.hard.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_cancelled()
    }

    /// `/readyz`: serving, not draining, and every fixed route has a healthy upstream.
    pub fn readiness(&self) -> Result<(), NotReady> {
        readiness(&self.inner)
    }

    /// A one-line summary for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let m = &self.inner.metrics;
        let state = if self.is_draining() {
            "draining"
        } else {
            "serving"
        };
        format!(
            "{state}: {} sessions, {} transfers",
            m.sessions.get(),
            m.transfers.get()
        )
    }
}

/// `/readyz` (and a balancer's PROXY `LOCAL` check).
fn readiness(inner: &Inner) -> Result<(), NotReady> {
    if inner.drain.is_cancelled() {
        return Err(NotReady::Draining);
    }
    if !inner.serving.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(NotReady::Starting);
    }
    for slot in inner.slots.load().iter() {
        let ctx = slot.ctx.load();
        if !ctx.router.has_healthy_upstream() {
            return Err(NotReady::NoHealthyUpstream {
                listener: ctx.listener.name.clone(),
            });
        }
    }
    Ok(())
}

/// Binds every listener; nothing is served until all of them are bound.
pub async fn bind(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Bound, StartError> {
    let passive_pool = PortPool::new(
        config.data.passive_ports,
        PoolKind::Passive,
        Arc::clone(&metrics),
    );
    let active_pool = PortPool::new(
        config.data.server_active_ports,
        PoolKind::Active,
        Arc::clone(&metrics),
    );
    // One resolver (and one cache) for every listener and every configuration.
    let resolver = Resolver::system(config.timeouts.connect).await;
    if config.data.server_source_port_20 {
        check_port_20(&config)?;
    }
    let xferlog = match &config.log.xferlog {
        Some(path) => Some(crate::xferlog::XferLog::open(path, Arc::clone(&metrics)).await?),
        None => None,
    };
    let drain = CancellationToken::new();
    let state = State {
        config: Arc::clone(&config),
        passive_pool,
        active_pool,
        rate_total: config.limits.rate_total.map(RateLimit::new),
        health: drain.child_token(),
    };
    let inner = Arc::new(Inner {
        metrics: Arc::clone(&metrics),
        sessions: Arc::new(Semaphore::new(config.limits.max_sessions)),
        ids: AtomicU64::new(0),
        per_ip: Arc::new(PerIp::default()),
        tracker: TaskTracker::new(),
        drain,
        hard: CancellationToken::new(),
        resolver,
        own_addrs: Arc::new(crate::netinfo::own_addresses()),
        slots: ArcSwap::from_pointee(Vec::new()),
        xferlog,
        state: tokio::sync::Mutex::new(state),
        serving: AtomicBool::new(false),
    });
    let mut slots = Vec::new();
    {
        let state = inner.state.lock().await;
        for (i, l) in config.listeners.iter().enumerate() {
            let socket = build::bind_listener(l).map_err(|(addr, source)| StartError::Bind {
                name: l.name.clone(),
                addr,
                source,
            })?;
            let ctx = build::context(&inner, &state, i, None);
            slots.push(
                build::slot(l, socket, ctx).map_err(|source| StartError::Bind {
                    name: l.name.clone(),
                    addr: l.bind,
                    source,
                })?,
            );
        }
    }
    inner.slots.store(Arc::new(slots));
    Ok(Bound { inner })
}

/// Spawns the accept loop of a slot whose socket has not been taken yet.
fn start_accepting(inner: &Arc<Inner>, slot: &Arc<Slot>) {
    let socket = slot.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(socket) = socket {
        let ctx = slot.ctx.load();
        tracing::info!(listener.name = %ctx.listener.name, listener.addr = %slot.local, "listening");
        inner.tracker.spawn(accept::accept_loop(
            Arc::clone(slot),
            socket,
            Arc::clone(inner),
        ));
    }
}

/// Fails at start, not at the first transfer, when port 20 cannot be bound.
fn check_port_20(config: &Config) -> Result<(), StartError> {
    let socket = TcpSocket::new_v4().map_err(StartError::Port20)?;
    socket.set_reuseaddr(true).map_err(StartError::Port20)?;
    let ip = config
        .listeners
        .first()
        .map(|l| l.bind.ip())
        .filter(|ip| ip.is_ipv4())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    socket
        .bind(SocketAddr::new(ip, 20))
        .map_err(StartError::Port20)
}
