//! Active health checks for a fixed route's upstreams: connect, wait for a 220 banner
//! (optionally log in), on a timer. `fall` consecutive failures eject an upstream, `rise`
//! consecutive successes re-admit it. On a TLS route the probe speaks TLS as a session
//! does (implicit, or `AUTH TLS` before any login), so a probe's password never travels
//! in plaintext and a server that insists on TLS is not ejected for the probe's sake.

use super::upstream::{dial, DialParams, ImplicitTls};
use super::{HealthError, Resolver, Router, UpstreamState};
use crate::config::{HealthConfig, HealthLogin, RouteTls, ServerTlsMode};
use crate::proto::line::encode_line;
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::tls::{SecurityCommand, TlsError};
use crate::wire::next_reply;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Caps for the probe's replies: a probe reads a greeting and a login answer, no more.
const PROBE_MAX_LINE: usize = 4096;
const PROBE_MAX_REPLY_LINES: usize = 64;
const PROBE_MAX_REPLY_BYTES: usize = 64 * 1024;

/// Records one probe (or session) outcome; logs ejection and re-admission.
pub(super) fn record(u: &UpstreamState, ok: bool, fall: u32, rise: u32) {
    if ok {
        u.fails.store(0, Ordering::Relaxed);
        let oks = u.oks.fetch_add(1, Ordering::Relaxed) + 1;
        if !u.is_healthy() && oks >= rise {
            u.set_healthy(true);
            tracing::warn!(upstream = %u.upstream, "upstream re-admitted");
        }
    } else {
        u.oks.store(0, Ordering::Relaxed);
        let fails = u.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if u.is_healthy() && fails >= fall {
            u.set_healthy(false);
            tracing::warn!(upstream = %u.upstream, fails, "upstream ejected");
        }
    }
}

/// Starts one checker task per upstream, ending with `shutdown`.
pub fn spawn_health_checks(
    router: &Arc<Router>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let Some(health) = router.config.health.clone() else {
        return;
    };
    for u in &router.upstreams {
        let u = Arc::clone(u);
        let health = health.clone();
        let shutdown = shutdown.clone();
        let params = DialParams {
            source: router.config.source,
            connect: health.timeout,
            banner: health.timeout,
            max_line: PROBE_MAX_LINE,
            max_reply_lines: PROBE_MAX_REPLY_LINES,
            max_reply_bytes: PROBE_MAX_REPLY_BYTES,
            // A probe is ftpgate's own connection: LOCAL (v2) or UNKNOWN (v1).
            proxy_header: router.config.proxy_protocol.map(crate::proxy_proto::local),
        };
        let resolver = router.resolver.clone();
        let tls = router.config.tls.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(health.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let outcome =
                    tokio::time::timeout(health.timeout, probe(&resolver, &params, &u, &health, tls.as_ref()))
                        .await;
                let result = match outcome {
                    Ok(r) => r,
                    Err(_) => Err(HealthError::Timeout),
                };
                if let Err(reason) = &result {
                    tracing::debug!(upstream = %u.upstream, %reason, side = %reason.side(), "health check failed");
                }
                record(&u, result.is_ok(), health.fall, health.rise);
            }
        });
    }
}

/// Resolves, connects and reads the 220 exactly as a session does (every address in
/// turn), then logs in when configured and quits.
async fn probe(
    resolver: &Resolver,
    params: &DialParams,
    u: &UpstreamState,
    health: &HealthConfig,
    tls: Option<&RouteTls>,
) -> Result<(), HealthError> {
    let addrs = resolver
        .lookup(&u.upstream.host, u.upstream.port, params.connect)
        .await?;
    // A session store of the probe's own, as for a session.
    let tls = match tls {
        Some(t) if t.mode != ServerTlsMode::MatchClient => {
            let text = t.server_name.as_deref().unwrap_or(&u.upstream.host);
            let name = rustls::pki_types::ServerName::try_from(text.to_string())
                .map_err(|_| super::UpstreamError::TlsName { name: text.into() })?;
            Some((t.mode, t.connector.session(), name))
        }
        _ => None,
    };
    let implicit = match &tls {
        Some((ServerTlsMode::Implicit, connector, name)) => Some((
            ImplicitTls {
                connector,
                server_name: None,
                handshake: params.connect,
            },
            name.clone(),
        )),
        _ => None,
    };
    let mut leg = dial(params, &addrs, implicit.as_ref()).await?.leg;
    let mut assembler = ReplyAssembler::new(params.max_reply_lines, params.max_reply_bytes);
    if let Some((ServerTlsMode::Explicit, connector, name)) = &tls {
        send(&mut leg, b"AUTH TLS").await?;
        let r = final_reply(&mut leg, &mut assembler).await?;
        if r.code != 234 {
            return Err(HealthError::Tls(TlsError::Refused {
                command: SecurityCommand::Auth,
                code: r.code,
            }));
        }
        let stream = leg
            .take_for_tls()
            .map_err(|_| HealthError::Tls(TlsError::PlaintextAfterAuth))?;
        let secured = connector
            .connect(name, stream, params.connect)
            .await
            .map_err(|e| HealthError::Tls(e.into()))?;
        leg.replace(Box::new(secured));
    }
    if let Some(HealthLogin { user, password }) = &health.login {
        send(&mut leg, format!("USER {user}").as_bytes()).await?;
        let mut r = final_reply(&mut leg, &mut assembler).await?;
        if r.code == 331 {
            send(&mut leg, format!("PASS {password}").as_bytes()).await?;
            r = final_reply(&mut leg, &mut assembler).await?;
        }
        if !matches!(r.code, 230 | 232) {
            return Err(HealthError::Login { code: r.code });
        }
    }
    send(&mut leg, b"QUIT").await?;
    Ok(())
}

/// The next final reply (1xx are skipped; the probe wants each final answer).
async fn final_reply(
    leg: &mut crate::wire::Leg,
    assembler: &mut ReplyAssembler,
) -> Result<Reply, HealthError> {
    loop {
        let r = next_reply(&mut leg.reader, assembler).await?;
        if !r.is_preliminary() {
            return Ok(r);
        }
    }
}

async fn send(leg: &mut crate::wire::Leg, line: &[u8]) -> Result<(), HealthError> {
    let mut buf = BytesMut::new();
    encode_line(line, &mut buf);
    leg.writer.write_all(&buf).await.map_err(HealthError::Write)
}
