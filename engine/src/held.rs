//! The files a node can serve: for each, its manifest, where its bytes are on disk and which
//! chunks are verified there. Downloads appear here as soon as they start, so that a peer
//! serves what it has while it still downloads.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::chunk_io::{BufferPool, ChunkBuf};
use crate::trust::{DiskStamp, Trust, SPOT_CHECK};
use swarm_proto::bitfield::Bitfield;
use swarm_proto::ids::{FileId, PeerId};
use swarm_proto::manifest::Manifest;
use swarm_proto::meta::FileMeta;

/// One file a node holds, fully or in part.
#[derive(Debug)]
pub struct Held {
    /// The file's manifest.
    pub manifest: Arc<Manifest>,
    /// The file's id.
    pub id: FileId,
    /// What is announced with it.
    pub meta: FileMeta,
    path: Mutex<PathBuf>,
    /// The file opened for serving, kept open between reads (while among the store's
    /// [`MAX_OPEN_FILES`] most recently opened).
    open: Mutex<Option<OpenFile>>,
    open_files: Arc<OpenFiles>,
    /// This file, as the store's list of open files refers to it.
    me: Weak<Held>,
    /// Which chunks are known intact in which version of the file, so that reading them needs
    /// no hashing ([`crate::trust`]).
    trust: Mutex<Trust>,
    chunks: RwLock<Bitfield>,
    /// Bumped whenever `chunks` changes, so that the peers told what this node holds learn of
    /// it ([`crate::watch`]).
    version: tokio::sync::watch::Sender<u64>,
    /// How often each chunk was uploaded, so that a seeder can offer the least sent first.
    sent: Vec<AtomicU32>,
    /// Bytes of chunks sent whole to other peers since this node began holding it.
    bytes_served: AtomicU64,
    /// How many watchers each chunk is offered to and not yet held by ([`crate::watch`]), so
    /// that a seeder offers different watchers different chunks.
    offered: Vec<AtomicU32>,
    /// How many watchers on trial (that have taken nothing yet) each chunk is offered to, so
    /// that a crowd's first windows differ too ([`crate::offer`]).
    on_trial: Vec<AtomicU32>,
    /// How many watchers hold each chunk (as they said), so that a seeder offers what the
    /// swarm lacks.
    copies: Vec<AtomicU32>,
    /// Peers watching this file here now.
    watchers: AtomicU32,
    /// Watches open on this file, idle ones too.
    watches: AtomicU32,
    /// Bumped when offers are taken back from an idle watcher: the others may be offered
    /// those chunks now ([`crate::watch`]).
    offers_freed: tokio::sync::watch::Sender<u64>,
    /// Uploads of each chunk under way now.
    sending: Vec<AtomicU32>,
    /// When each watcher last gained a chunk this node had not offered it, so got it from
    /// another peer ([`crate::offer::leave_to_others`]).
    gained_elsewhere: Mutex<HashMap<PeerId, Instant>>,
}

/// Most held files kept open at once for serving; the one opened longest ago is closed first.
/// Far below the usual limit of 1,024 descriptors a process, however many files are held.
pub const MAX_OPEN_FILES: usize = 256;

/// The held files kept open, oldest first, each listed once while open (one that is gone is
/// skipped), so that no more than [`MAX_OPEN_FILES`] are.
#[derive(Debug, Default)]
struct OpenFiles {
    opened: Mutex<VecDeque<Weak<Held>>>,
}

impl OpenFiles {
    /// `held` opened its file: the file opened longest ago is closed if too many are open.
    fn opened(&self, held: Weak<Held>) {
        let oldest = {
            let mut opened = self.opened.lock().expect("lock poisoned");
            opened.push_back(held);
            if opened.len() > MAX_OPEN_FILES {
                opened.pop_front()
            } else {
                None
            }
        };
        if let Some(oldest) = oldest.and_then(|w| w.upgrade()) {
            *oldest.open.lock().expect("lock poisoned") = None;
        }
    }
}

