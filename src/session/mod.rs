//! The control session: one task per client connection that owns all of its state.
//!
//! The task terminates the client's control connection, opens one to the server
//! (`route`), and relays commands and replies in order (RFC 959). Its decisions live in
//! [`core`], a sans-IO state machine (events in, actions out, no sockets and no clock);
//! [`driver`] is the loop that owns the sockets, the clock and the data task and feeds the
//! core. Data connections run as separate tasks (`crate::data`) that report back with a
//! `DataEvent`; the server's final reply to a transfer is held until the client-side data
//! connection has delivered every byte and been closed.
//!
//! Before the core starts, the server leg is opened: a fixed route's upstreams in turn, a
//! transparent route's original destination, or (`user_at_host`) the destination the
//! client names in its `USER` after ftpgate greeted it itself ([`forward`]).

mod context;
pub mod core;
mod driver;
pub mod error;
mod forward;
pub mod policy;
mod report;
pub mod security;

pub use context::SessionContext;
pub use error::{ClientFault, ServerFault, SessionEnd};

use crate::config::{ClientTlsMode, RouteKind, ServerTlsMode};
use crate::proto::reply::Reply;
use crate::stream::BoxedStream;
use crate::tls::DataRole;
use crate::wire::Leg;
use driver::{write_reply, PoolPorts, SessionTls};
use security::ClientSecurity;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Runs one session to its end. Never panics on input; every exit path closes both legs.
/// `client_peer` is the client: the TCP peer, or what a trusted balancer's PROXY protocol
/// header declared.
pub async fn run(
    ctx: Arc<SessionContext>,
    client: TcpStream,
    shutdown: CancellationToken,
    client_peer: SocketAddr,
) {
    let Ok(client_local) = client.local_addr() else {
        return;
    };
    let accepted = Instant::now();
    let login_deadline = accepted + ctx.config.timeouts.login;
    let destination = match ctx.router.config.kind {
        RouteKind::Transparent => Some(crate::route::original_destination(
            &client,
            ctx.router.config.tproxy,
        )),
        _ => None,
    };
    let mut tls = match session_tls(&ctx) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up TLS for the session");
            return;
        }
    };
    let client: BoxedStream = Box::new(crate::stream::UrgentSafe(client));
    let mut client_security = ClientSecurity::default();
    let implicit_client = ctx
        .listener
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == ClientTlsMode::Implicit);
    let client: BoxedStream = match (&tls.acceptor, implicit_client) {
        (Some(acceptor), true) => {
            let handshake = tokio::select! {
                r = acceptor.accept(client, DataRole::Control, tls.handshake, false) => r,
                _ = shutdown.cancelled() => return,
            };
            match handshake {
                Ok(s) => {
                    client_security = ClientSecurity::secured();
                    Box::new(s)
                }
                Err(e) => {
                    ctx.metrics.tls_failed(
                        crate::metrics::families::Leg::client,
                        crate::metrics::families::Channel::control,
                    );
                    let end = SessionEnd::Tls {
                        side: crate::error::Side::Client,
                        error: e.into(),
                    };
                    log_end(&end);
                    return;
                }
            }
        }
        _ => client,
    };
    let mut client = Leg::new(client, ctx.config.limits.max_line);

    let opened = tokio::select! {
        r = open_server(&ctx, client_peer, client_local, destination, &mut client, &tls, &mut client_security, login_deadline) => r,
        _ = shutdown.cancelled() => Err(SessionEnd::Shutdown),
    };
    let (conn, forward_user) = match opened {
        Ok(x) => x,
        Err(end) => {
            log_end(&end);
            if matches!(end, SessionEnd::Shutdown) {
                ctx.metrics.session_refused(
                    &ctx.listener.name,
                    crate::metrics::families::SessionRefusal::shutdown,
                );
                // Still connecting upstream (or in the forward login) at the drain: the
                // client is told, as an idle session would be.
                let reply = Reply::new(421, "Service shutting down, closing control connection.");
                let _ = write_reply(&mut client.writer, &reply, Duration::from_secs(2)).await;
            }
            let _ = timeout(Duration::from_secs(2), client.writer.shutdown()).await;
            return;
        }
    };
    // `explicit`: AUTH TLS follows (logged once the handshake is done), nothing of the
    // client's goes out before it.
    let tls_state = match (&ctx.router.config.tls, conn.tls) {
        (_, true) => "implicit",
        (Some(t), false) if t.mode == ServerTlsMode::MatchClient => "match_client",
        (Some(_), false) => "explicit",
        (None, false) => "off",
    };
    tracing::info!(server.addr = %conn.peer, tls = tls_state, "connected upstream");
    let crate::route::upstream::ServerLegConn {
        host,
        tls: server_tls,
        leg: mut server,
        peer: server_peer,
        local: server_local,
        banner,
        _lease,
    } = conn;
    if let (Some(route_tls), Some(connector)) = (&ctx.router.config.tls, tls.connector.as_mut()) {
        let text = route_tls.server_name.clone().unwrap_or(host);
        connector.1 = rustls::pki_types::ServerName::try_from(text.clone())
            .map_err(|_| crate::tls::TlsError::BadName(text));
    }
    let addrs = core::Addrs {
        client_peer,
        client_local,
        server_peer,
        server_local,
    };
    let ports = PoolPorts {
        passive: Arc::clone(&ctx.passive_pool),
        active: Arc::clone(&ctx.active_pool),
        transparent: ctx.router.config.tproxy,
    };
    let start = match forward_user {
        Some(user) => core::Start::ForwardUser(user),
        None => core::Start::Banner(banner),
    };
    let secured = core::Secured {
        client: client_security,
        server: server_tls,
    };
    let mut core = core::Core::new(
        Arc::clone(&ctx.config),
        Arc::clone(&ctx.listener),
        addrs,
        ports,
        start,
        secured,
        login_deadline.into_std(),
        Instant::now().into_std(),
    );
    let end = driver::drive(
        &ctx,
        &mut core,
        &mut client,
        &mut server,
        &tls,
        shutdown,
        accepted,
    )
    .await;
    log_end(&end);
    drop(core);
    let _ = timeout(Duration::from_secs(2), client.writer.shutdown()).await;
    let _ = timeout(Duration::from_secs(2), server.writer.shutdown()).await;
}

