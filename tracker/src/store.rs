//! The tracker's persistent catalogue: the manifests it knows, one file each, and, in sled (the
//! one module that uses sled here), every second who holds what and the shares' listings, so
//! that a restarted tracker answers for files, their holders and shares at once, while the
//! holders register again.
//!
//! Manifests are files, not sled values: sled keeps a big value (over about 128 KiB, a quarter
//! of its log segment) as a blob its cache counts as a few bytes, and keeps even smaller ones
//! well past its cache size while writing and reading them. Measured with 120 MiB of 2 MiB
//! manifests (`tracker-memory`), the tracker grew by 2.4x the bytes kept while running and by
//! 3.3x after a restart; a manifest's bytes are written once and never change, which files
//! under their content's name do well.

use std::io::Read;
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

/// The folder of the manifests, under the state directory.
const MANIFESTS_DIR: &str = "manifests";

/// The manifests and the saved holders on disk.
pub struct CatalogueStore {
    manifests: PathBuf,
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
        let open = || sled::Config::new().path(&path).cache_capacity(CACHE_BYTES).open();
        let db = match open() {
            // Holders are registered again by the peers themselves, and the manifests are in
            // files beside it: a damaged database is moved aside (kept), not a reason to stop.
            Err(sled::Error::Corruption { .. }) => {
                let aside = swarm_proto::dir_lock::set_aside(&path).map_err(|e| TrackerError::Store {
                    path: path.clone(),
                    message: format!("damaged, and it cannot be moved aside: {e}"),
                })?;
                tracing::warn!(
                    "the tracker's database {} was damaged; moved it aside to {} and started afresh: \
                     peers register their holdings again as they come back",
                    path.display(),
                    aside.display()
                );
                open().map_err(error)?
            }
            opened => opened.map_err(error)?,
        };
        let holders = db.open_tree("holders").map_err(error)?;
        let manifests = dir.join(MANIFESTS_DIR);
        std::fs::create_dir_all(&manifests).map_err(|e| TrackerError::Store {
            path: manifests.clone(),
            message: e.to_string(),
        })?;
        let store = CatalogueStore {
            manifests,
            holders,
            path,
        };
        store.move_out_of_sled(&db).map_err(|e| TrackerError::Store {
            path: store.path.clone(),
            message: e.to_string(),
        })?;
        Ok(store)
    }

    /// Moves the manifests an earlier version kept in sled into files.
    fn move_out_of_sled(&self, db: &sled::Db) -> sled::Result<()> {
        if !db.tree_names().iter().any(|name| name.as_ref() == b"manifests") {
            return Ok(());
        }
        for item in db.open_tree("manifests")?.iter() {
            let (_, bytes) = item?;
            if let Ok(manifest) = codec::decode::<Manifest>(&bytes) {
                self.insert(&manifest);
            }
        }
        db.drop_tree("manifests")?;
        Ok(())
    }

    /// The file of the manifest of `file`: named by its id, in a folder per first byte.
    fn file_of(&self, file: &FileId) -> PathBuf {
        let name = file.to_string();
        self.manifests.join(&name[..2]).join(name)
    }

    /// Every stored manifest whose bytes still check out; unreadable ones are dropped.
    pub fn load(&self) -> Result<Vec<Manifest>, TrackerError> {
        let unreadable = |e: std::io::Error, path: &Path| TrackerError::Store {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut found = Vec::new();
        // One buffer for every file: a fresh one per manifest left the allocator holding about
        // as much again as was kept (glibc keeps freed blocks of this size for reuse).
        let mut bytes = Vec::new();
        for folder in std::fs::read_dir(&self.manifests).map_err(|e| unreadable(e, &self.manifests))? {
            let folder = folder.map_err(|e| unreadable(e, &self.manifests))?.path();
            for entry in std::fs::read_dir(&folder).map_err(|e| unreadable(e, &folder))? {
                let path = entry.map_err(|e| unreadable(e, &folder))?.path();
                let named: Option<FileId> = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
                bytes.clear();
                let read = std::fs::File::open(&path).and_then(|mut file| file.read_to_end(&mut bytes));
                match (named, read.ok().map(|_| codec::decode::<Manifest>(&bytes))) {
                    (Some(id), Some(Ok(manifest))) if manifest.id() == id => found.push(manifest),
                    _ => {
                        // A half-written file of a crash, or damage: its holders announce it again.
                        warn!("dropping an unreadable manifest {}", path.display());
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Stores `manifest` (best effort: a failure is logged, the tracker goes on). Written under
    /// another name and renamed, so that the file is whole or absent.
    pub fn insert(&self, manifest: &Manifest) {
        let id = manifest.id();
        let path = self.file_of(&id);
        let partial = path.with_extension("partial");
        let written = std::fs::create_dir_all(path.parent().expect("in a folder"))
            .and_then(|_| std::fs::write(&partial, manifest.canonical_bytes()))
            .and_then(|_| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            warn!("could not persist manifest {} to {}: {e}", id.short(), path.display());
        }
    }

    /// Forgets the manifest of `file`.
    pub fn remove(&self, file: &FileId) {
        match std::fs::remove_file(self.file_of(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!("could not forget manifest {}: {e}", file.short())
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_database_is_set_aside_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        drop(CatalogueStore::open(dir.path()).unwrap());
        std::fs::write(dir.path().join("tracker.sled/conf"), b"not sled's settings").unwrap();
        CatalogueStore::open(dir.path()).expect("a fresh database in place of the damaged one");
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("tracker.sled.damaged-"))
            .count();
        assert_eq!(aside, 1, "the damaged one is kept beside it");
    }
    use crate::state::tests::manifest;

    fn ids(found: Vec<Manifest>) -> Vec<FileId> {
        let mut ids: Vec<FileId> = found.iter().map(Manifest::id).collect();
        ids.sort_by_key(|id| *id.as_bytes());
        ids
    }

    #[test]
    fn manifests_are_kept_until_forgotten_and_damage_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (manifest("a", 2), manifest("b", 3), manifest("c", 4));
        {
            let store = CatalogueStore::open(dir.path()).unwrap();
            for m in [&a, &b, &c] {
                store.insert(m);
            }
            store.remove(&b.id());
            store.remove(&b.id());
        }
        // A crash half way through a write, and a file damaged on disk.
        let store = CatalogueStore::open(dir.path()).unwrap();
        std::fs::write(store.file_of(&b.id()).with_extension("partial"), b"half").unwrap();
        let damaged = store.file_of(&c.id());
        let mut bytes = std::fs::read(&damaged).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&damaged, bytes).unwrap();

        assert_eq!(ids(store.load().unwrap()), vec![a.id()]);
        assert!(!damaged.exists(), "the damaged file is dropped");
        assert_eq!(ids(store.load().unwrap()), vec![a.id()]);
    }

    #[test]
    fn manifests_kept_in_sled_by_an_earlier_version_are_moved_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (manifest("a", 2), manifest("b", 300));
        {
            let db = sled::open(dir.path().join("tracker.sled")).unwrap();
            let tree = db.open_tree("manifests").unwrap();
            for m in [&a, &b] {
                tree.insert(m.id().as_bytes(), m.canonical_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let store = CatalogueStore::open(dir.path()).unwrap();
        let mut expected = vec![a.id(), b.id()];
        expected.sort_by_key(|id| *id.as_bytes());
        assert_eq!(ids(store.load().unwrap()), expected);
        assert!(store.file_of(&b.id()).exists());
        drop(store);
        let db = sled::open(dir.path().join("tracker.sled")).unwrap();
        assert!(!db.tree_names().iter().any(|name| name.as_ref() == b"manifests"));
    }
}
