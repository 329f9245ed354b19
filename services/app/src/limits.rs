//! Per-caller rate limiting: a token bucket per API key (per client address when no keys
//! are needed), so one busy client cannot starve the others of the CPU.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets kept before idle ones are dropped: bounds memory when many addresses call.
const PRUNE_ABOVE: usize = 4096;

/// One caller's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by caller: `burst` requests at once, refilled at `per_minute`.
pub struct RateLimiter {
    /// Tokens added per second; 0 means no limit.
    rate: f64,
    capacity: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute with bursts of `burst` (at least
    /// one); `per_minute` 0 turns it off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(per_minute) / 60.0,
            capacity: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is
    /// available (whole seconds, at least one, for `Retry-After`).
    pub fn check(&self, caller: &str) -> Result<(), u64> {
        self.check_at(caller, Instant::now())
    }

    fn check_at(&self, caller: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() > PRUNE_ABOVE {
            // A bucket that has refilled is the same as no bucket.
            buckets.retain(|_, b| self.refilled(b, now) < self.capacity);
        }
        let bucket = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate);
            Err(wait.as_secs_f64().ceil().max(1.0) as u64)
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.rate).min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let limiter = RateLimiter::new(60, 2);
        let start = Instant::now();
        assert!(limiter.check_at("k", start).is_ok());
        assert!(limiter.check_at("k", start).is_ok());
        assert_eq!(limiter.check_at("k", start), Err(1));
        // Another caller has its own bucket.
        assert!(limiter.check_at("other", start).is_ok());
        // One token a second comes back.
        assert!(
            limiter
                .check_at("k", start + Duration::from_millis(1000))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("k", start + Duration::from_millis(1100))
                .is_err()
        );
    }

    #[test]
    fn retry_after_counts_whole_seconds() {
        let limiter = RateLimiter::new(6, 1);
        let start = Instant::now();
        assert!(limiter.check_at("k", start).is_ok());
        assert_eq!(limiter.check_at("k", start), Err(10));
        assert_eq!(
            limiter.check_at("k", start + Duration::from_millis(500)),
            Err(10)
        );
    }

    #[test]
    fn zero_rate_is_off() {
        let limiter = RateLimiter::new(0, 1);
        for _ in 0..100 {
            assert!(limiter.check("k").is_ok());
        }
    }
}