/// This session's own TLS stores (see `crate::tls`); the server's name is set once the
/// server leg is open.
fn session_tls(ctx: &SessionContext) -> Result<SessionTls, rustls::Error> {
    let acceptor = match &ctx.listener.tls {
        Some(t) => Some(t.acceptor.session()?),
        None => None,
    };
    let connector = ctx.router.config.tls.as_ref().map(|t| {
        (
            t.connector.session(),
            // Named once the server leg is open (`run`).
            Err(crate::tls::TlsError::NotConfigured),
        )
    });
    Ok(SessionTls {
        acceptor,
        connector,
        require_reuse: ctx.listener.tls.as_ref().is_some_and(|t| t.require_reuse),
        handshake: ctx.config.timeouts.tls_handshake,
    })
}

/// Implicit TLS towards the server: `route.tls.mode: implicit`, or `match_client` on an
/// implicit listener.
fn implicit_server<'a>(
    ctx: &'a SessionContext,
    tls: &'a SessionTls,
    client_security: &ClientSecurity,
    server_name: Option<&'a str>,
) -> Option<crate::route::upstream::ImplicitTls<'a>> {
    let route = ctx.router.config.tls.as_ref()?;
    let implicit_client = ctx
        .listener
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == ClientTlsMode::Implicit);
    let implicit = match route.mode {
        ServerTlsMode::Implicit => true,
        ServerTlsMode::MatchClient => implicit_client && client_security.tls,
        ServerTlsMode::Explicit => false,
    };
    let (connector, _) = tls.connector.as_ref()?;
    implicit.then_some(crate::route::upstream::ImplicitTls {
        connector,
        server_name: route.server_name.as_deref().or(server_name),
        handshake: tls.handshake,
    })
}

fn log_end(end: &SessionEnd) {
    if end.is_orderly() {
        tracing::info!(reason = %end, side = %end.side(), "session closed")
    } else {
        tracing::warn!(reason = %end, side = %end.side(), "session closed")
    }
}

/// Finds and opens the server leg for this session's route. On failure the client has
/// already been told why (421/530).
#[allow(clippy::too_many_arguments)]
async fn open_server(
    ctx: &SessionContext,
    client_peer: SocketAddr,
    client_local: SocketAddr,
    destination: Option<std::io::Result<SocketAddr>>,
    client: &mut Leg,
    tls: &SessionTls,
    client_security: &mut ClientSecurity,
    login_deadline: Instant,
) -> Result<(crate::route::ServerLegConn, Option<Vec<u8>>), SessionEnd> {
    let client_wr = &mut client.writer;
    let targets = match (ctx.router.config.kind, destination) {
        (RouteKind::UserAtHost, _) => {
            let (conn, user) = forward::login(
                ctx,
                client,
                tls,
                client_security,
                login_deadline,
                (client_peer, client_local),
            )
            .await?;
            return Ok((conn, Some(user)));
        }
        (RouteKind::Fixed, _) => ctx
            .router
            .candidates(client_peer.ip())
            .into_iter()
            .map(crate::route::Target::Upstream)
            .collect::<Vec<_>>(),
        (RouteKind::Transparent, Some(Ok(dest)))
            if dest != client_local || ctx.router.config.tproxy =>
        {
            // Under TPROXY our local address IS the destination: not "our own" here.
            let own: Vec<IpAddr> = ctx
                .own_addrs
                .iter()
                .copied()
                .filter(|ip| *ip != dest.ip())
                .collect();
            if let Err(reason) =
                crate::policy::server_allowed(&ctx.listener.acl.servers, dest, &own)
            {
                let host = dest.ip().to_string();
                let e = crate::route::UpstreamError::DestinationRefused { host, reason };
                return Err(refuse(ctx, client_wr, e).await);
            }
            vec![crate::route::Target::Addr(dest)]
        }
        (RouteKind::Transparent, _) => {
            let e = crate::route::UpstreamError::NotIntercepted;
            return Err(refuse(ctx, client_wr, e).await);
        }
    };
    let implicit = implicit_server(ctx, tls, client_security, None);
    match crate::route::upstream::open(
        &ctx.router,
        &ctx.dial_params(client_peer, client_local),
        &targets,
        implicit,
    )
    .await
    {
        Ok(conn) => Ok((conn, None)),
        Err(reason) => Err(refuse(ctx, client_wr, reason).await),
    }
}

async fn refuse(
    ctx: &SessionContext,
    w: &mut tokio::io::WriteHalf<BoxedStream>,
    reason: crate::route::UpstreamError,
) -> SessionEnd {
    tracing::warn!(%reason, side = %reason.side(), "session refused");
    if matches!(reason, crate::route::UpstreamError::Tls { .. }) {
        ctx.metrics.tls_failed(
            crate::metrics::families::Leg::server,
            crate::metrics::families::Channel::control,
        );
    }
    ctx.metrics.session_refused(
        &ctx.listener.name,
        crate::metrics::families::SessionRefusal::upstream,
    );
    let reply = Reply::new(
        421,
        &format!("Service not available: {}.", reason.client_text()),
    );
    let _ = write_reply(w, &reply, ctx.config.timeouts.data_stall).await;
    SessionEnd::Upstream(reason)
}
