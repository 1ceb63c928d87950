//! The tracker's persistent catalogue: the manifests it knows, in sled (the one module that
//! uses sled here), so that a restarted tracker still answers for them while their holders
//! register again.

use std::path::{Path, PathBuf};

use swarm_proto::{codec, FileId, Manifest};
use tracing::warn;

use crate::error::TrackerError;

/// Bytes of sled's page cache: small, because every manifest is also in memory (in the
/// tracker state) and a big cache would keep a second copy of the catalogue.
const CACHE_BYTES: u64 = 8 << 20;

/// The manifests on disk.
pub struct CatalogueStore {
    manifests: sled::Tree,
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
        Ok(CatalogueStore { manifests, path })
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
}
