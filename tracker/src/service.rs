//! The tracker service: accepts QUIC connections, files every request under the id the
//! connection proved, answers from [`TrackerState`], persists manifests in sled, and expires
//! silent peers.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use swarm_proto::access::Access;
use swarm_proto::dir_lock::DirLock;
use swarm_proto::protocol::{CloseCode, ErrorCode, ProtocolError, TrackerRequest, TrackerResponse, MAX_FRAME};
use swarm_proto::transport::{self, IncomingStream, Profile, Transport};
use swarm_proto::{Bitfield, FileMeta, Identity, Manifest, PeerId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::audit::{Auditor, Audits, Verdict};
use crate::budget::Budgets;
use crate::error::TrackerError;
use crate::state::TrackerState;
use crate::store::CatalogueStore;

/// How a tracker is set up.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Keys and the manifest catalogue live here.
    pub state_dir: PathBuf,
    /// Address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// Peers silent this long are dropped.
    pub peer_timeout: Duration,
    /// What the tracker agrees to keep.
    pub budgets: Budgets,
    /// How it checks what peers claim to hold.
    pub audits: Audits,
    /// Who may talk to it: anyone, or the nodes of its private swarm.
    pub access: Access,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            state_dir: PathBuf::from(".swarm-tracker"),
            listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            peer_timeout: Duration::from_secs(180),
            budgets: Budgets::default(),
            audits: Audits::default(),
            access: Access::Open,
        }
    }
}

/// A running tracker.
pub struct Tracker {
    transport: Transport,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    catalogue_size: usize,
    _lock: DirLock,
}

/// Requests one peer may make per second, on average; bursts of twice as many pass.
/// Beyond that it is answered `Busy` without its request being read.
pub const REQUESTS_PER_SECOND: u32 = 500;

struct Service {
    state: Mutex<TrackerState>,
    store: CatalogueStore,
    requests: DefaultKeyedRateLimiter<PeerId>,
    auditor: Auditor,
}

