//! The tracker service: accepts QUIC connections, files every request under the id the
//! connection proved, answers from [`TrackerState`], and expires silent peers. Its state lives
//! in one of two stores: embedded (memory, with manifests persisted on disk) or shared with
//! other trackers through Redis ([`crate::shared_log`]).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota};
use swarm_proto::access::Access;
use swarm_proto::dir_lock::DirLock;
use swarm_proto::meta::nanos_since_epoch;
use swarm_proto::protocol::{
    CataloguePage, CloseCode, ErrorCode, ProtocolError, Refusal, TrackerRequest, TrackerResponse, MAX_BATCH,
    MAX_BATCH_LOCATES, MAX_BATCH_LOCATE_CHUNKS, MAX_BATCH_WANT, MAX_FRAME,
};
use swarm_proto::share::check_change;
use swarm_proto::share_key::SignedChange;
use swarm_proto::transport::{self, IncomingStream, Profile, Transport};
use swarm_proto::{Bitfield, FileId, FileMeta, Manifest, PeerId, ShareId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::audit::{Auditor, Audits, Claim, Verdict};
use crate::budget::Budgets;
use crate::change::{Change, Outcome};
use crate::error::TrackerError;
use crate::introductions::{Introducer, RelaySource};
use crate::relay::Relay;
use crate::relay_server::RemoteRelay;
use crate::shared_log::SharedLog;
use crate::state::{Snapshot, SnapshotFile, TrackerState};
use crate::store::CatalogueStore;
use crate::telemetry;

/// Where a tracker keeps its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// In memory, with the catalogue on disk under the state directory: one tracker.
    #[default]
    Embedded,
    /// Shared through the Redis at this address (`redis://HOST:PORT/DB`) with every tracker
    /// that uses it.
    Redis(String),
}

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
    /// Where its state lives.
    pub store: StoreConfig,
    /// Bytes per second it relays between peers that cannot reach each other, in all
    /// (`None`: it does not relay).
    pub relay_rate: Option<NonZeroU32>,
    /// A relay of this tracker's own on another host (`swarm relay`): sessions are opened
    /// there instead of here, and `relay_rate` is the relay's to set.
    pub relay_elsewhere: Option<RelayElsewhere>,
}

/// What a tracker relays by default, in bytes per second: enough for a fetch to finish, too
/// little for a tracker's link to fill with other people's traffic.
pub const DEFAULT_RELAY_RATE: u32 = 10 * 1024 * 1024;

/// Where a tracker's relay runs when not in the tracker (`swarm tracker --relay ID@HOST:PORT`).
#[derive(Debug, Clone, Copy)]
pub struct RelayElsewhere {
    /// The relay's id, proved by TLS.
    pub id: PeerId,
    /// Its address, as peers reach it too (the passes point there).
    pub addr: SocketAddr,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            state_dir: PathBuf::from(".swarm-tracker"),
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 7070)),
            peer_timeout: Duration::from_secs(180),
            budgets: Budgets::default(),
            audits: Audits::default(),
            access: Access::Open,
            store: StoreConfig::Embedded,
            relay_rate: NonZeroU32::new(DEFAULT_RELAY_RATE),
            relay_elsewhere: None,
        }
    }
}

/// A running tracker.
pub struct Tracker {
    transport: Transport,
    service: Arc<Service>,
    state: Arc<Mutex<TrackerState>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    catalogue_size: usize,
    _lock: DirLock,
}

/// Claims spot-checked in one batch of announcements, at most.
const AUDITS_PER_BATCH: usize = 2;

/// Whether a claim a request makes is spot-checked before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audit {
    /// Yes (as the audit budget allows).
    Claim,
    /// No: it is one of many in a batch.
    Skip,
}

/// How often an embedded tracker saves who holds what and the shares, for a restart.
const SAVE_HOLDERS_EVERY: Duration = Duration::from_secs(1);
/// Who holds what is saved this often even when only keepalives came.
const SAVE_ANYWAY_EVERY: Duration = Duration::from_secs(30);

