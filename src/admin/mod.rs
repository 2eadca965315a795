//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz`
//! (the process runs) and `GET /readyz` (the proxy's [`Readiness`]), HEAD for each.
//!
//! Off unless `admin.bind` is configured, and not an attack surface (SECURITY.md rule 14):
//! HTTP/1.1 only (hyper), a few connections at a time, headers capped in size and in time,
//! no request body read, every connection ended by a deadline, keep-alive included. Nothing
//! it returns names a client or a secret; the metric labels are bounded by construction
//! ([`crate::metrics::families`]).
//!
//! - `ready.rs`: the [`Readiness`] trait the proxy implements.
//! - `routes.rs`: request parts to a response, socket-free.
//! - `http.rs`: the accept loop and the bounds on each connection.

mod http;
mod ready;
mod routes;

pub use http::{serve, serve_with, Bounds};
pub use ready::{NotReady, Readiness};

use std::net::SocketAddr;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.bind: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The admin listener on `addr` (`admin.bind`). Bound before [`serve`] runs so that a
/// taken port fails start-up, with the key in the error. Call it inside the Tokio runtime,
/// as every other listener is made.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    // A scraper is a handful of connections: a short backlog is the queue beyond
    // `Bounds::max_connections`.
    crate::sockets::listener(addr, false, 16).map_err(|source| AdminError::Bind { addr, source })
}
