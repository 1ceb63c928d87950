//! Folder sync: every node that syncs a folder as the same share ends up with the same files.
//!
//! A share is a listing the tracker keeps ([`swarm_proto::share`]): for each path, its
//! current version or a tombstone. A share is named by its key ([`swarm_proto::share_key`]):
//! nodes with the read-write key sign what they change, and every node checks every change
//! it is sent against the share's key, and against what it already knows, before it acts on
//! it ([`mirror`]); a node with the read-only key follows the share, and its own edits stay on
//! its disk. Only nodes of the same share exchange files; plain seeds and other shares never
//! enter it. A sync node seeds its folder, tells the tracker what changed in it (new
//! versions, deletions), and, each tick, asks what changed in the share since the version it
//! last saw, then brings the folder in line, path by path:
//! - **Newest wins.** Of two versions of a path, the later modification time wins (ties go to
//!   the larger id, so that every node picks the same one). A local version newer than the
//!   share's is put in the share; an older one is replaced by the share's.
//! - **Replacing keeps the old version.** A local version that lost is replaced only if
//!   nobody edited it here (it was fetched and is unchanged since, or the winner says it
//!   replaced exactly this version); its old content goes to `.swarm/versions/`. A local
//!   edit that lost a conflict is renamed `STEM.sync-conflict-YYYYMMDD-HHMMSS-NODE.EXT` (and shared like any
//!   file) before the winner is fetched. Nothing is destroyed.
//! - **Deletions propagate.** A file deleted here becomes a tombstone in the share (who
//!   deleted it, and when), if what was deleted is the share's current version: a deletion
//!   that raced an edit elsewhere loses, and the edit comes back. Other nodes move their copy
//!   into `.swarm/versions/`. A file modified after the deletion (an edit on a node that was
//!   away) wins over the tombstone and comes back everywhere; an older one is put away too.
//! - `.swarm/versions/` keeps what was put away for `keep_versions` (30 days by default);
//!   `.swarm/` is never shared.
//!
//! The folder is rescanned when file-system notifications say something changed, and every
//! `rescan` period in case one was missed. A file modified less than `settle` ago is neither
//! shared nor replaced until it is still.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::FileStamp;
use crate::error::{Error, Result};
use crate::fetch::Replace;
use crate::folder::{DirScan, Origin, SeededFile, Skipped};
use crate::node::Node;
use crate::out_dir::Dir;
use crate::progress::Progress;
use crate::tracker_client::Located;
use crate::versions::{self, Keep};
use swarm_proto::ids::FileId;
use swarm_proto::meta::nanos_since_epoch;
use swarm_proto::name;
use swarm_proto::protocol::MAX_SMALL_FILES;
use swarm_proto::share::{ShareChange, ShareState};
use swarm_proto::share_key::{ShareKey, SignedChange};

mod conflict;
mod download;
mod events;
pub mod folder_key;
pub mod mirror;
mod plan;
mod small_batch;

use conflict::keep_as_conflict;
use download::{fetch_options, Download};
pub use events::SyncEvent;
use mirror::ShareMirror;
use plan::{Planned, Replacing, Situation};

/// How a folder is synced.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The folder.
    pub dir: PathBuf,
    /// The share's key: only nodes that sync the same share exchange files, and only a
    /// read-write key changes the share.
    pub share: ShareKey,
    /// Chunk size for files hashed here.
    pub chunk_size: u32,
    /// How often the share is compared with the folder.
    pub interval: Duration,
    /// Full rescans of the folder, in case a notification was missed.
    pub rescan: Duration,
    /// How long a file must stay unmodified before it is shared or replaced.
    pub settle: Duration,
    /// Downloads at once.
    pub parallel: usize,
    /// How long deleted and replaced files stay in `.swarm/versions/`.
    pub keep_versions: Duration,
}

