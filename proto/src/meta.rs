//! What travels with a file besides its manifest: its modification time and the version it
//! replaced. Advisory, and not part of the file id: the same content under the same name has
//! one id whatever its timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ids::FileId;

/// A file's advisory metadata, as its holders announce it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Modification time, nanoseconds since the Unix epoch; 0 when unknown.
    pub modified_ns: u64,
    /// The id of the version of the same name that this version replaced, if known. A sync
    /// peer holding exactly that version takes this one as an update, not as a conflict.
    pub replaces: Option<FileId>,
}

impl FileMeta {
    /// Metadata with this modification time and no known predecessor.
    pub fn modified_at(time: SystemTime) -> FileMeta {
        FileMeta {
            modified_ns: nanos_since_epoch(time),
            replaces: None,
        }
    }

    /// The modification time, if known.
    pub fn modified(&self) -> Option<SystemTime> {
        (self.modified_ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(self.modified_ns))
    }

    /// Is the version with this metadata and id newer than `other`'s? Later modification time
    /// wins; equal times are broken by the larger id, so every peer picks the same winner.
    pub fn is_newer(&self, id: &FileId, other: &FileMeta, other_id: &FileId) -> bool {
        (self.modified_ns, id) > (other.modified_ns, other_id)
    }
}

/// Nanoseconds since the Unix epoch, saturating (0 for times before it).
pub fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_by_time_then_by_id() {
        let (a, b) = (FileId([1; 32]), FileId([2; 32]));
        let old = FileMeta {
            modified_ns: 10,
            replaces: None,
        };
        let new = FileMeta {
            modified_ns: 20,
            replaces: None,
        };
        assert!(new.is_newer(&a, &old, &b));
        assert!(!old.is_newer(&b, &new, &a));
        assert!(old.is_newer(&b, &old, &a));
        assert!(!old.is_newer(&a, &old, &a));
    }

    #[test]
    fn modified_time_round_trips() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(FileMeta::modified_at(time).modified(), Some(time));
        assert_eq!(FileMeta::default().modified(), None);
    }
}
