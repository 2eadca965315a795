//! ftpgate: a firewall- and NAT-aware FTP proxy (an FTP application-layer gateway).
//!
//! ftpgate terminates the FTP control connection on both sides, parses it, answers the
//! data-channel commands itself (PASV/EPSV/PORT/EPRT, RFC 959 and RFC 2428) and splices the
//! data connections, so that any client mode works against any server mode across NAT and
//! firewalls. See `../shared/SECURITY.md`-derived rules in the README's security model.
//!
//! # Layout
//! - [`proto`]: socket-free protocol core: line framing with Telnet handling, commands,
//!   replies with multi-line assembly, PORT/EPRT/227/229 encodings.
//! - [`config`]: the YAML file parsed into a typed [`config::Config`].
//! - [`server`]: listeners by bind address, admission (ACL, limits, PROXY headers), the
//!   [`server::Control`] handle signals act through: hitless reload (`arc-swap`), the
//!   drain, readiness.
//! - [`session`]: one task per control connection. [`session::core`] is the sans-IO state
//!   machine (inputs and `now` in, actions out; one phase enum; table-tested with a fake
//!   clock); `session::driver` owns the sockets, the clock and the data task and feeds it;
//!   address policy as pure functions in [`session::policy`].
//! - [`error`]: the side (client, server, internal) every layer's typed error reports.
//! - [`route`]: fixed upstreams with balancing and health checks, `USER user@host`,
//!   transparent destinations; opening the server leg ([`route::upstream`]) with the
//!   shared asynchronous [`route::Resolver`]; typed [`route::UpstreamError`]s with
//!   client-safe texts. [`policy`]: client and destination ACLs as pure functions.
//! - [`wire`]: control-connection I/O below both `session` and `route`: whole replies
//!   from a framed reader (the greeting, health probes).
//! - [`data`]: port pool with RAII leases, one-shot listeners with peer checks, the relay.
//! - [`stream`]: the stream trait the legs are written against; [`tls`]: FTPS on both legs.
//! - [`proxy_proto`]: PROXY protocol v1/v2 headers in (trusted balancers) and out.
//! - [`admin`]: the HTTP endpoint for `/metrics`, `/healthz` and `/readyz` (hyper).
//! - [`metrics`]: process-wide counters and the Prometheus families; [`xferlog`]: the
//!   transfer log; [`notify`]: systemd's readiness protocol; [`telemetry`], [`cli`].
//! - [`demo`]: `ftpgate demo`, an embedded FTP server behind ftpgate.

// Input from the network or the config must never panic the proxy.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod data;
pub mod demo;
pub mod error;
pub mod kernel;
pub mod metrics;
pub mod netinfo;
pub mod notify;
pub mod policy;
pub mod proto;
pub mod proxy_proto;
pub mod route;
pub mod server;
pub mod session;
pub mod sockets;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod wire;
pub mod xferlog;
