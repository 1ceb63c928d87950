//! The in-flight budget of one download: how many chunk requests may be outstanding at once,
//! across all peers. Each request holds its chunk in memory, so the budget bounds memory; it
//! also bounds how long a request waits behind the others on the fetcher's own link. A fixed
//! 16 MiB was a minute of queue on a 2 Mbit/s link: every request took longer than the stall
//! timeout, was abandoned half-sent and asked again, and the seeder sent its chunks twice.
//! So the budget follows the download rate: enough requests for [`QUEUE_TIME`] of data at the
//! rate measured, never fewer than [`MIN_IN_FLIGHT_BYTES`] or four chunks, never more than
//! [`IN_FLIGHT_BYTES`]. Until the first rate is measured, each request answered adds one
//! more (doubling the budget every round trip, as TCP's slow start does): a fast path reaches
//! the cap within a few round trips instead of waiting for the first measurement, while on a
//! slow link no request is answered that soon.
//!
//! On a long fat path that cap is what limits: 16 MiB per round trip is 160 MiB/s at 100 ms.
//! There the cap itself follows the bandwidth-delay product measured (the rate times the
//! longest round trip of the peers serving, stretched by resends: [`round_trip_counted`]),
//! with a margin of [`BDP_MARGIN`], up to [`LONG_PATH_IN_FLIGHT_BYTES`], so that a fetch's
//! memory stays under 64 MiB; a peer gets at most 48 requests of it, what a chunk server
//! keeps sending to one distant peer at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::policy::PACE_EVERY;

/// Most bytes of chunk data requested at once: it bounds a fetch's memory however many peers
/// serve it, and its speed to this much per round trip (160 MiB/s at 100 ms); 32 MiB bought
/// nothing on loopback or a LAN and took a 4-seeder fetch from 45 to 70 MB of memory.
pub const IN_FLIGHT_BYTES: u64 = 16 * 1024 * 1024;
/// Most bytes of chunk data ever requested at once, on the longest and fastest paths.
pub const LONG_PATH_IN_FLIGHT_BYTES: u64 = 48 * 1024 * 1024;
/// The cap covers this many bandwidth-delay products: a request waits a round trip to be
/// answered, and the chunks being written and read back hold their permits meanwhile.
pub const BDP_MARGIN: f64 = 2.0;
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

/// Most round trips a chunk's request counts as ([`round_trip_counted`]): the request, the
/// chunk, and a resend of what was lost.
const STRETCHED_ROUND_TRIPS: u32 = 3;

/// The round trip the budget's cap counts for a chunk asked for over a path of round trip
/// `rtt` and delivered `took` later: the request's own time where loss stretched it (a chunk
/// with a packet resent takes a round trip more; at 0.5% loss, nearly every chunk of 1 MiB),
/// up to three round trips, so that the queueing a fetch causes itself on
/// a short path stays out (three round trips of loopback are nothing). Counting the path's
/// round trip alone held four seeders at 100 ms with 0.5% loss to 49% of their links.
pub fn round_trip_counted(rtt: Duration, took: Duration) -> Duration {
    took.clamp(rtt, STRETCHED_ROUND_TRIPS * rtt)
}

/// Bytes requested from one peer at once: enough to keep a fast link busy.
const PIPELINE_BYTES: u64 = 16 * 1024 * 1024;
/// Requests in flight per peer, whatever the chunk size: two keep a peer sending while the
/// next request travels.
const MIN_LANES: u64 = 2;
/// Most requests in flight per peer on a short path: what a chunk server takes from a near peer
/// at once (16 sending, 16 waiting, `uploads::Limits::SERVER`); more are refused `Busy`.
const MAX_LANES: u64 = 32;
/// Most requests in flight per peer on a long fat path: what a chunk server keeps sending to a
/// peer of the longest reach (3 x 16, `uploads::Asker`), the next requests' round trip hidden
/// behind them. A chunk server of an older version takes 32 and refuses the rest `Busy`.
const LONG_PATH_LANES: u64 = 48;

/// Permits for requests in flight, their number following the download rate.
pub struct Budget {
    permits: Arc<Semaphore>,
    /// Permits in existence (held or not).
    size: AtomicUsize,
    min: usize,
    /// The cap on a short path.
    max: usize,
    /// The cap on the longest and fastest paths.
    ceiling: usize,
    /// The cap now, between `max` and `ceiling`.
    cap: AtomicUsize,
    /// A rate was measured: the budget follows it, and no longer grows with each answer.
    measured: AtomicBool,
    chunk: u64,
    /// Requests in flight to one peer at most, on a short path.
    per_peer: u64,
}

