//! An exclusive lock on a state directory, so that two processes never open one database at
//! once. The lock is an `flock` on `DIR/lock`, released by the kernel when the process ends
//! (even by `kill -9`); the file names the process holding it, so that the refusal can say who.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// Name of the lock file in a state directory.
pub const LOCK_FILE: &str = "lock";

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why a state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is in use by another swarm process ({holder})", dir.display())]
    Held {
        /// The directory.
        dir: PathBuf,
        /// What the lock file says of its holder: process id and command.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.chars().take(200).collect()
                    },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let command: Vec<String> = std::env::args().take(3).collect();
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}: {}", std::process::id(), command.join(" "));
        Ok(DirLock { _file: file })
    }
}

/// Renames the damaged database at `path` (a file or directory in a locked state directory)
/// to `NAME.damaged-UNIXTIME` beside it, so that a fresh one can start in its place and
/// nothing is deleted; returns the new name.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".damaged-{stamp}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in the same process
        // is refused just as another process would be.
        match DirLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert!(holder.contains(&std::process::id().to_string()), "{holder}")
            }
            other => panic!("expected the lock to be held: {other:?}"),
        }
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
