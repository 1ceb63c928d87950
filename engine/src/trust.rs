//! What a node knows of its files' bytes without reading them again.
//!
//! A seeder must never serve bytes that no longer match the manifest. Hashing every chunk it
//! reads guarantees that, at the cost of a BLAKE3 pass per upload (a tenth of a seeder's CPU).
//! Instead, a chunk is hashed when read unless it was already found intact in the same version
//! of the file, as told by its [`DiskStamp`]: any write, truncation, rename over it or
//! deletion through the file system changes the inode's change time (which no program can set
//! back), so an unchanged stamp means unchanged bytes. Three things keep the gaps closed:
//! - a stamp is only trusted once it has *settled* (no change in the last [`SETTLE`]): file
//!   times have a coarse clock, and a write within the same tick as the last one would not
//!   show (git calls such entries "racily clean");
//! - one read in [`SPOT_CHECK`] of a trusted chunk is hashed anyway, for what the file system
//!   cannot see (a failing disk, writes to the device underneath);
//! - a fetcher that rejects a chunk says so ([`swarm_proto::protocol::PeerRequest::Rejected`]),
//!   and the seeder hashes that chunk again at once.
//!
//! Fetchers verify every chunk against the manifest whatever a seeder does, so this decides
//! only how fast a seeder notices its own file changed, never what lands on anyone's disk.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use swarm_proto::bitfield::Bitfield;

/// A file version counts as settled once its times are this far in the past: far beyond the
/// tick of any file system's clock.
pub const SETTLE: Duration = Duration::from_secs(1);

/// One read in this many of a trusted chunk is hashed all the same.
pub const SPOT_CHECK: u32 = 16;

/// What identifies one version of a file's bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStamp {
    device: u64,
    inode: u64,
    size: u64,
    /// Modification time, nanoseconds since the epoch.
    modified: i128,
    /// Inode change time (writes, truncation, renames, links and unlinks all set it; it cannot
    /// be set back), nanoseconds since the epoch.
    changed: i128,
}

impl DiskStamp {
    /// The stamp of a file's metadata.
    pub fn of(metadata: &Metadata) -> DiskStamp {
        let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        DiskStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            modified: nanos(metadata.mtime(), metadata.mtime_nsec()),
            changed: nanos(metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Was the file left alone for [`SETTLE`] before `now`? Only then can a later change not
    /// hide within the same tick of the file system's clock.
    pub fn settled(&self, now: SystemTime) -> bool {
        let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = since_epoch.saturating_sub(SETTLE).as_nanos() as i128;
        self.modified <= limit && self.changed <= limit
    }
}

/// The chunks of one file found intact in one version of it.
#[derive(Debug)]
pub struct Trust {
    stamp: Option<DiskStamp>,
    intact: Bitfield,
}

impl Trust {
    /// Nothing trusted yet: every chunk is hashed as it is read.
    pub fn none(chunk_count: u32) -> Trust {
        Trust {
            stamp: None,
            intact: Bitfield::new(chunk_count),
        }
    }

    /// Every chunk intact in the version `stamp` (it was hashed whole in that version). A stamp
    /// that had not settled when the hashing started earns no trust.
    pub fn all(chunk_count: u32, stamp: DiskStamp, hashing_started: SystemTime) -> Trust {
        if !stamp.settled(hashing_started) {
            return Trust::none(chunk_count);
        }
        Trust {
            stamp: Some(stamp),
            intact: Bitfield::full(chunk_count),
        }
    }

    /// Is `index` known intact in the version `stamp`?
    pub fn vouches(&self, stamp: &DiskStamp, index: u32) -> bool {
        self.stamp.as_ref() == Some(stamp) && self.intact.get(index)
    }

    /// Records `index` as found intact in the version `stamp`, hashed at `now` (ignored if the
    /// version had not settled then). A new version forgets what was known of the old one.
    pub fn record(&mut self, stamp: DiskStamp, index: u32, now: SystemTime) {
        if !stamp.settled(now) {
            return;
        }
        if self.stamp != Some(stamp) {
            self.stamp = Some(stamp);
            self.intact = Bitfield::new(self.intact.len());
        }
        self.intact.set(index);
    }

    /// Forgets that `index` was intact: it is hashed on its next read.
    pub fn forget(&mut self, index: u32) {
        self.intact.unset(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn stamp_of(file: &std::fs::File) -> DiskStamp {
        DiskStamp::of(&file.metadata().unwrap())
    }

    #[test]
    fn any_write_changes_the_stamp_even_with_the_old_mtime_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        file.set_modified(old).unwrap();
        let before = stamp_of(&file);
        std::thread::sleep(Duration::from_millis(20));
        (&file).write_all(b"j").unwrap();
        file.set_modified(old).unwrap();
        assert_ne!(stamp_of(&file), before, "the change time moved");
    }

    #[test]
    fn only_settled_versions_are_trusted_and_a_new_version_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let fresh = stamp_of(&std::fs::File::open(&path).unwrap());
        let now = SystemTime::now();
        assert!(!fresh.settled(now));
        assert!(fresh.settled(now + SETTLE + Duration::from_millis(50)));

        let mut trust = Trust::all(4, fresh, now);
        assert!(!trust.vouches(&fresh, 0), "hashed right after a change: not trusted");
        trust.record(fresh, 1, now);
        assert!(!trust.vouches(&fresh, 1));

        let later = now + Duration::from_secs(5);
        trust.record(fresh, 1, later);
        assert!(trust.vouches(&fresh, 1));
        assert!(!trust.vouches(&fresh, 2));
        trust.forget(1);
        assert!(!trust.vouches(&fresh, 1));

        let mut trust = Trust::all(4, fresh, later);
        assert!((0..4).all(|c| trust.vouches(&fresh, c)));
        let edited = DiskStamp {
            changed: fresh.changed + 1,
            ..fresh
        };
        assert!(!trust.vouches(&edited, 0));
        trust.record(edited, 3, later);
        assert!(trust.vouches(&edited, 3));
        assert!(!trust.vouches(&fresh, 0), "the old version is forgotten");
    }
}
