//! One direction of an emulated path: a bottleneck of a given rate with a first-in first-out
//! buffer (drop-tail), then a propagation delay with jitter, and random loss; datagrams larger
//! than the path's MTU are dropped, as a router does those it may not fragment. [`Link::admit`]
//! decides each datagram's fate: dropped, or the instant it leaves the far end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one direction of the path does to datagrams.
#[derive(Clone, Debug)]
pub struct Shape {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0 to this, per datagram (order is kept).
    pub jitter: Duration,
    /// Chance that a datagram is lost, from 0 to 1.
    pub loss: f64,
    /// Bottleneck rate in bytes per second; `None`: no cap.
    pub rate: Option<f64>,
    /// Longest a datagram may wait in the bottleneck's buffer; beyond it, it is dropped.
    pub buffer: Duration,
    /// Largest UDP payload the path carries (its MTU less the IP and UDP headers); larger
    /// datagrams are dropped. `None`: any size.
    pub max_datagram: Option<usize>,
}

/// A direction of the path, shared by every flow through it.
pub struct Link {
    shape: Shape,
    state: Mutex<State>,
}

struct State {
    /// When the bottleneck finishes sending what it has queued.
    free_at: Instant,
    /// When the last admitted datagram leaves: none leaves before it (no reordering).
    last_due: Instant,
    /// Counters for the summary.
    passed: u64,
    lost: u64,
    overflowed: u64,
    oversized: u64,
}

/// Totals of one direction.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// Bytes delivered.
    pub passed: u64,
    /// Datagrams dropped at random.
    pub lost: u64,
    /// Datagrams dropped because the buffer was full.
    pub overflowed: u64,
    /// Datagrams dropped because they were larger than the path carries.
    pub oversized: u64,
}

impl Link {
    /// A direction shaped as `shape`.
    pub fn new(shape: Shape) -> Link {
        let now = Instant::now();
        Link {
            shape,
            state: Mutex::new(State {
                free_at: now,
                last_due: now,
                passed: 0,
                lost: 0,
                overflowed: 0,
                oversized: 0,
            }),
        }
    }

    /// The fate of a datagram of `len` bytes arriving `now`: `None` if dropped, else when it
    /// is to be delivered.
    pub fn admit(&self, len: usize, now: Instant) -> Option<Instant> {
        let lost = self.shape.loss > 0.0 && rand::random::<f64>() < self.shape.loss;
        let jitter = if self.shape.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.shape.jitter.mul_f64(rand::random::<f64>())
        };
        let mut state = self.state.lock().expect("no panic while held");
        if self.shape.max_datagram.is_some_and(|max| len > max) {
            state.oversized += 1;
            return None;
        }
        if lost {
            state.lost += 1;
            return None;
        }
        let departs = match self.shape.rate {
            None => now,
            Some(rate) => {
                let start = state.free_at.max(now);
                if start - now > self.shape.buffer {
                    state.overflowed += 1;
                    return None;
                }
                state.free_at = start + Duration::from_secs_f64(len as f64 / rate);
                state.free_at
            }
        };
        let due = (departs + self.shape.delay + jitter).max(state.last_due);
        state.last_due = due;
        state.passed += len as u64;
        Some(due)
    }

    /// What has passed and been dropped so far.
    pub fn tally(&self) -> Tally {
        let state = self.state.lock().expect("no panic while held");
        Tally {
            passed: state.passed,
            lost: state.lost,
            overflowed: state.overflowed,
            oversized: state.oversized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            delay: Duration::from_millis(25),
            jitter: Duration::ZERO,
            loss: 0.0,
            rate: None,
            buffer: Duration::from_millis(50),
            max_datagram: Some(1472),
        }
    }

    #[test]
    fn drops_datagrams_larger_than_the_path_carries() {
        let link = Link::new(shape());
        let now = Instant::now();
        assert!(link.admit(1472, now).is_some());
        assert_eq!(link.admit(1473, now), None);
        assert_eq!(link.tally().oversized, 1);
    }

    #[test]
    fn delays_every_datagram_by_the_one_way_delay() {
        let link = Link::new(shape());
        let now = Instant::now();
        assert_eq!(link.admit(1200, now), Some(now + Duration::from_millis(25)));
    }

    #[test]
    fn spaces_datagrams_at_the_rate_and_drops_what_the_buffer_cannot_hold() {
        // 1,000 bytes a millisecond, a 50 ms buffer: 50 datagrams of 1,000 bytes fit.
        let link = Link::new(Shape {
            rate: Some(1e6),
            ..shape()
        });
        let now = Instant::now();
        let dues: Vec<_> = (0..60).map(|_| link.admit(1000, now)).collect();
        assert_eq!(dues[0], Some(now + Duration::from_millis(26)));
        assert_eq!(dues[9], Some(now + Duration::from_millis(35)));
        assert_eq!(dues.iter().filter(|d| d.is_some()).count(), 51);
        assert_eq!(link.tally().overflowed, 9);
    }

    #[test]
    fn loses_about_the_share_asked_for_and_never_reorders() {
        let link = Link::new(Shape {
            loss: 0.1,
            jitter: Duration::from_millis(5),
            ..shape()
        });
        let now = Instant::now();
        let dues: Vec<_> = (0..10_000).filter_map(|_| link.admit(1200, now)).collect();
        assert!((8_500..9_500).contains(&dues.len()), "{} delivered", dues.len());
        assert!(dues.windows(2).all(|pair| pair[0] <= pair[1]));
    }
}
