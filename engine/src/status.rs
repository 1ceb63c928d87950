//! What a node holds, for `swarm status`: its downloads (with progress) and the files it seeds.
//! Read from the running node when there is one (it knows the live progress), otherwise from
//! the state it left in sled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bitfield::Bitfield;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ids::FileId;
use crate::manifest::Manifest;
use crate::protocol::{ErrorCode, Request, Response};
use crate::state::StateDb;
use crate::store::Store;
use crate::transport::{self, Transport};

/// Name of the file, in the state directory, where a running node writes its address.
pub const ADDRESS_FILE: &str = "node.addr";

/// How a node relates to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    /// Being fetched now.
    Downloading,
    /// Fetched in part by an earlier run; `swarm fetch` again to continue.
    Paused,
    /// Complete and served.
    Seeding,
}

/// One file of a node's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file's id.
    pub id: FileId,
    /// Its name.
    pub name: String,
    /// Where its bytes are (the partial file while downloading).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Chunks verified on disk.
    pub chunks_held: u32,
    /// Bytes in those chunks.
    pub bytes_held: u64,
    /// Downloading, paused or seeding.
    pub state: FileState,
}

impl FileStatus {
    /// The status of the file of `manifest` at `path`, holding `chunks`.
    pub fn new(manifest: &Manifest, path: PathBuf, chunks: &Bitfield, state: FileState) -> FileStatus {
        FileStatus {
            id: manifest.id(),
            name: manifest.name.clone(),
            path,
            size: manifest.size,
            chunk_count: manifest.chunk_count,
            chunks_held: chunks.count(),
            bytes_held: manifest.bytes_in(chunks),
            state,
        }
    }

    /// Percent of the file held.
    pub fn percent(&self) -> f64 {
        if self.size == 0 {
            100.0
        } else {
            self.bytes_held as f64 * 100.0 / self.size as f64
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
pub async fn of_state_dir(state_dir: &Path) -> Result<(Source, Vec<FileStatus>)> {
    match StateDb::open(state_dir) {
        Ok(db) => Ok((Source::SavedState, saved(&db)?)),
        Err(Error::State { .. }) if state_dir.join(ADDRESS_FILE).exists() => {
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

/// The status of a running node: what its store holds now, plus downloads saved in sled that
/// no fetch is running for.
pub fn live(store: &Store, db: &StateDb) -> Result<Vec<FileStatus>> {
    let mut files: Vec<FileStatus> = store
        .all()
        .iter()
        .map(|held| {
            let chunks = held.chunks();
            let state = if chunks.count() == held.manifest.chunk_count {
                FileState::Seeding
            } else {
                FileState::Downloading
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
async fn ask_running(state_dir: &Path, addr: SocketAddr) -> Result<Vec<FileStatus>> {
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
        .map_err(|e| Error::Transport(format!("cannot reach the node running at {addr}: {e}")))?;
    let answer = transport::exchange(&connection, &Request::Status).await;
    connection.close(0u32.into(), b"done");
    transport.close().await;
    match answer?.0 {
        Response::Status(files) => Ok(files),
        Response::Error { code, message } => Err(Error::Transport(format!(
            "the node at {addr} refused the status request ({code:?}): {message}"
        ))),
        other => Err(Error::Transport(format!(
            "the node at {addr} answered {other:?} to a status request"
        ))),
    }
}

/// Refusal sent to anyone but the node itself.
pub fn refusal() -> Response {
    Response::error(
        ErrorCode::Unsupported,
        "status is only answered to the node's own key (run `swarm status` on its machine)",
    )
}
