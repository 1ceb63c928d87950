//! A node's persistent state in sled, under its state directory: its downloads in progress and
//! the manifests of the files it seeded, so that an unchanged file is not hashed twice.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::bitfield::Bitfield;
use crate::error::{Error, Result};
use crate::ids::FileId;
use crate::manifest::{canonical_config, Manifest};
use crate::meta::FileMeta;

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

/// What identifies one version of a file on disk without reading it: if any part differs, the
/// file is hashed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds since the epoch.
    pub modified: (i64, i64),
    /// Inode number (a file replaced by another one gets a new one).
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(metadata: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            inode: metadata.ino(),
        }
    }
}

/// What is remembered of a seeded file between runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeededRecord {
    /// The file on disk when it was hashed.
    pub stamp: FileStamp,
    /// Its manifest.
    pub manifest: Manifest,
    /// What is announced with it.
    pub meta: FileMeta,
    /// It was fetched from the swarm and is unchanged since.
    pub fetched: bool,
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
        let Some(mut record) = record else { return Ok(None) };
        let progress = self.db.open_tree("download_progress").map_err(|e| self.error(e))?;
        if let Some(bytes) = progress.get(file.as_bytes()).map_err(|e| self.error(e))? {
            if let Ok((chunks, _)) = bincode::serde::decode_from_slice::<Bitfield, _>(&bytes, canonical_config()) {
                if chunks.len() == record.manifest.chunk_count {
                    record.chunks = chunks;
                }
            }
        }
        Ok(Some(record))
    }

    /// Records which chunks of a download are verified now; cheap, unlike the whole record,
    /// whose manifest may be megabytes (sled writes it out on its own within half a second).
    pub fn save_progress(&self, file: &FileId, chunks: &Bitfield) -> Result<()> {
        let tree = self.db.open_tree("download_progress").map_err(|e| self.error(e))?;
        let bytes = bincode::serde::encode_to_vec(chunks, canonical_config()).map_err(|e| self.error(e))?;
        tree.insert(file.as_bytes(), bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Saves the record of a download, manifest included (sled writes it out on its own
    /// within half a second).
    pub fn save_download(&self, file: &FileId, record: &DownloadRecord) -> Result<()> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        let bytes = bincode::serde::encode_to_vec(record, canonical_config()).map_err(|e| self.error(e))?;
        tree.insert(file.as_bytes(), bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every saved download record.
    pub fn downloads(&self) -> Result<Vec<(FileId, DownloadRecord)>> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        let mut records = Vec::new();
        for item in tree.iter() {
            let (key, _) = item.map_err(|e| self.error(e))?;
            let Ok(id) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            let id = FileId(id);
            if let Some(record) = self.download(&id)? {
                records.push((id, record));
            }
        }
        Ok(records)
    }

    /// Every seeded-file record whose path is under `root`.
    pub fn seeded_under(&self, root: &Path) -> Result<Vec<(PathBuf, SeededRecord)>> {
        let tree = self.db.open_tree("seeded").map_err(|e| self.error(e))?;
        let mut prefix = root.as_os_str().as_bytes().to_vec();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        let mut records = Vec::new();
        for item in tree.scan_prefix(&prefix) {
            let (key, value) = item.map_err(|e| self.error(e))?;
            if let Some(record) = decode_seeded(&value) {
                records.push((PathBuf::from(std::ffi::OsStr::from_bytes(&key)), record));
            }
        }
        Ok(records)
    }

    /// Remembers the manifest of the file at `path` (absolute).
    pub fn save_seeded(&self, path: &Path, record: &SeededRecord) -> Result<()> {
        let tree = self.db.open_tree("seeded").map_err(|e| self.error(e))?;
        let bytes = bincode::serde::encode_to_vec(record, canonical_config()).map_err(|e| self.error(e))?;
        tree.insert(path.as_os_str().as_bytes(), bytes)
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets the seeded file at `path`.
    pub fn remove_seeded(&self, path: &Path) -> Result<()> {
        let tree = self.db.open_tree("seeded").map_err(|e| self.error(e))?;
        tree.remove(path.as_os_str().as_bytes()).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Writes everything saved so far to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets a finished download.
    pub fn remove_download(&self, file: &FileId) -> Result<()> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        tree.remove(file.as_bytes()).map_err(|e| self.error(e))?;
        let progress = self.db.open_tree("download_progress").map_err(|e| self.error(e))?;
        progress.remove(file.as_bytes()).map_err(|e| self.error(e))?;
        tree.flush().map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// A seeded-file record, or nothing if it no longer decodes or its manifest is invalid (the
/// file is then simply hashed again).
fn decode_seeded(bytes: &[u8]) -> Option<SeededRecord> {
    let (record, _): (SeededRecord, _) = bincode::serde::decode_from_slice(bytes, canonical_config()).ok()?;
    record.manifest.validate().ok()?;
    Some(record)
}
