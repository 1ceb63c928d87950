//! Progress counters that long operations update and front ends poll (the CLI draws bars from
//! them, the HTTP port reports them). Plain atomics, cheap to update from many tasks, and the
//! bytes per peer, refreshed twice a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use swarm_proto::PeerId;

pub use crate::nat::Path;

/// Counters for one operation (hashing a directory, or one fetch).
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    peers: AtomicU64,
    /// Verified bytes per peer, refreshed every half second by a download.
    sources: Mutex<Vec<Source>>,
}

/// A peer a download receives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The peer.
    pub peer: PeerId,
    /// Verified bytes received from it.
    pub bytes: u64,
    /// How the connection to it runs.
    pub path: Path,
}

impl Progress {
    /// Sets the total number of bytes expected.
    pub fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }

    /// Adds to the total.
    pub fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` as done.
    pub fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets the bytes done (for a total made of several transfers).
    pub fn set_done(&self, bytes: u64) {
        self.done.store(bytes, Ordering::Relaxed);
    }

    /// Sets the number of peers currently in use.
    pub fn set_peers(&self, peers: u64) {
        self.peers.store(peers, Ordering::Relaxed);
    }

    /// Bytes expected in all.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Peers in use.
    pub fn peers(&self) -> u64 {
        self.peers.load(Ordering::Relaxed)
    }

    /// Records the verified bytes received from each peer so far.
    pub fn set_sources(&self, sources: Vec<Source>) {
        *self.sources.lock().expect("progress lock poisoned") = sources;
    }

    /// Verified bytes received from each peer, as last recorded (most first).
    pub fn sources(&self) -> Vec<Source> {
        let mut sources = self.sources.lock().expect("progress lock poisoned").clone();
        sources.sort_by_key(|s| (std::cmp::Reverse(s.bytes), s.peer));
        sources
    }
}
