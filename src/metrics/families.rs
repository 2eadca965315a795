//! The Prometheus metric families ftpgate exports (`prometheus-client`), registered into a
//! registry the caller owns. Labels are bounded by construction: listener and upstream
//! names come from the configuration, every other label is a closed enum. Never a client
//! address or a file name.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

/// Why a session was refused before (or while) reaching its server.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SessionRefusal {
    /// `acl.clients`.
    acl,
    /// `limits.max_sessions` or `limits.max_sessions_per_ip`.
    limit,
    /// No upstream could be reached, or the destination was refused.
    upstream,
    /// ftpgate is draining.
    shutdown,
    /// A trusted balancer's connection without a valid PROXY protocol header.
    proxy_protocol,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub listener: String,
    pub reason: SessionRefusal,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TransferDirection {
    download,
    upload,
    listing,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TransferResult {
    ok,
    failed,
    aborted,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    pub listener: String,
    pub direction: TransferDirection,
    pub result: TransferResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    pub direction: TransferDirection,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub listener: String,
    pub upstream: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    ok,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// What the proxy refused on a running session (`ftpgate_refusals_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Refusal {
    /// PORT/EPRT naming a third host (FTP bounce).
    bounce,
    /// A data connection from a host other than the session's peer.
    data_peer,
    /// A 227/229 from the server naming an address that is refused.
    pasv_address,
    /// A command denied by `acl.commands` or refused by the framing rules.
    command,
    /// A command refused by the TLS rules (`tls.mode: required`, `data: required`).
    tls_policy,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: Refusal,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Leg {
    client,
    server,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Channel {
    control,
    data,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsLabels {
    pub leg: Leg,
    pub channel: Channel,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~33 min: session setup sits at the low end, bulk transfers at the high.
    Histogram::new(exponential_buckets(0.001, 2.0, 22))
}

/// Every exported family. Cloning a family shares its values, so the registry holds
/// clones and the proxy updates through this struct.
#[derive(Debug, Clone)]
pub struct Families {
    pub sessions: Family<ListenerLabel, Gauge>,
    pub sessions_total: Family<ListenerLabel, Counter>,
    pub sessions_refused: Family<RefusedLabels, Counter>,
    pub transfers: Gauge,
    pub transfers_total: Family<TransferLabels, Counter>,
    pub transfer_bytes: Family<BytesLabels, Counter>,
    pub transfer_seconds: Histogram,
    pub upstream_up: Family<UpstreamLabels, Gauge>,
    pub passive_ports_in_use: Gauge,
    pub passive_ports: Gauge,
    pub active_ports_in_use: Gauge,
    pub active_ports: Gauge,
    pub session_setup_seconds: Histogram,
    pub config_reloads: Family<ReloadLabels, Counter>,
    pub refusals: Family<RefusalLabels, Counter>,
    pub tls_handshake_failures: Family<TlsLabels, Counter>,
    pub xferlog_dropped: Counter,
    pub draining: Gauge,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            sessions: Family::default(),
            sessions_total: Family::default(),
            sessions_refused: Family::default(),
            transfers: Gauge::default(),
            transfers_total: Family::default(),
            transfer_bytes: Family::default(),
            transfer_seconds: seconds_histogram(),
            upstream_up: Family::default(),
            passive_ports_in_use: Gauge::default(),
            passive_ports: Gauge::default(),
            active_ports_in_use: Gauge::default(),
            active_ports: Gauge::default(),
            session_setup_seconds: seconds_histogram(),
            config_reloads: Family::default(),
            refusals: Family::default(),
            tls_handshake_failures: Family::default(),
            xferlog_dropped: Counter::default(),
            draining: Gauge::default(),
        }
    }
}

impl Families {
    /// Registers every family. Counters are registered without `_total`: the encoder
    /// appends it (`ftpgate_sessions` counter is exported as `ftpgate_sessions_total`).
    pub fn register(&self, r: &mut Registry) {
        let f = self.clone();
        r.register("ftpgate_sessions", "Control sessions open now", f.sessions);
        r.register(
            "ftpgate_sessions",
            "Control sessions accepted",
            f.sessions_total,
        );
        r.register(
            "ftpgate_sessions_refused",
            "Sessions refused before reaching a server, by reason",
            f.sessions_refused,
        );
        r.register(
            "ftpgate_transfers",
            "Data transfers running now",
            f.transfers,
        );
        r.register(
            "ftpgate_transfers",
            "Data transfers finished, by direction and result",
            f.transfers_total,
        );
        r.register(
            "ftpgate_transfer_bytes",
            "Bytes relayed on data connections (file and listing payload)",
            f.transfer_bytes,
        );
        r.register(
            "ftpgate_transfer_seconds",
            "Duration of data transfers, from the transfer command to its end",
            f.transfer_seconds,
        );
        r.register(
            "ftpgate_upstream_up",
            "1 if the upstream passed its last health check",
            f.upstream_up,
        );
        r.register(
            "ftpgate_passive_ports_in_use",
            "Passive-range ports held by data listeners now",
            f.passive_ports_in_use,
        );
        r.register(
            "ftpgate_passive_ports",
            "Size of data.passive_ports",
            f.passive_ports,
        );
        r.register(
            "ftpgate_active_ports_in_use",
            "data.server_active_ports ports held by data listeners now",
            f.active_ports_in_use,
        );
        r.register(
            "ftpgate_active_ports",
            "Size of data.server_active_ports",
            f.active_ports,
        );
        r.register(
            "ftpgate_session_setup_seconds",
            "From accepting a client to relaying the server's greeting",
            f.session_setup_seconds,
        );
        r.register(
            "ftpgate_config_reloads",
            "Configuration reloads (SIGHUP), by result",
            f.config_reloads,
        );
        r.register(
            "ftpgate_refusals",
            "Commands, addresses and data connections refused on running sessions",
            f.refusals,
        );
        r.register(
            "ftpgate_tls_handshake_failures",
            "Failed TLS handshakes, by leg and channel",
            f.tls_handshake_failures,
        );
        r.register(
            "ftpgate_xferlog_dropped",
            "Transfer log lines dropped because the writer fell behind",
            f.xferlog_dropped,
        );
        r.register(
            "ftpgate_draining",
            "1 while ftpgate drains after SIGTERM/SIGINT",
            f.draining,
        );
    }
}
