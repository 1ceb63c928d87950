//! A peer node: identity, QUIC endpoint, chunk server, local state and its session with the
//! tracker. Seeding and fetching are operations on a running node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::fetch::{self, FetchOptions, FetchReport};
use crate::identity::Identity;
use crate::ids::{FileId, PeerId};
use crate::known_trackers::KnownTrackers;
use crate::manifest::Manifest;
use crate::meta::FileMeta;
use crate::name;
use crate::progress::Progress;
use crate::protocol::CatalogueEntry;
use crate::ratelimit::RateLimiter;
use crate::server::{self, ServerContext};
use crate::state::{FileStamp, SeededRecord, StateDb};
use crate::status;
use crate::store::{Held, Store};
use crate::tracker_client::{Located, RegisteredOrNot, Registration, TrackerAddr, TrackerClient};
use crate::transport::Transport;

/// Files waiting for a re-check after the chunk server found them changed on disk.
const CHANGE_QUEUE: usize = 64;

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Keys and sled state live here.
    pub state_dir: PathBuf,
    /// Address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// The tracker, if any.
    pub tracker: Option<TrackerAddr>,
    /// Address to give out instead of the one the tracker observes.
    pub advertise: Option<SocketAddr>,
    /// Cap on bytes per second uploaded, across all connections.
    pub max_upload_rate: Option<u64>,
    /// Cap on bytes per second downloaded, across all downloads.
    pub max_download_rate: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            state_dir: PathBuf::from(".swarm"),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            tracker: None,
            advertise: None,
            max_upload_rate: None,
            max_download_rate: None,
        }
    }
}

/// One file shared by [`Node::seed_dir`].
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
    /// Hashed in this run; false if its manifest was known from an earlier run.
    pub hashed: bool,
    /// Fetched from the swarm by this node and unchanged since.
    pub fetched: bool,
}

impl SeededFile {
    /// A complete held file, neither hashed now nor known to be fetched.
    fn of(held: &Held) -> SeededFile {
        SeededFile {
            id: held.id,
            manifest: held.manifest.clone(),
            path: held.path(),
            meta: held.meta,
            hashed: false,
            fetched: false,
        }
    }
}

/// What [`Node::scan_dir`] found.
#[derive(Debug, Clone, Default)]
pub struct DirScan {
    /// The files shared, sorted by name.
    pub files: Vec<SeededFile>,
    /// Names of files modified too recently to share yet (still being written, perhaps).
    pub unsettled: Vec<String>,
}

/// A running peer node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    store: Arc<Store>,
    state: StateDb,
    state_dir: PathBuf,
    tracker: Option<Arc<TrackerClient>>,
    advertise: Option<SocketAddr>,
    registration: Mutex<Option<Registration>>,
    shutdown: CancellationToken,
    uploads: TaskTracker,
    background: TaskTracker,
    download_limit: Option<Arc<RateLimiter>>,
}

impl Node {
    /// Loads (or creates) the identity and state in `config.state_dir`, binds the endpoint and
    /// starts serving chunks. Does not contact the tracker yet.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| Error::io(&config.state_dir, e))?;
        let identity = Arc::new(Identity::load_or_create(&config.state_dir)?);
        let state = StateDb::open(&config.state_dir)?;
        let transport = Transport::bind(identity, config.listen)?;
        let tracker = config.tracker.map(|addr| {
            Arc::new(TrackerClient::new(
                transport.clone(),
                addr,
                Some(KnownTrackers::in_dir(&config.state_dir)),
            ))
        });
        let node = Node {
            inner: Arc::new(Inner {
                transport: transport.clone(),
                store: Arc::new(Store::default()),
                state,
                state_dir: config.state_dir.canonicalize().unwrap_or(config.state_dir.clone()),
                tracker,
                advertise: config.advertise,
                registration: Mutex::new(None),
                shutdown: CancellationToken::new(),
                uploads: TaskTracker::new(),
                background: TaskTracker::new(),
                download_limit: config.max_download_rate.map(|r| Arc::new(RateLimiter::new(r))),
            }),
        };
        let inner = &node.inner;
        let (changed, changes) = mpsc::channel(CHANGE_QUEUE);
        let context = ServerContext {
            store: inner.store.clone(),
            limit: config.max_upload_rate.map(|r| Arc::new(RateLimiter::new(r))),
            changed,
            own_id: node.id(),
            state: inner.state.clone(),
        };
        // `swarm status` finds the running node here.
        let address_file = config.state_dir.join(status::ADDRESS_FILE);
        let reachable = crate::netutil::loopback_for(node.local_addr());
        std::fs::write(&address_file, reachable.to_string()).map_err(|e| Error::io(&address_file, e))?;
        inner.background.spawn(server::serve(
            transport,
            context,
            inner.shutdown.clone(),
            inner.uploads.clone(),
        ));
        let recheck = node.clone();
        inner
            .background
            .spawn(async move { recheck.recheck_changed(changes).await });
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> PeerId {
        self.inner.transport.id()
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.transport.local_addr()
    }

