//! `.swarm/versions/` inside a synced folder: where sync puts the files it deletes or
//! replaces, under their path with the time they were put away
//! (`docs/notes~2026-11-30T04-15-00Z.txt`), kept for a while, then removed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::out_dir::Dir;

/// The folder, inside a synced folder, that sync keeps to itself: never shared.
pub const SWARM_DIR: &str = ".swarm";
/// Where old versions go, inside a synced folder.
pub const VERSIONS_DIR: &str = ".swarm/versions";

/// How an old version is put away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The file leaves its place (it was deleted elsewhere).
    Move,
    /// The file stays where it is and a second name for it is kept (it is about to be replaced
    /// by a rename, which leaves the kept name the only one). Copied where links fail.
    Link,
}

/// Puts the file `name` of the synced folder `root` away in [`VERSIONS_DIR`]; returns where it
/// went. Never replaces anything and never follows a link.
pub fn keep(root: &Path, name: &str, how: Keep) -> Result<PathBuf> {
    let folder = Dir::open_root(root)?;
    let (dir, file_name) = folder.parent_of(name)?;
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "-");
    let (stem, ext) = match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file_name, String::new()),
    };
    let parent = name
        .rsplit_once('/')
        .map(|(dirs, _)| format!("{dirs}/"))
        .unwrap_or_default();
    for n in 1.. {
        let counter = if n == 1 { String::new() } else { format!("-{n}") };
        let kept = format!("{VERSIONS_DIR}/{parent}{stem}~{stamp}{counter}{ext}");
        let (target, kept_name) = folder.parent_of(&kept)?;
        let done = match how {
            Keep::Move => dir.move_to(file_name, &target, kept_name),
            Keep::Link => dir.link_to(file_name, &target, kept_name).or_else(|e| match e {
                Error::Exists(_) => Err(e),
                _ => copy(&dir, file_name, &target, kept_name),
            }),
        };
        match done {
            Ok(()) => return Ok(target.join(kept_name)),
            Err(Error::Exists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some counter is free")
}

/// Copies `from` in `dir` to a new file `to` in `target`.
fn copy(dir: &Dir, from: &str, target: &Dir, to: &str) -> Result<()> {
    let mut source = dir.open_read(from)?;
    let (mut copy, existed) = target.open_or_create(to)?;
    if existed {
        return Err(Error::Exists(target.join(to)));
    }
    io::copy(&mut source, &mut copy).map_err(|e| Error::io(&target.join(to), e))?;
    Ok(())
}

/// Removes a kept version made by [`keep`] (a download it was kept for failed).
pub fn forget(root: &Path, kept: &Path) {
    let Some(name) = swarm_proto::name::name_of(root, kept) else {
        return;
    };
    let removed = Dir::open_root(root)
        .and_then(|folder| folder.parent_of(&name).map(|(dir, file)| (dir, file.to_owned())))
        .and_then(|(dir, file)| dir.remove(&file));
    if let Err(e) = removed {
        debug!("could not remove {}: {e}", kept.display());
    }
}

/// Removes kept versions put away more than `keep_for` ago (by the time their name was
/// changed); returns how many. Links are never followed.
pub fn prune(root: &Path, keep_for: Duration) -> usize {
    let versions = root.join(VERSIONS_DIR);
    let is_real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !is_real_dir(&root.join(SWARM_DIR)) || !is_real_dir(&versions) {
        return 0;
    }
    let now = SystemTime::now();
    let mut removed = 0;
    let walk = walkdir::WalkDir::new(&versions)
        .follow_links(false)
        .follow_root_links(false)
        .contents_first(true);
    for entry in walk.into_iter().filter_map(|e| e.ok()) {
        let Ok(metadata) = entry.metadata() else { continue };
        if entry.file_type().is_dir() {
            // Empty folders left behind go too (failing quietly on those that are not).
            if entry.depth() > 0 {
                let _ = std::fs::remove_dir(entry.path());
            }
            continue;
        }
        let put_away = changed_at(&metadata);
        if now.duration_since(put_away).unwrap_or_default() >= keep_for {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => warn!("could not remove the old version {}: {e}", entry.path().display()),
            }
        }
    }
    removed
}

/// When the file's name or status last changed: for a kept version, when it was put away.
fn changed_at(metadata: &std::fs::Metadata) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let secs = Duration::new(
        metadata.ctime().max(0) as u64,
        metadata.ctime_nsec().clamp(0, 999_999_999) as u32,
    );
    SystemTime::UNIX_EPOCH + secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_versions_never_replace_and_are_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/notes.txt"), "one").unwrap();
        let linked = keep(root, "docs/notes.txt", Keep::Link).unwrap();
        assert!(root.join("docs/notes.txt").exists(), "a link leaves the file in place");
        let moved = keep(root, "docs/notes.txt", Keep::Move).unwrap();
        assert!(!root.join("docs/notes.txt").exists());
        assert_ne!(linked, moved, "the second of the same second gets a counter");
        for kept in [&linked, &moved] {
            assert!(
                kept.starts_with(root.join(".swarm/versions/docs")),
                "{}",
                kept.display()
            );
            assert_eq!(std::fs::read(kept).unwrap(), b"one");
        }
        let name = moved.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("notes~") && name.ends_with(".txt"), "{name}");
        assert_eq!(prune(root, Duration::from_secs(3600)), 0);
        assert_eq!(prune(root, Duration::ZERO), 2);
        assert!(!root.join(".swarm/versions/docs").exists(), "empty folders go too");
    }

    #[test]
    fn a_planted_link_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, elsewhere) = (tmp.path().join("root"), tmp.path().join("elsewhere"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(".swarm")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        assert!(keep(&root, "a.txt", Keep::Move).is_err());
        assert!(root.join("a.txt").exists());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        std::fs::write(elsewhere.join("precious"), "x").unwrap();
        assert_eq!(prune(&root, Duration::ZERO), 0);
        assert!(elsewhere.join("precious").exists());
    }
}
