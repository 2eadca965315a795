//! Sessions per client IP, counted by RAII slots. The limit is read per acquire, so a
//! reload that changes `limits.max_sessions_per_ip` applies to the next session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub(super) struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

pub(super) struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(super) fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = crate::proto::hostport::canonical_ip(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_address_and_free_on_drop() {
        let t = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = t.acquire(a, 2).unwrap();
        let _s2 = t.acquire(a, 2).unwrap();
        assert!(t.acquire(a, 2).is_none());
        assert!(t.acquire(b, 2).is_some());
        drop(s1);
        assert!(t.acquire(a, 2).is_some());
        // A lower limit (a reload) applies at once to new sessions.
        assert!(t.acquire(a, 1).is_none());
    }
}