impl SyncOptions {
    /// Defaults for syncing `dir` as the share of `share`.
    pub fn new(dir: PathBuf, share: ShareKey) -> SyncOptions {
        SyncOptions {
            share,
            dir,
            chunk_size: crate::DEFAULT_CHUNK_SIZE,
            interval: Duration::from_secs(1),
            rescan: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            parallel: 16,
            keep_versions: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A failed download is not tried again before this.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A change told to the tracker is not told again before this (unless it comes back changed).
const TELL_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// Files up to this size are located in batches before their download starts (a request per
/// file would hold a sync of many small files to the tracker's limit of requests a second).
const LOCATE_IN_BATCHES_UP_TO: u64 = 64 << 20;
/// Files located ahead in one batch.
const LOCATE_AHEAD: usize = swarm_proto::protocol::MAX_BATCH_LOCATES;
/// A batched locate's answer is used for this long, then asked again.
const LOCATED_FOR: Duration = Duration::from_secs(5);

/// Syncs `options.dir` until `stop` is cancelled, sending what it does to `events`. The node
/// must have joined a tracker.
pub async fn run(
    node: &Node,
    options: SyncOptions,
    events: mpsc::UnboundedSender<SyncEvent>,
    stop: CancellationToken,
) -> Result<()> {
    let dir = options.dir.canonicalize().map_err(|e| Error::io(&options.dir, e))?;
    let options_share_id = options.share.id();
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
        in_flight: HashMap::new(),
        superseded: HashSet::new(),
        failed: HashMap::new(),
        scan: DirScan::default(),
        queue: VecDeque::new(),
        fetched: HashSet::new(),
        named: HashSet::new(),
        scan_wanted: true,
        last_full_scan: Instant::now(),
        last_scan_took: Duration::ZERO,
        last_scan_ended: Instant::now(),
        changed: true,
        share: ShareMirror::new(options_share_id),
        republish: Vec::new(),
        deleted_here: HashMap::new(),
        kept_here: HashMap::new(),
        said_local: HashMap::new(),
        told: HashMap::new(),
        located: HashMap::new(),
        locate_alone: HashSet::new(),
        locating: JoinSet::new(),
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
            Some(done) = sync.locating.join_next() => sync.located(done),
            _ = ticker.tick() => sync.tick().await,
        }
    }
    sync.downloads.shutdown().await;
    Ok(())
}

/// A batched locate's files, and its answers.
type BatchLocated = (Vec<FileId>, Result<Vec<Result<Located>>>);

/// The state of one running sync.
struct FolderSync {
    node: Node,
    dir: PathBuf,
    options: SyncOptions,
    events: mpsc::UnboundedSender<SyncEvent>,
    downloads: JoinSet<Vec<Download>>,
    /// Names being downloaded, with the version being fetched.
    in_flight: HashMap<String, FileId>,
    /// Downloads cancelled because the share moved on to another version of their name.
    superseded: HashSet<FileId>,
    /// Versions whose download failed, and when.
    failed: HashMap<FileId, Instant>,
    scan: DirScan,
    /// Downloads planned from the share as last listed, waiting for a slot.
    queue: VecDeque<Planned>,
    /// Versions fetched since the last scan (which does not list them yet).
    fetched: HashSet<FileId>,
    /// Paths already named as skipped.
    named: HashSet<PathBuf>,
    scan_wanted: bool,
    last_full_scan: Instant,
    last_scan_took: Duration,
    last_scan_ended: Instant,
    /// The folder or the share changed since the last reconcile.
    changed: bool,
    share: ShareMirror,
    /// Signed changes the tracker lost (its record of the share began again), to send back.
    republish: Vec<SignedChange>,
    /// Files deleted here and not yet told to the tracker, by name.
    deleted_here: HashMap<String, FileId>,
    /// On a read-only node: files deleted here that stay deleted (not fetched back while the
    /// share's version is the one deleted), by name.
    kept_here: HashMap<String, FileId>,
    /// On a read-only node: the local versions (`None` for a deletion) already said to stay
    /// here, by name.
    said_local: HashMap<String, Option<FileId>>,
    /// Versions put in the share lately, by name, and when (not told again too soon).
    told: HashMap<String, (FileId, Instant)>,
    /// Answers of batched locates, waiting for their download to start.
    located: HashMap<FileId, (Instant, Located)>,
    /// Files whose batched locate failed: their download locates them alone (and says why
    /// if it fails).
    locate_alone: HashSet<FileId>,
    /// The batched locate under way (one at a time).
    locating: JoinSet<BatchLocated>,
}

impl FolderSync {
    async fn tick(&mut self) {
        let due = self.last_full_scan.elapsed() >= self.options.rescan;
        // A scan of a large folder takes a while: scans are spaced by four times as long, so
        // that a stream of changes (downloads landing) does not keep the node scanning.
        let rested = self.last_scan_ended.elapsed() >= 4 * self.last_scan_took;
        if (self.scan_wanted || !self.scan.unsettled.is_empty()) && rested || due {
            self.scan_wanted = false;
            self.last_full_scan = Instant::now();
            let started = Instant::now();
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
            let hashed = scan.files.iter().filter(|f| f.origin == Origin::Hashed).count();
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
            for (name, file) in &scan.vanished {
                self.deleted_here.insert(name.clone(), *file);
            }
            if due {
                let pruned = versions::prune(&self.dir, self.options.keep_versions);
                if pruned > 0 {
                    debug!(
                        "removed {pruned} old version(s) kept longer than {:?}",
                        self.options.keep_versions
                    );
                }
            }
            self.scan = scan;
            self.fetched.clear();
            self.last_scan_took = started.elapsed();
            self.last_scan_ended = Instant::now();
            self.changed = true;
        }
        match self.refresh_share().await {
            // Nothing new on either side: the queue planned last stands.
            Ok(()) if !self.changed => self.fill(),
            Ok(()) => {
                self.changed = false;
                self.reconcile().await
            }
            Err(e) => debug!(
                "listing share {} failed, trying again next tick: {e}",
                self.options.share.id().short()
            ),
        }
    }

