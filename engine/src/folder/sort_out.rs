//! What a scan does with each file it listed, decided without I/O: reuse the manifest
//! remembered from an earlier scan, hash the file, or wait for it to settle; and which files
//! shared before are gone.
//!
//! Invariants (checked by the property test below over random folders and records):
//! 1. Every listed file gets exactly one verdict: unsettled, reused or hashed.
//! 2. A file modified less than `settle` ago is unsettled: neither shared nor withdrawn.
//! 3. A file is reused only if its record matches it exactly (size, modification time,
//!    inode, name, chunk size); any difference hashes it again.
//! 4. A hashed file carries the id it had before, if it had a record, so that the old
//!    version is withdrawn.
//! 5. A record is vanished exactly when no listed file has its path.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use swarm_proto::FileId;

use super::listing::Listed;
use crate::db::SeededRecord;

/// The scan's verdicts.
#[derive(Debug, Default)]
pub(super) struct Sorted {
    /// Files modified too recently, by name.
    pub unsettled: Vec<String>,
    /// Files unchanged since their record was made.
    pub reuse: Vec<(Listed, SeededRecord)>,
    /// Files to hash, with the id of their earlier version, if they had one.
    pub hash: Vec<(Listed, Option<FileId>)>,
    /// Records of files no longer there, by path.
    pub vanished: Vec<(PathBuf, SeededRecord)>,
}

/// Sorts the `listed` files of a folder whose records from earlier scans are `previous`.
pub(super) fn sort_out(
    listed: Vec<Listed>,
    mut previous: HashMap<PathBuf, SeededRecord>,
    chunk_size: u32,
    now: SystemTime,
    settle: Duration,
) -> Sorted {
    let mut sorted = Sorted::default();
    for file in listed {
        let record = previous.remove(&file.path);
        if now.duration_since(file.modified).unwrap_or_default() < settle {
            // Still being written, perhaps: neither shared nor withdrawn until it settles.
            sorted.unsettled.push(file.name);
            continue;
        }
        match record {
            Some(record)
                if record.stamp == file.stamp
                    && record.manifest.name == file.name
                    && record.manifest.chunk_size == chunk_size =>
            {
                sorted.reuse.push((file, record));
            }
            stale => sorted.hash.push((file, stale.map(|r| r.manifest.id()))),
        }
    }
    sorted.vanished = previous.into_iter().collect();
    sorted
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use swarm_proto::{Digest, FileMeta, Manifest};

    use super::*;
    use crate::db::FileStamp;
    use crate::trust::DiskStamp;

    const NOW: u64 = 1_800_000_000;

    fn stamp(size: u64, modified: u64, inode: u64) -> FileStamp {
        FileStamp {
            size,
            modified: (modified as i64, 0),
            inode,
        }
    }

    fn record(name: &str, stamp: FileStamp, chunk_size: u32) -> SeededRecord {
        SeededRecord {
            stamp,
            manifest: Manifest {
                name: name.to_owned(),
                hash: Digest([stamp.size as u8; 32]),
                size: stamp.size,
                chunk_size,
                chunk_count: 1,
                chunks: vec![Digest([stamp.size as u8; 32])],
            },
            meta: FileMeta::default(),
            fetched: false,
        }
    }

    proptest! {
        #[test]
        fn every_file_gets_one_verdict_and_only_exact_records_are_reused(
            // Per path: is it listed (size, age in seconds, inode), is there a record (and how
            // it differs: 1 size, 2 inode, 3 name, 4 chunk size).
            cases in proptest::collection::vec((proptest::option::of((1u64..3, 0u64..4, 1u64..3)), proptest::option::of(0u8..5)), 0..12),
            settle in 0u64..3,
        ) {
            let version = DiskStamp::of(&std::fs::metadata(std::env::temp_dir()).unwrap());
            let now = std::time::UNIX_EPOCH + Duration::from_secs(NOW);
            let chunk_size = 1 << 16;
            let mut listed = Vec::new();
            let mut previous = HashMap::new();
            for (i, (on_disk, recorded)) in cases.iter().enumerate() {
                let path = PathBuf::from(format!("/folder/{i}"));
                let name = i.to_string();
                if let Some((size, age, inode)) = *on_disk {
                    listed.push(Listed {
                        path: path.clone(),
                        name: name.clone(),
                        stamp: stamp(size, NOW - age, inode),
                        version,
                        modified: now - Duration::from_secs(age),
                    });
                }
                if let Some(differs) = *recorded {
                    let (size, age, inode) = on_disk.unwrap_or((1, 0, 1));
                    let mut r = record(&name, stamp(size, NOW - age, inode), chunk_size);
                    match differs {
                        1 => r.stamp.size += 1,
                        2 => r.stamp.inode += 1,
                        3 => r.manifest.name.push('x'),
                        4 => r.manifest.chunk_size *= 2,
                        _ => {}
                    }
                    previous.insert(path, r);
                }
            }
            let sorted = sort_out(listed.clone(), previous.clone(), chunk_size, now, Duration::from_secs(settle));

            // 1. One verdict per listed file.
            let mut verdicts: Vec<&str> = sorted.unsettled.iter().map(String::as_str).collect();
            verdicts.extend(sorted.reuse.iter().map(|(f, _)| f.name.as_str()));
            verdicts.extend(sorted.hash.iter().map(|(f, _)| f.name.as_str()));
            verdicts.sort();
            let mut names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
            names.sort();
            prop_assert_eq!(verdicts, names);
            for file in &listed {
                let young = now.duration_since(file.modified).unwrap() < Duration::from_secs(settle);
                // 2. Young files wait.
                prop_assert_eq!(young, sorted.unsettled.contains(&file.name));
                let exact = previous.get(&file.path).is_some_and(|r| {
                    r.stamp == file.stamp && r.manifest.name == file.name && r.manifest.chunk_size == chunk_size
                });
                // 3. Reused exactly when the record matches.
                let reused = sorted.reuse.iter().any(|(f, _)| f.path == file.path);
                prop_assert_eq!(reused, !young && exact);
                // 4. Hashed files carry their old id.
                if let Some((_, stale)) = sorted.hash.iter().find(|(f, _)| f.path == file.path) {
                    prop_assert_eq!(*stale, previous.get(&file.path).map(|r| r.manifest.id()));
                }
            }
            // 5. Vanished: the records no listed file has.
            let mut vanished: Vec<&PathBuf> = sorted.vanished.iter().map(|(p, _)| p).collect();
            vanished.sort();
            let mut expected: Vec<&PathBuf> = previous.keys().filter(|p| !listed.iter().any(|f| &f.path == *p)).collect();
            expected.sort();
            prop_assert_eq!(vanished, expected);
        }
    }
}
