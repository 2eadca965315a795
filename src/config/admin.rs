//! The `admin` section: where the HTTP endpoint for `/metrics`, `/healthz` and `/readyz`
//! listens. Checked against the other sockets ftpgate binds, so a clash is a load error
//! (and shows in `ftpgate check`) rather than a bind failure after the listeners are up.

use super::raw::RawAdmin;
use super::types::*;
use super::ConfigError;
use std::net::SocketAddr;

type Result<T> = std::result::Result<T, ConfigError>;

/// `admin`; `None` when the section is absent. A non-loopback address is allowed (a
/// container's scraper reaches it from outside) but warned about: the endpoint has no
/// authentication, only its bounds.
pub(super) fn admin(
    raw: Option<&RawAdmin>,
    listeners: &[ListenerConfig],
    data: &DataConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<AdminConfig>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let bind: SocketAddr = raw.bind.parse().map_err(|_| {
        ConfigError::invalid(
            "admin.bind",
            &raw.bind,
            "expected IP:port, e.g. 127.0.0.1:9121 or [::1]:9121",
        )
    })?;
    if bind.port() != 0 {
        if let Some(l) = listeners.iter().find(|l| clash(l.bind, bind)) {
            return Err(ConfigError::invalid(
                "admin.bind",
                bind,
                format!("same port as listener `{}`", l.name),
            ));
        }
        for (key, range) in [
            ("data.passive_ports", data.passive_ports),
            ("data.server_active_ports", data.server_active_ports),
        ] {
            if range.contains(bind.port()) {
                return Err(ConfigError::invalid(
                    "admin.bind",
                    bind,
                    format!("port inside {key}, which data listeners take"),
                ));
            }
        }
    }
    if !bind.ip().is_loopback() {
        warnings.push(format!(
            "admin.bind: {bind} is not a loopback address: /metrics, /healthz and /readyz answer anyone who can reach it; restrict it with a firewall"
        ));
    }
    Ok(Some(AdminConfig { bind }))
}

/// Two binds that cannot both succeed: one port, and one address or a wildcard (a
/// wildcard of either family may take the other family's port too, with dual-stack).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
