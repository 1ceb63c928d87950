//! A node's shared folders: scanning them (hashing only what changed since the last run,
//! leaving alone files still being written), holding and announcing what they contain, and
//! re-checking files the chunk server found changed on disk. A scan lists the folder
//! ([`listing`]), decides what to do with each file ([`sort_out`], without I/O), then hashes,
//! holds and announces.

mod listing;
mod sort_out;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use swarm_proto::manifest::FromFileError;
use swarm_proto::protocol::MAX_BATCH;
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{FileStamp, SeededRecord, StateDb};
use crate::error::{Error, Result};
use crate::fetch::FetchReport;
use crate::held::{Held, HeldFiles};
use crate::progress::Progress;
use crate::session::Session;
pub use crate::status::{Skipped, SkippedPaths};
use crate::trust::DiskStamp;
use listing::Listed;

/// One file shared from a folder.
#[derive(Debug, Clone)]
pub struct SeededFile {
    /// Its id.
    pub id: FileId,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// Where it is on disk.
    pub path: PathBuf,
    /// What is announced with it.
    pub meta: FileMeta,
    /// Where its manifest came from.
    pub origin: Origin,
}

/// Where a shared file's manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Known from an earlier scan (in this run or an earlier one): the file is unchanged.
    Known,
    /// Hashed by this scan: the file is new or changed.
    Hashed,
    /// Fetched from the swarm by this node, and unchanged since.
    Fetched,
}

impl SeededFile {
    /// A complete held file, neither hashed now nor known to be fetched.
    fn of(held: &Held) -> SeededFile {
        SeededFile {
            id: held.id,
            manifest: held.manifest.clone(),
            path: held.path(),
            meta: held.meta,
            origin: Origin::Known,
        }
    }
}

/// What a folder scan ([`crate::Node::scan_dir`]) found.
#[derive(Debug, Clone, Default)]
pub struct DirScan {
    /// The files shared, sorted by name.
    pub files: Vec<SeededFile>,
    /// Names of files modified too recently to share yet (still being written, perhaps).
    pub unsettled: Vec<String>,
    /// What could not be shared (unreadable, links, unsafe names); everything else is.
    pub skipped: Vec<Skipped>,
    /// Files shared before (by an earlier scan or a fetch, in this run or an earlier one)
    /// that are gone now, by name: deleted, or moved away.
    pub vanished: Vec<(String, FileId)>,
}

/// Held files not yet told to the tracker, and when it was last told.
struct Announcements {
    held: Vec<Arc<Held>>,
    told: Instant,
}

impl Default for Announcements {
    fn default() -> Announcements {
        Announcements {
            held: Vec::new(),
            told: Instant::now(),
        }
    }
}

/// The node's part that shares folders.
#[derive(Clone)]
pub struct Folders {
    store: Arc<HeldFiles>,
    state: StateDb,
    session: Option<Session>,
    /// The node's own state directory, never shared.
    state_dir: PathBuf,
    /// What the scans skipped.
    skipped: SkippedPaths,
}

impl Folders {
    /// Shares into `store`, remembering manifests in `state`, announcing through `session`.
    pub fn new(
        store: Arc<HeldFiles>,
        state: StateDb,
        session: Option<Session>,
        state_dir: PathBuf,
        skipped: SkippedPaths,
    ) -> Folders {
        Folders {
            store,
            state,
            session,
            state_dir,
            skipped,
        }
    }

