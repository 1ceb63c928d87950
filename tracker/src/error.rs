//! The tracker's error type.

use std::path::PathBuf;

use swarm_proto::dir_lock::LockError;
use swarm_proto::identity::IdentityError;
use swarm_proto::transport::BindError;

/// Why a tracker could not start or keep its catalogue.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The state directory could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process uses the state directory.
    #[error("{0}; give each tracker its own --state DIR")]
    Locked(#[from] LockError),
    /// The node key could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The endpoint could not be set up.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The shared store could not be reached or read.
    #[error(transparent)]
    Shared(#[from] crate::shared_log::StoreError),
    /// The catalogue database failed.
    #[error("catalogue database {}: {message}", path.display())]
    Store {
        /// The database.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}