    /// Brings the mirror of the share up to date: the changes since the version last seen,
    /// or the whole listing if the tracker's record of the share began again (merged with what
    /// this node knows, never believed over it).
    async fn refresh_share(&mut self) -> Result<()> {
        let share = self.options.share.id();
        let page = self.node.share_changes(&share, self.share.since).await?;
        let now_ns = nanos_since_epoch(SystemTime::now());
        let merged = if self.share.is_new_start(&page) {
            let whole = if self.share.since == 0 {
                page
            } else {
                self.node.share_changes(&share, 0).await?
            };
            let (merged, missing) = self.share.restart(whole, now_ns);
            self.republish = missing;
            self.changed = true;
            merged
        } else {
            self.share.apply(page, now_ns)
        };
        self.changed |= merged.changed > 0;
        if let Some(why) = merged.refused.first() {
            let _ = self.events.send(SyncEvent::Refused {
                count: merged.refused.len(),
                why: why.clone(),
            });
        }
        Ok(())
    }

    /// Compares the folder with the share ([`plan`]) and carries out the plan: tells the
    /// tracker what is newer here, puts away what was deleted elsewhere, and queues the
    /// downloads of what is newer there, starting as many as there are free slots (the rest
    /// wait in the queue for slots to free). A read-only node tells nothing: what changed here
    /// stays here, and is said once.
    async fn reconcile(&mut self) {
        let plan = plan::plan(&Situation {
            local: &self.scan.files,
            unsettled: &self.scan.unsettled,
            in_flight: &self.in_flight,
            share: &self.share.entries,
            deleted_here: &self.deleted_here,
            kept_here: &self.kept_here,
            writer: self.options.share.writer().is_some(),
            now_ns: nanos_since_epoch(SystemTime::now()),
        });
        // A deletion of anything but the share's current version lost (or is not news).
        self.deleted_here.clear();
        self.kept_here.extend(plan.keep_deleted);
        self.queue = plan.downloads.into();
        for (mine, deleted_ns) in plan.put_away {
            self.put_away(&mine, deleted_ns);
        }
        for (name, version) in plan.local_only {
            self.say_local_only(name, version);
        }
        for path in plan.in_future {
            if self.named.insert(path.clone()) {
                let _ = self.events.send(SyncEvent::Skipped(Skipped {
                    path,
                    why: "modified in the future (check this machine's clock); shared once that time comes".into(),
                }));
            }
        }
        self.cancel_superseded();
        self.tell(plan.tell).await;
        self.fill();
    }