/// Requests one peer may make per second, on average; bursts of twice as many pass.
/// Beyond that it is answered `Busy` without its request being read.
pub const REQUESTS_PER_SECOND: u32 = 500;

struct Service {
    state: Arc<Mutex<TrackerState>>,
    store: Store,
    /// Changes other than keepalives made since who holds what was last saved.
    unsaved: std::sync::atomic::AtomicU64,
    requests: DefaultKeyedRateLimiter<PeerId>,
    auditor: Auditor,
    introducer: Arc<Introducer>,
    /// Claims of holders behind NATs, checked by the audit loop rather than before the
    /// announcement is answered (reaching such a holder takes an introduction, or fails).
    deferred: Mutex<std::collections::VecDeque<Claim>>,
}

/// Most claims waiting for a deferred check; beyond it they are left to the random checks.
const MAX_DEFERRED: usize = 1000;

/// The store behind a running tracker.
enum Store {
    /// Changes are applied at once; new manifests are persisted here.
    Embedded(CatalogueStore),
    /// Changes go through the shared log.
    Shared(Arc<SharedLog>),
}

fn request_limiter() -> DefaultKeyedRateLimiter<PeerId> {
    let rate = NonZeroU32::new(REQUESTS_PER_SECOND).expect("non-zero");
    let burst = NonZeroU32::new(2 * REQUESTS_PER_SECOND).expect("non-zero");
    governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl Tracker {
    /// Loads identity and catalogue from `config.state_dir`, binds, and starts serving.
    pub async fn start(config: TrackerConfig) -> Result<Tracker, TrackerError> {
        let (lock, identity) = crate::state_dir::open(&config.state_dir)?;
        let (state, store) = match &config.store {
            StoreConfig::Embedded => {
                let (state, store) = load_embedded(&config)?;
                (Arc::new(Mutex::new(state)), Store::Embedded(store))
            }
            StoreConfig::Redis(url) => {
                let (log, state) = SharedLog::open(url, "swarm:", config.peer_timeout, config.budgets).await?;
                (state, Store::Shared(log))
            }
        };
        let catalogue_size = state.lock().expect("tracker state lock poisoned").file_count();
        let transport = Transport::bind_as(identity, config.listen, config.access.clone(), Profile::Tracker)?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        if let Store::Shared(log) = &store {
            tasks.spawn(log.clone().follow(shutdown.clone()));
            tasks.spawn(log.clone().keep_snapshots(shutdown.clone()));
        }
        let relay = match (&config.relay_elsewhere, config.relay_rate) {
            (Some(elsewhere), _) => Some(RelaySource::Elsewhere(Arc::new(RemoteRelay::new(
                transport.clone(),
                elsewhere.id,
                elsewhere.addr,
            )))),
            (None, Some(rate)) => Some(RelaySource::Here(Arc::new(Relay::new(
                Some(rate),
                config.listen.ip(),
                shutdown.clone(),
            )))),
            (None, None) => None,
        };
        let introducer = Arc::new(Introducer::new(relay, shutdown.clone()));
        let service = Arc::new(Service {
            state: state.clone(),
            store,
            requests: request_limiter(),
            auditor: Auditor::new(transport.clone(), config.audits, introducer.clone()),
            introducer,
            deferred: Mutex::default(),
            unsaved: std::sync::atomic::AtomicU64::new(0),
        });
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
        if matches!(service.store, Store::Embedded(_)) {
            tasks.spawn(save_loop(service.clone(), shutdown.clone()));
        }
        if config.audits.enabled {
            tasks.spawn(audit_loop(service.clone(), shutdown.clone(), config.audits.every));
        }
        tasks.spawn(expiry_loop(
            service.clone(),
            shutdown.clone(),
            config.peer_timeout,
            config.budgets.forget_after,
        ));
        Ok(Tracker {
            transport,
            service,
            state,
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

    /// A read-only view of the tracker's state, for a web view.
    pub fn view(&self) -> TrackerView {
        TrackerView {
            state: self.state.clone(),
            id: self.id(),
            addr: self.local_addr(),
        }
    }

    /// Fires when the tracker stops.
    pub fn stopping(&self) -> CancellationToken {
        self.shutdown.clone()
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
        self.service.save_state();
    }
}

/// A read-only view of a running tracker's state; cheap to clone.
#[derive(Clone)]
pub struct TrackerView {
    state: Arc<Mutex<TrackerState>>,
    id: PeerId,
    addr: SocketAddr,
}

impl TrackerView {
    /// The tracker's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The tracker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the state under its lock: keep `read` short, every request waits for it.
    pub fn read<T>(&self, read: impl FnOnce(&TrackerState) -> T) -> T {
        read(&self.state.lock().expect("tracker state lock poisoned"))
    }
}

/// The embedded store: the catalogue reloaded from disk into a fresh state.
fn load_embedded(config: &TrackerConfig) -> Result<(TrackerState, CatalogueStore), TrackerError> {
    let store = CatalogueStore::open(&config.state_dir)?;
    let now = Instant::now();
    let saved = store.load_state();
    let restored = !saved.peers.is_empty() || !saved.shares.is_empty();
    // Reloaded manifests are charged to nobody, moved into the state (a copy of a big catalogue
    // would cost its size again); past the budget, the rest are dropped.
    let files: Vec<SnapshotFile> = store
        .load()?
        .into_iter()
        .map(|manifest| SnapshotFile {
            manifest,
            charged: None,
            unheld_ms: Some(0),
            retired: false,
        })
        .collect();
    let ids: Vec<FileId> = files.iter().map(|file| file.manifest.id()).collect();
    let snapshot = Snapshot {
        files,
        peers: saved.peers,
        shares: saved.shares,
    };
    let mut state = TrackerState::restore(snapshot, config.peer_timeout, config.budgets, now);
    for id in ids.iter().filter(|id| state.manifest(id).is_none()) {
        warn!(file = %id.short(), "not reloaded: past the tracker's budget");
        store.remove(id);
    }
    if restored {
        state.expire(now);
        state.mark_restored(unix_ms_now());
        info!(
            peers = state.peer_count(),
            "restored who held what when the tracker stopped; each peer registers again at its next request"
        );
    }
    Ok((state, store))
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
                let kind = request_kind(&request);
                let span = tracing::debug_span!("request", kind, peer = %stream.peer.short());
                let started = Instant::now();
                let tracker_ip = stream.local_ip();
                let response = match request {
                    TrackerRequest::AwaitIntroductions => service.introducer.wait(stream.peer, tracker_ip).await,
                    TrackerRequest::Introduce { peer, relay } => {
                        let _in = span.enter();
                        service
                            .introduce(stream.peer, stream.remote, tracker_ip, peer, relay)
                            .await
                    }
                    request => {
                        service
                            .handle(stream.peer, stream.remote, request)
                            .instrument(span.clone())
                            .await
                    }
                };
                telemetry::request(kind, &response, started.elapsed());
                response
            }
            Err(refusal) => {
                transport::refuse_and_close::<TrackerResponse>(&mut stream, refusal).await;
                return Ok(());
            }
        }
    };
    let mut response = response;
    crate::vantage::as_seen_by(&mut response, stream.remote, stream.local_ip());
    transport::respond(&mut stream.send, &response).await?;
    let _ = stream.send.stopped().await;
    Ok(())
}

impl Service {
    fn state(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().expect("tracker state lock poisoned")
    }

    /// Saves who holds what and the shares, if the store is embedded (a shared store keeps
    /// them in Redis).
    fn save_state(&self) {
        if let Store::Embedded(store) = &self.store {
            let (peers, shares) = {
                let state = self.state();
                (state.snapshot_peers(Instant::now()), state.snapshot_shares())
            };
            store.save_state(peers, shares);
        }
    }

    /// Makes `change`: at once in the embedded store, through the log in the shared one.
    async fn commit(&self, change: Change) -> Result<Outcome, Refusal> {
        match &self.store {
            Store::Embedded(_) => {
                if !matches!(change, Change::Keepalive { .. }) {
                    self.unsaved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(change.apply(&mut self.state(), Instant::now()))
            }
            Store::Shared(log) => {
                // What this tracker's copy of the state would refuse for lack of budget is
                // refused here, before it reaches the log that every tracker reads.
                self.precheck(&change)?;
                log.commit(change).await.map_err(|e| {
                    warn!("{e}");
                    Refusal::new(
                        ErrorCode::Busy,
                        format!("this tracker cannot reach its store ({}); try again shortly", e.message),
                    )
                })
            }
        }
    }

    /// Refuses `change` at once if the state as this tracker knows it has no budget for it.
    fn precheck(&self, change: &Change) -> Result<(), Refusal> {
        let state = self.state();
        match change {
            Change::Announce { peer, manifest, .. } => state.precheck(peer, Some(manifest), 0),
            Change::ShareUpdate {
                peer, share, changes, ..
            } => state.precheck(peer, None, state.share_cost(share, changes)),
            _ => Ok(()),
        }
    }

    /// `asker` (at `remote`, having dialled `tracker_ip`) asks to be introduced to `holder`.
    async fn introduce(
        &self,
        asker: PeerId,
        remote: SocketAddr,
        tracker_ip: Option<std::net::IpAddr>,
        holder: PeerId,
        relay: bool,
    ) -> TrackerResponse {
        let Some(holder_addr) = self.state().peer_addr(&holder) else {
            return Refusal::new(
                ErrorCode::NotFound,
                format!("peer {} is not registered here", holder.short()),
            )
            .into();
        };
        let answer = self
            .introducer
            .introduce(asker, remote, tracker_ip, holder, holder_addr, relay)
            .await;
        debug!(holder = %holder.short(), relay, ok = !matches!(answer, TrackerResponse::Error { .. }), "introduction");
        answer
    }

    async fn handle(&self, peer: PeerId, remote: SocketAddr, request: TrackerRequest) -> TrackerResponse {
        self.handle_with(peer, remote, request, Audit::Claim).await
    }

    /// [`Service::handle`], spot-checking a claim the request makes only if `audit` says so.
    async fn handle_with(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        request: TrackerRequest,
        audit: Audit,
    ) -> TrackerResponse {
        let change = match request {
            TrackerRequest::Register { advertise, addrs } => {
                let addr = advertise.unwrap_or(remote);
                Change::Register {
                    peer,
                    addr,
                    other_addrs: crate::vantage::other_addrs(addr, addrs),
                    ip: remote.ip(),
                }
            }
            TrackerRequest::Announce { manifest, chunks, meta } => {
                return self.announce(peer, manifest, chunks, meta, audit).await;
            }
            TrackerRequest::Batch(requests) => return self.batch(peer, remote, requests).await,
            TrackerRequest::OpenRelay { .. } => {
                return Refusal::new(
                    ErrorCode::Unsupported,
                    "this is a tracker: relay sessions are opened by a relay (swarm relay) for its trackers",
                )
                .into()
            }
            TrackerRequest::Join { file, chunks, meta } => Change::Join {
                peer,
                file,
                chunks,
                meta,
            },
            TrackerRequest::HaveChunks { file, chunks } => Change::Have { peer, file, chunks },
            TrackerRequest::Withdraw { file } => Change::Withdraw { peer, file },
            TrackerRequest::Keepalive => Change::Keepalive { peer },
            TrackerRequest::Leave => Change::Leave { peer },
            TrackerRequest::ShareUpdate { share, changes } => {
                return self.share_update(peer, share, changes).await;
            }
            read => return self.answer(peer, read),
        };
        let registering = matches!(change, Change::Register { .. });
        let joining = match &change {
            Change::Join { file, .. } => Some(*file),
            _ => None,
        };
        match self.commit(change).await {
            Err(refusal) => refusal.into(),
            Ok(Outcome::Done(Err(refusal))) => refusal.into(),
            Ok(Outcome::Done(Ok(()))) if registering => {
                let state = self.state();
                let Some(addr) = state.peer_addr(&peer) else {
                    return Refusal::new(
                        ErrorCode::NotRegistered,
                        "registration lost at once; send Register again",
                    )
                    .into();
                };
                info!(%addr, "registered");
                TrackerResponse::Registered {
                    addr,
                    peer,
                    timeout_secs: state.peer_timeout().as_secs(),
                    report_secs: report_every(state.peer_count()),
                }
            }
            Ok(Outcome::Done(Ok(()))) => match joining {
                Some(file) => self.check_claim(peer, Ok((file, None)), audit).await,
                None => TrackerResponse::Ok,
            },
            Ok(Outcome::Dropped(left)) => {
                if left {
                    info!("left");
                }
                TrackerResponse::Ok
            }
            Ok(other) => unreachable!("a request's change gave {other:?}"),
        }
    }

    /// Changes to a share's listing.
    async fn share_update(&self, peer: PeerId, share: ShareId, changes: Vec<SignedChange>) -> TrackerResponse {
        if changes.len() > MAX_BATCH {
            return Refusal::new(
                ErrorCode::Limit,
                format!(
                    "a share update holds at most {MAX_BATCH} changes, not {}",
                    changes.len()
                ),
            )
            .into();
        }
        // Checked before anything is committed: a forged or future change never reaches the
        // state, nor the log that other trackers read.
        let now_ns = nanos_since_epoch(SystemTime::now());
        if let Some(why) = changes.iter().find_map(|c| check_change(&share, c, now_ns).err()) {
            return Refusal::new(ErrorCode::Invalid, why).into();
        }
        let epoch = unix_ms_now();
        let change = Change::ShareUpdate {
            peer,
            share,
            changes,
            epoch,
        };
        match self.commit(change).await {
            Ok(Outcome::Shared(Ok(_))) => TrackerResponse::Ok,
            Ok(Outcome::Shared(Err(refusal))) | Err(refusal) => refusal.into(),
            Ok(other) => unreachable!("a share update gave {other:?}"),
        }
    }

    /// A batch of holding updates, done in order, one answer each. Only announcements, joins,
    /// chunk reports and withdrawals may be batched.
    async fn batch(&self, peer: PeerId, remote: SocketAddr, requests: Vec<TrackerRequest>) -> TrackerResponse {
        if requests.len() > MAX_BATCH {
            return Refusal::new(
                ErrorCode::Limit,
                format!("a batch holds at most {MAX_BATCH} requests, not {}", requests.len()),
            )
            .into();
        }
        // A few claims of a batch are spot-checked, not all: checks are one at a time, and a
        // node sharing 20,000 files would wait minutes for its batches. The others are left
        // to the random checks that run all the time.
        let claims: Vec<usize> = (0..requests.len())
            .filter(|&i| {
                matches!(
                    requests[i],
                    TrackerRequest::Announce { .. } | TrackerRequest::Join { .. }
                )
            })
            .collect();
        let audited: Vec<usize> =
            rand::seq::IndexedRandom::choose_multiple(&claims[..], &mut rand::rng(), AUDITS_PER_BATCH)
                .copied()
                .collect();
        let locates = requests
            .iter()
            .filter(|r| matches!(r, TrackerRequest::Locate { .. }))
            .count();
        if locates > MAX_BATCH_LOCATES {
            return Refusal::new(
                ErrorCode::Limit,
                format!("a batch holds at most {MAX_BATCH_LOCATES} locates, not {locates}"),
            )
            .into();
        }
        let mut answers = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let answer = match request {
                TrackerRequest::Announce { .. }
                | TrackerRequest::Join { .. }
                | TrackerRequest::HaveChunks { .. }
                | TrackerRequest::Withdraw { .. } => {
                    let audit = if audited.contains(&i) {
                        Audit::Claim
                    } else {
                        Audit::Skip
                    };
                    Box::pin(self.handle_with(peer, remote, request, audit)).await
                }
                TrackerRequest::Locate { file, manifest, want } => self.locate_in_batch(peer, file, manifest, want),
                _ => Refusal::new(
                    ErrorCode::Unsupported,
                    "only Announce, Join, HaveChunks, Withdraw and Locate may be batched",
                )
                .into(),
            };
            answers.push(answer);
        }
        TrackerResponse::Batch(answers)
    }

    /// A locate within a batch: at most [`MAX_BATCH_WANT`] holders, and only of a file small
    /// enough that a batch's answer stays well inside a frame.
    fn locate_in_batch(&self, peer: PeerId, file: FileId, manifest: bool, want: u16) -> TrackerResponse {
        let chunks = self.state().manifest(&file).map(|m| m.chunk_count);
        if chunks.is_some_and(|c| c > MAX_BATCH_LOCATE_CHUNKS) {
            return Refusal::new(
                ErrorCode::Invalid,
                format!(
                    "file {} has more than {MAX_BATCH_LOCATE_CHUNKS} chunks: locate it alone, not in a batch",
                    file.short()
                ),
            )
            .into();
        }
        self.answer(
            peer,
            TrackerRequest::Locate {
                file,
                manifest,
                want: want.min(MAX_BATCH_WANT),
            },
        )
    }

    /// An announcement: recorded, its claim spot-checked, and a new manifest persisted.
    async fn announce(
        &self,
        peer: PeerId,
        manifest: Manifest,
        chunks: Bitfield,
        meta: FileMeta,
        audit: Audit,
    ) -> TrackerResponse {
        let copy = matches!(self.store, Store::Embedded(_)).then(|| manifest.clone());
        let change = Change::Announce {
            peer,
            manifest,
            chunks,
            meta,
        };
        match self.commit(change).await {
            Ok(Outcome::Announced(announced)) => {
                self.check_claim(peer, announced.map(|(id, is_new)| (id, copy.filter(|_| is_new))), audit)
                    .await
            }
            Ok(other) => unreachable!("an announce gave {other:?}"),
            Err(refusal) => refusal.into(),
        }
    }

    /// What follows a recorded holding of `file` (or its refusal): the claim spot-checked
    /// (when the audit budget allows), and a manifest new to the embedded catalogue persisted
    /// once it is known not to be a lie.
    async fn check_claim(
        &self,
        peer: PeerId,
        recorded: Result<(FileId, Option<Manifest>), Refusal>,
        audit: Audit,
    ) -> TrackerResponse {
        let (claim, new_manifest) = match recorded {
            Ok((id, new_manifest)) => {
                let claim = (audit == Audit::Claim && self.auditor.enabled())
                    .then(|| self.state().claim_of(&peer, &id, rand::random()))
                    .flatten();
                (claim, new_manifest)
            }
            Err(refusal) => {
                warn!("announce refused: {}", refusal.message);
                return refusal.into();
            }
        };
        let claim = claim.and_then(|claim| {
            if !self.introducer.waits(&peer) {
                return Some(claim);
            }
            let mut deferred = self.deferred.lock().expect("deferred claims lock poisoned");
            if deferred.len() < MAX_DEFERRED {
                debug!(file = %claim.file.short(), "spot check deferred: the holder is behind a NAT");
                deferred.push_back(claim);
            }
            None
        });
        if let Some(claim) = claim {
            match self.auditor.check(&claim).await {
                Some(Verdict::Lied(why)) => {
                    self.record_check(&claim, true).await;
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
                Some(Verdict::Held) => self.record_check(&claim, false).await,
                Some(Verdict::Unknown(why)) => debug!(file = %claim.file.short(), "spot check inconclusive: {why}"),
                None => debug!(file = %claim.file.short(), "spot check deferred: audit budget in use"),
            }
        }
        if let (Some(manifest), Store::Embedded(store)) = (new_manifest, &self.store) {
            info!(file = %manifest.id().short(), name = %manifest.name, "new file in the catalogue");
            store.insert(&manifest);
        }
        TrackerResponse::Ok
    }

    /// Records the outcome of a spot check of `claim`.
    async fn record_check(&self, claim: &Claim, lied: bool) {
        let change = Change::Checked {
            peer: claim.peer,
            file: claim.file,
            lied,
        };
        if let Err(refusal) = self.commit(change).await {
            debug!("spot check not recorded: {}", refusal.message);
        }
    }

    /// A request that changes nothing, answered from this tracker's memory.
    fn answer(&self, peer: PeerId, request: TrackerRequest) -> TrackerResponse {
        let mut state = self.state();
        match request {
            TrackerRequest::List { page } => TrackerResponse::Catalogue(CataloguePage::of(state.list(), &page)),
            TrackerRequest::Search { query, exact, page } => {
                TrackerResponse::Catalogue(CataloguePage::of(state.search(&query, exact), &page))
            }
            TrackerRequest::Resolve { prefix } => TrackerResponse::Matches(state.resolve(&prefix)),
            TrackerRequest::Locate { file, manifest, want } => {
                match state.locate(&file, &peer, usize::from(want), Instant::now(), &mut rand::rng()) {
                    Some(located) => TrackerResponse::Located {
                        manifest: manifest.then(|| (*located.manifest).clone()),
                        meta: located.meta,
                        holders: located.holders,
                        live: located.live,
                        retired: located.retired,
                    },
                    None => not_in_catalogue(&file),
                }
            }
            TrackerRequest::ShareChanges { share, since } => TrackerResponse::Share(state.share_changes(&share, since)),
            TrackerRequest::Holders { file } => match state.holdings(&file) {
                Some(holdings) => TrackerResponse::Holdings(holdings),
                None => not_in_catalogue(&file),
            },
            change => unreachable!("{} changes the state", request_kind(&change)),
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
        // A claim whose check was deferred first, else one at random.
        let deferred = service
            .deferred
            .lock()
            .expect("deferred claims lock poisoned")
            .pop_front();
        let claim = deferred.or_else(|| service.state().random_claim(rand::random()));
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
        service.record_check(&claim, lied).await;
    }
}

/// Saves who holds what and the shares every [`SAVE_HOLDERS_EVERY`] if anything but a
/// keepalive changed, and every [`SAVE_ANYWAY_EVERY`] in any case (how long peers have been
/// silent); the tracker saves once more when it stops. A tracker killed outright so loses at
/// most the last second of registrations and announcements.
async fn save_loop(service: Arc<Service>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SAVE_HOLDERS_EVERY);
    ticker.tick().await;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let changed = service.unsaved.swap(0, std::sync::atomic::Ordering::Relaxed) > 0;
        if !changed && last.elapsed() < SAVE_ANYWAY_EVERY {
            continue;
        }
        last = Instant::now();
        let service = service.clone();
        let _ = tokio::task::spawn_blocking(move || service.save_state()).await;
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
        let expired = match service.commit(Change::Expire).await {
            Ok(Outcome::Expired(expired)) => expired,
            _ => continue,
        };
        {
            let state = service.state();
            telemetry::state(state.peer_count(), state.file_count(), state.usage().total());
        }
        for peer in expired.peers {
            info!(peer = %peer.short(), "expired after {timeout:?} of silence");
        }
        for file in expired.files {
            info!(file = %file.short(), "forgotten: no live peer held it for {forget_after:?}");
            if let Store::Embedded(store) = &service.store {
                store.remove(&file);
            }
        }
        // Forget the request counts of peers that have been quiet long enough to be full.
        service.requests.retain_recent();
    }
}

/// Milliseconds since the Unix epoch (at least 1: epoch 0 means "no share").
fn unix_ms_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(1, |d| d.as_millis() as u64).max(1)
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
        TrackerRequest::List { .. } => "list",
        TrackerRequest::Search { .. } => "search",
        TrackerRequest::Resolve { .. } => "resolve",
        TrackerRequest::Locate { .. } => "locate",
        TrackerRequest::Holders { .. } => "holders",
        TrackerRequest::Join { .. } => "join",
        TrackerRequest::Batch(_) => "batch",
        TrackerRequest::ShareUpdate { .. } => "share_update",
        TrackerRequest::ShareChanges { .. } => "share_changes",
        TrackerRequest::AwaitIntroductions => "await_introductions",
        TrackerRequest::Introduce { .. } => "introduce",
        TrackerRequest::OpenRelay { .. } => "open_relay",
    }
}