/// A held file open for reading, as it was when opened.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: Arc<File>,
    stamp: DiskStamp,
}

/// An upload of one chunk under way; dropping it ends it.
pub struct Sending<'a> {
    held: &'a Held,
    index: u32,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        step(&self.held.sending, self.index, false);
    }
}

/// Why a chunk could not be read for serving.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The chunk is not (or no longer) held.
    #[error("chunk {0} is not held")]
    NotHeld(u32),
    /// The bytes on disk no longer match the manifest (the node re-checks the file).
    #[error("chunk {index} of {path} no longer matches its manifest (file changed on disk?)")]
    Changed {
        /// Chunk index.
        index: u32,
        /// File read.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("reading chunk {index} of {path}: {source}")]
    Io {
        /// Chunk index.
        index: u32,
        /// File read.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
}

impl Held {
    /// Which chunks are verified on disk.
    pub fn chunks(&self) -> Bitfield {
        self.chunks.read().expect("lock poisoned").clone()
    }

    /// Is chunk `index` verified on disk?
    pub fn has(&self, index: u32) -> bool {
        self.chunks.read().expect("lock poisoned").get(index)
    }

    /// Records chunk `index` as verified on disk.
    pub fn mark(&self, index: u32) {
        self.chunks.write().expect("lock poisoned").set(index);
        self.version.send_modify(|v| *v += 1);
    }

    /// Wakes whenever the chunks held change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Counts an upload of chunk `index` as it starts (`true`), or takes back one that failed.
    /// Counted from the start, so that a chunk on its way over a slow link is not offered
    /// to another watcher as if nobody had it.
    pub fn count_upload(&self, index: u32, more: bool) {
        step(&self.sent, index, more);
    }

    /// Starts an upload of chunk `index`, unless this node super-seeds the file (holds it all,
    /// with two watchers or more) and is sending that chunk to another peer already: the
    /// requester will soon get it from that peer, and two copies of one chunk from a seeder
    /// whose link is the swarm's bottleneck delay every other chunk.
    pub fn start_sending(&self, index: u32) -> Option<Sending<'_>> {
        let counter = self.sending.get(index as usize)?;
        let exclusive = self.watchers() >= 2 && self.chunks.read().expect("lock poisoned").is_complete();
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (!exclusive || n == 0).then_some(n + 1)
            })
            .ok()?;
        Some(Sending { held: self, index })
    }

    /// How many uploads of chunk `index` are under way now.
    pub fn sending_now(&self, index: u32) -> u32 {
        self.sending
            .get(index as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts `bytes` of a chunk sent whole to a peer.
    pub fn note_served(&self, bytes: u64) {
        self.bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of chunks sent whole to other peers since this node began holding the file.
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }

    /// How often chunk `index` was uploaded or is being uploaded now.
    pub fn uploads_of(&self, index: u32) -> u32 {
        self.sent.get(index as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Chunk `index` is offered to one more watcher that lacks it (`true`), or one fewer.
    pub fn count_offer(&self, index: u32, more: bool) {
        step(&self.offered, index, more);
    }

    /// To how many watchers that lack chunk `index` it is offered.
    pub fn offers_of(&self, index: u32) -> u32 {
        self.offered
            .get(index as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Chunk `index` is offered to one more watcher on trial (`true`), or one fewer.
    pub fn count_trial_offer(&self, index: u32, more: bool) {
        step(&self.on_trial, index, more);
    }

    /// To how many watchers on trial chunk `index` is offered.
    pub fn trial_offers_of(&self, index: u32) -> u32 {
        self.on_trial
            .get(index as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// One more watcher holds chunk `index` (`true`), or one fewer.
    pub fn count_copy(&self, index: u32, more: bool) {
        step(&self.copies, index, more);
    }

    /// One more peer watches this file here (`true`), or one fewer; returns how many do now.
    pub fn count_watcher(&self, more: bool) -> u32 {
        if more {
            self.watchers.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.watchers.fetch_sub(1, Ordering::Relaxed).saturating_sub(1)
        }
    }

    /// Tells the watchers that offers were taken back from an idle one.
    pub fn free_offers(&self) {
        self.offers_freed.send_modify(|n| *n += 1);
    }

    /// `watcher` gained a chunk it was not offered here, now.
    pub fn note_gained_elsewhere(&self, watcher: PeerId) {
        let mut gained = self.gained_elsewhere.lock().expect("lock poisoned");
        gained.insert(watcher, Instant::now());
    }

    /// When `watcher` last gained a chunk it was not offered here.
    pub fn gained_elsewhere(&self, watcher: &PeerId) -> Option<Instant> {
        let gained = self.gained_elsewhere.lock().expect("lock poisoned");
        gained.get(watcher).copied()
    }

    /// `watcher` no longer watches this file.
    pub fn forget_watcher(&self, watcher: &PeerId) {
        self.gained_elsewhere.lock().expect("lock poisoned").remove(watcher);
    }

    /// Wakes whenever offers are taken back from an idle watcher.
    pub fn offers_freed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.offers_freed.subscribe()
    }

    /// One more watch is open on this file (`true`), or one fewer, idle or not.
    pub fn count_watch(&self, more: bool) {
        if more {
            self.watches.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .watches
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// How many watches are open on this file, idle ones too.
    pub fn watches(&self) -> u32 {
        self.watches.load(Ordering::Relaxed)
    }

    /// How many peers watch this file here now.
    pub fn watchers(&self) -> u32 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// How many watchers hold chunk `index`.
    pub fn copies_of(&self, index: u32) -> u32 {
        self.copies.get(index as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Where the bytes are now.
    pub fn path(&self) -> PathBuf {
        self.path.lock().expect("lock poisoned").clone()
    }

    /// Records chunks as no longer verified on disk.
    pub fn unmark(&self, lost: &[u32]) {
        let mut chunks = self.chunks.write().expect("lock poisoned");
        for &c in lost {
            chunks.unset(c);
        }
        drop(chunks);
        self.version.send_modify(|v| *v += 1);
    }

    /// Points at a new location (after the partial file is renamed into place).
    pub fn set_path(&self, path: PathBuf) {
        *self.path.lock().expect("lock poisoned") = path;
    }

    /// Trusts every chunk as intact while the file stays at version `stamp`: it was hashed
    /// whole in that version, starting at `hashing_started` ([`crate::trust`]).
    pub fn vouch_for_all(&self, stamp: DiskStamp, hashing_started: SystemTime) {
        *self.trust.lock().expect("lock poisoned") = Trust::all(self.manifest.chunk_count, stamp, hashing_started);
    }

    /// Reads chunk `index` from disk into a buffer from `buffers`, making sure it matches the
    /// manifest before handing it out: it is hashed unless known intact in this version of the
    /// file ([`crate::trust`]). Blocking: call from a blocking thread.
    pub fn read_chunk(&self, index: u32, buffers: &Arc<BufferPool>) -> Result<ChunkBuf, ReadError> {
        self.read_checked(index, buffers, false)
    }

    /// Reads chunk `index` and hashes it whatever was known of it (a fetcher said it did not
    /// match): `Changed` if it no longer matches. Blocking: call from a blocking thread.
    pub fn check_chunk(&self, index: u32, buffers: &Arc<BufferPool>) -> Result<(), ReadError> {
        self.read_checked(index, buffers, true).map(drop)
    }

    fn read_checked(&self, index: u32, buffers: &Arc<BufferPool>, always_hash: bool) -> Result<ChunkBuf, ReadError> {
        if !self.has(index) {
            return Err(ReadError::NotHeld(index));
        }
        let path = self.path();
        let io_error = |source| ReadError::Io {
            index,
            path: path.clone(),
            source,
        };
        let now = SystemTime::now();
        let (file, stamp) = self.open_file(&path).map_err(io_error)?;
        let mut data = buffers.take(self.manifest.chunk_len(index) as usize);
        file.read_exact_at(&mut data, self.manifest.chunk_offset(index))
            .map_err(io_error)?;
        let vouched = self.trust.lock().expect("lock poisoned").vouches(&stamp, index);
        if always_hash || !vouched || rand::random_ratio(1, SPOT_CHECK) {
            if !self.manifest.chunk_matches(index, &data) {
                self.trust.lock().expect("lock poisoned").forget(index);
                return Err(ReadError::Changed { index, path });
            }
            self.trust.lock().expect("lock poisoned").record(stamp, index, now);
        }
        Ok(data)
    }

    /// The file at `path`, open, and its stamp now. The open file is kept while its stamp
    /// stays the same; once it changes (written, renamed over, deleted) the path is opened
    /// again, so that a file replaced or removed is seen as such.
    fn open_file(&self, path: &Path) -> io::Result<(Arc<File>, DiskStamp)> {
        let mut open = self.open.lock().expect("lock poisoned");
        if let Some(current) = open.as_ref().filter(|o| o.path == path) {
            let stamp = DiskStamp::of(&current.file.metadata()?);
            if stamp == current.stamp {
                return Ok((current.file.clone(), stamp));
            }
        }
        // A file re-opened in place of its old descriptor is on the store's list already: a
        // download, whose file changes with every write, re-opens it on every read.
        let listed = open.take().is_some();
        let file = Arc::new(File::open(path)?);
        let stamp = DiskStamp::of(&file.metadata()?);
        *open = Some(OpenFile {
            path: path.to_path_buf(),
            file: file.clone(),
            stamp,
        });
        drop(open);
        if !listed {
            // Only once this file's own lock is released: closing another takes that one's.
            self.open_files.opened(self.me.clone());
        }
        Ok((file, stamp))
    }
}

/// Counts one up (`more`) or down (never below zero) in `counters[index]`.
fn step(counters: &[AtomicU32], index: u32, more: bool) {
    if let Some(count) = counters.get(index as usize) {
        if more {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// The chunks of `file` whose bytes on disk match `manifest`, hashed on every core. A chunk
/// that cannot be read (the file is shorter) does not match.
pub fn chunks_on_disk(file: &File, manifest: &Manifest) -> Bitfield {
    let good: Vec<u32> = (0..manifest.chunk_count)
        .into_par_iter()
        .filter(|&c| {
            let mut buf = vec![0u8; manifest.chunk_len(c) as usize];
            file.read_exact_at(&mut buf, manifest.chunk_offset(c)).is_ok() && manifest.chunk_matches(c, &buf)
        })
        .collect();
    let mut have = Bitfield::new(manifest.chunk_count);
    for c in good {
        have.set(c);
    }
    have
}

/// Every file this node holds, by id.
#[derive(Debug, Default)]
pub struct HeldFiles {
    files: RwLock<HashMap<FileId, Arc<Held>>>,
    open_files: Arc<OpenFiles>,
}

impl HeldFiles {
    /// Adds (or replaces) a file held at `path` with `chunks` verified.
    pub fn add(&self, manifest: Arc<Manifest>, path: PathBuf, chunks: Bitfield, meta: FileMeta) -> Arc<Held> {
        let id = manifest.id();
        let counters = || (0..manifest.chunk_count).map(|_| AtomicU32::new(0)).collect();
        let (sent, offered, on_trial) = (counters(), counters(), counters());
        let (copies, sending) = (counters(), counters());
        let trust = Trust::none(manifest.chunk_count);
        let held = Arc::new_cyclic(|me| Held {
            manifest,
            id,
            meta,
            path: Mutex::new(path),
            open: Mutex::new(None),
            open_files: self.open_files.clone(),
            me: me.clone(),
            trust: Mutex::new(trust),
            chunks: RwLock::new(chunks),
            version: tokio::sync::watch::Sender::new(0),
            sent,
            bytes_served: AtomicU64::new(0),
            offered,
            on_trial,
            copies,
            watchers: AtomicU32::new(0),
            watches: AtomicU32::new(0),
            offers_freed: tokio::sync::watch::Sender::new(0),
            sending,
            gained_elsewhere: Mutex::default(),
        });
        self.files.write().expect("lock poisoned").insert(id, held.clone());
        held
    }

    /// The file with id `id`, if held.
    pub fn get(&self, id: &FileId) -> Option<Arc<Held>> {
        self.files.read().expect("lock poisoned").get(id).cloned()
    }

    /// Stops holding `id`.
    pub fn remove(&self, id: &FileId) -> Option<Arc<Held>> {
        self.files.write().expect("lock poisoned").remove(id)
    }

    /// Every held file.
    pub fn all(&self) -> Vec<Arc<Held>> {
        self.files.read().expect("lock poisoned").values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::time::Duration;

    const CHUNK: u32 = 64 * 1024;

    /// A held file of `chunks` chunks in `dir`, hashed whole and trusted as a scan would.
    fn held(store: &HeldFiles, dir: &Path, name: &str, chunks: usize) -> Arc<Held> {
        let path = dir.join(name);
        let data: Vec<u8> = (0..chunks * CHUNK as usize)
            .map(|i| (i * 7 + name.len()) as u8)
            .collect();
        std::fs::write(&path, data).unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let manifest = Arc::new(Manifest::from_file(&path, name, CHUNK).unwrap());
        let full = Bitfield::full(manifest.chunk_count);
        let held = store.add(manifest, path.clone(), full, FileMeta::default());
        let version = DiskStamp::of(&std::fs::metadata(&path).unwrap());
        held.vouch_for_all(version, SystemTime::now() + Duration::from_secs(2));
        held
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn no_more_than_so_many_files_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = HeldFiles::default();
        let buffers = BufferPool::new(1);
        let files: Vec<_> = (0..MAX_OPEN_FILES + 40)
            .map(|i| held(&store, dir.path(), &format!("f{i}"), 1))
            .collect();
        let before = open_descriptors();
        for file in &files {
            file.read_chunk(0, &buffers).unwrap();
        }
        let opened = open_descriptors().saturating_sub(before);
        assert!(
            (MAX_OPEN_FILES - 8..=MAX_OPEN_FILES + 8).contains(&opened),
            "{opened} descriptors opened"
        );
        // The first files were closed, and open again when read.
        files[0].read_chunk(0, &buffers).unwrap();
    }

    #[test]
    fn a_file_kept_open_is_still_seen_edited_replaced_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = HeldFiles::default();
        let buffers = BufferPool::new(1);
        let file = held(&store, dir.path(), "a", 4);
        let path = file.path();
        file.read_chunk(1, &buffers).unwrap();

        // Edited in place, its modification time put back: the change time gives it away.
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let handle = std::fs::File::options().write(true).open(&path).unwrap();
        handle.write_all_at(b"edited", u64::from(CHUNK) + 5).unwrap();
        handle.set_modified(long_ago).unwrap();
        assert!(matches!(
            file.read_chunk(1, &buffers),
            Err(ReadError::Changed { index: 1, .. })
        ));
        file.read_chunk(2, &buffers).unwrap();

        // Replaced by another file of the same size: the new one is read, and does not match.
        let other = dir.path().join("other");
        std::fs::write(&other, vec![0u8; 4 * CHUNK as usize]).unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(matches!(
            file.read_chunk(2, &buffers),
            Err(ReadError::Changed { index: 2, .. })
        ));

        // Deleted: not found, though a descriptor was open.
        std::fs::remove_file(&path).unwrap();
        let gone = file.read_chunk(3, &buffers);
        assert!(
            matches!(&gone, Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound),
            "{:?}",
            gone.err()
        );
    }
}
