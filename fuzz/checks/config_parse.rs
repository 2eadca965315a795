//! `ftpgate::config::parse` on arbitrary UTF-8 text.
//!
//! Invariants checked:
//! - never panics (inputs that are not UTF-8 are skipped: the loader reads a `String`);
//! - every error renders with `Display`;
//! - every `Ok(Config)` satisfies what validation promises: at least one listener; data port
//!   ranges start at 1024 or above and are not inverted; buffer size 4k..=16M; every timeout
//!   in (0, 7 days]; counts within their documented bounds; rates >= 1k; upstream ports and
//!   destination-rule ports non-zero and ordered; and it serialises to YAML (what
//!   `ftpgate check` prints) without error.

use ftpgate::config::{parse, Config, PortRange};
use std::time::Duration;

fn check_range(name: &str, r: &PortRange) {
    assert!(r.first >= 1024, "{name}: first port {} < 1024", r.first);
    assert!(r.last >= r.first, "{name}: {}-{} inverted", r.first, r.last);
    assert!(!r.is_empty());
}

fn check(cfg: &Config) {
    assert!(!cfg.listeners.is_empty(), "no listeners");
    for l in &cfg.listeners {
        for u in &l.route.upstreams {
            assert_ne!(u.port, 0, "upstream {u} has port 0");
            assert!(!u.host.is_empty(), "upstream with empty host");
        }
        for rule in l.acl.servers.allow.iter().chain(&l.acl.servers.deny) {
            if let Some((a, b)) = rule.ports {
                assert!(a >= 1 && b >= a, "server rule {rule} has bad ports");
            }
        }
        if let Some(h) = &l.route.health {
            for d in [h.interval, h.timeout] {
                assert!(!d.is_zero(), "zero health duration");
            }
        }
    }
    check_range("data.passive_ports", &cfg.data.passive_ports);
    check_range("data.server_active_ports", &cfg.data.server_active_ports);
    assert!((4096..=16 * 1024 * 1024).contains(&cfg.data.buffer_size));

    let t = &cfg.timeouts;
    let week = Duration::from_secs(7 * 24 * 3600);
    for d in [
        t.connect,
        t.banner,
        t.idle,
        t.data_accept,
        t.data_stall,
        t.login,
        t.final_reply,
        t.shutdown_grace,
    ] {
        assert!(!d.is_zero() && d <= week, "timeout {d:?} out of range");
    }

    let lim = &cfg.limits;
    assert!((1..=1_000_000).contains(&lim.max_sessions));
    assert!((1..=1_000_000).contains(&lim.max_sessions_per_ip));
    assert!((512..=65536).contains(&lim.max_line));
    assert!((1..=1_000_000).contains(&lim.max_reply_lines));
    assert!((1..=1024).contains(&lim.max_queued_commands));
    for r in [lim.rate_per_session, lim.rate_total].into_iter().flatten() {
        assert!(r >= 1024, "rate {r} < 1k");
    }

    if let Err(e) = serde_yaml::to_string(cfg) {
        panic!("a valid config does not serialise (ftpgate check would fail): {e}");
    }
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "fuzz.yaml") {
        Ok(cfg) => check(&cfg),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
