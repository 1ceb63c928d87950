//! A token bucket shared by every connection of a node, for `--max-upload-rate` and
//! `--max-download-rate`, split evenly among the networks sending through it.
//!
//! Bytes are paced per network (a key the caller gives: the upload slots' [`network`] of the
//! peer; downloads use one key): each network that sent within the last [`ACTIVE`] or still
//! waits has a bucket refilled at the rate divided by the number of such networks. A network
//! with 24 uploads in flight and one with 4 then get half the cap each, not 24/28 and 4/28 as
//! a bucket shared per call gave; a network alone gets the whole cap.
//!
//! [`network`]: crate::uploads::network

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A network that sent nothing for this long, and waits for nothing, no longer takes a share.
pub const ACTIVE: Duration = Duration::from_millis(200);

/// Limits the bytes per second passed through it, across all tasks that share it.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// When what it took is paid for (its last sender waits until then).
    paid: Instant,
}

/// The key of callers that do not tell networks apart.
const EVERYONE: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl RateLimiter {
    /// At most `bytes_per_sec` on average, with bursts of up to a tenth of a second's worth
    /// (at least 64 KiB) shared among the networks sending.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 10.0).max(64.0 * 1024.0);
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Takes `bytes` from `network`'s bucket at `now`, going into debt if needed, and returns
    /// how long to wait before sending them.
    fn take(&self, network: IpAddr, bytes: usize, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        buckets.retain(|key, b| *key == network || now < b.paid + ACTIVE);
        let sharing = buckets.len() + usize::from(!buckets.contains_key(&network));
        let (rate, burst) = (self.rate / sharing as f64, self.burst / sharing as f64);
        let bucket = buckets.entry(network).or_insert(Bucket {
            tokens: burst,
            refilled: now,
            paid: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        bucket.tokens -= bytes as f64;
        let wait = if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / rate)
        };
        bucket.paid = now + wait;
        wait
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: usize) {
        self.acquire_for(EVERYONE, bytes).await
    }

    /// Waits until `bytes` sent to `network` may pass, at that network's share of the rate.
    pub async fn acquire_for(&self, network: IpAddr, bytes: usize) {
        let wait = self.take(network, bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 0));

    #[test]
    fn debt_turns_into_waiting() {
        let limiter = RateLimiter::new(1_000_000);
        let now = Instant::now();
        assert_eq!(limiter.take(EVERYONE, 1000, now), Duration::ZERO, "within the burst");
        let wait = limiter.take(EVERYONE, 1_000_000, now);
        // 1 MB over a 100 kB burst at 1 MB/s: about 0.9 s of debt.
        assert!(
            wait > Duration::from_millis(800) && wait < Duration::from_millis(1000),
            "{wait:?}"
        );
    }

    /// Streams sending `piece`-byte slices back to back from `at`, each from its network, for
    /// `time`: the bytes each network got through.
    fn simulate(limiter: &RateLimiter, streams: &[IpAddr], piece: usize, time: Duration) -> HashMap<IpAddr, u64> {
        let start = Instant::now();
        let mut next: Vec<Instant> = vec![start; streams.len()];
        let mut sent = HashMap::new();
        loop {
            let (i, &at) = next.iter().enumerate().min_by_key(|(_, at)| **at).unwrap();
            if at >= start + time {
                return sent;
            }
            let ready = at + limiter.take(streams[i], piece, at);
            if ready < start + time {
                *sent.entry(streams[i]).or_default() += piece as u64;
            }
            next[i] = ready;
        }
    }

    #[test]
    fn networks_share_the_rate_evenly_whatever_their_number_of_streams() {
        let limiter = RateLimiter::new(16_000_000);
        let mut streams = vec![A; 24];
        streams.extend([B; 4]);
        let sent = simulate(&limiter, &streams, 64 * 1024, Duration::from_secs(10));
        let (a, b) = (sent[&A] as f64, sent[&B] as f64);
        assert!((a / b - 1.0).abs() < 0.1, "24 streams got {a}, 4 streams {b}");
        assert!((a + b) / 10.0 < 16_500_000.0, "{} B/s in all", (a + b) / 10.0);
        assert!((a + b) / 10.0 > 15_000_000.0, "{} B/s in all", (a + b) / 10.0);
    }

    #[test]
    fn a_network_alone_gets_the_whole_rate() {
        let limiter = RateLimiter::new(16_000_000);
        let sent = simulate(&limiter, &[A; 8], 64 * 1024, Duration::from_secs(5));
        let rate = sent[&A] as f64 / 5.0;
        assert!(rate > 15_000_000.0 && rate < 16_500_000.0, "{rate} B/s");
        // Another network starting later gets half from then on, at once.
        let wait = limiter.take(B, 64 * 1024, Instant::now() + Duration::from_secs(5));
        assert!(wait < Duration::from_millis(10), "{wait:?}");
    }
}
