//! systemd's readiness protocol (`Type=notify-reload`, sd_notify(3)) through the
//! `sd-notify` crate. Every call is a no-op without `NOTIFY_SOCKET`; a failed send is
//! logged at debug and never affects the proxy.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

/// Every listener is bound: `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts: `RELOADING=1` and `MONOTONIC_USEC=` (systemd 253+ requires both);
/// [`ready`] follows when it is done, whatever its result.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read CLOCK_MONOTONIC");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// The drain began: `STOPPING=1`.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A free-form `STATUS=` line (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}