impl Budget {
    /// A budget for chunks of `chunk` bytes, starting at its minimum.
    pub fn new(chunk: u64) -> Budget {
        let max = (IN_FLIGHT_BYTES / chunk).clamp(MIN_REQUESTS as u64, MAX_REQUESTS) as usize;
        let ceiling = (LONG_PATH_IN_FLIGHT_BYTES / chunk).clamp(max as u64, 3 * MAX_REQUESTS) as usize;
        let min = ((MIN_IN_FLIGHT_BYTES / chunk) as usize).clamp(MIN_REQUESTS, max);
        Budget {
            permits: Arc::new(Semaphore::new(min)),
            size: AtomicUsize::new(min),
            min,
            max,
            ceiling,
            cap: AtomicUsize::new(max),
            measured: AtomicBool::new(false),
            chunk,
            per_peer: (PIPELINE_BYTES / chunk).clamp(MIN_LANES, MAX_LANES),
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

    /// Most requests ever allowed in flight, on the longest and fastest paths.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// How many times the short-path cap the cap is now (1 but on long fat paths).
    pub fn stretch(&self) -> f64 {
        self.cap.load(Ordering::Relaxed) as f64 / self.max as f64
    }

    /// Requests in flight to each of `workers` peers: an even share of the budget, at least
    /// two and at most a pipeline's worth (stretched on long fat paths, as the cap is).
    pub fn lanes_per_peer(&self, workers: usize) -> usize {
        let pipeline = ((self.per_peer as f64 * self.stretch()) as u64).min(LONG_PATH_LANES);
        (self.size() as u64 / workers.max(1) as u64).clamp(MIN_LANES, pipeline) as usize
    }

    /// A request was answered. Until a rate is measured, the budget grows by one; says whether
    /// it did.
    pub fn answered(&self) -> bool {
        if self.measured.load(Ordering::Relaxed) {
            return false;
        }
        let grown = self
            .size
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if grown {
            self.permits.add_permits(1);
        }
        grown
    }

    /// Resizes the budget for a download rate of `bytes_per_second` over paths whose longest
    /// round trip is `rtt`. It grows at once and shrinks as permits come back.
    pub fn follow(&self, bytes_per_second: f64, rtt: Duration) {
        if bytes_per_second > 0.0 {
            self.measured.store(true, Ordering::Relaxed);
        }
        let chunks = |bytes: f64| (bytes / self.chunk as f64).ceil() as usize;
        let cap = chunks(BDP_MARGIN * bytes_per_second * rtt.as_secs_f64()).clamp(self.max, self.ceiling);
        self.cap.store(cap, Ordering::Relaxed);
        let target = chunks(bytes_per_second * QUEUE_TIME.as_secs_f64()).clamp(self.min, cap);
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

/// The download rate, measured every [`PACE_EVERY`]: it rises at once and falls over a few
/// seconds (chunks arrive in lumps).
pub struct Rate {
    done: u64,
    per_second: f64,
}

impl Rate {
    /// A rate measured from `done` bytes on.
    pub fn new(done: u64) -> Rate {
        Rate { done, per_second: 0.0 }
    }

    /// The rate, given the bytes done now.
    pub fn sample(&mut self, done: u64) -> f64 {
        let now = done.saturating_sub(self.done) as f64 / PACE_EVERY.as_secs_f64();
        self.done = done;
        self.per_second = now.max(0.95 * self.per_second + 0.05 * now);
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_round_trip_counts_resends_but_not_a_fetchs_own_queue() {
        let ms = Duration::from_millis;
        // Loss: a resend took the chunk a round trip and a half more.
        assert_eq!(round_trip_counted(ms(100), ms(250)), ms(250));
        // Loopback: a chunk that waited 40 ms behind the fetch's own others counts 3 round trips.
        assert_eq!(
            round_trip_counted(Duration::from_micros(100), ms(40)),
            Duration::from_micros(300)
        );
        assert_eq!(round_trip_counted(ms(100), ms(900)), ms(300));
        // Never less than the path's round trip.
        assert_eq!(round_trip_counted(ms(100), ms(60)), ms(100));
    }

    #[test]
    fn starts_small_grows_with_the_rate_and_stops_at_the_cap() {
        let budget = Budget::new(MIB);
        assert_eq!(budget.size(), MIN_REQUESTS);
        let lan = Duration::from_millis(1);
        budget.follow(3.0 * MIB as f64, lan);
        assert_eq!(budget.size(), 6, "2 s at 3 MiB/s in 1 MiB chunks");
        budget.follow(1e9, lan);
        assert_eq!(budget.size(), 16);
        assert_eq!(budget.stretch(), 1.0);
        budget.follow(0.0, lan);
        assert_eq!(budget.size(), MIN_REQUESTS);
    }

    #[test]
    fn grows_with_each_answer_until_a_rate_is_measured() {
        let budget = Budget::new(MIB);
        budget.follow(0.0, Duration::ZERO);
        for _ in 0..4 {
            assert!(budget.answered());
        }
        assert_eq!(budget.size(), 8, "doubled in one round trip of four answers");
        for _ in 0..20 {
            budget.answered();
        }
        assert_eq!(budget.size(), 16, "never past the cap");
        // Measured at 3 MiB/s, the budget follows the rate, and answers change nothing.
        budget.follow(3.0 * MIB as f64, Duration::from_millis(1));
        assert!(!budget.answered());
        assert_eq!(budget.size(), 6);
    }

    #[test]
    fn on_a_long_fat_path_the_cap_follows_the_bandwidth_delay_product() {
        let budget = Budget::new(MIB);
        // 125 MB/s at 50 ms: twice the product is 12.5 MB, under the usual cap.
        budget.follow(125e6, Duration::from_millis(50));
        assert_eq!(budget.size(), 16);
        // At 100 ms it is 25 MB: 24 chunks.
        budget.follow(125e6, Duration::from_millis(100));
        assert_eq!(budget.size(), 24);
        assert_eq!(budget.stretch(), 1.5);
        // However long and fast the path, never more than the memory bound.
        budget.follow(1.25e9, Duration::from_millis(300));
        assert_eq!(budget.size(), 48);
        assert_eq!(budget.ceiling(), 48);
        // Back on a short path the cap comes down, as permits come back.
        budget.follow(1.25e9, Duration::from_millis(1));
        assert_eq!(budget.size(), 16);
    }

    #[tokio::test]
    async fn shrinks_only_as_permits_come_back() {
        let budget = Budget::new(64 * 1024);
        let lan = Duration::from_millis(1);
        budget.follow(1e9, lan);
        assert_eq!(budget.size(), 128);
        let held: Vec<_> = futures_held(&budget, 120).await;
        budget.follow(0.0, lan);
        assert_eq!(
            budget.size(),
            120,
            "the eight free permits forgotten, the held ones not yet"
        );
        drop(held);
        budget.follow(0.0, lan);
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
