//! The downloads a node has in flight: the one list that `swarm shell`, `swarm sync` and
//! `swarm status` read. A fetch registers here when it starts and is removed when it ends,
//! however it ends. A folder (collection) fetched as a whole is listed too, beside the
//! downloads of its files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use swarm_proto::{FileId, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Peers offered as sources to one download and not yet taken up: a download takes at most
/// a few tens of neighbours, so more than this is never useful.
const OFFERED_SOURCES: usize = 64;
/// Ranges of chunks asked for ahead of the rest and not yet taken up by the download.
const HURRIED_RANGES: usize = 16;

use crate::progress::Progress;

/// One download in flight.
#[derive(Debug, Clone)]
pub struct Download {
    /// The file.
    pub id: FileId,
    /// Its name.
    pub name: String,
    /// Bytes verified so far, of how many, and from how many peers.
    pub progress: Arc<Progress>,
    /// When it started.
    pub started: Instant,
    cancel: CancellationToken,
    sources: mpsc::Sender<(PeerId, SocketAddr)>,
    hurry: mpsc::Sender<Range<u32>>,
}

impl Download {
    /// Stops the download; verified chunks are kept for the next try.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// A folder (a collection) being fetched: its files are downloads of their own.
#[derive(Debug, Clone)]
pub struct FolderDownload {
    /// The collection's id.
    pub id: FileId,
    /// The folder's name.
    pub name: String,
    /// Files chosen.
    pub files: usize,
    /// Files fetched (or found complete) so far.
    pub files_done: Arc<AtomicUsize>,
    /// Bytes of the chosen files: verified so far, of how many, from how many peers.
    pub progress: Arc<Progress>,
    /// When it started.
    pub started: Instant,
}

impl FolderDownload {
    /// Files fetched (or found complete) so far.
    pub fn files_done(&self) -> usize {
        self.files_done.load(Ordering::Relaxed)
    }
}

/// The registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Downloads {
    running: Arc<Mutex<HashMap<FileId, Download>>>,
    folders: Arc<Mutex<HashMap<FileId, FolderDownload>>>,
}

/// Keeps a folder's fetch on the list while it lives.
#[derive(Debug)]
pub struct FolderRegistered {
    downloads: Downloads,
    id: FileId,
    files_done: Arc<AtomicUsize>,
}

impl FolderRegistered {
    /// Counts one more file done.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for FolderRegistered {
    fn drop(&mut self) {
        self.downloads.lock_folders().remove(&self.id);
    }
}

/// Keeps a download on the list while it lives.
#[derive(Debug)]
pub struct Registered {
    downloads: Downloads,
    id: FileId,
    /// Cancelled by [`Download::cancel`].
    pub cancelled: CancellationToken,
    /// Peers that watch this file here, offered as sources (see [`Downloads::offer_source`]).
    pub sources: mpsc::Receiver<(PeerId, SocketAddr)>,
    /// Chunks someone is reading now, to fetch first (see [`Downloads::hurry`]).
    pub hurried: mpsc::Receiver<Range<u32>>,
}

impl Registered {
    /// Names the download (once its manifest is known).
    pub fn set_name(&self, name: &str) {
        if let Some(download) = self.downloads.lock().get_mut(&self.id) {
            download.name = name.to_owned();
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.downloads.lock().remove(&self.id);
    }
}

impl Downloads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileId, Download>> {
        self.running.lock().expect("downloads lock poisoned")
    }

    /// Puts a download of `id` on the list, or returns `None` if one is running already.
    pub fn begin(
        &self,
        id: FileId,
        name: &str,
        progress: Arc<Progress>,
        parent: &CancellationToken,
    ) -> Option<Registered> {
        let mut running = self.lock();
        if running.contains_key(&id) {
            return None;
        }
        let cancel = parent.child_token();
        let (offer, sources) = mpsc::channel(OFFERED_SOURCES);
        let (hurry, hurried) = mpsc::channel(HURRIED_RANGES);
        running.insert(
            id,
            Download {
                id,
                name: name.to_owned(),
                progress,
                started: Instant::now(),
                cancel: cancel.clone(),
                sources: offer,
                hurry,
            },
        );
        Some(Registered {
            downloads: self.clone(),
            id,
            cancelled: cancel,
            sources,
            hurried,
        })
    }

