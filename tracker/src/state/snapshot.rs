//! The tracker's state as plain data (what a tracker joining a shared store starts from), and
//! the state restored from it.

use std::time::{Duration, Instant};

use swarm_proto::ShareId;

use super::{Snapshot, SnapshotFile, SnapshotPeer, TrackerState};
use crate::budget::Budgets;
use crate::shares::{ShareLog, Shares};

impl TrackerState {
    /// The state as plain data, with times as milliseconds before `now`: what a tracker
    /// joining a shared store starts from ([`TrackerState::restore`]). How often holders were
    /// handed out is left out (it only spreads load).
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let ago = |t: Instant| now.saturating_duration_since(t).as_millis() as u64;
        let files = self
            .files
            .values()
            .map(|r| SnapshotFile {
                manifest: (*r.manifest).clone(),
                charged: r.charged,
                unheld_ms: r.unheld_since.map(ago),
                retired: r.retired,
            })
            .collect();
        Snapshot {
            files,
            peers: self.snapshot_peers(now),
            shares: self.shares.snapshot(),
        }
    }

    /// The shares of [`TrackerState::snapshot`] alone.
    pub fn snapshot_shares(&self) -> Vec<(ShareId, ShareLog)> {
        self.shares.snapshot()
    }

    /// The peers of [`TrackerState::snapshot`] alone (the manifests are kept apart on disk).
    pub fn snapshot_peers(&self, now: Instant) -> Vec<SnapshotPeer> {
        let ago = |t: Instant| now.saturating_duration_since(t).as_millis() as u64;
        self.peers
            .iter()
            .map(|(id, p)| SnapshotPeer {
                peer: *id,
                addr: p.addr,
                ip: p.ip,
                silent_ms: ago(p.last_seen),
                holdings: p
                    .files
                    .iter()
                    .filter_map(|file| {
                        let holding = self.files.get(file)?.holding(id)?;
                        Some((*file, holding.chunks.clone(), holding.meta, holding.audited))
                    })
                    .collect(),
            })
            .collect()
    }

    /// A state rebuilt from `snapshot` as of `now`, with this tracker's timeout and budgets.
    /// Whatever those budgets refuse is left out.
    pub fn restore(snapshot: Snapshot, peer_timeout: Duration, budgets: Budgets, now: Instant) -> TrackerState {
        let before = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let mut state = TrackerState::new(peer_timeout, budgets);
        let mut unheld = Vec::new();
        for file in snapshot.files {
            let id = file.manifest.id();
            if state.add_manifest(file.manifest, file.charged, now).is_ok() {
                unheld.push((id, file.unheld_ms, file.retired));
            }
        }
        state.shares = Shares::restore(snapshot.shares);
        for (ip, bytes) in state.shares.charges() {
            // What was kept before is kept again, even past today's budgets.
            if state.usage.charge(&budgets, Some(ip), bytes).is_err() {
                state.usage.force_charge(Some(ip), bytes);
            }
        }
        for peer in snapshot.peers {
            if state.register(peer.peer, peer.addr, Vec::new(), peer.ip, now).is_err() {
                continue;
            }
            for (file, chunks, meta, audited) in peer.holdings {
                if state.join(peer.peer, file, chunks, meta, now).is_ok() && audited {
                    if let Some(record) = state.files.get_mut(&file) {
                        record.mark_audited(&peer.peer);
                    }
                }
            }
            if let Some(record) = state.peers.get_mut(&peer.peer) {
                record.last_seen = before(peer.silent_ms);
            }
        }
        for (id, unheld_ms, retired) in unheld {
            if let Some(record) = state.files.get_mut(&id) {
                if record.is_unheld() {
                    record.unheld_since = Some(before(unheld_ms.unwrap_or(0)));
                    record.retired = retired;
                }
            }
        }
        state
    }
}
