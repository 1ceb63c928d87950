//! What a sync node knows of its share's listing, and the rules that keep a lying tracker or
//! an outsider from changing it.
//!
//! Invariants, whatever the tracker sends:
//! - every entry was signed by the share's key and is not stamped in the future
//!   ([`swarm_proto::share::check_change`]); anything else is refused and counted;
//! - a path's entry is only ever replaced by one that wins over it
//!   ([`ShareEntry::is_replaced_by`]), so replayed or stale changes never take a path back;
//! - a tracker whose record of the share began again (a new epoch) is merged with, not
//!   believed: what it lacks is sent back to it, signed as it was.

use std::collections::HashMap;

use swarm_proto::share::{check_change, ShareEntry, SharePage};
use swarm_proto::share_key::SignedChange;
use swarm_proto::ShareId;

/// The share's listing as this node has checked it.
#[derive(Debug)]
pub struct ShareMirror {
    share: ShareId,
    /// The tracker's epoch of the share, as of the last page.
    pub epoch: u64,
    /// The share version seen last.
    pub since: u64,
    /// Every path's entry.
    pub entries: HashMap<String, ShareEntry>,
}

/// What taking a page did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Paths whose entry changed.
    pub changed: usize,
    /// Entries that lost to what this node had (stale or replayed).
    pub stale: usize,
    /// Entries refused, and why (forged, future, unsafe name).
    pub refused: Vec<String>,
}

impl ShareMirror {
    /// An empty mirror of `share`.
    pub fn new(share: ShareId) -> ShareMirror {
        ShareMirror {
            share,
            epoch: 0,
            since: 0,
            entries: HashMap::new(),
        }
    }

    /// Does `page` not follow on from what was seen (the tracker's record began again)?
    pub fn is_new_start(&self, page: &SharePage) -> bool {
        page.epoch != self.epoch || page.version < self.since
    }

    /// Takes the entries of `page` that pass the checks and win over what is known; `now_ns`
    /// is this node's clock.
    pub fn apply(&mut self, page: SharePage, now_ns: u64) -> Merged {
        self.epoch = page.epoch;
        self.since = page.version;
        let mut merged = Merged::default();
        for entry in page.entries {
            self.take(entry, now_ns, &mut merged);
        }
        merged
    }

    /// Takes a whole listing from a tracker whose record began again: merged like any page,
    /// and returns what this node knows that the tracker does not (signed, to send back).
    pub fn restart(&mut self, whole: SharePage, now_ns: u64) -> (Merged, Vec<SignedChange>) {
        let listed: HashMap<String, ShareEntry> = whole.entries.iter().map(|e| (e.name.clone(), e.clone())).collect();
        let merged = self.apply(whole, now_ns);
        let mut missing: Vec<SignedChange> = self
            .entries
            .values()
            .filter(|mine| {
                listed
                    .get(&mine.name)
                    .is_none_or(|theirs| theirs.change() != mine.change())
            })
            .map(ShareEntry::signed)
            .collect();
        missing.sort_by(|a, b| a.change.name().cmp(b.change.name()));
        (merged, missing)
    }

