//! Active health checks for a fixed route's upstreams: connect, wait for a 220 banner
//! (optionally log in), on a timer. `fall` consecutive failures eject an upstream, `rise`
//! consecutive successes re-admit it.

use super::{Router, UpstreamState};
use crate::config::{HealthConfig, HealthLogin};
use crate::proto::line::{encode_line, LineCodec};
use crate::proto::reply::{Reply, ReplyAssembler};
use crate::session::upstream::next_reply;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
        let source = router.config.source;
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(health.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let outcome =
                    tokio::time::timeout(health.timeout, probe(&u, &health, source)).await;
                let result = match outcome {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_string()),
                };
                if let Err(reason) = &result {
                    tracing::debug!(upstream = %u.upstream, %reason, "health check failed");
                }
                record(&u, result.is_ok(), health.fall, health.rise);
            }
        });
    }
}

async fn probe(
    u: &UpstreamState,
    health: &HealthConfig,
    source: Option<std::net::IpAddr>,
) -> Result<(), String> {
    let target = format!("{}:{}", u.upstream.host, u.upstream.port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|e| e.to_string())?
        .collect();
    let addr = addrs.first().ok_or("no address")?;
    let stream = crate::session::upstream::connect_from(*addr, source)
        .await
        .map_err(|e| e.to_string())?;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = FramedRead::new(rd, LineCodec::new(4096));
    let mut assembler = ReplyAssembler::new(64, 64 * 1024);
    // Preliminary replies (120, 1xx) are skipped; the probe wants each final answer.
    let mut final_reply = async || -> Result<Reply, String> {
        loop {
            let r = next_reply(&mut rd, &mut assembler).await?;
            if !r.is_preliminary() {
                return Ok(r);
            }
        }
    };
    let banner = final_reply().await?;
    if banner.code != 220 {
        return Err(format!("banner {}", banner.code));
    }
    let mut send = async |line: &[u8]| -> Result<(), String> {
        let mut buf = BytesMut::new();
        encode_line(line, &mut buf);
        wr.write_all(&buf).await.map_err(|e| e.to_string())
    };
    if let Some(HealthLogin { user, password }) = &health.login {
        send(format!("USER {user}").as_bytes()).await?;
        let mut r = final_reply().await?;
        if r.code == 331 {
            send(format!("PASS {password}").as_bytes()).await?;
            r = final_reply().await?;
        }
        if r.code != 230 {
            return Err(format!("login answered {}", r.code));
        }
    }
    send(b"QUIT").await?;
    Ok(())
}
