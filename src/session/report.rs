//! What a finished transfer leaves behind: one structured `transfer` event in the log,
//! the transfer metrics, and (file transfers) a line in the transfer log.

use super::core::{Addrs, TransferRecord};
use super::SessionContext;
use crate::metrics::families::{BytesLabels, TransferLabels, TransferResult};

pub(super) fn transfer(ctx: &SessionContext, addrs: &Addrs, r: &TransferRecord) {
    let seconds = r.ended.saturating_duration_since(r.started).as_secs_f64();
    let path = escaped(&r.path);
    let user = r.user.as_deref().map(escaped).unwrap_or_default();
    let result = match r.result {
        TransferResult::ok => "ok",
        TransferResult::failed => "failed",
        TransferResult::aborted => "aborted",
    };
    tracing::info!(
        client = %addrs.client_peer,
        server = %addrs.server_peer,
        user = %user,
        command = %r.command,
        path = %path,
        bytes = r.bytes,
        duration_ms = (seconds * 1000.0).round() as u64,
        result,
        code = r.code,
        "transfer"
    );
    let f = &ctx.metrics.families;
    let listener = ctx.listener.name.clone();
    f.transfers_total
        .get_or_create(&TransferLabels {
            listener: listener.clone(),
            direction: r.direction,
            result: r.result,
        })
        .inc();
    f.transfer_bytes
        .get_or_create(&BytesLabels {
            listener,
            direction: r.direction,
        })
        .inc_by(r.bytes);
    f.transfer_seconds.observe(seconds);
    if let Some(log) = &ctx.xferlog {
        log.record(r, addrs.client_peer.ip());
    }
}

/// Lossy UTF-8 with control characters escaped: a path in a log line is data, never a
/// terminal sequence or a second line.
fn escaped(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}
