//! What a node holds and does, as plain data that serializes: the one shape of `swarm status
//! --json` and of the HTTP API's `/api/status`, with one name per field everywhere.
//!
//! Conventions: sizes in bytes; rates are `bytes_per_second`; durations are in seconds
//! (fractional): `elapsed_seconds` of what still runs, `seconds` of a fetch that ended (as
//! `swarm fetch --json` says it), `idle_seconds`; counts of chunks are `chunk_count` (of a file) and `chunks_held` or `chunks`
//! (moved); ids are full hex; paths are text (never refused for bytes that are not UTF-8); a
//! connection's `path` is `direct`, `punched` or `relayed`.

use serde::Serialize;
use swarm_proto::protocol::{FileState, FileStatus, UploadStatus};

/// A file a node holds or is fetching.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// The file id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where its bytes are (the hidden partial file while it downloads).
    pub path: String,
    /// `downloading`, `paused` or `seeding`.
    pub state: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Chunks in the file.
    pub chunk_count: u32,
    /// Chunks verified on disk.
    pub chunks_held: u32,
    /// Bytes in those chunks.
    pub bytes_held: u64,
    /// Bytes of it sent to other peers since the node began holding it.
    pub bytes_served: u64,
    /// Bytes of it read from an HTTP origin since the node started (`swarm seed --url`).
    pub bytes_from_origin: u64,
}

impl From<&FileStatus> for FileView {
    fn from(file: &FileStatus) -> FileView {
        FileView {
            id: file.id.to_string(),
            name: file.name.clone(),
            path: file.path.display().to_string(),
            state: state_word(file.state),
            size: file.size,
            chunk_count: file.chunk_count,
            chunks_held: file.chunks_held,
            bytes_held: file.bytes_held,
            bytes_served: file.bytes_served,
            bytes_from_origin: file.bytes_from_origin,
        }
    }
}

/// A file's state in one word, as the views say it.
pub fn state_word(state: FileState) -> &'static str {
    match state {
        FileState::Downloading => "downloading",
        FileState::Paused => "paused",
        FileState::Seeding => "seeding",
    }
}

/// A peer this node served lately.
#[derive(Debug, Clone, Serialize)]
pub struct UploadView {
    /// The peer's id.
    pub peer: String,
    /// Its address.
    pub addr: String,
    /// The file it fetched.
    pub file: String,
    /// That file's name.
    pub name: String,
    /// Bytes sent to it.
    pub bytes: u64,
    /// Chunks sent to it.
    pub chunks: u32,
    /// Sending rate lately.
    pub bytes_per_second: u64,
    /// Time since its last chunk.
    pub idle_seconds: f64,
    /// How the connection runs: `direct`, `punched` or `relayed`.
    pub path: String,
    /// It was the tracker's spot check of a chunk this node announced, not a download (as the
    /// tracker said once the check had ended; until then it shows as any peer).
    pub spot_check: bool,
}

impl From<&UploadStatus> for UploadView {
    fn from(upload: &UploadStatus) -> UploadView {
        UploadView {
            peer: upload.peer.to_string(),
            addr: upload.addr.to_string(),
            file: upload.file.to_string(),
            name: upload.name.clone(),
            bytes: upload.bytes,
            chunks: upload.chunks,
            bytes_per_second: upload.rate,
            idle_seconds: upload.idle_ms as f64 / 1000.0,
            path: upload.path.clone(),
            spot_check: upload.spot_check,
        }
    }
}

/// A path a folder scan could not share, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedView {
    /// Where it is.
    pub path: String,
    /// Why, in a few words.
    pub why: String,
}

impl From<&swarm_proto::protocol::SkippedPath> for SkippedView {
    fn from(skipped: &swarm_proto::protocol::SkippedPath) -> SkippedView {
        SkippedView {
            path: skipped.path.display().to_string(),
            why: skipped.why.clone(),
        }
    }
}

/// A download in flight.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadView {
    /// The file id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Bytes verified so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Peers it fetches from now.
    pub peers: u64,
    /// Receiving rate lately.
    pub bytes_per_second: f64,
    /// Time since it started.
    pub elapsed_seconds: f64,
    /// What each peer sent.
    pub sources: Vec<SourceView>,
}

/// A folder (a collection) being fetched; its files are downloads of their own.
#[derive(Debug, Clone, Serialize)]
pub struct FolderView {
    /// The collection's id.
    pub id: String,
    /// The folder's name.
    pub name: String,
    /// Files chosen.
    pub files: usize,
    /// Files fetched (or found complete) so far.
    pub files_done: usize,
    /// Bytes of the chosen files verified so far.
    pub done: u64,
    /// Bytes of the chosen files in all.
    pub total: u64,
    /// Receiving rate lately.
    pub bytes_per_second: f64,
    /// Time since it started.
    pub elapsed_seconds: f64,
}

/// One peer a download receives from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// The peer's id.
    pub peer: String,
    /// Verified bytes received from it.
    pub bytes: u64,
    /// Receiving rate lately.
    pub bytes_per_second: f64,
    /// How the connection runs: `direct`, `punched` or `relayed`.
    pub path: crate::progress::Path,
}

/// A fetch started through the HTTP API that ended.
#[derive(Debug, Clone, Serialize)]
pub struct EndedView {
    /// The file id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// It was fetched whole and verified.
    pub ok: bool,
    /// How long it took (as in `swarm fetch --json`).
    pub seconds: f64,
    /// Where the file is, if it was fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its size, if it was fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
