//! Counters the proxy keeps about itself. Passed in (never global) so tests can watch one
//! instance: sessions, data transfers and port leases must return to zero.
//!
//! Two views of the same events: the process-wide atomics below (what tests, drain logs
//! and systemd's `STATUS=` read) and the labelled Prometheus [`families`] that `/metrics`
//! exports ([`text::encode`]).

pub mod families;
pub mod text;

pub use families::Families;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A gauge that goes up and down. It is a Prometheus gauge, so one that is also
/// exported (`transfers` as `ftpgate_transfers`) is the same value, not a copy.
#[derive(Debug, Default)]
pub struct Gauge(prometheus_client::metrics::gauge::Gauge);

impl Gauge {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn dec(&self) {
        self.0.dec();
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A counter that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub sessions: Gauge,
    pub sessions_total: Counter,
    pub sessions_refused: Counter,
    pub transfers: Gauge,
    pub transfers_total: Counter,
    pub transfers_failed: Counter,
    pub port_leases: Gauge,
    pub bytes_down: Counter,
    pub bytes_up: Counter,
    /// The exported families (`families::Families::register` puts them in a registry).
    pub families: Families,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families::default();
        Metrics {
            sessions: Gauge::default(),
            sessions_total: Counter::default(),
            sessions_refused: Counter::default(),
            // Shared with `ftpgate_transfers`: one gauge, two names for it.
            transfers: Gauge(families.transfers.clone()),
            transfers_total: Counter::default(),
            transfers_failed: Counter::default(),
            port_leases: Gauge::default(),
            bytes_down: Counter::default(),
            bytes_up: Counter::default(),
            families,
        }
    }
}

impl Metrics {
    /// A session of `listener` refused before (or while) reaching its server: the
    /// process-wide count and `ftpgate_sessions_refused_total{listener, reason}`.
    pub fn session_refused(&self, listener: &str, reason: families::SessionRefusal) {
        self.sessions_refused.add(1);
        self.families
            .sessions_refused
            .get_or_create(&families::RefusedLabels {
                listener: listener.to_string(),
                reason,
            })
            .inc();
    }

    /// `ftpgate_refusals_total{reason}` + 1.
    pub fn refused(&self, reason: families::Refusal) {
        self.families
            .refusals
            .get_or_create(&families::RefusalLabels { reason })
            .inc();
    }

    /// `ftpgate_tls_handshake_failures_total{leg, channel}` + 1.
    pub fn tls_failed(&self, leg: families::Leg, channel: families::Channel) {
        self.families
            .tls_handshake_failures
            .get_or_create(&families::TlsLabels { leg, channel })
            .inc();
    }

    /// A registry holding every family of this instance.
    pub fn registry(&self) -> prometheus_client::registry::Registry {
        let mut r = prometheus_client::registry::Registry::default();
        self.families.register(&mut r);
        r
    }
}

/// Holds one of the gauges of a [`Metrics`] up for as long as it lives, so a task counts
/// itself in and out on every path, panics and cancellation included.
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    pick: fn(&Metrics) -> &Gauge,
}

impl GaugeGuard {
    pub fn new(metrics: Arc<Metrics>, pick: fn(&Metrics) -> &Gauge) -> Self {
        pick(&metrics).inc();
        GaugeGuard { metrics, pick }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.pick)(&self.metrics).dec();
    }
}

/// Holds a Prometheus gauge (a labelled series) up for as long as it lives.
pub struct Held(prometheus_client::metrics::gauge::Gauge);

impl Held {
    pub fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}
