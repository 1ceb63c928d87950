//! A local edit that lost to a newer version elsewhere is kept beside it, under a name that
//! says when and where it lost.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use swarm_proto::ids::PeerId;

use crate::error::{Error, Result};
use crate::out_dir::Dir;

/// Renames the file `name` in the sync folder `root`, the local version that lost a conflict
/// found `at`, to `STEM.sync-conflict-YYYYMMDD-HHMMSS-NODE.EXT` beside it (as Syncthing names
/// them: when, and on which node, in UTC and this node's short id), never replacing anything
/// and never following a link; returns the new path.
pub(super) fn keep_as_conflict(root: &Path, name: &str, node: PeerId, at: SystemTime) -> Result<PathBuf> {
    let (dir, file_name) = Dir::open_root(root)?.parent_of(name)?;
    let (stem, ext) = match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file_name, String::new()),
    };
    // 2026-12-06T03:31:00Z -> 20261206-033100
    let when: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter_map(|c| match c {
            'T' => Some('-'),
            c if c.is_ascii_digit() => Some(c),
            _ => None,
        })
        .collect();
    let tag = format!("{when}-{}", node.short());
    for n in 1.. {
        let counter = if n == 1 { String::new() } else { format!("-{n}") };
        let target = format!("{stem}.sync-conflict-{tag}{counter}{ext}");
        match dir.rename(file_name, &target, false) {
            Ok(()) => return Ok(dir.join(&target)),
            Err(Error::Exists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some counter is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_copies_are_named_by_when_and_where_and_never_replace_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let node = PeerId([0xab; 32]);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_527_860);
        for round in 0..2 {
            let path = tmp.path().join("notes.txt");
            std::fs::write(&path, format!("version {round}")).unwrap();
            keep_as_conflict(tmp.path(), "notes.txt", node, at).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "notes.sync-conflict-20261206-033100-abababab-2.txt",
                "notes.sync-conflict-20261206-033100-abababab.txt"
            ]
        );
    }
}
