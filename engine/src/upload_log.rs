//! Who this node serves, in its log: a line when a peer starts fetching a file from it, and a
//! summary (bytes, time, rate) once that peer has been quiet for [`QUIET`] or the node stops.
//!
//! The tracker's spot checks come as strangers (a one-time key each, so that a holder cannot
//! serve checks alone honestly): a peer that took one chunk and went quiet is asked about
//! once [`ASK_AFTER`] has passed, and shown as the tracker's check if the tracker says it was.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_proto::protocol::UploadStatus;
use swarm_proto::{FileId, PeerId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::nat::WaysIn;
use crate::tracker_client::TrackerClient;

/// A peer that asked for nothing of a file this long is done with it, as far as the log goes.
pub const QUIET: Duration = Duration::from_secs(10);
/// How long a peer that took one chunk is quiet before the tracker is asked whether it was a
/// spot check: the tracker knows once the check has ended, a moment after the chunk arrived.
pub const ASK_AFTER: Duration = Duration::from_secs(2);
/// Failed asks in a row after which a node stops asking its tracker about checks (a tracker
/// of an earlier build does not know the question).
const ASKS_BEFORE_GIVING_UP: u32 = 3;

/// What one peer fetched of one file.
#[derive(Debug, Clone)]
struct Served {
    addr: SocketAddr,
    name: String,
    bytes: u64,
    chunks: u32,
    first: Instant,
    last: Instant,
    /// The tracker was asked whether this peer was its spot check.
    asked: bool,
    /// It said so.
    spot_check: bool,
}

/// The peers being served, by file.
#[derive(Default)]
pub struct UploadLog {
    served: Mutex<HashMap<(PeerId, FileId), Served>>,
    /// How peers came in (directly, through a punched hole, through a relay).
    ways_in: Arc<WaysIn>,
}

impl UploadLog {
    /// A log that tells how each peer came in by `ways_in`.
    pub fn new(ways_in: Arc<WaysIn>) -> UploadLog {
        UploadLog {
            served: Mutex::default(),
            ways_in,
        }
    }

    /// A chunk of `bytes` of `file` (named `name`) sent whole to `peer` at `addr`, at `now`.
    /// The first one to a peer is logged.
    pub fn record(&self, peer: PeerId, addr: SocketAddr, file: FileId, name: &str, bytes: u64, now: Instant) {
        let mut served = self.served.lock().expect("upload log lock poisoned");
        let entry = served.entry((peer, file)).or_insert_with(|| {
            // The request's span names the peer and its address.
            info!(file = %file.short(), name, "serving a new peer");
            Served {
                addr,
                name: name.to_owned(),
                bytes: 0,
                chunks: 0,
                first: now,
                last: now,
                asked: false,
                spot_check: false,
            }
        });
        entry.bytes += bytes;
        entry.chunks += 1;
        entry.last = now;
    }

    /// Every peer served in the last [`QUIET`] and what it fetched, busiest first.
    pub fn current(&self, now: Instant) -> Vec<UploadStatus> {
        let served = self.served.lock().expect("upload log lock poisoned");
        let mut list: Vec<UploadStatus> = served
            .iter()
            .map(|((peer, file), s)| {
                let seconds = now.saturating_duration_since(s.first).as_secs_f64().max(0.001);
                UploadStatus {
                    peer: *peer,
                    addr: s.addr,
                    file: *file,
                    name: s.name.clone(),
                    bytes: s.bytes,
                    chunks: s.chunks,
                    rate: (s.bytes as f64 / seconds) as u64,
                    idle_ms: now.saturating_duration_since(s.last).as_millis() as u64,
                    path: self.ways_in.path_of(s.addr).to_string(),
                    spot_check: s.spot_check,
                }
            })
            .collect();
        list.sort_by_key(|u| std::cmp::Reverse(u.bytes));
        list
    }

    /// The peers to ask the tracker about at `now`: each took one chunk of one file in all (as
    /// a check does; a fetcher of many small files is not asked about), is quiet for
    /// [`ASK_AFTER`], and was not asked about before (they are marked asked).
    pub fn to_ask(&self, now: Instant) -> Vec<PeerId> {
        let mut served = self.served.lock().expect("upload log lock poisoned");
        let mut entries: HashMap<PeerId, usize> = HashMap::new();
        for (peer, _) in served.keys() {
            *entries.entry(*peer).or_default() += 1;
        }
        served
            .iter_mut()
            .filter(|((peer, _), s)| {
                !s.asked && s.chunks == 1 && entries[peer] == 1 && now.saturating_duration_since(s.last) >= ASK_AFTER
            })
            .map(|((peer, _), s)| {
                s.asked = true;
                *peer
            })
            .collect()
    }

    /// Marks `checks` as the tracker's spot checks.
    pub fn mark_checks(&self, checks: &[PeerId]) {
        let mut served = self.served.lock().expect("upload log lock poisoned");
        for ((peer, _), s) in served.iter_mut() {
            if checks.contains(peer) {
                s.spot_check = true;
            }
        }
    }

    /// Logs a summary of every peer quiet since `now - QUIET` (every peer, if `all`) and
    /// forgets it. Returns how many were summed up.
    pub fn sweep(&self, now: Instant, all: bool) -> usize {
        let done: Vec<((PeerId, FileId), Served)> = self
            .served
            .lock()
            .expect("upload log lock poisoned")
            .extract_if(|_, s| all || now.saturating_duration_since(s.last) >= QUIET)
            .collect();
        for ((peer, file), s) in &done {
            let seconds = s.last.saturating_duration_since(s.first).as_secs_f64();
            let rate = s.bytes as f64 / seconds.max(0.001) / 1e6;
            if s.spot_check {
                info!(file = %file.short(), name = %s.name, "the tracker checked a chunk: it got it whole");
                continue;
            }
            info!(
                peer = %peer.short(),
                addr = %s.addr,
                file = %file.short(),
                name = %s.name,
                bytes = s.bytes,
                chunks = s.chunks,
                "served: {} in {seconds:.1} s ({rate:.1} MB/s)",
                bytesize::ByteSize(s.bytes)
            );
        }
        done.len()
    }
}

/// Sums up quiet peers every few seconds, and everyone when `shutdown` fires; asks `tracker`
/// (if the node has one) which peers were its spot checks, every second.
pub async fn sweep_until(log: Arc<UploadLog>, tracker: Option<Arc<TrackerClient>>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    let mut failed_asks = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                log.sweep(Instant::now(), true);
                return;
            }
            _ = ticker.tick() => {}
        }
        ticks += 1;
        if let Some(tracker) = tracker.as_ref().filter(|_| failed_asks < ASKS_BEFORE_GIVING_UP) {
            let peers = log.to_ask(Instant::now());
            if !peers.is_empty() {
                match tracker.which_were_checks(peers).await {
                    Ok(checks) => {
                        failed_asks = 0;
                        log.mark_checks(&checks);
                    }
                    Err(e) => {
                        failed_asks += 1;
                        debug!("could not ask the tracker which peers were its checks: {e}");
                    }
                }
            }
        }
        if ticks.is_multiple_of(QUIET.as_secs() / 2) {
            log.sweep(Instant::now(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_summed_up_once_quiet_and_only_then() {
        let log = UploadLog::default();
        let start = Instant::now();
        let (peer, file) = (PeerId([1; 32]), FileId([2; 32]));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        log.record(peer, addr, file, "a.bin", 1000, start);
        log.record(peer, addr, file, "a.bin", 500, start + Duration::from_secs(2));
        log.record(PeerId([3; 32]), addr, file, "a.bin", 7, start + Duration::from_secs(9));
        assert_eq!(
            log.sweep(start + Duration::from_secs(11), false),
            0,
            "2 s and 9 s: still active"
        );
        assert_eq!(
            log.sweep(start + Duration::from_secs(12), false),
            1,
            "the first peer is quiet"
        );
        assert_eq!(log.sweep(start + Duration::from_secs(12), false), 0, "and forgotten");
        assert_eq!(
            log.sweep(start + Duration::from_secs(12), true),
            1,
            "a stop sums up the rest"
        );
    }

    #[test]
    fn one_chunk_peers_are_asked_about_once_quiet_and_once_only() {
        let log = UploadLog::default();
        let start = Instant::now();
        let (check, fetcher, file) = (PeerId([1; 32]), PeerId([2; 32]), FileId([3; 32]));
        let small_files = PeerId([4; 32]);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        log.record(check, addr, file, "a.bin", 100, start);
        log.record(fetcher, addr, file, "a.bin", 100, start);
        log.record(fetcher, addr, file, "a.bin", 100, start);
        log.record(small_files, addr, file, "a.bin", 100, start);
        log.record(small_files, addr, FileId([5; 32]), "b.bin", 100, start);
        assert!(log.to_ask(start + ASK_AFTER / 2).is_empty(), "not quiet yet");
        assert_eq!(
            log.to_ask(start + ASK_AFTER),
            vec![check],
            "a peer of two chunks, or of one chunk of each of two files, is no check"
        );
        assert!(log.to_ask(start + ASK_AFTER * 2).is_empty(), "asked once");
        log.mark_checks(&[check]);
        let shown: Vec<(PeerId, bool)> = log.current(start).iter().map(|u| (u.peer, u.spot_check)).collect();
        assert!(
            shown.contains(&(check, true)) && shown.contains(&(fetcher, false)),
            "{shown:?}"
        );
    }
}
