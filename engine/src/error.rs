//! The engine's error type. Every variant says what failed and on which file or peer; the
//! binary maps [`Error::kind`] to an exit code.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::ids::{FileId, PeerId};
use crate::manifest::ManifestError;
use crate::protocol::ProtocolError;

/// Broad classes of failure, one exit code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file, id or peer asked for does not exist.
    NotFound,
    /// Content or a manifest did not match its hash.
    Integrity,
    /// Reading or writing local files failed.
    Io,
    /// The operation ran out of time.
    Timeout,
    /// Anything else (network, protocol, usage).
    Other,
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Nothing by that id or name.
    #[error("{0}")]
    NotFound(String),
    /// An id prefix matches several files.
    #[error("id prefix `{prefix}` is ambiguous; it matches:\n{}", candidates.iter().map(|(id, name)| format!("  {id}  {name}")).collect::<Vec<_>>().join("\n"))]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// Every file it matches.
        candidates: Vec<(FileId, String)>,
    },
    /// A manifest was refused.
    #[error("manifest{} refused: {source}", file.map(|f| format!(" for {f}")).unwrap_or_default())]
    Manifest {
        /// The file id it was fetched for, when known.
        file: Option<FileId>,
        /// What was wrong.
        source: ManifestError,
    },
    /// Content did not match its hash.
    #[error("{0}")]
    Integrity(String),
    /// The tracker failed or refused.
    #[error("tracker {addr}: {message}")]
    Tracker {
        /// Where the tracker was reached.
        addr: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// A peer failed or refused.
    #[error("peer {peer} at {addr}: {message}")]
    Peer {
        /// The peer's id (short form in the message).
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// A frame could not be read or written.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Setting up QUIC or TLS failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The node's state database failed.
    #[error("state database {path}: {message}")]
    State {
        /// The database directory.
        path: PathBuf,
        /// What went wrong, and what to do.
        message: String,
    },
    /// The disk holding a download has too little free space.
    #[error(
        "not enough space for {path}: {} more needed, {} free. Free some space and run the same command again; verified chunks are kept",
        human(*needed), human(*available)
    )]
    NoSpace {
        /// The file being written.
        path: PathBuf,
        /// Bytes still to be written.
        needed: u64,
        /// Bytes free on its file system when this was noticed.
        available: u64,
    },
    /// A path inside the output directory cannot be written safely (a link, or not a regular
    /// file).
    #[error("{}: {why}", path.display())]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// The output already exists with other content.
    #[error("{0} already exists with different content; pass --force to replace it")]
    Exists(PathBuf),
    /// Gave up waiting.
    #[error("{0}")]
    Timeout(String),
    /// Stopped by the user.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) | Error::AmbiguousId { .. } => ErrorKind::NotFound,
            Error::Manifest { .. } | Error::Integrity(_) => ErrorKind::Integrity,
            Error::Io { .. }
            | Error::NoSpace { .. }
            | Error::Exists(_)
            | Error::Unsafe { .. }
            | Error::State { .. } => ErrorKind::Io,
            Error::Timeout(_) => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }
}

/// `bytes` for people, in binary units: "1.5 GiB".
pub fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

impl From<ManifestError> for Error {
    fn from(source: ManifestError) -> Self {
        Error::Manifest { file: None, source }
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
