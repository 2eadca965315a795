//! Balancing policies as pure functions over indices: each returns the order in which to
//! try the healthy upstreams (the first that connects wins).

use super::UpstreamState;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Rotates through the list, one step per session.
pub fn round_robin(n: usize, start: usize) -> Vec<usize> {
    (0..n).map(|i| (start + i) % n.max(1)).collect()
}

/// Fewest active sessions first; ties broken by rotation so equal upstreams share load.
pub fn least_conn(active: &[usize], start: usize) -> Vec<usize> {
    let n = active.len();
    let mut order = round_robin(n, start);
    order.sort_by_key(|&i| active.get(i).copied().unwrap_or(usize::MAX));
    order
}

/// Rendezvous hashing on the client IP: a client sticks to one upstream, and when an
/// upstream is ejected only its own clients move. `ids` are stable upstream indices.
pub fn client_hash(ids: &[usize], client: IpAddr) -> Vec<usize> {
    let client = crate::proto::hostport::canonical_ip(client);
    let mut scored: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(pos, id)| {
            // DefaultHasher::new() uses fixed keys: the same client maps the same way
            // across sessions and restarts.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (client, *id).hash(&mut h);
            (h.finish(), pos)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().map(|(_, pos)| pos).collect()
}

/// Counts a session on an upstream for `least_conn` while it lives.
#[derive(Debug)]
pub struct UpstreamLease(Arc<UpstreamState>);

impl UpstreamLease {
    pub fn new(u: Arc<UpstreamState>) -> Self {
        u.active.fetch_add(1, Ordering::Relaxed);
        UpstreamLease(u)
    }
}

impl Drop for UpstreamLease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_rotates() {
        assert_eq!(round_robin(3, 0), vec![0, 1, 2]);
        assert_eq!(round_robin(3, 4), vec![1, 2, 0]);
        assert!(round_robin(0, 5).is_empty());
    }

    #[test]
    fn least_conn_prefers_idle() {
        assert_eq!(least_conn(&[5, 0, 2], 0), vec![1, 2, 0]);
        // Ties rotate.
        assert_eq!(least_conn(&[1, 1], 0)[0], 0);
        assert_eq!(least_conn(&[1, 1], 1)[0], 1);
    }

    #[test]
    fn client_hash_is_sticky_and_spreads() {
        let ids = [0, 1, 2];
        let mut hits = [0usize; 3];
        for i in 0..=255u8 {
            let ip = IpAddr::from([192, 0, 2, i]);
            let first = client_hash(&ids, ip)[0];
            assert_eq!(client_hash(&ids, ip)[0], first);
            hits[first] += 1;
        }
        assert!(hits.iter().all(|&h| h > 40), "{hits:?}");
        // Removing upstream 2 moves only the clients that were on it.
        for i in 0..=255u8 {
            let ip = IpAddr::from([192, 0, 2, i]);
            let before = ids[client_hash(&ids, ip)[0]];
            let after_ids = [0, 1];
            let after = after_ids[client_hash(&after_ids, ip)[0]];
            if before != 2 {
                assert_eq!(before, after);
            }
        }
    }
}
