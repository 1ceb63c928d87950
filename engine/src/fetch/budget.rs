//! The in-flight budget of one download: how many chunk requests may be outstanding at once,
//! across all peers. Each request holds its chunk in memory, so the budget bounds memory; it
//! also bounds how long a request waits behind the others on the fetcher's own link. A fixed
//! 16 MiB was a minute of queue on a 2 Mbit/s link: every request took longer than the stall
//! timeout, was abandoned half-sent and asked again, and the seeder sent its chunks twice.
//! So the budget follows the download rate: enough requests for [`QUEUE_TIME`] of data at the
//! rate measured, never fewer than [`MIN_IN_FLIGHT_BYTES`] or four chunks, never more than
//! [`IN_FLIGHT_BYTES`]. A fast link reaches the cap within a second or two.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most bytes of chunk data requested at once: it bounds a fetch's memory however many peers
/// serve it, and its speed to this much per round trip (160 MiB/s at 100 ms); 32 MiB bought
/// nothing on loopback or a LAN and took a 4-seeder fetch from 45 to 70 MB of memory.
pub const IN_FLIGHT_BYTES: u64 = 16 * 1024 * 1024;
/// Fewest bytes requested at once, whatever the rate: where a download starts.
pub const MIN_IN_FLIGHT_BYTES: u64 = 2 * 1024 * 1024;
/// Fewest requests at once.
const MIN_REQUESTS: usize = 4;
/// Most requests at once, however small the chunks.
const MAX_REQUESTS: u64 = 128;
/// Data in flight is kept to about this long at the measured rate: long enough to cover a
/// round trip across the world twice, short enough that a request is never near the stall
/// timeout merely for waiting its turn on the fetcher's link.
pub const QUEUE_TIME: Duration = Duration::from_secs(2);

/// Permits for requests in flight, their number following the download rate.
pub struct Budget {
    permits: Arc<Semaphore>,
    /// Permits in existence (held or not).
    size: AtomicUsize,
    min: usize,
    max: usize,
    chunk: u64,
}

impl Budget {
    /// A budget for chunks of `chunk` bytes, starting at its minimum.
    pub fn new(chunk: u64) -> Budget {
        let max = (IN_FLIGHT_BYTES / chunk).clamp(MIN_REQUESTS as u64, MAX_REQUESTS) as usize;
        let min = ((MIN_IN_FLIGHT_BYTES / chunk) as usize).clamp(MIN_REQUESTS, max);
        Budget {
            permits: Arc::new(Semaphore::new(min)),
            size: AtomicUsize::new(min),
            min,
            max,
            chunk,
        }
    }

    /// Waits for a permit to have one request in flight.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the budget is never closed")
    }

    /// Requests allowed in flight now.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Most requests ever allowed in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Resizes the budget for a download rate of `bytes_per_second`. It grows at once and
    /// shrinks as permits come back.
    pub fn follow(&self, bytes_per_second: f64) {
        let wanted = (bytes_per_second * QUEUE_TIME.as_secs_f64() / self.chunk as f64).ceil() as usize;
        let target = wanted.clamp(self.min, self.max);
        let size = self.size();
        if target > size {
            self.permits.add_permits(target - size);
            self.size.fetch_add(target - size, Ordering::Relaxed);
        } else if target < size {
            let forgotten = self.permits.forget_permits(size - target);
            self.size.fetch_sub(forgotten, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn starts_small_grows_with_the_rate_and_stops_at_the_cap() {
        let budget = Budget::new(MIB);
        assert_eq!(budget.size(), MIN_REQUESTS);
        budget.follow(3.0 * MIB as f64);
        assert_eq!(budget.size(), 6, "2 s at 3 MiB/s in 1 MiB chunks");
        budget.follow(1e12);
        assert_eq!(budget.size(), 16);
        budget.follow(0.0);
        assert_eq!(budget.size(), MIN_REQUESTS);
    }

    #[tokio::test]
    async fn shrinks_only_as_permits_come_back() {
        let budget = Budget::new(64 * 1024);
        budget.follow(1e12);
        assert_eq!(budget.size(), 128);
        let held: Vec<_> = futures_held(&budget, 120).await;
        budget.follow(0.0);
        assert_eq!(
            budget.size(),
            120,
            "the eight free permits forgotten, the held ones not yet"
        );
        drop(held);
        budget.follow(0.0);
        assert_eq!(budget.size(), 32, "2 MiB of 64 KiB chunks");
    }

    async fn futures_held(budget: &Budget, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(budget.acquire().await);
        }
        held
    }
}