    /// The files this node holds.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub(crate) fn state(&self) -> &StateDb {
        &self.inner.state
    }

    pub(crate) fn download_limit(&self) -> Option<&RateLimiter> {
        self.inner.download_limit.as_deref()
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The tracker client, or an error saying how to name a tracker.
    pub fn tracker(&self) -> Result<&Arc<TrackerClient>> {
        self.inner.tracker.as_ref().ok_or_else(|| Error::Tracker {
            addr: "(none)".into(),
            message: "no tracker given: pass --tracker HOST:PORT or set SWARM_TRACKER".into(),
        })
    }

    /// Registers with the tracker, announces every held file, and keeps the session alive in
    /// the background (re-registering if the tracker forgets this peer, e.g. after a restart).
    pub async fn join_tracker(&self) -> Result<Registration> {
        let registration = self.register_and_announce().await?;
        let node = self.clone();
        let period = Duration::from_secs((registration.timeout_secs / 3).max(1));
        self.inner
            .background
            .spawn(async move { node.keepalive_loop(period).await });
        Ok(registration)
    }

    async fn register_and_announce(&self) -> Result<Registration> {
        let tracker = self.tracker()?;
        let registration = tracker.register(self.inner.advertise).await?;
        *self.inner.registration.lock().await = Some(registration);
        for held in self.inner.store.all() {
            tracker.announce(&held.manifest, &held.chunks(), held.meta).await?;
        }
        Ok(registration)
    }

    async fn keepalive_loop(&self, period: Duration) {
        let Ok(tracker) = self.tracker() else { return };
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let outcome = match tracker.keepalive().await {
                Ok(RegisteredOrNot::Ok) => Ok(()),
                Ok(RegisteredOrNot::NotRegistered) => {
                    info!("tracker forgot this peer; registering again");
                    self.register_and_announce().await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) if !healthy => {
                    info!("tracker reachable again");
                    healthy = true;
                }
                Ok(()) => {}
                Err(e) => {
                    if healthy {
                        warn!("keepalive failed, will keep trying: {e}");
                    }
                    healthy = false;
                }
            }
        }
    }

    /// Re-checks held files the chunk server found changed on disk: hashes them again, keeps
    /// the chunks that still match, and tells the tracker (withdrawing the file if nothing
    /// matches any more).
    async fn recheck_changed(&self, mut changes: mpsc::Receiver<FileId>) {
        let mut pending = std::collections::BTreeSet::new();
        loop {
            let first = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
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
        let Some(held) = self.inner.store.get(&file) else {
            return;
        };
        let before = held.chunks();
        let (path, manifest) = (held.path(), held.manifest.clone());
        let check = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => crate::store::chunks_on_disk(&f, &manifest),
            Err(_) => crate::bitfield::Bitfield::new(manifest.chunk_count),
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
            if let Err(e) = self.announce(&held).await {
                warn!("could not update the tracker: {e}");
            }
        }
    }

    /// Announces a held file to the tracker if this node has joined it.
    pub(crate) async fn announce(&self, held: &Held) -> Result<()> {
        if self.inner.registration.lock().await.is_none() {
            return Ok(());
        }
        let tracker = self.tracker()?;
        if tracker.announce(&held.manifest, &held.chunks(), held.meta).await? == RegisteredOrNot::NotRegistered {
            self.register_and_announce().await?;
        }
        Ok(())
    }

    /// Shares every regular file under `dir` (symlinks are not followed): holds them and
    /// announces them if the node has joined a tracker. A file unchanged since this node last
    /// seeded it (same size, modification time and inode) reuses the manifest saved in sled;
    /// the others are hashed, and the ids of files that changed or vanished since are withdrawn
    /// from the tracker. `progress` counts bytes hashed.
    pub async fn seed_dir(&self, dir: &Path, chunk_size: u32, progress: &Progress) -> Result<Vec<SeededFile>> {
        Ok(self.scan_dir(dir, chunk_size, Duration::ZERO, progress).await?.files)
    }

    /// [`Node::seed_dir`], leaving out files modified less than `settle` ago: they are
    /// reported as unsettled and shared by a later scan. Partial downloads (`.NAME.swarm-part`)
    /// and this node's state directory are never shared.
    pub async fn scan_dir(
        &self,
        dir: &Path,
        chunk_size: u32,
        settle: Duration,
        progress: &Progress,
    ) -> Result<DirScan> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let state = self.state();
        let mut previous: HashMap<PathBuf, SeededRecord> = state.seeded_under(&root)?.into_iter().collect();
        let mut scan = DirScan::default();
        let mut to_hash = Vec::new();
        let now = std::time::SystemTime::now();
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.path() != self.inner.state_dir);
        for entry in walk {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_owned();
                Error::io(&path, e.into())
            })?;
            if !entry.file_type().is_file() || fetch::is_partial(entry.path()) {
                continue;
            }
            let Some(name) = name::name_of(&root, entry.path()) else {
                warn!(path = %entry.path().display(), "skipped: its name cannot be shared (not UTF-8 or unsafe)");
                continue;
            };
            let path = entry.into_path();
            let metadata = match std::fs::metadata(&path) {
                Ok(metadata) => metadata,
                // Deleted since it was listed: as if it had never been there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let stamp = FileStamp::of(&metadata);
            let modified = metadata.modified().map_err(|e| Error::io(&path, e))?;
            if now.duration_since(modified).unwrap_or_default() < settle {
                // Still being written, perhaps: neither shared nor withdrawn until it settles.
                previous.remove(&path);
                scan.unsettled.push(name);
                continue;
            }
            match previous.remove(&path) {
                Some(record)
                    if record.stamp == stamp
                        && record.manifest.name == name
                        && record.manifest.chunk_size == chunk_size =>
                {
                    let held = match self.inner.store.get(&record.manifest.id()) {
                        // Held and announced already (an earlier scan, or the fetch that wrote
                        // it): rescans of a large folder send the tracker nothing.
                        Some(held) if held.path() == path && held.chunks().is_complete() => SeededFile::of(&held),
                        _ => self.hold_complete(record.manifest, path, record.meta).await?,
                    };
                    scan.files.push(SeededFile {
                        fetched: record.fetched,
                        ..held
                    });
                }
                stale => {
                    progress.add_total(stamp.size);
                    let meta = FileMeta::modified_at(modified);
                    to_hash.push((path, name, stamp, meta, stale.map(|r| r.manifest.id())));
                }
            }
        }
        for (path, record) in previous {
            info!(path = %path.display(), "seeded before but no longer there; withdrawing it");
            self.stop_holding(record.manifest.id()).await;
            state.remove_seeded(&path)?;
        }
        for (path, name, stamp, mut meta, stale_id) in to_hash {
            let manifest = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Manifest::from_file(&path, &name, chunk_size))
                    .await
                    .map_err(|e| Error::Transport(e.to_string()))??
            };
            progress.advance(stamp.size);
            if let Some(old) = stale_id.filter(|old| *old != manifest.id()) {
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
            state.save_seeded(&path, &record)?;
            let held = self.hold_complete(manifest, path, meta).await?;
            scan.files.push(SeededFile { hashed: true, ..held });
        }
        state.flush()?;
        scan.files.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        Ok(scan)
    }

    /// Remembers a file this node fetched as seeded and unchanged since, so that scanning its
    /// folder later does not hash it again.
    pub fn remember_fetched(&self, report: &FetchReport) -> Result<()> {
        let path = report.path.canonicalize().map_err(|e| Error::io(&report.path, e))?;
        let metadata = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let record = SeededRecord {
            stamp: FileStamp::of(&metadata),
            manifest: (*report.manifest).clone(),
            meta: report.meta,
            fetched: true,
        };
        self.state().save_seeded(&path, &record)?;
        self.state().flush()
    }

    /// Stops serving `file` and withdraws it from the tracker (best effort: a tracker that
    /// does not list it is fine).
    pub async fn stop_holding(&self, file: FileId) {
        self.inner.store.remove(&file);
        if self.inner.registration.lock().await.is_none() {
            return;
        }
        if let Ok(tracker) = self.tracker() {
            if let Err(e) = tracker.withdraw(file).await {
                debug!(file = %file.short(), "withdraw: {e}");
            }
        }
    }

    /// Holds a complete, already hashed file and announces it with `meta`.
    pub async fn hold_complete(&self, manifest: Manifest, path: PathBuf, meta: FileMeta) -> Result<SeededFile> {
        let manifest = Arc::new(manifest);
        let chunks = crate::bitfield::Bitfield::full(manifest.chunk_count);
        let held = self.inner.store.add(manifest, path, chunks, meta);
        self.announce(&held).await?;
        Ok(SeededFile::of(&held))
    }

    /// Downloads a file (see [`crate::fetch`]).
    pub async fn fetch(&self, file: FileId, options: FetchOptions) -> Result<FetchReport> {
        fetch::fetch(self, file, options).await
    }

    /// The tracker's catalogue.
    pub async fn list(&self) -> Result<Vec<CatalogueEntry>> {
        self.tracker()?.list().await
    }

    /// Catalogue entries whose name equals or contains `query`.
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<CatalogueEntry>> {
        self.tracker()?.search(query, exact).await
    }

    /// The file whose id is or starts with `text`.
    pub async fn resolve(&self, text: &str) -> Result<FileId> {
        self.tracker()?.resolve(text).await
    }

    /// A file's manifest (checked against its id) and who holds which chunks.
    pub async fn locate(&self, file: FileId) -> Result<Located> {
        let located = self.tracker()?.locate(file).await?;
        located.manifest.verify(&file).map_err(|source| Error::Manifest {
            file: Some(file),
            source,
        })?;
        Ok(located)
    }

    /// Leaves the tracker, stops accepting requests, lets uploads in flight finish (up to
    /// `grace`), and closes the endpoint.
    pub async fn shutdown(&self, grace: Duration) {
        if self.inner.registration.lock().await.take().is_some() {
            if let Ok(tracker) = self.tracker() {
                if let Err(e) = tokio::time::timeout(Duration::from_secs(3), tracker.leave())
                    .await
                    .unwrap_or_else(|_| Err(Error::Timeout("leaving the tracker timed out".into())))
                {
                    warn!("could not tell the tracker we are leaving: {e}");
                }
            }
        }
        self.inner.shutdown.cancel();
        self.inner.uploads.close();
        if tokio::time::timeout(grace, self.inner.uploads.wait()).await.is_err() {
            warn!("uploads still running after {grace:?}; closing anyway");
        }
        self.inner.background.close();
        self.inner.transport.close().await;
    }

    /// Chunks being uploaded right now.
    pub fn uploads_in_flight(&self) -> usize {
        self.inner.uploads.len()
    }

    /// Has [`Node::shutdown`] begun?
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}