    /// Says once that a change here stays here (read-only node): `version` is the local
    /// version, or `None` for a deletion.
    fn say_local_only(&mut self, name: String, version: Option<FileId>) {
        if self.said_local.insert(name.clone(), version) != Some(version) {
            let _ = self.events.send(SyncEvent::LocalOnly {
                name,
                deleted: version.is_none(),
            });
        }
    }

    /// Tells the tracker `changes`, signed (leaving out puts told lately), and any changes it
    /// lost; deletions that do not get through are kept for the next tick.
    async fn tell(&mut self, changes: Vec<ShareChange>) {
        let changes: Vec<ShareChange> = changes
            .into_iter()
            .filter(|change| match change {
                ShareChange::Put { name, file, .. } => !self
                    .told
                    .get(name)
                    .is_some_and(|(told, at)| told == file && at.elapsed() < TELL_AGAIN_AFTER),
                ShareChange::Delete { .. } => true,
            })
            .collect();
        let Some(key) = self.options.share.writer().cloned() else {
            self.send_back_lost().await;
            return;
        };
        let mut signed: Vec<SignedChange> = changes.iter().cloned().map(|c| key.sign(c)).collect();
        let republished = std::mem::take(&mut self.republish);
        signed.extend(republished.iter().cloned());
        if signed.is_empty() {
            return;
        }
        match self.node.share_update(&self.options.share.id(), signed).await {
            Ok(()) => {
                for change in changes {
                    match change {
                        ShareChange::Put { name, file, .. } => {
                            self.told.insert(name, (file, Instant::now()));
                        }
                        ShareChange::Delete { name, .. } => {
                            let _ = self.events.send(SyncEvent::Deleted { name });
                        }
                    }
                }
            }
            Err(e) => {
                warn!(
                    "could not tell the tracker what changed in share {}: {e}",
                    self.options.share.id().short()
                );
                self.republish = republished;
                for change in changes {
                    if let ShareChange::Delete { name, was, .. } = change {
                        self.deleted_here.insert(name, was);
                    }
                }
            }
        }
    }

    /// Sends the tracker the signed changes it lost (any member may: they are the writers').
    async fn send_back_lost(&mut self) {
        if self.republish.is_empty() {
            return;
        }
        let lost = std::mem::take(&mut self.republish);
        if let Err(e) = self.node.share_update(&self.options.share.id(), lost.clone()).await {
            debug!("could not send the tracker the share changes it lost: {e}");
            self.republish = lost;
        }
    }

    /// Moves a file deleted elsewhere (at `deleted_ns`) into `.swarm/versions/`, unless it was
    /// modified since it was scanned (then it is newer than the deletion and is put in the
    /// share at the next scan).
    fn put_away(&mut self, mine: &SeededFile, deleted_ns: u64) {
        let modified = std::fs::symlink_metadata(&mine.path)
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok());
        match modified {
            Some(at) if nanos_since_epoch(at) <= deleted_ns => {}
            _ => {
                self.scan_wanted = true;
                return;
            }
        }
        let name = mine.manifest.name.clone();
        match versions::keep(&self.dir, &name, Keep::Move) {
            Ok(kept) => {
                let kept_as = name::name_of(&self.dir, &kept).unwrap_or_else(|| kept.display().to_string());
                // A folder the deletion emptied goes too, as it did where the file was deleted.
                if let Ok(root) = Dir::open_root(&self.dir) {
                    root.remove_empty_parents(&name);
                }
                let _ = self.events.send(SyncEvent::Removed { name, kept_as });
            }
            Err(error) => {
                let _ = self.events.send(SyncEvent::Failed { name, error });
            }
        }
        self.scan_wanted = true;
    }

