//! The accept loop of one bound listener: admission (client ACL, per-IP and total
//! session limits) and one task per session, each tracked by the shutdown.
//!
//! The loop reads its listener's context at every accept, so after a reload new sessions
//! start on the new configuration while running ones keep the context they began with.

use super::{Inner, Slot};
use crate::metrics::families::{ListenerLabel, SessionRefusal};
use crate::metrics::{GaugeGuard, Held};
use crate::policy::client_allowed;
use crate::proxy_proto::Declared;
use crate::session::{self, SessionContext};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

pub(super) async fn accept_loop(slot: Arc<Slot>, listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = slot.stop.cancelled() => break,
            _ = inner.drain.cancelled() => break,
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
        let ctx = slot.ctx.load_full();
        admit(&inner, ctx, stream, peer);
    }
    // Dropping the socket here closes it: clients connecting from now on are refused by
    // the kernel rather than left waiting in a backlog nobody reads.
    tracing::info!(listener.addr = %slot.local, "listener closed");
}

fn admit(
    inner: &Arc<Inner>,
    ctx: Arc<SessionContext>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    tune_control(&stream);
    let id = inner.ids.fetch_add(1, Ordering::Relaxed) + 1;
    let trusted = ctx
        .listener
        .proxy_protocol
        .as_ref()
        .is_some_and(|p| crate::proxy_proto::trusted(&p.trusted, peer.ip()));
    if !trusted {
        return start(inner, ctx, stream, peer, id);
    }
    // A trusted balancer: the client is who its header names. Read in a task of its
    // own, so a slow header holds up no other accept.
    let inner = Arc::clone(inner);
    let tracker = inner.tracker.clone();
    tracker.spawn(async move {
        let mut stream = stream;
        let deadline = tokio::time::Instant::now() + ctx.config.timeouts.banner;
        match crate::proxy_proto::read(&mut stream, deadline).await {
            Ok(Declared::Proxy { source, .. }) => {
                tracing::debug!(session.id = id, balancer = %peer, client.addr = %source, "PROXY header");
                start(&inner, ctx, stream, source, id);
            }
            Ok(Declared::Unknown) => start(&inner, ctx, stream, peer, id),
            Ok(Declared::Local) => {
                // The balancer's health check: answered as /readyz would be, then closed.
                let line = match super::readiness(&inner) {
                    Ok(()) => "220 ftpgate ready.\r\n".to_string(),
                    Err(why) => format!("421 Not ready: {why}.\r\n"),
                };
                refuse(stream, line).await;
            }
            Err(e) => {
                refused(&ctx, SessionRefusal::proxy_protocol);
                tracing::warn!(session.id = id, balancer = %peer, error = %e, "connection from a trusted balancer closed");
                let _ = stream.shutdown().await;
            }
        }
    });
}

fn refused(ctx: &SessionContext, reason: SessionRefusal) {
    ctx.metrics.session_refused(&ctx.listener.name, reason);
}

/// Admission of the client `peer` (ACL, per-IP and total limits), then its session.
fn start(
    inner: &Arc<Inner>,
    ctx: Arc<SessionContext>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    id: u64,
) {
    let name = ctx.listener.name.clone();
    if !client_allowed(&ctx.listener.acl.clients, peer.ip()) {
        refused(&ctx, SessionRefusal::acl);
        tracing::warn!(session.id = id, client.addr = %peer, listener = %name, "client refused by acl.clients");
        inner
            .tracker
            .spawn(refuse(stream, "421 Access denied.\r\n".into()));
        return;
    }
    let per_ip = ctx.config.limits.max_sessions_per_ip;
    let Some(ip_slot) = inner.per_ip.acquire(peer.ip(), per_ip) else {
        refused(&ctx, SessionRefusal::limit);
        tracing::warn!(session.id = id, client.addr = %peer, "per-IP session limit reached");
        inner.tracker.spawn(refuse(
            stream,
            "421 Too many sessions from your address, try again later.\r\n".into(),
        ));
        return;
    };
    let Ok(permit) = Arc::clone(&inner.sessions).try_acquire_owned() else {
        refused(&ctx, SessionRefusal::limit);
        tracing::warn!(session.id = id, client.addr = %peer, "session limit reached");
        inner.tracker.spawn(refuse(
            stream,
            "421 Too many sessions, try again later.\r\n".into(),
        ));
        return;
    };
    let span =
        tracing::info_span!("session", session.id = id, client.addr = %peer, listener = %name);
    let shutdown = inner.drain.clone();
    let hard = inner.hard.clone();
    let label = ListenerLabel { listener: name };
    inner.tracker.spawn(
        async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let _gauge = GaugeGuard::new(Arc::clone(&ctx.metrics), |m| &m.sessions);
            let families = &ctx.metrics.families;
            let _open = Held::new(families.sessions.get_or_create_owned(&label));
            families.sessions_total.get_or_create(&label).inc();
            ctx.metrics.sessions_total.add(1);
            tracing::info!("session opened");
            tokio::select! {
                _ = session::run(Arc::clone(&ctx), stream, shutdown, peer) => {}
                _ = hard.cancelled() => tracing::warn!("session cut at shutdown"),
            }
        }
        .instrument(span),
    );
}

fn tune_control(stream: &TcpStream) {
    // Control replies are small and latency-bound: without TCP_NODELAY every exchange
    // can wait ~40 ms for a delayed ACK.
    let _ = stream.set_nodelay(true);
    // Keep Telnet urgent data (the DM of "IAC IP IAC DM ABOR") in the stream, where the
    // framer consumes it, instead of losing a byte to out-of-band delivery.
    let _ = socket2::SockRef::from(stream).set_out_of_band_inline(true);
}

async fn refuse(mut stream: TcpStream, line: String) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}
