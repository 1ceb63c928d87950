//! The engine's error type. Every variant says what failed and on which file or peer; the
//! binary maps [`Error::kind`] to an exit code and adds the flag that would help, since the
//! engine does not know how it is driven.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use swarm_proto::dir_lock::LockError;
use swarm_proto::identity::IdentityError;
use swarm_proto::manifest::{FromFileError, ManifestError};
use swarm_proto::protocol::ProtocolError;
use swarm_proto::transport::BindError;
use swarm_proto::{ConnectError, FileId, PeerId};

/// Broad classes of failure, one exit code each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file, id or peer asked for does not exist.
    NotFound,
    /// Content, a manifest or a node's id did not match what was asked for.
    Integrity,
    /// Reading or writing local files failed.
    Io,
    /// The operation ran out of time.
    Timeout,
    /// Stopped by the user.
    Cancelled,
    /// Anything else (network, protocol).
    Other,
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Nothing by that id or name.
    #[error("{0}")]
    NotFound(String),
    /// An id prefix or a name matches several files.
    #[error("`{prefix}` is ambiguous; it matches:\n{}", candidates.iter().map(|(id, name)| format!("  {id}  {name}")).collect::<Vec<_>>().join("\n"))]
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
    /// A collection could not be made or read.
    #[error("collection {what}: {why}")]
    Collection {
        /// The folder or collection id.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// Content did not match its hash.
    #[error("{0}")]
    Integrity(String),
    /// The tracker could not be reached, or proved another id.
    #[error("tracker {addr}: {source}{hint}")]
    TrackerConnect {
        /// Where the tracker was dialled.
        addr: String,
        /// What failed.
        source: ConnectError,
        /// What to do, when something can be said.
        hint: String,
    },
    /// The tracker did not answer a request in time, or its connection failed under it:
    /// asking again may well work.
    #[error("tracker {addr}: {message}")]
    TrackerSilent {
        /// Where the tracker was dialled.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The tracker answered with a refusal or something unexpected.
    #[error("tracker {addr}: {message}")]
    Tracker {
        /// Where the tracker was reached.
        addr: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// A file could not be read from its origin (an HTTP server).
    #[error("origin {url}: {message}")]
    Origin {
        /// The file's URL.
        url: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// A peer failed or refused.
    #[error("peer {} at {addr}: {message}", peer.short())]
    Peer {
        /// The peer's id.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// Another node could not be reached.
    #[error("{addr}: {source}")]
    Connect {
        /// Where it was dialled.
        addr: SocketAddr,
        /// What failed.
        source: ConnectError,
    },
    /// A frame could not be read or written.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The node's endpoint could not be set up.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The node's key could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Another process uses the state directory.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The node's state database failed.
    #[error("state database {}: {message}", path.display())]
    State {
        /// The database directory.
        path: PathBuf,
        /// What went wrong, and what to do.
        message: String,
    },
    /// The disk holding a download has too little free space.
    #[error(
        "not enough space for {}: {} more needed, {} free. Free some space and run the same command again; verified chunks are kept",
        path.display(), human(*needed), human(*available)
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
    #[error("{} already exists with different content", .0.display())]
    Exists(PathBuf),
    /// The node is already downloading this file.
    #[error("{0} is already being downloaded by this node")]
    AlreadyDownloading(String),
    /// Gave up waiting.
    #[error("{0}")]
    Timeout(String),
    /// The HTTP port could not be served (the message says why and what to do).
    #[error("HTTP port: {0}")]
    Http(String),
    /// Metrics could not be recorded (another recorder was installed first).
    #[error("cannot record metrics: {0}")]
    Metrics(String),
    /// A task of the engine failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
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
            Error::Manifest { .. } | Error::Integrity(_) | Error::Collection { .. } => ErrorKind::Integrity,
            Error::TrackerConnect {
                source: ConnectError::WrongId { .. },
                ..
            }
            | Error::Connect {
                source: ConnectError::WrongId { .. },
                ..
            } => ErrorKind::Integrity,
            Error::Io { .. }
            | Error::NoSpace { .. }
            | Error::Exists(_)
            | Error::Unsafe { .. }
            | Error::State { .. }
            | Error::Locked(_)
            | Error::Identity(_) => ErrorKind::Io,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Cancelled => ErrorKind::Cancelled,
            _ => ErrorKind::Other,
        }
    }

    /// Did the tracker stay silent (no answer to the handshake or the request, or a lost
    /// connection), rather than answer or refuse? Asking again may then work.
    pub fn is_tracker_silence(&self) -> bool {
        matches!(
            self,
            Error::TrackerSilent { .. }
                | Error::TrackerConnect {
                    source: ConnectError::Unreachable(_),
                    ..
                }
        )
    }

    /// Did a tracker or node refuse this one as not of its swarm (private, and this node
    /// without its secret or with another)? Trying again, or going on without it, cannot help.
    pub fn is_not_admitted(&self) -> bool {
        matches!(
            self,
            Error::TrackerConnect {
                source: ConnectError::NotAdmitted(_),
                ..
            } | Error::Connect {
                source: ConnectError::NotAdmitted(_),
                ..
            }
        )
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

impl From<FromFileError> for Error {
    fn from(error: FromFileError) -> Self {
        match error {
            FromFileError::Read { path, source } => Error::Io { path, source },
            FromFileError::Invalid(source) => Error::Manifest { file: None, source },
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Self {
        Error::Internal(error.to_string())
    }
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
