//! A tracker's or a relay's state directory: made if missing, locked (one process per
//! directory), and the node's key loaded or made there.

use std::path::Path;
use std::sync::Arc;

use swarm_proto::dir_lock::DirLock;
use swarm_proto::Identity;

use crate::TrackerError;

/// Makes `dir` if missing, takes its lock and loads or makes the key kept there.
pub fn open(dir: &Path) -> Result<(DirLock, Arc<Identity>), TrackerError> {
    std::fs::create_dir_all(dir).map_err(|source| TrackerError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let lock = DirLock::acquire(dir)?;
    let identity = Arc::new(Identity::load_or_create(dir)?);
    Ok((lock, identity))
}
