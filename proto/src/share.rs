//! Shares: the listing of a synced folder, kept by the tracker.
//!
//! A share is a named set of paths, each with its current version or a tombstone. Sync nodes
//! of the same share tell the tracker what changed in their folder ([`ShareChange`]) and ask
//! what changed since the share version they last saw ([`SharePage`]); nodes of other shares,
//! and plain seeds, never enter it. Every change the tracker takes gets the next version
//! number of its share, so "what changed since version N" is a page of entries in version
//! order, and the last entry's version is where the next page starts.
//!
//! The rule for one path is "newest wins": a version replaces the current one if it is newer
//! ([`crate::FileMeta::is_newer`]); a deletion replaces it only if it deletes exactly the
//! current version (a deletion that raced an edit loses, and the edit stays); a version
//! replaces a tombstone only if it was modified after the deletion.

use serde::{Deserialize, Serialize};

use crate::{FileId, FileMeta, PeerId};

/// Longest share name, in bytes.
pub const MAX_SHARE_NAME: usize = 255;
/// Most entries in one [`SharePage`].
pub const MAX_SHARE_PAGE: usize = 5_000;

/// Checks a share name: 1 to [`MAX_SHARE_NAME`] bytes of printable text.
pub fn validate_share_name(share: &str) -> Result<(), String> {
    if share.is_empty() || share.len() > MAX_SHARE_NAME {
        return Err(format!("a share name has 1 to {MAX_SHARE_NAME} bytes"));
    }
    if share.chars().any(crate::name::is_unprintable) {
        return Err("a share name cannot hold control characters".into());
    }
    Ok(())
}

/// A change a sync node saw in its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareChange {
    /// The file at `name` is now this version (the tracker must list it, under that name).
    Put {
        /// The path in the share.
        name: String,
        /// The version.
        file: FileId,
        /// Its modification time and the version it replaced.
        meta: FileMeta,
    },
    /// The file at `name`, version `was`, was deleted.
    Delete {
        /// The path in the share.
        name: String,
        /// The version deleted.
        was: FileId,
        /// When the deletion was seen, nanoseconds since the Unix epoch.
        deleted_ns: u64,
    },
}

impl ShareChange {
    /// The path the change is about.
    pub fn name(&self) -> &str {
        match self {
            ShareChange::Put { name, .. } | ShareChange::Delete { name, .. } => name,
        }
    }
}

/// What a path of a share is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareState {
    /// This version.
    Present {
        /// The version.
        file: FileId,
        /// Its modification time and the version it replaced.
        meta: FileMeta,
        /// Its size in bytes.
        size: u64,
    },
    /// Deleted.
    Deleted {
        /// The version that was deleted.
        was: FileId,
        /// When, nanoseconds since the Unix epoch.
        deleted_ns: u64,
    },
}

/// One path of a share, as of the share version that last changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEntry {
    /// The path in the share.
    pub name: String,
    /// The share version at which it took this state (unique within the share).
    pub version: u64,
    /// The node whose change it was.
    pub by: PeerId,
    /// What it is.
    pub state: ShareState,
}

impl ShareEntry {
    /// Does `change` win over this entry (see the module doc)?
    pub fn is_replaced_by(&self, change: &ShareChange) -> bool {
        match (&self.state, change) {
            (
                ShareState::Present { file, meta, .. },
                ShareChange::Put {
                    file: new,
                    meta: new_meta,
                    ..
                },
            ) => new != file && new_meta.is_newer(new, meta, file),
            (ShareState::Present { file, .. }, ShareChange::Delete { was, .. }) => was == file,
            (ShareState::Deleted { deleted_ns, .. }, ShareChange::Put { meta, .. }) => meta.modified_ns > *deleted_ns,
            (ShareState::Deleted { .. }, ShareChange::Delete { .. }) => false,
        }
    }
}

/// Answer to a share listing: the entries changed since the version asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePage {
    /// Stays the same for the life of the share's record at the tracker: a node that sees
    /// it change (the tracker lost the share) lists it from the start again.
    pub epoch: u64,
    /// The share's version now.
    pub version: u64,
    /// The entries changed since, in version order (at most [`MAX_SHARE_PAGE`]).
    pub entries: Vec<ShareEntry>,
    /// Are there more? Ask again from the last entry's version.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(id: u8, modified_ns: u64) -> ShareEntry {
        ShareEntry {
            name: "a".into(),
            version: 1,
            by: PeerId([0; 32]),
            state: ShareState::Present {
                file: FileId([id; 32]),
                meta: FileMeta {
                    modified_ns,
                    replaces: None,
                },
                size: 1,
            },
        }
    }

    fn put(id: u8, modified_ns: u64) -> ShareChange {
        ShareChange::Put {
            name: "a".into(),
            file: FileId([id; 32]),
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
        }
    }

    fn delete(id: u8, deleted_ns: u64) -> ShareChange {
        ShareChange::Delete {
            name: "a".into(),
            was: FileId([id; 32]),
            deleted_ns,
        }
    }

    #[test]
    fn newest_wins_and_a_deletion_must_name_the_current_version() {
        assert!(present(1, 10).is_replaced_by(&put(2, 11)));
        assert!(!present(1, 10).is_replaced_by(&put(2, 9)));
        assert!(!present(1, 10).is_replaced_by(&put(1, 99)), "the same version");
        assert!(present(1, 10).is_replaced_by(&delete(1, 5)));
        assert!(
            !present(1, 10).is_replaced_by(&delete(2, 50)),
            "a deletion of an older version"
        );
        let deleted = ShareEntry {
            state: ShareState::Deleted {
                was: FileId([1; 32]),
                deleted_ns: 20,
            },
            ..present(1, 10)
        };
        assert!(deleted.is_replaced_by(&put(3, 21)));
        assert!(!deleted.is_replaced_by(&put(3, 19)));
        assert!(!deleted.is_replaced_by(&delete(1, 30)));
    }

    #[test]
    fn share_names_are_checked() {
        assert!(validate_share_name("photos").is_ok());
        assert!(validate_share_name("").is_err());
        assert!(validate_share_name(&"x".repeat(256)).is_err());
        assert!(validate_share_name("a\nb").is_err());
    }
}
