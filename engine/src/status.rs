//! What a node holds, for `swarm status`: its downloads (with progress), the files it seeds,
//! and the peers it served lately.
//! Read from the running node when there is one (it knows the live progress), otherwise from
//! the state it left in sled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarm_proto::protocol::{ErrorCode, PeerRequest, PeerResponse, SkippedPath, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{Bitfield, FileId, Identity};

use crate::db::StateDb;
use crate::downloads::Downloads;
use crate::error::{Error, Result};
use crate::held::HeldFiles;
use crate::upload_log::UploadLog;

pub use swarm_proto::protocol::{FileState, FileStatus, NodeStatus, UploadStatus};

/// Name of the file, in the state directory, where a running node writes its address.
pub const ADDRESS_FILE: &str = "node.addr";

/// A file or folder a scan could not share, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is.
    pub path: PathBuf,
    /// Why, in a few words ("permission denied", "a symbolic link (not followed)").
    pub why: String,
}

/// What the last scan of each folder could not share, for `swarm status`; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SkippedPaths(Arc<std::sync::Mutex<HashMap<PathBuf, Vec<Skipped>>>>);

impl SkippedPaths {
    /// Records what the scan of `root` skipped, in place of what its last scan did.
    pub(crate) fn set(&self, root: &Path, skipped: &[Skipped]) {
        let mut all = self.0.lock().expect("skipped paths lock poisoned");
        if skipped.is_empty() {
            all.remove(root);
        } else {
            all.insert(root.to_owned(), skipped.to_vec());
        }
    }

    /// Everything skipped, sorted by path.
    pub fn all(&self) -> Vec<Skipped> {
        let all = self.0.lock().expect("skipped paths lock poisoned");
        let mut skipped: Vec<Skipped> = all.values().flatten().cloned().collect();
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        skipped
    }
}

/// What a running node answers its own `Status` request with: the chunk server asks it, so
/// that serving chunks needs none of what a status is made of.
#[derive(Clone)]
pub(crate) struct Answerer {
    /// The files served.
    pub store: Arc<HeldFiles>,
    /// The node's saved state.
    pub state: StateDb,
    /// The node's downloads in flight.
    pub downloads: Downloads,
    /// Who was served lately.
    pub served: Arc<UploadLog>,
    /// What the node's scans could not share.
    pub skipped: SkippedPaths,
    /// What was read from HTTP origins.
    pub origins: OriginReads,
}

/// Bytes read from HTTP origins (`swarm seed --url`) since the node started, by file: shown
/// beside what the node served of each.
#[derive(Debug, Clone, Default)]
pub struct OriginReads(Arc<std::sync::Mutex<HashMap<FileId, u64>>>);

impl OriginReads {
    /// Counts `bytes` of `file` read from its origin.
    pub fn add(&self, file: FileId, bytes: u64) {
        *self
            .0
            .lock()
            .expect("origin reads lock poisoned")
            .entry(file)
            .or_default() += bytes;
    }

    /// Bytes of `file` read from its origin.
    pub fn of(&self, file: &FileId) -> u64 {
        self.0
            .lock()
            .expect("origin reads lock poisoned")
            .get(file)
            .copied()
            .unwrap_or(0)
    }
}

impl Answerer {
    /// The node's status now, or why it cannot be told.
    pub fn answer(&self) -> PeerResponse {
        match live(&self.store, &self.downloads, &self.state, &self.origins) {
            Ok(files) => PeerResponse::Status(NodeStatus {
                files,
                uploads: self.served.current(std::time::Instant::now()),
                skipped: self
                    .skipped
                    .all()
                    .into_iter()
                    .map(|s| SkippedPath {
                        path: s.path,
                        why: s.why,
                    })
                    .collect(),
            }),
            Err(e) => PeerResponse::Error {
                code: ErrorCode::Internal,
                message: e.to_string(),
            },
        }
    }
}

/// Where the status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The running node answered.
    RunningNode(SocketAddr),
    /// No node runs on this state directory; this is what it saved.
    SavedState,
}