    fn take(&mut self, entry: ShareEntry, now_ns: u64, merged: &mut Merged) {
        if let Err(why) = check_change(&self.share, &entry.signed(), now_ns) {
            merged.refused.push(why);
            return;
        }
        match self.entries.get_mut(&entry.name) {
            Some(mine) if mine.change() == entry.change() => {
                // The same change, numbered again by the tracker: nothing new.
                mine.version = entry.version;
            }
            Some(mine) if !mine.is_replaced_by(&entry.change()) => merged.stale += 1,
            _ => {
                self.entries.insert(entry.name.clone(), entry);
                merged.changed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use swarm_proto::share::{ShareChange, ShareState};
    use swarm_proto::share_key::WriteKey;
    use swarm_proto::{FileId, FileMeta, PeerId};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn put(name: &str, id: u8, modified_ns: u64) -> ShareChange {
        ShareChange::Put {
            name: name.into(),
            file: FileId([id; 32]),
            meta: FileMeta {
                modified_ns,
                replaces: None,
            },
        }
    }

    fn delete(name: &str, id: u8, deleted_ns: u64) -> ShareChange {
        ShareChange::Delete {
            name: name.into(),
            was: FileId([id; 32]),
            deleted_ns,
        }
    }

    fn page(epoch: u64, entries: Vec<ShareEntry>) -> SharePage {
        SharePage {
            epoch,
            version: entries.iter().map(|e| e.version).max().unwrap_or(0),
            entries,
            more: false,
        }
    }

    fn entry(key: &WriteKey, change: ShareChange, version: u64) -> ShareEntry {
        ShareEntry::new(key.sign(change), version, PeerId([1; 32]), 10)
    }

    #[test]
    fn forged_future_and_stale_entries_change_nothing() {
        let key = WriteKey::generate();
        let outsider = WriteKey::generate();
        let mut mirror = ShareMirror::new(key.id());
        let merged = mirror.apply(page(1, vec![entry(&key, put("a", 1, 100), 1)]), NOW);
        assert_eq!(merged.changed, 1);

        // An outsider's signature, a tombstone for ever, a replay of an older version, and a
        // deletion stamped before the version it deletes.
        let mut forged = entry(&key, put("a", 1, 100), 2);
        forged.state = ShareState::Deleted {
            was: FileId([1; 32]),
            deleted_ns: 200,
        };
        let hostile = vec![
            entry(&outsider, delete("a", 1, 200), 2),
            forged,
            entry(&key, delete("a", 1, u64::MAX), 3),
            entry(&key, put("a", 9, 50), 4),
            entry(&key, delete("a", 1, 90), 5),
        ];
        let merged = mirror.apply(page(1, hostile), NOW);
        assert_eq!(merged.changed, 0, "{merged:?}");
        assert_eq!(merged.refused.len(), 3, "{merged:?}");
        assert_eq!(merged.stale, 2);
        assert_eq!(mirror.entries["a"].change(), put("a", 1, 100));
        assert_eq!(mirror.since, 5);
    }

    #[test]
    fn a_tracker_that_began_again_is_merged_with_and_told_what_it_lacks() {
        let key = WriteKey::generate();
        let mut mirror = ShareMirror::new(key.id());
        mirror.apply(
            page(
                1,
                vec![
                    entry(&key, put("a", 1, 100), 1),
                    entry(&key, put("b", 2, 100), 2),
                    entry(&key, delete("c", 3, 150), 3),
                ],
            ),
            NOW,
        );
        // The new record has an older a, the same b, and no c.
        let whole = page(
            2,
            vec![entry(&key, put("a", 4, 50), 1), entry(&key, put("b", 2, 100), 2)],
        );
        assert!(mirror.is_new_start(&whole));
        let (merged, missing) = mirror.restart(whole, NOW);
        assert_eq!((merged.changed, merged.stale), (0, 1));
        let names: Vec<&str> = missing.iter().map(|c| c.change.name()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(missing.iter().all(|c| c.verify(&key.id())));
        assert_eq!(mirror.entries["a"].change(), put("a", 1, 100));
    }

    fn any_change() -> impl Strategy<Value = ShareChange> {
        let name = prop::sample::select(vec!["a", "b"]);
        prop_oneof![
            (name.clone(), 1u8..4, 0u64..20).prop_map(|(n, id, t)| put(n, id, t)),
            (name, 1u8..4, 0u64..20).prop_map(|(n, id, t)| delete(n, id, t)),
        ]
    }

    proptest! {
        /// Whatever order and repetition a tracker sends signed changes in, a path's stamp
        /// never goes back, and a path's entry is one that was signed.
        #[test]
        fn a_path_only_moves_forward(changes in prop::collection::vec(any_change(), 1..40)) {
            let key = WriteKey::generate();
            let mut mirror = ShareMirror::new(key.id());
            let mut stamps: HashMap<String, u64> = HashMap::new();
            for (version, change) in changes.into_iter().enumerate() {
                mirror.apply(page(1, vec![entry(&key, change, version as u64 + 1)]), NOW);
                for (name, entry) in &mirror.entries {
                    let stamp = entry.change().stamp();
                    let before = stamps.insert(name.clone(), stamp).unwrap_or(0);
                    prop_assert!(stamp >= before, "{name} went back from {before} to {stamp}");
                    prop_assert!(entry.signed().verify(&key.id()));
                }
            }
        }
    }
}
