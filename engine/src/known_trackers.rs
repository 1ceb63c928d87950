//! Trackers met before, like SSH's known hosts: a text file in the state directory with one
//! `HOST:PORT ID` line per tracker. A plain file rather than sled so that short-lived commands
//! (`swarm ls`) can read it while a long-lived node holds the sled lock. Beside it,
//! `last_tracker` holds the trackers last used from the directory, so that queries need no
//! `--tracker`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use swarm_proto::ids::PeerId;

/// The known-trackers file of one state directory.
#[derive(Debug, Clone)]
pub struct KnownTrackers {
    path: PathBuf,
}

impl KnownTrackers {
    /// The file `known_trackers` in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> KnownTrackers {
        KnownTrackers {
            path: state_dir.join("known_trackers"),
        }
    }

    /// The id remembered for `host_port` (the last line for it wins).
    pub fn get(&self, host_port: &str) -> Result<Option<PeerId>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        Ok(text
            .lines()
            .rev()
            .filter_map(|line| line.split_once(' '))
            .filter(|(addr, _)| *addr == host_port)
            .find_map(|(_, id)| id.trim().parse().ok()))
    }

    /// The trackers last used from this state directory, as `--tracker` takes them.
    pub fn last_used(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.last_used_path()).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// Remembers `trackers` (as `--tracker` takes them) as the last used.
    pub fn remember_last_used(&self, trackers: &str) -> Result<()> {
        let path = self.last_used_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(&path, format!("{trackers}\n")).map_err(|e| Error::io(&path, e))
    }

    fn last_used_path(&self) -> PathBuf {
        self.path.with_file_name("last_tracker")
    }

    /// Remembers that `host_port` is `id`.
    pub fn remember(&self, host_port: &str, id: PeerId) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(file, "{host_port} {id}").map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownTrackers::in_dir(dir.path());
        assert_eq!(known.get("t:1").unwrap(), None);
        known.remember("t:1", PeerId([1; 32])).unwrap();
        known.remember("t:2", PeerId([2; 32])).unwrap();
        known.remember("t:1", PeerId([3; 32])).unwrap();
        assert_eq!(known.get("t:1").unwrap(), Some(PeerId([3; 32])));
        assert_eq!(known.get("t:2").unwrap(), Some(PeerId([2; 32])));
        assert_eq!(known.last_used(), None);
        known.remember_last_used("a:1,b:2").unwrap();
        known.remember_last_used("c:3").unwrap();
        assert_eq!(known.last_used().as_deref(), Some("c:3"));
    }
}
