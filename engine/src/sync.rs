//! Folder sync: every node that syncs a folder against the same tracker ends up with every
//! file any of them has.
//!
//! A sync node seeds its folder, then, each tick, compares what it holds with the tracker's
//! catalogue, name by name:
//! - Of the complete versions listed under one name, the newest modification time wins (ties go
//!   to the larger id, so that every node picks the same one).
//! - A name the node lacks is fetched through the normal, verified fetch path; the file's
//!   modification time comes with it.
//! - A local version that lost is replaced if nobody edited it here: it was fetched and is
//!   unchanged since, or the winner says it replaced exactly this version. Otherwise it is an
//!   edit that lost a conflict: it is renamed to `STEM.sync-conflict-ID.EXT` (which is then
//!   shared like any file) before the winner is fetched. Nothing is destroyed.
//!
//! The folder is rescanned when file-system notifications say something changed, and every
//! `rescan` period in case one was missed. A file modified less than `settle` ago is neither
//! shared nor replaced until it is still. Deletions are not propagated: a file deleted here is
//! withdrawn, and comes back while another node still has it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, FetchReport, Replace};
use crate::folder::{DirScan, SeededFile, Skipped};
use crate::node::Node;
use crate::out_dir::Dir;
use crate::progress::Progress;
use crate::state::FileStamp;
use swarm_proto::collection::Collection;
use swarm_proto::ids::FileId;
use swarm_proto::name;
use swarm_proto::protocol::CatalogueEntry;

/// How a folder is synced.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The folder.
    pub dir: PathBuf,
    /// Chunk size for files hashed here.
    pub chunk_size: u32,
    /// How often the catalogue is compared with the folder.
    pub interval: Duration,
    /// Full rescans of the folder, in case a notification was missed.
    pub rescan: Duration,
    /// How long a file must stay unmodified before it is shared or replaced.
    pub settle: Duration,
    /// Downloads at once.
    pub parallel: usize,
}

impl SyncOptions {
    /// Defaults for syncing `dir`.
    pub fn new(dir: PathBuf) -> SyncOptions {
        SyncOptions {
            dir,
            chunk_size: crate::DEFAULT_CHUNK_SIZE,
            interval: Duration::from_secs(1),
            rescan: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            parallel: 16,
        }
    }
}

/// Something a sync did, for people.
#[derive(Debug)]
pub enum SyncEvent {
    /// The folder was scanned: `files` shared, `hashed` of them hashed in this scan.
    Scanned {
        /// Files shared.
        files: usize,
        /// Files hashed now (new or changed).
        hashed: usize,
    },
    /// A file was fetched into the folder.
    Fetched(FetchReport),
    /// A local edit lost to a newer version elsewhere and was kept under another name.
    Conflict {
        /// The name both versions have.
        name: String,
        /// The name the local version was moved to.
        kept_as: String,
    },
    /// A file or folder cannot be shared (said once per path while the sync runs).
    Skipped(Skipped),
    /// A download failed; it is tried again later.
    Failed {
        /// The file's name.
        name: String,
        /// Why.
        error: Error,
    },
}

/// A failed download is not tried again before this.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Syncs `options.dir` until `stop` is cancelled, sending what it does to `events`. The node
/// must have joined a tracker.
pub async fn run(
    node: &Node,
    options: SyncOptions,
    events: mpsc::UnboundedSender<SyncEvent>,
    stop: CancellationToken,
) -> Result<()> {
    let dir = options.dir.canonicalize().map_err(|e| Error::io(&options.dir, e))?;
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    // Without notifications (e.g. inotify watches exhausted) the periodic rescan still works.
    let _watcher = watch(&dir, changes_tx)
        .map_err(|e| {
            warn!(
                "not watching {} for changes ({e}); rescanning every {:?}",
                dir.display(),
                options.rescan
            )
        })
        .ok();
    let mut sync = FolderSync {
        node: node.clone(),
        dir,
        options,
        events,
        downloads: JoinSet::new(),
        in_flight: HashSet::new(),
        failed: HashMap::new(),
        scan: DirScan::default(),
        queue: VecDeque::new(),
        fetched: HashSet::new(),
        named: HashSet::new(),
        scan_wanted: true,
        last_full_scan: Instant::now(),
    };
    let mut ticker = tokio::time::interval(sync.options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(()) = changes.recv() => {
                while changes.try_recv().is_ok() {}
                sync.scan_wanted = true;
            }
            Some(done) = sync.downloads.join_next() => sync.download_done(done),
            _ = ticker.tick() => sync.tick().await,
        }
    }
    sync.downloads.shutdown().await;
    Ok(())
}

