//! Bandwidth limits for data transfers (`limits.rate_per_session`, `limits.rate_total`)
//! with GCRA token buckets from `governor`. A transfer pays for the bytes it has moved
//! and waits until both its session's and the global bucket allow them; chunks are
//! capped at the bucket's burst so no single move overdraws it by much.

use governor::{DefaultDirectRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;

/// One token bucket, in bytes per second.
#[derive(Debug)]
pub struct RateLimit {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Arc<RateLimit> {
        let rate = u32::try_from(bytes_per_sec).unwrap_or(u32::MAX).max(1024);
        // A tenth of a second's worth, within [16 KiB, 1 MiB]: smooth enough for
        // slow links, few enough wake-ups for fast ones.
        let burst = (rate / 10).clamp(16 * 1024, 1024 * 1024);
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Arc::new(RateLimit {
            limiter: DefaultDirectRateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            burst,
        })
    }

    fn burst(&self) -> usize {
        self.burst.get() as usize
    }
}

/// The buckets one transfer pays into (its session's and the global one).
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    limits: Vec<Arc<RateLimit>>,
}

impl Throttle {
    pub fn new(limits: impl IntoIterator<Item = Arc<RateLimit>>) -> Throttle {
        Throttle {
            limits: limits.into_iter().collect(),
        }
    }

    /// The largest move allowed at once, if limited.
    pub fn max_chunk(&self) -> Option<usize> {
        self.limits.iter().map(|l| l.burst()).min()
    }

    /// Waits until every bucket has paid for `n` bytes.
    pub async fn consume(&self, n: usize) {
        for limit in &self.limits {
            let mut left = n;
            while left > 0 {
                let step = left.min(limit.burst());
                let cells = NonZeroU32::new(u32::try_from(step).unwrap_or(u32::MAX))
                    .unwrap_or(NonZeroU32::MIN);
                // `step` never exceeds the burst, so capacity is always sufficient.
                let _ = limit.limiter.until_n_ready(cells).await;
                left -= step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn paces_to_the_rate() {
        let t = Throttle::new([RateLimit::new(200 * 1024)]);
        assert_eq!(t.max_chunk(), Some(20 * 1024));
        let start = Instant::now();
        // The first burst is free; 100 KiB more at 200 KiB/s takes about half a second.
        for _ in 0..6 {
            t.consume(20 * 1024).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn unlimited_is_free() {
        let t = Throttle::default();
        assert_eq!(t.max_chunk(), None);
        t.consume(1 << 30).await;
    }
}
