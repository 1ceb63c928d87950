//! The tracker's persistent catalogue, in sled (the one module that uses sled here): the
//! manifests it knows, and every few seconds who holds what and the shares' listings, so that
//! a restarted tracker answers for files, their holders and shares at once, while the holders
//! register again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use swarm_proto::{codec, FileId, Manifest, ShareId};
use tracing::warn;

use crate::error::TrackerError;
use crate::shares::ShareLog;
use crate::state::SnapshotPeer;

/// The key of the saved state in the `holders` tree.
const HOLDERS_KEY: &[u8] = b"peers";

/// Who held what, and the shares, as saved.
#[derive(Serialize, Deserialize)]
struct SavedRecord {
    /// When it was saved, in milliseconds since the Unix epoch.
    saved_unix_ms: u64,
    /// The live peers then, with their holdings.
    peers: Vec<SnapshotPeer>,
    /// The shares' listings.
    shares: Vec<(ShareId, ShareLog)>,
}

/// What [`CatalogueStore::load_state`] found.
#[derive(Default)]
pub struct SavedState {
    /// The live peers, each one's silence grown by the time since the save.
    pub peers: Vec<SnapshotPeer>,
    /// The shares' listings.
    pub shares: Vec<(ShareId, ShareLog)>,
}

/// Bytes of sled's page cache: small, because every manifest is also in memory (in the
/// tracker state) and a big cache would keep a second copy of the catalogue.
const CACHE_BYTES: u64 = 8 << 20;

/// The manifests on disk.
pub struct CatalogueStore {
    manifests: sled::Tree,
    holders: sled::Tree,
    path: PathBuf,
}

impl CatalogueStore {
    /// Opens (creating if needed) the catalogue under `dir`. The caller holds the directory's
    /// lock.
    pub fn open(dir: &Path) -> Result<CatalogueStore, TrackerError> {
        let path = dir.join("tracker.sled");
        let error = |e: sled::Error| TrackerError::Store {
            path: path.clone(),
            message: e.to_string(),
        };
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(error)?;
        let manifests = db.open_tree("manifests").map_err(error)?;
        let holders = db.open_tree("holders").map_err(error)?;
        Ok(CatalogueStore {
            manifests,
            holders,
            path,
        })
    }

    /// Every stored manifest whose bytes still check out; unreadable ones are dropped.
    pub fn load(&self) -> Result<Vec<Manifest>, TrackerError> {
        let mut found = Vec::new();
        for item in self.manifests.iter() {
            let (key, value) = item.map_err(|e| TrackerError::Store {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            match codec::decode::<Manifest>(&value) {
                Ok(m) if m.id().as_bytes() == key.as_ref() => found.push(m),
                _ => {
                    warn!("dropping an unreadable manifest from {}", self.path.display());
                    let _ = self.manifests.remove(key);
                }
            }
        }
        Ok(found)
    }

    /// Stores `manifest` (best effort: a failure is logged, the tracker goes on).
    pub fn insert(&self, manifest: &Manifest) {
        if let Err(e) = self
            .manifests
            .insert(manifest.id().as_bytes(), manifest.canonical_bytes())
        {
            warn!("could not persist manifest {}: {e}", manifest.id().short());
        }
    }

    /// Forgets the manifest of `file`.
    pub fn remove(&self, file: &FileId) {
        if let Err(e) = self.manifests.remove(file.as_bytes()) {
            warn!("could not forget manifest {}: {e}", file.short());
        }
    }

    /// Saves who holds what and the shares (best effort: a failure is logged, the tracker
    /// goes on).
    pub fn save_state(&self, peers: Vec<SnapshotPeer>, shares: Vec<(ShareId, ShareLog)>) {
        let record = SavedRecord {
            saved_unix_ms: unix_ms(SystemTime::now()),
            peers,
            shares,
        };
        let saved = self
            .holders
            .insert(HOLDERS_KEY, codec::encode(&record))
            .and_then(|_| self.holders.flush());
        if let Err(e) = saved {
            warn!("could not save the holders to {}: {e}", self.path.display());
        }
    }

    /// The state last saved, each peer's silence grown by the time since (so that peers
    /// silent for too long expire as they would have), or nothing.
    pub fn load_state(&self) -> SavedState {
        let Ok(Some(bytes)) = self.holders.get(HOLDERS_KEY) else {
            return SavedState::default();
        };
        let Ok(record) = codec::decode_record::<SavedRecord>(&bytes) else {
            warn!("dropping an unreadable saved state from {}", self.path.display());
            return SavedState::default();
        };
        let down_ms = unix_ms(SystemTime::now()).saturating_sub(record.saved_unix_ms);
        let mut peers = record.peers;
        for peer in &mut peers {
            peer.silent_ms = peer.silent_ms.saturating_add(down_ms);
        }
        SavedState {
            peers,
            shares: record.shares,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