/// The state of one running sync.
struct FolderSync {
    node: Node,
    dir: PathBuf,
    options: SyncOptions,
    events: mpsc::UnboundedSender<SyncEvent>,
    downloads: JoinSet<Download>,
    /// Names being downloaded.
    in_flight: HashSet<String>,
    /// Versions whose download failed, and when.
    failed: HashMap<FileId, Instant>,
    scan: DirScan,
    /// Downloads planned from the catalogue last listed, waiting for a slot.
    queue: VecDeque<(CatalogueEntry, Option<SeededFile>)>,
    /// Versions fetched since the last scan (which does not list them yet).
    fetched: HashSet<FileId>,
    /// Paths already named as skipped.
    named: HashSet<PathBuf>,
    scan_wanted: bool,
    last_full_scan: Instant,
}

impl FolderSync {
    async fn tick(&mut self) {
        let due = self.last_full_scan.elapsed() >= self.options.rescan;
        if self.scan_wanted || due || !self.scan.unsettled.is_empty() {
            self.scan_wanted = false;
            self.last_full_scan = Instant::now();
            let scanned = self
                .node
                .scan_dir(
                    &self.dir,
                    self.options.chunk_size,
                    self.options.settle,
                    &Progress::default(),
                )
                .await;
            // Files come and go under a live folder (one may vanish while it is hashed): a
            // failed scan is tried again at the next tick, not the end of the sync.
            let scan = match scanned {
                Ok(scan) => scan,
                Err(e) => {
                    warn!("scanning {} failed, trying again: {e}", self.dir.display());
                    self.scan_wanted = true;
                    return;
                }
            };
            let hashed = scan.files.iter().filter(|f| f.hashed).count();
            if hashed > 0 {
                let _ = self.events.send(SyncEvent::Scanned {
                    files: scan.files.len(),
                    hashed,
                });
            }
            for skipped in &scan.skipped {
                if self.named.insert(skipped.path.clone()) {
                    let _ = self.events.send(SyncEvent::Skipped(skipped.clone()));
                }
            }
            self.scan = scan;
            self.fetched.clear();
        }
        match self.node.list().await {
            Ok(catalogue) => self.reconcile(&catalogue),
            Err(e) => debug!("listing the catalogue failed, trying again next tick: {e}"),
        }
    }

    /// Plans the downloads that bring the folder up to `catalogue` and starts as many as
    /// there are free slots; the rest wait in the queue for slots to free.
    fn reconcile(&mut self, catalogue: &[CatalogueEntry]) {
        let local: HashMap<&str, &SeededFile> = self.scan.files.iter().map(|f| (f.manifest.name.as_str(), f)).collect();
        let unsettled: HashSet<&str> = self.scan.unsettled.iter().map(String::as_str).collect();
        self.queue.clear();
        for (name, winner) in winners(catalogue) {
            if unsettled.contains(name) {
                continue;
            }
            match local.get(name) {
                Some(mine) if mine.id == winner.file => {}
                Some(mine) if mine.meta.is_newer(&mine.id, &winner.meta, &winner.file) => {}
                Some(mine) => self.queue.push_back((winner.clone(), Some((*mine).clone()))),
                None => self.queue.push_back((winner.clone(), None)),
            }
        }
        self.fill();
    }

    /// Starts queued downloads while slots are free, skipping those in flight, fetched since
    /// the last scan, or failed lately.
    fn fill(&mut self) {
        while self.in_flight.len() < self.options.parallel {
            let Some((winner, mine)) = self.queue.pop_front() else {
                return;
            };
            let failed_lately = self
                .failed
                .get(&winner.file)
                .is_some_and(|at| at.elapsed() < RETRY_AFTER);
            if self.in_flight.contains(&winner.name) || self.fetched.contains(&winner.file) || failed_lately {
                continue;
            }
            self.start_download(winner, mine);
        }
    }

    fn start_download(&mut self, winner: CatalogueEntry, mine: Option<SeededFile>) {
        let mut replace = Replace::Never;
        if let Some(mine) = &mine {
            let unedited = mine.fetched || winner.meta.replaces == Some(mine.id);
            if unedited {
                if let Some(stamp) = std::fs::symlink_metadata(&mine.path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| FileStamp::of(&m))
                {
                    replace = Replace::IfUnchanged(stamp);
                }
            } else {
                match keep_as_conflict(&self.dir, &mine.manifest.name, &mine.id) {
                    Ok(kept) => {
                        let kept_as = name::name_of(&self.dir, &kept).unwrap_or_else(|| kept.display().to_string());
                        warn!(name = %winner.name, %kept_as, "a newer version exists elsewhere; the local one is kept beside it");
                        let _ = self.events.send(SyncEvent::Conflict {
                            name: winner.name.clone(),
                            kept_as,
                        });
                        self.scan_wanted = true;
                    }
                    Err(error) => {
                        self.failed.insert(winner.file, Instant::now());
                        let _ = self.events.send(SyncEvent::Failed {
                            name: winner.name.clone(),
                            error,
                        });
                        return;
                    }
                }
            }
        }
        let options = FetchOptions {
            out_dir: self.dir.clone(),
            replace,
            // A download whose holders all vanish gives up, so that a newer version can be
            // fetched instead; it is tried again later.
            timeout: Some(Duration::from_secs(120) + Duration::from_secs(winner.size / (1 << 20))),
            progress: Arc::new(Progress::default()),
            label: Some(winner.name.clone()),
            ..FetchOptions::default()
        };
        self.in_flight.insert(winner.name.clone());
        let node = self.node.clone();
        self.downloads.spawn(async move {
            let result = node.fetch(winner.file, options).await;
            if let Ok(report) = &result {
                if let Err(e) = node.remember_fetched(report) {
                    warn!("{e}");
                }
            }
            Download {
                name: winner.name,
                file: winner.file,
                result,
            }
        });
    }