fn request_limiter() -> DefaultKeyedRateLimiter<PeerId> {
    let rate = NonZeroU32::new(REQUESTS_PER_SECOND).expect("non-zero");
    let burst = NonZeroU32::new(2 * REQUESTS_PER_SECOND).expect("non-zero");
    governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl Tracker {
    /// Loads identity and catalogue from `config.state_dir`, binds, and starts serving.
    pub async fn start(config: TrackerConfig) -> Result<Tracker, TrackerError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| TrackerError::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        let lock = DirLock::acquire(&config.state_dir)?;
        let identity = Arc::new(Identity::load_or_create(&config.state_dir)?);
        let store = CatalogueStore::open(&config.state_dir)?;
        let mut state = TrackerState::new(config.peer_timeout, config.budgets);
        let now = Instant::now();
        for manifest in store.load()? {
            let id = manifest.id();
            // Reloaded manifests are charged to nobody; past the budget, the rest are dropped.
            if let Err(refusal) = state.add_manifest(manifest, None, now) {
                warn!(file = %id.short(), "not reloaded: {}", refusal.message);
                store.remove(&id);
            }
        }
        let catalogue_size = state.list().len();
        let transport = Transport::bind_as(identity, config.listen, config.access.clone(), Profile::Tracker)?;
        let service = Arc::new(Service {
            state: Mutex::new(state),
            store,
            requests: request_limiter(),
            auditor: Auditor::new(transport.clone(), config.audits),
        });
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let handler = service.clone();
        tasks.spawn(transport::accept_streams(
            transport.clone(),
            shutdown.clone(),
            tasks.clone(),
            move |stream: IncomingStream| {
                let service = handler.clone();
                async move {
                    if let Err(e) = serve_stream(stream, &service).await {
                        debug!("request failed: {e}");
                    }
                }
            },
        ));
        if config.audits.enabled {
            tasks.spawn(audit_loop(service.clone(), shutdown.clone(), config.audits.every));
        }
        tasks.spawn(expiry_loop(
            service,
            shutdown.clone(),
            config.peer_timeout,
            config.budgets.forget_after,
        ));
        Ok(Tracker {
            transport,
            shutdown,
            tasks,
            catalogue_size,
            _lock: lock,
        })
    }

    /// The tracker's id.
    pub fn id(&self) -> PeerId {
        self.transport.id()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Manifests loaded from disk at start.
    pub fn catalogue_size(&self) -> usize {
        self.catalogue_size
    }

    /// Stops serving and closes the endpoint.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.transport.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

async fn serve_stream(mut stream: IncomingStream, service: &Service) -> Result<(), ProtocolError> {
    // Checked before the request is even read, so that a flood costs the tracker little.
    let response = if service.requests.check_key(&stream.peer).is_err() {
        let _ = stream.recv.stop(CloseCode::Cancelled.code());
        TrackerResponse::Error {
            code: ErrorCode::Busy,
            message: format!("too many requests from this peer (at most {REQUESTS_PER_SECOND} per second); slow down"),
        }
    } else {
        match transport::read_request(&mut stream.recv, MAX_FRAME).await {
            Ok(request) => {
                let span = tracing::debug_span!("request", kind = request_kind(&request), peer = %stream.peer.short());
                service
                    .handle(stream.peer, stream.remote, request)
                    .instrument(span.clone())
                    .await
            }
            Err(refusal) => {
                transport::refuse_and_close::<TrackerResponse>(&mut stream, refusal).await;
                return Ok(());
            }
        }
    };
    transport::respond(&mut stream.send, &response).await?;
    let _ = stream.send.stopped().await;
    Ok(())
}

impl Service {
    async fn handle(&self, peer: PeerId, remote: SocketAddr, request: TrackerRequest) -> TrackerResponse {
        if let TrackerRequest::Announce { manifest, chunks, meta } = request {
            return self.announce(peer, manifest, chunks, meta).await;
        }
        if let TrackerRequest::Join { file, chunks, meta } = request {
            let joined =
                self.state
                    .lock()
                    .expect("tracker state lock poisoned")
                    .join(peer, file, chunks, meta, Instant::now());
            return self.check_claim(peer, joined.map(|()| (file, None))).await;
        }
        self.answer(peer, remote, request)
    }

    /// An announcement: recorded, its claim spot-checked, and a new manifest persisted.
    async fn announce(&self, peer: PeerId, manifest: Manifest, chunks: Bitfield, meta: FileMeta) -> TrackerResponse {
        let copy = manifest.clone();
        let announced = self.state.lock().expect("tracker state lock poisoned").announce(
            peer,
            manifest,
            chunks,
            meta,
            Instant::now(),
        );
        self.check_claim(peer, announced.map(|(id, is_new)| (id, is_new.then_some(copy))))
            .await
    }

    /// What follows a recorded holding of `file` (or its refusal): the claim spot-checked
    /// (when the audit budget allows), and a manifest new to the catalogue persisted once it
    /// is known not to be a lie.
    async fn check_claim(
        &self,
        peer: PeerId,
        recorded: Result<(swarm_proto::FileId, Option<Manifest>), swarm_proto::protocol::Refusal>,
    ) -> TrackerResponse {
        let (claim, new_manifest) = {
            let state = self.state.lock().expect("tracker state lock poisoned");
            match recorded {
                Ok((id, new_manifest)) => {
                    let claim = self
                        .auditor
                        .enabled()
                        .then(|| state.claim_of(&peer, &id, rand::random()))
                        .flatten();
                    (claim, new_manifest)
                }
                Err(refusal) => {
                    warn!("announce refused: {}", refusal.message);
                    return refusal.into();
                }
            }
        };
        if let Some(claim) = claim {
            match self.auditor.check(&claim).await {
                Some(Verdict::Lied(why)) => {
                    self.state
                        .lock()
                        .expect("tracker state lock poisoned")
                        .checked(&claim, true, Instant::now());
                    warn!(file = %claim.file.short(), "spot check failed, not listed: {why}");
                    return TrackerResponse::Error {
                        code: ErrorCode::Invalid,
                        message: format!(
                            "spot check failed: asked for chunk {} of {}, this peer {why}; it is not listed as a holder",
                            claim.chunk,
                            claim.file.short()
                        ),
                    };
                }
                Some(Verdict::Held) => {
                    let mut state = self.state.lock().expect("tracker state lock poisoned");
                    state.checked(&claim, false, Instant::now());
                }
                Some(Verdict::Unknown(why)) => debug!(file = %claim.file.short(), "spot check inconclusive: {why}"),
                None => debug!(file = %claim.file.short(), "spot check deferred: audit budget in use"),
            }
        }
        if let Some(manifest) = new_manifest {
            info!(file = %manifest.id().short(), name = %manifest.name, "new file in the catalogue");
            self.store.insert(&manifest);
        }
        TrackerResponse::Ok
    }

    fn answer(&self, peer: PeerId, remote: SocketAddr, request: TrackerRequest) -> TrackerResponse {
        let now = Instant::now();
        {
            let mut state = self.state.lock().expect("tracker state lock poisoned");
            let done = |r: Result<(), swarm_proto::protocol::Refusal>| match r {
                Ok(()) => TrackerResponse::Ok,
                Err(refusal) => refusal.into(),
            };
            match request {
                TrackerRequest::Register { advertise } => {
                    let addr = advertise.unwrap_or(remote);
                    match state.register(peer, addr, remote.ip(), now) {
                        Ok(()) => {
                            info!(%addr, "registered");
                            TrackerResponse::Registered {
                                addr,
                                peer,
                                timeout_secs: state.peer_timeout().as_secs(),
                                report_secs: report_every(state.peer_count()),
                            }
                        }
                        Err(refusal) => refusal.into(),
                    }
                }
                TrackerRequest::Announce { .. } | TrackerRequest::Join { .. } => {
                    unreachable!("announcements are handled by Service::announce")
                }
                TrackerRequest::HaveChunks { file, chunks } => done(state.have(peer, file, &chunks, now)),
                TrackerRequest::Withdraw { file } => done(state.withdraw(peer, file, now)),
                TrackerRequest::Keepalive => done(state.keepalive(peer, now)),
                TrackerRequest::Leave => {
                    if state.remove_peer(&peer, now) {
                        info!("left");
                    }
                    TrackerResponse::Ok
                }
                TrackerRequest::List => TrackerResponse::Catalogue(state.list()),
                TrackerRequest::Search { query, exact } => TrackerResponse::Catalogue(state.search(&query, exact)),
                TrackerRequest::Resolve { prefix } => TrackerResponse::Matches(state.resolve(&prefix)),
                TrackerRequest::Locate { file, manifest, want } => {
                    match state.locate(&file, &peer, usize::from(want), now, &mut rand::rng()) {
                        Some(located) => TrackerResponse::Located {
                            manifest: manifest.then(|| (*located.manifest).clone()),
                            meta: located.meta,
                            holders: located.holders,
                            live: located.live,
                        },
                        None => not_in_catalogue(&file),
                    }
                }
                TrackerRequest::Holders { file } => match state.holdings(&file) {
                    Some(holdings) => TrackerResponse::Holdings(holdings),
                    None => not_in_catalogue(&file),
                },
            }
        }
    }
}

fn not_in_catalogue(file: &swarm_proto::FileId) -> TrackerResponse {
    TrackerResponse::Error {
        code: ErrorCode::NotFound,
        message: format!("file {file} is not in the catalogue"),
    }
}

/// Seconds between a peer's chunk reports, given how many peers are registered: every second
/// for a small swarm (listings stay fresh), up to every 30 s for 1,500 peers and more, so that
/// reports stay under about 50 a second however large the swarm grows.
fn report_every(peers: usize) -> u32 {
    (peers / 50).clamp(1, 30) as u32
}

/// Checks a claim picked at random every `every`; a holder caught lying is dropped.
async fn audit_loop(service: Arc<Service>, shutdown: CancellationToken, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let claim = service
            .state
            .lock()
            .expect("tracker state lock poisoned")
            .random_claim(rand::random());
        let Some(claim) = claim else { continue };
        let verdict = service.auditor.check(&claim).await;
        let lied = match &verdict {
            Some(Verdict::Lied(why)) => {
                warn!(peer = %claim.peer.short(), file = %claim.file.short(), "spot check failed; dropped as a holder: {why}");
                true
            }
            Some(Verdict::Held) => false,
            _ => continue,
        };
        service
            .state
            .lock()
            .expect("tracker state lock poisoned")
            .checked(&claim, lied, Instant::now());
    }
}

async fn expiry_loop(service: Arc<Service>, shutdown: CancellationToken, timeout: Duration, forget_after: Duration) {
    let period = (timeout.min(forget_after) / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let expired = service
            .state
            .lock()
            .expect("tracker state lock poisoned")
            .expire(Instant::now());
        for peer in expired.peers {
            info!(peer = %peer.short(), "expired after {timeout:?} of silence");
        }
        for file in expired.files {
            info!(file = %file.short(), "forgotten: no live peer held it for {forget_after:?}");
            service.store.remove(&file);
        }
        // Forget the request counts of peers that have been quiet long enough to be full.
        service.requests.retain_recent();
    }
}

/// A short name for a request's kind, for spans and logs.
fn request_kind(request: &TrackerRequest) -> &'static str {
    match request {
        TrackerRequest::Register { .. } => "register",
        TrackerRequest::Announce { .. } => "announce",
        TrackerRequest::HaveChunks { .. } => "have",
        TrackerRequest::Withdraw { .. } => "withdraw",
        TrackerRequest::Keepalive => "keepalive",
        TrackerRequest::Leave => "leave",
        TrackerRequest::List => "list",
        TrackerRequest::Search { .. } => "search",
        TrackerRequest::Resolve { .. } => "resolve",
        TrackerRequest::Locate { .. } => "locate",
        TrackerRequest::Holders { .. } => "holders",
        TrackerRequest::Join { .. } => "join",
    }
}
