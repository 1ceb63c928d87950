//! A node's persistent state in sled, under its state directory: its downloads in progress.

use std::path::{Path, PathBuf};

use crate::bitfield::Bitfield;
use crate::error::{Error, Result};
use crate::ids::FileId;
use crate::manifest::{canonical_config, Manifest};

/// The node's sled database.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    path: PathBuf,
}

/// What is remembered of a download between runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DownloadRecord {
    /// The file's manifest.
    pub manifest: Manifest,
    /// The partial file being written.
    pub partial: PathBuf,
    /// Chunks verified and written there.
    pub chunks: Bitfield,
}

/// Opens the sled database at `path`, turning the lock held by another process into an error
/// that says what to do.
pub fn open_sled(path: &Path) -> Result<sled::Db> {
    sled::open(path).map_err(|e| Error::State {
        path: path.to_owned(),
        message: match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                "in use by another swarm process; give each node its own --state DIR".to_owned()
            }
            other => other.to_string(),
        },
    })
}

impl StateDb {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<StateDb> {
        let path = dir.join("state.sled");
        let db = open_sled(&path)?;
        Ok(StateDb { db, path })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::State {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The saved record of the download of `file`, if any.
    pub fn download(&self, file: &FileId) -> Result<Option<DownloadRecord>> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        let Some(bytes) = tree.get(file.as_bytes()).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        // A record that no longer decodes or checks out is dropped: the download restarts.
        let record: Option<DownloadRecord> = bincode::serde::decode_from_slice(&bytes, canonical_config())
            .ok()
            .map(|(r, _)| r)
            .filter(|r: &DownloadRecord| r.manifest.id() == *file && r.chunks.len() == r.manifest.chunk_count);
        Ok(record)
    }

    /// Saves the record of a download and flushes it to disk.
    pub fn save_download(&self, file: &FileId, record: &DownloadRecord) -> Result<()> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        let bytes = bincode::serde::encode_to_vec(record, canonical_config()).map_err(|e| self.error(e))?;
        tree.insert(file.as_bytes(), bytes).map_err(|e| self.error(e))?;
        tree.flush().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets a finished download.
    pub fn remove_download(&self, file: &FileId) -> Result<()> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        tree.remove(file.as_bytes()).map_err(|e| self.error(e))?;
        tree.flush().map_err(|e| self.error(e))?;
        Ok(())
    }
}
