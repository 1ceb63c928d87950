//! A token bucket shared by every connection of a node, for `--max-upload-rate` and
//! `--max-download-rate`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits the bytes per second passed through it, across all tasks that share it.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// At most `bytes_per_sec` on average, with bursts of up to a tenth of a second's worth
    /// (at least 64 KiB).
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 10.0).max(64.0 * 1024.0);
        RateLimiter {
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
            }),
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `bytes` from the bucket, going into debt if needed, and returns how long to
    /// wait before sending them.
    fn take(&self, bytes: usize) -> Duration {
        let mut bucket = self.bucket.lock().expect("rate limiter lock poisoned");
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        bucket.tokens -= bytes as f64;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: usize) {
        let wait = self.take(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_turns_into_waiting() {
        let limiter = RateLimiter::new(1_000_000);
        assert_eq!(limiter.take(1000), Duration::ZERO, "within the burst");
        let wait = limiter.take(1_000_000);
        // 1 MB over a 100 kB burst at 1 MB/s: about 0.9 s of debt.
        assert!(
            wait > Duration::from_millis(800) && wait < Duration::from_millis(1000),
            "{wait:?}"
        );
    }
}
