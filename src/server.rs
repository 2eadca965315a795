//! Listeners and the accept loop: binds every configured listener before serving any,
//! caps sessions with a semaphore, and shuts down in stages (stop accepting, let sessions
//! drain for `timeouts.shutdown_grace`, then cut what is left).

use crate::config::Config;
use crate::data::PortPool;
use crate::metrics::{GaugeGuard, Metrics};
use crate::policy::client_allowed;
use crate::route::{spawn_health_checks, Resolver, Router};
use crate::session::{self, SessionContext};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
}

/// All listeners, bound and ready to serve.
pub struct Bound {
    listeners: Vec<(Arc<SessionContext>, TcpListener, SocketAddr)>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
}

impl Bound {
    /// The bound addresses, by listener name (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(ctx, _, addr)| (ctx.listener.name.clone(), *addr))
            .collect()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Serves until `shutdown` is cancelled, then drains sessions within the grace period.
    pub async fn serve(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let hard = CancellationToken::new();
        let shared = Arc::new(Shared {
            sessions: Arc::new(Semaphore::new(self.config.limits.max_sessions)),
            ids: AtomicU64::new(0),
            per_ip: Arc::new(PerIp::new(self.config.limits.max_sessions_per_ip)),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            hard: hard.clone(),
        });
        for (ctx, listener, addr) in self.listeners {
            tracing::info!(listener.name = %ctx.listener.name, listener.addr = %addr, "listening");
            spawn_health_checks(&ctx.router, &tracker, shutdown.clone());
            tracker.spawn(accept_loop(ctx, listener, Arc::clone(&shared)));
        }
        shutdown.cancelled().await;
        tracker.close();
        tracing::info!(
            sessions = self.metrics.sessions.get(),
            "shutting down: no new sessions"
        );
        if tokio::time::timeout(self.config.timeouts.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.metrics.sessions.get(),
                transfers = self.metrics.transfers.get(),
                "grace period over: cutting remaining sessions"
            );
            hard.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
    }
}

/// Binds every listener; nothing is served until all of them are bound.
pub async fn bind(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Bound, StartError> {
    let passive_pool = PortPool::new(config.data.passive_ports, Arc::clone(&metrics));
    let active_pool = PortPool::new(config.data.server_active_ports, Arc::clone(&metrics));
    let own_addrs = Arc::new(crate::netinfo::own_addresses());
    let rate_total = config.limits.rate_total.map(crate::data::RateLimit::new);
    // One resolver (and one cache) for every listener.
    let resolver = Resolver::system(config.timeouts.connect).await;
    if config.data.server_source_port_20 {
        check_port_20(&config)?;
    }
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let err = |source| StartError::Bind {
            name: l.name.clone(),
            addr: l.bind,
            source,
        };
        let listener = crate::sockets::listener(l.bind, l.route.tproxy, 1024).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let ctx = Arc::new(SessionContext {
            config: Arc::clone(&config),
            listener: Arc::new(l.clone()),
            passive_pool: Arc::clone(&passive_pool),
            active_pool: Arc::clone(&active_pool),
            metrics: Arc::clone(&metrics),
            router: Router::new(l, resolver.clone()),
            own_addrs: Arc::clone(&own_addrs),
            rate_total: rate_total.clone(),
        });
        listeners.push((ctx, listener, addr));
    }
    Ok(Bound {
        listeners,
        config,
        metrics,
    })
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

/// What every accept loop shares.
struct Shared {
    sessions: Arc<Semaphore>,
    ids: AtomicU64,
    per_ip: Arc<PerIp>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    hard: CancellationToken,
}

async fn accept_loop(ctx: Arc<SessionContext>, listener: TcpListener, shared: Arc<Shared>) {
    let Shared {
        sessions,
        ids,
        per_ip,
        tracker,
        shutdown,
        hard,
    } = &*shared;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on a
                // listener that stays readable.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tune_control(&stream);
        let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
        if !client_allowed(&ctx.listener.acl.clients, peer.ip()) {
            ctx.metrics.sessions_refused.add(1);
            tracing::warn!(session.id = id, client.addr = %peer, listener = %ctx.listener.name, "client refused by acl.clients");
            tracker.spawn(refuse(stream, "421 Access denied.\r\n"));
            continue;
        }
        let Some(ip_slot) = per_ip.acquire(peer.ip()) else {
            ctx.metrics.sessions_refused.add(1);
            tracing::warn!(session.id = id, client.addr = %peer, "per-IP session limit reached");
            tracker.spawn(refuse(
                stream,
                "421 Too many sessions from your address, try again later.\r\n",
            ));
            continue;
        };
        let Ok(permit) = Arc::clone(sessions).try_acquire_owned() else {
            ctx.metrics.sessions_refused.add(1);
            tracing::warn!(session.id = id, client.addr = %peer, "session limit reached");
            tracker.spawn(refuse(
                stream,
                "421 Too many sessions, try again later.\r\n",
            ));
            continue;
        };
        let span = tracing::info_span!("session", session.id = id, client.addr = %peer, listener = %ctx.listener.name);
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        let hard = hard.clone();
        tracker.spawn(
            async move {
                let _permit = permit;
                let _ip_slot = ip_slot;
                let _gauge = GaugeGuard::new(Arc::clone(&ctx.metrics), |m| &m.sessions);
                ctx.metrics.sessions_total.add(1);
                tracing::info!("session opened");
                tokio::select! {
                    _ = session::run(ctx, stream, shutdown) => {}
                    _ = hard.cancelled() => tracing::warn!("session cut at shutdown"),
                }
            }
            .instrument(span),
        );
    }
}

/// Sessions per client IP, counted by RAII slots.
struct PerIp {
    max: usize,
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

struct IpSlot {
    table: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn new(max: usize) -> Self {
        PerIp {
            max,
            counts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn acquire(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<IpSlot> {
        let ip = crate::proto::hostport::canonical_ip(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

fn tune_control(stream: &TcpStream) {
    // Control replies are small and latency-bound: without TCP_NODELAY every exchange
    // can wait ~40 ms for a delayed ACK.
    let _ = stream.set_nodelay(true);
    // Keep Telnet urgent data (the DM of "IAC IP IAC DM ABOR") in the stream, where the
    // framer consumes it, instead of losing a byte to out-of-band delivery.
    let _ = socket2::SockRef::from(stream).set_out_of_band_inline(true);
}

async fn refuse(mut stream: TcpStream, line: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}