    /// Starts queued downloads while slots are free, skipping those in flight, fetched since
    /// the last scan, or failed lately. A small file waits for its batched locate; new small
    /// files located go many to a slot ([`small_batch`]).
    fn fill(&mut self) {
        self.located.retain(|_, (at, _)| at.elapsed() < LOCATED_FOR);
        let mut batch = Vec::new();
        while self.downloads.len() < self.options.parallel {
            let Some(planned) = self.queue.front() else {
                break;
            };
            if !self.wanted(planned) {
                self.queue.pop_front();
                continue;
            }
            let batched = planned.size <= LOCATE_IN_BATCHES_UP_TO && !self.locate_alone.contains(&planned.file);
            if batched && !self.located.contains_key(&planned.file) {
                self.locate_ahead();
                break;
            }
            let planned = self.queue.pop_front().expect("looked at above");
            match self.located.remove(&planned.file).map(|(_, located)| located) {
                Some(located) if small_batch::fits(&planned, &located) => {
                    self.in_flight.insert(planned.name.clone(), planned.file);
                    batch.push((planned, located));
                    if batch.len() == MAX_SMALL_FILES {
                        self.start_batch(std::mem::take(&mut batch));
                    }
                }
                located => self.start_download(planned, located),
            }
        }
        if !batch.is_empty() {
            self.start_batch(batch);
        }
    }

    /// Fetches new small files, many per request, in one download slot.
    fn start_batch(&mut self, batch: Vec<(Planned, Located)>) {
        let (node, dir) = (self.node.clone(), self.dir.clone());
        self.downloads.spawn(small_batch::fetch(node, dir, batch));
    }

    /// Cancels each download in flight whose name the share now lists in another version
    /// (or as deleted): waiting for holders of a version nobody serves any more would hold
    /// the name until the download gave up (two minutes and more).
    fn cancel_superseded(&mut self) {
        for (name, fetching) in &self.in_flight {
            let listed = match self.share.entries.get(name).map(|e| &e.state) {
                Some(ShareState::Present { file, .. }) => Some(*file),
                Some(ShareState::Deleted { .. }) => None,
                None => continue,
            };
            if listed == Some(*fetching) || self.superseded.contains(fetching) {
                continue;
            }
            if let Some(download) = self.node.downloads().get(fetching) {
                debug!(%name, old = %fetching.short(), "the share lists another version; this download stops");
                download.cancel();
                self.superseded.insert(*fetching);
            }
        }
    }