    /// Offers `peer` at `addr`, which is fetching `file` from this node, as a source to this
    /// node's own download of it, if one runs (and is not already offered plenty).
    pub fn offer_source(&self, file: &FileId, peer: PeerId, addr: SocketAddr) {
        if let Some(download) = self.lock().get(file) {
            let _ = download.sources.try_send((peer, addr));
        }
    }

    /// Asks the download of `file`, if one runs, to fetch `chunks` before any other (a reader
    /// is waiting for them). Returns whether a download runs.
    pub fn hurry(&self, file: &FileId, chunks: Range<u32>) -> bool {
        match self.lock().get(file) {
            Some(download) => {
                // Full: the download is behind on earlier asks; the reader asks again.
                let _ = download.hurry.try_send(chunks);
                true
            }
            None => false,
        }
    }

    /// The downloads in flight, by name.
    pub fn list(&self) -> Vec<Download> {
        let mut list: Vec<Download> = self.lock().values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The download of `id`, if one is in flight.
    pub fn get(&self, id: &FileId) -> Option<Download> {
        self.lock().get(id).cloned()
    }

    fn lock_folders(&self) -> std::sync::MutexGuard<'_, HashMap<FileId, FolderDownload>> {
        self.folders.lock().expect("folder downloads lock poisoned")
    }

    /// Puts the fetch of folder `id` (`files` files, `progress` their bytes) on the list, or
    /// returns `None` if one is running already.
    pub fn begin_folder(
        &self,
        id: FileId,
        name: &str,
        files: usize,
        progress: Arc<Progress>,
    ) -> Option<FolderRegistered> {
        let mut folders = self.lock_folders();
        if folders.contains_key(&id) {
            return None;
        }
        let files_done = Arc::new(AtomicUsize::new(0));
        folders.insert(
            id,
            FolderDownload {
                id,
                name: name.to_owned(),
                files,
                files_done: files_done.clone(),
                progress,
                started: Instant::now(),
            },
        );
        Some(FolderRegistered {
            downloads: self.clone(),
            id,
            files_done,
        })
    }

    /// Is folder `id` being fetched?
    pub fn fetching_folder(&self, id: &FileId) -> bool {
        self.lock_folders().contains_key(id)
    }

    /// The folders being fetched, by name.
    pub fn folders(&self) -> Vec<FolderDownload> {
        let mut list: Vec<FolderDownload> = self.lock_folders().values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_listed_while_it_lives_and_only_once() {
        let downloads = Downloads::default();
        let root = CancellationToken::new();
        let id = FileId([1; 32]);
        let first = downloads.begin(id, "a", Arc::default(), &root).unwrap();
        assert!(downloads.begin(id, "a", Arc::default(), &root).is_none());
        assert_eq!(downloads.list().len(), 1);
        downloads.get(&id).unwrap().cancel();
        assert!(first.cancelled.is_cancelled());
        drop(first);
        assert!(downloads.list().is_empty());
    }

    #[test]
    fn a_folder_is_listed_while_it_lives_and_counts_its_files() {
        let downloads = Downloads::default();
        let id = FileId([2; 32]);
        let folder = downloads.begin_folder(id, "photos", 3, Arc::default()).unwrap();
        assert!(downloads.begin_folder(id, "photos", 3, Arc::default()).is_none());
        folder.file_done();
        let listed = downloads.folders();
        assert_eq!((listed.len(), listed[0].files, listed[0].files_done()), (1, 3, 1));
        drop(folder);
        assert!(downloads.folders().is_empty());
    }
}
