//! Shares: the listing of a synced folder, kept by the tracker.
//!
//! A share is a set of paths, each with its current version or a tombstone, named by its key
//! ([`crate::share_key`]). Sync nodes of the share tell the tracker what changed in their
//! folder ([`ShareChange`], signed with the share's key) and ask what changed since the share
//! version they last saw ([`SharePage`]); nodes of other shares, and plain seeds, never enter
//! it. Every change the tracker takes gets the next version number of its share, so "what
//! changed since version N" is a page of entries in version order, and the last entry's
//! version is where the next page starts.
//!
//! The rule for one path is "newest wins", and every node applies it itself as well as the
//! tracker ([`ShareEntry::is_replaced_by`]): a version replaces the current one if it is
//! newer ([`crate::FileMeta::is_newer`]); a deletion replaces it only if it deletes exactly
//! the current version and is stamped after it (a deletion that raced an edit loses, and the
//! edit stays); a version replaces a tombstone only if it was modified after the deletion.
//! So each path's stamp ([`ShareChange::stamp`]) only moves forward: a replayed change never
//! wins over what it was followed by, and a change stamped more than [`MAX_CLOCK_SKEW`] in
//! the future is refused ([`check_change`]), so that no tombstone can win for ever.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::ShareId;
pub use crate::share_key::ShareChange;
use crate::share_key::{Signature, SignedChange};
use crate::{name, FileId, FileMeta, PeerId};

/// Most entries in one [`SharePage`].
pub const MAX_SHARE_PAGE: usize = 5_000;
/// How far in the future a change may be stamped (clocks of members differ a little).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10 * 60);

/// Checks a change before anyone acts on it: its path is a safe name, it was signed by the
/// key of `share`, and it is not stamped more than [`MAX_CLOCK_SKEW`] after `now_ns`.
pub fn check_change(share: &ShareId, signed: &SignedChange, now_ns: u64) -> Result<(), String> {
    name::validate_name(signed.change.name()).map_err(|e| format!("share change refused: {e}"))?;
    if !signed.verify(share) {
        return Err(format!(
            "a change to `{}` is not signed by the key of share {}",
            signed.change.name(),
            share.short()
        ));
    }
    let limit = now_ns.saturating_add(MAX_CLOCK_SKEW.as_nanos() as u64);
    if signed.change.stamp() > limit {
        return Err(format!(
            "a change to `{}` is stamped {} s in the future (at most {} s are allowed: check the clock)",
            signed.change.name(),
            (signed.change.stamp() - now_ns) / 1_000_000_000,
            MAX_CLOCK_SKEW.as_secs()
        ));
    }
    Ok(())
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
    /// The share key's signature over [`ShareEntry::change`].
    pub signature: Signature,
}

impl ShareEntry {
    /// An entry for a change the share's key signed.
    pub fn new(signed: SignedChange, version: u64, by: PeerId, size: u64) -> ShareEntry {
        let state = match signed.change {
            ShareChange::Put { file, meta, .. } => ShareState::Present { file, meta, size },
            ShareChange::Delete { was, deleted_ns, .. } => ShareState::Deleted { was, deleted_ns },
        };
        ShareEntry {
            name: match signed.change {
                ShareChange::Put { name, .. } | ShareChange::Delete { name, .. } => name,
            },
            version,
            by,
            state,
            signature: signed.signature,
        }
    }

    /// The change that made this entry.
    pub fn change(&self) -> ShareChange {
        let name = self.name.clone();
        match self.state {
            ShareState::Present { file, meta, .. } => ShareChange::Put { name, file, meta },
            ShareState::Deleted { was, deleted_ns } => ShareChange::Delete { name, was, deleted_ns },
        }
    }

    /// The change that made this entry, with its signature: what a node sends on to a
    /// tracker that lost it.
    pub fn signed(&self) -> SignedChange {
        SignedChange {
            change: self.change(),
            signature: self.signature,
        }
    }

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
            (ShareState::Present { file, meta, .. }, ShareChange::Delete { was, deleted_ns, .. }) => {
                was == file && *deleted_ns > meta.modified_ns
            }
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
            signature: Signature([0; 64]),
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
        assert!(present(1, 10).is_replaced_by(&delete(1, 11)));
        assert!(
            !present(1, 10).is_replaced_by(&delete(1, 5)),
            "a deletion stamped before the version it deletes (a replay)"
        );
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
    fn changes_are_checked_for_name_signature_and_time() {
        let key = crate::share_key::WriteKey::generate();
        let now = 1_000_000_000_000_000_000;
        let good = key.sign(put(2, now));
        assert!(check_change(&key.id(), &good, now).is_ok());
        let other = crate::share_key::WriteKey::generate();
        assert!(check_change(&other.id(), &good, now).is_err(), "another share's key");
        let forged = SignedChange {
            change: put(3, now),
            signature: good.signature,
        };
        assert!(check_change(&key.id(), &forged, now)
            .unwrap_err()
            .contains("not signed"));
        let future = key.sign(delete(1, u64::MAX));
        assert!(check_change(&key.id(), &future, now).unwrap_err().contains("future"));
        let skewed = key.sign(put(2, now + MAX_CLOCK_SKEW.as_nanos() as u64 - 1));
        assert!(check_change(&key.id(), &skewed, now).is_ok(), "a little skew is fine");
        let unsafe_name = key.sign(ShareChange::Delete {
            name: "../etc/passwd".into(),
            was: FileId([1; 32]),
            deleted_ns: now,
        });
        assert!(check_change(&key.id(), &unsafe_name, now).is_err());
    }

    #[test]
    fn an_entry_gives_back_the_change_it_was_made_of() {
        let key = crate::share_key::WriteKey::generate();
        for change in [put(2, 40), delete(2, 50)] {
            let signed = key.sign(change.clone());
            let entry = ShareEntry::new(signed.clone(), 7, PeerId([1; 32]), 1);
            assert_eq!(entry.change(), change);
            assert_eq!(entry.signed(), signed);
            assert!(entry.signed().verify(&key.id()));
        }
    }
}
