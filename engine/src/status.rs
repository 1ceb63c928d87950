//! What a node holds, for `swarm status`: its downloads (with progress), the files it seeds,
//! and the peers it served lately.
//! Read from the running node when there is one (it knows the live progress), otherwise from
//! the state it left in sled.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use swarm_proto::protocol::{ErrorCode, PeerRequest, PeerResponse, MAX_FRAME};
use swarm_proto::transport::{self, Transport};
use swarm_proto::{Bitfield, Identity};

use crate::downloads::Downloads;
use crate::error::{Error, Result};
use crate::state::StateDb;
use crate::store::Store;

pub use swarm_proto::protocol::{FileState, FileStatus, NodeStatus, UploadStatus};

/// Name of the file, in the state directory, where a running node writes its address.
pub const ADDRESS_FILE: &str = "node.addr";

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
pub fn live(store: &Store, downloads: &Downloads, db: &StateDb) -> Result<Vec<FileStatus>> {
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
            FileStatus::new(&held.manifest, held.path(), &chunks, state)
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
    match answer?.0 {
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
