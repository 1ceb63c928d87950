//! The tracker service: accepts QUIC connections, files every request under the id the
//! connection proved, answers from [`TrackerState`], persists manifests in sled, and expires
//! silent peers.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use swarm_engine::protocol::{ErrorCode, ProtocolError, Request, Response, MAX_FRAME};
use swarm_engine::transport::{self, IncomingStream, Transport};
use swarm_engine::{Error, Identity, Manifest, PeerId, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::state::TrackerState;

/// How a tracker is set up.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Keys and the manifest catalogue live here.
    pub state_dir: PathBuf,
    /// Address of the QUIC endpoint.
    pub listen: SocketAddr,
    /// Peers silent this long are dropped.
    pub peer_timeout: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            state_dir: PathBuf::from(".swarm-tracker"),
            listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            peer_timeout: Duration::from_secs(180),
        }
    }
}

/// A running tracker.
pub struct Tracker {
    transport: Transport,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    catalogue_size: usize,
}

/// Requests one peer may make per second, on average; bursts of twice as many pass.
/// Beyond that it is answered `Busy` without its request being read.
pub const REQUESTS_PER_SECOND: u32 = 500;

struct Service {
    state: Mutex<TrackerState>,
    manifests: sled::Tree,
    requests: DefaultKeyedRateLimiter<PeerId>,
}

fn request_limiter() -> DefaultKeyedRateLimiter<PeerId> {
    let rate = NonZeroU32::new(REQUESTS_PER_SECOND).expect("non-zero");
    let burst = NonZeroU32::new(2 * REQUESTS_PER_SECOND).expect("non-zero");
    governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl Tracker {
    /// Loads identity and catalogue from `config.state_dir`, binds, and starts serving.
    pub async fn start(config: TrackerConfig) -> Result<Tracker> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| Error::io(&config.state_dir, e))?;
        let identity = Arc::new(Identity::load_or_create(&config.state_dir)?);
        let db_path = config.state_dir.join("tracker.sled");
        let db_error = |e: sled::Error| Error::State {
            path: db_path.clone(),
            message: e.to_string(),
        };
        let db = swarm_engine::state::open_sled(&db_path)?;
        let manifests = db.open_tree("manifests").map_err(db_error)?;
        let mut state = TrackerState::new(config.peer_timeout);
        for item in manifests.iter() {
            let (key, value) = item.map_err(db_error)?;
            match decode_manifest(&value) {
                Some(m) if m.id().as_bytes() == key.as_ref() => {
                    let _ = state.add_manifest(m);
                }
                _ => warn!("dropping an unreadable manifest from {}", db_path.display()),
            }
        }
        let catalogue_size = state.list().len();
        let transport = Transport::bind(identity, config.listen)?;
        let service = Arc::new(Service {
            state: Mutex::new(state),
            manifests,
            requests: request_limiter(),
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
        tasks.spawn(expiry_loop(service, shutdown.clone(), config.peer_timeout));
        Ok(Tracker {
            transport,
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

fn decode_manifest(bytes: &[u8]) -> Option<Manifest> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(m, _)| m)
}

async fn serve_stream(mut stream: IncomingStream, service: &Service) -> Result<(), ProtocolError> {
    // Checked before the request is even read, so that a flood costs the tracker little.
    let response = if service.requests.check_key(&stream.peer).is_err() {
        let _ = stream.recv.stop(swarm_engine::protocol::CANCELLED.into());
        Response::error(
            ErrorCode::Busy,
            format!("too many requests from this peer (at most {REQUESTS_PER_SECOND} per second); slow down"),
        )
    } else {
        match transport::read_request(&mut stream.recv, MAX_FRAME).await {
            Ok(request) => service.handle(stream.peer, stream.remote, request),
            Err(refusal) => {
                transport::refuse_and_close(&mut stream, &refusal).await;
                return Ok(());
            }
        }
    };
    transport::respond(&mut stream.send, &response).await?;
    let _ = stream.send.stopped().await;
    Ok(())
}

impl Service {
    fn handle(&self, peer: PeerId, remote: SocketAddr, request: Request) -> Response {
        let now = Instant::now();
        let mut new_manifest = None;
        let response = {
            let mut state = self.state.lock().expect("tracker state lock poisoned");
            let done = |r: Result<(), crate::state::Refusal>| match r {
                Ok(()) => Response::Ok,
                Err(refusal) => Response::error(refusal.code, refusal.message),
            };
            match request {
                Request::Register { advertise } => {
                    let addr = advertise.unwrap_or(remote);
                    state.register(peer, addr, now);
                    info!(%addr, "registered");
                    Response::Registered {
                        addr,
                        peer,
                        timeout_secs: state.peer_timeout().as_secs(),
                    }
                }
                Request::Announce { manifest, chunks, meta } => {
                    let copy = manifest.clone();
                    match state.announce(peer, manifest, chunks, meta, now) {
                        Ok((id, is_new)) => {
                            if is_new {
                                info!(file = %id.short(), name = %copy.name, "new file in the catalogue");
                                new_manifest = Some(copy);
                            }
                            Response::Ok
                        }
                        Err(refusal) => {
                            warn!("announce refused: {}", refusal.message);
                            Response::error(refusal.code, refusal.message)
                        }
                    }
                }
                Request::HaveChunks { file, chunks } => done(state.have(peer, file, &chunks, now)),
                Request::Withdraw { file } => done(state.withdraw(peer, file, now)),
                Request::Keepalive => done(state.keepalive(peer, now)),
                Request::Leave => {
                    if state.remove_peer(&peer) {
                        info!("left");
                    }
                    Response::Ok
                }
                Request::List => Response::Catalogue(state.list()),
                Request::Search { query, exact } => Response::Catalogue(state.search(&query, exact)),
                Request::Resolve { prefix } => Response::Matches(state.resolve(&prefix)),
                Request::Locate { file } => match state.locate(&file) {
                    Some((manifest, holders, meta)) => Response::Located {
                        manifest: (*manifest).clone(),
                        holders,
                        meta,
                    },
                    None => Response::error(ErrorCode::NotFound, format!("file {file} is not in the catalogue")),
                },
                Request::GetChunk { .. } | Request::Status => {
                    Response::error(ErrorCode::Unsupported, "this node is a tracker; it holds no content")
                }
            }
        };
        if let Some(manifest) = new_manifest {
            let bytes = manifest.canonical_bytes();
            if let Err(e) = self.manifests.insert(manifest.id().as_bytes(), bytes) {
                warn!("could not persist manifest {}: {e}", manifest.id().short());
            }
        }
        response
    }
}

async fn expiry_loop(service: Arc<Service>, shutdown: CancellationToken, timeout: Duration) {
    let period = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let dead = service
            .state
            .lock()
            .expect("tracker state lock poisoned")
            .expire(Instant::now());
        for peer in dead {
            info!(peer = %peer.short(), "expired after {timeout:?} of silence");
        }
        // Forget the request counts of peers that have been quiet long enough to be full.
        service.requests.retain_recent();
    }
}
