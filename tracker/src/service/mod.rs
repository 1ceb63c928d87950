//! The tracker service: accepts QUIC connections, files every request under the id the
//! connection proved, answers from [`TrackerState`], and expires silent peers. Its state lives
//! in one of two stores: embedded (memory, with manifests persisted on disk) or shared with
//! other trackers through Redis ([`crate::shared_log`]).
//!
//! `inner`'s `Service` is what every part shares; `handling` answers requests; `loops` run
//! beside them (spot checks, saving, expiry); this module starts and stops a tracker.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarm_proto::access::Access;
use swarm_proto::transport::{self, IncomingStream, Profile, Transport};
use swarm_proto::{FileId, PeerId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::audit::{Auditor, Audits};
use crate::budget::Budgets;
use crate::error::TrackerError;
use crate::introductions::{Introducer, RelaySource};
use crate::relay::Relay;
use crate::relay_server::RemoteRelay;
use crate::shared_log::SharedLog;
use crate::state::{Snapshot, SnapshotFile, TrackerState};
use crate::store::CatalogueStore;

mod handling;
mod inner;
mod loops;

use handling::serve_stream;
pub use inner::REQUESTS_PER_SECOND;
use inner::{request_limiter, unix_ms_now, Service, Store};
use loops::{audit_loop, expiry_loop, save_loop};

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
            leases: Default::default(),
            deferred: Mutex::default(),
            unsaved: std::sync::atomic::AtomicU64::new(0),
            _lock: lock,
        });
        tasks.spawn(answer_requests(&transport, &service, &shutdown, &tasks));
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

    /// Stops serving, closes the endpoint and saves the state. Every task has ended when it
    /// returns: once the tracker is dropped, its state directory is free for another.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.transport.close().await;
        // Each task ends on the shutdown token (requests and checks under way are dropped).
        self.tasks.wait().await;
        self.service.save_state();
    }
}

/// Answers every request stream on `transport` until `shutdown`, each on its own task on
/// `tasks` (ended by `shutdown` too, so that stopping waits for none).
fn answer_requests(
    transport: &Transport,
    service: &Arc<Service>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (service, stopping) = (service.clone(), shutdown.clone());
    transport::accept_streams(
        transport.clone(),
        shutdown.clone(),
        tasks.clone(),
        move |stream: IncomingStream| {
            let (service, stopping) = (service.clone(), stopping.clone());
            async move {
                tokio::select! {
                    served = serve_stream(stream, &service) => if let Err(e) = served {
                        debug!("request failed: {e}");
                    },
                    _ = stopping.cancelled() => {}
                }
            }
        },
    )
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
