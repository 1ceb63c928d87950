//! What a node's HTTP port remembers between requests: the fetches started through it that
//! ended, and download rates measured across status requests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use swarm_proto::{FileId, PeerId};

use crate::collection::CollectionReport;
use crate::view::EndedView;
use crate::Result;

/// Fetches started through the API that ended, newest last.
const FINISHED_KEPT: usize = 32;

/// The ends of the fetches started through the API, and the download rates last measured.
#[derive(Default)]
pub(super) struct Tally {
    ended: Mutex<VecDeque<EndedView>>,
    rates: Mutex<HashMap<(FileId, Option<PeerId>), Rate>>,
}

/// A download's rate, measured over the last 2 to 4 s of status requests: chunks land in
/// lumps, and a shorter window makes the figure jump.
struct Rate {
    older: (Instant, u64),
    newer: (Instant, u64),
}

/// The shortest span a rate is measured over, once the download has run that long.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

impl Tally {
    /// Records how a fetch of a file started through the API ended.
    pub(super) fn record(&self, id: FileId, name: &str, result: &Result<crate::FetchReport>, started: Instant) {
        let (name, path, size, error) = match result {
            Ok(report) => (
                report.manifest.name.clone(),
                Some(report.path.display().to_string()),
                Some(report.manifest.size),
                None,
            ),
            Err(e) => (name.to_owned(), None, None, Some(e.to_string())),
        };
        self.push(EndedView {
            id: id.to_string(),
            name,
            ok: error.is_none(),
            seconds: started.elapsed().as_secs_f64(),
            path,
            size,
            error,
        });
    }

    /// Records how a fetch of a folder started through the API ended: it failed if any of its
    /// files did (the first failure is given).
    pub(super) fn record_folder(&self, id: FileId, name: &str, result: &Result<CollectionReport>, started: Instant) {
        let (path, size, error) = match result {
            Ok(report) => (
                Some(report.root.display().to_string()),
                Some(report.done.iter().map(|(entry, _)| entry.size).sum()),
                report.failed.first().map(|(entry, e)| format!("{}: {e}", entry.path)),
            ),
            Err(e) => (None, None, Some(e.to_string())),
        };
        self.push(EndedView {
            id: id.to_string(),
            name: format!("{name}/"),
            ok: error.is_none(),
            seconds: started.elapsed().as_secs_f64(),
            path,
            size,
            error,
        });
    }

    fn push(&self, entry: EndedView) {
        let mut ended = self.ended.lock().expect("tally lock poisoned");
        ended.push_back(entry);
        while ended.len() > FINISHED_KEPT {
            ended.pop_front();
        }
    }

    /// The rate of download `id` (from `peer`, or from all) now that `done` bytes are done,
    /// over the last [`RATE_WINDOW`] to twice that.
    pub(super) fn rate(&self, id: FileId, peer: Option<PeerId>, done: u64, now: Instant) -> f64 {
        let mut rates = self.rates.lock().expect("rates lock poisoned");
        let rate = rates.entry((id, peer)).or_insert(Rate {
            older: (now, done),
            newer: (now, done),
        });
        if now.saturating_duration_since(rate.newer.0) >= RATE_WINDOW {
            rate.older = rate.newer;
            rate.newer = (now, done);
        }
        let (at, then) = rate.older;
        let seconds = now.saturating_duration_since(at).as_secs_f64();
        if seconds < 0.2 {
            return 0.0;
        }
        done.saturating_sub(then) as f64 / seconds
    }

    /// Forgets the rates of downloads not in `running`.
    pub(super) fn keep_rates_of(&self, running: &[FileId]) {
        self.rates
            .lock()
            .expect("rates lock poisoned")
            .retain(|(id, _), _| running.contains(id));
    }

    /// The fetches started through the API that ended, oldest first.
    pub(super) fn ended(&self) -> Vec<EndedView> {
        self.ended
            .lock()
            .expect("tally lock poisoned")
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_measured_over_two_to_four_seconds() {
        let finished = Tally::default();
        let id = FileId([7; 32]);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(finished.rate(id, None, 0, at(0)), 0.0);
        // 1 MB a second, arriving in lumps of 0.5 MB.
        assert_eq!(finished.rate(id, None, 1_000_000, at(1000)), 1_000_000.0);
        assert_eq!(finished.rate(id, None, 2_000_000, at(2000)), 1_000_000.0);
        let lumpy = finished.rate(id, None, 2_500_000, at(3000));
        assert!((lumpy - 833_333.3).abs() < 1.0, "window 0 to 3 s: {lumpy}");
        let steady = finished.rate(id, None, 4_000_000, at(4000));
        assert_eq!(steady, 1_000_000.0, "window 2 to 4 s");
        assert_eq!(
            finished.rate(id, Some(PeerId([1; 32])), 5, at(4000)),
            0.0,
            "each peer apart"
        );
    }
}
