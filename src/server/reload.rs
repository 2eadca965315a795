//! Hitless reload: a new configuration for new sessions, the old one for running ones.
//!
//! The file is parsed and validated exactly as at start. Then, under the state lock:
//! keys that cannot change live are compared ([`RESTART_ONLY`]); new listening sockets
//! are bound (any failure leaves everything as it was); new contexts are built (routers
//! with fresh health checks, port pools resized onto the same lease set, TLS material as
//! the new file names it); and only then is anything swapped. Listeners are identified
//! by their `bind` address: a kept address keeps its socket, so no connection attempt is
//! refused during a reload.

use super::{build, start_accepting, Inner, Slot, State};
use crate::config::{Config, ConfigError};
use crate::metrics::families::{ReloadLabels, ReloadResult};
use crate::route::spawn_health_checks;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Keys whose change a running ftpgate refuses: they shape process-wide state that
/// sessions share (the logger, the session semaphore, privileged sockets).
pub const RESTART_ONLY: &[&str] = &["log", "limits.max_sessions", "data.server_source_port_20"];

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("config key `{key}` cannot change while ftpgate runs; restart to apply it")]
    NeedsRestart { key: String },
    #[error("listener `{name}`: cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ftpgate is draining; no reload")]
    Draining,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Listener names by what happened to their socket.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

impl super::Control {
    /// Reads, validates and applies `path`; counts the outcome in
    /// `ftpgate_config_reloads_total`. On error the running configuration stays.
    pub async fn reload_from(&self, path: &Path) -> Result<ReloadReport, ReloadError> {
        let result = match crate::config::load(path) {
            Ok(cfg) => self.apply(cfg).await,
            Err(e) => Err(ReloadError::Config(e)),
        };
        self.count(&result);
        result
    }

    /// Applies an already validated configuration (counted like [`Self::reload_from`]).
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let result = self.apply(config).await;
        self.count(&result);
        result
    }

    fn count(&self, result: &Result<ReloadReport, ReloadError>) {
        let result = match result {
            Ok(_) => ReloadResult::ok,
            Err(_) => ReloadResult::failed,
        };
        self.inner
            .metrics
            .families
            .config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    async fn apply(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if inner.drain.is_cancelled() {
            return Err(ReloadError::Draining);
        }
        restart_only(&state.config, &config)?;
        let old_slots = inner.slots.load_full();
        // Which old socket each new listener keeps, or a new socket for it. Nothing is
        // swapped until every bind has succeeded.
        let mut taken = vec![false; old_slots.len()];
        let mut plan: Vec<Result<usize, tokio::net::TcpListener>> = Vec::new();
        for l in &config.listeners {
            let keep = old_slots
                .iter()
                .enumerate()
                .position(|(i, s)| !taken[i] && s.bind == l.bind && s.tproxy == l.route.tproxy);
            match keep {
                Some(i) => {
                    taken[i] = true;
                    plan.push(Ok(i));
                }
                None => {
                    let socket =
                        build::bind_listener(l).map_err(|(addr, source)| ReloadError::Bind {
                            name: l.name.clone(),
                            addr,
                            source,
                        })?;
                    plan.push(Err(socket));
                }
            }
        }
        let config = Arc::new(config);
        let next = State {
            passive_pool: if config.data.passive_ports == state.config.data.passive_ports {
                Arc::clone(&state.passive_pool)
            } else {
                state.passive_pool.resized(config.data.passive_ports)
            },
            active_pool: if config.data.server_active_ports == state.config.data.server_active_ports
            {
                Arc::clone(&state.active_pool)
            } else {
                state.active_pool.resized(config.data.server_active_ports)
            },
            rate_total: if config.limits.rate_total == state.config.limits.rate_total {
                state.rate_total.clone()
            } else {
                config.limits.rate_total.map(crate::data::RateLimit::new)
            },
            health: inner.drain.child_token(),
            config: Arc::clone(&config),
        };
        let mut report = ReloadReport::default();
        let mut slots: Vec<Arc<Slot>> = Vec::new();
        let mut fresh: Vec<Arc<Slot>> = Vec::new();
        for (index, step) in plan.into_iter().enumerate() {
            let l = &config.listeners[index];
            let previous = old_slots
                .iter()
                .map(|s| s.ctx.load_full())
                .find(|c| c.listener.name == l.name);
            let ctx = build::context(inner, &next, index, previous.as_ref().map(|c| &*c.router));
            match step {
                Ok(i) => {
                    let slot = Arc::clone(&old_slots[i]);
                    slot.ctx.store(ctx);
                    report.kept.push(l.name.clone());
                    slots.push(slot);
                }
                Err(socket) => {
                    let slot = build::slot(l, socket, ctx).map_err(|source| ReloadError::Bind {
                        name: l.name.clone(),
                        addr: l.bind,
                        source,
                    })?;
                    report.added.push(l.name.clone());
                    fresh.push(Arc::clone(&slot));
                    slots.push(slot);
                }
            }
        }
        for (i, old) in old_slots.iter().enumerate() {
            if !taken[i] {
                report.removed.push(old.ctx.load().listener.name.clone());
                old.stop.cancel();
            }
        }
        forget_upstreams(inner, &state.config, &config);
        state.health.cancel();
        let serving = inner.serving.load(std::sync::atomic::Ordering::Relaxed);
        for slot in &slots {
            if serving {
                spawn_health_checks(&slot.ctx.load().router, &inner.tracker, next.health.clone());
            }
        }
        inner.slots.store(Arc::new(slots));
        if serving {
            for slot in &fresh {
                start_accepting(inner, slot);
            }
        }
        *state = next;
        Ok(report)
    }
}

/// Refuses a change to a key that cannot change live, naming it.
fn restart_only(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let differs = |key: &str| -> bool {
        let pick = |c: &Config| -> Option<serde_yaml::Value> {
            let v = serde_yaml::to_value(c).ok()?;
            key.split('.').try_fold(v, |v, k| v.get(k).cloned())
        };
        pick(old) != pick(new)
    };
    if let Some(key) = RESTART_ONLY.iter().find(|k| differs(k)) {
        return Err(ReloadError::NeedsRestart {
            key: key.to_string(),
        });
    }
    // The same address with and without IP_TRANSPARENT would need a second socket on it.
    for (i, l) in new.listeners.iter().enumerate() {
        if old
            .listeners
            .iter()
            .any(|o| o.bind == l.bind && o.route.tproxy != l.route.tproxy)
        {
            return Err(ReloadError::NeedsRestart {
                key: format!("listeners[{i}].route.tproxy"),
            });
        }
    }
    Ok(())
}

/// Drops the `ftpgate_upstream_up` series of upstreams the new configuration no longer
/// has, so dashboards do not show them forever.
fn forget_upstreams(inner: &Inner, old: &Config, new: &Config) {
    let labels = |c: &Config| -> Vec<_> {
        c.listeners
            .iter()
            .flat_map(|l| {
                l.route
                    .upstreams
                    .iter()
                    .map(|u| crate::route::upstream_labels(&l.name, u))
            })
            .collect()
    };
    let keep = labels(new);
    for gone in labels(old).into_iter().filter(|l| !keep.contains(l)) {
        inner.metrics.families.upstream_up.remove(&gone);
    }
}
