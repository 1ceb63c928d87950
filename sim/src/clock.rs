//! Simulated time and the queue of what happens next. Events run in time order, ties in the
//! order they were queued: a run is the same every time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Simulated time since the run began, in nanoseconds.
pub type Time = u64;

/// `duration` as simulated time.
pub fn span(duration: Duration) -> Time {
    duration.as_nanos() as Time
}

/// `time` in seconds.
pub fn seconds(time: Time) -> f64 {
    time as f64 / 1e9
}

struct Entry<E> {
    at: Time,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events waiting for their time.
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    now: Time,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
        }
    }
}

impl<E> Queue<E> {
    /// The time of the event being run.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Queues `event` at `at` (never before now).
    pub fn at(&mut self, at: Time, event: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            event,
        });
    }

    /// Queues `event` `after` from now.
    pub fn after(&mut self, after: Time, event: E) {
        self.at(self.now + after, event);
    }

    /// When the next event is due.
    pub fn next_at(&self) -> Option<Time> {
        self.heap.peek().map(|e| e.at)
    }

    /// The next event, with the clock moved to its time.
    pub fn pop(&mut self) -> Option<E> {
        let entry = self.heap.pop()?;
        self.now = entry.at;
        Some(entry.event)
    }

    /// Events queued in all.
    pub fn queued(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_in_time_order_and_ties_in_queue_order() {
        let mut queue = Queue::default();
        queue.at(5, "late");
        queue.at(1, "first");
        queue.at(1, "second");
        assert_eq!(queue.pop(), Some("first"));
        queue.after(0, "now");
        assert_eq!(queue.pop(), Some("second"));
        assert_eq!(queue.pop(), Some("now"));
        assert_eq!(queue.pop(), Some("late"));
        assert_eq!(queue.now(), 5);
        assert_eq!(queue.pop(), None);
    }
}
