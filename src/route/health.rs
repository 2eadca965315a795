//! Active health checks for a fixed route's upstreams: connect, wait for a 220 banner
//! (optionally log in), on a timer. `fall` consecutive failures eject an upstream, `rise`
//! consecutive successes re-admit it.

use super::upstream::{dial, DialParams};
use super::{HealthError, Resolver, Router, UpstreamState};
use crate::config::{HealthConfig, HealthLogin};
use crate::proto::line::encode_line;
use crate::proto::reply::{Reply, ReplyAssembler};
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
            u.healthy.store(true, Ordering::Relaxed);
            tracing::warn!(upstream = %u.upstream, "upstream re-admitted");
        }
    } else {
        u.oks.store(0, Ordering::Relaxed);
        let fails = u.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if u.is_healthy() && fails >= fall {
            u.healthy.store(false, Ordering::Relaxed);
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
        };
        let resolver = router.resolver.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(health.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let outcome =
                    tokio::time::timeout(health.timeout, probe(&resolver, &params, &u, &health))
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
) -> Result<(), HealthError> {
    let addrs = resolver
        .lookup(&u.upstream.host, u.upstream.port, params.connect)
        .await?;
    let conn = dial(params, &addrs).await?;
    let (mut rd, mut wr) = (conn.reader, conn.writer);
    let mut assembler = ReplyAssembler::new(params.max_reply_lines, params.max_reply_bytes);
    // Preliminary replies (1xx) are skipped; the probe wants each final answer.
    let mut final_reply = async || -> Result<Reply, HealthError> {
        loop {
            let r = next_reply(&mut rd, &mut assembler).await?;
            if !r.is_preliminary() {
                return Ok(r);
            }
        }
    };
    let mut send = async |line: &[u8]| -> Result<(), HealthError> {
        let mut buf = BytesMut::new();
        encode_line(line, &mut buf);
        wr.write_all(&buf).await.map_err(HealthError::Write)
    };
    if let Some(HealthLogin { user, password }) = &health.login {
        send(format!("USER {user}").as_bytes()).await?;
        let mut r = final_reply().await?;
        if r.code == 331 {
            send(format!("PASS {password}").as_bytes()).await?;
            r = final_reply().await?;
        }
        if r.code != 230 {
            return Err(HealthError::Login { code: r.code });
        }
    }
    send(b"QUIT").await?;
    Ok(())
}