    /// Shares every regular file under `dir` (symlinks are not followed), leaving out files
    /// modified less than `settle` ago: they are reported as unsettled and shared by a later
    /// scan. A file unchanged since this node last seeded it (same size, modification time
    /// and inode) reuses the manifest saved in sled; the others are hashed, and the ids of
    /// files that changed or vanished since are withdrawn from the tracker. Partial downloads
    /// this node's state directory, and the folder's own `.swarm/` (where sync keeps old
    /// versions) are never shared. `progress` counts bytes hashed.
    /// `dir` may also be a single file, shared under its own name.
    pub async fn scan(&self, dir: &Path, chunk_size: u32, settle: Duration, progress: &Progress) -> Result<DirScan> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        // A single file is shared under its own name, from its folder's records.
        let (root, only) = match root.parent() {
            Some(parent) if root.is_file() => (parent.to_owned(), Some(root.clone())),
            _ => (root, None),
        };
        let previous: HashMap<PathBuf, SeededRecord> = self
            .state
            .seeded_under(&root)?
            .into_iter()
            .filter(|(path, _)| only.as_ref().is_none_or(|only| path == only))
            .collect();
        let now = SystemTime::now();
        let listing = listing::list(&root, only.as_ref().unwrap_or(&root), &self.state_dir)?;
        let sorted = sort_out::sort_out(listing.files, previous, chunk_size, now, settle);
        let mut scan = DirScan {
            unsettled: sorted.unsettled,
            skipped: listing.skipped,
            ..DirScan::default()
        };
        let mut announce = Announcements::default();
        for (file, record) in sorted.reuse {
            let origin = if record.fetched { Origin::Fetched } else { Origin::Known };
            let held = match self.store.get(&record.manifest.id()) {
                // Held and announced already (an earlier scan, or the fetch that wrote it):
                // rescans of a large folder send the tracker nothing.
                Some(held) if held.path() == file.path && held.chunks().is_complete() => held,
                _ => {
                    let held = self.hold(record.manifest, file.path, record.meta, file.version, now);
                    announce.held.push(held.clone());
                    held
                }
            };
            scan.files.push(SeededFile {
                origin,
                ..SeededFile::of(&held)
            });
        }
        for (path, record) in sorted.vanished {
            info!(path = %path.display(), "seeded before but no longer there; withdrawing it");
            let id = record.manifest.id();
            self.stop_holding(id).await;
            self.state.remove_seeded(&path)?;
            scan.vanished.push((record.manifest.name, id));
        }
        progress.add_total(sorted.hash.iter().map(|(file, _)| file.stamp.size).sum());
        for (file, stale) in sorted.hash {
            self.hash_one(file, stale, chunk_size, now, &mut scan, &mut announce, progress)
                .await?;
        }
        self.tell(&mut announce.held).await?;
        self.state.flush()?;
        if only.is_none() {
            self.skipped.set(&root, &scan.skipped);
        }
        scan.files.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        Ok(scan)
    }

    /// Hashes a file a scan found new or changed (`stale`: the id of its earlier version),
    /// holds it and remembers it, or names it in `scan` if it cannot be read. Held files are
    /// told to the tracker in batches: when a batch is full, at least every second while files
    /// are hashed, and at the end of the scan.
    #[allow(clippy::too_many_arguments)]
    async fn hash_one(
        &self,
        file: Listed,
        stale: Option<FileId>,
        chunk_size: u32,
        scanned: SystemTime,
        scan: &mut DirScan,
        announce: &mut Announcements,
        progress: &Progress,
    ) -> Result<()> {
        let Listed {
            path,
            name,
            stamp,
            version,
            modified,
        } = file;
        let hashed = {
            let (path, name) = (path.clone(), name.clone());
            tokio::task::spawn_blocking(move || Manifest::from_file(&path, &name, chunk_size)).await?
        };
        progress.advance(stamp.size);
        let manifest = match hashed {
            Ok(manifest) => manifest,
            Err(FromFileError::Read { source, .. }) => {
                // Unreadable (or gone) since it was listed: its old version, if any, is
                // withdrawn, and it is named unless it vanished.
                if let Some(old) = stale {
                    self.stop_holding(old).await;
                    self.state.remove_seeded(&path)?;
                    if source.kind() == std::io::ErrorKind::NotFound {
                        scan.vanished.push((name, old));
                    }
                }
                if source.kind() != std::io::ErrorKind::NotFound {
                    scan.skipped.push(Skipped {
                        why: listing::briefly(&source),
                        path,
                    });
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut meta = FileMeta::modified_at(modified);
        if let Some(old) = stale.filter(|old| *old != manifest.id()) {
            info!(path = %path.display(), old = %old.short(), "changed since it was last seeded; withdrawing its old id");
            self.stop_holding(old).await;
            meta.replaces = Some(old);
        }
        let record = SeededRecord {
            stamp,
            manifest: manifest.clone(),
            meta,
            fetched: false,
        };
        self.state.save_seeded(&path, &record)?;
        let held = self.hold(manifest, path, meta, version, scanned);
        announce.held.push(held.clone());
        if announce.held.len() >= MAX_BATCH || announce.told.elapsed() >= Duration::from_secs(1) {
            self.tell(&mut announce.held).await?;
            announce.told = Instant::now();
        }
        scan.files.push(SeededFile {
            origin: Origin::Hashed,
            ..SeededFile::of(&held)
        });
        Ok(())
    }

    /// Remembers a file this node fetched as seeded and unchanged since, so that scanning its
    /// folder later does not hash it again. The version it replaced at that path, if any, is
    /// no longer held and is withdrawn.
    pub async fn remember_fetched(&self, report: &FetchReport) -> Result<()> {
        self.remember(&report.path, &report.manifest, report.meta, true).await
    }

    /// Remembers the file at `path` as hashed into `manifest` (`fetched` if it came from the
    /// swarm), so that a scan of its folder reuses the manifest while the file is unchanged.
    pub async fn remember(&self, path: &Path, manifest: &Manifest, meta: FileMeta, fetched: bool) -> Result<()> {
        let path = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let metadata = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let record = SeededRecord {
            stamp: FileStamp::of(&metadata),
            manifest: manifest.clone(),
            meta,
            fetched,
        };
        // Not flushed at once (sled writes it within half a second): a record lost in a crash
        // costs one hashing of the file, and a sync of many small files one fsync each.
        let replaced = self.state.save_seeded(&path, &record)?;
        if let Some(old) = replaced.map(|r| r.manifest.id()).filter(|old| *old != manifest.id()) {
            self.stop_holding(old).await;
        }
        Ok(())
    }

    /// Stops serving `file` and withdraws it from the tracker.
    pub async fn stop_holding(&self, file: FileId) {
        self.store.remove(&file);
        if let Some(session) = &self.session {
            session.withdraw(file).await;
        }
    }

    /// Tells the tracker about `held` files (in batches), and empties the list.
    async fn tell(&self, held: &mut Vec<Arc<Held>>) -> Result<()> {
        if let Some(session) = &self.session {
            session.announce_many(held).await?;
        }
        held.clear();
        Ok(())
    }

    /// Holds a complete file without telling the tracker yet. It was hashed in the version
    /// `version` of it by a scan that started at `scanned`.
    fn hold(
        &self,
        manifest: Manifest,
        path: PathBuf,
        meta: FileMeta,
        version: DiskStamp,
        scanned: SystemTime,
    ) -> Arc<Held> {
        let manifest = Arc::new(manifest);
        let chunks = Bitfield::full(manifest.chunk_count);
        let held = self.store.add(manifest, path, chunks, meta);
        held.vouch_for_all(version, scanned);
        held
    }

    /// Holds a complete, already hashed file and announces it with `meta`.
    pub async fn hold_complete(&self, manifest: Manifest, path: PathBuf, meta: FileMeta) -> Result<SeededFile> {
        let manifest = Arc::new(manifest);
        let chunks = Bitfield::full(manifest.chunk_count);
        let held = self.store.add(manifest, path, chunks, meta);
        if let Some(session) = &self.session {
            session.announce(&held).await?;
        }
        Ok(SeededFile::of(&held))
    }

    /// Re-checks held files the chunk server found changed on disk, until `stop`: hashes them
    /// again, keeps the chunks that still match, and tells the tracker (withdrawing the file
    /// if nothing matches any more).
    pub async fn recheck_changed(&self, mut changes: mpsc::Receiver<FileId>, stop: CancellationToken) {
        let mut pending = BTreeSet::new();
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                next = changes.recv() => match next { Some(file) => file, None => return },
            };
            pending.insert(first);
            while let Ok(file) = changes.try_recv() {
                pending.insert(file);
            }
            while let Some(file) = pending.pop_first() {
                self.recheck(file).await;
            }
        }
    }

    async fn recheck(&self, file: FileId) {
        let Some(held) = self.store.get(&file) else {
            return;
        };
        let before = held.chunks();
        let (path, manifest) = (held.path(), held.manifest.clone());
        let check = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => crate::held::chunks_on_disk(&f, &manifest),
            Err(_) => Bitfield::new(manifest.chunk_count),
        });
        let Ok(now) = check.await else { return };
        // Only chunks held before the check and not matching now are dropped: a chunk that a
        // download writes meanwhile stays.
        let lost: Vec<u32> = before.iter().filter(|&c| !now.get(c)).collect();
        if lost.is_empty() {
            return;
        }
        held.unmark(&lost);
        let path = held.path();
        if held.chunks().count() == 0 {
            warn!(
                file = %file.short(),
                "{} changed on disk and no chunk matches its manifest any more; withdrawing it from the tracker",
                path.display()
            );
            self.stop_holding(file).await;
        } else {
            warn!(
                file = %file.short(),
                "{} changed on disk: {} of {} chunks no longer match its manifest; telling the tracker",
                path.display(),
                lost.len(),
                before.count()
            );
            if let Some(session) = &self.session {
                if let Err(e) = session.announce(&held).await {
                    warn!("could not update the tracker: {e}");
                }
            }
        }
    }
}