    fn download_done(&mut self, done: std::result::Result<Download, tokio::task::JoinError>) {
        let Ok(Download { name, file, result }) = done else {
            return;
        };
        self.in_flight.remove(&name);
        self.scan_wanted = true;
        let event = match result {
            Ok(report) => {
                self.fetched.insert(file);
                SyncEvent::Fetched(report)
            }
            Err(error) => {
                self.failed.insert(file, Instant::now());
                SyncEvent::Failed { name, error }
            }
        };
        let _ = self.events.send(event);
        // The freed slot goes to the next file at once, not at the next tick.
        self.fill();
    }
}

/// A finished download.
struct Download {
    name: String,
    file: FileId,
    result: Result<FetchReport>,
}

/// For each name in the catalogue, the newest version that live peers hold completely.
/// Collections (folders seeded as one id) are not files of the folder: they are left out.
fn winners(catalogue: &[CatalogueEntry]) -> Vec<(&str, &CatalogueEntry)> {
    let mut best: HashMap<&str, &CatalogueEntry> = HashMap::new();
    for entry in catalogue {
        let complete = entry.holders > 0 && entry.available >= entry.chunk_count;
        if !complete || Collection::is_collection_name(&entry.name) {
            continue;
        }
        let slot = best.entry(entry.name.as_str()).or_insert(entry);
        if entry.meta.is_newer(&entry.file, &slot.meta, &slot.file) {
            *slot = entry;
        }
    }
    let mut winners: Vec<_> = best.into_iter().collect();
    winners.sort_by_key(|(name, _)| *name);
    winners
}

/// Renames the file `name` in the sync folder `root` (the losing version `id`) to
/// `STEM.sync-conflict-ID.EXT` beside it, never replacing anything and never following a link;
/// returns the new path.
fn keep_as_conflict(root: &Path, name: &str, id: &FileId) -> Result<PathBuf> {
    let (dir, file_name) = Dir::open_root(root)?.parent_of(name)?;
    let (stem, ext) = match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file_name, String::new()),
    };
    let tag = &id.to_string()[..8];
    for n in 1.. {
        let counter = if n == 1 { String::new() } else { format!("-{n}") };
        let target = format!("{stem}.sync-conflict-{tag}{counter}{ext}");
        match dir.rename(file_name, &target, false) {
            Ok(()) => return Ok(dir.join(&target)),
            Err(Error::Exists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some counter is free")
}

/// Watches `dir` recursively, sending `()` on every change that is not a partial download.
fn watch(dir: &Path, changes: mpsc::UnboundedSender<()>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => !event.kind.is_access() && !event.paths.iter().all(|p| crate::out_dir::is_partial(p)),
            Err(_) => true,
        };
        if relevant {
            let _ = changes.send(());
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_proto::FileMeta;

    fn entry(name: &str, id: u8, modified_ns: u64, complete: bool) -> CatalogueEntry {
        CatalogueEntry {
            file: FileId([id; 32]),
            name: name.into(),
            size: 10,
            chunk_count: 2,
            holders: 1,
            available: if complete { 2 } else { 1 },
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
        }
    }

    #[test]
    fn the_newest_complete_version_of_each_name_wins() {
        let catalogue = [
            entry("a", 1, 10, true),
            entry("a", 2, 30, true),
            entry("a", 3, 50, false),
            entry("b", 4, 10, true),
            entry("b", 5, 10, true),
        ];
        let picked: Vec<(&str, u8)> = winners(&catalogue).into_iter().map(|(n, e)| (n, e.file.0[0])).collect();
        assert_eq!(picked, vec![("a", 2), ("b", 5)]);
    }

    #[test]
    fn conflict_copies_never_replace_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let id = FileId([0xab; 32]);
        for round in 0..2 {
            let path = tmp.path().join("notes.txt");
            std::fs::write(&path, format!("version {round}")).unwrap();
            keep_as_conflict(tmp.path(), "notes.txt", &id).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["notes.sync-conflict-abababab-2.txt", "notes.sync-conflict-abababab.txt"]
        );
    }
}