    /// Should this planned download start (not in flight, not fetched since the last scan, not
    /// failed lately)?
    fn wanted(&self, planned: &Planned) -> bool {
        let failed_lately = self
            .failed
            .get(&planned.file)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER);
        !(self.in_flight.contains_key(&planned.name) || self.fetched.contains(&planned.file) || failed_lately)
    }

    /// Locates the next small files of the queue in one batch, unless a batch is under way.
    fn locate_ahead(&mut self) {
        if !self.locating.is_empty() {
            return;
        }
        let files: Vec<FileId> = self
            .queue
            .iter()
            .filter(|p| p.size <= LOCATE_IN_BATCHES_UP_TO && self.wanted(p))
            .map(|p| p.file)
            .filter(|file| !self.located.contains_key(file) && !self.locate_alone.contains(file))
            .take(LOCATE_AHEAD)
            .collect();
        let node = self.node.clone();
        self.locating.spawn(async move {
            let answers = node.locate_many(&files).await;
            (files, answers)
        });
    }

    /// Keeps a batched locate's answers for the downloads they are for, and starts them.
    fn located(&mut self, done: std::result::Result<BatchLocated, tokio::task::JoinError>) {
        let Ok((files, answers)) = done else {
            return;
        };
        match answers {
            Ok(answers) => {
                for (file, answer) in files.into_iter().zip(answers) {
                    match answer {
                        Ok(located) => {
                            self.located.insert(file, (Instant::now(), located));
                        }
                        Err(_) => {
                            self.locate_alone.insert(file);
                        }
                    }
                }
            }
            Err(e) => {
                debug!("a batched locate failed; locating those files one by one: {e}");
                self.locate_alone.extend(files);
            }
        }
        self.fill();
    }

    fn start_download(&mut self, planned: Planned, located: Option<Located>) {
        let mut replace = Replace::Never;
        let mut kept = None;
        if let Some(mine) = &planned.mine {
            if plan::replacing(mine, &planned) == Replacing::InPlace {
                if let Some(stamp) = std::fs::symlink_metadata(&mine.path)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| FileStamp::of(&m))
                {
                    // The old version keeps a name in .swarm/versions/: the fetch's rename
                    // over it leaves that name the only one.
                    match versions::keep(&self.dir, &planned.name, Keep::Link) {
                        Ok(path) => {
                            kept = Some(path);
                            replace = Replace::IfUnchanged(stamp);
                        }
                        Err(e) => warn!(name = %planned.name, "not replaced: its old version cannot be kept ({e})"),
                    }
                }
            } else {
                match keep_as_conflict(&self.dir, &mine.manifest.name, self.node.id(), SystemTime::now()) {
                    Ok(kept) => {
                        let kept_as = name::name_of(&self.dir, &kept).unwrap_or_else(|| kept.display().to_string());
                        // The event is what a person reads; the log line is for the log.
                        info!(name = %planned.name, %kept_as, "a newer version exists elsewhere; the local one is kept beside it");
                        let _ = self.events.send(SyncEvent::Conflict {
                            name: planned.name.clone(),
                            kept_as,
                        });
                        self.scan_wanted = true;
                    }
                    Err(error) => {
                        self.failed.insert(planned.file, Instant::now());
                        let _ = self.events.send(SyncEvent::Failed {
                            name: planned.name.clone(),
                            error,
                        });
                        return;
                    }
                }
            }
        }
        let options = fetch_options(&self.dir, &planned, replace, located);
        self.in_flight.insert(planned.name.clone(), planned.file);
        let node = self.node.clone();
        let root = self.dir.clone();
        self.downloads.spawn(async move {
            let result = node.fetch(planned.file, options).await;
            match &result {
                Ok(report) => {
                    if let Err(e) = node.remember_fetched(report).await {
                        warn!("{e}");
                    }
                }
                Err(_) => {
                    if let Some(kept) = &kept {
                        versions::forget(&root, kept);
                    }
                }
            }
            vec![Download {
                name: planned.name,
                file: planned.file,
                result,
            }]
        });
    }

    fn download_done(&mut self, done: std::result::Result<Vec<Download>, tokio::task::JoinError>) {
        for download in done.into_iter().flatten() {
            self.one_done(download);
        }
        // The freed slot goes to the next file at once, not at the next tick.
        self.fill();
    }

    fn one_done(&mut self, Download { name, file, result }: Download) {
        self.in_flight.remove(&name);
        self.scan_wanted = true;
        let event = match result {
            Ok(report) => {
                self.fetched.insert(file);
                SyncEvent::Fetched(report)
            }
            // Its newer version takes the freed slot.
            Err(_) if self.superseded.remove(&file) => return,
            Err(error) => {
                self.failed.insert(file, Instant::now());
                SyncEvent::Failed { name, error }
            }
        };
        let _ = self.events.send(event);
    }
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
