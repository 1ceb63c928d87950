//! A running peer: the owner of named parts, each doing one job.
//!
//! - the endpoint ([`Transport`]) and the chunk server ([`crate::server`]) on it;
//! - the files it holds, complete or downloading ([`HeldFiles`]), and its [`StateDb`] (sled);
//! - the [`Session`] with its tracker (register, keepalive, announce, batched chunk reports);
//! - the [`Folders`] it shares (scan, settle, re-check);
//! - the [`Downloads`] in flight, which the shell, sync and status all read.
//!
//! Shutdown goes in order: leave the tracker, stop accepting, let uploads in flight finish (up
//! to a grace period), close the endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_proto::access::Access;
use swarm_proto::protocol::{CatalogueEntry, Holding};
use swarm_proto::share::SharePage;
use swarm_proto::share_key::SignedChange;
use swarm_proto::transport::Transport;
use swarm_proto::{FileId, FileMeta, Identity, Manifest, PeerId, ShareId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

use crate::db::StateDb;
use crate::downloads::Downloads;
use crate::error::{Error, Result};
use crate::fetch::{self, FetchOptions, FetchReport};
use crate::folder::{DirScan, Folders, SeededFile};
use crate::held::HeldFiles;
use crate::known_trackers::KnownTrackers;
use crate::lan_discovery::LanDiscovery;
use crate::progress::Progress;
use crate::ratelimit::RateLimiter;
use crate::server::{self, ServerContext};
use crate::session::Session;
use crate::status;
use crate::tracker_client::{Located, Registration, TrackerClient, Trackers};

/// Files waiting for a re-check after the chunk server found them changed on disk.
const CHANGE_QUEUE: usize = 64;

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Keys and sled state live here.
    pub state_dir: PathBuf,
    /// Address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// The tracker (or several sharing one state), if any.
    pub tracker: Option<Trackers>,
    /// Address to give out instead of the one the tracker observes.
    pub advertise: Option<SocketAddr>,
    /// Cap on bytes per second uploaded, across all connections.
    pub max_upload_rate: Option<u64>,
    /// Cap on bytes per second downloaded, across all downloads.
    pub max_download_rate: Option<u64>,
    /// Who may talk to the node: anyone, or the nodes of its private swarm.
    pub access: Access,
    /// Answer the local network's queries for held files, and ask it when the tracker is slow
    /// or gone (local discovery).
    pub lan_discovery: bool,
    /// Behind a NAT, ask the router to map the node's port.
    pub port_mapping: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            state_dir: PathBuf::from(".swarm"),
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            tracker: None,
            advertise: None,
            max_upload_rate: None,
            max_download_rate: None,
            access: Access::Open,
            lan_discovery: true,
            port_mapping: true,
        }
    }
}

/// A running peer node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    transport: Transport,
    store: Arc<HeldFiles>,
    state: StateDb,
    session: Option<Session>,
    folders: Folders,
    downloads: Downloads,
    served: Arc<crate::upload_log::UploadLog>,
    /// What was read from HTTP origins, by file.
    origins: status::OriginReads,
    download_limit: Option<Arc<RateLimiter>>,
    shutdown: CancellationToken,
    uploads: TaskTracker,
    background: TaskTracker,
    /// Local discovery, unless turned off.
    lan: Option<LanDiscovery>,
}

