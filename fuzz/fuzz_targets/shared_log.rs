//! What trackers read from a shared Redis: a log entry is applied to a state, and a snapshot
//! restored into one, without panicking, whatever the bytes.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use swarm_tracker::shared_log::{read_entry, read_snapshot};
use swarm_tracker::{Budgets, TrackerState};

fuzz_target!(|bytes: &[u8]| {
    let now = Instant::now() + Duration::from_secs(3600);
    let mut state = TrackerState::new(Duration::from_secs(60), Budgets::default());
    if let Ok(entry) = read_entry(bytes) {
        let _ = entry.change.apply(&mut state, now);
        let _ = state.expire(now + Duration::from_secs(120));
    }
    if let Ok(record) = read_snapshot(bytes) {
        let mut restored = TrackerState::restore(record.snapshot, Duration::from_secs(60), Budgets::default(), now);
        let _ = restored.list();
        let _ = restored.expire(now + Duration::from_secs(120));
    }
});
