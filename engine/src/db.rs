//! A node's persistent state in sled, under its state directory: its downloads in progress and
//! the manifests of the files it seeded, so that an unchanged file is not hashed twice. This
//! is the one module of the engine that uses sled.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarm_proto::dir_lock::DirLock;
use swarm_proto::{codec, Bitfield, FileId, FileMeta, Manifest};

use crate::error::{Error, Result};

/// Bytes of sled's page cache. The records are read once at start (seeded files) or are
/// small (progress): a big cache would only keep a second copy of every manifest.
const CACHE_BYTES: u64 = 8 << 20;

/// The node's sled database, and the lock that makes it this process's alone.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    path: PathBuf,
    _lock: Arc<DirLock>,
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

impl StateDb {
    /// Locks the state directory `dir` (which must exist) for this process, then opens
    /// (creating if needed) the database in it. Another process using it is
    /// [`Error::Locked`], naming that process.
    ///
    /// A database that sled finds damaged is moved aside (`state.sled.damaged-…`, kept) and a
    /// fresh one started, with a warning: everything in it can be rebuilt (seeded files are
    /// hashed again, downloads in progress start over), which beats a node that cannot start.
    pub fn open(dir: &Path) -> Result<StateDb> {
        let lock = DirLock::acquire(dir)?;
        let path = dir.join("state.sled");
        let open = || sled::Config::new().path(&path).cache_capacity(CACHE_BYTES).open();
        let failed = |e: sled::Error| Error::State {
            path: path.clone(),
            message: e.to_string(),
        };
        let db = match open() {
            Err(sled::Error::Corruption { .. }) => {
                let aside = swarm_proto::dir_lock::set_aside(&path).map_err(|e| Error::io(&path, e))?;
                tracing::warn!(
                    "the node's state database {} was damaged; moved it aside to {} and started afresh: \
                     seeded files are hashed again and downloads in progress start over",
                    path.display(),
                    aside.display()
                );
                open().map_err(failed)?
            }
            opened => opened.map_err(failed)?,
        };
        Ok(StateDb {
            db,
            path,
            _lock: Arc::new(lock),
        })
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
        let Some(mut record) = decode_download(file, &bytes) else {
            return Ok(None);
        };
        let progress = self.db.open_tree("download_progress").map_err(|e| self.error(e))?;
        if let Some(bytes) = progress.get(file.as_bytes()).map_err(|e| self.error(e))? {
            if let Ok(chunks) = codec::decode::<Bitfield>(&bytes) {
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
        let bytes = codec::encode(chunks);
        tree.insert(file.as_bytes(), bytes).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Saves the record of a download, manifest included (sled writes it out on its own
    /// within half a second).
    pub fn save_download(&self, file: &FileId, record: &DownloadRecord) -> Result<()> {
        let tree = self.db.open_tree("downloads").map_err(|e| self.error(e))?;
        let bytes = codec::encode(record);
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

    /// Remembers the manifest of the file at `path` (absolute); returns the record it
    /// replaced, if any.
    pub fn save_seeded(&self, path: &Path, record: &SeededRecord) -> Result<Option<SeededRecord>> {
        let tree = self.db.open_tree("seeded").map_err(|e| self.error(e))?;
        let bytes = codec::encode(record);
        let old = tree
            .insert(path.as_os_str().as_bytes(), bytes)
            .map_err(|e| self.error(e))?;
        Ok(old.and_then(|old| decode_seeded(&old)))
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

/// The saved record of the download of `file`, or nothing if it no longer decodes or checks
/// out (the download then starts afresh). Public for the fuzz targets.
pub fn decode_download(file: &FileId, bytes: &[u8]) -> Option<DownloadRecord> {
    codec::decode(bytes)
        .ok()
        .filter(|r: &DownloadRecord| r.manifest.id() == *file && r.chunks.len() == r.manifest.chunk_count)
}

/// A seeded-file record, or nothing if it no longer decodes or its manifest is invalid (the
/// file is then simply hashed again). Public for the fuzz targets.
pub fn decode_seeded(bytes: &[u8]) -> Option<SeededRecord> {
    let record: SeededRecord = codec::decode(bytes).ok()?;
    record.manifest.validate().ok()?;
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_database_is_set_aside_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDb::open(dir.path()).unwrap());
        std::fs::write(dir.path().join("state.sled/conf"), b"not sled's settings").unwrap();
        let reopened = StateDb::open(dir.path()).expect("a fresh database in place of the damaged one");
        drop(reopened);
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("state.sled.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged one is kept beside it");
        let kept = std::fs::read(dir.path().join(&aside[0]).join("conf")).unwrap();
        assert_eq!(kept, b"not sled's settings");
    }
}