impl Node {
    /// Locks the state directory, loads (or creates) the identity and state in it, binds the
    /// endpoint and starts serving chunks. Does not contact the tracker yet.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let dir = &config.state_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let state = StateDb::open(dir)?;
        let identity = Arc::new(Identity::load_or_create(dir)?);
        let transport = Transport::bind_with(identity, config.listen, config.access.clone())?;
        let store = Arc::new(HeldFiles::default());
        let ways_in = Arc::new(crate::nat::WaysIn::default());
        let session = config.tracker.map(|addr| {
            let client = TrackerClient::new(transport.clone(), addr, Some(KnownTrackers::in_dir(dir)));
            let reach = crate::session::Reachability {
                advertise: config.advertise,
                port_mapping: config.port_mapping,
            };
            Session::new(Arc::new(client), store.clone(), reach, ways_in.clone())
        });
        let state_dir = dir.canonicalize().unwrap_or(dir.clone());
        let skipped = status::SkippedPaths::default();
        let folders = Folders::new(
            store.clone(),
            state.clone(),
            session.clone(),
            state_dir,
            skipped.clone(),
        );
        let served = Arc::new(crate::upload_log::UploadLog::new(ways_in));
        let lan = config
            .lan_discovery
            .then(|| LanDiscovery::new(transport.id(), config.access.clone()));
        let node = Node {
            inner: Arc::new(Inner {
                state_dir: dir.clone(),
                transport: transport.clone(),
                store: store.clone(),
                state: state.clone(),
                session,
                folders: folders.clone(),
                downloads: Downloads::default(),
                served: served.clone(),
                origins: status::OriginReads::default(),
                download_limit: config.max_download_rate.map(|r| Arc::new(RateLimiter::new(r))),
                shutdown: CancellationToken::new(),
                uploads: TaskTracker::new(),
                background: TaskTracker::new(),
                lan: lan.clone(),
            }),
        };
        // `swarm status` finds the running node here.
        let address_file = dir.join(status::ADDRESS_FILE);
        let reachable = crate::netutil::loopback_for(node.local_addr());
        std::fs::write(&address_file, reachable.to_string()).map_err(|e| Error::io(&address_file, e))?;
        node.start_tasks(config.max_upload_rate, skipped);
        Ok(node)
    }

    /// Starts what runs in the background: the chunk server (uploads capped at
    /// `max_upload_rate`), the upload log's sweep, answers to the local network, and the
    /// re-check of files found changed on disk.
    fn start_tasks(&self, max_upload_rate: Option<u64>, skipped: status::SkippedPaths) {
        let inner = &self.inner;
        let (changed, changes) = mpsc::channel(CHANGE_QUEUE);
        let context = ServerContext {
            store: inner.store.clone(),
            limit: max_upload_rate.map(|r| Arc::new(RateLimiter::new(r))),
            changed,
            own_id: self.id(),
            status: status::Answerer {
                store: inner.store.clone(),
                state: inner.state.clone(),
                downloads: inner.downloads.clone(),
                served: inner.served.clone(),
                skipped,
                origins: inner.origins.clone(),
            },
            downloads: inner.downloads.clone(),
            shutdown: inner.shutdown.clone(),
            served: inner.served.clone(),
        };
        let span = tracing::info_span!("node", node = %self.id().short());
        let tracker = inner.session.as_ref().map(|session| session.client().clone());
        let sweep = crate::upload_log::sweep_until(inner.served.clone(), tracker, inner.shutdown.clone());
        inner.background.spawn(sweep.instrument(span.clone()));
        let server = server::serve(
            inner.transport.clone(),
            context,
            inner.shutdown.clone(),
            inner.uploads.clone(),
        );
        inner.background.spawn(server.instrument(span.clone()));
        if let Some(lan) = &inner.lan {
            let port = self.local_addr().port();
            if let Err(e) = lan.serve(inner.store.clone(), port, inner.shutdown.clone()) {
                warn!(
                    "not answering the local network's queries for files (port {}): {e}",
                    swarm_proto::lan::PORT
                );
            }
        }
        let (folders, stop) = (inner.folders.clone(), inner.shutdown.clone());
        inner
            .background
            .spawn(async move { folders.recheck_changed(changes, stop).await }.instrument(span));
    }

    /// This node's id.
    pub fn id(&self) -> PeerId {
        self.inner.transport.id()
    }

    /// The state directory it runs on.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.transport.local_addr()
    }

    /// The files this node holds.
    pub(crate) fn store(&self) -> &Arc<HeldFiles> {
        &self.inner.store
    }

    /// The downloads in flight.
    pub fn downloads(&self) -> &Downloads {
        &self.inner.downloads
    }

    /// The session with the tracker, or an error saying that none was given.
    pub(crate) fn session(&self) -> Result<&Session> {
        self.inner.session.as_ref().ok_or_else(|| Error::Tracker {
            addr: "(none)".into(),
            message: "no tracker was given to this node".into(),
        })
    }

    /// The node's cap on downloads, if any.
    pub(crate) fn download_limit(&self) -> Option<&Arc<RateLimiter>> {
        self.inner.download_limit.as_ref()
    }

    /// The node's QUIC endpoint.
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Handshakes the node has accepted since it started: dials of peers (and of trackers
    /// checking what it holds).
    pub fn handshakes_accepted(&self) -> u64 {
        self.inner.transport.endpoint().stats().accepted_handshakes
    }

    /// The tracker client.
    pub fn tracker(&self) -> Result<&Arc<TrackerClient>> {
        Ok(self.session()?.client())
    }

    /// Registers with the tracker, announces every held file, and keeps the session alive in
    /// the background (registering again if the tracker forgets this peer).
    pub async fn join_tracker(&self) -> Result<Registration> {
        self.session()?.join().await
    }

    /// Shares every regular file under `dir`; see [`Node::scan_dir`].
    pub async fn seed_dir(&self, dir: &Path, chunk_size: u32, progress: &Progress) -> Result<Vec<SeededFile>> {
        Ok(self.scan_dir(dir, chunk_size, Duration::ZERO, progress).await?.files)
    }

    /// Shares every regular file under `dir` (symlinks are not followed), leaving out files
    /// modified less than `settle` ago: they are reported as unsettled and shared by a later
    /// scan. A file unchanged since this node last seeded it (same size, modification time
    /// and inode) reuses the manifest saved in sled; the others are hashed, and the ids of
    /// files that changed or vanished since are withdrawn from the tracker. Partial downloads,
    /// this node's state directory and the folder's own `.swarm/` are never shared.
    /// `progress` counts bytes hashed. `dir` may also be a single file.
    pub async fn scan_dir(
        &self,
        dir: &Path,
        chunk_size: u32,
        settle: Duration,
        progress: &Progress,
    ) -> Result<DirScan> {
        self.inner.folders.scan(dir, chunk_size, settle, progress).await
    }

    /// Remembers a file this node fetched as seeded and unchanged since, so that scanning its
    /// folder later does not hash it again.
    pub async fn remember_fetched(&self, report: &FetchReport) -> Result<()> {
        self.inner.folders.remember_fetched(report).await
    }

    /// Remembers the file at `path` as hashed into `manifest` elsewhere (as while it streamed
    /// in from an origin), so that scanning its folder shares it without hashing it again.
    pub async fn remember_hashed(&self, path: &Path, manifest: &Manifest, meta: FileMeta) -> Result<()> {
        self.inner.folders.remember(path, manifest, meta, false).await
    }

    /// Counts `bytes` of `file` read from its HTTP origin, for the status to show.
    #[cfg(feature = "origins")]
    pub(crate) fn note_origin_read(&self, file: FileId, bytes: u64) {
        self.inner.origins.add(file, bytes);
    }

    /// Stops serving `file` and withdraws it from the tracker.
    pub async fn stop_holding(&self, file: FileId) {
        self.inner.folders.stop_holding(file).await
    }

    /// Holds a complete, already hashed file and announces it with `meta`.
    pub async fn hold_complete(&self, manifest: Manifest, path: PathBuf, meta: FileMeta) -> Result<SeededFile> {
        self.inner.folders.hold_complete(manifest, path, meta).await
    }

    /// Downloads a file (see [`crate::fetch`]). The download is on [`Node::downloads`] from
    /// this call on, before the returned future first runs.
    pub fn fetch(&self, file: FileId, options: FetchOptions) -> impl std::future::Future<Output = Result<FetchReport>> {
        let session = self.session().cloned();
        let env = session.map(|session| fetch::Env {
            transport: self.inner.transport.clone(),
            store: self.inner.store.clone(),
            state: self.inner.state.clone(),
            session,
            downloads: self.inner.downloads.clone(),
            download_limit: self.inner.download_limit.clone(),
            shutdown: self.inner.shutdown.clone(),
            lan: self.inner.lan.clone(),
        });
        let started = env.map(|env| fetch::fetch(env, file, options));
        async move { started?.await }
    }

    /// The tracker's catalogue.
    pub async fn list(&self) -> Result<Vec<CatalogueEntry>> {
        self.tracker()?.list().await
    }

    /// Tells the tracker what changed in a folder synced as `share`.
    pub async fn share_update(&self, share: &ShareId, changes: Vec<SignedChange>) -> Result<()> {
        self.session()?.share_update(share, changes).await
    }

    /// The entries of `share` changed since version `since`.
    pub async fn share_changes(&self, share: &ShareId, since: u64) -> Result<SharePage> {
        self.tracker()?.share_changes(share, since).await
    }

    /// Catalogue entries whose name equals or contains `query`.
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<CatalogueEntry>> {
        self.tracker()?.search(query, exact).await
    }

    /// The file whose id is or starts with `text`.
    pub async fn resolve(&self, text: &str) -> Result<FileId> {
        self.tracker()?.resolve(text).await
    }

    /// A file's manifest (checked against its id) and a random sample of its live holders,
    /// with the holders `known` beforehand (a ticket's; see [`FetchOptions::holders`]).
    pub async fn locate(&self, file: FileId, known: &[swarm_proto::protocol::Holder]) -> Result<(Manifest, Located)> {
        let session = self.session()?;
        let want = crate::fetch::NEIGHBOURS;
        let lan = self.inner.lan.as_ref();
        crate::fetch::locate_with_manifest(session, &self.inner.transport, lan, file, want, None, known).await
    }

    /// Many files located at once (in batches), each with its manifest (not yet checked) and a
    /// few live holders: one answer per file, in order. For small files; see
    /// [`TrackerClient::locate_many`].
    pub async fn locate_many(&self, files: &[FileId]) -> Result<Vec<Result<Located>>> {
        let want = swarm_proto::protocol::MAX_BATCH_WANT;
        self.tracker()?.locate_many(files, want).await
    }

    /// Who holds which chunks of a file, as the tracker last heard (up to 200 holders).
    pub async fn holdings(&self, file: FileId) -> Result<Vec<Holding>> {
        self.tracker()?.holdings(file).await
    }

    /// Leaves the tracker, stops accepting requests, lets uploads in flight finish (up to
    /// `grace`), and closes the endpoint.
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(session) = &self.inner.session {
            session.leave().await;
        }
        self.inner.shutdown.cancel();
        self.inner.uploads.close();
        if tokio::time::timeout(grace, self.inner.uploads.wait()).await.is_err() {
            warn!("uploads still running after {grace:?}; closing anyway");
        }
        self.inner.background.close();
        self.inner.transport.close().await;
    }

    /// The peers this node served lately, and what they fetched.
    pub fn uploads(&self) -> Vec<status::UploadStatus> {
        self.inner.served.current(std::time::Instant::now())
    }

    /// What this node holds now: what it serves (downloading if a fetch runs for it), and
    /// downloads saved in sled that no fetch is running for (paused).
    pub fn status(&self) -> Result<Vec<status::FileStatus>> {
        let inner = &self.inner;
        status::live(&inner.store, &inner.downloads, &inner.state, &inner.origins)
    }

    /// Chunks being uploaded right now.
    pub fn uploads_in_flight(&self) -> usize {
        self.inner.uploads.len()
    }

    /// Fires when [`Node::shutdown`] begins.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Has [`Node::shutdown`] begun?
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}
