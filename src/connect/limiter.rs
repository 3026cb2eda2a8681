//! A client-side token bucket in front of Connect. Connect allows about 2 requests/s with a burst of 5
//! per account and Region, shared by every tool in the account; the operator stays under that instead
//! of meeting ThrottlingException. Reservations are handed out in order, so waiters are served FIFO.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second; 0 or less disables the limiter.
    pub per_second: f64,
    /// Bucket capacity.
    pub burst: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Self { per_second: 2.0, burst: 5.0 }
    }
}

struct Bucket {
    /// May go negative: a negative balance is the queue of reservations not yet due.
    tokens: f64,
    last: Instant,
}

/// One bucket per key (Region and credentials), all with the same rate.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// How long the caller must wait before its call; the token is taken now.
    pub fn reserve(&self, key: &str) -> Duration {
        if self.rate.per_second <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: self.rate.burst, last: now });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.rate.burst.max(1.0));
        bucket.last = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate.per_second)
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self, key: &str) -> Duration {
        let wait = self.reserve(key);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(Rate { per_second: 2.0, burst: 5.0 });
        let waits: Vec<Duration> = (0..9).map(|_| limiter.reserve("us-east-1")).collect();
        assert!(waits[..5].iter().all(|w| w.is_zero()), "the burst of 5 goes at once: {waits:?}");
        for (i, w) in waits[5..].iter().enumerate() {
            let expected = 0.5 * (i + 1) as f64;
            assert!((w.as_secs_f64() - expected).abs() < 0.05, "call {} waits {w:?}, expected {expected}s", i + 6);
        }
        assert!(limiter.reserve("eu-west-1").is_zero(), "Regions have their own buckets");
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = RateLimiter::new(Rate { per_second: 0.0, burst: 0.0 });
        assert!((0..100).all(|_| limiter.reserve("x").is_zero()));
    }
}
