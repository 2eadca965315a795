//! Building a listener's socket, slot and session context from a configuration; shared
//! by the start and by reload.

use super::{Inner, Slot, State};
use crate::config::ListenerConfig;
use crate::route::Router;
use crate::session::SessionContext;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The listen backlog of a control listener.
const BACKLOG: u32 = 1024;

pub(super) fn bind_listener(
    l: &ListenerConfig,
) -> Result<TcpListener, (SocketAddr, std::io::Error)> {
    crate::sockets::listener(l.bind, l.route.tproxy, BACKLOG).map_err(|e| (l.bind, e))
}

/// The context sessions of `state.config.listeners[index]` start with; `previous` is the
/// router of the listener of that name before a reload, whose health state carries over.
pub(super) fn context(
    inner: &Inner,
    state: &State,
    index: usize,
    previous: Option<&Router>,
) -> Arc<SessionContext> {
    let config = Arc::clone(&state.config);
    let l = &config.listeners[index];
    let router = Router::new(l, inner.resolver.clone(), &inner.metrics.families);
    if let Some(previous) = previous {
        router.inherit_health(previous);
    }
    // Series a dashboard can show at zero before the first session.
    let label = crate::metrics::families::ListenerLabel {
        listener: l.name.clone(),
    };
    drop(inner.metrics.families.sessions.get_or_create(&label));
    drop(inner.metrics.families.sessions_total.get_or_create(&label));
    Arc::new(SessionContext {
        listener: Arc::new(l.clone()),
        config: Arc::clone(&config),
        passive_pool: Arc::clone(&state.passive_pool),
        active_pool: Arc::clone(&state.active_pool),
        metrics: Arc::clone(&inner.metrics),
        router,
        own_addrs: Arc::clone(&inner.own_addrs),
        rate_total: state.rate_total.clone(),
        tracker: inner.tracker.clone(),
        xferlog: inner.xferlog.clone(),
    })
}

pub(super) fn slot(
    l: &ListenerConfig,
    socket: TcpListener,
    ctx: Arc<SessionContext>,
) -> std::io::Result<Arc<Slot>> {
    let local = socket.local_addr()?;
    Ok(Arc::new(Slot {
        bind: l.bind,
        tproxy: l.route.tproxy,
        local,
        ctx: ArcSwap::new(ctx),
        stop: tokio_util::sync::CancellationToken::new(),
        socket: Mutex::new(Some(socket)),
    }))
}
