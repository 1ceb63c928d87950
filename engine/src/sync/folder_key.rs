//! The share key a folder syncs with, kept in `DIR/.swarm/share-key`: the first sync of a
//! folder makes a new share, and later runs sync the same one. The file is readable by its
//! owner only (it may hold the share's secret), inside `.swarm/`, which is never shared.

use std::io::{Read, Write};
use std::path::Path;

use swarm_proto::share_key::{ShareKey, ShareTicket, WriteKey};

use crate::error::{Error, Result};
use crate::out_dir::Dir;
use crate::versions::SWARM_DIR;

/// Where a folder's share key is kept, inside the folder.
pub const KEY_FILE: &str = ".swarm/share-key";

/// How the key a folder syncs with was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The folder had none and none was given: a new share was made.
    Made,
    /// The folder's own, from an earlier run.
    Kept,
    /// Given (joining a share), and kept in the folder from now on.
    Given,
    /// Given: the read-write key of the share the folder followed read-only.
    Upgraded,
}

/// The share key `dir` syncs with: the one kept in it, `given` (which must be of the same
/// share as a kept one), or a new one. Keeps the result in the folder.
pub fn folder_key(dir: &Path, given: Option<ShareKey>) -> Result<(ShareKey, KeySource)> {
    let root = Dir::open_root(dir)?;
    let kept = read(&root)?;
    let (key, source) = match (kept, given) {
        (Some(kept), None) => return Ok((kept, KeySource::Kept)),
        (Some(kept), Some(given)) if kept.id() != given.id() => {
            return Err(Error::Unsafe {
                path: root.join(KEY_FILE),
                why: format!(
                    "this folder syncs share {}, not {}; a folder syncs one share. Sync another folder, \
                     or move {KEY_FILE} out of it to leave share {}",
                    kept.id().short(),
                    given.id().short(),
                    kept.id().short()
                ),
            })
        }
        (Some(kept), Some(given)) => match (kept.writer(), given.writer()) {
            (None, Some(_)) => (given, KeySource::Upgraded),
            _ => return Ok((kept, KeySource::Kept)),
        },
        (None, Some(given)) => (given, KeySource::Given),
        (None, None) => (ShareKey::ReadWrite(WriteKey::generate()), KeySource::Made),
    };
    write(&root, &key)?;
    Ok((key, source))
}

fn read(root: &Dir) -> Result<Option<ShareKey>> {
    let (dir, name) = root.parent_of(KEY_FILE)?;
    let mut file = match dir.open_read(name) {
        Ok(file) => file,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io(&root.join(KEY_FILE), e))?;
    let ticket: ShareTicket = text.parse().map_err(|e| Error::Unsafe {
        path: root.join(KEY_FILE),
        why: format!("holds no usable share key ({e}); move it away to sync this folder as a new share"),
    })?;
    Ok(Some(ticket.key))
}

fn write(root: &Dir, key: &ShareKey) -> Result<()> {
    let (dir, name) = root.parent_of(KEY_FILE)?;
    let text = ShareTicket {
        key: key.clone(),
        trackers: Vec::new(),
    };
    let temp = format!("{name}.new");
    let _ = dir.remove(&temp);
    let mut file = dir.create_private(&temp)?;
    writeln!(file, "{text}")
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&dir.join(&temp), e))?;
    dir.rename(&temp, name, true)?;
    debug_assert!(KEY_FILE.starts_with(SWARM_DIR));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_its_share_and_refuses_another() {
        let tmp = tempfile::tempdir().unwrap();
        let (made, source) = folder_key(tmp.path(), None).unwrap();
        assert_eq!(source, KeySource::Made);
        assert!(made.writer().is_some());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tmp.path().join(KEY_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the secret is readable by its owner only");
        assert_eq!(folder_key(tmp.path(), None).unwrap(), (made.clone(), KeySource::Kept));
        let other = ShareKey::ReadWrite(WriteKey::generate());
        let refused = folder_key(tmp.path(), Some(other)).unwrap_err().to_string();
        assert!(refused.contains("syncs one share"), "{refused}");
        // The read-only key of its own share changes nothing: the folder keeps the secret.
        assert_eq!(
            folder_key(tmp.path(), Some(made.read_only())).unwrap(),
            (made.clone(), KeySource::Kept)
        );
    }

    #[test]
    fn a_read_only_folder_is_upgraded_by_its_read_write_key() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ShareKey::ReadWrite(WriteKey::generate());
        assert_eq!(
            folder_key(tmp.path(), Some(key.read_only())).unwrap().1,
            KeySource::Given
        );
        assert!(folder_key(tmp.path(), None).unwrap().0.writer().is_none());
        assert_eq!(
            folder_key(tmp.path(), Some(key.clone())).unwrap(),
            (key.clone(), KeySource::Upgraded)
        );
        assert_eq!(folder_key(tmp.path(), None).unwrap(), (key, KeySource::Kept));
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".swarm")).unwrap();
        std::fs::write(tmp.path().join(KEY_FILE), "swarmrw1zzzz\n").unwrap();
        let error = folder_key(tmp.path(), None).unwrap_err().to_string();
        assert!(error.contains("share-key") && error.contains("move it away"), "{error}");
    }
}