/// The status of the node whose state is in `state_dir`: asked of the node if it runs, read
/// from its sled state otherwise.
pub async fn of_state_dir(state_dir: &Path) -> Result<(Source, NodeStatus)> {
    if !state_dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} is not a node's state directory (no such directory)",
            state_dir.display()
        )));
    }
    match StateDb::open(state_dir) {
        Ok(db) => Ok((
            Source::SavedState,
            NodeStatus {
                files: saved(&db)?,
                uploads: Vec::new(),
                skipped: Vec::new(),
            },
        )),
        Err(Error::Locked(_)) if state_dir.join(ADDRESS_FILE).exists() => {
            let addr = std::fs::read_to_string(state_dir.join(ADDRESS_FILE))
                .map_err(|e| Error::io(&state_dir.join(ADDRESS_FILE), e))?;
            let addr: SocketAddr = addr.trim().parse().map_err(|_| Error::State {
                path: state_dir.join(ADDRESS_FILE),
                message: format!("`{}` is not an address; is a swarm node running here?", addr.trim()),
            })?;
            Ok((Source::RunningNode(addr), ask_running(state_dir, addr).await?))
        }
        Err(e) => Err(e),
    }
}

/// The status as saved in sled: seeded files and downloads in progress (paused).
pub fn saved(db: &StateDb) -> Result<Vec<FileStatus>> {
    let mut files = Vec::new();
    for (_, record) in db.downloads()? {
        files.push(FileStatus::new(
            &record.manifest,
            record.partial,
            &record.chunks,
            FileState::Paused,
        ));
    }
    for (path, record) in db.seeded_under(Path::new("/"))? {
        let all = Bitfield::full(record.manifest.chunk_count);
        files.push(FileStatus::new(&record.manifest, path, &all, FileState::Seeding));
    }
    Ok(files)
}

/// The status of a running node: what its store holds now (downloading if a fetch runs for
/// it), plus downloads saved in sled that no fetch is running for.
pub(crate) fn live(
    store: &HeldFiles,
    downloads: &Downloads,
    db: &StateDb,
    origins: &OriginReads,
) -> Result<Vec<FileStatus>> {
    let mut files: Vec<FileStatus> = store
        .all()
        .iter()
        .map(|held| {
            let chunks = held.chunks();
            let state = if chunks.is_complete() {
                FileState::Seeding
            } else if downloads.get(&held.id).is_some() {
                FileState::Downloading
            } else {
                FileState::Paused
            };
            FileStatus {
                bytes_served: held.bytes_served(),
                bytes_from_origin: origins.of(&held.id),
                ..FileStatus::new(&held.manifest, held.path(), &chunks, state)
            }
        })
        .collect();
    let paused: Vec<FileStatus> = saved(db)?
        .into_iter()
        .filter(|f| f.state == FileState::Paused && store.get(&f.id).is_none())
        .collect();
    files.extend(paused);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Asks the node running on `state_dir` at `addr`. The connection uses the node's own key from
/// its state directory, and a node answers `Status` only to itself.
async fn ask_running(state_dir: &Path, addr: SocketAddr) -> Result<NodeStatus> {
    let identity = Arc::new(Identity::load_or_create(state_dir)?);
    let me = identity.id();
    let any_port = SocketAddr::new(
        if addr.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    );
    let local = crate::netutil::loopback_for(any_port);
    let transport = Transport::bind(identity, local)?;
    let (connection, _) = transport
        .connect(addr, Some(me))
        .await
        .map_err(|source| Error::Connect { addr, source })?;
    let answer = transport::exchange(&connection, &PeerRequest::Status, MAX_FRAME).await;
    connection.close(swarm_proto::protocol::CloseCode::Done.code(), b"done");
    transport.close().await;
    let peer_error = |message: String| Error::Peer {
        peer: me,
        addr,
        message,
    };

    let answer = answer.map_err(|e| match e {
        // Status goes with the build, not the protocol (only the node itself asks it).
        swarm_proto::protocol::ProtocolError::Malformed(_) => peer_error(format!(
            "its status reads in another format ({e}): the node runs another build of swarm; restart it with this one"
        )),
        e => e.into(),
    })?;
    match answer.0 {
        PeerResponse::Status(status) => Ok(status),
        PeerResponse::Error { code, message } => {
            Err(peer_error(format!("refused the status request ({code:?}): {message}")))
        }
        other => Err(peer_error(format!("answered {other:?} to a status request"))),
    }
}

/// Refusal sent to anyone but the node itself.
pub fn refusal() -> PeerResponse {
    PeerResponse::Error {
        code: ErrorCode::Unsupported,
        message: "status is only answered to the node's own key (run `swarm status` on its machine)".into(),
    }
}
